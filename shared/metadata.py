"""The metadata store: runs and their steps, datasets, artifacts, and the lineage that ties them together.

The vocabulary is ML Metadata's: a run is an *execution*; datasets, artifacts, source files and model versions
are what executions read and write; an :class:`Event` is a directed edge between two of them (data flows from
``src`` to ``dst``); a :class:`Context` groups what one model version came from. Edges are stored both ways,
so one query walks :meth:`MetadataStore.lineage` upstream ("which data, code and parameters made the model
that answered this request") or downstream ("which models did this file feed").

:class:`DynamoMetadataStore` keeps everything in one table; :class:`InMemoryMetadataStore` keeps it in memory
for the domain's tests. Both share the rules in :class:`_MetadataRules` and differ only in storage.

Table layout (single table, string keys ``pk``/``sk``, one index ``gsi1``)::

    pk                    sk                          holds                 gsi1pk / gsi1sk
    RUN#<id>              RUN                         run, status, rev      RUNS#<model> / <started>#<id>
    RUNS                  <started>#<id>              run_id (every model's runs, newest last)
    RUN#<id>              STEP#<name>#<4 digits>      one attempt of a step, status
    DATASET#<id>          DATASET                     dataset               DATASETS#<model> / <created>#<id>
    SOURCE#<model>#<version>#<uri>  DATASET           dataset_id (the dataset validated from that object)
    ARTIFACT#<id>         ARTIFACT                    artifact
    NODE#<type>#<id>      OUT#<relation>#<type>#<id>  event; its mirror IN#... sits under the other node

Bulky and nested fields (inputs, outcomes, schemas, profiles) travel as JSON strings: DynamoDB takes no
float NaN and wants Decimal for numbers.
"""

from __future__ import annotations

import random
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from shared.dynamo import LazyClient, dynamodb_errors, number_value, string_value
from shared.errors import ConflictError, NotFoundError, TransientError


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware timestamp, normalised to UTC (serialised as ISO-8601 with ``Z``)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- records ---------------------------------------------------------------------------------------------


class _Record(BaseModel):
    # defer_build: a model's validators are built when it is first used, not at import, so a function pays
    # only for the records its step reads and writes (a light function imports many it never touches).
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, serialize_by_alias=True, defer_build=True
    )


class RunReason(StrEnum):
    MANUAL = "manual"
    SCHEDULE = "schedule"
    NEW_DATA = "new_data"
    DEGRADATION = "degradation"
    DRIFT = "drift"
    # A model project's code changed (``flywheel deliver``): the run trains it on the data there is.
    CODE_CHANGE = "code_change"
    # A hyperparameter search (the contract's experiment block); its winner is trained as the candidate.
    EXPERIMENT = "experiment"


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    REJECTED = "rejected"  # the run succeeded but its candidate was not promoted


class ErrorInfo(_Record):
    step: str | None = None
    type: str
    message: str


class Run(_Record):
    """One pipeline execution. ``run_id`` is the execution's name, so a duplicated trigger finds it taken."""

    run_id: str
    model: str
    reason: RunReason
    status: RunStatus = RunStatus.PENDING
    input: dict[str, Any] = Field(default_factory=dict)
    started_at: UtcDatetime
    ended_at: UtcDatetime | None = None
    execution_arn: str | None = None
    error: ErrorInfo | None = None
    outcome: dict[str, Any] = Field(default_factory=dict)  # e.g. {"version": 3, "promoted": true}
    evidence_uri: str | None = None  # the monitor's report, for drift and degradation runs
    # When a delivery of the trigger first saw the execution started; later deliveries are duplicates.
    execution_started_at: UtcDatetime | None = None


class StepStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Step(_Record):
    """One attempt of one pipeline step; a retried step has several, numbered from 1."""

    run_id: str
    name: str
    status: StepStatus = StepStatus.RUNNING
    started_at: UtcDatetime
    ended_at: UtcDatetime | None = None
    duration_s: float | None = None
    error: ErrorInfo | None = None
    attempt: int = 1
    # Where the attempt ran (lambda or fargate) and why (shared.data.compute); None for steps never placed.
    engine: str | None = None
    engine_reason: str | None = None


class TimeRange(_Record):
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None


class DatasetKind(StrEnum):
    UPLOAD = "upload"
    FEEDBACK = "feedback"  # labelled captures, joined by the monitor


class Dataset(_Record):
    """A validated dataset (Parquet under ``datasets/``) and the source object version it came from."""

    dataset_id: str
    model: str
    uri: str
    version_id: str | None = None
    sha256: str
    rows: int
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    time_range: TimeRange | None = None
    profile: dict[str, Any] = Field(default_factory=dict)
    source_uri: str
    source_version_id: str | None = None
    kind: DatasetKind = DatasetKind.UPLOAD
    created_at: UtcDatetime


