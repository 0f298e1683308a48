"""The declarative stack: what Flywheel is made of, declared once for both clouds.

A :class:`StackSpec` names buckets, tables, functions (with the exact permissions each needs), schedules,
HTTP routes, the capture delivery stream and the state machine. The Pulumi program (`infra/components/`)
maps it onto AWS; the local cloud (`infra/local/`) maps the same spec onto moto. The spec checks itself
at construction: a reference to something it does not declare is an error naming the thing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from infra.schedule_expr import ScheduleExpression
from shared.data.compute import DEFAULT_FARGATE_CPU, DEFAULT_FARGATE_MEMORY, fargate_size_problem
from shared.env_names import EnvVar

LOGICAL_NAME = r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$"
ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")
HANDLER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class SpecError(Exception):
    """The stack spec contradicts itself; the message names what is wrong."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- resource references: what a permission is granted on -------------------------------------------


class BucketRef(_Model):
    """A bucket (``objects=None``: the bucket itself, e.g. for ListBucket) or its objects matching a key
    pattern (``objects="incoming/*"``)."""

    kind: Literal["bucket"] = "bucket"
    bucket: str
    objects: str | None = None

    @field_validator("objects")
    @classmethod
    def _objects_are_scoped(cls, value: str | None) -> str | None:
        if value is not None and (value == "" or value.startswith("/")):
            raise ValueError("an object pattern is a key prefix such as 'incoming/*', not empty or rooted")
        return value


class TableRef(_Model):
    """A DynamoDB table, or one of its global secondary indexes."""

    kind: Literal["table"] = "table"
    table: str
    index: str | None = None


class StreamRef(_Model):
    """The capture delivery stream."""

    kind: Literal["stream"] = "stream"
    stream: str


class FunctionRef(_Model):
    """Another function of the stack (for ``lambda:InvokeFunction``)."""

    kind: Literal["function"] = "function"
    function: str


class StateMachineRef(_Model):
    """A state machine of the stack: the pipeline (``machine=None``) or a workflow by name.
    ``executions=True``: its executions, for Describe/Stop; ``map_runs=True``: the child executions its
    Distributed Map starts (``execution:<machine>/<map label>:<name>``)."""

    kind: Literal["state_machine"] = "state_machine"
    machine: str | None = None
    executions: bool = False
    map_runs: bool = False


ResourceRef = Annotated[
    BucketRef | TableRef | StreamRef | FunctionRef | StateMachineRef, Field(discriminator="kind")
]


class Permission(_Model):
    """Actions allowed on one resource. Wildcard actions (``s3:*``, ``*``) are refused: name each one."""

    actions: tuple[str, ...]
    resource: ResourceRef

    @field_validator("actions")
    @classmethod
    def _actions_are_named(cls, actions: tuple[str, ...]) -> tuple[str, ...]:
        if not actions:
            raise ValueError("a permission needs at least one action")
        bad = [a for a in actions if not ACTION.match(a)]
        if bad:
            raise ValueError(
                f"actions must be named exactly as 'service:Action', without wildcards; got {bad}"
            )
        return actions


# Shorthands for the permissions functions ask for most.


def read_objects(bucket: str, pattern: str) -> Permission:
    return Permission(
        actions=("s3:GetObject", "s3:GetObjectVersion"), resource=BucketRef(bucket=bucket, objects=pattern)
    )


def write_objects(bucket: str, pattern: str) -> Permission:
    return Permission(actions=("s3:PutObject",), resource=BucketRef(bucket=bucket, objects=pattern))


def list_bucket(bucket: str) -> Permission:
    return Permission(actions=("s3:ListBucket", "s3:ListBucketVersions"), resource=BucketRef(bucket=bucket))


def read_table(table: str, index: str | None = None) -> Permission:
    actions = (
        ("dynamodb:Query",) if index else ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem")
    )
    return Permission(actions=actions, resource=TableRef(table=table, index=index))


