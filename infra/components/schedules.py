"""Schedules: EventBridge rules that invoke a function on a rate or cron expression."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from infra.names import physical_name
from infra.spec import ScheduleSpec


class Schedules(pulumi.ComponentResource):
    """One rule, one target and one invoke permission per schedule of the spec."""

    def __init__(
        self,
        name: str,
        schedules: Sequence[ScheduleSpec],
        *,
        functions: Mapping[str, aws.lambda_.Function],
        project: str,
        stack: str,
        opts: ResourceOptions | None = None,
    ) -> None:
        super().__init__("flywheel:schedules:Schedules", name, None, opts)
        child = ResourceOptions(parent=self)
        self.rules: dict[str, aws.cloudwatch.EventRule] = {}
        for schedule in schedules:
            function = functions[schedule.function]
            rule = aws.cloudwatch.EventRule(
                schedule.name,
                name=physical_name(project, stack, schedule.name),
                description=f"{schedule.expression} -> {schedule.function}",
                schedule_expression=schedule.expression,
                state="ENABLED" if schedule.enabled else "DISABLED",
                opts=child,
            )
            aws.cloudwatch.EventTarget(
                schedule.name,
                rule=rule.name,
                arn=function.arn,
                # Without a constant input the function receives EventBridge's scheduled event.
                input=json.dumps(schedule.input) if schedule.input is not None else None,
                opts=child,
            )
            aws.lambda_.Permission(
                schedule.name,
                action="lambda:InvokeFunction",
                function=function.name,
                principal="events.amazonaws.com",
                source_arn=rule.arn,
                opts=child,
            )
            self.rules[schedule.name] = rule
        self.register_outputs({"rules": {n: r.name for n, r in self.rules.items()}})
