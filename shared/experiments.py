"""The experiment store: each hyperparameter search and every one of its trials, beside the runs.

An experiment belongs to the run that launched it (its id is the run's id); its trials are numbered from 0
in the order they were asked. A trial is written twice: when it is asked (``asked``, with its parameters)
and when it ends (``succeeded`` with its metric per fold, ``failed`` with its error, or ``timeout``). Trials
of one batch end concurrently, each writing only its own item; only the run's Experiment step writes the
experiment itself, so no write races another.

Kept in the metadata table (same keys, same index)::

    pk                  sk              holds          gsi1pk / gsi1sk
    EXPERIMENT#<id>     EXPERIMENT      experiment     EXPERIMENTS#<model> / <started>#<id>
    EXPERIMENT#<id>     TRIAL#<5 digits> one trial
"""

from __future__ import annotations

import threading
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from shared.dynamo import LazyClient, dynamodb_errors, string_value
from shared.errors import ConflictError, NotFoundError
from shared.metadata import UtcDatetime


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class ExperimentStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class TrialStatus(StrEnum):
    ASKED = "asked"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"

    @property
    def finished(self) -> bool:
        return self is not TrialStatus.ASKED


class Trial(_Record):
    """One trial: the parameters asked, and how it ended."""

    experiment_id: str
    number: int = Field(ge=0)
    params: dict[str, Any]
    status: TrialStatus = TrialStatus.ASKED
    value: float | None = None  # the experiment's metric, the mean over folds
    folds: list[dict[str, float]] = Field(default_factory=list)  # every metric of the task, per fold
    seconds: float | None = None  # the trial's wall time, process start to result
    fit_seconds: float | None = None
    error_type: str | None = None
    error: str | None = None
    system_attrs: dict[str, Any] = Field(default_factory=dict)  # Optuna's, to rebuild the study
    asked_at: UtcDatetime
    ended_at: UtcDatetime | None = None
    run_id: str


class Experiment(_Record):
    """One search: what was searched, on which data and code, and which trial won."""

    experiment_id: str
    model: str
    run_id: str
    status: ExperimentStatus = ExperimentStatus.RUNNING
    metric: str
    higher_is_better: bool
    policy: dict[str, Any]  # the contract's experiment block as the search ran it
    builder: str  # training.builder: the built-in's name or project:<module:function>
    base_params: dict[str, Any] = Field(default_factory=dict)  # training.params the space is laid over
    code_digest: str | None = None
    datasets: list[str] = Field(default_factory=list)
    started_at: UtcDatetime
    ended_at: UtcDatetime | None = None
    best_trial: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] | None = None
    error: str | None = None


class ExperimentStore(Protocol):
    def create(self, experiment: Experiment) -> bool:
        """Record a new experiment; False if its id exists (a retried step)."""

    def get(self, experiment_id: str) -> Experiment: ...

    def save(self, experiment: Experiment) -> Experiment:
        """Record how a running experiment ended; :class:`ConflictError` if it has ended already."""

    def recent(self, model: str, limit: int = 50) -> list[Experiment]:
        """Newest first."""

    def put_trial(self, trial: Trial) -> Trial:
        """Record an asked trial (new), or how an asked one ended; :class:`ConflictError` for a trial asked
        twice or ended twice."""

    def trials(self, experiment_id: str) -> list[Trial]:
        """In number order."""


def latest_completed(store: ExperimentStore, model: str) -> Experiment | None:
    """The model's newest experiment that chose a winner."""
    completed = (e for e in store.recent(model) if e.status is ExperimentStatus.COMPLETED)
    return next((e for e in completed if e.best_params is not None), None)


def _missing(experiment_id: str) -> NotFoundError:
    return NotFoundError(f"no experiment {experiment_id!r}")


def _ended(experiment_id: str) -> ConflictError:
    return ConflictError(f"experiment {experiment_id!r} is not running: it ended already")


def _trial_conflict(trial: Trial) -> ConflictError:
    if trial.status is TrialStatus.ASKED:
        return ConflictError(f"trial {trial.number} of {trial.experiment_id!r} was asked already")
    return ConflictError(f"trial {trial.number} of {trial.experiment_id!r} was never asked, or ended already")


