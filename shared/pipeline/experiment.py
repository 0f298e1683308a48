"""An experiment run's two steps: Experiment (tell Optuna the last batch, ask the next) and Trial.

The state machine loops ``Experiment → Trials (Map) → Experiment`` until the budget is spent, then goes on
to Train, which refits the winner's parameters on the whole training window; from there the candidate is
judged, registered, verified and promoted as any other (:mod:`shared.pipeline.steps`). A trial that fails
or runs past its budget is recorded as such and the search goes on; an experiment none of whose trials
scored fails its run, and production stays as it was.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from shared.data.search_space import ExperimentPolicy
from shared.errors import ContractError, FlywheelError
from shared.experiments import Experiment, ExperimentStatus, Trial, TrialStatus
from shared.featurestore.contracts import load_training_contract
from shared.ml.experiments import Told, ask, best, check_experiment, run_with_budget, score_trial
from shared.ml.projects import read_project
from shared.ml.training_window import training_window
from shared.observability import logger, metrics
from shared.pipeline.runs import recorded_step
from shared.pipeline.state import ExperimentState, RunState
from shared.pipeline.steps import training_inputs
from shared.registry import ExperimentRef
from shared.services import Services


class ExperimentFailedError(FlywheelError):
    """No trial of the experiment scored: there is no winner to train."""


# --- Experiment: tell, then ask ---------------------------------------------------------------------------


def experiment_step(state: RunState, svc: Services) -> RunState:
    """Record the batch the Map ran, then ask the next one, or choose the winner when the budget is spent."""
    search = state.experiment or ExperimentState(experiment_id=state.run_id)
    with recorded_step(svc, state, f"experiment-{search.round + 1}"):
        contract = load_training_contract(svc.objects, svc.settings, state.model).contract
        policy = contract.experiment
        if policy is None:
            raise ContractError(
                f"model {state.model!r}'s contract has no experiment block: add one (metric, trials, space) "
                "and put the contract again",
                problems=["experiment: missing"],
            )
        check_experiment(contract)
        experiment = _begin(svc, state, search.experiment_id, policy)
        trials = {t.number: t for t in svc.experiments.trials(experiment.experiment_id)}
        trials.update(_told(svc, trials, search.results))
        waiting = sorted(n for n, t in trials.items() if not t.status.finished)
        if waiting:
            # A retry of this step after it had asked: the batch it asked is the one to run.
            batch = [trials[n] for n in waiting]
        elif len(trials) >= policy.budget:
            return state.model_copy(update={"experiment": _conclude(svc, experiment, trials, search)})
        else:
            batch = _ask(svc, state, experiment, policy, trials)
        logger.info(
            "experiment batch asked",
            extra={"experiment": experiment.experiment_id, "trials": [t.number for t in batch]},
        )
        updated = search.model_copy(
            update={
                "parallel": policy.parallel,
                "timeout_seconds": policy.trial_timeout_seconds,
                "round": search.round + 1,
                "batch": [{"number": t.number, "params": t.params} for t in batch],
                "results": None,
            }
        )
        return state.model_copy(update={"experiment": updated})


def _begin(svc: Services, state: RunState, experiment_id: str, policy: ExperimentPolicy) -> Experiment:
    """The experiment record, created on the first round (a retried first round finds it)."""
    contract = load_training_contract(svc.objects, svc.settings, state.model).contract
    datasets = training_window(svc.metadata.list_datasets(state.model), contract)
    code = (
        read_project(Path(svc.settings.models_dir) / state.model, state.model)
        if contract.training.pipeline is not None
        else None
    )
    experiment = Experiment(
        experiment_id=experiment_id,
        model=state.model,
        run_id=state.run_id,
        metric=policy.metric,
        higher_is_better=contract.higher_is_better(policy.metric),
        policy=policy.model_dump(mode="json", exclude_none=True),
        builder=contract.training.builder,
        base_params=dict(contract.training.params),
        code_digest=code.digest if code else None,
        datasets=[d.dataset_id for d in datasets],
        started_at=datetime.now(UTC),
    )
    if svc.experiments.create(experiment):
        logger.info("experiment started", extra={"experiment": experiment_id, "budget": policy.budget})
        return experiment
    return svc.experiments.get(experiment_id)


def _told(svc: Services, trials: dict[int, Trial], results: list[dict[str, Any]] | None) -> dict[int, Trial]:
    """Trials the Map ran whose function failed before recording them (a crash, Lambda's own timeout):
    the Catch's error, recorded as their outcome."""
    updated: dict[int, Trial] = {}
    for result in results or []:
        number = result.get("number")
        trial = trials.get(number) if isinstance(number, int) else None
        if trial is None or trial.status.finished:
            continue
        error = result.get("error") or {}
        cause = str(error.get("Cause") or "the trial's function failed without recording the trial")
        updated[trial.number] = svc.experiments.put_trial(
            trial.model_copy(
                update={
                    "status": TrialStatus.FAILED,
                    "error_type": str(error.get("Error") or "TrialLost"),
                    "error": cause[:4000],
                    "ended_at": datetime.now(UTC),
                }
            )
        )
    return updated


def _ask(
    svc: Services,
    state: RunState,
    experiment: Experiment,
    policy: ExperimentPolicy,
    trials: dict[int, Trial],
) -> list[Trial]:
    history = [
        Told(params=t.params, value=t.value, system_attrs=t.system_attrs)
        for t in sorted(trials.values(), key=lambda t: t.number)
    ]
    count = min(policy.parallel, policy.budget - len(trials))
    contract = load_training_contract(svc.objects, svc.settings, state.model).contract
    asked = ask(
        policy, history, count, higher_is_better=experiment.higher_is_better, seed=contract.training.seed
    )
    now = datetime.now(UTC)
    return [
        svc.experiments.put_trial(
            Trial(
                experiment_id=experiment.experiment_id,
                number=len(trials) + i,
                params=a.params,
                system_attrs=a.system_attrs,
                asked_at=now,
                run_id=state.run_id,
            )
        )
        for i, a in enumerate(asked)
    ]


def _conclude(
    svc: Services, experiment: Experiment, trials: dict[int, Trial], search: ExperimentState
) -> ExperimentState:
    scored = [(t.number, t.value) for t in trials.values() if t.status is TrialStatus.SUCCEEDED]
    number = best(scored, higher_is_better=experiment.higher_is_better)
    counts = {s.value: sum(t.status is s for t in trials.values()) for s in TrialStatus if s.finished}
    ended = datetime.now(UTC)
    if number is None:
        errors = sorted({f"{t.error_type}: {(t.error or '').splitlines()[0][:200]}" for t in trials.values()})
        message = f"none of the experiment's {len(trials)} trials scored ({counts}); errors: {errors[:5]}"
        svc.experiments.save(
            experiment.model_copy(
                update={"status": ExperimentStatus.FAILED, "ended_at": ended, "error": message}
            )
        )
        raise ExperimentFailedError(message, problems=errors)
    winner = trials[number]
    value = float(winner.value) if winner.value is not None else float("nan")
    svc.experiments.save(
        experiment.model_copy(
            update={
                "status": ExperimentStatus.COMPLETED,
                "ended_at": ended,
                "best_trial": number,
                "best_value": value,
                "best_params": winner.params,
            }
        )
    )
    metrics.add_metric(name="ExperimentCompleted", unit=MetricUnit.Count, value=1)
    logger.info(
        "experiment completed",
        extra={"experiment": experiment.experiment_id, "best_trial": number, "value": value, **counts},
    )
    pick = ExperimentRef(
        experiment_id=experiment.experiment_id,
        trial=number,
        metric=experiment.metric,
        value=value,
        params=winner.params,
    )
    return search.model_copy(update={"done": True, "best": pick, "batch": [], "results": None})


# --- Trial ------------------------------------------------------------------------------------------------


def trial_step(event: dict[str, Any], svc: Services) -> dict[str, Any]:
    """Score one trial by cross-validation on the training window, in a process of its own that is stopped
    at the trial's budget; record how it ended. Returns the outcome the Map gathers (small: the Experiment
    step reads the full record). A trial whose fit raises is recorded as failed, not raised."""
    experiment = svc.experiments.get(str(event["experiment_id"]))
    number = int(event["trial"]["number"])
    trial = next((t for t in svc.experiments.trials(experiment.experiment_id) if t.number == number), None)
    if trial is None:
        raise FlywheelError(f"experiment {experiment.experiment_id} asked no trial {number}")
    if trial.status.finished:  # a redelivered iteration: the trial has run
        return _outcome(trial)
    policy = ExperimentPolicy.model_validate(experiment.policy)
    inputs = training_inputs(svc, experiment.model)
    digest = inputs.code.digest if inputs.code else None
    if digest != experiment.code_digest:
        ended = _finish(
            svc,
            trial,
            status=TrialStatus.FAILED,
            error_type="CodeMismatchError",
            error=f"the model code changed during the experiment ({experiment.code_digest} → {digest})",
        )
        return _outcome(ended)
    outcome = run_with_budget(
        score_trial,
        (inputs.frame, inputs.contract, inputs.code, trial.params, policy),
        policy.trial_timeout_seconds,
    )
    scored = outcome.value
    ended = _finish(
        svc,
        trial,
        status=TrialStatus(outcome.status),
        value=scored.value if scored is not None else None,
        folds=scored.folds if scored is not None else [],
        fit_seconds=scored.fit_seconds if scored is not None else None,
        seconds=outcome.seconds,
        error_type=outcome.error_type,
        error=outcome.error,
    )
    with single_metric(
        name=f"Trial{ended.status.value.capitalize()}",
        unit=MetricUnit.Count,
        value=1,
        namespace=metrics.namespace,
    ) as metric:
        metric.add_dimension(name="model", value=experiment.model)
    logger.info(
        "trial ended",
        extra={
            "experiment": experiment.experiment_id,
            "trial": number,
            "status": ended.status.value,
            "value": ended.value,
            "seconds": outcome.seconds,
        },
    )
    return _outcome(ended)


def _finish(svc: Services, trial: Trial, **changes: Any) -> Trial:
    error = changes.get("error")
    if isinstance(error, str):
        changes["error"] = error[:4000]
    return svc.experiments.put_trial(trial.model_copy(update={**changes, "ended_at": datetime.now(UTC)}))


def _outcome(trial: Trial) -> dict[str, Any]:
    return {"number": trial.number, "status": trial.status.value, "value": trial.value}
