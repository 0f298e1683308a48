"""Running the Pulumi program under ``pulumi.runtime.set_mocks``, keeping what it declares.

No engine and no provider plugin is involved: the preflight's recording monitor keeps every registration
(type token, name, inputs, outputs, parent, dependencies, ``protect``/``retain_on_delete``), and its
provider mocks (``infra.preflight.mocks``) answer as pulumi-aws and docker-build do: auto-names, ids,
ARNs, image refs. Each run starts from a fresh
monitor, root stack and configuration, so tests in one process do not see each other's resources. The
configuration comes from the real ``Pulumi.<stack>.yaml``, handed over as strings the way the Pulumi CLI
does, and the program reads it with ``StackConfig.from_pulumi()`` exactly as ``infra/__main__.py`` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi

from infra.config import StackConfig
from infra.deploy import deploy
from infra.names import StackNames
from infra.preflight.mocks import ACCOUNT, Registered, reset_pulumi, run, run_main
from infra.spec import StackSpec

__all__ = ["ACCOUNT", "Deployment", "Registered", "T", "document", "reset_pulumi", "run_main", "run_program"]

SpecFactory = Callable[[StackConfig], StackSpec]


class T:
    """Type tokens of what the program declares."""

    BUCKET = "aws:s3/bucket:Bucket"
    VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
    ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    PUBLIC_ACCESS = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
    BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
    LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
    NOTIFICATION = "aws:s3/bucketNotification:BucketNotification"
    TABLE = "aws:dynamodb/table:Table"
    REPOSITORY = "aws:ecr/repository:Repository"
    IMAGE = "docker-build:index:Image"
    ROLE = "aws:iam/role:Role"
    ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
    LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
    FUNCTION = "aws:lambda/function:Function"
    PERMISSION = "aws:lambda/permission:Permission"
    STREAM = "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream"
    STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"
    RULE = "aws:cloudwatch/eventRule:EventRule"
    TARGET = "aws:cloudwatch/eventTarget:EventTarget"
    API = "aws:apigatewayv2/api:Api"
    STAGE = "aws:apigatewayv2/stage:Stage"
    INTEGRATION = "aws:apigatewayv2/integration:Integration"
    ROUTE = "aws:apigatewayv2/route:Route"
    AUTHORIZER = "aws:apigatewayv2/authorizer:Authorizer"

    STORAGE = "flywheel:storage:Buckets"
    NOTIFICATIONS = "flywheel:storage:BucketNotifications"
    TABLES = "flywheel:tables:Tables"
    FUNCTIONS = "flywheel:functions:Functions"
    CAPTURE = "flywheel:capture:CaptureStream"
    PIPELINE = "flywheel:pipeline:Pipeline"
    SCHEDULES = "flywheel:schedules:Schedules"
    API_COMPONENT = "flywheel:api:HttpApi"


def document(resource: Registered, key: str = "policy") -> dict[str, Any]:
    """A JSON document input (a policy, a definition) as Python data."""
    parsed: dict[str, Any] = json.loads(resource.inputs[key])
    return parsed


@dataclass
class Deployment:
    """What one run of the program declared, and the stack outputs it resolved to."""

    stack: str
    config: StackConfig
    spec: StackSpec
    resources: list[Registered]
    outputs: dict[str, Any] = field(default_factory=dict)

    def all(self, type_token: str, component: str | None = None) -> list[Registered]:
        """Resources of one type, optionally only the children of one component type."""
        return [
            r
            for r in self.resources
            if r.type == type_token and (component is None or self.component_of(r) == component)
        ]

    def one(self, type_token: str, name: str, component: str | None = None) -> Registered:
        found = [r for r in self.all(type_token, component) if r.name == name]
        assert len(found) == 1, f"expected one {type_token} named {name!r}, found {len(found)}"
        return found[0]

    @staticmethod
    def component_of(resource: Registered) -> str:
        """The type token of the resource's parent (``urn:...::<parent types>$<type>::<name>``)."""
        return resource.parent.split("::")[2].split("$")[-1]

    def by_urn(self, urn: str) -> Registered:
        return next(r for r in self.resources if r.urn == urn)

    def names(self) -> StackNames:
        """The stack's names as a test works them out on its own: conventions plus the bucket names
        AWS generated (read from the deployed buckets, not from the program's outputs)."""
        buckets = {r.name: r.outputs["bucket"] for r in self.all("aws:s3/bucket:Bucket")}
        return StackNames.for_spec(self.spec, self.stack, self.config.region, ACCOUNT, buckets=buckets)


def run_program(
    spec_factory: SpecFactory, stack: str, extra_config: dict[str, Any] | None = None
) -> Deployment:
    """Run ``deploy`` as ``infra/__main__.py`` does, under the provider mocks for ``stack``."""
    seen: dict[str, Any] = {}

    def program() -> pulumi.Output[None]:
        config = StackConfig.from_pulumi()
        spec = spec_factory(config)
        seen.update(config=config, spec=spec)
        exports = deploy(spec, config).exports()
        return pulumi.Output.from_input(exports).apply(lambda resolved: seen.update(outputs=resolved))

    resources = run(program, stack, extra_config)
    return Deployment(
        stack=stack, config=seen["config"], spec=seen["spec"], resources=resources, outputs=seen["outputs"]
    )
