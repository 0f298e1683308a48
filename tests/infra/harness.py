"""Running the Pulumi program under ``pulumi.runtime.set_mocks``, keeping what it declares.

No engine and no provider plugin is involved: a recording monitor keeps every registration (type token,
name, inputs, the outputs the mocks computed, parent, dependencies, ``protect``/``retain_on_delete``),
and the mocks answer with outputs shaped like AWS's (names, ARNs, URLs). Each run starts from a fresh
monitor, root stack and configuration, so tests in one process do not see each other's resources. The
configuration comes from the real ``Pulumi.<stack>.yaml``, handed over as strings the way the Pulumi CLI
does, and the program reads it with ``StackConfig.from_pulumi()`` exactly as ``infra/__main__.py`` does.
"""

from __future__ import annotations

import json
import runpy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml
from pulumi.runtime import rpc, settings
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs
from pulumi.runtime.stack import Stack

from infra.config import ROOT, StackConfig
from infra.deploy import deploy
from infra.names import StackNames
from infra.spec import StackSpec

ACCOUNT = "123456789012"
PROJECT = "flywheel"
API_ID = "a1b2c3d4e5"
BUCKET_SUFFIX = "20240101abcdef"
IMAGE_DIGEST = "sha256:" + "ab" * 32

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


@dataclass(frozen=True)
class Registered:
    """One resource as the program declared it."""

    urn: str
    id: str
    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    parent: str
    dependencies: frozenset[str]
    protect: bool
    retain_on_delete: bool


class AwsLikeMocks(pulumi.runtime.Mocks):
    """Outputs shaped like the real ones, so what the program derives from them (ARNs, endpoints) can be
    checked against the conventions of ``infra.names``."""

    def __init__(self, region: str) -> None:
        self.region = region

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = args.inputs
        name = inputs.get("name") or args.name
        regional = f"{self.region}:{ACCOUNT}"
        computed: dict[str, Any]
        match args.typ:
            case "aws:s3/bucket:Bucket":
                bucket = inputs["bucketPrefix"] + BUCKET_SUFFIX
                return bucket, {**inputs, "bucket": bucket, "arn": f"arn:aws:s3:::{bucket}"}
            case "aws:dynamodb/table:Table":
                computed = {"arn": f"arn:aws:dynamodb:{regional}:table/{name}"}
            case "aws:lambda/function:Function":
                computed = {"arn": f"arn:aws:lambda:{regional}:function:{name}"}
            case "aws:iam/role:Role":
                computed = {"arn": f"arn:aws:iam::{ACCOUNT}:role/{name}"}
            case "aws:cloudwatch/logGroup:LogGroup":
                computed = {"arn": f"arn:aws:logs:{regional}:log-group:{name}"}
            case "aws:ecr/repository:Repository":
                computed = {
                    "registryId": ACCOUNT,
                    "repositoryUrl": f"{ACCOUNT}.dkr.ecr.{self.region}.amazonaws.com/{name}",
                }
            case "docker-build:index:Image":
                computed = {"ref": f"{inputs['tags'][0]}@{IMAGE_DIGEST}", "digest": IMAGE_DIGEST}
            case "aws:sfn/stateMachine:StateMachine":
                computed = {"arn": f"arn:aws:states:{regional}:stateMachine:{name}"}
            case "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream":
                computed = {"arn": f"arn:aws:firehose:{regional}:deliverystream/{name}"}
            case "aws:cloudwatch/eventRule:EventRule":
                computed = {"arn": f"arn:aws:events:{regional}:rule/{name}"}
            case "aws:apigatewayv2/api:Api":
                return API_ID, {
                    **inputs,
                    "apiEndpoint": f"https://{API_ID}.execute-api.{self.region}.amazonaws.com",
                    "executionArn": f"arn:aws:execute-api:{regional}:{API_ID}",
                }
            case _:
                computed = {}
        return f"{args.name}-id", {"name": name, **inputs, **computed}

    def call(self, args: MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        # A bare dict: this monitor iterates the failures of a (result, failures) pair even when None.
        match args.token:
            case "aws:index/getCallerIdentity:getCallerIdentity":
                return {
                    "accountId": ACCOUNT,
                    "arn": f"arn:aws:iam::{ACCOUNT}:user/deployer",
                    "userId": "AIDAEXAMPLE",
                    "id": ACCOUNT,
                }
            case "aws:ecr/getAuthorizationToken:getAuthorizationToken":
                return {
                    "userName": "AWS",
                    "password": "ecr-password",
                    "authorizationToken": "QVdTOmVjci1wYXNzd29yZA==",
                    "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{self.region}.amazonaws.com",
                    "expiresAt": "2030-01-01T00:00:00Z",
                    "id": self.region,
                    "registryId": args.args.get("registryId", ACCOUNT),
                    "region": self.region,
                }
        raise AssertionError(f"the program called {args.token}, which these mocks do not answer")


class RecordingMonitor(MockMonitor):
    """The mock monitor, keeping each registration with the options the plain mocks do not see."""

    def __init__(self, mocks: AwsLikeMocks) -> None:
        super().__init__(mocks)
        self.registered: list[Registered] = []
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the monitor's RPC name)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        entry = Registered(
            urn=response.urn,
            id=response.id,
            type=request.type,
            name=request.name,
            inputs=rpc.deserialize_properties(request.object),
            outputs=dict(self.resources[response.urn].state),
            parent=request.parent,
            dependencies=frozenset(request.dependencies),
            protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete),
        )
        with self._lock:
            self.registered.append(entry)
        return response


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


