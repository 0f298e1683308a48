"""Physical names and ARNs of a stack's resources, the same way in both clouds.

Both clouds name resources ``<project>-<stack>-<logical>`` (buckets get a random suffix in AWS, where
names are global). ARNs are built from names, so a function's policy or environment never waits on the
resource it points at, and the Pulumi graph has no cycles (the trigger function can name the state
machine that invokes other functions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from infra.spec import (
    BucketRef,
    FunctionRef,
    ResourceRef,
    StackSpec,
    StateMachineRef,
    StreamRef,
    TableRef,
    TaskTarget,
)
from shared.env_names import EnvVar

TASK_CLUSTER = "tasks"
# Before the network is known (a definition built only for its shape): ids of the right form.
PLACEHOLDER_NETWORK = (("subnet-00000000",), ("sg-00000000",))


def physical_name(project: str, stack: str, logical: str) -> str:
    return f"{project}-{stack}-{logical}"


@dataclass(frozen=True)
class StackNames:
    """What a deployed stack's ARNs are made from: account, region and every physical name."""

    region: str
    account: str
    buckets: Mapping[str, str]
    tables: Mapping[str, str]
    functions: Mapping[str, str]
    stream: str | None = None
    state_machine: str | None = None
    workflows: Mapping[str, str] = field(default_factory=dict)
    partition: str = "aws"
    extra_environment: Mapping[str, str] = field(default_factory=dict)
    # Container tasks: the cluster, each task's definition family (by its function), and the network the
    # tasks run in (stack settings, or the default VPC's; resolved after the names, hence settable later).
    cluster: str | None = None
    task_families: Mapping[str, str] = field(default_factory=dict)
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: bool = False

    @classmethod
    def for_spec(
        cls, spec: StackSpec, stack: str, region: str, account: str, **overrides: Mapping[str, str]
    ) -> StackNames:
        """Names by the convention; ``overrides`` replaces some (e.g. buckets AWS named with a suffix)."""

        def name(logical: str) -> str:
            return physical_name(spec.project, stack, logical)

        return cls(
            region=region,
            account=account,
            buckets=overrides.get("buckets") or {b.name: name(b.name) for b in spec.buckets},
            tables=overrides.get("tables") or {t.name: name(t.name) for t in spec.tables},
            functions={f.name: name(f.name) for f in spec.functions},
            stream=name(spec.capture.name) if spec.capture else None,
            state_machine=name(spec.state_machine.name) if spec.state_machine else None,
            workflows={w.name: name(w.name) for w in spec.workflows},
            cluster=name(TASK_CLUSTER) if spec.tasks else None,
            task_families={t.function: name(f"{t.function}-task") for t in spec.tasks},
        )

    def _arn(self, service: str, resource: str, *, regional: bool = True) -> str:
        if not regional:
            return f"arn:{self.partition}:{service}:::{resource}"
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"

    def bucket_arn(self, logical: str) -> str:
        return self._arn("s3", self.buckets[logical], regional=False)

    def table_arn(self, logical: str) -> str:
        return self._arn("dynamodb", f"table/{self.tables[logical]}")

    def function_arn(self, logical: str) -> str:
        return self._arn("lambda", f"function:{self.functions[logical]}")

    def function_arns(self) -> dict[str, str]:
        return {logical: self.function_arn(logical) for logical in self.functions}

    def cluster_arn(self) -> str:
        assert self.cluster is not None, "the spec declares no container task"
        return self._arn("ecs", f"cluster/{self.cluster}")

    def task_definition_arn(self, function: str, revision: str = "*") -> str:
        """A task definition's ARN; ``revision="*"`` (any revision) is what IAM grants RunTask on."""
        return self._arn("ecs", f"task-definition/{self.task_families[function]}:{revision}")

    def task_arn_pattern(self) -> str:
        """Any task of the stack's cluster (DescribeTasks and StopTask are granted on tasks)."""
        return self._arn("ecs", f"task/{self.cluster}/*")

    def role_arn(self, name: str) -> str:
        return f"arn:{self.partition}:iam::{self.account}:role/{name}"

    def event_rule_arn(self, name: str) -> str:
        return self._arn("events", f"rule/{name}")

    def task_role_name(self, function: str) -> str:
        return f"{self.task_families[function]}-role"

    def task_execution_role_name(self, function: str) -> str:
        return f"{self.task_families[function]}-exec"

    def task_log_group(self, function: str) -> str:
        return f"/ecs/{self.task_families[function]}"

    def log_group_arn(self, name: str) -> str:
        return self._arn("logs", f"log-group:{name}")

    def task_targets(self, spec: StackSpec) -> dict[str, TaskTarget]:
        """What the state machine's task states name, for each of the spec's container tasks."""
        targets = {}
        for task in spec.tasks:
            function = spec.function(task.function)
            targets[task.function] = TaskTarget(
                cluster=self.cluster_arn(),
                task_definition=self.task_families[task.function],
                container=task.function,
                command=task.command,
                subnets=self.subnets or PLACEHOLDER_NETWORK[0],
                security_groups=self.security_groups or PLACEHOLDER_NETWORK[1],
                assign_public_ip=self.assign_public_ip,
                function_memory_mb=function.memory_mb,
                function_timeout_s=function.timeout_s,
            )
        return targets

    def stream_arn(self) -> str:
        assert self.stream is not None, "the spec declares no capture stream"
        return self._arn("firehose", f"deliverystream/{self.stream}")

    def machine_name(self, machine: str | None = None) -> str:
        """The physical name of the pipeline (``None``) or of a workflow."""
        if machine is None:
            assert self.state_machine is not None, "the spec declares no state machine"
            return self.state_machine
        return self.workflows[machine]

    def state_machine_arn(self, machine: str | None = None) -> str:
        return self._arn("states", f"stateMachine:{self.machine_name(machine)}")

    def arn(self, ref: ResourceRef) -> str:
        """The ARN a permission on ``ref`` is granted on."""
        match ref:
            case BucketRef(bucket=bucket, objects=None):
                return self.bucket_arn(bucket)
            case BucketRef(bucket=bucket, objects=pattern):
                return f"{self.bucket_arn(bucket)}/{pattern}"
            case TableRef(table=table, index=None):
                return self.table_arn(table)
            case TableRef(table=table, index=index):
                return f"{self.table_arn(table)}/index/{index}"
            case StreamRef():
                return self.stream_arn()
            case FunctionRef(function=function):
                return self.function_arn(function)
            case StateMachineRef(machine=machine, map_runs=True):
                return self._arn("states", f"execution:{self.machine_name(machine)}/*:*")
            case StateMachineRef(machine=machine, executions=False):
                return self.state_machine_arn(machine)
            case StateMachineRef(machine=machine, executions=True):
                return self._arn("states", f"execution:{self.machine_name(machine)}:*")
        raise AssertionError(f"unknown resource reference {ref!r}")

    def environment(
        self,
        spec: StackSpec,
        environment: str,
        log_level: str = "INFO",
        code_version: str = "unknown",
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The variables every function receives (``shared.settings`` reads them).

        ``AWS_REGION`` is not among them: Lambda sets it and refuses it as a user variable.
        """
        env = {
            EnvVar.ENVIRONMENT.value: environment,
            EnvVar.CODE_VERSION.value: code_version,
            EnvVar.POWERTOOLS_SERVICE_NAME.value: spec.project,
            EnvVar.POWERTOOLS_METRICS_NAMESPACE.value: spec.project.capitalize(),
            EnvVar.LOG_LEVEL.value: log_level,
        }
        for bucket in spec.buckets:
            if bucket.env_var:
                env[bucket.env_var.value] = self.buckets[bucket.name]
        for table in spec.tables:
            if table.env_var:
                env[table.env_var.value] = self.tables[table.name]
        for function in spec.functions:
            if function.env_var:
                env[function.env_var.value] = self.functions[function.name]
        if spec.capture and spec.capture.env_var:
            env[spec.capture.env_var.value] = self.stream or ""
        if spec.state_machine and spec.state_machine.env_var:
            env[spec.state_machine.env_var.value] = self.state_machine_arn()
        for workflow in spec.workflows:
            if workflow.env_var:
                env[workflow.env_var.value] = self.state_machine_arn(workflow.name)
        env.update(self.extra_environment)
        env.update(extra or {})
        return env
