"""A state machine of the spec (the pipeline, or a workflow such as batch scoring), allowed to invoke
exactly the functions its definition names and do what its spec permissions say, traced, and logging its
errors to a log group of its own."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws
from pulumi import Output, ResourceOptions

from infra.components.roles import service_role
from infra.config import StackConfig
from infra.names import StackNames, physical_name
from infra.policies import state_machine_policy
from infra.spec import PLACEHOLDER_ARN, SpecError, StackSpec, StateMachineSpec

# Step Functions hands its logs to CloudWatch Logs through the log-delivery API, whose actions take no
# resource but "*" (AWS documents no resource-level permissions for them). They get a statement of their
# own, next to the invocations derived from the spec, never inside a spec permission.
LOG_DELIVERY_ACTIONS = (
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
)


def pipeline_policy(
    spec: StackSpec, names: StackNames, machine: StateMachineSpec | None = None
) -> dict[str, Any]:
    """A state machine's policy (the pipeline's by default): invoke the functions its definition names,
    its spec permissions, the step tasks for the pipeline (``ecs:runTask.sync``), X-Ray, log delivery."""
    chosen = machine or spec.state_machine
    if chosen is None:
        raise SpecError("the spec declares no state machine")
    pipeline = chosen is spec.state_machine
    _, invoked = spec.machine_definition(chosen, names.function_arns(), names.task_targets(spec))
    document = state_machine_policy(invoked, names, chosen.permissions, spec if pipeline else None)
    document["Statement"].append(
        {"Sid": "LogDelivery", "Effect": "Allow", "Action": list(LOG_DELIVERY_ACTIONS), "Resource": "*"}
    )
    return document


class Pipeline(pulumi.ComponentResource):
    """The state machine, its role and its log group."""

    def __init__(
        self,
        name: str,
        spec: StackSpec,
        *,
        names: Output[StackNames],
        functions: Mapping[str, aws.lambda_.Function],
        stack: str,
        config: StackConfig,
        machine: StateMachineSpec | None = None,
        opts: ResourceOptions | None = None,
    ) -> None:
        super().__init__("flywheel:pipeline:Pipeline", name, None, opts)
        chosen = machine or spec.state_machine
        if chosen is None:
            raise SpecError("the spec declares no state machine")
        logical = chosen.name
        physical = physical_name(spec.project, stack, logical)
        role, policy = service_role(
            logical,
            physical=physical,
            kind="states",
            service="states.amazonaws.com",
            policy=names.apply(lambda n: json.dumps(pipeline_policy(spec, n, chosen))),
            parent=self,
        )
        # The /aws/vendedlogs/ prefix keeps CloudWatch's resource policy for log delivery small.
        log_group = aws.cloudwatch.LogGroup(
            logical,
            name=f"/aws/vendedlogs/states/{physical}",
            retention_in_days=config.log_retention_days,
            opts=ResourceOptions(parent=self),
        )
        # Which functions the definition invokes does not depend on their ARNs.
        _, invoked = spec.machine_definition(
            chosen, {f.name: PLACEHOLDER_ARN.format(f.name) for f in spec.functions}
        )
        self.state_machine = aws.sfn.StateMachine(
            logical,
            name=physical,
            type="STANDARD",
            role_arn=role.arn,
            definition=names.apply(
                lambda n: json.dumps(
                    spec.machine_definition(chosen, n.function_arns(), n.task_targets(spec))[0]
                )
            ),
            tracing_configuration={"enabled": True},
            logging_configuration={
                "level": "ERROR",
                # Inputs carry feature rows; errors are logged without them.
                "include_execution_data": False,
                "log_destination": log_group.arn.apply(lambda arn: f"{arn}:*"),
            },
            opts=ResourceOptions(parent=self, depends_on=[policy, *(functions[f] for f in sorted(invoked))]),
        )
        self.arn: Output[str] = self.state_machine.arn
        self.register_outputs({"arn": self.arn})
