"""An experiment on the local cloud: `flywheel experiment churn --wait` runs the same state machine as AWS,
whose Map state fans the trials out at once; each trial is recorded, a trial that raises and one that
overruns its budget are recorded as such and the search goes on; the winner is refit, judged against
production, and its lineage leads to the experiment. Then a manual retrain reuses the winner's parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.experiments import ExperimentStatus, TrialStatus
from shared.metadata import Run, RunReason, RunStatus
from tests.integration.test_delivery import Delivery, cloud_for

pytestmark = pytest.mark.integration

TRAINING = {"estimator": "hist_gradient_boosting", "params": {"max_iter": 30}}
EXPERIMENT: dict[str, Any] = {
    "metric": "roc_auc",
    "trials": 6,
    "parallel": 3,
    "strategy": "random",
    "cv": {"folds": 2},
    "trial_timeout_seconds": 60,
    "space": {
        "learning_rate": {"float": [0.02, 0.3], "log": True},
        "max_depth": {"int": [2, 6]},
        "max_leaf_nodes": {"choice": [15, 31]},
    },
}


def latest_experiment_run(dev: Delivery) -> Run:
    return next(r for r in dev.svc.metadata.list_runs("churn") if r.reason is RunReason.EXPERIMENT)


@pytest.fixture(scope="class")
def dev() -> Iterator[Delivery]:
    yield from cloud_for("dev")


class TestExperiment:
    def test_production_exists_first(self, dev: Delivery) -> None:
        dev.put_contract(training=TRAINING)
        done = dev.finish(dev.upload("incoming/churn/first.csv", rows=900, seed=3))
        assert done.status == "SUCCEEDED", done.steps
        assert dev.production() is not None

    def test_an_experiment_fans_its_trials_out_and_delivers_the_winner(
        self, dev: Delivery, tmp_path: Path
    ) -> None:
        dev.put_contract(training=TRAINING, experiment=EXPERIMENT)
        result = dev.flywheel("experiment", "churn", "--wait")
        assert result.exit_code == 0, result.output
        # Waiting shows the trials as they end, with the best so far.
        assert "6/6 trials ended (0 running), best roc_auc" in result.output
        run = latest_experiment_run(dev)
        run_id = run.run_id
        assert run.reason is RunReason.EXPERIMENT
        assert run.status in {RunStatus.SUCCEEDED, RunStatus.REJECTED}, run.outcome

        experiment = dev.svc.experiments.get(run_id)
        trials = dev.svc.experiments.trials(run_id)
        assert experiment.status is ExperimentStatus.COMPLETED
        assert [t.number for t in trials] == list(range(6))
        assert all(t.status.finished for t in trials)
        scored = [t for t in trials if t.status is TrialStatus.SUCCEEDED]
        assert scored and all(len(t.folds) == 2 for t in scored)
        best = max(scored, key=lambda t: (t.value, -t.number))
        assert experiment.best_trial == best.number

        # The fan-out is real: each batch of three ran through the Map state, at once.
        history = dev.cloud.history(run.execution_arn or "")
        maps = [e for e in history if e["type"] == "MapStateStarted"]
        assert len(maps) == 2
        events = [e["type"] for e in history]
        assert events.count("MapIterationSucceeded") == 6

        version = dev.version(int(run.outcome["version"]))
        assert version.experiment is not None
        assert (version.experiment.experiment_id, version.experiment.trial) == (run_id, best.number)
        assert version.params["learning_rate"] == pytest.approx(best.params["learning_rate"])

        shown = dev.flywheel("lineage", f"churn:{version.version}")
        assert f"chosen by experiment {run_id}, trial {best.number}" in shown.output
        listed = dev.flywheel("experiments", "churn")
        assert run_id in listed.output and "completed" in listed.output
        page = tmp_path / "experiment.html"
        ranked = dev.flywheel("experiment", "show", run_id, "--html", str(page))
        assert ranked.exit_code == 0, ranked.output
        assert f"trial {best.number}: roc_auc=" in ranked.output
        assert f"page       {page}" in ranked.output
        # The page draws the metric over the six trials and one chart per searched parameter.
        html = page.read_text()
        assert html.count("<svg ") == 1 + len(EXPERIMENT["space"])
        assert f"Winner: trial {best.number}" in html

    def test_a_retrain_between_experiments_trains_the_last_winner(self, dev: Delivery) -> None:
        winner = latest_experiment_run(dev)
        experiment = dev.svc.experiments.get(winner.run_id)
        done = dev.finish(dev.start())
        assert done.status == "SUCCEEDED", done.steps
        version = dev.version(done.version)
        assert version.experiment is not None
        assert version.experiment.reused is True
        assert (version.experiment.experiment_id, version.experiment.trial) == (
            experiment.experiment_id,
            experiment.best_trial,
        )
        assert version.params["max_depth"] == experiment.best_params["max_depth"]  # type: ignore[index]
        shown = dev.flywheel("lineage", f"churn:{version.version}")
        assert f"reused from experiment {experiment.experiment_id}" in shown.output

    def test_a_trial_that_raises_and_one_over_budget_are_recorded_and_the_search_completes(
        self, dev: Delivery
    ) -> None:
        # Two trials: one asks for a validation split too small to hold both classes, which scikit-learn
        # accepts when the contract is put but refuses at fit; the other can never stop early, so it runs
        # past its 15 s budget (room for the first to start its interpreter and raise on a busy machine).
        # Neither fails the search; with no trial scored, the run fails.
        failing = {
            **EXPERIMENT,
            "trials": 2,
            "parallel": 2,
            "strategy": "grid",
            "trial_timeout_seconds": 15,
            "space": {"validation_fraction": {"choice": [0.0001, 0.2]}},
        }
        slow = {"max_iter": 1_000_000, "early_stopping": True, "n_iter_no_change": 1_000_000}
        dev.put_contract(training={**TRAINING, "params": slow}, experiment=failing)
        production = dev.production()
        result = dev.flywheel("experiment", "churn", "--wait")
        assert result.exit_code == 1, result.output  # the run failed: no trial scored
        run_id = latest_experiment_run(dev).run_id
        trials = {t.params["validation_fraction"]: t for t in dev.svc.experiments.trials(run_id)}
        assert trials[0.0001].status is TrialStatus.FAILED
        assert trials[0.0001].error_type == "ValueError"
        assert trials[0.2].status is TrialStatus.TIMEOUT
        # No trial scored: the experiment has no winner, its run fails and production stays as it was.
        assert dev.svc.experiments.get(run_id).status is ExperimentStatus.FAILED
        assert dev.svc.metadata.get_run(run_id).status is RunStatus.FAILED
        assert dev.production() == production
