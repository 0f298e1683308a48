"""Serving: the runtime behind the ``predict`` function and the pipeline's ``verify`` step.

Four parts, used in this order on every request:

- :class:`Signature` checks request rows against what the model was trained on (the contract's features,
  recorded on the registry version) and reports every problem at once, by row and field
  (:class:`RowProblem`); valid rows are prepared with :func:`shared.ml.features.prepare_row`'s rule.
- :func:`load_served_model` reads a version's artifact, checks its sha256 against the registry *before*
  deserialising it, and returns a :class:`ServedModel` for its serving flavour.
- :meth:`ServedModel.predict` runs a batch of prepared rows: one onnxruntime call for the ONNX flavour, the
  scikit-learn pipeline for the others.
- :class:`ModelCache` keeps loaded models by (name, version) and re-reads an alias at most every
  ``refresh_seconds``, so a promotion or a rollback is served within that interval without a redeploy.

What a request may send (checked by :meth:`Signature.validate_rows`; a request is all or nothing):

- numeric features: JSON numbers (not booleans), finite and within float32's range (about ±3.4e38, what
  the models compute in), within the contract's ``min``/``max``. Numeric
  *strings* such as ``"12"`` are refused, with a hint to send the number: JSON has numbers, and a string
  that looks like one (``"1,234"``, ``"12 "``) is more often a client bug than an intent;
- boolean features: ``true``/``false``, the numbers ``1``/``0``, or the words a data file may hold
  (``"true"``/``"false"``, ``"yes"``/``"no"``, ``"1"``/``"0"``, in any case);
- categorical features: strings (a number is refused: send ``"3"``), within ``allowed`` when the contract
  lists it; an empty string is a missing value, as in a data file;
- ``null`` or an absent field: a missing value, allowed only for a ``nullable`` feature;
- the id column (and the timestamp column) may be sent and is passed through; any other field is refused.

A model trained with feature views records them (:class:`ViewSpec`): the prediction API fills a view's
features that a row leaves out from the online store, by the row's id (the views' entity), before
:meth:`Signature.validate_rows` checks the row (:mod:`shared.serving.lookup`).

Import budget: this module imports numpy and light ``shared`` modules only. onnxruntime is imported when
an ONNX model is loaded; scikit-learn and pandas only when a scikit-learn-flavour model is loaded, so a
process serving ONNX models never imports either (a test checks it).
"""

from __future__ import annotations

import hmac
import json
import math
import numbers
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import numpy as np

from shared.errors import ContractError, IntegrityError, NotFoundError, TransientError
from shared.hashing import sha256_hex
from shared.ml.features import BOOLEAN, CATEGORICAL, MISSING, NUMERIC, boolean_text
from shared.serving.limits import shown
from shared.storage import ObjectRef

if TYPE_CHECKING:  # the registry module brings boto3 and Powertools: types only
    from shared.registry import Alias, ArtifactRef, ModelVersion, RegisteredModel
    from shared.storage import ObjectStore

__all__ = [
    "DEFAULT_REFRESH_SECONDS",
    "ONNX_CLASSES_KEY",
    "ONNX_FEATURES_KEY",
    "ColumnPredictions",
    "FeatureSpec",
    "Flavor",
    "ModelCache",
    "OnnxRunner",
    "Predictions",
    "RowProblem",
    "ServedModel",
    "Signature",
    "SklearnRunner",
    "VersionSource",
    "ViewSpec",
    "load_served_model",
    "onnx_session",
]

Flavor = Literal["onnx", "sklearn"]

DEFAULT_REFRESH_SECONDS: Final = 5.0

# Metadata the packaging step writes into the ONNX model, checked against the registry's signature at load.
ONNX_CLASSES_KEY: Final = "flywheel.classes"
ONNX_FEATURES_KEY: Final = "flywheel.features"

_PROBABILITIES_OUTPUT: Final = "probabilities"
# Models compute in float32 (ONNX always, scikit-learn's trees too): a larger number would become infinite
# there, which scikit-learn refuses with an error and ONNX may turn into NaN probabilities.
_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)
_KINDS: Final = (NUMERIC, CATEGORICAL, BOOLEAN)


