"""Monitoring: whether a model in production needs retraining, decided from evidence and said in sentences.

Owns the decision and the report's shape. Pure: :func:`live_performance` scores captured predictions
against the labels that arrived for them (the same metric code as the holdout's,
:func:`shared.ml.evaluation.score_predictions`); :func:`decide` turns a window's drift
(:func:`shared.monitoring.drift.compute_drift`), its live metrics and the production version's holdout metrics
into a :class:`MonitorDecision` under the contract's :class:`MonitoringPolicy`; :class:`MonitorReport` is what
the monitor writes (JSON) and :func:`shared.monitoring.report.render_html` draws. No AWS, no clock: ``now`` is
given.

The decision table, in order:

1. neither enough rows to judge drift (``min_rows``) nor enough labels to judge performance
   (``min_labelled_rows``): ``insufficient_data``, with both counts;
2. degradation (takes precedence): the policy's metric on the labelled rows is worse than on the holdout
   by more than ``max_metric_drop``, in the metric's own direction;
3. drift: at least ``drift_share`` of the features drifted (each by PSI, its Bonferroni-corrected test or
   its missing rate; see :mod:`shared.monitoring.drift`). Prediction drift is reported, and never triggers
   alone: the outputs move whenever the inputs do, and the feature evidence is what a retraining acts on;
4. a trigger within ``cooldown_hours`` of the last one: ``held_back``, the reason still recorded;
   otherwise ``retrain``. Nothing crossed: ``none``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from shared.data.contract import METRICS, DataContract, MonitoringPolicy, Task
from shared.ml.evaluation import Evaluation, score_predictions
from shared.ml.training import PROBABILITY_PREFIX
from shared.monitoring.drift import DriftReport, FeatureDrift

__all__ = [
    "MetricPoint",
    "MonitorDecision",
    "MonitorReport",
    "MonitoringPolicy",
    "decide",
    "live_performance",
]

# A metric equal to its threshold, computed and written in YAML, may differ in the last bits.
_TOLERANCE = 1e-9
# Whether higher is better, by metric name (names are unique across tasks).
_HIGHER_IS_BETTER = {name: higher for metrics in METRICS.values() for name, higher in metrics.items()}

Action = Literal["none", "retrain", "held_back", "insufficient_data"]


class MonitorDecision(BaseModel):
    """What the monitor does about one window, and why, with the figures."""

    model_config = ConfigDict(frozen=True)

    action: Action
    reason: Literal["drift", "degradation"] | None = None
    reasons: list[str]


class MetricPoint(BaseModel):
    """The live metric of one past window, for the report's line chart."""

    model_config = ConfigDict(frozen=True)

    time: datetime
    metric: float
    version: int


class MonitorReport(BaseModel):
    """Everything one monitoring run found, as written next to the captures and drawn as HTML.

    ``metric`` names the policy's metric; ``metric_history`` (supplied by the caller, oldest first) holds
    its live value in past windows with the version that served them.
    """

    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    window_start: datetime
    window_end: datetime
    rows: int
    labelled_rows: int
    drift: DriftReport | None
    live: Evaluation | None
    holdout_metrics: dict[str, float]
    metric: str
    metric_history: list[MetricPoint] = []
    policy: MonitoringPolicy
    decision: MonitorDecision
    generated_at: datetime
    notes: list[str] = Field(default_factory=list)


# --- live performance -----------------------------------------------------------------------------------


def live_performance(labelled: pd.DataFrame, contract: DataContract) -> Evaluation:
    """The task's metrics on labelled captures: one row per answered request whose label arrived.

    ``labelled`` holds the captured ``prediction``, for classification the ``proba_<class>`` columns (the
    model's class order, as :func:`shared.monitoring.drift.capture_frames` builds them), and the label in the
    contract's target column. Rows without a label are left out, and counted in a note.
    """
    if contract.target not in labelled.columns or "prediction" not in labelled.columns:
        absent = [c for c in (contract.target, "prediction") if c not in labelled.columns]
        return Evaluation(metrics={}, notes=[f"the labelled captures have no {absent} column(s)"], rows=0)
    target = labelled[contract.target]
    known = labelled.loc[target.notna()]
    notes = (
        [f"{len(labelled) - len(known)} capture(s) without a label left out"]
        if len(known) < len(labelled)
        else []
    )
    probabilities: np.ndarray | None = None
    classes: list[str] | None = None
    if contract.task is Task.CLASSIFICATION:
        columns = [c for c in known.columns if str(c).startswith(PROBABILITY_PREFIX)]
        if columns:
            classes = [str(c).removeprefix(PROBABILITY_PREFIX) for c in columns]
            probabilities = known[columns].to_numpy(dtype="float64", na_value=np.nan)
    evaluation = score_predictions(
        known[contract.target].to_numpy(dtype=object),
        known["prediction"].to_numpy(dtype=object),
        contract.task,
        probabilities=probabilities,
        classes=classes,
    )
    if notes:
        return evaluation.model_copy(update={"notes": [*notes, *evaluation.notes]})
    return evaluation


# --- the decision ---------------------------------------------------------------------------------------


def _figure(value: float) -> str:
    return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2g}"


def _feature_evidence(feature: FeatureDrift) -> str:
    return f"{feature.name} ({'; '.join(feature.reasons)})"


