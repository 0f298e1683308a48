"""Training: turn a validated dataset and its contract into a fitted scikit-learn pipeline.

Owns the model's shape (preprocessing + the estimator the contract names), the holdout split, the
artifact's bytes and their integrity, and the reference profile the drift monitor compares live traffic
with. Pure functions over DataFrames: no AWS, no files.

Input convention (what :mod:`shared.data.validation` produces): columns in ``contract.columns`` order; numeric
and boolean features float64 (booleans 1.0/0.0, NaN when missing); categorical features as text with
None/NaN when missing; a classification target as text, a regression target float64; the timestamp as
``datetime64[ns, UTC]``.
"""

from __future__ import annotations

import hmac
import importlib.metadata
import math
import pickle
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils._param_validation import InvalidParameterError

from shared.data.contract import ESTIMATORS, DataContract, FeatureType, Task
from shared.errors import ContractError, DataValidationError, IntegrityError
from shared.hashing import sha256_hex
from shared.ml import features
from shared.ml.features import MISSING
from shared.ml.projects import ModelCode, build_estimator, import_code

__all__ = [
    "ESTIMATOR_CLASSES",
    "MISSING",
    "PROBABILITY_PREFIX",
    "PROFILE_FORMAT",
    "TrainedModel",
    "bin_shares",
    "build_pipeline",
    "check_training_params",
    "library_versions",
    "model_from_bytes",
    "model_to_bytes",
    "predict_frame",
    "prepare_features",
    "prepare_row",
    "reference_profile",
    "sha256_hex",
    "split_holdout",
    "train",
    "with_params",
]

# Column prefix of class probabilities in :func:`predict_frame`'s output.
PROBABILITY_PREFIX = "proba_"

PROFILE_FORMAT = 1

# Every name in shared.data.contract.ESTIMATORS, per task, to its scikit-learn class.
ESTIMATOR_CLASSES: dict[Task, dict[str, type[Any]]] = {
    Task.CLASSIFICATION: {
        "logistic_regression": LogisticRegression,
        "random_forest": RandomForestClassifier,
        "gradient_boosting": GradientBoostingClassifier,
        "hist_gradient_boosting": HistGradientBoostingClassifier,
        "extra_trees": ExtraTreesClassifier,
        "decision_tree": DecisionTreeClassifier,
    },
    Task.REGRESSION: {
        "ridge": Ridge,
        "linear_regression": LinearRegression,
        "random_forest": RandomForestRegressor,
        "gradient_boosting": GradientBoostingRegressor,
        "hist_gradient_boosting": HistGradientBoostingRegressor,
        "extra_trees": ExtraTreesRegressor,
        "decision_tree": DecisionTreeRegressor,
    },
}

_SEED_PARAM = "random_state"
_DECILES = tuple(i / 10 for i in range(1, 10))
_PROBABILITY_EDGES = tuple(round(i / 10, 1) for i in range(11))


@dataclass
class TrainedModel:
    """A fitted pipeline and what the later stages need to know about how it was made.

    ``feature_names`` are the pipeline's input columns (the contract's features, in order); ``params`` are
    the estimator's effective parameters (defaults included), JSON-able; ``train_frame`` is the training
    part of the split (what :func:`reference_profile` describes); ``holdout`` the part kept for evaluation.
    """

    pipeline: Pipeline
    classes: list[str] | None
    train_rows: int
    holdout: pd.DataFrame
    params: dict[str, Any]
    feature_names: list[str]
    fit_seconds: float
    train_frame: pd.DataFrame = field(repr=False)


# --- features -------------------------------------------------------------------------------------------


def _numeric_features(contract: DataContract) -> list[str]:
    return [name for name, f in contract.features.items() if f.type is not FeatureType.CATEGORICAL]