# --- the signature ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowProblem:
    """One problem in a request: the row (0-based), the field (None: the row itself) and a sentence."""

    row: int
    field: str | None
    problem: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "problem": self.problem}


@dataclass(frozen=True)
class FeatureSpec:
    """One feature as the registry records it (the contract's feature at training time)."""

    name: str
    type: str  # "numeric" | "categorical" | "boolean"
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ViewSpec:
    """A feature view the model was trained with: ``features`` may be filled from the online store by the
    row's ``entity`` (the model's id column); a stored value older than ``ttl_seconds`` is missing."""

    name: str
    entity: str
    ttl_seconds: float
    features: tuple[str, ...]


@dataclass(frozen=True)
class Signature:
    """What a request must carry for one model version (``ModelVersion.signature``)."""

    task: str  # "classification" | "regression"
    features: tuple[FeatureSpec, ...]
    target: str | None = None
    id_column: str | None = None
    timestamp_column: str | None = None
    classes: tuple[str, ...] | None = None
    views: tuple[ViewSpec, ...] = ()
    _by_name: dict[str, FeatureSpec] = field(init=False, repr=False, compare=False)
    _allowed: dict[str, frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {f.name: f for f in self.features})
        allowed = {f.name: frozenset(f.allowed) for f in self.features if f.allowed is not None}
        object.__setattr__(self, "_allowed", allowed)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """Read a registry signature (what :func:`shared.pipeline.steps.signature` records)."""
        raw_features = data.get("features")
        task = data.get("task")
        if (
            not isinstance(raw_features, Mapping)
            or not raw_features
            or task not in ("classification", "regression")
        ):
            raise ContractError(
                "the model version has no usable signature (task and features are required)",
                problems=[f"signature: {dict(data)!r}"[:300]],
            )
        features = []
        for name, spec in raw_features.items():
            kind = str(spec.get("type"))
            if kind not in _KINDS:
                raise ContractError(f"signature: feature {name!r} has an unknown type {kind!r}")
            allowed = spec.get("allowed")
            features.append(
                FeatureSpec(
                    name=str(name),
                    type=kind,
                    nullable=bool(spec.get("nullable", False)),
                    min=_optional_float(spec.get("min")),
                    max=_optional_float(spec.get("max")),
                    allowed=tuple(str(v) for v in allowed) if allowed is not None else None,
                )
            )
        classes = data.get("classes")
        return cls(
            task=str(task),
            features=tuple(features),
            target=data.get("target"),
            id_column=data.get("id_column"),
            timestamp_column=data.get("timestamp_column"),
            classes=tuple(str(c) for c in classes) if classes else None,
            views=_views(data.get("feature_views"), {f.name for f in features}),
        )

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def passthrough(self) -> tuple[str, ...]:
        """Fields a request may send besides the features; they reach the prepared row unchanged."""
        return tuple(c for c in (self.id_column, self.timestamp_column) if c)

    def validate_rows(self, rows: Sequence[Any]) -> tuple[list[dict[str, Any]], list[RowProblem]]:
        """Check every row and prepare them: ``(prepared, [])`` when all are valid, ``([], problems)`` with
        every problem of every row otherwise (a request is answered whole or refused whole).

        A prepared row holds the features in signature order (numeric and boolean as ``float``, NaN when
        missing; categorical as ``str``, :data:`~shared.ml.features.MISSING` when missing) and then the
        passthrough fields that were sent.
        """
        prepared: list[dict[str, Any]] = []
        problems: list[RowProblem] = []
        passthrough = self.passthrough
        for position, row in enumerate(rows):
            if not isinstance(row, Mapping):
                problems.append(
                    RowProblem(position, None, f"must be an object of feature values, got {_describe(row)}")
                )
                continue
            out: dict[str, Any] = {}
            for spec in self.features:
                present = spec.name in row
                value, problem = self._prepare(spec, row[spec.name] if present else None, present)
                if problem is not None:
                    problems.append(RowProblem(position, spec.name, problem))
                else:
                    out[spec.name] = value
            for name in row:
                if name in self._by_name:
                    continue
                if name in passthrough:
                    out[name] = row[name]
                else:
                    problems.append(RowProblem(position, str(name), self._unknown(str(name))))
            prepared.append(out)
        return ([], problems) if problems else (prepared, [])

    def _unknown(self, name: str) -> str:
        if name == self.target:
            return "is the model's target; a request carries features only"
        names = self.feature_names
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        return f"is not a feature of this model (its features: {shown})"

    def _prepare(self, spec: FeatureSpec, value: Any, present: bool) -> tuple[Any, str | None]:
        if value is None or (spec.type == CATEGORICAL and isinstance(value, str) and not value.strip()):
            if spec.nullable:
                return (MISSING if spec.type == CATEGORICAL else math.nan), None
            if not present:
                return None, "is missing; the feature is required"
            return (
                None,
                f"is {'an empty string' if value is not None else 'null'}, but the feature is not nullable",
            )
        if spec.type == NUMERIC:
            return _numeric(spec, value)
        if spec.type == BOOLEAN:
            return _boolean(value)
        return self._categorical(spec, value)

    def _categorical(self, spec: FeatureSpec, value: Any) -> tuple[Any, str | None]:
        if not isinstance(value, str):
            hint = f'; send "{shown(str(value))}"' if _is_number(value) else ""
            return None, f"must be a string (a category), got {_describe(value)}{hint}"
        allowed = self._allowed.get(spec.name)
        if allowed is not None and value not in allowed:
            allowed_text = ", ".join(spec.allowed or ())
            return None, f"{shown(value)!r} is not an allowed category (allowed: {allowed_text})"
        return value, None