class InMemoryExperimentStore:
    """The store in a process's memory, for the domain's tests. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._experiments: dict[str, Experiment] = {}
        self._trials: dict[tuple[str, int], Trial] = {}

    def create(self, experiment: Experiment) -> bool:
        with self._lock:
            if experiment.experiment_id in self._experiments:
                return False
            self._experiments[experiment.experiment_id] = experiment
            return True

    def get(self, experiment_id: str) -> Experiment:
        with self._lock:
            found = self._experiments.get(experiment_id)
        if found is None:
            raise _missing(experiment_id)
        return found

    def save(self, experiment: Experiment) -> Experiment:
        with self._lock:
            current = self._experiments.get(experiment.experiment_id)
            if current is None or current.status is not ExperimentStatus.RUNNING:
                raise _ended(experiment.experiment_id)
            self._experiments[experiment.experiment_id] = experiment
        return experiment

    def recent(self, model: str, limit: int = 50) -> list[Experiment]:
        with self._lock:
            found = [e for e in self._experiments.values() if e.model == model]
        found.sort(key=lambda e: (e.started_at, e.experiment_id), reverse=True)
        return found[:limit]

    def put_trial(self, trial: Trial) -> Trial:
        with self._lock:
            current = self._trials.get((trial.experiment_id, trial.number))
            if (current is None) != (trial.status is TrialStatus.ASKED) or (
                current is not None and current.status.finished
            ):
                raise _trial_conflict(trial)
            self._trials[(trial.experiment_id, trial.number)] = trial
        return trial

    def trials(self, experiment_id: str) -> list[Trial]:
        with self._lock:
            return [t for (e, _), t in sorted(self._trials.items()) if e == experiment_id]


class _LostRaceError(Exception):
    pass


def _sort_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class DynamoExperimentStore:
    """The store in the metadata table (layout in the module docstring)."""

    def __init__(self, table_name: str, *, client: Any = None) -> None:
        self.table_name = table_name
        self._client = LazyClient(client)

    @property
    def client(self) -> Any:
        return self._client.get()

    def _experiment_item(self, experiment: Experiment) -> dict[str, Any]:
        return {
            "pk": string_value(f"EXPERIMENT#{experiment.experiment_id}"),
            "sk": string_value("EXPERIMENT"),
            "gsi1pk": string_value(f"EXPERIMENTS#{experiment.model}"),
            "gsi1sk": string_value(f"{_sort_time(experiment.started_at)}#{experiment.experiment_id}"),
            "doc": string_value(experiment.model_dump_json()),
            "status": string_value(experiment.status.value),
        }

    def create(self, experiment: Experiment) -> bool:
        try:
            with dynamodb_errors("put_item", _LostRaceError):
                self.client.put_item(
                    TableName=self.table_name,
                    Item=self._experiment_item(experiment),
                    ConditionExpression="attribute_not_exists(pk)",
                )
        except _LostRaceError:
            return False
        return True

    def get(self, experiment_id: str) -> Experiment:
        with dynamodb_errors("get_item", _LostRaceError):
            response = self.client.get_item(
                TableName=self.table_name,
                Key={"pk": string_value(f"EXPERIMENT#{experiment_id}"), "sk": string_value("EXPERIMENT")},
                ConsistentRead=True,
            )
        item = response.get("Item")
        if item is None:
            raise _missing(experiment_id)
        return Experiment.model_validate_json(item["doc"]["S"])

    def save(self, experiment: Experiment) -> Experiment:
        try:
            with dynamodb_errors("put_item", _LostRaceError):
                self.client.put_item(
                    TableName=self.table_name,
                    Item=self._experiment_item(experiment),
                    ConditionExpression="#status = :running",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={":running": string_value(ExperimentStatus.RUNNING.value)},
                )
        except _LostRaceError as exc:
            raise _ended(experiment.experiment_id) from exc
        return experiment

    def recent(self, model: str, limit: int = 50) -> list[Experiment]:
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :p",
            "ExpressionAttributeValues": {":p": string_value(f"EXPERIMENTS#{model}")},
            "ScanIndexForward": False,
        }
        return [Experiment.model_validate_json(i["doc"]["S"]) for i in self._query(request, limit)]

    def put_trial(self, trial: Trial) -> Trial:
        item = {
            "pk": string_value(f"EXPERIMENT#{trial.experiment_id}"),
            "sk": string_value(f"TRIAL#{trial.number:05d}"),
            "doc": string_value(trial.model_dump_json()),
            "status": string_value(trial.status.value),
        }
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(pk)"}
            if trial.status is TrialStatus.ASKED
            else {
                "ConditionExpression": "#status = :asked",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":asked": string_value(TrialStatus.ASKED.value)},
            }
        )
        try:
            with dynamodb_errors("put_item", _LostRaceError):
                self.client.put_item(TableName=self.table_name, Item=item, **condition)
        except _LostRaceError as exc:
            raise _trial_conflict(trial) from exc
        return trial

    def trials(self, experiment_id: str) -> list[Trial]:
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
            "ExpressionAttributeValues": {
                ":p": string_value(f"EXPERIMENT#{experiment_id}"),
                ":s": string_value("TRIAL#"),
            },
            "ConsistentRead": True,
        }
        return [Trial.model_validate_json(i["doc"]["S"]) for i in self._query(request)]

    def _query(self, request: dict[str, Any], limit: int | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            with dynamodb_errors("query", _LostRaceError):
                response = self.client.query(**request)
            items += response.get("Items", [])
            start = response.get("LastEvaluatedKey")
            if not start or (limit is not None and len(items) >= limit):
                return items if limit is None else items[:limit]
            request = {**request, "ExclusiveStartKey": start}