def prepare_features(frame: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """The contract's feature columns, ready for the pipeline: numeric and boolean as float64, categorical
    as text with every missing value replaced by :data:`MISSING`."""
    absent = [name for name in contract.features if name not in frame.columns]
    if absent:
        raise DataValidationError(f"the data has no column(s) {absent}", problems=absent)
    prepared = {}
    for name, feature in contract.features.items():
        column = frame[name]
        if feature.type is FeatureType.CATEGORICAL:
            # astype("str") keeps missing values missing, and writes any other value as str() would.
            prepared[name] = column.astype("str").fillna(MISSING).astype(object)
        else:
            try:
                prepared[name] = column.astype("float64")
            except (TypeError, ValueError) as exc:
                raise DataValidationError(
                    f"feature {name!r} is {feature.type.value} but holds non-numeric values", problems=[name]
                ) from exc
    return pd.DataFrame(prepared, index=frame.index)


def prepare_row(row: Mapping[str, Any], contract: DataContract) -> dict[str, Any]:
    """:func:`prepare_features` for one request row, in pure Python (the serving path has no pandas).

    Returns the contract's features in order: numeric and boolean as ``float`` (NaN when missing or absent;
    booleans 1.0/0.0), categorical as ``str`` with :data:`MISSING` for a missing value. The rule lives in
    :func:`shared.ml.features.prepare_row`, which serving calls without importing this module.
    """
    return features.prepare_row(row, {name: f.type.value for name, f in contract.features.items()})


# --- the pipeline ---------------------------------------------------------------------------------------


def _estimator_class(contract: DataContract) -> type[Any]:
    name = contract.training.estimator
    classes = ESTIMATOR_CLASSES[contract.task]
    if name not in classes or name not in ESTIMATORS[contract.task]:
        choices = list(ESTIMATORS[contract.task])
        raise ContractError(
            f"training.estimator: {name!r} is not a {contract.task.value} estimator; choose one of {choices}",
            problems=[f"training.estimator: unknown estimator {name!r}"],
        )
    return classes[name]


def check_training_params(contract: DataContract) -> None:
    """Refuse an unknown estimator, an unknown parameter or an invalid parameter value, listing every
    problem at once with the valid parameter names (what the CLI calls when a contract is put)."""
    estimator_class = _estimator_class(contract)
    valid = sorted(estimator_class().get_params(deep=False))
    label = f"{contract.training.estimator} ({estimator_class.__name__})"
    problems: list[str] = []
    for name, value in contract.training.params.items():
        if name == _SEED_PARAM:
            problems.append(
                f"training.params.{name}: set training.seed instead; it seeds every random choice"
            )
        elif name not in valid:
            problems.append(f"training.params.{name}: not a parameter of {label}; valid parameters: {valid}")
        else:
            invalid = _invalid_value(estimator_class, name, value)
            if invalid:
                problems.append(f"training.params.{name}: {invalid}")
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ContractError(f"training parameters of {label} are invalid:\n{lines}", problems=problems)


def _invalid_value(estimator_class: type[Any], name: str, value: Any) -> str | None:
    # One parameter at a time, so every bad value is reported, not only the first scikit-learn meets.
    # Constraints that span parameters (e.g. a solver and a penalty) surface at fit; train() maps them too.
    estimator = estimator_class(**{name: value})
    validate = getattr(estimator, "_validate_params", None)
    if validate is None:
        return None
    try:
        validate()
    except InvalidParameterError as exc:
        return str(exc)
    return None


def _estimator(contract: DataContract) -> Any:
    estimator_class = _estimator_class(contract)
    params = dict(contract.training.params)
    if _SEED_PARAM in estimator_class().get_params(deep=False):
        params[_SEED_PARAM] = contract.training.seed
    return estimator_class(**params)


# Estimators whose fit depends on the features' scale. Trees split on raw values instead: scaling would not
# change their fit, and it would make their ONNX form (which computes in float32) disagree with scikit-learn
# on values a rounding away from a split threshold.
SCALE_SENSITIVE = frozenset({"logistic_regression", "ridge", "linear_regression"})


def build_pipeline(contract: DataContract, code: ModelCode | None = None) -> Pipeline:
    """The model project's own pipeline when the contract names one (``training.pipeline``, built from
    ``code``; a bare estimator is wrapped in a one-step Pipeline). Else the built-in one: preprocessing
    (median-imputed numerics and booleans, standardised for linear estimators; one-hot categoricals that
    ignore unseen values, the :data:`MISSING` sentinel being one category) and the contract's estimator,
    seeded by ``training.seed`` where it takes a ``random_state``. Raises :class:`ContractError` for a bad
    estimator or parameter."""
    if contract.training.pipeline is not None:
        if code is None:
            raise ContractError(
                f"{contract.model}: training.pipeline {contract.training.pipeline!r} needs the project code",
                problems=["no model code"],
            )
        built = build_estimator(code, contract.training.pipeline, contract, contract.training.params)
        return built if isinstance(built, Pipeline) else Pipeline([("model", built)])
    check_training_params(contract)
    numeric = _numeric_features(contract)
    categorical = contract.features_of(FeatureType.CATEGORICAL)
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
        if contract.training.estimator in SCALE_SENSITIVE:
            steps.append(("scale", StandardScaler()))
        transformers.append(("numeric", Pipeline(steps), numeric))
    if categorical:
        # Dense output: histogram gradient boosting refuses sparse input, and the widths stay small.
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        transformers.append(("categorical", encoder, categorical))
    preprocess = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("preprocess", preprocess), ("estimator", _estimator(contract))])


