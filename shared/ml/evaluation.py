"""Evaluation: score a model on a holdout and decide whether it passes the contract's gates.

:func:`score` computes the task's metrics (``shared.data.contract.METRICS``); a metric that cannot be computed
on this holdout is left out and explained in ``notes`` rather than reported as a misleading number.
:func:`score_predictions` computes the same metrics, with the same code, on predictions already made (the
monitor's labelled captures).
:func:`decide_gate` compares a candidate's scores with the contract's floors and with the production
model's scores, and says why in sentences a person can act on.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

from shared.data.contract import METRICS, DataContract, Task
from shared.ml.training import prepare_features

# Tolerance for comparing a metric with a threshold: 0.7 written in YAML and 0.7 computed can differ in
# the last bits, and such a difference must not fail a gate.
_EPSILON = 1e-9


class Evaluation(BaseModel):
    """A model's metrics on a holdout of ``rows`` rows; ``notes`` say which metrics were left out and why."""

    model_config = ConfigDict(frozen=True)

    metrics: dict[str, float]
    notes: list[str] = []
    rows: int


class GateCheck(BaseModel):
    """One gate rule applied to one metric."""

    model_config = ConfigDict(frozen=True)

    metric: str
    kind: Literal["min", "max_regression"]
    threshold: float
    candidate: float | None
    champion: float | None
    passed: bool
    reason: str


