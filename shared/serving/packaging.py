"""Packaging for serving: decide whether a fitted pipeline is served as ONNX or as scikit-learn, and prove it.

:func:`package_for_serving` converts the pipeline with skl2onnx (one input per feature, each an ``(n, 1)``
array: float32 for numeric and boolean features, strings for categorical ones, so serving needs no pandas),
runs the ONNX model in onnxruntime exactly as :mod:`shared.serving.runtime` does, on the whole holdout, and
accepts it only if it agrees with scikit-learn on every row:

- **classification**: the label (``classes[argmax(probabilities)]``, scikit-learn's first-maximum rule;
  ONNX's own ``label`` output can break exact ties the other way, so serving never uses it) equals the
  pipeline's ``predict`` on every holdout row, and every class probability is within
  ``PROBABILITY_TOLERANCE = 1e-4`` (absolute) of ``predict_proba``;
- **regression**: every value satisfies ``|onnx - sklearn| <= atol + rtol * |sklearn|`` with
  ``VALUE_RTOL = 1e-4`` and ``atol = VALUE_ATOL_SCALE * max(1, max |y|) = 1e-4 * max(1, max |y|)``, ``y``
  being scikit-learn's holdout predictions (so the tolerance follows the target's scale).

ONNX computes in float32: observed differences are around 1e-7 for linear models and tree ensembles, far
inside these tolerances; a model that exceeds them is served by scikit-learn rather than approximately.
Otherwise the flavour is ``sklearn`` and the reason says why, in words: the conversion error (its type and
message), "labels differ on N of M holdout rows", or "probabilities differ by up to X (tolerance Y)".
The figures are recorded either way (:attr:`ServingPackage.parity`).

skl2onnx is imported on first use: it takes over a second to import, and only the Train step needs it.
"""

from __future__ import annotations

import importlib.metadata
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from shared.data.contract import DataContract, FeatureType, Task
from shared.ml.training import PROBABILITY_PREFIX, predict_frame, prepare_features
from shared.registry import ServingFlavor
from shared.serving.runtime import (
    ONNX_CLASSES_KEY,
    ONNX_FEATURES_KEY,
    OnnxRunner,
    Signature,
    onnx_session,
    pick_labels,
)

__all__ = [
    "OPSETS",
    "PROBABILITY_TOLERANCE",
    "VALUE_ATOL_SCALE",
    "VALUE_RTOL",
    "ServingPackage",
    "package_for_serving",
    "serving_signature",
]

PROBABILITY_TOLERANCE: Final = 1e-4
VALUE_RTOL: Final = 1e-4
VALUE_ATOL_SCALE: Final = 1e-4

# ONNX operator sets the conversion targets: what onnxruntime 1.17+ (and the pinned 1.32) runs.
OPSETS: Final = {"": 17, "ai.onnx.ml": 3}

_MESSAGE_CHARS: Final = 300


# A model project's hook: called with skl2onnx's update_registered_converter, it registers its converters.
ConverterHook = Callable[[Callable[..., Any]], None]


@dataclass(frozen=True)
class ServingPackage:
    """How a model will be served: ``onnx`` with the model's bytes, or ``sklearn``; why; and the parity
    figures measured on the holdout (JSON-able)."""

    flavor: ServingFlavor
    onnx: bytes | None
    reason: str
    parity: dict[str, Any] = field(default_factory=dict)


def serving_signature(contract: DataContract, classes: list[str] | None) -> dict[str, Any]:
    """What a request must carry, from the contract: recorded on the registry version as its signature
    and read back by :meth:`shared.serving.runtime.Signature.from_dict` on every load."""
    return {
        "task": contract.task.value,
        "target": contract.target,
        "id_column": contract.id_column,
        "timestamp_column": contract.timestamp_column,
        "features": {
            name: feature.model_dump(mode="json", exclude_none=True)
            for name, feature in contract.features.items()
        },
        "classes": classes,
    }