class ArtifactKind(StrEnum):
    MODEL = "model"
    HOLDOUT = "holdout"
    PROFILE = "profile"
    EVALUATION = "evaluation"
    REPORT = "report"
    ONNX = "onnx"
    CODE = "code"  # a model project's code, as a version was trained with it
    SCORES = "scores"  # a batch scoring job's manifest, or one of its predictions files


class Artifact(_Record):
    artifact_id: str
    kind: ArtifactKind
    uri: str
    sha256: str
    created_at: UtcDatetime
    properties: dict[str, Any] = Field(default_factory=dict)


class NodeType(StrEnum):
    DATASET = "dataset"
    RUN = "run"
    ARTIFACT = "artifact"
    MODEL_VERSION = "model_version"  # id "<name>:<version>"
    FILE = "file"  # id "s3://bucket/key#version"
    EXPERIMENT = "experiment"  # id: the experiment's (the run that searched)


class Relation(StrEnum):
    """Common edge labels (any lower_snake_case label is accepted). Edges point the way data flows."""

    INPUT = "input"  # dataset/file/artifact -> run that read it
    OUTPUT = "output"  # run -> dataset/artifact/model version it produced
    DERIVED = "derived"  # file -> dataset validated from it; artifact -> model version it is
    PARAMETERS = "parameters"  # experiment -> run that trained its winning parameters


class Node(_Record):
    type: NodeType
    id: str


class Event(_Record):
    """A lineage edge: data flowed from ``src`` to ``dst``."""

    src: Node
    dst: Node
    relation: str
    at: UtcDatetime


class Direction(StrEnum):
    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"


class LineageNode(_Record):
    type: NodeType
    id: str
    depth: int  # hops from the node the walk started at


class LineageGraph(_Record):
    root: Node
    direction: Direction
    nodes: list[LineageNode]  # the root first (depth 0), then by depth
    events: list[Event]

    def ids(self, node_type: NodeType) -> list[str]:
        """The ids of the nodes of one type, nearest first."""
        return [n.id for n in self.nodes if n.type is node_type and n.depth > 0]


class Context(_Record):
    """What one model version came from: the runs, datasets, artifacts and source files upstream of it."""

    context_id: str  # "<name>:<version>"
    type: Literal["model_version"] = "model_version"
    runs: list[str]
    datasets: list[str]
    artifacts: list[str]
    files: list[str]


def model_version_id(name: str, version: int) -> str:
    """A model version's node id in lineage."""
    return f"{name}:{version}"


def file_id(uri: str, version_id: str | None) -> str:
    """A source object's node id in lineage: the URI pinned to its S3 version."""
    return f"{uri}#{version_id}" if version_id else uri


_RELATION = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_RUN_FIXED = frozenset({"run_id", "model", "started_at"})


# --- the port --------------------------------------------------------------------------------------------


class MetadataStore(Protocol):
    """Runs, steps, datasets, artifacts and lineage. Writes are idempotent where a step may be re-run."""

    def start_run(self, run: Run) -> bool:
        """Record a new run; False if the run id exists already (a duplicated trigger)."""
        ...

    def claim_start(self, run_id: str, at: datetime) -> bool:
        """Note that the run's execution is started; True only for the first caller to note it."""
        ...

    def get_run(self, run_id: str) -> Run: ...

    def update_run(self, run_id: str, **changes: Any) -> Run: ...

    def list_runs(self, model: str | None = None, limit: int = 50) -> list[Run]: ...

    def last_run(self, model: str, status: RunStatus | None = None) -> Run | None: ...

    def start_step(
        self,
        run_id: str,
        name: str,
        at: datetime | None = None,
        engine: str | None = None,
        engine_reason: str | None = None,
    ) -> Step: ...

    def finish_step(self, run_id: str, name: str, at: datetime | None = None) -> Step: ...

    def fail_step(self, run_id: str, name: str, error: ErrorInfo, at: datetime | None = None) -> Step: ...

    def list_steps(self, run_id: str) -> list[Step]: ...

    def put_dataset(self, dataset: Dataset) -> Dataset: ...

    def get_dataset(self, dataset_id: str) -> Dataset: ...

    def list_datasets(self, model: str, kind: DatasetKind | None = None) -> list[Dataset]: ...

    def find_dataset_by_source(self, model: str, uri: str, version_id: str | None) -> Dataset | None: ...

    def put_artifact(self, artifact: Artifact) -> Artifact: ...

    def get_artifact(self, artifact_id: str) -> Artifact: ...

    def link(
        self, src_type: NodeType, src_id: str, dst_type: NodeType, dst_id: str, relation: str
    ) -> None: ...

    def upstream(self, node_type: NodeType, node_id: str) -> list[Event]: ...

    def downstream(self, node_type: NodeType, node_id: str) -> list[Event]: ...

    def lineage(
        self, node_type: NodeType, node_id: str, direction: Direction = ..., depth: int = ...
    ) -> LineageGraph: ...

    def model_context(self, name: str, version: int, depth: int = ...) -> Context: ...