def append_table(table: str) -> Permission:
    """Reading, adding and changing items, each write under its own condition; never removing one.

    Flywheel's tables are records (the registry's versions, aliases and audit trail, the metadata store's
    runs and lineage): an alias is removed by a tombstone, never a delete. ``TransactWriteItems`` needs the
    action of each item it holds, so granting no ``DeleteItem`` also rules out a delete inside a
    transaction; ``BatchWriteItem`` is left out too, since its puts are unconditional.
    """
    return Permission(
        actions=(
            "dynamodb:GetItem",
            "dynamodb:Query",
            "dynamodb:BatchGetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
        ),
        resource=TableRef(table=table),
    )


# --- storage --------------------------------------------------------------------------------------------


class Notification(_Model):
    """Object-created events under ``prefix`` (and ending in ``suffix``) invoke ``function``."""

    prefix: str
    function: str
    suffix: str = ""


class LifecycleRule(_Model):
    """Objects under ``prefix`` move to infrequent access after ``infrequent_access_days`` and expire
    after ``expire_days``; both optional."""

    prefix: str
    infrequent_access_days: int | None = Field(default=None, ge=30)
    expire_days: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _expires_after_transition(self) -> LifecycleRule:
        ia, expire = self.infrequent_access_days, self.expire_days
        if ia is not None and expire is not None and expire <= ia:
            raise ValueError(
                f"lifecycle for {self.prefix!r}: expiry ({expire} d) must come after the transition ({ia} d)"
            )
        return self


class BucketSpec(_Model):
    name: str = Field(pattern=LOGICAL_NAME)
    prefixes: tuple[str, ...] = ()
    notifications: tuple[Notification, ...] = ()
    lifecycle: tuple[LifecycleRule, ...] = ()
    env_var: EnvVar | None = None

    @model_validator(mode="after")
    def _notifications_do_not_overlap(self) -> BucketSpec:
        # S3 refuses overlapping prefixes for the same event type; say so before deploying.
        prefixes = [n.prefix for n in self.notifications]
        for i, a in enumerate(prefixes):
            for b in prefixes[i + 1 :]:
                if a.startswith(b) or b.startswith(a):
                    raise ValueError(f"bucket {self.name!r}: notification prefixes {a!r} and {b!r} overlap")
        return self


class Key(_Model):
    name: str
    type: Literal["S", "N", "B"] = "S"


class IndexSpec(_Model):
    name: str
    partition_key: Key
    sort_key: Key | None = None


class TableSpec(_Model):
    name: str = Field(pattern=LOGICAL_NAME)
    partition_key: Key
    sort_key: Key | None = None
    indexes: tuple[IndexSpec, ...] = ()
    ttl_attribute: str | None = None
    env_var: EnvVar | None = None

    def attributes(self) -> list[Key]:
        """Every key attribute the table and its indexes declare, each once."""
        seen: dict[str, Key] = {}
        for key in (self.partition_key, self.sort_key, *self._index_keys()):
            if key is not None:
                if key.name in seen and seen[key.name].type != key.type:
                    raise SpecError(f"table {self.name!r}: attribute {key.name!r} declared with two types")
                seen.setdefault(key.name, key)
        return list(seen.values())

    def _index_keys(self) -> Iterable[Key | None]:
        for index in self.indexes:
            yield index.partition_key
            yield index.sort_key


class CaptureStreamSpec(_Model):
    """A Firehose delivery stream into ``bucket`` under ``prefix``, partitioned by a record field."""

    name: str = Field(pattern=LOGICAL_NAME)
    bucket: str
    prefix: str = "captures/"
    error_prefix: str = "captures-errors/"
    partition_field: str | None = "model"
    buffer_seconds: int = Field(default=60, ge=0, le=900)
    buffer_mb: int = Field(default=64, ge=1, le=128)
    env_var: EnvVar | None = None


# --- compute --------------------------------------------------------------------------------------------