def _views(raw: Any, features: set[str]) -> tuple[ViewSpec, ...]:
    """The signature's ``feature_views``, as :func:`shared.featurestore.contracts.view_signature` records
    them."""
    if not raw:
        return ()
    if not isinstance(raw, Mapping):
        raise ContractError("signature: feature_views must map each view to its entity, TTL and features")
    views = []
    for name, spec in raw.items():
        listed = tuple(str(f) for f in (spec.get("features") or ()))
        unknown = [f for f in listed if f not in features]
        if not spec.get("entity") or spec.get("ttl_days") is None or not listed or unknown:
            raise ContractError(
                f"signature: feature view {name!r} needs an entity, a TTL and features of the model",
                problems=[f"feature_views.{name}: {dict(spec)!r}"[:300]],
            )
        views.append(
            ViewSpec(
                name=str(name),
                entity=str(spec["entity"]),
                ttl_seconds=float(spec["ttl_days"]) * 86_400.0,
                features=listed,
            )
        )
    return tuple(views)


def _numeric(spec: FeatureSpec, value: Any) -> tuple[Any, str | None]:
    if not _is_number(value):
        hint = ""
        if isinstance(value, str) and _looks_numeric(value):
            hint = f"; send the number {shown(value.strip())} without quotes"
        return None, f"must be a number, got {_describe(value)}{hint}"
    try:
        number = float(value)
    except OverflowError:
        return None, f"is too large ({str(value)[:20]}...)"
    if not math.isfinite(number):
        return None, f"must be a finite number, got {number}"
    if abs(number) > _FLOAT32_MAX:
        return None, f"is {number:g}, beyond the range a model computes in (about ±3.4e38)"
    if spec.min is not None and number < spec.min:
        return None, f"is {_number(number)}, below the minimum {_number(spec.min)}"
    if spec.max is not None and number > spec.max:
        return None, f"is {_number(number)}, above the maximum {_number(spec.max)}"
    return number, None


def _boolean(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, bool | np.bool_):
        return (1.0 if value else 0.0), None
    if _is_number(value):
        if value in (0, 1):
            return float(value), None
        return None, f"must be true or false (or 1/0), got {_describe(value)}"
    if isinstance(value, str):
        parsed = boolean_text(value)
        if parsed is not None:
            return parsed, None
    return None, f"must be true or false (or 1/0), got {_describe(value)}"


