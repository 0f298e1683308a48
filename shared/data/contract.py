"""The data contract: what a model's data must look like and how the model is trained and judged.

One YAML document per model (see the README for the format). :func:`parse_contract` turns text into a
:class:`DataContract` or raises :class:`ContractError` listing every problem at once, so a user fixes a
contract in one pass. Nothing in Flywheel names a dataset's columns: they all come from here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.data.compute import Compute
from shared.data.search_space import ExperimentPolicy
from shared.documents import load_yaml
from shared.errors import ContractError
from shared.naming import MODEL_NAME, VIEW_NAME
from shared.settings import EnvironmentPolicy


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class FeatureType(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"


# Estimators a contract may name, by task. The training module maps each to its scikit-learn class.
ESTIMATORS: dict[Task, tuple[str, ...]] = {
    Task.CLASSIFICATION: (
        "logistic_regression",
        "random_forest",
        "gradient_boosting",
        "hist_gradient_boosting",
        "extra_trees",
        "decision_tree",
    ),
    Task.REGRESSION: (
        "ridge",
        "linear_regression",
        "random_forest",
        "gradient_boosting",
        "hist_gradient_boosting",
        "extra_trees",
        "decision_tree",
    ),
}

# Metrics by task, and whether higher is better.
METRICS: dict[Task, dict[str, bool]] = {
    Task.CLASSIFICATION: {"accuracy": True, "f1": True, "roc_auc": True, "log_loss": False},
    Task.REGRESSION: {"rmse": False, "mae": False, "r2": True},
}


class _Block(BaseModel):
    # defer_build: a model's validators are built when it is first used, not at import, so a function pays
    # only for the parts of a contract it reads (a light function imports many it never touches).
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Feature(_Block):
    type: FeatureType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _fits_its_type(self) -> Feature:
        if self.type is not FeatureType.NUMERIC and (self.min is not None or self.max is not None):
            raise ValueError(f"min/max apply to numeric features, not {self.type.value}")
        if self.type is not FeatureType.CATEGORICAL and self.allowed is not None:
            raise ValueError(f"allowed values apply to categorical features, not {self.type.value}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.allowed is not None:
            if not self.allowed:
                raise ValueError("allowed must list at least one value")
            if len(set(self.allowed)) != len(self.allowed):
                raise ValueError("allowed lists a value twice")
        return self

    @field_validator("allowed", mode="before")
    @classmethod
    def _allowed_as_text(cls, value: Any) -> Any:
        # YAML reads `allowed: [1, 2]` as numbers; categories are compared as text.
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        return value


class Window(_Block):
    """Which datasets a training run reads: the latest ``files`` datasets, or rows of the last ``days``."""

    files: int | None = Field(default=None, ge=1)
    days: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> Window:
        if (self.files is None) == (self.days is None):
            raise ValueError("a window is either {files: N} or {days: N}")
        return self


DEFAULT_ESTIMATOR = "hist_gradient_boosting"


class Training(_Block):
    """How the model is built: a built-in ``estimator`` (the zero-code path), or the model project's own
    code, ``pipeline: module:function`` (see :mod:`shared.ml.projects`); ``params`` go to either."""

    estimator: str | None = None  # hist_gradient_boosting when there is no pipeline
    pipeline: str | None = Field(default=None, min_length=3, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    window: Window = Field(default_factory=lambda: Window(files=20))
    seed: int = 42
    reference_sample_rows: int = Field(default=5000, ge=100, le=100_000)

    @model_validator(mode="before")
    @classmethod
    def _one_way_to_build(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("pipeline") is not None and data.get("estimator") is not None:
            raise ValueError(
                "name either training.estimator (a built-in) or training.pipeline (the project's code), "
                "not both"
            )
        if data.get("pipeline") is None and data.get("estimator") is None:
            return {**data, "estimator": DEFAULT_ESTIMATOR}
        return data

    @property
    def builder(self) -> str:
        """What builds the model, as versions record it: the project's function, or the built-in's name."""
        return f"project:{self.pipeline}" if self.pipeline else (self.estimator or DEFAULT_ESTIMATOR)


class Gates(_Block):
    min: dict[str, float] = Field(default_factory=dict)
    max_regression: dict[str, float] = Field(default_factory=dict)

    @field_validator("max_regression")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        negative = sorted(k for k, v in value.items() if v < 0)
        if negative:
            raise ValueError(f"allowed regression must be >= 0 (got a negative one for {negative})")
        return value


# What the monitor watches when the contract names no metric and gates none: the task's headline metric.
DEFAULT_MONITORING_METRIC: dict[Task, str] = {Task.CLASSIFICATION: "roc_auc", Task.REGRESSION: "rmse"}


class ServingGates(_Block):
    """What a candidate must show on the serving path before it may be promoted (``serving:``)."""

    max_p99_ms: float = Field(default=500.0, gt=0)
    max_error_rate: float = Field(default=0.0, ge=0, le=1)
    smoke_rows: int = Field(default=32, ge=1, le=1000)
    load_requests: int = Field(default=100, ge=1, le=10_000)
    load_concurrency: int = Field(default=4, ge=1, le=64)


class MonitoringPolicy(_Block):
    """When the monitor asks for a retraining (the contract's optional ``monitoring:`` block).

    A feature has drifted when its PSI is at least ``psi``, when its test's p-value (KS for numeric
    features, chi-square for categorical and boolean ones) is below ``ks_p_value`` divided by the number of
    profiled features (Bonferroni: ``ks_p_value`` bounds the chance that any feature of a window with no
    drift is flagged by its test), or when its missing rate moved by more than ``max_missing_rate_change``.
    The model has drifted when at least ``drift_share`` of its features have. It has degraded when
    ``metric`` on labelled captures is worse than on the holdout by more than ``max_metric_drop`` (in the
    metric's own direction). A window needs ``min_rows`` captures to judge drift and ``min_labelled_rows``
    labels to judge performance; after a trigger, another waits ``cooldown_hours``. ``metric`` left out is
    the first gate metric, else roc_auc (classification) or rmse (regression):
    :attr:`DataContract.monitoring_policy` fills it in.
    """

    psi: float = Field(default=0.2, gt=0)
    ks_p_value: float = Field(default=0.01, gt=0, lt=1)
    drift_share: float = Field(default=0.5, gt=0, le=1)
    max_missing_rate_change: float = Field(default=0.2, ge=0, le=1)
    metric: str | None = None
    max_metric_drop: float = Field(default=0.05, ge=0)
    min_rows: int = Field(default=200, ge=1)
    min_labelled_rows: int = Field(default=100, ge=1)
    cooldown_hours: float = Field(default=24.0, ge=0)
    window_hours: float = Field(default=24.0, gt=0)
    max_window_rows: int = Field(default=200_000, ge=1)

    @model_validator(mode="after")
    def _window_holds_enough(self) -> MonitoringPolicy:
        if self.max_window_rows < self.min_rows:
            raise ValueError(
                f"max_window_rows ({self.max_window_rows}) is below min_rows ({self.min_rows}): "
                "no window could ever be judged"
            )
        return self


def default_monitoring_metric(task: Task, gates: Gates | None) -> str:
    """The task's first gate metric (floors first, then allowed regressions), else its headline metric."""
    names = [*gates.min, *gates.max_regression] if gates is not None else []
    return next((name for name in names if name in METRICS[task]), DEFAULT_MONITORING_METRIC[task])


class DataContract(_Block):
    model: str
    task: Task
    target: str
    id_column: str | None = None
    timestamp_column: str | None = None
    features: dict[str, Feature]
    # Feature views whose features are joined to every row, point in time, on the id column (the views'
    # entity); see shared.featurestore.contracts for the rules that need the stored views.
    feature_views: tuple[str, ...] = ()
    target_values: tuple[str, ...] | None = None
    min_rows: int = Field(default=100, ge=1)
    max_file_mb: float = Field(default=512.0, gt=0)
    training: Training = Field(default_factory=Training)
    gates: Gates = Field(default_factory=Gates)
    # Declared after task: its validator checks the metric against it.
    monitoring: MonitoringPolicy = Field(default_factory=MonitoringPolicy)
    # Per environment name (dev, staging, prod, ...); environments not listed use the stack's default.
    promotion: dict[str, EnvironmentPolicy] = Field(default_factory=dict)
    serving: ServingGates = Field(default_factory=ServingGates)
    # A hyperparameter search (shared.data.search_space); its winner is trained and judged as any candidate.
    experiment: ExperimentPolicy | None = None
    # Where Validate and Train run (shared.data.compute): absent, each runs in its Lambda function.
    compute: Compute | None = None
    description: str = ""

    @field_validator("model")
    @classmethod
    def _registry_name(cls, value: str) -> str:
        if not re.match(MODEL_NAME, value):
            raise ValueError(f"use lowercase letters, digits and '-' (at most 64), got {value!r}")
        return value

    @field_validator("monitoring")
    @classmethod
    def _monitoring_metric(cls, value: MonitoringPolicy, info: ValidationInfo) -> MonitoringPolicy:
        task = info.data.get("task")
        problem = _monitoring_metric_problem(value.metric, task) if value.metric and task else ""
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("target_values", mode="before")
    @classmethod
    def _target_values_as_text(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        return value

    # --- what the rest of Flywheel asks of a contract -----------------------------------------------------

    @property
    def columns(self) -> list[str]:
        """Every column a data file must have, in a stable order."""
        extra = [c for c in (self.id_column, self.timestamp_column) if c]
        return [*extra, *self.features, self.target]

    def features_of(self, kind: FeatureType) -> list[str]:
        return [name for name, f in self.features.items() if f.type is kind]

    @property
    def monitoring_policy(self) -> MonitoringPolicy:
        """The ``monitoring`` block with its metric filled in (:func:`default_monitoring_metric` when the
        contract names none). Filled here rather than stored, so a contract's document keeps only what its
        author wrote, and stays valid when its task or gates change."""
        if self.monitoring.metric is not None:
            return self.monitoring
        return self.monitoring.model_copy(update={"metric": default_monitoring_metric(self.task, self.gates)})

    def higher_is_better(self, metric: str) -> bool:
        return METRICS[self.task][metric]

    def to_yaml(self) -> str:
        # A contract without views is written as before: no empty feature_views line.
        unset = set() if self.feature_views else {"feature_views"}
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True, exclude=unset), sort_keys=False)