# --- the rules both stores share -------------------------------------------------------------------------


class _MetadataRules(ABC):
    """The store's behaviour, over a handful of storage primitives each adapter provides."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock

    # runs

    def start_run(self, run: Run) -> bool:
        """Record a new run; False if the run id exists already (a duplicated trigger)."""
        return self._insert_run(run)

    def claim_start(self, run_id: str, at: datetime) -> bool:
        """Note that the run's execution is started, once: of any number of deliveries of one event that
        each started (or found running) the same execution, exactly one is told it started the run, by a
        write conditional on the run's revision; the others are duplicates."""
        for number in range(50):
            run, revision = self._load_run(run_id) or self._missing_run(run_id)
            if run.execution_started_at is not None:
                return False
            if self._replace_run(_copy(run.model_copy(update={"execution_started_at": at})), revision):
                return True
            time.sleep(random.uniform(0, min(0.2, 0.002 * 2**number)))
        raise TransientError(f"could not note the start of run {run_id}: 50 attempts lost a race")

    def get_run(self, run_id: str) -> Run:
        found = self._load_run(run_id)
        if found is None:
            raise NotFoundError(f"run {run_id!r} does not exist")
        return found[0]

    def update_run(self, run_id: str, **changes: Any) -> Run:
        """Change fields of a run (status, ended_at, error, outcome, ...); concurrent updates do not clash."""
        fixed = _RUN_FIXED & changes.keys()
        if fixed:
            raise ValueError(f"a run's {', '.join(sorted(fixed))} cannot change")

        def attempt() -> Run | None:
            run, revision = self._load_run(run_id) or self._missing_run(run_id)
            updated = _copy(Run.model_validate({**run.model_dump(), **changes}))
            return updated if self._replace_run(updated, revision) else None

        return _until_written(attempt, f"update run {run_id}")

    def list_runs(self, model: str | None = None, limit: int = 50) -> list[Run]:
        """The newest ``limit`` runs, of one model or of all, newest first."""
        return self._runs(model, limit, None)

    def last_run(self, model: str, status: RunStatus | None = None) -> Run | None:
        """The model's newest run (in ``status``, when given)."""
        found = self._runs(model, 1, status)
        return found[0] if found else None

    # steps

    def start_step(
        self,
        run_id: str,
        name: str,
        at: datetime | None = None,
        engine: str | None = None,
        engine_reason: str | None = None,
    ) -> Step:
        """Record that a step started: a new attempt, numbered after the step's earlier ones, with where it
        runs and why when the pipeline placed it."""
        started = at or self._clock()

        def attempt() -> Step | None:
            attempts = self._step_attempts(run_id, name)
            step = Step(
                run_id=run_id,
                name=name,
                started_at=started,
                attempt=len(attempts) + 1,
                engine=engine,
                engine_reason=engine_reason,
            )
            return step if self._insert_step(step) else None

        return _until_written(attempt, f"start step {name} of {run_id}")

    def finish_step(self, run_id: str, name: str, at: datetime | None = None) -> Step:
        """Mark the step's running attempt succeeded (idempotent; records an attempt if none was started)."""
        return self._end_step(run_id, name, StepStatus.SUCCEEDED, None, at or self._clock())

    def fail_step(self, run_id: str, name: str, error: ErrorInfo, at: datetime | None = None) -> Step:
        """Mark the step's running attempt failed (idempotent; records an attempt if none was started)."""
        return self._end_step(run_id, name, StepStatus.FAILED, error, at or self._clock())

    def list_steps(self, run_id: str) -> list[Step]:
        """Every attempt of every step of a run, in the order they started."""
        return sorted(self._steps(run_id), key=lambda s: (s.started_at, s.name, s.attempt))

    def _end_step(
        self, run_id: str, name: str, status: StepStatus, error: ErrorInfo | None, ended: datetime
    ) -> Step:
        def attempt() -> Step | None:
            attempts = self._step_attempts(run_id, name)
            latest = attempts[-1] if attempts else None
            if latest is not None and latest.status is status:
                return latest
            if latest is not None and latest.status is StepStatus.RUNNING:
                duration = max(0.0, (ended - latest.started_at).total_seconds())
                done = latest.model_copy(
                    update={"status": status, "ended_at": ended, "duration_s": duration, "error": error}
                )
                return done if self._replace_step(done, StepStatus.RUNNING) else None
            # Nothing running (the step crashed before recording its start): record the attempt as it ended.
            done = Step(
                run_id=run_id,
                name=name,
                status=status,
                started_at=ended,
                ended_at=ended,
                duration_s=0.0,
                error=error,
                attempt=len(attempts) + 1,
            )
            return done if self._insert_step(done) else None

        return _until_written(attempt, f"end step {name} of {run_id}")

    # datasets and artifacts

    def put_dataset(self, dataset: Dataset) -> Dataset:
        """Record a dataset; if its source object version was recorded already, return that one instead."""
        dataset = _copy(dataset)  # as a read returns it (JSON has no NaN)
        if self._insert_dataset(dataset):
            return dataset
        existing = self.find_dataset_by_source(dataset.model, dataset.source_uri, dataset.source_version_id)
        if existing is not None:
            return existing
        raise ConflictError(f"dataset {dataset.dataset_id!r} exists with another source")

    def get_dataset(self, dataset_id: str) -> Dataset:
        found = self._load_dataset(dataset_id)
        if found is None:
            raise NotFoundError(f"dataset {dataset_id!r} does not exist")
        return found

    def list_datasets(self, model: str, kind: DatasetKind | None = None) -> list[Dataset]:
        """The model's datasets, oldest first."""
        found = self._datasets(model)
        ordered = sorted(found, key=lambda d: (d.created_at, d.dataset_id))
        return [d for d in ordered if kind is None or d.kind is kind]

    def find_dataset_by_source(self, model: str, uri: str, version_id: str | None) -> Dataset | None:
        """The dataset validated from this object version, if any: a re-run of validation reuses it."""
        dataset_id = self._dataset_for_source(model, uri, version_id)
        return self._load_dataset(dataset_id) if dataset_id else None

    def put_artifact(self, artifact: Artifact) -> Artifact:
        """Record an artifact; artifacts never change, so a second put returns the first."""
        artifact = _copy(artifact)
        if self._insert_artifact(artifact):
            return artifact
        return self.get_artifact(artifact.artifact_id)

    def get_artifact(self, artifact_id: str) -> Artifact:
        found = self._load_artifact(artifact_id)
        if found is None:
            raise NotFoundError(f"artifact {artifact_id!r} does not exist")
        return found

    # lineage

    def link(self, src_type: NodeType, src_id: str, dst_type: NodeType, dst_id: str, relation: str) -> None:
        """Record that data flowed from one node to another (idempotent: a repeated link keeps the first)."""
        if not _RELATION.match(relation):
            raise ValueError(f"invalid relation {relation!r}: lower_snake_case")
        event = Event(
            src=Node(type=src_type, id=src_id),
            dst=Node(type=dst_type, id=dst_id),
            relation=relation,
            at=self._clock(),
        )
        self._put_event(event)

    def upstream(self, node_type: NodeType, node_id: str) -> list[Event]:
        """The edges into a node: what it was made from, one hop."""
        return self._events(Node(type=node_type, id=node_id), incoming=True)

    def downstream(self, node_type: NodeType, node_id: str) -> list[Event]:
        """The edges out of a node: what was made from it, one hop."""
        return self._events(Node(type=node_type, id=node_id), incoming=False)

    def lineage(
        self,
        node_type: NodeType,
        node_id: str,
        direction: Direction = Direction.UPSTREAM,
        depth: int = 5,
    ) -> LineageGraph:
        """Walk ``depth`` hops from a node, breadth first; each node appears once, at its nearest depth."""
        root = Node(type=node_type, id=node_id)
        incoming = direction is Direction.UPSTREAM
        found: dict[Node, int] = {root: 0}
        events: list[Event] = []
        frontier = [root]
        for hop in range(1, depth + 1):
            reached: list[Node] = []
            for node in frontier:
                for event in self._events(node, incoming=incoming):
                    events.append(event)
                    other = event.src if incoming else event.dst
                    if other not in found:
                        found[other] = hop
                        reached.append(other)
            if not reached:
                break
            frontier = reached
        nodes = [LineageNode(type=n.type, id=n.id, depth=d) for n, d in found.items()]
        return LineageGraph(root=root, direction=direction, nodes=nodes, events=events)

    def model_context(self, name: str, version: int, depth: int = 5) -> Context:
        """The context of a model version: everything upstream of it, by kind."""
        graph = self.lineage(
            NodeType.MODEL_VERSION, model_version_id(name, version), Direction.UPSTREAM, depth
        )
        return Context(
            context_id=model_version_id(name, version),
            runs=graph.ids(NodeType.RUN),
            datasets=graph.ids(NodeType.DATASET),
            artifacts=graph.ids(NodeType.ARTIFACT),
            files=graph.ids(NodeType.FILE),
        )

    @staticmethod
    def _missing_run(run_id: str) -> tuple[Run, int]:
        raise NotFoundError(f"run {run_id!r} does not exist")

    # storage primitives

    @abstractmethod
    def _insert_run(self, run: Run) -> bool: ...

    @abstractmethod
    def _load_run(self, run_id: str) -> tuple[Run, int] | None:
        """The run and its revision."""

    @abstractmethod
    def _replace_run(self, run: Run, revision: int) -> bool:
        """Write the run if it is still at ``revision``."""

    @abstractmethod
    def _runs(self, model: str | None, limit: int, status: RunStatus | None) -> list[Run]:
        """Newest first."""

    @abstractmethod
    def _step_attempts(self, run_id: str, name: str) -> list[Step]:
        """One step's attempts, first to last."""

    @abstractmethod
    def _steps(self, run_id: str) -> list[Step]: ...

    @abstractmethod
    def _insert_step(self, step: Step) -> bool: ...

    @abstractmethod
    def _replace_step(self, step: Step, expected: StepStatus) -> bool: ...

    @abstractmethod
    def _insert_dataset(self, dataset: Dataset) -> bool:
        """Record the dataset and its source lookup together; False if either exists."""

    @abstractmethod
    def _load_dataset(self, dataset_id: str) -> Dataset | None: ...

    @abstractmethod
    def _dataset_for_source(self, model: str, uri: str, version_id: str | None) -> str | None: ...

    @abstractmethod
    def _datasets(self, model: str) -> list[Dataset]: ...

    @abstractmethod
    def _insert_artifact(self, artifact: Artifact) -> bool: ...

    @abstractmethod
    def _load_artifact(self, artifact_id: str) -> Artifact | None: ...

    @abstractmethod
    def _put_event(self, event: Event) -> None:
        """Store the edge under both nodes, keeping the first ``at`` if it exists."""

    @abstractmethod
    def _events(self, node: Node, *, incoming: bool) -> list[Event]: ...


