"""How one row of features is prepared for a model, in pure Python: the rule training and serving share.

Training prepares whole DataFrames (:func:`shared.ml.training.prepare_features`); the serving path has no
pandas and prepares request rows one by one with :func:`prepare_row`. Both apply the same rule: numeric and
boolean features become ``float`` (NaN when missing; booleans 1.0/0.0), categorical features ``str`` with
:data:`MISSING` for a missing value. This module imports nothing beyond the standard library, so the
prediction function can use it without loading pandas, scikit-learn or pydantic.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any, Final

from shared.errors import DataValidationError

__all__ = ["BOOLEAN", "CATEGORICAL", "MISSING", "NUMERIC", "boolean_text", "is_missing", "prepare_row"]

# Missing categorical values become this category before the pipeline: skl2onnx cannot convert an imputer
# of NaN on strings, and the serving path (no pandas) applies the same rule with :func:`prepare_row`.
MISSING: Final = "__missing__"

# The feature types of :class:`shared.data.contract.FeatureType`, by value (that enum is a ``StrEnum``, so its
# members compare equal to these): importing the contract module would bring pydantic into serving.
NUMERIC: Final = "numeric"
CATEGORICAL: Final = "categorical"
BOOLEAN: Final = "boolean"

TRUE_TEXT: Final = frozenset({"true", "1", "yes"})
FALSE_TEXT: Final = frozenset({"false", "0", "no"})


def is_missing(value: Any) -> bool:
    """None, a NaN of any float type, or pandas' ``NA``/``NaT`` (checked only when pandas is loaded)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    pandas = sys.modules.get("pandas")
    if pandas is not None and (value is pandas.NA or value is pandas.NaT):
        return True
    # numpy's float32/float16 are not Python floats; they are the only other NaN a row can hold.
    if type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind == "f":
        return bool(math.isnan(float(value)))
    return False


def boolean_text(value: str) -> float | None:
    """1.0 or 0.0 for the boolean words a data file may hold (true/false, yes/no, 1/0 in any case), else
    None."""
    lowered = value.strip().lower()
    if lowered in TRUE_TEXT:
        return 1.0
    if lowered in FALSE_TEXT:
        return 0.0
    return None


def prepare_row(row: Mapping[str, Any], feature_types: Mapping[str, str]) -> dict[str, Any]:
    """The features of one row, in ``feature_types`` order (feature name to its type's value).

    Numeric and boolean features become ``float`` (NaN when missing or absent; booleans 1.0/0.0, from
    ``bool``, numbers or boolean words), categorical ones ``str`` with :data:`MISSING` for a missing value.
    A value that cannot be read raises :class:`DataValidationError` naming the feature. Request rows are
    checked first (:meth:`shared.serving.runtime.Signature.validate_rows`), so there this only converts.
    """
    prepared: dict[str, Any] = {}
    for name, kind in feature_types.items():
        value: Any = row.get(name)
        if kind == CATEGORICAL:
            prepared[name] = MISSING if is_missing(value) else str(value)
        elif is_missing(value):
            prepared[name] = math.nan
        elif kind == BOOLEAN and isinstance(value, str):
            parsed = boolean_text(value)
            if parsed is None:
                raise DataValidationError(f"feature {name!r} must be boolean, got {value!r}", problems=[name])
            prepared[name] = parsed
        else:
            try:
                prepared[name] = float(value)
            except (TypeError, ValueError) as exc:
                raise DataValidationError(
                    f"feature {name!r} must be {kind}, got {value!r}", problems=[name]
                ) from exc
    return prepared