def contract_problems(document: dict[str, Any]) -> list[str]:
    """Cross-field problems, read leniently from the raw document so they are reported together with
    field-level ones (a malformed part is skipped here; pydantic reports it)."""
    try:
        task: Task | None = Task(str(document.get("task")))
    except ValueError:
        task = None
    return [
        *_column_problems(document),
        *_feature_view_problems(document),
        *_training_problems(document, task),
        *_gate_problems(document, task),
        *_monitoring_problems(document, task),
        *_experiment_problems(document, task),
    ]


def _column_problems(document: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    features = _mapping(document, "features")
    target = document.get("target")
    if "features" in document and not features:
        problems.append("features: declare at least one feature")
    if target is not None and target in features:
        problems.append(f"target: {target!r} is also listed as a feature")
    for role in ("id_column", "timestamp_column"):
        column = document.get(role)
        if column is not None and column in features:
            problems.append(f"{role}: {column!r} is also listed as a feature")
        if column is not None and column == target:
            problems.append(f"{role}: {column!r} is also the target")
    if document.get("id_column") and document.get("id_column") == document.get("timestamp_column"):
        problems.append("id_column and timestamp_column name the same column")
    return problems


def _feature_view_problems(document: dict[str, Any]) -> list[str]:
    """What a contract listing feature views needs on its own: the rows' entity key (the id column) and
    their time (the timestamp column), and view names, each once. Rules that need the views themselves are
    checked when the contract is put (:func:`shared.featurestore.contracts.contract_view_problems`)."""
    views = document.get("feature_views")
    if not isinstance(views, list | tuple) or not views:
        return []

    problems: list[str] = []
    if not document.get("id_column"):
        problems.append(
            "feature_views: needs an id_column, the entity key the views are joined on (their entity)"
        )
    if not document.get("timestamp_column"):
        problems.append(
            "feature_views: needs a timestamp_column: each row sees the feature values of its own time"
        )
    names = [str(v) for v in views]
    problems.extend(
        f"feature_views: {name!r} is not a view name (lowercase letters, digits, '-' and '_')"
        for name in names
        if not re.match(VIEW_NAME, name)
    )
    twice = sorted({name for name in names if names.count(name) > 1})
    problems.extend(f"feature_views: {name!r} is listed twice" for name in twice)
    return problems


def _training_problems(document: dict[str, Any], task: Task | None) -> list[str]:
    problems: list[str] = []
    training = _mapping(document, "training")
    estimator = training.get("estimator") or (None if training.get("pipeline") else DEFAULT_ESTIMATOR)
    if task is not None and estimator is not None and estimator not in ESTIMATORS[task]:
        problems.append(
            f"training.estimator: {estimator!r} is not a {task.value} estimator; "
            f"choose one of {list(ESTIMATORS[task])}"
        )
    if _mapping(training, "window").get("days") is not None and not document.get("timestamp_column"):
        problems.append("training.window.days needs a timestamp_column to count days by")
    if task is Task.REGRESSION and document.get("target_values") is not None:
        problems.append("target_values: only a classification target has a fixed set of values")
    return problems


def _gate_problems(document: dict[str, Any], task: Task | None) -> list[str]:
    if task is None:
        return []
    problems: list[str] = []
    known = METRICS[task]
    gates = _mapping(document, "gates")
    for block in ("min", "max_regression"):
        for metric, value in _mapping(gates, block).items():
            if metric not in known:
                problems.append(
                    f"gates.{block}.{metric}: not a {task.value} metric; use one of {sorted(known)}"
                )
            elif isinstance(value, int | float) and not math.isfinite(value):
                problems.append(f"gates.{block}.{metric}: must be a finite number")
    return problems


def _monitoring_metric_problem(metric: str, task: Task) -> str:
    if metric in METRICS[task]:
        return ""
    return f"metric {metric!r} is not a {task.value} metric; use one of {sorted(METRICS[task])}"


def _monitoring_problems(document: dict[str, Any], task: Task | None) -> list[str]:
    # Worded as the field validator words it, so parse_contract lists the problem once when both find it.
    metric = _mapping(document, "monitoring").get("metric")
    if task is None or not isinstance(metric, str):
        return []
    problem = _monitoring_metric_problem(metric, task)
    return [f"monitoring: {problem}"] if problem else []


def _experiment_problems(document: dict[str, Any], task: Task | None) -> list[str]:
    metric = _mapping(document, "experiment").get("metric")
    if task is None or not isinstance(metric, str):
        return []
    problem = _monitoring_metric_problem(metric, task)
    return [f"experiment.metric: {problem}"] if problem else []


def _mapping(document: dict[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key)
    return value if isinstance(value, dict) else {}


def parse_document[M: BaseModel](
    text: str | bytes,
    model: type[M],
    *,
    what: str,
    cross_field: Callable[[dict[str, Any]], list[str]],
    describe: Callable[[Any], str],
    summary: Callable[[dict[str, Any], list[str]], str],
) -> M:
    """The one way a YAML document (a contract, a feature view) becomes its model: :class:`ContractError`
    lists every problem at once — each field's (``describe`` words pydantic's errors) and the cross-field
    rules read from the raw document — so a user fixes it in one pass."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractError(f"the {what} is not UTF-8 text", problems=[str(exc)]) from exc
    try:
        # Bounded: a kilobyte of nested anchors must not become megabytes (shared.documents).
        document = load_yaml(text, what=f"the {what}")
    except yaml.YAMLError as exc:
        raise ContractError(f"the {what} is not valid YAML: {exc}", problems=[str(exc)]) from exc
    if not isinstance(document, dict):
        raise ContractError(
            f"the {what} must be a YAML mapping", problems=["expected a mapping at the top level"]
        )
    problems: list[str] = []
    parsed: M | None = None
    try:
        parsed = model.model_validate(document)
    except ValidationError as exc:
        problems.extend(describe(error) for error in exc.errors())
    problems.extend(p for p in cross_field(document) if p not in problems)
    if problems or parsed is None:
        raise ContractError(summary(document, problems), problems=problems)
    return parsed


def parse_contract(text: str | bytes) -> DataContract:
    """Parse and check a YAML contract; :class:`ContractError` lists every problem found."""
    return parse_document(
        text,
        DataContract,
        what="contract",
        cross_field=contract_problems,
        describe=_describe,
        summary=_summary,
    )


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling against the README's contract reference)"
    if error["type"] == "missing":
        message = "required"
    return f"{location}: {message}"


def _summary(document: dict[str, Any], problems: list[str]) -> str:
    name = document.get("model", "?")
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"contract for model {name!r} has {len(problems)} problem(s):\n{lines}"