class FunctionSpec(_Model):
    name: str = Field(pattern=LOGICAL_NAME)
    handler: str
    description: str = ""
    memory_mb: int = Field(default=512, ge=128, le=10240)
    timeout_s: int = Field(default=30, ge=1, le=900)
    # Lambda's /tmp: 512 MB unless a function keeps files there (Validate keeps the upload and its dataset).
    ephemeral_mb: int = Field(default=512, ge=512, le=10240)
    reserved_concurrency: int | None = Field(default=None, ge=0)
    permissions: tuple[Permission, ...] = ()
    env_var: EnvVar | None = None

    @field_validator("handler")
    @classmethod
    def _handler_is_dotted(cls, handler: str) -> str:
        if not HANDLER.match(handler):
            raise ValueError(f"handler {handler!r} must be a dotted path 'package.module.function'")
        return handler


# The container's soft memory reservation: under Fargate's smallest size, so any size a run's plan asks
# for (a task override) still holds it; the task's own memory is the limit.
TASK_MEMORY_RESERVATION_MB = 512


class TaskSpec(_Model):
    """A step that may run as an ECS Fargate task: the same image and step code as ``function``, with
    exactly its permissions. ``cpu``/``memory_mb`` are the task definition's size; a run's plan may
    override both per run (RunTask's task overrides), within Fargate's combinations."""

    function: str
    command: tuple[str, ...]
    # Where the state is handed over to and back from the task.
    handover_bucket: str
    handover_prefix: str
    cpu: int = DEFAULT_FARGATE_CPU
    memory_mb: int = DEFAULT_FARGATE_MEMORY

    def handover_permissions(self) -> tuple[Permission, ...]:
        """Beyond its function's permissions, a task reads the state it starts from and writes the state
        it produced (``<prefix><model>/<run id>/<function>/{input,output}.json``), no other step's."""
        own = f"{self.handover_prefix}*/*/{self.function}/"
        return (
            Permission(
                actions=("s3:GetObject", "s3:GetObjectVersion"),
                resource=BucketRef(bucket=self.handover_bucket, objects=f"{own}input.json"),
            ),
            Permission(
                actions=("s3:PutObject",),
                resource=BucketRef(bucket=self.handover_bucket, objects=f"{own}output.json"),
            ),
        )

    @model_validator(mode="after")
    def _fargate_size(self) -> TaskSpec:
        problem = fargate_size_problem(self.cpu, self.memory_mb)
        if problem:
            raise ValueError(f"task {self.function!r}: {problem}")
        return self


class ScheduleSpec(_Model):
    """Invoke ``function`` on ``expression`` (EventBridge ``rate(...)``/``cron(...)``).

    Without ``input`` the function receives EventBridge's scheduled event; with it, exactly that JSON.
    """

    name: str = Field(pattern=LOGICAL_NAME)
    expression: str
    function: str
    input: dict[str, Any] | None = None
    enabled: bool = True

    @field_validator("expression")
    @classmethod
    def _expression_parses(cls, expression: str) -> str:
        ScheduleExpression.parse(expression)
        return expression


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "ANY"]


class RouteSpec(_Model):
    """``method path`` on the HTTP API invokes ``function`` with a payload v2 event.

    ``authorized=False`` leaves the route open (health checks); every other route uses the stack's
    authorization (IAM or JWT, from the stack config).
    """

    method: HttpMethod
    path: str = Field(pattern=r"^/[A-Za-z0-9_\-./{}+]*$")
    function: str
    authorized: bool = True

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def logical_name(self) -> str:
        """The route's resource name (``post-models-model-predict``): providers derive ids from it, and
        Lambda's permission statement ids allow only letters, digits, ``-`` and ``_``."""
        return f"{self.method.lower()}-{re.sub(r'[^A-Za-z0-9]+', '-', self.path).strip('-') or 'root'}"