def with_params(contract: DataContract, params: dict[str, Any]) -> DataContract:
    """The contract with ``params`` over its ``training.params``: what a trial, or the winner, trains."""
    training = contract.training.model_copy(update={"params": {**contract.training.params, **params}})
    return contract.model_copy(update={"training": training})


# --- the split ------------------------------------------------------------------------------------------


def _target(frame: pd.DataFrame, contract: DataContract) -> pd.Series:
    column = frame[contract.target]
    missing = int(column.isna().sum())
    if missing:
        raise DataValidationError(
            f"the target {contract.target!r} is missing in {missing} row(s)",
            problems=[f"{contract.target}: {missing} missing value(s)"],
        )
    if contract.task is Task.CLASSIFICATION:
        return column.astype("str").astype(object)
    return column.astype("float64")


def _holdout_size(rows: int, contract: DataContract) -> int:
    holdout = math.ceil(contract.training.holdout_fraction * rows)
    if rows < 2 or holdout >= rows:
        raise DataValidationError(
            f"{rows} row(s) cannot be split into a training part and a holdout",
            problems=[f"rows: {rows}, holdout_fraction: {contract.training.holdout_fraction}"],
        )
    return holdout


def split_holdout(frame: pd.DataFrame, contract: DataContract) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into (training part, holdout), each keeping the frame's index and row order.

    With a timestamp column the holdout is the latest ``holdout_fraction`` of rows: every row at or after
    the cut-off timestamp, so rows sharing a timestamp stay on one side (the holdout may be a little larger
    than the fraction); rows without a timestamp count as the earliest. Without one, a split shuffled by
    ``training.seed``, stratified by class for classification (plain when a class is too rare to stratify).
    Refuses (:class:`DataValidationError`) an empty side, and for classification a training part with
    fewer than two classes.
    """
    rows = len(frame)
    holdout_rows = _holdout_size(rows, contract)
    if contract.timestamp_column:
        stamps = pd.to_datetime(frame[contract.timestamp_column], utc=True)
        ordered = stamps.sort_values(na_position="first", kind="stable")
        cutoff = ordered.iloc[rows - holdout_rows]
        if pd.isna(cutoff):
            raise DataValidationError(
                f"too few rows have a {contract.timestamp_column!r} to hold out the latest ones",
                problems=[f"{contract.timestamp_column}: {int(stamps.isna().sum())} missing of {rows}"],
            )
        in_holdout = (stamps >= cutoff).fillna(False).to_numpy(dtype=bool)
        if in_holdout.all():
            raise DataValidationError(
                f"every row shares the earliest {contract.timestamp_column!r}, so the latest rows cannot "
                "be held out without leaving nothing to train on",
                problems=[f"{contract.timestamp_column}: cut-off {cutoff} leaves an empty training part"],
            )
        training, holdout = frame.loc[~in_holdout], frame.loc[in_holdout]
    else:
        positions = np.arange(rows)
        seed = contract.training.seed
        stratify = None
        if contract.task is Task.CLASSIFICATION:
            labels = _target(frame, contract)
            counts = labels.value_counts()
            # train_test_split needs two rows of each class and a holdout that can hold one of each.
            if counts.min() >= 2 and len(counts) <= holdout_rows and len(counts) <= rows - holdout_rows:
                stratify = labels.to_numpy()
        train_at, holdout_at = train_test_split(
            positions, test_size=holdout_rows, random_state=seed, shuffle=True, stratify=stratify
        )
        training, holdout = frame.iloc[np.sort(train_at)], frame.iloc[np.sort(holdout_at)]
    if contract.task is Task.CLASSIFICATION:
        classes = sorted(_target(training, contract).unique())
        if len(classes) < 2:
            raise DataValidationError(
                f"the training part has {len(classes)} class(es) of {contract.target!r} ({classes}); "
                "a classifier needs at least two",
                problems=[f"{contract.target}: training classes {classes}"],
            )
    return training, holdout


# --- training -------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    return repr(value)


def train(frame: pd.DataFrame, contract: DataContract, code: ModelCode | None = None) -> TrainedModel:
    """Split off the holdout (:func:`split_holdout`), fit :func:`build_pipeline` on the rest, and return
    the fitted pipeline with what the registry records about it."""
    training, holdout = split_holdout(frame, contract)
    pipeline = build_pipeline(contract, code)
    features = prepare_features(training, contract)
    target = _target(training, contract)
    started = time.perf_counter()
    try:
        pipeline.fit(features, target)
    except InvalidParameterError as exc:
        raise ContractError(f"training.params: {exc}", problems=[str(exc)]) from exc
    except ValueError as exc:
        # Validated data leaves the parameters as the likely cause (e.g. a solver that does not support a
        # penalty: constraints across parameters are only checked at fit). Defaults cannot be wrong, so
        # without parameters the data is to blame.
        if contract.training.params:
            message = f"{contract.training.builder} failed to fit with training.params "
            message += f"{contract.training.params}: {exc}"
            raise ContractError(message, problems=[str(exc)]) from exc
        raise DataValidationError(f"the data cannot be fitted: {exc}", problems=[str(exc)]) from exc
    fit_seconds = time.perf_counter() - started
    # A project's parameters are its build function's, whatever estimator they end up in.
    params = (
        dict(contract.training.params)
        if contract.training.pipeline is not None
        else pipeline.named_steps["estimator"].get_params(deep=False)
    )
    classes = [str(c) for c in pipeline.classes_] if contract.task is Task.CLASSIFICATION else None
    return TrainedModel(
        pipeline=pipeline,
        classes=classes,
        train_rows=len(training),
        holdout=holdout,
        params=_jsonable(params),
        feature_names=list(contract.features),
        fit_seconds=fit_seconds,
        train_frame=training,
    )


def predict_frame(pipeline: Pipeline, frame: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """Predictions for ``frame`` (same index): a ``prediction`` column (text labels or float64) and, for
    classification, one ``proba_<class>`` column per class in the model's class order."""
    features = prepare_features(frame, contract)
    if contract.task is Task.REGRESSION:
        return pd.DataFrame({"prediction": pipeline.predict(features).astype("float64")}, index=frame.index)
    probabilities = pipeline.predict_proba(features)
    classes = [str(c) for c in pipeline.classes_]
    labels = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
    columns: dict[str, Any] = {"prediction": pd.Series(labels, index=frame.index, dtype=object)}
    for position, label in enumerate(classes):
        columns[f"{PROBABILITY_PREFIX}{label}"] = probabilities[:, position]
    return pd.DataFrame(columns, index=frame.index)


