"""Experiments: the contract's search space, Optuna asked in batches, trials scored without the holdout and
stopped at their budget, and the store that keeps them."""

from __future__ import annotations

import operator
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shared.data.contract import parse_contract
from shared.data.search_space import ExperimentPolicy
from shared.errors import ConflictError, ContractError
from shared.experiments import (
    Experiment,
    ExperimentStatus,
    InMemoryExperimentStore,
    Trial,
    TrialStatus,
    latest_completed,
)
from shared.ml.experiments import (
    Told,
    ask,
    best,
    experiment_problems,
    fold_frames,
    run_with_budget,
    score_trial,
)
from shared.ml.training import split_holdout

pytestmark = pytest.mark.unit

CONTRACT = """
model: churn
task: classification
target: churned
id_column: customer_id
features:
  tenure: {type: numeric}
  plan: {type: categorical}
training:
  estimator: hist_gradient_boosting
experiment:
  metric: roc_auc
  trials: 6
  parallel: 3
  strategy: tpe
  cv: {folds: 3}
  space:
    learning_rate: {float: [0.01, 0.3], log: true}
    max_depth: {int: [2, 8]}
    l2_regularization: {choice: [0.0, 0.1, 1.0]}
"""


def policy(**changes: Any) -> ExperimentPolicy:
    base: dict[str, Any] = {
        "metric": "roc_auc",
        "trials": 6,
        "parallel": 3,
        "space": {"max_depth": {"int": [2, 8]}, "learning_rate": {"float": [0.01, 0.3], "log": True}},
    }
    return ExperimentPolicy.model_validate({**base, **changes})


def frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.uniform(0, 60, rows)
    plan = rng.choice(["basic", "pro"], rows)
    churned = (rng.uniform(0, 1, rows) < 1 / (1 + np.exp((tenure - 20) / 8))).astype(int).astype(str)
    return pd.DataFrame(
        {"customer_id": [f"c{i}" for i in range(rows)], "tenure": tenure, "plan": plan, "churned": churned}
    )


def test_a_contract_with_an_experiment_block_parses_and_round_trips() -> None:
    contract = parse_contract(CONTRACT)
    assert contract.experiment is not None
    assert contract.experiment.folds == 3
    assert contract.experiment.space["max_depth"].int_range == (2, 8)
    assert parse_contract(contract.to_yaml()) == contract
    assert experiment_problems(contract) == []


@pytest.mark.parametrize(
    ("space", "problem"),
    [
        ({"max_depth": {"int": [8, 2]}}, "is empty"),
        ({"learning_rate": {"float": [0.0, 0.3], "log": True}}, "positive low bound"),
        ({"l2_regularization": {"choice": []}}, "at least one value"),
        ({"max_depth": {"int": [2, 8], "choice": [3]}}, "exactly one"),
    ],
)
def test_a_bad_range_is_refused_when_the_contract_is_parsed(space: dict[str, Any], problem: str) -> None:
    text = (
        CONTRACT.split("  space:", 1)[0]
        + "  space:\n"
        + "".join(f"    {name}: {value}\n" for name, value in space.items())
    )
    with pytest.raises(ContractError, match=problem):
        parse_contract(text.replace("'", '"'))


def test_every_problem_with_the_estimator_is_listed_at_once() -> None:
    text = CONTRACT.replace("max_depth: {int: [2, 8]}", "depth: {int: [2, 8]}").replace(
        "l2_regularization: {choice: [0.0, 0.1, 1.0]}", "l2_regularization: {choice: [-1.0, 0.1]}"
    )
    problems = experiment_problems(parse_contract(text))
    assert len(problems) == 2
    assert "experiment.space.depth: not a parameter of hist_gradient_boosting" in problems[0]
    assert "experiment.space.l2_regularization: -1.0 is refused" in problems[1]


def test_a_metric_of_another_task_is_refused() -> None:
    with pytest.raises(ContractError, match=r"experiment\.metric: metric .rmse. is not a classification"):
        parse_contract(CONTRACT.replace("metric: roc_auc", "metric: rmse"))


def test_a_grid_needs_listable_dimensions_and_caps_the_budget() -> None:
    with pytest.raises(ValueError, match="a grid lists every value"):
        policy(strategy="grid")
    grid = policy(strategy="grid", trials=50, space={"max_depth": {"int": [2, 4]}, "l2": {"choice": [0, 1]}})
    assert grid.grid_size() == 6
    assert grid.budget == 6