def cli_config(stack: str, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """``Pulumi.<stack>.yaml``'s config as the Pulumi CLI hands it to a program: every value a string,
    structured values as JSON."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    values = {**(document.get("config") or {}), **(extra or {})}

    def as_string(value: Any) -> str:
        if isinstance(value, str):
            return value
        return json.dumps(value)

    return {key: as_string(value) for key, value in values.items()}


def _mock(stack: str, extra_config: dict[str, Any] | None) -> RecordingMonitor:
    reset_pulumi()
    values = cli_config(stack, extra_config)
    pulumi.runtime.set_all_config(values)
    mocks = AwsLikeMocks(region=values.get("aws:region", "us-east-1"))
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    return monitor


def run_program(
    spec_factory: SpecFactory, stack: str, extra_config: dict[str, Any] | None = None
) -> Deployment:
    """Run ``deploy`` as ``infra/__main__.py`` does, under fresh mocks for ``stack``."""
    monitor = _mock(stack, extra_config)

    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[None]:
        config = StackConfig.from_pulumi()
        spec = spec_factory(config)
        seen.update(config=config, spec=spec)
        exports = deploy(spec, config).exports()
        return pulumi.Output.from_input(exports).apply(lambda resolved: seen.update(outputs=resolved))

    program()
    return Deployment(
        stack=stack,
        config=seen["config"],
        spec=seen["spec"],
        resources=list(monitor.registered),
        outputs=seen["outputs"],
    )


def run_main(stack: str) -> tuple[list[Registered], dict[str, Any]]:
    """Run ``infra/__main__.py`` itself, as ``pulumi up`` would; its resources and its stack exports."""
    monitor = _mock(stack, None)
    exported: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[None]:
        runpy.run_path(str(ROOT / "infra" / "__main__.py"), run_name="__main__")
        root = settings.get_root_resource()
        assert isinstance(root, Stack)
        return pulumi.Output.from_input(root.outputs).apply(exported.update)

    program()
    return list(monitor.registered), exported


def reset_pulumi() -> None:
    """Forget the previous run: its root stack resource (``set_mocks`` only creates one when there is
    none) and its configuration."""
    settings.ROOT.set(None)
    pulumi.runtime.set_all_config({})