# --- artifact bytes -------------------------------------------------------------------------------------


def model_to_bytes(pipeline: Pipeline) -> bytes:
    """The pipeline as pickle bytes (record their :func:`sha256_hex` with them)."""
    return pickle.dumps(pipeline, protocol=pickle.HIGHEST_PROTOCOL)


def model_from_bytes(data: bytes, expected_sha256: str, code: ModelCode | None = None) -> Pipeline:
    """Unpickle a pipeline only after its sha256 matches the recorded one (:class:`IntegrityError` if not):
    unpickling runs code, so bytes nobody vouched for are never loaded. A model project's pipeline is
    loaded with the code it was pickled with (``code``, already checked against its own sha256)."""
    actual = sha256_hex(data)
    if not hmac.compare_digest(actual, expected_sha256.strip().lower()):
        raise IntegrityError(
            f"model artifact sha256 {actual} does not match the recorded {expected_sha256}; not loading it",
            problems=[f"expected sha256 {expected_sha256}", f"actual sha256 {actual}"],
        )
    if code is not None:
        import_code(code)  # the package the pickle names, unpacked and importable
    pipeline = pickle.loads(data)  # noqa: S301  (the bytes were verified against the registry's sha256)
    if not isinstance(pipeline, Pipeline):
        raise IntegrityError(
            f"the artifact holds a {type(pipeline).__name__}, not a scikit-learn Pipeline",
            problems=[type(pipeline).__name__],
        )
    return pipeline


