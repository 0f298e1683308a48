"""The monitor's decision table: each threshold alone, cooldown, too little data, degradation over drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from shared.data.contract import DataContract, MonitoringPolicy, Task, parse_contract
from shared.errors import ContractError
from shared.ml.evaluation import Evaluation, score
from shared.ml.training import predict_frame, reference_profile, train
from shared.monitoring.decision import decide, live_performance
from shared.monitoring.drift import (
    DriftReport,
    FeatureDrift,
    PredictionDistribution,
    PredictionDrift,
    compute_drift,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = MonitoringPolicy(metric="roc_auc")
HOLDOUT = {"roc_auc": 0.82, "accuracy": 0.77}


def contract(task: Task = Task.CLASSIFICATION, **extra: Any) -> DataContract:
    return DataContract.model_validate(
        {
            "model": "tiny",
            "task": task.value,
            "target": "label",
            "features": {"x": {"type": "numeric"}, "kind": {"type": "categorical", "nullable": True}},
            "training": {"estimator": "logistic_regression" if task is Task.CLASSIFICATION else "ridge"},
            **extra,
        }
    )


def a_feature(name: str, *, drifted: bool = False, psi: float = 0.01, rows: int = 1000) -> FeatureDrift:
    return FeatureDrift(
        name=name,
        kind="numeric",
        psi=psi,
        ks_statistic=0.02,
        p_value=0.5,
        test="ks",
        missing_rate_reference=0.0,
        missing_rate_live=0.0,
        missing_rate_change=0.0,
        live_rows=rows,
        values_present=rows,
        drifted=drifted,
        reasons=[f"PSI {psi:.2f} ≥ 0.20"] if drifted else [],
    )


def a_drift_report(drifted: int, of: int, *, rows: int = 1000) -> DriftReport:
    features = [
        a_feature(f"f{i}", drifted=i < drifted, psi=0.41 if i < drifted else 0.01, rows=rows)
        for i in range(of)
    ]
    return DriftReport(
        rows=rows,
        features=features,
        prediction=None,
        drift_share=drifted / of,
        drifted_features=[f.name for f in features if f.drifted],
        psi_threshold=0.2,
        p_value_threshold=0.01 / of,
        max_missing_rate_change=0.2,
    )


def live(metric: float | None, rows: int = 512) -> Evaluation:
    return Evaluation(metrics={} if metric is None else {"roc_auc": metric}, rows=rows)


# --- the policy in the contract -------------------------------------------------------------------------


def test_the_policy_defaults_and_the_metric_follows_the_gates() -> None:
    assert contract().monitoring.metric is None  # the document keeps only what its author wrote
    policy = contract().monitoring_policy
    assert (policy.psi, policy.ks_p_value, policy.drift_share, policy.max_missing_rate_change) == (
        0.2,
        0.01,
        0.5,
        0.2,
    )
    assert (policy.max_metric_drop, policy.min_rows, policy.min_labelled_rows) == (0.05, 200, 100)
    assert (policy.cooldown_hours, policy.window_hours, policy.max_window_rows) == (24, 24, 200_000)
    assert policy.metric == "roc_auc"
    assert contract(Task.REGRESSION).monitoring_policy.metric == "rmse"
    gated = contract(gates={"min": {"f1": 0.6}, "max_regression": {"roc_auc": 0.01}})
    assert gated.monitoring_policy.metric == "f1"
    assert contract(monitoring={"metric": "log_loss"}).monitoring_policy.metric == "log_loss"
    with pytest.raises(ValueError, match="'log_loss' is not a regression metric"):
        contract(Task.REGRESSION, monitoring={"metric": "log_loss"})


def test_a_metric_of_another_task_and_an_impossible_window_are_refused_together() -> None:
    text = """