class GateDecision(BaseModel):
    """Whether a candidate may go on. ``reasons`` holds the failing checks' reasons when it failed, and
    every check's reason when it passed."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    checks: list[GateCheck]
    reasons: list[str]


# --- scoring --------------------------------------------------------------------------------------------


def _computed(
    name: str,
    compute: Callable[[], Any],
    metrics: dict[str, float],
    notes: list[str],
    why: str = "",
    *,
    scope: str = "holdout",
) -> None:
    """Run one metric; keep it when it is a finite number, else note why it was left out."""
    if why:
        notes.append(f"{name}: {why}")
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(compute())
    except ValueError as exc:
        notes.append(f"{name}: not computable on this {scope} ({exc})")
        return
    if math.isfinite(value):
        metrics[name] = value
    else:
        notes.append(f"{name}: not defined on this {scope} (got {value})")


def _score_classification(
    pipeline: Any, features: pd.DataFrame, truth: np.ndarray, metrics: dict[str, float], notes: list[str]
) -> None:
    classes = [str(c) for c in pipeline.classes_]
    probabilities = pipeline.predict_proba(features)
    predicted = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
    _classification_metrics(classes, predicted, probabilities, truth, metrics, notes, scope="holdout")


def _classification_metrics(
    classes: list[str],
    predicted: np.ndarray,
    probabilities: np.ndarray | None,
    truth: np.ndarray,
    metrics: dict[str, float],
    notes: list[str],
    *,
    scope: str,
    no_probabilities: str = "",
) -> None:
    present = sorted({str(v) for v in truth})
    unseen = [c for c in present if c not in classes]

    _computed("accuracy", lambda: accuracy_score(truth, predicted), metrics, notes, scope=scope)
    _computed("f1", lambda: f1_score(truth, predicted, average="macro"), metrics, notes, scope=scope)

    if probabilities is None:
        why = no_probabilities or f"no class probabilities were given for the {scope}"
        notes.extend(f"{name}: {why}" for name in ("roc_auc", "log_loss"))
        return
    auc_problem = ""
    if len(present) < 2:
        auc_problem = f"the {scope} has a single class ({present}), so ROC AUC is undefined"
    elif unseen:
        auc_problem = f"the {scope} has class(es) {unseen} the model never saw"
    elif len(classes) > 2 and len(present) < len(classes):
        missing = [c for c in classes if c not in present]
        auc_problem = f"class(es) {missing} do not appear in the {scope}, so one-vs-rest AUC is undefined"
    if len(classes) == 2:
        positive = sorted(classes)[1]
        column = probabilities[:, classes.index(positive)]
        _computed(
            "roc_auc",
            lambda: roc_auc_score(truth == positive, column),
            metrics,
            notes,
            auc_problem,
            scope=scope,
        )
    else:
        _computed(
            "roc_auc",
            lambda: roc_auc_score(truth, probabilities, multi_class="ovr", average="macro", labels=classes),
            metrics,
            notes,
            auc_problem,
            scope=scope,
        )
    loss_problem = f"the {scope} has class(es) {unseen} the model never saw" if unseen else ""
    _computed(
        "log_loss",
        lambda: log_loss(truth, probabilities, labels=classes),
        metrics,
        notes,
        loss_problem,
        scope=scope,
    )


def _score_regression(
    pipeline: Any, features: pd.DataFrame, truth: np.ndarray, metrics: dict[str, float], notes: list[str]
) -> None:
    predicted = np.asarray(pipeline.predict(features), dtype="float64")
    _regression_metrics(predicted, truth, metrics, notes, scope="holdout")


def _regression_metrics(
    predicted: np.ndarray, truth: np.ndarray, metrics: dict[str, float], notes: list[str], *, scope: str
) -> None:
    _computed("rmse", lambda: root_mean_squared_error(truth, predicted), metrics, notes, scope=scope)
    _computed("mae", lambda: mean_absolute_error(truth, predicted), metrics, notes, scope=scope)
    r2_problem = "R² needs at least two rows" if len(truth) < 2 else ""
    _computed("r2", lambda: r2_score(truth, predicted), metrics, notes, r2_problem, scope=scope)


def score(pipeline: Any, holdout: pd.DataFrame, contract: DataContract) -> Evaluation:
    """The task's metrics for ``pipeline`` on ``holdout`` (a validated frame, target included).

    Classification: accuracy, macro f1, roc_auc (binary: the positive class is the second of the sorted
    classes; multiclass: one-vs-rest, macro) and log_loss over the model's classes. Regression: rmse, mae,
    r2. A metric that cannot be computed is left out, with the reason in ``notes``.
    """
    rows = len(holdout)
    if rows == 0:
        return Evaluation(metrics={}, notes=["the holdout is empty: no metric computed"], rows=0)
    features = prepare_features(holdout, contract)
    target = holdout[contract.target]
    if target.isna().any():
        raise ValueError(f"the holdout's target {contract.target!r} has missing values")
    metrics: dict[str, float] = {}
    notes: list[str] = []
    if contract.task is Task.CLASSIFICATION:
        truth = target.astype(object).map(str).to_numpy(dtype=object)
        _score_classification(pipeline, features, truth, metrics, notes)
    else:
        _score_regression(pipeline, features, target.to_numpy(dtype="float64"), metrics, notes)
    return Evaluation(metrics=metrics, notes=notes, rows=rows)


def score_predictions(
    truth: Sequence[Any] | np.ndarray,
    predicted: Sequence[Any] | np.ndarray,
    task: Task,
    *,
    probabilities: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    scope: str = "labelled window",
) -> Evaluation:
    """:func:`score`'s metrics for predictions already made (captured ones, joined with their labels).

    ``truth`` and ``predicted`` hold one value per row (classification: labels, compared as text;
    regression: numbers). For classification, ``probabilities`` has one column per class in ``classes``
    order (the model's order); without them roc_auc and log_loss are left out, with a note. The same
    metric code as :func:`score`, so a live metric and a holdout metric are the same quantity.
    """
    rows = len(truth)
    if rows != len(predicted):
        raise ValueError(f"{rows} true value(s) but {len(predicted)} prediction(s)")
    if rows == 0:
        return Evaluation(metrics={}, notes=[f"the {scope} is empty: no metric computed"], rows=0)
    metrics: dict[str, float] = {}
    notes: list[str] = []
    if task is Task.CLASSIFICATION:
        truth_text = np.asarray([str(v) for v in truth], dtype=object)
        predicted_text = np.asarray([str(v) for v in predicted], dtype=object)
        labels = [str(c) for c in classes] if classes is not None else sorted({*truth_text, *predicted_text})
        matrix = None if probabilities is None else np.asarray(probabilities, dtype="float64")
        if matrix is not None and matrix.shape != (rows, len(labels)):
            raise ValueError(f"probabilities have shape {matrix.shape}; expected {(rows, len(labels))}")
        why = ""
        if matrix is not None and not np.isfinite(matrix).all(axis=1).all():
            lacking = int((~np.isfinite(matrix).all(axis=1)).sum())
            why = f"{lacking} of {rows} row(s) have no class probabilities"
            matrix = None
        _classification_metrics(
            labels, predicted_text, matrix, truth_text, metrics, notes, scope=scope, no_probabilities=why
        )
    else:
        truth_values = np.asarray(truth, dtype="float64")
        predicted_values = np.asarray(predicted, dtype="float64")
        _regression_metrics(predicted_values, truth_values, metrics, notes, scope=scope)
    return Evaluation(metrics=metrics, notes=notes, rows=rows)


# --- gates ----------------------------------------------------------------------------------------------


def _pair(first: float, second: float) -> tuple[str, str]:
    """Format two numbers with 3 decimals, or with more when 3 would make different numbers look equal."""
    for digits in (3, 4, 5, 6):
        a, b = f"{first:.{digits}f}", f"{second:.{digits}f}"
        if a != b or first == second:
            return a, b
    return f"{first!r}", f"{second!r}"


def _value(evaluation: Evaluation | None, metric: str) -> float | None:
    if evaluation is None:
        return None
    value = evaluation.metrics.get(metric)
    return value if value is not None and math.isfinite(value) else None


def _why_missing(candidate: Evaluation, metric: str) -> str:
    notes = [n for n in candidate.notes if n.startswith(f"{metric}:")]
    return f" ({notes[0].removeprefix(f'{metric}: ')})" if notes else ""


def _floor_check(metric: str, threshold: float, candidate: Evaluation, higher: bool) -> GateCheck:
    value = _value(candidate, metric)

    def check(passed: bool, reason: str) -> GateCheck:
        return GateCheck(
            metric=metric,
            kind="min",
            threshold=threshold,
            candidate=value,
            champion=None,
            passed=passed,
            reason=reason,
        )

    bound = "floor" if higher else "ceiling"
    if value is None:
        why = _why_missing(candidate, metric)
        return check(
            False, f"{metric} is missing from the candidate's metrics{why}; the {bound} cannot be checked"
        )
    shown, limit = _pair(value, threshold)
    if higher and value >= threshold - _EPSILON:
        return check(True, f"{metric} {shown} meets the floor {limit}")
    if higher:
        return check(False, f"{metric} {shown} is below the floor {limit}")
    if value <= threshold + _EPSILON:
        return check(True, f"{metric} {shown} is within the ceiling {limit}")
    return check(False, f"{metric} {shown} is above the ceiling {limit}")


def _regression_check(
    metric: str,
    allowed: float,
    candidate: Evaluation,
    champion: Evaluation | None,
    champion_name: str,
    higher: bool,
) -> GateCheck:
    value = _value(candidate, metric)
    best = _value(champion, metric)

    def check(passed: bool, reason: str) -> GateCheck:
        return GateCheck(
            metric=metric,
            kind="max_regression",
            threshold=allowed,
            candidate=value,
            champion=best,
            passed=passed,
            reason=reason,
        )

    if champion is None:
        return check(True, f"no champion to compare {metric} with; the regression gate does not apply")
    if value is None:
        why = _why_missing(candidate, metric)
        return check(
            False, f"{metric} is missing from the candidate's metrics{why}; not compared with {champion_name}"
        )
    if best is None:
        return check(
            True, f"{champion_name} has no {metric} to compare with; the regression gate does not apply"
        )
    # How much worse the candidate is, in the metric's own direction (negative: it improved).
    worse_by = (best - value) if higher else (value - best)
    before, after = _pair(best, value)
    change = f"({before} → {after})"
    if worse_by <= _EPSILON:
        if value == best:
            return check(True, f"{metric} held at {after} against {champion_name}")
        verb = "rose" if value > best else "fell"
        return check(
            True, f"{metric} {verb} {abs(value - best):.3f} against {champion_name} {change}, an improvement"
        )
    verb = "fell" if higher else "rose"
    amount, allowance = _pair(worse_by, allowed)
    if worse_by <= allowed + _EPSILON:
        return check(
            True, f"{metric} {verb} {amount} against {champion_name} {change}; up to {allowance} allowed"
        )
    return check(
        False, f"{metric} {verb} {amount} against {champion_name} {change}; at most {allowance} allowed"
    )


def _known(
    metric: str,
    kind: Literal["min", "max_regression"],
    threshold: float,
    contract: DataContract,
    checks: list[GateCheck],
) -> bool:
    # parse_contract refuses unknown gate metrics; a contract built in code might not have been through it.
    if metric in METRICS[contract.task]:
        return True
    reason = f"{metric} is not a {contract.task.value} metric; use one of {sorted(METRICS[contract.task])}"
    checks.append(
        GateCheck(
            metric=metric,
            kind=kind,
            threshold=threshold,
            candidate=None,
            champion=None,
            passed=False,
            reason=reason,
        )
    )
    return False


def decide_gate(
    candidate: Evaluation,
    champion: Evaluation | None,
    contract: DataContract,
    *,
    champion_name: str = "the production model",
) -> GateDecision:
    """Apply ``contract.gates`` to the candidate's metrics.

    - ``min``: a floor for higher-is-better metrics (accuracy, f1, roc_auc, r2: pass when the candidate's
      value is at least the threshold) and a ceiling for lower-is-better ones (log_loss, rmse, mae: pass
      when it is at most the threshold).
    - ``max_regression``: how much worse than the champion (``champion_name``, e.g. "production v3") the
      candidate may be, in the metric's direction (``contract.higher_is_better``). Applies only when there
      is a champion; a champion without that metric is not held against the candidate.

    A gate metric missing from the candidate's metrics fails the check. With no gates configured the
    decision passes with the reason "no gates configured".
    """
    gates = contract.gates
    if not gates.min and not gates.max_regression:
        return GateDecision(passed=True, checks=[], reasons=["no gates configured"])
    checks: list[GateCheck] = []
    for metric, threshold in gates.min.items():
        if _known(metric, "min", threshold, contract, checks):
            checks.append(_floor_check(metric, threshold, candidate, contract.higher_is_better(metric)))
    for metric, allowed in gates.max_regression.items():
        if _known(metric, "max_regression", allowed, contract, checks):
            higher = contract.higher_is_better(metric)
            checks.append(_regression_check(metric, allowed, candidate, champion, champion_name, higher))
    passed = all(c.passed for c in checks)
    reasons = [c.reason for c in checks if passed or not c.passed]
    return GateDecision(passed=passed, checks=checks, reasons=reasons)
