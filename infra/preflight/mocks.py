"""Providers as they really answer: the outputs `pulumi up` would see, without the Pulumi CLI or AWS.

Mocks written from the same assumptions as the program agree with it by construction, so these follow the
providers' own code instead:

- **Auto-naming.** pulumi-aws names what the program leaves unnamed from the resource's logical name plus
  ``-`` and seven random hex digits (``tfbridge.AutoName``; e.g. a ``lambda.Permission``'s statement id);
  a bucket with a ``bucketPrefix`` gets Terraform's 26-character unique suffix; an EventBridge target a
  ``terraform-…`` id.
- **Ids and ARNs** as each resource's provider sets them (a role's id is its name, a state machine's its
  ARN, an HTTP API's a 10-character id), so an input built from ``.id`` is what AWS receives.
- **docker-build's Image**: ``ref`` is ``<repository>:<tag>@sha256:<digest>`` (one tag, pushed),
  ``digest`` the manifest digest, ``contextHash`` the hash of the build context as the provider computes
  it (``infra.image.context_hash``).

Values are deterministic (a hash of the resource's URN), so two runs declare the same thing.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import rpc, settings
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs
from pulumi.runtime.stack import Stack

from infra.image import context_hash

ACCOUNT = "123456789012"
PROJECT = "flywheel"
ROOT = Path(__file__).resolve().parents[2]

# Which input each provider fills in when the program leaves it out (pulumi-aws provider/resources.go and
# its default auto-naming of ``name``). Buckets are handled on their own (bucket / bucketPrefix).
AUTO_NAMED = {
    "aws:lambda/permission:Permission": "statementId",
    "aws:lambda/function:Function": "name",
    "aws:iam/role:Role": "name",
    "aws:iam/rolePolicy:RolePolicy": "name",
    "aws:cloudwatch/logGroup:LogGroup": "name",
    "aws:cloudwatch/eventRule:EventRule": "name",
    "aws:dynamodb/table:Table": "name",
    "aws:ecr/repository:Repository": "name",
    "aws:sfn/stateMachine:StateMachine": "name",
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": "name",
    "aws:apigatewayv2/api:Api": "name",
    "aws:apigatewayv2/authorizer:Authorizer": "name",
    "aws:ecs/cluster:Cluster": "name",
    "aws:ec2/securityGroup:SecurityGroup": "name",
}
# The default VPC as EC2 describes one: its id, and one subnet per availability zone.
DEFAULT_VPC = "vpc-0a1b2c3d4e5f60718"
DEFAULT_SUBNETS = ("subnet-0a1b2c3d4e5f60711", "subnet-0a1b2c3d4e5f60722", "subnet-0a1b2c3d4e5f60733")


def _digits(seed: str, alphabet: str, length: int) -> str:
    raw = hashlib.sha256(seed.encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in raw[:length])


def auto_name(logical: str, urn: str) -> str:
    """pulumi-aws's auto-name: the logical name, ``-``, seven hex digits."""
    return f"{logical}-{_digits(urn, '0123456789abcdef', 7)}"


def terraform_unique_suffix(urn: str) -> str:
    """Terraform's ``id.UniqueId`` suffix: a timestamp to the 1/10000 s and an 8-digit counter (26 chars)."""
    return "2024010112000000" + "00" + _digits(urn, "0123456789", 8)


@dataclass(frozen=True)
class Registered:
    """One resource as the program declared it, and what the provider answered."""

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