def _is_number(value: Any) -> bool:
    # JSON numbers arrive as int or float; numpy's scalars (a verification run reads a DataFrame) are
    # numbers.Real too. A boolean is an int to Python, but not a number to a client.
    kind = type(value)
    if kind is float or kind is int:  # the JSON case, without the slower abstract-class check
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool | np.bool_):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {shown(value)!r}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


# --- the served model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Predictions:
    """One prediction per row: class labels (classification) or numbers (regression), and for
    classification the probability of each class, in the model's class order."""

    predictions: list[str | float]
    probabilities: list[dict[str, float]] | None = None


@dataclass(frozen=True)
class ColumnPredictions:
    """:class:`Predictions` as arrays, for a batch given as columns: ``predictions`` an object array of
    labels (classification) or float64 values (regression); ``probabilities`` ``(n, classes)`` float64 in
    the model's class order, for classification."""

    predictions: np.ndarray
    probabilities: np.ndarray | None = None


class _Runner(Protocol):
    def predict(self, rows: Sequence[Mapping[str, Any]]) -> Predictions: ...

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> ColumnPredictions: ...


def onnx_session(model: bytes) -> Any:
    """An onnxruntime session for ``model`` as serving runs it (what packaging's parity check uses too).

    One intra-op and one inter-op thread, sequential execution: a Lambda function has one or two vCPUs,
    serves one request at a time, and a batch of up to a thousand rows is too small to gain from a pool
    (whose threads would also spin against the request thread). Full graph optimisation; warnings off.
    """
    import onnxruntime as ort  # noqa: PLC0415  (only a process that serves an ONNX model pays for it)

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


