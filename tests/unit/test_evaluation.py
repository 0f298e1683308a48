"""Scores match scikit-learn's own computations; gates decide as the contract says, and say why."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

from shared.data.contract import DataContract, Task
from shared.ml.evaluation import Evaluation, decide_gate, score
from shared.ml.training import prepare_features, train

pytestmark = pytest.mark.unit


def contract(task: Task = Task.CLASSIFICATION, gates: dict[str, Any] | None = None) -> DataContract:
    return DataContract.model_validate(
        {
            "model": "tiny",
            "task": task.value,
            "target": "label",
            "features": {"x": {"type": "numeric"}, "kind": {"type": "categorical", "nullable": True}},
            "training": {"estimator": "logistic_regression" if task is Task.CLASSIFICATION else "ridge"},
            "gates": gates or {},
        }
    )


def frame(rows: int, *, classes: tuple[str, ...] = ("no", "yes"), regression: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    x = rng.normal(0, 1, rows)
    kind = rng.choice(np.array(["a", "b", None], dtype=object), rows)
    noisy = x + rng.normal(0, 0.8, rows)
    if regression:
        label: Any = 2.0 * x + rng.normal(0, 0.5, rows)
    else:
        cuts = np.quantile(noisy, np.linspace(0, 1, len(classes) + 1)[1:-1])
        label = np.asarray(classes, dtype=object)[np.searchsorted(cuts, noisy)]
    return pd.DataFrame({"x": x, "kind": pd.Series(kind, dtype="str"), "label": label})


# --- score ----------------------------------------------------------------------------------------------


def test_binary_metrics_match_sklearn() -> None:
    rules = contract()
    model = train(frame(200), rules)
    evaluation = score(model.pipeline, model.holdout, rules)

    features = prepare_features(model.holdout, rules)
    truth = model.holdout["label"].to_numpy(dtype=object)
    predicted = model.pipeline.predict(features)
    probabilities = model.pipeline.predict_proba(features)
    assert evaluation.rows == 40
    assert evaluation.notes == []
    assert evaluation.metrics == pytest.approx(
        {
            "accuracy": accuracy_score(truth, predicted),
            "f1": f1_score(truth, predicted, average="macro"),
            "roc_auc": roc_auc_score(truth == "yes", probabilities[:, 1]),
            "log_loss": log_loss(truth, probabilities, labels=["no", "yes"]),
        }
    )
    assert evaluation.metrics["roc_auc"] > 0.7


def test_multiclass_auc_is_one_vs_rest_macro() -> None:
    rules = contract()
    model = train(frame(300, classes=("high", "low", "mid")), rules)
    evaluation = score(model.pipeline, model.holdout, rules)
    features = prepare_features(model.holdout, rules)
    expected = roc_auc_score(
        model.holdout["label"].to_numpy(dtype=object),
        model.pipeline.predict_proba(features),
        multi_class="ovr",
        average="macro",
        labels=["high", "low", "mid"],
    )
    assert evaluation.metrics["roc_auc"] == pytest.approx(expected)
    assert set(evaluation.metrics) == {"accuracy", "f1", "roc_auc", "log_loss"}


def test_a_metric_that_cannot_be_computed_is_left_out_with_a_note() -> None:
    rules = contract()
    model = train(frame(200), rules)
    one_class = model.holdout[model.holdout["label"] == "yes"]
    evaluation = score(model.pipeline, one_class, rules)
    assert "roc_auc" not in evaluation.metrics
    assert {"accuracy", "f1", "log_loss"} <= set(evaluation.metrics)
    assert any(note.startswith("roc_auc: the holdout has a single class") for note in evaluation.notes)

    empty = score(model.pipeline, model.holdout.iloc[:0], rules)
    assert empty.rows == 0
    assert empty.metrics == {}


def test_regression_metrics_match_sklearn() -> None:
    rules = contract(Task.REGRESSION)
    model = train(frame(100, regression=True), rules)
    evaluation = score(model.pipeline, model.holdout, rules)
    truth = model.holdout["label"].to_numpy()
    predicted = model.pipeline.predict(prepare_features(model.holdout, rules))
    assert evaluation.metrics == pytest.approx(
        {
            "rmse": root_mean_squared_error(truth, predicted),
            "mae": mean_absolute_error(truth, predicted),
            "r2": r2_score(truth, predicted),
        }
    )
    single = score(model.pipeline, model.holdout.iloc[:1], rules)
    assert "r2" not in single.metrics
    assert "rmse" in single.metrics


# --- gates ----------------------------------------------------------------------------------------------


def scores(**metrics: float) -> Evaluation:
    return Evaluation(metrics=metrics, notes=[], rows=100)


def test_no_gates_configured_passes() -> None:
    decision = decide_gate(scores(roc_auc=0.5), None, contract())
    assert decision.passed
    assert decision.checks == []
    assert decision.reasons == ["no gates configured"]


def test_a_floor_holds_higher_is_better_metrics_up() -> None:
    rules = contract(gates={"min": {"roc_auc": 0.7}})
    failed = decide_gate(scores(roc_auc=0.681), None, rules)
    assert not failed.passed
    assert failed.reasons == ["roc_auc 0.681 is below the floor 0.700"]
    assert failed.checks[0].kind == "min"
    assert failed.checks[0].candidate == 0.681
    assert decide_gate(scores(roc_auc=0.7), None, rules).passed  # the floor itself passes
    close = decide_gate(scores(roc_auc=0.69996), None, rules)
    assert not close.passed
    assert close.reasons == ["roc_auc 0.69996 is below the floor 0.70000"]


def test_a_floor_on_a_lower_is_better_metric_is_a_ceiling() -> None:
    rules = contract(gates={"min": {"log_loss": 0.6}})
    failed = decide_gate(scores(log_loss=0.712), None, rules)
    assert not failed.passed
    assert failed.reasons == ["log_loss 0.712 is above the ceiling 0.600"]
    passed = decide_gate(scores(log_loss=0.4), None, rules)
    assert passed.passed
    assert passed.reasons == ["log_loss 0.400 is within the ceiling 0.600"]


def test_regression_within_the_allowance_passes() -> None:
    rules = contract(gates={"max_regression": {"roc_auc": 0.02}})
    decision = decide_gate(scores(roc_auc=0.90), scores(roc_auc=0.91), rules, champion_name="production v3")
    assert decision.passed
    assert decision.reasons == [
        "roc_auc fell 0.010 against production v3 (0.910 → 0.900); up to 0.020 allowed"
    ]
    improved = decide_gate(scores(roc_auc=0.95), scores(roc_auc=0.91), rules)
    assert improved.passed
    assert "an improvement" in improved.reasons[0]


def test_regression_beyond_the_allowance_fails_with_both_values() -> None:
    rules = contract(gates={"max_regression": {"roc_auc": 0.01}})
    decision = decide_gate(scores(roc_auc=0.878), scores(roc_auc=0.912), rules, champion_name="production v3")
    assert not decision.passed
    assert decision.reasons == [
        "roc_auc fell 0.034 against production v3 (0.912 → 0.878); at most 0.010 allowed"
    ]
    check = decision.checks[0]
    assert (check.kind, check.threshold, check.candidate, check.champion) == (
        "max_regression",
        0.01,
        0.878,
        0.912,
    )


def test_regression_follows_the_metric_direction() -> None:
    rules = contract(Task.REGRESSION, gates={"max_regression": {"rmse": 0.5}})
    worse = decide_gate(scores(rmse=3.0), scores(rmse=2.0), rules)
    assert not worse.passed
    assert worse.reasons[0].startswith("rmse rose 1.000")
    assert decide_gate(scores(rmse=1.0), scores(rmse=2.0), rules).passed


def test_regression_gate_does_not_apply_without_a_champion() -> None:
    rules = contract(gates={"max_regression": {"roc_auc": 0.0}})
    decision = decide_gate(scores(roc_auc=0.5), None, rules)
    assert decision.passed
    assert decision.checks[0].champion is None
    assert "no champion" in decision.reasons[0]
    champion_without_it = decide_gate(scores(roc_auc=0.5), scores(accuracy=0.9), rules)
    assert champion_without_it.passed


def test_a_gate_metric_missing_from_the_candidate_fails_clearly() -> None:
    rules = contract(gates={"min": {"roc_auc": 0.7}, "max_regression": {"roc_auc": 0.02}})
    candidate = Evaluation(
        metrics={"accuracy": 0.9}, notes=["roc_auc: the holdout has a single class (['no'])"], rows=10
    )
    decision = decide_gate(candidate, scores(roc_auc=0.9), rules)
    assert not decision.passed
    assert [c.passed for c in decision.checks] == [False, False]
    assert decision.reasons[0].startswith("roc_auc is missing from the candidate's metrics (the holdout has")


def test_only_failing_reasons_explain_a_failure() -> None:
    rules = contract(gates={"min": {"roc_auc": 0.7, "accuracy": 0.8}})
    decision = decide_gate(scores(roc_auc=0.75, accuracy=0.6), None, rules)
    assert not decision.passed
    assert decision.reasons == ["accuracy 0.600 is below the floor 0.800"]
    assert len(decision.checks) == 2