model: tiny
task: classification
target: label
features: {x: {type: numeric}}
monitoring: {metric: rmse, min_rows: 500, max_window_rows: 100, drift_share: 0}
"""
    with pytest.raises(ContractError) as refused:
        parse_contract(text)
    problems = refused.value.problems
    assert "monitoring.drift_share: Input should be greater than 0" in problems
    assert any(p.startswith("monitoring: metric 'rmse' is not a classification metric") for p in problems)
    with pytest.raises(ContractError, match="max_window_rows"):
        parse_contract(text.replace(", drift_share: 0", "").replace("rmse", "f1"))


# --- live performance -----------------------------------------------------------------------------------


def frame(rows: int, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, rows)
    kind = rng.choice(np.array(["a", "b", None], dtype=object), rows)
    label = np.where(x + rng.normal(0, 0.8, rows) > 0, "yes", "no").astype(object)
    return pd.DataFrame({"x": x, "kind": pd.Series(kind, dtype="str"), "label": label})


def test_live_performance_on_captured_predictions_equals_the_holdout_score() -> None:
    rules = contract()
    model = train(frame(400), rules)
    captured = predict_frame(model.pipeline, model.holdout, rules)
    labelled = captured.assign(label=model.holdout["label"].to_numpy())

    evaluation = live_performance(labelled, rules)

    assert evaluation.rows == len(model.holdout)
    assert evaluation.metrics == pytest.approx(score(model.pipeline, model.holdout, rules).metrics, abs=1e-12)
    truth = labelled["label"].to_numpy(dtype=object)
    assert evaluation.metrics == pytest.approx(
        {
            "accuracy": accuracy_score(truth, labelled["prediction"]),
            "f1": f1_score(truth, labelled["prediction"], average="macro"),
            "roc_auc": roc_auc_score(truth == "yes", labelled["proba_yes"]),
            "log_loss": log_loss(truth, labelled[["proba_no", "proba_yes"]], labels=["no", "yes"]),
        }
    )


def test_live_performance_leaves_out_unlabelled_rows_and_what_it_cannot_compute() -> None:
    rules = contract()
    labelled = pd.DataFrame(
        {
            "prediction": ["yes", "no", "yes"],
            "proba_no": [0.2, 0.7, 0.4],
            "proba_yes": [0.8, 0.3, 0.6],
            "label": ["yes", "yes", None],
        }
    )

    evaluation = live_performance(labelled, rules)

    assert evaluation.rows == 2
    assert evaluation.metrics["accuracy"] == 0.5
    assert "roc_auc" not in evaluation.metrics
    assert evaluation.notes[0] == "1 capture(s) without a label left out"
    assert any(n.startswith("roc_auc: the labelled window has a single class") for n in evaluation.notes)


# --- the decision table ---------------------------------------------------------------------------------


def test_nothing_crossed_means_nothing_to_do() -> None:
    decision = decide(a_drift_report(1, 6), live(0.80), HOLDOUT, POLICY, None, NOW)

    assert decision.action == "none" and decision.reason is None
    assert decision.reasons == [
        "roc_auc 0.800 on 512 labelled rows against 0.820 on the holdout; within the 0.050 allowed",
        "1 of 6 features drifted (share 0.17 < 0.50) in 1,000 rows: f0 (PSI 0.41 ≥ 0.20)",
    ]


@pytest.mark.parametrize(("drifted", "action"), [(3, "retrain"), (2, "none")])
def test_the_drift_share_threshold_alone(drifted: int, action: str) -> None:
    decision = decide(a_drift_report(drifted, 6), live(0.81), HOLDOUT, POLICY, None, NOW)

    assert decision.action == action
    if action == "retrain":
        assert decision.reason == "drift"
        assert decision.reasons[0] == (
            "3 of 6 features drifted (share 0.50 ≥ 0.50) in 1,000 rows: "
            "f0 (PSI 0.41 ≥ 0.20), f1 (PSI 0.41 ≥ 0.20), f2 (PSI 0.41 ≥ 0.20)"
        )


@pytest.mark.parametrize(("value", "action"), [(0.769, "retrain"), (0.77, "none"), (0.90, "none")])
def test_the_metric_drop_threshold_alone(value: float, action: str) -> None:
    decision = decide(a_drift_report(0, 6), live(value), HOLDOUT, POLICY, None, NOW)

    assert decision.action == action
    if action == "retrain":
        assert decision.reason == "degradation"
        assert decision.reasons[0] == (
            "roc_auc fell from 0.820 (holdout) to 0.769 on 512 labelled rows; at most 0.050 allowed"
        )


def test_a_lower_is_better_metric_degrades_when_it_rises() -> None:
    policy = MonitoringPolicy(metric="rmse", max_metric_drop=0.5)
    worse = Evaluation(metrics={"rmse": 3.6}, rows=300)

    decision = decide(None, worse, {"rmse": 3.0}, policy, None, NOW)

    assert decision.action == "retrain" and decision.reason == "degradation"
    assert decision.reasons[0].startswith("rmse rose from 3.000 (holdout) to 3.600 on 300 labelled rows")


def test_degradation_takes_precedence_over_drift() -> None:
    decision = decide(a_drift_report(6, 6), live(0.60), HOLDOUT, POLICY, None, NOW)

    assert decision.action == "retrain" and decision.reason == "degradation"
    assert decision.reasons[0].startswith("roc_auc fell from 0.820")
    assert decision.reasons[1].startswith("6 of 6 features drifted")


def test_a_trigger_within_the_cooldown_is_held_back_with_its_reason() -> None:
    last = NOW - timedelta(hours=3.2)

    held = decide(a_drift_report(4, 6), live(0.81), HOLDOUT, POLICY, last, NOW)

    assert held.action == "held_back" and held.reason == "drift"
    assert held.reasons[0] == "held back: last retraining triggered 3.2 h ago, cooldown 24 h"
    assert held.reasons[1].startswith("4 of 6 features drifted")
    after = decide(a_drift_report(4, 6), live(0.81), HOLDOUT, POLICY, NOW - timedelta(hours=24), NOW)
    assert after.action == "retrain"
    no_cooldown = MonitoringPolicy(metric="roc_auc", cooldown_hours=0)
    assert decide(a_drift_report(4, 6), None, HOLDOUT, no_cooldown, last, NOW).action == "retrain"


def test_too_few_rows_and_too_few_labels_is_insufficient_data_with_the_counts() -> None:
    decision = decide(a_drift_report(6, 6, rows=150), live(0.5, rows=40), HOLDOUT, POLICY, None, NOW)

    assert decision.action == "insufficient_data" and decision.reason is None
    assert decision.reasons == [
        "150 rows in the window; at least 200 needed to judge drift",
        "40 labelled rows; at least 100 needed to judge roc_auc",
    ]
    assert decide(None, None, HOLDOUT, POLICY, None, NOW).action == "insufficient_data"


def test_too_few_labels_judges_drift_alone() -> None:
    decision = decide(a_drift_report(3, 6), live(0.1, rows=99), HOLDOUT, POLICY, None, NOW)

    assert decision.action == "retrain" and decision.reason == "drift"
    assert "99 labelled rows; at least 100 needed to judge roc_auc" in decision.reasons


def test_too_few_rows_judges_performance_alone() -> None:
    decision = decide(a_drift_report(6, 6, rows=199), live(0.6), HOLDOUT, POLICY, None, NOW)

    assert decision.action == "retrain" and decision.reason == "degradation"
    assert "199 rows in the window; at least 200 needed to judge drift" in decision.reasons
    steady = decide(a_drift_report(6, 6, rows=199), live(0.82), HOLDOUT, POLICY, None, NOW)
    assert steady.action == "none"


def test_a_metric_that_cannot_be_computed_is_not_judged() -> None:
    undefined = Evaluation(metrics={}, notes=["roc_auc: the labelled window has a single class"], rows=300)

    decision = decide(None, undefined, HOLDOUT, POLICY, None, NOW)

    assert decision.action == "none"
    assert decision.reasons[0] == (
        "roc_auc could not be computed on 300 labelled rows "
        "(the labelled window has a single class); not judged"
    )


def test_prediction_drift_alone_is_reported_and_never_triggers() -> None:
    report = a_drift_report(0, 6).model_copy(
        update={
            "prediction": PredictionDrift(
                task=Task.CLASSIFICATION,
                rows=1000,
                psi=0.5,
                drifted=True,
                distributions=[
                    PredictionDistribution(
                        title="P(yes)", psi=0.5, bins=["a"], reference_shares=[1.0], live_shares=[1.0]
                    )
                ],
                reasons=["P(yes) PSI 0.50 ≥ 0.20"],
            )
        }
    )

    decision = decide(report, None, HOLDOUT, POLICY, None, NOW)

    assert decision.action == "none"
    assert "the predictions drifted (P(yes) PSI 0.50 ≥ 0.20); reported, never a trigger by itself" in (
        decision.reasons
    )


def test_a_policy_without_a_metric_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="names no metric"):
        decide(None, None, {}, MonitoringPolicy(), None, NOW)


# --- each feature threshold alone, from data to decision ------------------------------------------------


@pytest.fixture(scope="module")
def window() -> tuple[DataContract, dict[str, Any], pd.DataFrame]:
    """One feature, one window with a little of everything moved: PSI, the KS p-value and the missing
    rate each cross or not depending only on the policy."""
    rules = DataContract.model_validate(
        {
            "model": "tiny",
            "task": "classification",
            "target": "label",
            "features": {"x": {"type": "numeric", "nullable": True}},
        }
    )
    rng = np.random.default_rng(21)
    train_x = rng.normal(0, 1, 4000)
    profile = reference_profile(
        pd.DataFrame({"x": train_x}),
        pd.DataFrame({"prediction": ["no", "yes"], "proba_no": [0.6, 0.3], "proba_yes": [0.4, 0.7]}),
        rules,
    )
    live_x = rng.normal(0.25, 1, 1000)
    live_x[:150] = np.nan
    return rules, profile, pd.DataFrame({"x": live_x})


def judged(window: tuple[DataContract, dict[str, Any], pd.DataFrame], **limits: float) -> tuple[Any, str]:
    rules, profile, frame = window
    # Thresholds not under test are out of reach.
    policy = MonitoringPolicy(
        metric="roc_auc",
        **{"psi": 1e6, "ks_p_value": 1e-300, "max_missing_rate_change": 1.0, "drift_share": 1.0, **limits},
    )
    report = compute_drift(frame, None, profile, rules, policy)
    return report.features[0], decide(report, None, HOLDOUT, policy, None, NOW).action


def test_the_psi_threshold_alone(window: tuple[DataContract, dict[str, Any], pd.DataFrame]) -> None:
    statistics, _ = judged(window)
    psi = statistics.psi

    crossed, action = judged(window, psi=psi)
    assert crossed.reasons == [f"PSI {psi:.2f} ≥ {psi:.2f}"] and action == "retrain"
    assert judged(window, psi=psi + 1e-9)[1] == "none"


def test_the_test_p_value_threshold_alone_with_the_correction(
    window: tuple[DataContract, dict[str, Any], pd.DataFrame],
) -> None:
    statistics, _ = judged(window)
    p_value = statistics.p_value
    assert statistics.test == "ks" and 0 < p_value < 0.01

    crossed, action = judged(window, ks_p_value=p_value * 1.01)
    assert crossed.reasons[0].startswith("KS p ") and action == "retrain"
    assert judged(window, ks_p_value=p_value)[1] == "none"  # strictly below


def test_the_missing_rate_threshold_alone(window: tuple[DataContract, dict[str, Any], pd.DataFrame]) -> None:
    statistics, _ = judged(window)
    assert statistics.missing_rate_change == pytest.approx(0.15)

    crossed, action = judged(window, max_missing_rate_change=0.149)
    assert crossed.reasons == ["missing rate 0.00 → 0.15 (change 0.15 > 0.15)"] and action == "retrain"
    assert judged(window, max_missing_rate_change=0.151)[1] == "none"


def test_identical_distributions_never_trigger(
    window: tuple[DataContract, dict[str, Any], pd.DataFrame],
) -> None:
    rules, profile, _ = window
    sample = pd.DataFrame({"x": profile["features"]["x"]["sample"] * 3})

    report = compute_drift(sample, None, profile, rules)
    decision = decide(report, live(0.82), HOLDOUT, rules.monitoring_policy, None, NOW)

    assert report.features[0].p_value == 1.0 and not report.features[0].drifted
    assert decision.action == "none"
