"""Experiments: the search space's parameters checked, trials asked of Optuna, each trial scored by
cross-validation on the training part only, in a process of its own that is stopped at its time budget.

Optuna's ask-and-tell interface fits a fan-out: the pipeline asks a batch of ``parallel`` trials, its Map
state runs them at once, and the next ask tells Optuna what they scored. Between batches the study lives in
the metadata store, not in Optuna's storage: :func:`ask` rebuilds it from the trials told so far (their
parameters, values, states and Optuna's own ``system_attrs``, which is how a grid knows the points it
visited) and asks the next ones, seeded by the experiment's seed and how many trials came before, so the
same history always asks the same trials.

A trial never sees the holdout the gate judges with: :func:`score_trial` splits it off exactly as Train does
(:func:`shared.ml.training.split_holdout`) and folds only the rest.
"""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState
from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit

from shared.data.contract import DataContract, Task
from shared.data.search_space import ExperimentPolicy, SearchDimension
from shared.errors import ContractError, DataValidationError
from shared.ml.evaluation import score
from shared.ml.projects import ModelCode
from shared.ml.training import (
    _SEED_PARAM,
    _estimator_class,
    _invalid_value,
    build_pipeline,
    prepare_features,
    split_holdout,
    with_params,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

TrialStatus = Literal["asked", "succeeded", "failed", "timeout"]


# --- the contract's space against the estimator ----------------------------------------------------------


def experiment_problems(contract: DataContract) -> list[str]:
    """Every problem of the ``experiment:`` block that needs the estimator to see: a name that is not one of
    its parameters, a bound or choice it refuses. A model project's parameters are its ``build``'s own, so
    only trials can check them (a trial the code refuses is recorded as failed with the reason)."""
    policy = contract.experiment
    if policy is None or contract.training.pipeline is not None:
        return []
    estimator_class = _estimator_class(contract)
    valid = sorted(estimator_class().get_params(deep=False))
    label = f"{contract.training.estimator} ({estimator_class.__name__})"
    problems: list[str] = []
    for name, dimension in policy.space.items():
        where = f"experiment.space.{name}"
        if name == _SEED_PARAM:
            problems.append(f"{where}: training.seed seeds every random choice; it is not searched")
        elif name not in valid:
            problems.append(f"{where}: not a parameter of {label}; valid parameters: {valid}")
        else:
            for value in dimension.bounds():
                invalid = _invalid_value(estimator_class, name, value)
                if invalid:
                    problems.append(f"{where}: {value!r} is refused: {invalid}")
    return problems


def check_experiment(contract: DataContract) -> None:
    """Raise :class:`ContractError` listing every :func:`experiment_problems` (``contract put`` calls it)."""
    problems = experiment_problems(contract)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ContractError(f"experiment of {contract.model!r} is invalid:\n{lines}", problems=problems)


# --- asking Optuna ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Told:
    """A finished trial as the study is rebuilt from it."""

    params: dict[str, Any]
    value: float | None
    system_attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> TrialState:
        return TrialState.COMPLETE if self.value is not None else TrialState.FAIL


@dataclass(frozen=True)
class Asked:
    params: dict[str, Any]
    system_attrs: dict[str, Any]


def _distribution(dimension: SearchDimension) -> BaseDistribution:
    if dimension.choice is not None:
        return CategoricalDistribution(list(dimension.choice))
    if dimension.int_range is not None:
        low, high = dimension.int_range
        return IntDistribution(low, high, log=dimension.log, step=int(dimension.step or 1))
    low_f, high_f = dimension.float_range or (0.0, 1.0)
    return FloatDistribution(low_f, high_f, log=dimension.log, step=dimension.step)


def distributions(policy: ExperimentPolicy) -> dict[str, BaseDistribution]:
    return {name: _distribution(d) for name, d in policy.space.items()}


def _sampler(policy: ExperimentPolicy, seed: int) -> optuna.samplers.BaseSampler:
    if policy.strategy == "grid":
        grid = {name: d.grid_values() for name, d in policy.space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if policy.strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials asked together in one batch are spread apart instead of asked alike.
    startup = min(10, max(2, policy.budget // 4))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def ask(
    policy: ExperimentPolicy, history: Sequence[Told], count: int, *, higher_is_better: bool, seed: int
) -> list[Asked]:
    """The next ``count`` trials, given every trial told so far."""
    dists = distributions(policy)
    direction: Literal["maximize", "minimize"] = "maximize" if higher_is_better else "minimize"
    # Seeded by how many came before: the same history asks the same trials, a new batch new ones. A grid
    # keeps one seed: it shuffles its points by it, and grid ids of earlier trials index that order.
    offset = 0 if policy.strategy == "grid" else len(history)
    study = optuna.create_study(direction=direction, sampler=_sampler(policy, seed + offset))
    for told in history:
        study.add_trial(
            optuna.trial.create_trial(
                state=told.state,
                value=told.value,
                params=told.params,
                distributions=dists,
                system_attrs=told.system_attrs,
            )
        )
    if policy.strategy == "grid" and count > 1:
        # A grid skips only the points of finished trials: each ask of the batch is made of a study that
        # holds the batch's earlier asks as finished (a grid reads no values), so no point is asked twice.
        batch: list[Asked] = []
        for _ in range(count):
            earlier = [Told(a.params, 0.0, a.system_attrs) for a in batch]
            batch += ask(policy, [*history, *earlier], 1, higher_is_better=higher_is_better, seed=seed)
        return batch
    asked = [study.ask(dists) for _ in range(count)]
    return [
        Asked(params=_plain(t.params), system_attrs=_plain(study.trials[t.number].system_attrs))
        for t in asked
    ]


def _plain(value: Any) -> Any:
    # numpy scalars (a grid's values come back as them) to JSON's types.
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def best(results: Sequence[tuple[int, float | None]], *, higher_is_better: bool) -> int | None:
    """The number of the best trial among ``(number, value)`` (earliest on a tie), None if none scored."""
    scored = [(n, v) for n, v in results if v is not None and math.isfinite(v)]
    if not scored:
        return None
    sign = -1.0 if higher_is_better else 1.0
    return min(scored, key=lambda nv: (sign * nv[1], nv[0]))[0]


# --- scoring one trial -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialScore:
    """A trial's metric per fold (every metric of the task, and the experiment's one) and their mean."""

    metric: str
    folds: list[dict[str, float]]
    value: float
    fit_seconds: float


class TrialScoringError(DataValidationError):
    """The experiment's metric could not be computed on a fold (a fold with one class, say)."""


def fold_frames(
    training: pd.DataFrame, contract: DataContract, policy: ExperimentPolicy
) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """(fit, validate) pairs over the training part: ``validation_fraction`` split as the holdout is
    split (the latest rows when there is a timestamp); else ``folds`` folds, in time order with a timestamp
    (each fold validates on rows later than those it fits on), stratified by class for classification
    where every class has a row per fold, shuffled by ``training.seed`` otherwise."""
    if policy.folds is None:
        inner = contract.training.model_copy(update={"holdout_fraction": policy.validation_fraction})
        fit, validate = split_holdout(training, contract.model_copy(update={"training": inner}))
        return [(fit, validate)]
    folds, seed = policy.folds, contract.training.seed
    if len(training) < 2 * folds:
        raise DataValidationError(
            f"{len(training)} training row(s) cannot be cut into {folds} folds",
            problems=[f"rows: {len(training)}, folds: {folds}"],
        )
    if contract.timestamp_column:
        stamps = pd.to_datetime(training[contract.timestamp_column], utc=True)
        ordered = training.iloc[np.argsort(stamps.to_numpy(), kind="stable")]
        splits = TimeSeriesSplit(n_splits=folds).split(ordered)
        return [(ordered.iloc[a], ordered.iloc[b]) for a, b in splits]
    positions = np.arange(len(training))
    if contract.task is Task.CLASSIFICATION:
        labels = training[contract.target].astype(str).to_numpy()
        if pd.Series(labels).value_counts().min() >= folds:
            stratified = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            return [(training.iloc[a], training.iloc[b]) for a, b in stratified.split(positions, labels)]
    plain = KFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(training.iloc[a], training.iloc[b]) for a, b in plain.split(positions)]


def score_trial(
    frame: pd.DataFrame,
    contract: DataContract,
    code: ModelCode | None,
    params: dict[str, Any],
    policy: ExperimentPolicy,
) -> TrialScore:
    """Fit the contract's pipeline with ``params`` on each fold of the training part and score it on the
    fold's validation rows. The holdout is split off first and never read."""
    trial_contract = with_params(contract, params)
    training, _holdout = split_holdout(frame, contract)
    scores: list[dict[str, float]] = []
    fit_seconds = 0.0
    for fit, validate in fold_frames(training, contract, policy):
        pipeline = build_pipeline(trial_contract, code)
        started = time.perf_counter()
        pipeline.fit(prepare_features(fit, contract), _target(fit, contract))
        fit_seconds += time.perf_counter() - started
        evaluation = score(pipeline, validate, contract)
        if policy.metric not in evaluation.metrics:
            why = "; ".join(evaluation.notes) or "not computed"
            raise TrialScoringError(
                f"{policy.metric} is not computable on fold {len(scores) + 1}: {why}", problems=[why]
            )
        scores.append(evaluation.metrics)
    value = float(np.mean([s[policy.metric] for s in scores]))
    return TrialScore(metric=policy.metric, folds=scores, value=value, fit_seconds=fit_seconds)


def _target(frame: pd.DataFrame, contract: DataContract) -> pd.Series:
    column = frame[contract.target]
    if contract.task is Task.CLASSIFICATION:
        return column.astype("str").astype(object)
    return column.astype("float64")


# --- a process per trial, stopped at its budget ----------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How a function run under :func:`run_with_budget` ended."""

    status: Literal["succeeded", "failed", "timeout"]
    value: Any = None
    error_type: str | None = None
    error: str | None = None
    seconds: float = 0.0


def run_with_budget(function: Callable[..., Any], args: tuple[Any, ...], seconds: float) -> Outcome:
    """Run ``function(*args)`` in a Python process of its own (:mod:`shared.ml.trial_process`) and kill it
    when ``seconds`` pass. A raise, a crash (the process dies without a result: out of memory, say) and an
    overrun each come back as an :class:`Outcome`, never as an exception.

    A fresh interpreter rather than a fork: forking the Lambda process would copy its threads' locks and
    OpenMP's pool, which deadlock a child, and multiprocessing's spawn re-runs the parent's main module
    (Lambda's runtime client). Arguments and result travel as pickles through files under the temporary
    folder: Lambda has no /dev/shm for multiprocessing's queues."""
    root = str(Path(__file__).resolve().parents[2])
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flywheel-trial-") as folder:
        request, result = Path(folder) / "request.pickle", Path(folder) / "result.pickle"
        request.write_bytes(pickle.dumps((function, args), protocol=pickle.HIGHEST_PROTOCOL))
        command = [sys.executable, "-m", "shared.ml.trial_process", str(request), str(result)]
        process = subprocess.Popen(command, env=environment)  # noqa: S603 (our interpreter, our module)
        try:
            code = process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return Outcome(
                status="timeout",
                error_type="TrialTimeout",
                error=f"stopped after its budget of {seconds:g} s",
                seconds=time.monotonic() - started,
            )
        elapsed = time.monotonic() - started
        if not result.is_file():
            return Outcome(
                status="failed",
                error_type="TrialCrashed",
                error=f"the trial's process ended with exit code {code} and no result",
                seconds=elapsed,
            )
        status, value, error_type, error = pickle.loads(result.read_bytes())  # noqa: S301 (our own child)
        return Outcome(status=status, value=value, error_type=error_type, error=error, seconds=elapsed)