class OnnxRunner:
    """A converted pipeline in onnxruntime: one input per feature, each an ``(n, 1)`` array (float32 for
    numeric and boolean features, strings for categorical ones); probabilities or values out."""

    def __init__(self, session: Any, signature: Signature, classes: Sequence[str] | None) -> None:
        self._session = session
        self._classification = signature.task == "classification"
        self._classes = list(classes or [])
        self._columns = [(f.name, f.type == CATEGORICAL) for f in signature.features]
        inputs = {i.name: i.type for i in session.get_inputs()}
        expected = {name: ("tensor(string)" if text else "tensor(float)") for name, text in self._columns}
        if inputs != expected:
            raise IntegrityError(
                "the ONNX model's inputs do not match the registry's signature",
                problems=[f"ONNX inputs {inputs}", f"signature features {expected}"],
            )
        outputs = [o.name for o in session.get_outputs()]
        if self._classification:
            if _PROBABILITIES_OUTPUT not in outputs:
                raise IntegrityError(
                    f"the ONNX classifier has no {_PROBABILITIES_OUTPUT!r} output ({outputs})"
                )
            self._outputs = [_PROBABILITIES_OUTPUT]
        else:
            self._outputs = outputs[:1]

    def feed(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """One ``(n, 1)`` array per input, from prepared rows."""
        count = len(rows)
        feed: dict[str, np.ndarray] = {}
        for name, text in self._columns:
            values = [row[name] for row in rows]
            if text:
                feed[name] = np.array(values, dtype=object).reshape(count, 1)
            else:
                feed[name] = np.array(values, dtype=np.float32).reshape(count, 1)
        return feed

    def feed_columns(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One ``(n, 1)`` array per input, from prepared columns (what :meth:`feed` makes of rows)."""
        feed: dict[str, np.ndarray] = {}
        for name, text in self._columns:
            values = np.asarray(columns[name], dtype=object if text else np.float32)
            feed[name] = values.reshape(-1, 1)
        return feed

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> ColumnPredictions:
        result = self.run(self.feed_columns(columns))
        if not self._classification:
            return ColumnPredictions(np.asarray(result, dtype=np.float64))
        return _classified_columns(result, self._classes)

    def run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, classes)`` for a classifier, values ``(n,)`` for a regressor (float32)."""
        (output,) = self._session.run(self._outputs, feed)
        array = np.asarray(output)
        return array if self._classification else array.reshape(-1)

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> Predictions:
        if not rows:
            return Predictions([], [] if self._classification else None)
        result = self.run(self.feed(rows))
        if not self._classification:
            return Predictions(result.tolist())
        return _classified(result, self._classes)


class SklearnRunner:
    """The scikit-learn pipeline itself, for a model that could not be converted; pandas is imported on
    the first prediction (the pipeline selects its columns by name)."""

    def __init__(self, pipeline: Any, signature: Signature) -> None:
        self._pipeline = pipeline
        self._classification = signature.task == "classification"
        self._columns = [(f.name, f.type == CATEGORICAL) for f in signature.features]
        self.classes = [str(c) for c in pipeline.classes_] if self._classification else []

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> Predictions:
        import pandas as pd  # noqa: PLC0415  (the scikit-learn flavour only)

        if not rows:
            return Predictions([], [] if self._classification else None)
        frame = pd.DataFrame(
            {
                name: np.array([row[name] for row in rows], dtype=object if text else np.float64)
                for name, text in self._columns
            }
        )
        if not self._classification:
            return Predictions(np.asarray(self._pipeline.predict(frame), dtype=np.float64).tolist())
        return _classified(np.asarray(self._pipeline.predict_proba(frame)), self.classes)

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> ColumnPredictions:
        import pandas as pd  # noqa: PLC0415  (the scikit-learn flavour only)

        frame = pd.DataFrame(
            {
                name: np.asarray(columns[name], dtype=object if text else np.float64)
                for name, text in self._columns
            }
        )
        if not self._classification:
            return ColumnPredictions(np.asarray(self._pipeline.predict(frame), dtype=np.float64))
        return _classified_columns(np.asarray(self._pipeline.predict_proba(frame)), self.classes)


# Probabilities this close count as a tie when picking the label: ONNX computes in float32, so a forest's
# exact 0.5/0.5 can arrive as 0.5000004/0.4999996 and would otherwise flip the label scikit-learn gives.
TIE_DECIMALS = 6


def pick_labels(probabilities: np.ndarray) -> np.ndarray:
    """scikit-learn's rule, robust to float32: the first class of highest probability, ties within 1e-6
    going to the first (argmax returns the first maximum)."""
    picked: np.ndarray = np.round(probabilities, TIE_DECIMALS).argmax(axis=1)
    return picked


def _classified(probabilities: np.ndarray, classes: Sequence[str]) -> Predictions:
    # ONNX's own label output may pick another on an exact tie, so labels always come from probabilities.
    picked = pick_labels(probabilities).tolist()
    rows = probabilities.tolist()
    return Predictions(
        predictions=[classes[i] for i in picked],
        probabilities=[dict(zip(classes, row, strict=True)) for row in rows],
    )


def _classified_columns(probabilities: np.ndarray, classes: Sequence[str]) -> ColumnPredictions:
    labels = np.array(list(classes), dtype=object)
    array = np.asarray(probabilities, dtype=np.float64)
    return ColumnPredictions(labels[pick_labels(array)] if len(array) else labels[:0], array)


@dataclass(frozen=True)
class ServedModel:
    """A model version ready to answer: ``predict`` takes rows prepared by :meth:`Signature.validate_rows`.

    Thread-safe: onnxruntime sessions and fitted scikit-learn pipelines may run concurrently, and nothing
    here changes after loading.
    """

    name: str
    version: int
    flavor: Flavor
    signature: Signature
    classes: list[str] | None
    load_seconds: float
    runner: _Runner = field(repr=False)

    def predict(self, prepared_rows: Sequence[Mapping[str, Any]]) -> Predictions:
        """Predict a batch in one call of the model."""
        return self.runner.predict(prepared_rows)

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> ColumnPredictions:
        """Predict a batch given as prepared columns (one array per feature, in the prepared rows' types:
        float for numeric and boolean features, ``str`` for categorical ones) in one call of the model:
        what :meth:`predict` answers for the same rows, as arrays."""
        return self.runner.predict_columns(columns)

    def validate_and_predict(self, rows: Sequence[Any]) -> tuple[Predictions | None, list[RowProblem]]:
        """:meth:`Signature.validate_rows`, then :meth:`predict` if every row is valid."""
        prepared, problems = self.signature.validate_rows(rows)
        if problems:
            return None, problems
        return self.predict(prepared), []


def load_served_model(
    version: ModelVersion, objects: ObjectStore, *, flavor: Flavor | None = None
) -> ServedModel:
    """Load ``version`` in its serving flavour (or ``flavor``, e.g. to compare both in verification).

    The artifact's bytes are checked against the sha256 the registry recorded before anything parses them
    (:class:`~shared.errors.IntegrityError` names the model, the version and both digests). A first
    prediction on a row of missing values warms the runtime up, so the first request is not the slow one;
    ``load_seconds`` includes it.
    """
    started = time.perf_counter()
    signature = Signature.from_dict(version.signature)
    chosen: Flavor = flavor or ("onnx" if str(version.serving_flavor) == "onnx" else "sklearn")
    runner: _Runner
    if chosen == "onnx":
        artifact = version.onnx_artifact
        if artifact is None:
            raise NotFoundError(
                f"{version.name} v{version.version} is registered without an ONNX artifact "
                f"({version.flavor_reason or 'no reason recorded'})"
            )
        session = onnx_session(_verified_bytes(version, artifact, objects, "ONNX model"))
        classes = _onnx_classes(session, signature)
        runner = OnnxRunner(session, signature, classes)
    else:
        body = _verified_bytes(version, version.artifact, objects, "model")
        # Only this flavour needs scikit-learn (and pandas, which shared.ml.training imports).
        from shared.ml.projects import ModelCode, code_from_archive  # noqa: PLC0415
        from shared.ml.training import model_from_bytes  # noqa: PLC0415

        # A model project's pipeline is unpickled with the code it was trained with, whatever the image holds.
        code: ModelCode | None = None
        if version.code_artifact is not None:
            archive = _verified_bytes(version, version.code_artifact, objects, "model code")
            code = code_from_archive(version.name, archive, version.code_artifact.sha256)
        sklearn_runner = SklearnRunner(model_from_bytes(body, version.artifact.sha256, code), signature)
        classes = sklearn_runner.classes or None
        runner = sklearn_runner
    warm_up = {f.name: (MISSING if f.type == CATEGORICAL else math.nan) for f in signature.features}
    runner.predict([warm_up])
    return ServedModel(
        name=version.name,
        version=version.version,
        flavor=chosen,
        signature=signature,
        classes=list(classes) if classes else None,
        load_seconds=time.perf_counter() - started,
        runner=runner,
    )


def _verified_bytes(version: ModelVersion, artifact: ArtifactRef, objects: ObjectStore, what: str) -> bytes:
    body = objects.get(ObjectRef.parse(artifact.uri)).body
    actual = sha256_hex(body)
    expected = artifact.sha256.strip().lower()
    if not hmac.compare_digest(actual, expected):
        raise IntegrityError(
            f"{version.name} v{version.version}: the {what} at {artifact.uri} has sha256 {actual[:12]}..., "
            f"but the registry recorded {expected[:12]}...; it was altered or mixed up, so it is not loaded",
            problems=[f"expected sha256 {expected}", f"actual sha256 {actual}"],
        )
    return body


def _onnx_classes(session: Any, signature: Signature) -> list[str] | None:
    recorded = session.get_modelmeta().custom_metadata_map
    features = json.loads(recorded[ONNX_FEATURES_KEY]) if ONNX_FEATURES_KEY in recorded else None
    if features is not None and features != signature.feature_names:
        raise IntegrityError(
            "the ONNX model was built for other features than the registry's signature",
            problems=[f"ONNX {features}", f"signature {signature.feature_names}"],
        )
    if signature.task != "classification":
        return None
    classes = json.loads(recorded[ONNX_CLASSES_KEY]) if ONNX_CLASSES_KEY in recorded else None
    expected = list(signature.classes or [])
    if classes is not None and expected and classes != expected:
        raise IntegrityError(
            "the ONNX model's classes differ from the registry's signature",
            problems=[f"ONNX {classes}", f"signature {expected}"],
        )
    found = classes or expected
    if not found:
        raise IntegrityError("neither the ONNX model nor the signature records the classes")
    return [str(c) for c in found]


# --- the cache ------------------------------------------------------------------------------------------


class VersionSource(Protocol):
    """What the cache reads from the registry (:class:`shared.registry.ModelRegistry` provides it)."""

    def get_model_version(self, name: str, version: int) -> ModelVersion: ...

    def get_alias(self, name: str, alias: str) -> Alias: ...

    def get_registered_model(self, name: str) -> RegisteredModel: ...


@dataclass
class _AliasEntry:
    version: int
    read_at: float


class ModelCache:
    """Loaded models by (name, version), and aliases re-read at most every ``refresh_seconds``.

    A request for an alias within ``refresh_seconds`` of the last read is served by the version read then;
    after it, the alias is read again, so a promotion or rollback is served within that interval with no
    redeploy. A pinned version (``version=N``) never reads the alias. If the registry fails transiently
    while a version is known, that version keeps serving until the next interval. Versions are loaded once
    (concurrent requests for a version wait for the one load); the ``max_models`` most recently used stay.
    Thread-safe.
    """

    def __init__(
        self,
        registry: VersionSource,
        objects: ObjectStore,
        *,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_models: int = 4,
        loader: Callable[[ModelVersion, ObjectStore], ServedModel] = load_served_model,
    ) -> None:
        self._registry = registry
        self._objects = objects
        self._refresh = refresh_seconds
        self._clock = clock
        self._max_models = max(1, max_models)
        self._loader = loader
        self._lock = threading.Lock()
        self._models: OrderedDict[tuple[str, int], ServedModel] = OrderedDict()
        self._loading: dict[tuple[str, int], threading.Lock] = {}
        self._aliases: dict[tuple[str, str], _AliasEntry] = {}
        self._alias_locks: dict[tuple[str, str], threading.Lock] = {}

    def resolve(self, name: str, alias: str = "production", *, version: int | None = None) -> ServedModel:
        """The model behind ``alias`` (or the pinned ``version``), loaded on first use.

        Raises :class:`~shared.errors.NotFoundError` for an unknown model, version or alias.
        """
        number = version if version is not None else self.alias_version(name, alias)
        return self._model(name, number)

    def alias_version(self, name: str, alias: str = "production") -> int:
        """The version ``alias`` points to, read from the registry at most every ``refresh_seconds``."""
        key = (name, alias)
        with self._lock:
            entry = self._aliases.get(key)
            if entry is not None and self._clock() - entry.read_at < self._refresh:
                return entry.version
            lock = self._alias_locks.setdefault(key, threading.Lock())
        with lock:  # one registry read per expiry, however many requests arrive at once
            with self._lock:
                entry = self._aliases.get(key)
                if entry is not None and self._clock() - entry.read_at < self._refresh:
                    return entry.version
            try:
                number = self._read_alias(name, alias)
            except TransientError:
                if entry is None:
                    raise
                number = entry.version  # keep serving what we know; try again after the interval
            with self._lock:
                self._aliases[key] = _AliasEntry(number, self._clock())
            return number

    def clear(self) -> None:
        """Forget every loaded model and alias."""
        with self._lock:
            self._models.clear()
            self._aliases.clear()

    def _read_alias(self, name: str, alias: str) -> int:
        try:
            return self._registry.get_alias(name, alias).version
        except NotFoundError:
            self._registry.get_registered_model(name)  # an unknown model says so, not "no alias"
            if alias == "production":
                raise NotFoundError(
                    f"model {name!r} has no production version yet: no version has been promoted"
                ) from None
            raise NotFoundError(f"model {name!r} has no alias {alias!r}") from None

    def _model(self, name: str, number: int) -> ServedModel:
        key = (name, number)
        with self._lock:
            served = self._models.get(key)
            if served is not None:
                self._models.move_to_end(key)
                return served
            lock = self._loading.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                served = self._models.get(key)
            if served is not None:
                return served
            try:
                served = self._loader(self._registry.get_model_version(name, number), self._objects)
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)
                raise
            with self._lock:
                # Cached and unlocked in one step: a request arriving now finds the model, not a new lock.
                self._models[key] = served
                self._loading.pop(key, None)
                while len(self._models) > self._max_models:
                    self._models.popitem(last=False)
            return served