class ProviderMocks(pulumi.runtime.Mocks):
    """Outputs as pulumi-aws and pulumi-docker-build produce them for one account and region."""

    def __init__(self, region: str) -> None:
        self.region = region

    def new_resource(  # noqa: PLR0912, PLR0915 (one arm per resource type, as the providers have)
        self, args: MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        # No URN reaches the mocks: type and logical name seed the "random" parts.
        urn = f"{args.typ}::{args.name}"
        auto = AUTO_NAMED.get(args.typ)
        if auto and not inputs.get(auto):
            inputs[auto] = auto_name(args.name, urn)
        name = inputs.get("name", args.name)
        regional = f"{self.region}:{ACCOUNT}"
        random_id = _digits(urn, "abcdefghijklmnopqrstuvwxyz0123456789", 10)
        match args.typ:
            case "aws:s3/bucket:Bucket":
                bucket = inputs.get("bucket") or (
                    inputs["bucketPrefix"] + terraform_unique_suffix(urn)
                    if inputs.get("bucketPrefix")
                    else auto_name(args.name, urn)
                )
                return bucket, {
                    **inputs,
                    "bucket": bucket,
                    "arn": f"arn:aws:s3:::{bucket}",
                    "bucketDomainName": f"{bucket}.s3.amazonaws.com",
                    "region": self.region,
                }
            case "aws:dynamodb/table:Table":
                return name, {**inputs, "arn": f"arn:aws:dynamodb:{regional}:table/{name}"}
            case "aws:lambda/function:Function":
                arn = f"arn:aws:lambda:{regional}:function:{name}"
                version = "1" if inputs.get("publish") else "$LATEST"  # a published function's first
                return name, {
                    **inputs,
                    "arn": arn,
                    "qualifiedArn": f"{arn}:{version}",
                    "version": version,
                    "invokeArn": f"arn:aws:apigateway:{self.region}:lambda:path/2015-03-31/functions/{arn}"
                    "/invocations",
                }
            case "aws:lambda/permission:Permission":
                return inputs["statementId"], inputs
            case "aws:lambda/alias:Alias":
                arn = f"arn:aws:lambda:{regional}:function:{inputs['functionName']}:{inputs['name']}"
                invoke = (
                    f"arn:aws:apigateway:{self.region}:lambda:path/2015-03-31/functions/{arn}/invocations"
                )
                return arn, {**inputs, "arn": arn, "invokeArn": invoke}
            case "aws:lambda/provisionedConcurrencyConfig:ProvisionedConcurrencyConfig":
                return f"{inputs['functionName']},{inputs['qualifier']}", inputs
            case "aws:iam/role:Role":
                path = inputs.get("path") or "/"
                return name, {
                    **inputs,
                    "arn": f"arn:aws:iam::{ACCOUNT}:role{path}{name}",
                    "uniqueId": "AROA" + _digits(urn, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 17),
                }
            case "aws:iam/rolePolicy:RolePolicy":
                return f"{inputs['role']}:{name}", inputs
            case "aws:cloudwatch/logGroup:LogGroup":
                # The provider reports the log group's ARN without the ":*" that DescribeLogGroups adds.
                return name, {**inputs, "arn": f"arn:aws:logs:{regional}:log-group:{name}"}
            case "aws:ecr/repository:Repository":
                return name, {
                    **inputs,
                    "arn": f"arn:aws:ecr:{regional}:repository/{name}",
                    "registryId": ACCOUNT,
                    "repositoryUrl": f"{ACCOUNT}.dkr.ecr.{self.region}.amazonaws.com/{name}",
                }
            case "docker-build:index:Image":
                digest = "sha256:" + hashlib.sha256(urn.encode()).hexdigest()
                context = Path((inputs.get("context") or {}).get("location") or ROOT)
                tags = inputs.get("tags") or []
                outputs = {**inputs, "digest": digest, "contextHash": context_hash(context)}
                # One pushed tag and its digest; nothing pushed, no ref.
                outputs["ref"] = f"{tags[0]}@{digest}" if tags and inputs.get("push") else ""
                return digest, outputs
            case "aws:sfn/stateMachine:StateMachine":
                arn = f"arn:aws:states:{regional}:stateMachine:{name}"
                return arn, {**inputs, "arn": arn, "status": "ACTIVE"}
            case "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream":
                arn = f"arn:aws:firehose:{regional}:deliverystream/{name}"
                return arn, {**inputs, "arn": arn}
            case "aws:cloudwatch/eventRule:EventRule":
                return name, {**inputs, "arn": f"arn:aws:events:{regional}:rule/{name}"}
            case "aws:cloudwatch/eventTarget:EventTarget":
                target_id = inputs.get("targetId") or f"terraform-{terraform_unique_suffix(urn)}"
                return f"{inputs['rule']}-{target_id}", {**inputs, "targetId": target_id}
            case "aws:apigatewayv2/api:Api":
                api_id = random_id
                return api_id, {
                    **inputs,
                    "apiEndpoint": f"https://{api_id}.execute-api.{self.region}.amazonaws.com",
                    "executionArn": f"arn:aws:execute-api:{regional}:{api_id}",
                    "arn": f"arn:aws:apigateway:{self.region}::/apis/{api_id}",
                }
            case "aws:apigatewayv2/stage:Stage":
                stage = inputs["name"]
                return stage, {
                    **inputs,
                    "arn": f"arn:aws:apigateway:{self.region}::/apis/{inputs['apiId']}/stages/{stage}",
                }
            case "aws:apigatewayv2/integration:Integration" | "aws:apigatewayv2/route:Route":
                return random_id[:7], inputs
            case "aws:apigatewayv2/authorizer:Authorizer":
                return random_id[:6], inputs
            case "aws:ecs/cluster:Cluster":
                # The provider's id for a cluster is its ARN.
                arn = f"arn:aws:ecs:{regional}:cluster/{name}"
                return arn, {**inputs, "arn": arn}
            case "aws:ecs/taskDefinition:TaskDefinition":
                # Its id is the family; the ARN names the revision registered (the first, here).
                family = inputs["family"]
                unrevised = f"arn:aws:ecs:{regional}:task-definition/{family}"
                return family, {
                    **inputs,
                    "arn": f"{unrevised}:1",
                    "arnWithoutRevision": unrevised,
                    "revision": 1,
                }
            case "aws:ec2/securityGroup:SecurityGroup":
                group_id = "sg-" + _digits(urn, "0123456789abcdef", 17)
                return group_id, {
                    **inputs,
                    "arn": f"arn:aws:ec2:{regional}:security-group/{group_id}",
                    "ownerId": ACCOUNT,
                }
            case _:
                return random_id, inputs

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
            case "aws:ec2/getVpc:getVpc":
                return {
                    "id": DEFAULT_VPC,
                    "arn": f"arn:aws:ec2:{self.region}:{ACCOUNT}:vpc/{DEFAULT_VPC}",
                    "cidrBlock": "172.31.0.0/16",
                    "default": True,
                    "enableDnsHostnames": True,
                    "enableDnsSupport": True,
                    "ownerId": ACCOUNT,
                    "state": "available",
                }
            case "aws:ec2/getSubnets:getSubnets":
                return {"id": self.region, "ids": list(DEFAULT_SUBNETS), "filters": args.args.get("filters")}
        raise AssertionError(f"the program called {args.token}, which these mocks do not answer")


class RecordingMonitor(MockMonitor):
    """The mock monitor, keeping each registration with the options the plain mocks do not see."""

    def __init__(self, mocks: ProviderMocks) -> None:
        super().__init__(mocks)
        self.registered: list[Registered] = []
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the monitor's RPC name)
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type == "pulumi:pulumi:Stack":
            return response
        state = dict(self.resources[response.urn].state)
        entry = Registered(
            urn=response.urn,
            id=response.id,
            type=request.type,
            name=request.name,
            # What AWS receives: the inputs with what the provider filled in (auto-names).
            inputs={**rpc.deserialize_properties(request.object), **_filled_in(request.type, state)},
            outputs=state,
            parent=request.parent,
            dependencies=frozenset(request.dependencies),
            protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete),
        )
        with self._lock:
            self.registered.append(entry)
        return response