# --- in memory -------------------------------------------------------------------------------------------


class InMemoryMetadataStore(_MetadataRules):
    """The metadata store in a process's memory, for the domain's tests. Thread-safe; same semantics."""

    def __init__(self, *, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(clock)
        self._lock = threading.RLock()
        self._runs_by_id: dict[str, tuple[Run, int]] = {}
        self._step_items: dict[tuple[str, str, int], Step] = {}
        self._dataset_items: dict[str, Dataset] = {}
        self._sources: dict[tuple[str, str, str], str] = {}
        self._artifact_items: dict[str, Artifact] = {}
        self._edges: dict[tuple[Node, bool], dict[tuple[str, Node], Event]] = {}

    def _insert_run(self, run: Run) -> bool:
        with self._lock:
            if run.run_id in self._runs_by_id:
                return False
            self._runs_by_id[run.run_id] = (_copy(run), 1)
            return True

    def _load_run(self, run_id: str) -> tuple[Run, int] | None:
        with self._lock:
            found = self._runs_by_id.get(run_id)
            return (_copy(found[0]), found[1]) if found else None

    def _replace_run(self, run: Run, revision: int) -> bool:
        with self._lock:
            current = self._runs_by_id.get(run.run_id)
            if current is None or current[1] != revision:
                return False
            self._runs_by_id[run.run_id] = (_copy(run), revision + 1)
            return True

    def _runs(self, model: str | None, limit: int, status: RunStatus | None) -> list[Run]:
        with self._lock:
            runs = [r for r, _ in self._runs_by_id.values()]
        chosen = [
            r for r in runs if (model is None or r.model == model) and (status is None or r.status is status)
        ]
        chosen.sort(key=lambda r: (r.started_at, r.run_id), reverse=True)
        return [_copy(r) for r in chosen[:limit]]

    def _step_attempts(self, run_id: str, name: str) -> list[Step]:
        with self._lock:
            return [s for (r, n, _), s in sorted(self._step_items.items()) if (r, n) == (run_id, name)]

    def _steps(self, run_id: str) -> list[Step]:
        with self._lock:
            return [s for (r, _, _), s in self._step_items.items() if r == run_id]

    def _insert_step(self, step: Step) -> bool:
        with self._lock:
            key = (step.run_id, step.name, step.attempt)
            if key in self._step_items:
                return False
            self._step_items[key] = step
            return True

    def _replace_step(self, step: Step, expected: StepStatus) -> bool:
        with self._lock:
            key = (step.run_id, step.name, step.attempt)
            current = self._step_items.get(key)
            if current is None or current.status is not expected:
                return False
            self._step_items[key] = step
            return True

    def _insert_dataset(self, dataset: Dataset) -> bool:
        with self._lock:
            source = _source_key(dataset.model, dataset.source_uri, dataset.source_version_id)
            if dataset.dataset_id in self._dataset_items or source in self._sources:
                return False
            self._dataset_items[dataset.dataset_id] = _copy(dataset)
            self._sources[source] = dataset.dataset_id
            return True

    def _load_dataset(self, dataset_id: str) -> Dataset | None:
        with self._lock:
            found = self._dataset_items.get(dataset_id)
        return _copy(found) if found else None

    def _dataset_for_source(self, model: str, uri: str, version_id: str | None) -> str | None:
        with self._lock:
            return self._sources.get(_source_key(model, uri, version_id))

    def _datasets(self, model: str) -> list[Dataset]:
        with self._lock:
            return [_copy(d) for d in self._dataset_items.values() if d.model == model]

    def _insert_artifact(self, artifact: Artifact) -> bool:
        with self._lock:
            if artifact.artifact_id in self._artifact_items:
                return False
            self._artifact_items[artifact.artifact_id] = _copy(artifact)
            return True

    def _load_artifact(self, artifact_id: str) -> Artifact | None:
        with self._lock:
            found = self._artifact_items.get(artifact_id)
        return _copy(found) if found else None

    def _put_event(self, event: Event) -> None:
        with self._lock:
            outgoing = self._edges.setdefault((event.src, False), {})
            outgoing.setdefault((event.relation, event.dst), event)
            incoming = self._edges.setdefault((event.dst, True), {})
            incoming.setdefault((event.relation, event.src), event)

    def _events(self, node: Node, *, incoming: bool) -> list[Event]:
        with self._lock:
            edges = self._edges.get((node, incoming), {})
            # The order DynamoDB's sort key gives: relation, then the other node's type and id.
            return [
                e for _, e in sorted(edges.items(), key=lambda kv: (kv[0][0], kv[0][1].type, kv[0][1].id))
            ]


def _until_written[R: BaseModel](attempt: Callable[[], R | None], what: str, attempts: int = 50) -> R:
    """Call ``attempt`` until it returns a value; None means a conditional write lost a race."""
    for number in range(attempts):
        written = attempt()
        if written is not None:
            return written
        time.sleep(random.uniform(0, min(0.2, 0.002 * 2**number)))
    raise TransientError(f"could not {what}: {attempts} attempts lost a race")


def _source_key(model: str, uri: str, version_id: str | None) -> tuple[str, str, str]:
    # S3 itself calls the version of an object in an unversioned bucket "null".
    return (model, version_id or "null", uri)


def _copy[R: BaseModel](record: R) -> R:
    # A JSON round trip, as DynamoDB would: callers never share mutable dicts with the store.
    return type(record).model_validate_json(record.model_dump_json())


# --- DynamoDB --------------------------------------------------------------------------------------------


class _ConditionFailedError(Exception):
    """A conditional write found the item in another state: the caller decides what that means."""


def _sort_time(at: datetime) -> str:
    # Fixed width, so that string order is time order (ISO-8601 drops zero microseconds).
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _node_pk(node: Node) -> str:
    return f"NODE#{node.type.value}#{node.id}"


def _edge_sk(direction: str, relation: str, node: Node) -> str:
    return f"{direction}#{relation}#{node.type.value}#{node.id}"


class DynamoMetadataStore(_MetadataRules):
    """The metadata store on one DynamoDB table (layout in the module docstring)."""

    def __init__(
        self, table_name: str, *, client: Any = None, clock: Callable[[], datetime] = utcnow
    ) -> None:
        super().__init__(clock)
        self.table_name = table_name
        self._client = LazyClient(client)

    @property
    def client(self) -> Any:
        return self._client.get()

    # runs

    def _insert_run(self, run: Run) -> bool:
        listed = f"{_sort_time(run.started_at)}#{run.run_id}"
        listing = {"pk": string_value("RUNS"), "sk": string_value(listed), "run_id": string_value(run.run_id)}
        try:
            self._transact(
                [
                    {"Put": self._put(self._run_item(run, 1), "attribute_not_exists(pk)")},
                    {"Put": self._put(listing, "attribute_not_exists(pk)")},
                ]
            )
        except _ConditionFailedError:
            return False
        return True

    def _load_run(self, run_id: str) -> tuple[Run, int] | None:
        item = self._get(f"RUN#{run_id}", "RUN")
        return (Run.model_validate_json(item["doc"]["S"]), int(item["rev"]["N"])) if item else None

    def _replace_run(self, run: Run, revision: int) -> bool:
        request = self._put(self._run_item(run, revision + 1), "rev = :rev", {":rev": number_value(revision)})
        return self._conditional("put_item", request)

    def _runs(self, model: str | None, limit: int, status: RunStatus | None) -> list[Run]:
        if model is not None:
            request: dict[str, Any] = {
                "IndexName": "gsi1",
                "KeyConditionExpression": "gsi1pk = :p",
                "ExpressionAttributeValues": {":p": string_value(f"RUNS#{model}")},
                "ScanIndexForward": False,
            }
            if status is not None:
                request["FilterExpression"] = "#status = :s"
                request["ExpressionAttributeNames"] = {"#status": "status"}
                request["ExpressionAttributeValues"][":s"] = string_value(status.value)
            return [Run.model_validate_json(i["doc"]["S"]) for i in self._query(request, limit)]
        runs: list[Run] = []
        listing = {
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": string_value("RUNS")},
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        for page in self._pages(listing):
            ids = [i["run_id"]["S"] for i in page]
            loaded = {r.run_id: r for r in self._batch_runs(ids)}
            runs += [loaded[i] for i in ids if i in loaded and (status is None or loaded[i].status is status)]
            if len(runs) >= limit:
                break
        return runs[:limit]

    def _run_item(self, run: Run, revision: int) -> dict[str, Any]:
        return {
            "pk": string_value(f"RUN#{run.run_id}"),
            "sk": string_value("RUN"),
            "gsi1pk": string_value(f"RUNS#{run.model}"),
            "gsi1sk": string_value(f"{_sort_time(run.started_at)}#{run.run_id}"),
            "doc": string_value(run.model_dump_json()),
            "status": string_value(run.status.value),
            "rev": number_value(revision),
        }

    def _batch_runs(self, run_ids: list[str]) -> list[Run]:
        runs: list[Run] = []
        for start in range(0, len(run_ids), 100):
            keys = [
                {"pk": string_value(f"RUN#{i}"), "sk": string_value("RUN")}
                for i in run_ids[start : start + 100]
            ]
            request: dict[str, Any] = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
            while request:
                with dynamodb_errors("batch_get_item", _ConditionFailedError):
                    response = self.client.batch_get_item(RequestItems=request)
                runs += [
                    Run.model_validate_json(i["doc"]["S"]) for i in response["Responses"][self.table_name]
                ]
                request = response.get("UnprocessedKeys") or {}
        return runs

    # steps

    def _step_attempts(self, run_id: str, name: str) -> list[Step]:
        request = {
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
            "ExpressionAttributeValues": {
                ":p": string_value(f"RUN#{run_id}"),
                ":s": string_value(f"STEP#{name}#"),
            },
            "ConsistentRead": True,
        }
        return [Step.model_validate_json(i["doc"]["S"]) for i in self._query(request)]

    def _steps(self, run_id: str) -> list[Step]:
        request = {
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
            "ExpressionAttributeValues": {":p": string_value(f"RUN#{run_id}"), ":s": string_value("STEP#")},
            "ConsistentRead": True,
        }
        return [Step.model_validate_json(i["doc"]["S"]) for i in self._query(request)]

    def _insert_step(self, step: Step) -> bool:
        return self._conditional("put_item", self._put(self._step_item(step), "attribute_not_exists(pk)"))

    def _replace_step(self, step: Step, expected: StepStatus) -> bool:
        request = self._put(
            self._step_item(step),
            "#status = :expected",
            {":expected": string_value(expected.value)},
            {"#status": "status"},
        )
        return self._conditional("put_item", request)

    def _step_item(self, step: Step) -> dict[str, Any]:
        # Step names come from the state machine and hold no '#', so one step's attempts share a prefix.
        return {
            "pk": string_value(f"RUN#{step.run_id}"),
            "sk": string_value(f"STEP#{step.name}#{step.attempt:04d}"),
            "doc": string_value(step.model_dump_json()),
            "status": string_value(step.status.value),
        }

    # datasets and artifacts

    def _insert_dataset(self, dataset: Dataset) -> bool:
        item = {
            "pk": string_value(f"DATASET#{dataset.dataset_id}"),
            "sk": string_value("DATASET"),
            "gsi1pk": string_value(f"DATASETS#{dataset.model}"),
            "gsi1sk": string_value(f"{_sort_time(dataset.created_at)}#{dataset.dataset_id}"),
            "doc": string_value(dataset.model_dump_json()),
        }
        source = {
            "pk": string_value(self._source_pk(dataset.model, dataset.source_uri, dataset.source_version_id)),
            "sk": string_value("DATASET"),
            "dataset_id": string_value(dataset.dataset_id),
        }
        try:
            self._transact(
                [
                    {"Put": self._put(item, "attribute_not_exists(pk)")},
                    {"Put": self._put(source, "attribute_not_exists(pk)")},
                ]
            )
        except _ConditionFailedError:
            return False
        return True

    def _load_dataset(self, dataset_id: str) -> Dataset | None:
        item = self._get(f"DATASET#{dataset_id}", "DATASET")
        return Dataset.model_validate_json(item["doc"]["S"]) if item else None

    def _dataset_for_source(self, model: str, uri: str, version_id: str | None) -> str | None:
        item = self._get(self._source_pk(model, uri, version_id), "DATASET")
        return item["dataset_id"]["S"] if item else None

    def _datasets(self, model: str) -> list[Dataset]:
        request = {
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :p",
            "ExpressionAttributeValues": {":p": string_value(f"DATASETS#{model}")},
        }
        return [Dataset.model_validate_json(i["doc"]["S"]) for i in self._query(request)]

    @staticmethod
    def _source_pk(model: str, uri: str, version_id: str | None) -> str:
        # The URI last: it may hold '#', the model name and S3 version ids do not.
        return "SOURCE#{}#{}#{}".format(*_source_key(model, uri, version_id))

    def _insert_artifact(self, artifact: Artifact) -> bool:
        item = {
            "pk": string_value(f"ARTIFACT#{artifact.artifact_id}"),
            "sk": string_value("ARTIFACT"),
            "doc": string_value(artifact.model_dump_json()),
        }
        return self._conditional("put_item", self._put(item, "attribute_not_exists(pk)"))

    def _load_artifact(self, artifact_id: str) -> Artifact | None:
        item = self._get(f"ARTIFACT#{artifact_id}", "ARTIFACT")
        return Artifact.model_validate_json(item["doc"]["S"]) if item else None

    # lineage

    def _put_event(self, event: Event) -> None:
        doc = string_value(event.model_dump_json())

        def keep_first(pk: str, sk: str) -> dict[str, Any]:
            return {
                "Update": {
                    "TableName": self.table_name,
                    "Key": {"pk": string_value(pk), "sk": string_value(sk)},
                    "UpdateExpression": "SET doc = if_not_exists(doc, :doc)",
                    "ExpressionAttributeValues": {":doc": doc},
                }
            }

        self._transact(
            [
                keep_first(_node_pk(event.src), _edge_sk("OUT", event.relation, event.dst)),
                keep_first(_node_pk(event.dst), _edge_sk("IN", event.relation, event.src)),
            ]
        )

    def _events(self, node: Node, *, incoming: bool) -> list[Event]:
        request = {
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
            "ExpressionAttributeValues": {
                ":p": string_value(_node_pk(node)),
                ":s": string_value("IN#" if incoming else "OUT#"),
            },
            "ConsistentRead": True,
        }
        return [Event.model_validate_json(i["doc"]["S"]) for i in self._query(request)]

    # plumbing

    def _put(
        self,
        item: dict[str, Any],
        condition: str,
        values: dict[str, Any] | None = None,
        names: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Item": item,
            "ConditionExpression": condition,
        }
        if values:
            request["ExpressionAttributeValues"] = values
        if names:
            request["ExpressionAttributeNames"] = names
        return request

    def _conditional(self, operation: str, request: dict[str, Any]) -> bool:
        try:
            with dynamodb_errors(operation, _ConditionFailedError):
                getattr(self.client, operation)(**request)
        except _ConditionFailedError:
            return False
        return True

    def _transact(self, items: list[dict[str, Any]]) -> None:
        with dynamodb_errors("transact_write_items", _ConditionFailedError):
            self.client.transact_write_items(TransactItems=items)

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        with dynamodb_errors("get_item", _ConditionFailedError):
            response = self.client.get_item(
                TableName=self.table_name,
                Key={"pk": string_value(pk), "sk": string_value(sk)},
                ConsistentRead=True,
            )
        item: dict[str, Any] | None = response.get("Item")
        return item

    def _pages(self, request: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        request = {"TableName": self.table_name, **request}
        while True:
            with dynamodb_errors("query", _ConditionFailedError):
                response = self.client.query(**request)
            yield response.get("Items", [])
            start = response.get("LastEvaluatedKey")
            if not start:
                return
            request["ExclusiveStartKey"] = start

    def _query(self, request: dict[str, Any], limit: int | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in self._pages(request):
            items += page
            if limit is not None and len(items) >= limit:
                break
        return items if limit is None else items[:limit]
