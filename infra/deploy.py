"""The Pulumi program proper: a stack spec and an environment's config, mapped onto AWS.

Buckets come first because AWS names them (from a prefix) and every ARN a function is granted on is built
from resolved names (``StackNames``); functions next; then what invokes them (bucket notifications,
schedules, routes, the state machine). ``infra.program.run`` calls :func:`deploy` for Flywheel's spec;
the tests call it, under Pulumi's mocks, for any spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
from pulumi import Output

from infra.components.api import HttpApi
from infra.components.capture import CaptureStream
from infra.components.functions import Functions
from infra.components.pipeline import Pipeline
from infra.components.schedules import Schedules
from infra.components.storage import BucketNotifications, Buckets
from infra.components.tables import Tables
from infra.components.tasks import StepTasks
from infra.config import StackConfig
from infra.image import REPO_ROOT, ImageContext, image_context
from infra.names import StackNames
from infra.spec import StackSpec


@dataclass(frozen=True)
class StackOutputs:
    """What consumers of a deployed stack need, by logical name where there are several."""

    buckets: Mapping[str, Output[str]]
    tables: Mapping[str, Output[str]]
    functions: Mapping[str, Output[str]]
    # The variables every function receives: the CLI reads them to find a deployed stack's resources.
    environment: Output[dict[str, str]]
    state_machine_arn: Output[str] | None = None
    workflow_arns: Mapping[str, Output[str]] = field(default_factory=dict)
    stream_name: Output[str] | None = None
    api_endpoint: Output[str] | None = None

    def exports(self) -> dict[str, Any]:
        """The stack outputs, by export name; capabilities the spec lacks are left out."""
        values: dict[str, Any] = {
            "buckets": dict(self.buckets),
            "tables": dict(self.tables),
            "functions": dict(self.functions),
            "environment": self.environment,
            "state_machine_arn": self.state_machine_arn,
            "workflow_arns": dict(self.workflow_arns) or None,
            "stream_name": self.stream_name,
            "api_endpoint": self.api_endpoint,
        }
        return {key: value for key, value in values.items() if value is not None}


def deploy(spec: StackSpec, config: StackConfig, image: ImageContext | None = None) -> StackOutputs:
    """Declare ``spec`` in the current Pulumi stack, configured by ``config``, its functions built from
    ``image`` (by default the context for this checkout as the Pulumi project)."""
    stack = pulumi.get_stack()
    project = spec.project
    account: Output[str] = aws.get_caller_identity_output().account_id

    buckets = Buckets("storage", spec.buckets, project=project, stack=stack, config=config)
    tables = Tables("tables", spec.tables, project=project, stack=stack, config=config)
    # Built from the deployed names, so whatever refers to a bucket or table waits for it.
    names: Output[StackNames] = Output.all(account=account, buckets=buckets.names, tables=tables.names).apply(
        lambda resolved: StackNames.for_spec(
            spec,
            stack,
            config.region,
            resolved["account"],
            buckets=resolved["buckets"],
            tables=resolved["tables"],
        )
    )

    image = image or image_context(REPO_ROOT, config.models_dir)
    functions = Functions("functions", spec, names=names, stack=stack, config=config, image=image)
    if any(bucket.notifications for bucket in spec.buckets):
        BucketNotifications(
            "notifications",
            spec.buckets,
            deployed=buckets.buckets,
            functions=functions.functions,
            account=account,
        )
    if spec.schedules:
        Schedules("schedules", spec.schedules, functions=functions.functions, project=project, stack=stack)
    capture = (
        CaptureStream(
            "capture",
            spec.capture,
            bucket_arn=buckets.arns[spec.capture.bucket],
            project=project,
            stack=stack,
        )
        if spec.capture is not None
        else None
    )
    if spec.tasks and functions.image_uri is not None and functions.repository_arn is not None:
        # The step tasks' network joins the names: the state machine's task states name it.
        names = StepTasks(
            "tasks",
            spec,
            names=names,
            image_uri=functions.image_uri,
            repository_arn=functions.repository_arn,
            environment=functions.environment,
            stack=stack,
            config=config,
        ).names
    pipeline = (
        Pipeline("pipeline", spec, names=names, functions=functions.functions, stack=stack, config=config)
        if spec.state_machine is not None
        else None
    )
    workflows = {
        workflow.name: Pipeline(
            workflow.name,
            spec,
            names=names,
            functions=functions.functions,
            stack=stack,
            config=config,
            machine=workflow,
        )
        for workflow in spec.workflows
    }
    api = (
        HttpApi(
            "api", spec.routes, functions=functions.entry_points, project=project, stack=stack, config=config
        )
        if spec.routes
        else None
    )
    return StackOutputs(
        buckets=buckets.names,
        tables=tables.names,
        functions=functions.names,
        environment=functions.environment,
        state_machine_arn=pipeline.arn if pipeline else None,
        workflow_arns={name: workflow.arn for name, workflow in workflows.items()},
        stream_name=capture.name if capture else None,
        api_endpoint=api.endpoint if api else None,
    )