def _drift_finding(drift: DriftReport, policy: MonitoringPolicy) -> tuple[bool, str]:
    drifted = [f for f in drift.features if f.drifted]
    total = len(drift.features)
    crossed = bool(drifted) and drift.drift_share >= policy.drift_share - _TOLERANCE
    if not drifted:
        return False, f"no feature drifted in {drift.rows:,} rows ({total} compared)"
    relation = "≥" if crossed else "<"
    evidence = ", ".join(_feature_evidence(f) for f in drifted)
    sentence = (
        f"{len(drifted)} of {total} features drifted (share {drift.drift_share:.2f} {relation} "
        f"{policy.drift_share:.2f}) in {drift.rows:,} rows: {evidence}"
    )
    if any(
        f.test is not None and f.p_value is not None and f.p_value < drift.p_value_threshold for f in drifted
    ):
        sentence += (
            f"; tests at p < {drift.p_value_threshold:.2g} ({policy.ks_p_value:g} / {total}, Bonferroni)"
        )
    return crossed, sentence


def _degradation_finding(
    live: Evaluation, holdout_metrics: dict[str, float], policy: MonitoringPolicy, metric: str
) -> tuple[bool, str]:
    value = live.metrics.get(metric)
    if value is None:
        why = next((n.removeprefix(f"{metric}: ") for n in live.notes if n.startswith(f"{metric}:")), "")
        suffix = f" ({why})" if why else ""
        return False, f"{metric} could not be computed on {live.rows:,} labelled rows{suffix}; not judged"
    baseline = holdout_metrics.get(metric)
    if baseline is None:
        return (
            False,
            f"{metric} {value:.3f} on {live.rows:,} labelled rows; no holdout {metric} to compare with",
        )
    higher = _HIGHER_IS_BETTER.get(metric, True)
    worse_by = (baseline - value) if higher else (value - baseline)
    allowed = policy.max_metric_drop
    if worse_by > allowed + _TOLERANCE:
        verb = "fell" if higher else "rose"
        return True, (
            f"{metric} {verb} from {baseline:.3f} (holdout) to {value:.3f} on {live.rows:,} labelled rows; "
            f"at most {allowed:.3f} allowed"
        )
    return False, (
        f"{metric} {value:.3f} on {live.rows:,} labelled rows against {baseline:.3f} on the holdout; "
        f"within the {allowed:.3f} allowed"
    )


def _utc(moment: datetime) -> datetime:
    # A naive time is taken to be UTC, as capture records take it.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h"


def decide(
    drift: DriftReport | None,
    live: Evaluation | None,
    holdout_metrics: dict[str, float],
    policy: MonitoringPolicy,
    last_triggered_at: datetime | None,
    now: datetime,
) -> MonitorDecision:
    """Retrain, hold back, do nothing, or wait for more data (the table in the module docstring).

    ``drift`` and ``live`` may be None when there was nothing to compute them from; ``holdout_metrics``
    are the production version's; ``last_triggered_at`` is when the monitor last asked for a retraining of
    this model. ``policy.metric`` must be set: pass :attr:`DataContract.monitoring_policy`.
    """
    metric = policy.metric
    if metric is None:
        raise ValueError("the policy names no metric; use DataContract.monitoring_policy, which fills it in")
    rows = drift.rows if drift is not None else 0
    labelled = live.rows if live is not None else 0
    drift_judged = drift is not None and rows >= policy.min_rows
    performance_judged = live is not None and labelled >= policy.min_labelled_rows
    if not drift_judged and not performance_judged:
        return MonitorDecision(
            action="insufficient_data",
            reasons=[
                f"{rows:,} rows in the window; at least {policy.min_rows:,} needed to judge drift",
                f"{labelled:,} labelled rows; at least {policy.min_labelled_rows:,} needed to judge {metric}",
            ],
        )

    degraded = drifted = False
    if live is not None and performance_judged:
        degraded, performance = _degradation_finding(live, holdout_metrics, policy, metric)
    else:
        performance = (
            f"{labelled:,} labelled rows; at least {policy.min_labelled_rows:,} needed to judge {metric}"
        )
    evidence: list[str] = []
    if drift is not None and drift_judged:
        drifted, sentence = _drift_finding(drift, policy)
        evidence.append(sentence)
        if drift.prediction is not None and drift.prediction.drifted:
            evidence.append(
                f"the predictions drifted ({'; '.join(drift.prediction.reasons)}); "
                "reported, never a trigger by itself"
            )
    else:
        evidence.append(f"{rows:,} rows in the window; at least {policy.min_rows:,} needed to judge drift")

    # The finding that triggers comes first.
    reasons = [*evidence, performance] if drifted and not degraded else [performance, *evidence]
    reason: Literal["drift", "degradation"] | None = (
        "degradation" if degraded else "drift" if drifted else None
    )
    if reason is None:
        return MonitorDecision(action="none", reasons=reasons)
    if last_triggered_at is not None and policy.cooldown_hours > 0:
        since = _utc(now) - _utc(last_triggered_at)
        if since < timedelta(hours=policy.cooldown_hours):
            cooldown = f"cooldown {policy.cooldown_hours:g} h"
            held = f"held back: last retraining triggered {_hours(since)} ago, {cooldown}"
            return MonitorDecision(action="held_back", reason=reason, reasons=[held, *reasons])
    return MonitorDecision(action="retrain", reason=reason, reasons=reasons)
