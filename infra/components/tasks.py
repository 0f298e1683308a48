"""Step tasks: Validate and Train as ECS Fargate tasks of the functions' own image.

One cluster; per task a definition (Fargate, ``awsvpc``, the image the functions run, the step's command,
the functions' environment, logs to a log group of its own), a task role allowing exactly the step
function's spec permissions and the handover of its state (``infra.policies.task_policy``), and an
execution role that may only pull the image and write those logs. The network is the stack's settings
(``taskSubnets``/``taskSecurityGroups``) or the default VPC's subnets with a security group of the stack's
own. The state machine runs the tasks with ``ecs:runTask.sync`` (``infra.components.pipeline``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pulumi
import pulumi_aws as aws
from pulumi import Output, ResourceOptions

from infra.components.roles import service_role
from infra.config import StackConfig
from infra.image import ARCHITECTURE
from infra.names import StackNames, physical_name
from infra.policies import ECS_TASKS_SERVICE, task_execution_policy, task_policy
from infra.spec import TASK_MEMORY_RESERVATION_MB, StackSpec, TaskSpec
from shared.env_names import EnvVar

CPU_ARCHITECTURES = {"x86_64": "X86_64", "arm64": "ARM64"}
HTTPS = 443


class StepTasks(pulumi.ComponentResource):
    """The cluster, the network and every step task of the spec; ``names`` carries the network on."""

    def __init__(
        self,
        name: str,
        spec: StackSpec,
        *,
        names: Output[StackNames],
        image_uri: Output[str],
        repository_arn: Output[str],
        environment: Output[dict[str, str]],
        stack: str,
        config: StackConfig,
        opts: ResourceOptions | None = None,
    ) -> None:
        super().__init__("flywheel:tasks:StepTasks", name, None, opts)
        self._config, self._stack = config, stack
        self.cluster = aws.ecs.Cluster(
            "tasks",
            name=names.apply(lambda n: n.cluster or ""),
            settings=[{"name": "containerInsights", "value": "enabled"}],
            opts=ResourceOptions(parent=self),
        )
        subnets, groups, public_ip = self._network()
        self.names: Output[StackNames] = Output.all(names=names, subnets=subnets, groups=groups).apply(
            lambda r: dataclasses.replace(
                r["names"],
                subnets=tuple(r["subnets"]),
                security_groups=tuple(r["groups"]),
                assign_public_ip=public_ip,
            )
        )
        self.definitions = {
            task.function: self._task(task, spec, names, image_uri, repository_arn, environment)
            for task in spec.tasks
        }
        self.register_outputs({"cluster": self.cluster.arn})

    def _network(self) -> tuple[Output[list[str]], Output[list[str]], bool]:
        if self._config.task_subnets:
            groups = list(self._config.task_security_groups)
            if not groups:
                raise ValueError("taskSubnets needs taskSecurityGroups: the tasks' egress must be allowed")
            return Output.from_input(list(self._config.task_subnets)), Output.from_input(groups), False
        invoke = pulumi.InvokeOutputOptions(parent=self)
        vpc = aws.ec2.get_vpc_output(default=True, opts=invoke)
        found = aws.ec2.get_subnets_output(
            filters=[aws.ec2.GetSubnetsFilterArgs(name="vpc-id", values=[vpc.id])],  # type: ignore[list-item]
            opts=invoke,
        )
        group = aws.ec2.SecurityGroup(
            "tasks",
            description="Flywheel step tasks: no ingress, HTTPS out to the AWS APIs",
            vpc_id=vpc.id,
            egress=[{"protocol": "tcp", "from_port": HTTPS, "to_port": HTTPS, "cidr_blocks": ["0.0.0.0/0"]}],
            opts=ResourceOptions(parent=self),
        )
        return found.ids, group.id.apply(lambda gid: [gid]), True

    def _task(
        self,
        task: TaskSpec,
        spec: StackSpec,
        names: Output[StackNames],
        image_uri: Output[str],
        repository_arn: Output[str],
        environment: Output[dict[str, str]],
    ) -> aws.ecs.TaskDefinition:
        function = spec.function(task.function)
        logical = f"{task.function}-task"
        log_group = aws.cloudwatch.LogGroup(
            logical,
            name=names.apply(lambda n: n.task_log_group(task.function)),
            retention_in_days=self._config.log_retention_days,
            opts=ResourceOptions(parent=self),
        )
        family = names.apply(lambda n: n.task_families[task.function])
        role, role_policy = service_role(
            logical,
            physical=physical_name(spec.project, self._stack, logical),
            kind="role",
            service=ECS_TASKS_SERVICE,
            policy=names.apply(lambda n: json.dumps(task_policy(task, function, n))),
            parent=self,
        )
        execution, execution_policy = service_role(
            f"{logical}-exec",
            physical=physical_name(spec.project, self._stack, logical),
            kind="exec",
            service=ECS_TASKS_SERVICE,
            policy=Output.all(repository_arn, log_group.arn).apply(
                lambda arns: json.dumps(task_execution_policy(arns[0], arns[1]))
            ),
            parent=self,
        )
        containers = Output.all(image=image_uri, env=environment, log=log_group.name).apply(
            lambda r: json.dumps([_container(task, r["image"], r["env"], r["log"], self._config.region)])
        )
        return aws.ecs.TaskDefinition(
            logical,
            family=family,
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(task.cpu),
            memory=str(task.memory_mb),
            task_role_arn=role.arn,
            execution_role_arn=execution.arn,
            runtime_platform={
                "operating_system_family": "LINUX",
                "cpu_architecture": CPU_ARCHITECTURES[ARCHITECTURE],
            },
            container_definitions=containers,
            opts=ResourceOptions(parent=self, depends_on=[role_policy, execution_policy]),
        )


def _container(
    task: TaskSpec, image: str, environment: dict[str, str], log_group: str, region: str
) -> dict[str, Any]:
    return {
        "name": task.function,
        "image": image,
        "essential": True,
        # The Lambda base image's entry point is Lambda's runtime interface; a task runs its command.
        "entryPoint": ["/usr/bin/env"],
        "command": list(task.command),
        "memoryReservation": TASK_MEMORY_RESERVATION_MB,
        # Lambda sets AWS_REGION itself (and refuses it as a variable); a task is told.
        "environment": [
            {"name": k, "value": v} for k, v in sorted({**environment, EnvVar.REGION.value: region}.items())
        ],
        "readonlyRootFilesystem": False,
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": task.function,
            },
        },
    }