def package_for_serving(
    pipeline: Any,
    holdout: pd.DataFrame,
    contract: DataContract,
    reference: pd.DataFrame | None = None,
    converters: ConverterHook | None = None,
) -> ServingPackage:
    """Convert ``pipeline`` to ONNX and keep it if it matches scikit-learn on every ``holdout`` row (the
    tolerances are in this module's docstring); otherwise the scikit-learn flavour, with the reason.

    ``reference`` is :func:`shared.ml.training.predict_frame`'s output for the holdout when the caller has it
    already (Train does, for the reference profile): scikit-learn is then not asked again. ``converters`` is
    a model project's ``register_onnx_converters``: called with skl2onnx's ``update_registered_converter``
    before converting, so the project's own transformers can be converted (and then held to the same parity).
    """
    classification = contract.task is Task.CLASSIFICATION
    parity: dict[str, Any] = {
        "rows": 0,
        "opsets": dict(OPSETS),
        "tolerance": _tolerance(classification),
        "versions": _versions(),
    }
    features = prepare_features(holdout, contract)
    rows = len(features)
    if rows == 0:
        return _sklearn("the holdout is empty, so ONNX parity cannot be checked", parity)
    classes = [str(c) for c in pipeline.classes_] if classification else None
    if converters is not None:
        from skl2onnx import update_registered_converter  # noqa: PLC0415

        try:
            converters(update_registered_converter)
        except Exception as exc:  # the project's own code: whatever it raises, serve with scikit-learn
            return _sklearn(
                f"the project's register_onnx_converters failed ({type(exc).__name__}: {_short(exc)})", parity
            )
    try:
        model = _convert(pipeline, contract, classes)
    except Exception as exc:  # skl2onnx raises many types; any of them means "serve with scikit-learn"
        return _sklearn(f"ONNX conversion failed ({type(exc).__name__}: {_short(exc)})", parity)
    parity["onnx_bytes"] = len(model)
    try:
        runner = OnnxRunner(
            onnx_session(model), Signature.from_dict(serving_signature(contract, classes)), classes
        )
        onnx_out = runner.run(_feed(features, contract)).astype(np.float64)
    except Exception as exc:  # onnxruntime refusing the converted graph is a conversion failure too
        return _sklearn(
            f"onnxruntime could not run the converted model ({type(exc).__name__}: {_short(exc)})", parity
        )
    parity["rows"] = rows
    if reference is None:
        reference = predict_frame(pipeline, holdout, contract)
    if classes is not None:
        return _judge_classifier(reference, classes, onnx_out, model, parity)
    return _judge_regressor(reference, onnx_out, model, parity)


def _judge_classifier(
    reference: pd.DataFrame,
    classes: list[str],
    probabilities: np.ndarray,
    model: bytes,
    parity: dict[str, Any],
) -> ServingPackage:
    rows = len(reference)
    expected = reference[[f"{PROBABILITY_PREFIX}{c}" for c in classes]].to_numpy(dtype=np.float64)
    if probabilities.shape != expected.shape:
        return _sklearn(
            f"the ONNX model returns probabilities of shape {probabilities.shape}, "
            f"scikit-learn {expected.shape}",
            parity,
        )
    labels = np.asarray(classes, dtype=object)[pick_labels(probabilities)]
    # predict_frame's labels are scikit-learn's: the first maximum of predict_proba, as predict's.
    mismatches = int((labels != reference["prediction"].astype(str).to_numpy(dtype=object)).sum())
    difference = _max_difference(probabilities, expected)
    parity.update(label_mismatches=mismatches, max_probability_difference=_finite(difference))
    problems = []
    if mismatches:
        problems.append(f"labels differ on {mismatches} of {rows} holdout rows")
    if difference > PROBABILITY_TOLERANCE:
        problems.append(
            f"probabilities differ by up to {difference:.3g} (tolerance {PROBABILITY_TOLERANCE:g})"
        )
    if problems:
        return _sklearn("ONNX disagrees with scikit-learn: " + "; ".join(problems), parity)
    reason = (
        f"ONNX matches scikit-learn on all {rows} holdout rows: labels identical, probabilities within "
        f"{difference:.2g} (tolerance {PROBABILITY_TOLERANCE:g})"
    )
    return ServingPackage(flavor=ServingFlavor.ONNX, onnx=model, reason=reason, parity=parity)