def library_versions() -> dict[str, str]:
    """Versions of the libraries a model depends on (those installed), and of Python."""
    versions: dict[str, str] = {}
    for package in ("scikit-learn", "numpy", "pandas", "scipy", "pyarrow", "skl2onnx", "onnxruntime"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    versions["python"] = platform.python_version()
    return versions


# --- the reference profile ------------------------------------------------------------------------------


def bin_shares(values: Sequence[float] | np.ndarray, edges: Sequence[float]) -> list[float]:
    """Share of the non-missing ``values`` in each bin ``(edges[i], edges[i + 1]]`` (a value below the first
    edge counts in the first bin, above the last in the last). All zeros when no value is present. The
    monitor bins live traffic with this same function, so both sides use one rule."""
    array = np.asarray(values, dtype="float64")
    array = array[~np.isnan(array)]
    bins = len(edges) - 1
    if array.size == 0:
        return [0.0] * bins
    positions = np.searchsorted(np.asarray(edges[1:-1], dtype="float64"), array, side="left")
    counts = np.bincount(positions, minlength=bins)
    return [float(c) / array.size for c in counts]


def _quantile_edges(values: np.ndarray) -> list[float]:
    present = values[~np.isnan(values)]
    cuts = np.unique(np.quantile(present, _DECILES)) if present.size else np.array([])
    return [-math.inf, *(float(c) for c in cuts), math.inf]


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _numeric_summary(values: np.ndarray) -> dict[str, Any]:
    present = values[~np.isnan(values)]
    edges = _quantile_edges(values)
    return {
        "edges": edges,
        "shares": bin_shares(values, edges),
        "missing_rate": float(1 - present.size / values.size) if values.size else 0.0,
        "mean": _finite_or_none(float(present.mean())) if present.size else None,
        "std": _finite_or_none(float(present.std())) if present.size else None,
    }


def _prediction_profile(predictions: pd.DataFrame, contract: DataContract) -> dict[str, Any]:
    if contract.task is Task.REGRESSION:
        values = predictions["prediction"].to_numpy(dtype="float64")
        summary = _numeric_summary(values)
        del summary["missing_rate"]
        return {"rows": len(predictions), **summary}
    columns = [c for c in predictions.columns if c.startswith(PROBABILITY_PREFIX)]
    if not columns:
        raise ValueError(f"classification predictions need {PROBABILITY_PREFIX}<class> columns")
    classes = [c.removeprefix(PROBABILITY_PREFIX) for c in columns]
    labels = predictions["prediction"].astype(object).map(str)
    counts = labels.value_counts()
    rows = len(predictions)
    shares = {label: (float(counts.get(label, 0)) / rows if rows else 0.0) for label in classes}
    probabilities = predictions[columns].to_numpy(dtype="float64")
    if len(classes) == 2:
        positive: str | None = sorted(classes)[1]
        score = probabilities[:, classes.index(positive)]
        kind = "positive_class"
    else:
        positive, score, kind = None, probabilities.max(axis=1), "max"
    edges = list(_PROBABILITY_EDGES)
    return {
        "rows": rows,
        "classes": classes,
        "class_shares": shares,
        "probability": {
            "kind": kind,
            "positive_class": positive,
            "edges": edges,
            "shares": bin_shares(score, edges),
        },
    }


def reference_profile(
    train_frame: pd.DataFrame, holdout_predictions: pd.DataFrame, contract: DataContract
) -> dict[str, Any]:
    """What live traffic is compared with later: the training data's features and the holdout's predictions.

    ``holdout_predictions`` is :func:`predict_frame`'s output on the holdout. The result (a dict of JSON
    types; the only non-finite numbers are the ±inf ends of ``edges``, which ``json.dumps`` writes as
    ``-Infinity``/``Infinity`` and ``json.loads`` reads back)::

        {
          "format": 1,
          "task": "classification" | "regression",
          "rows": int,                       # training rows profiled
          "sample_rows": int,                # rows drawn for "sample" (<= training.reference_sample_rows)
          "features": {                      # in the contract's order
            "<numeric or boolean>": {
              "type": "numeric" | "boolean",
              "missing_rate": float,         # share of rows missing
              "mean": float | None, "std": float | None,   # of present values (population std)
              "edges": [-inf, c1, ..., ck, inf],           # unique deciles, so at most 10 bins
              "shares": [float] * (len(edges) - 1),        # present values per bin (lo, hi]; see bin_shares
              "sample": [float, ...],        # numeric only: present values of the sampled rows, for KS
            },
            "<categorical>": {
              "type": "categorical",
              "missing_rate": float,
              "frequencies": {"<category>": share, "__missing__": share},  # over all rows, sums to 1
            },
          },
          "predictions": {                   # on the holdout
            # classification:
            "rows": int, "classes": [str], "class_shares": {"<class>": share of predicted labels},
            "probability": {"kind": "positive_class" | "max",   # binary: P(second sorted class); else max
                            "positive_class": str | None,
                            "edges": [0.0, 0.1, ..., 1.0], "shares": [float] * 10},
            # regression:
            "rows": int, "mean": float | None, "std": float | None, "edges": [...], "shares": [...],
          },
        }
    """
    features = prepare_features(train_frame, contract)
    rows = len(features)
    sample_size = min(rows, contract.training.reference_sample_rows)
    rng = np.random.default_rng(contract.training.seed)
    sampled = np.sort(rng.choice(rows, size=sample_size, replace=False)) if rows else np.array([], dtype=int)
    described: dict[str, Any] = {}
    for name, feature in contract.features.items():
        column = features[name]
        if feature.type is FeatureType.CATEGORICAL:
            frequencies = column.value_counts(normalize=True, sort=False)
            ordered = sorted(frequencies.items(), key=lambda item: (-item[1], str(item[0])))
            described[name] = {
                "type": feature.type.value,
                "missing_rate": float((column == MISSING).mean()) if rows else 0.0,
                "frequencies": {str(k): float(v) for k, v in ordered},
            }
            continue
        values = column.to_numpy(dtype="float64")
        entry: dict[str, Any] = {"type": feature.type.value, **_numeric_summary(values)}
        if feature.type is FeatureType.NUMERIC:
            picked = values[sampled]
            entry["sample"] = [float(v) for v in picked[~np.isnan(picked)]]
        described[name] = entry
    return {
        "format": PROFILE_FORMAT,
        "task": contract.task.value,
        "rows": rows,
        "sample_rows": sample_size,
        "features": described,
        "predictions": _prediction_profile(holdout_predictions, contract),
    }