class TaskTarget(_Model):
    """What a state machine's ``ecs:runTask.sync`` state names: the cluster, the task definition (its
    family: RunTask takes the latest active revision), the container to override, the network, and the
    size of the step's function (which the plan weighs an estimate against)."""

    cluster: str
    task_definition: str
    container: str
    command: tuple[str, ...]
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: bool = False
    function_memory_mb: int
    function_timeout_s: int


class FunctionArns(Mapping[str, str]):
    """The ARNs a state machine builder may ask for; asking for an undeclared function is a SpecError.
    ``task(function)`` is the function's container task, when the spec declares one."""

    def __init__(self, arns: Mapping[str, str], tasks: Mapping[str, TaskTarget] | None = None) -> None:
        self._arns = dict(arns)
        self._tasks = dict(tasks or {})
        self.used: set[str] = set()

    def task(self, function: str) -> TaskTarget | None:
        return self._tasks.get(function)

    def __getitem__(self, name: str) -> str:
        if name not in self._arns:
            raise SpecError(
                f"the state machine refers to function {name!r}, which the spec does not declare "
                f"(declared: {sorted(self._arns)})"
            )
        self.used.add(name)
        return self._arns[name]

    def __iter__(self) -> Any:
        return iter(self._arns)

    def __len__(self) -> int:
        return len(self._arns)


DefinitionBuilder = Callable[[FunctionArns], dict[str, Any]]