def test_the_same_history_asks_the_same_trials_and_a_new_batch_asks_new_ones() -> None:
    search = policy(strategy="random")
    first = ask(search, [], 3, higher_is_better=True, seed=42)
    assert first == ask(search, [], 3, higher_is_better=True, seed=42)
    told = [Told(a.params, 0.5, a.system_attrs) for a in first]
    second = ask(search, told, 3, higher_is_better=True, seed=42)
    assert {repr(a.params) for a in first}.isdisjoint({repr(a.params) for a in second})
    for asked in [*first, *second]:
        assert 2 <= asked.params["max_depth"] <= 8
        assert 0.01 <= asked.params["learning_rate"] <= 0.3


def test_a_grid_rebuilt_from_its_history_visits_every_point_once() -> None:
    grid = policy(strategy="grid", trials=6, space={"max_depth": {"int": [2, 4]}, "l2": {"choice": [0, 1]}})
    history: list[Told] = []
    while len(history) < grid.budget:
        for asked in ask(grid, history, 2, higher_is_better=True, seed=1):
            history.append(Told(asked.params, 0.1, asked.system_attrs))
    assert sorted((t.params["max_depth"], t.params["l2"]) for t in history) == [
        (d, c) for d in (2, 3, 4) for c in (0, 1)
    ]


def test_the_best_trial_follows_the_metric_direction_and_skips_failures() -> None:
    results = [(0, 0.7), (1, None), (2, 0.9), (3, 0.9)]
    assert best(results, higher_is_better=True) == 2
    assert best(results, higher_is_better=False) == 0
    assert best([(0, None)], higher_is_better=True) is None


def test_folds_never_touch_the_holdout_the_gate_judges_with() -> None:
    contract = parse_contract(CONTRACT)
    data = frame()
    training, holdout = split_holdout(data, contract)
    folds = fold_frames(training, contract, contract.experiment)  # type: ignore[arg-type]
    assert len(folds) == 3
    held = set(holdout["customer_id"])
    for fit, validate in folds:
        assert held.isdisjoint(fit["customer_id"]) and held.isdisjoint(validate["customer_id"])
        assert set(fit["customer_id"]).isdisjoint(validate["customer_id"])
    scored = score_trial(data, contract, None, {"max_depth": 3, "learning_rate": 0.1}, contract.experiment)  # type: ignore[arg-type]
    assert len(scored.folds) == 3
    assert scored.value == pytest.approx(np.mean([f["roc_auc"] for f in scored.folds]))
    assert 0.5 < scored.value <= 1.0


def test_a_trial_that_raises_or_overruns_comes_back_as_an_outcome() -> None:
    failed = run_with_budget(operator.truediv, (1, 0), 30)
    assert (failed.status, failed.error_type) == ("failed", "ZeroDivisionError")
    started = time.monotonic()
    stopped = run_with_budget(time.sleep, (30,), 1)
    assert stopped.status == "timeout"
    assert time.monotonic() - started < 10
    assert run_with_budget(operator.add, (1, 2), 30).value == 3


def _experiment(store: InMemoryExperimentStore, experiment_id: str, at: datetime) -> Experiment:
    experiment = Experiment(
        experiment_id=experiment_id,
        model="churn",
        run_id=experiment_id,
        metric="roc_auc",
        higher_is_better=True,
        policy={"space": {"max_depth": {}}},
        builder="hist_gradient_boosting",
        started_at=at,
    )
    assert store.create(experiment)
    return experiment


def test_the_store_keeps_each_trial_asked_once_and_ended_once() -> None:
    store = InMemoryExperimentStore()
    experiment = _experiment(store, "exp-1", datetime(2026, 1, 1, tzinfo=UTC))
    assert not store.create(experiment)
    trial = Trial(
        experiment_id="exp-1", number=0, params={"max_depth": 3}, asked_at=datetime.now(UTC), run_id="exp-1"
    )
    store.put_trial(trial)
    with pytest.raises(ConflictError):
        store.put_trial(trial)
    ended = trial.model_copy(update={"status": TrialStatus.SUCCEEDED, "value": 0.8})
    store.put_trial(ended)
    with pytest.raises(ConflictError):
        store.put_trial(ended.model_copy(update={"status": TrialStatus.TIMEOUT}))
    assert store.trials("exp-1") == [ended]


def test_the_latest_completed_experiment_is_the_one_a_retrain_reuses() -> None:
    store = InMemoryExperimentStore()
    older = _experiment(store, "exp-1", datetime(2026, 1, 1, tzinfo=UTC))
    store.save(older.model_copy(update={"status": ExperimentStatus.COMPLETED, "best_params": {"a": 1}}))
    newer = _experiment(store, "exp-2", datetime(2026, 2, 1, tzinfo=UTC))
    store.save(newer.model_copy(update={"status": ExperimentStatus.FAILED}))
    found = latest_completed(store, "churn")
    assert found is not None and found.experiment_id == "exp-1"
    with pytest.raises(ConflictError):
        store.save(newer)