# Beside the auto-names: what the provider fills in for a bucket and an EventBridge target.
FILLED_IN = {
    **AUTO_NAMED,
    "aws:s3/bucket:Bucket": "bucket",
    "aws:cloudwatch/eventTarget:EventTarget": "targetId",
}


def _filled_in(resource_type: str, state: dict[str, Any]) -> dict[str, Any]:
    key = FILLED_IN.get(resource_type)
    return {key: state[key]} if key and key in state else {}


def stack_config(stack: str, extra: dict[str, Any] | None = None, root: Path = ROOT) -> dict[str, str]:
    """``Pulumi.<stack>.yaml``'s config as the Pulumi CLI hands it to a program: every value a string,
    structured values as JSON."""
    import yaml  # noqa: PLC0415

    document = yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text()) or {}
    values = {**(document.get("config") or {}), **(extra or {})}
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def reset_pulumi() -> None:
    """Forget the previous run: its root stack resource (``set_mocks`` only creates one when there is
    none) and its configuration."""
    settings.ROOT.set(None)
    pulumi.runtime.set_all_config({})


@contextmanager
def mocked(
    stack: str, extra_config: dict[str, Any] | None = None, root: Path = ROOT
) -> Iterator[RecordingMonitor]:
    """Pulumi's runtime pointed at fresh provider mocks for ``stack`` of the Pulumi project in ``root``;
    reset again afterwards."""
    reset_pulumi()
    values = stack_config(stack, extra_config, root)
    pulumi.runtime.set_all_config(values)
    mocks = ProviderMocks(region=values.get("aws:region", "us-east-1"))
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    try:
        yield monitor
    finally:
        reset_pulumi()


def run(
    program: Callable[[], pulumi.Output[Any] | None],
    stack: str,
    extra: dict[str, Any] | None = None,
    root: Path = ROOT,
) -> list[Registered]:
    """Run ``program`` as a Pulumi program for ``stack`` of the project in ``root``; what it declared."""
    with mocked(stack, extra, root) as monitor:
        pulumi.runtime.test(program)()  # type: ignore[no-untyped-call]
        return list(monitor.registered)


def run_main(stack: str) -> tuple[list[Registered], dict[str, Any]]:
    """Run ``infra/__main__.py`` itself, as ``pulumi up`` would; its resources and its stack exports."""
    exported: dict[str, Any] = {}

    def program() -> pulumi.Output[None]:
        runpy.run_path(str(ROOT / "infra" / "__main__.py"), run_name="__main__")
        root = settings.get_root_resource()
        assert isinstance(root, Stack)
        return pulumi.Output.from_input(root.outputs).apply(exported.update)

    resources = run(program, stack)
    return resources, exported