def _judge_regressor(
    reference: pd.DataFrame, values: np.ndarray, model: bytes, parity: dict[str, Any]
) -> ServingPackage:
    rows = len(reference)
    expected = reference["prediction"].to_numpy(dtype=np.float64).reshape(-1)
    if values.shape != expected.shape:
        return _sklearn(
            f"the ONNX model returns {values.shape} values, scikit-learn {expected.shape}", parity
        )
    scale = float(np.max(np.abs(expected[np.isfinite(expected)]), initial=0.0))
    atol = VALUE_ATOL_SCALE * max(1.0, scale)
    parity["tolerance"] = {"rtol": VALUE_RTOL, "atol": atol}
    both_nan = np.isnan(values) & np.isnan(expected)
    within = both_nan | (np.abs(values - expected) <= atol + VALUE_RTOL * np.abs(expected))
    mismatches = int((~within).sum())
    difference = _max_difference(values, expected)
    parity.update(value_mismatches=mismatches, max_value_difference=_finite(difference))
    if mismatches:
        reason = (
            f"ONNX disagrees with scikit-learn: values differ on {mismatches} of {rows} holdout rows, by up "
            f"to {difference:.3g} (tolerance rtol {VALUE_RTOL:g}, atol {atol:.3g})"
        )
        return _sklearn(reason, parity)
    reason = (
        f"ONNX matches scikit-learn on all {rows} holdout rows: values within {difference:.2g} "
        f"(tolerance rtol {VALUE_RTOL:g}, atol {atol:.3g})"
    )
    return ServingPackage(flavor=ServingFlavor.ONNX, onnx=model, reason=reason, parity=parity)


def _convert(pipeline: Any, contract: DataContract, classes: list[str] | None) -> bytes:
    from skl2onnx import convert_sklearn  # noqa: PLC0415  (over a second to import; Train only)
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType  # noqa: PLC0415

    inputs = [
        (
            name,
            StringTensorType([None, 1]) if f.type is FeatureType.CATEGORICAL else FloatTensorType([None, 1]),
        )
        for name, f in contract.features.items()
    ]
    estimator = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
    # Plain probability tensors instead of a list of {class: p} maps: faster, and what serving reads.
    options = {id(estimator): {"zipmap": False}} if classes is not None else None
    with warnings.catch_warnings():
        # skl2onnx 1.20 hands onnx booleans where it wants ints (a DeprecationWarning per tree attribute); if
        # a later onnx refuses them, conversion fails and the reason says so.
        warnings.simplefilter("ignore", DeprecationWarning)
        onnx_model = convert_sklearn(
            pipeline, initial_types=inputs, options=options, target_opset=dict(OPSETS)
        )
    recorded = {ONNX_FEATURES_KEY: list(contract.features)}
    if classes is not None:
        recorded[ONNX_CLASSES_KEY] = classes
    for key, value in recorded.items():
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    data: bytes = onnx_model.SerializeToString()
    return data


def _feed(features: pd.DataFrame, contract: DataContract) -> dict[str, np.ndarray]:
    # Column by column, the same arrays OnnxRunner.feed builds row by row for a request.
    feed: dict[str, np.ndarray] = {}
    for name, f in contract.features.items():
        column = features[name]
        if f.type is FeatureType.CATEGORICAL:
            feed[name] = column.to_numpy(dtype=object).reshape(-1, 1)
        else:
            feed[name] = column.to_numpy(dtype=np.float64).astype(np.float32).reshape(-1, 1)
    return feed


def _max_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    difference = np.abs(actual - expected)
    # A NaN on one side only is as far apart as values get; on both sides it agrees.
    difference = np.where(np.isnan(actual) & np.isnan(expected), 0.0, difference)
    difference = np.where(np.isnan(difference), np.inf, difference)
    return float(difference.max(initial=0.0))


def _finite(value: float) -> float | None:
    # The figures travel in the pipeline's JSON state and the registry: no infinities there (None instead;
    # the reason still says "inf").
    return value if np.isfinite(value) else None


def _tolerance(classification: bool) -> dict[str, float]:
    if classification:
        return {"probability_abs": PROBABILITY_TOLERANCE}
    return {"rtol": VALUE_RTOL, "atol_scale": VALUE_ATOL_SCALE}


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("skl2onnx", "onnx", "onnxruntime"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _sklearn(reason: str, parity: dict[str, Any]) -> ServingPackage:
    return ServingPackage(flavor=ServingFlavor.SKLEARN, onnx=None, reason=reason, parity=parity)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 3] + "..."