class StateMachineSpec(_Model):
    """The pipeline, or another workflow. ``definition`` builds the Amazon States Language document (Python
    dicts) from the functions' ARNs, so the same builder serves both clouds. ``permissions`` are what the
    machine's role needs besides invoking the functions it names (a Distributed Map lists its items and
    starts its child executions itself)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str = Field(pattern=LOGICAL_NAME)
    definition: DefinitionBuilder
    env_var: EnvVar | None = None
    permissions: tuple[Permission, ...] = ()

    def build(
        self, arns: Mapping[str, str], tasks: Mapping[str, TaskTarget] | None = None
    ) -> tuple[dict[str, Any], set[str]]:
        """The definition for these ARNs (and container tasks), and the functions it invokes."""
        recorder = FunctionArns(arns, tasks)
        document = self.definition(recorder)
        return document, recorder.used


PLACEHOLDER_ARN = "arn:aws:lambda:region:000000000000:function:{}"


class StackSpec(_Model):
    """The whole stack. Construction fails with a :class:`SpecError` naming any dangling reference."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    project: str = Field(pattern=LOGICAL_NAME)
    buckets: tuple[BucketSpec, ...] = ()
    tables: tuple[TableSpec, ...] = ()
    functions: tuple[FunctionSpec, ...] = ()
    schedules: tuple[ScheduleSpec, ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    capture: CaptureStreamSpec | None = None
    state_machine: StateMachineSpec | None = None
    # State machines besides the pipeline (batch scoring), each with its own role.
    workflows: tuple[StateMachineSpec, ...] = ()
    tasks: tuple[TaskSpec, ...] = ()

    @model_validator(mode="after")
    def _references_resolve(self) -> StackSpec:
        for kind, names in (
            ("bucket", [b.name for b in self.buckets]),
            ("table", [t.name for t in self.tables]),
            ("function", [f.name for f in self.functions]),
            ("schedule", [s.name for s in self.schedules]),
            ("route", [r.route_key for r in self.routes]),
            ("route resource name", [r.logical_name for r in self.routes]),
            ("state machine", [m.name for m in self.state_machines]),
        ):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise SpecError(f"duplicate {kind} name(s): {', '.join(duplicates)}")

        functions = {f.name for f in self.functions}
        buckets = {b.name for b in self.buckets}

        def require_function(name: str, where: str) -> None:
            if name not in functions:
                raise SpecError(f"{where} names function {name!r}, which the spec does not declare")

        for bucket in self.buckets:
            for note in bucket.notifications:
                require_function(note.function, f"bucket {bucket.name!r} notification on {note.prefix!r}")
        for schedule in self.schedules:
            require_function(schedule.function, f"schedule {schedule.name!r}")
        for route in self.routes:
            require_function(route.function, f"route {route.route_key!r}")
        if self.capture is not None and self.capture.bucket not in buckets:
            raise SpecError(
                f"capture stream {self.capture.name!r} names bucket {self.capture.bucket!r}, "
                "which the spec does not declare"
            )
        self._check_tasks(functions)
        for function in self.functions:
            for permission in function.permissions:
                self._check_resource(permission.resource, f"function {function.name!r} permission")
        self._check_state_machines({f: PLACEHOLDER_ARN.format(f) for f in functions})
        env_vars = [
            r.env_var
            for r in (*self.buckets, *self.tables, *self.functions, self.capture, *self.state_machines)
            if r is not None and r.env_var is not None
        ]
        clashes = sorted({v.value for v in env_vars if env_vars.count(v) > 1})
        if clashes:
            raise SpecError(f"environment variable(s) {clashes} are bound to more than one resource")
        return self

    def _check_state_machines(self, placeholders: Mapping[str, str]) -> None:
        # Building each definition checks that every Task names a declared function.
        for machine in self.state_machines:
            self.machine_definition(machine, placeholders)
            for permission in machine.permissions:
                self._check_resource(permission.resource, f"state machine {machine.name!r} permission")

    def _check_tasks(self, functions: set[str]) -> None:
        task_functions = [t.function for t in self.tasks]
        if len(set(task_functions)) != len(task_functions):
            raise SpecError(f"more than one task for function(s) {sorted(task_functions)}")
        for task in self.tasks:
            if task.function not in functions:
                raise SpecError(f"task {task.function!r} names a function the spec does not declare")
            for permission in task.handover_permissions():
                self._check_resource(permission.resource, f"task {task.function!r} handover")

    def _check_resource(
        self, ref: BucketRef | TableRef | StreamRef | FunctionRef | StateMachineRef, where: str
    ) -> None:
        match ref:
            case BucketRef(bucket=name) if name not in {b.name for b in self.buckets}:
                raise SpecError(f"{where} names bucket {name!r}, which the spec does not declare")
            case TableRef(table=name, index=index):
                table = self.table(name) if name in {t.name for t in self.tables} else None
                if table is None:
                    raise SpecError(f"{where} names table {name!r}, which the spec does not declare")
                if index is not None and index not in {i.name for i in table.indexes}:
                    raise SpecError(
                        f"{where} names index {index!r} of table {name!r}, which the table does not declare"
                    )
            case StreamRef(stream=name) if self.capture is None or self.capture.name != name:
                raise SpecError(f"{where} names stream {name!r}, which the spec does not declare")
            case FunctionRef(function=name) if name not in {f.name for f in self.functions}:
                raise SpecError(f"{where} names function {name!r}, which the spec does not declare")
            case StateMachineRef(machine=None) if self.state_machine is None:
                raise SpecError(f"{where} names the state machine, which the spec does not declare")
            case StateMachineRef(machine=str(name)) if name not in {w.name for w in self.workflows}:
                raise SpecError(f"{where} names workflow {name!r}, which the spec does not declare")
            case _:
                pass

    # --- lookups both clouds use ------------------------------------------------------------------------

    def placeholder_task(self, task: TaskSpec) -> TaskTarget:
        function = self.function(task.function)
        return TaskTarget(
            cluster="arn:aws:ecs:region:000000000000:cluster/tasks",
            task_definition=task.function,
            container=task.function,
            command=task.command,
            subnets=("subnet-00000000",),
            security_groups=("sg-00000000",),
            function_memory_mb=function.memory_mb,
            function_timeout_s=function.timeout_s,
        )

    def function(self, name: str) -> FunctionSpec:
        return next(f for f in self.functions if f.name == name)

    def table(self, name: str) -> TableSpec:
        return next(t for t in self.tables if t.name == name)

    def bucket(self, name: str) -> BucketSpec:
        return next(b for b in self.buckets if b.name == name)

    @property
    def state_machines(self) -> tuple[StateMachineSpec, ...]:
        """The pipeline (if declared) and every workflow."""
        return (*((self.state_machine,) if self.state_machine else ()), *self.workflows)

    def workflow(self, name: str) -> StateMachineSpec:
        return next(w for w in self.workflows if w.name == name)

    def task(self, function: str) -> TaskSpec | None:
        return next((t for t in self.tasks if t.function == function), None)

    def state_machine_definition(
        self, arns: Mapping[str, str], tasks: Mapping[str, TaskTarget] | None = None
    ) -> tuple[dict[str, Any], set[str]]:
        """The pipeline's ASL document for these function ARNs, checked: every Task names a declared
        function (see :meth:`machine_definition`)."""
        if self.state_machine is None:
            raise SpecError("the spec declares no state machine")
        return self.machine_definition(self.state_machine, arns, tasks)

    def machine_definition(
        self,
        machine: StateMachineSpec,
        arns: Mapping[str, str],
        tasks: Mapping[str, TaskTarget] | None = None,
    ) -> tuple[dict[str, Any], set[str]]:
        """One state machine's ASL document for these function ARNs, and the functions it invokes.

        ``tasks`` are where the declared container tasks run; without them (``None``) placeholders stand
        in, which is enough to know the document's shape and the functions it invokes."""
        if tasks is None:
            tasks = {t.function: self.placeholder_task(t) for t in self.tasks}
        document, used = machine.build(arns, tasks)
        if not isinstance(document, dict) or "StartAt" not in document or "States" not in document:
            raise SpecError(
                f"the builder of state machine {machine.name!r} must return an ASL document with "
                "'StartAt' and 'States'"
            )
        return document, used


def with_overrides(
    spec: StackSpec,
    memory_mb: Mapping[str, int],
    timeout_s: Mapping[str, int],
    schedules: Mapping[str, str],
    reserved_concurrency: Mapping[str, int] | None = None,
) -> StackSpec:
    """The spec with an environment's sizes, reserved concurrency and schedule expressions applied.

    Overrides come from the stack config; one naming a function or schedule the spec lacks is a typo
    that would otherwise be ignored silently, so it is an error.
    """
    functions = {f.name for f in spec.functions}
    reserved = reserved_concurrency or {}
    unknown = sorted((set(memory_mb) | set(timeout_s) | set(reserved)) - functions)
    if unknown:
        raise SpecError(f"stack config sizes function(s) {unknown}, which the spec does not declare")
    unknown = sorted(set(schedules) - {s.name for s in spec.schedules})
    if unknown:
        raise SpecError(f"stack config sets schedule(s) {unknown}, which the spec does not declare")

    def sized(f: FunctionSpec) -> FunctionSpec:
        return f.model_copy(
            update={
                "memory_mb": memory_mb.get(f.name, f.memory_mb),
                "timeout_s": timeout_s.get(f.name, f.timeout_s),
                "reserved_concurrency": reserved.get(f.name, f.reserved_concurrency),
            }
        )

    def timed(s: ScheduleSpec) -> ScheduleSpec:
        return ScheduleSpec.model_validate(
            {**s.model_dump(), "expression": schedules.get(s.name, s.expression)}
        )

    return StackSpec(
        project=spec.project,
        buckets=spec.buckets,
        tables=spec.tables,
        functions=tuple(FunctionSpec.model_validate(sized(f).model_dump()) for f in spec.functions),
        schedules=tuple(timed(s) for s in spec.schedules),
        routes=spec.routes,
        capture=spec.capture,
        state_machine=spec.state_machine,
        workflows=spec.workflows,
        tasks=spec.tasks,
    )
