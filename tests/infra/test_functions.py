"""Functions: one image, one handler command each, and a role allowing exactly the spec's permissions."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import StackConfig
from infra.image import code_version
from infra.policies import function_policy
from infra.spec import BucketSpec, StackSpec
from tests.fixtures.stack import platform_stack
from tests.infra.harness import Deployment, T, document, run_program

pytestmark = pytest.mark.infra

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = [f.name for f in platform_stack().functions]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_runs_the_shared_image_with_its_handler_sizes_and_tracing(
    platform_dev: Deployment, name: str
) -> None:
    """Given a function of the platform spec
    When the program runs for dev
    Then it is an Image function running the one pushed image with its handler as the command, with
    the spec's memory, timeout and reserved concurrency, X-Ray active, and its own role."""
    spec = platform_dev.spec.function(name)
    function = platform_dev.one(T.FUNCTION, name).inputs
    assert function["name"] == f"plat-dev-{name}"
    assert function["packageType"] == "Image"
    # By digest: Lambda refuses docker-build's `ref` (`repository:tag@sha256:…`).
    repository_url = platform_dev.one(T.REPOSITORY, "functions").outputs["repositoryUrl"]
    assert (
        function["imageUri"] == f"{repository_url}@{platform_dev.one(T.IMAGE, 'functions').outputs['digest']}"
    )
    assert function["imageConfig"] == {"commands": [spec.handler]}
    assert function["memorySize"] == spec.memory_mb
    assert function["timeout"] == spec.timeout_s
    assert function["ephemeralStorage"] == {"size": spec.ephemeral_mb}
    assert function.get("reservedConcurrentExecutions") == spec.reserved_concurrency
    assert function["tracingConfig"] == {"mode": "Active"}
    assert function["role"] == platform_dev.one(T.ROLE, name, T.FUNCTIONS).outputs["arn"]


def test_reserved_concurrency_is_set_only_where_the_spec_asks(platform_dev: Deployment) -> None:
    reserved = {
        f.name: f.inputs["reservedConcurrentExecutions"]
        for f in platform_dev.all(T.FUNCTION)
        if "reservedConcurrentExecutions" in f.inputs
    }
    assert reserved == {"on-upload": 2}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_role_allows_exactly_its_spec_permissions(platform_dev: Deployment, name: str) -> None:
    """Given a function and the permissions its spec declares
    When the program runs
    Then its role, trusted by Lambda alone, has one inline policy equal to the policy worked out here
    from the spec and the deployed names; only X-Ray's statement has Resource "*", and no action is a
    wildcard."""
    role = platform_dev.one(T.ROLE, name, T.FUNCTIONS)
    [trust] = document(role, "assumeRolePolicy")["Statement"]
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"

    policy = platform_dev.one(T.ROLE_POLICY, name, T.FUNCTIONS)
    assert policy.inputs["role"] == role.id
    granted = document(policy)
    assert granted == function_policy(platform_dev.spec.function(name), platform_dev.names())
    for statement in granted["Statement"]:
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        if statement["Sid"] != "Tracing":
            assert all(r != "*" for r in resources), statement
        assert all("*" not in action for action in statement["Action"]), statement


def test_a_function_role_names_the_deployed_resources(platform_dev: Deployment) -> None:
    """Given on-upload may write the events table and read data's incoming/ objects
    When the program runs
    Then its policy grants those actions on that table's and those objects' ARNs (built from the bucket
    name AWS generated), its own log group, and X-Ray; nothing else."""
    bucket = platform_dev.one(T.BUCKET, "data").outputs["bucket"]
    table_arn = platform_dev.one(T.TABLE, "events").outputs["arn"]
    statements = document(platform_dev.one(T.ROLE_POLICY, "on-upload", T.FUNCTIONS))["Statement"]
    granted = {(tuple(s["Action"]), s["Resource"]) for s in statements}
    assert granted == {
        (
            (
                "dynamodb:GetItem",
                "dynamodb:Query",
                "dynamodb:BatchGetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
            ),
            table_arn,
        ),
        (("s3:GetObject", "s3:GetObjectVersion"), f"arn:aws:s3:::{bucket}/incoming/*"),
        (
            ("logs:CreateLogStream", "logs:PutLogEvents"),
            f"{platform_dev.one(T.LOG_GROUP, 'on-upload', T.FUNCTIONS).outputs['arn']}:*",
        ),
        (("xray:PutTraceSegments", "xray:PutTelemetryRecords"), "*"),
    }


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_logs_to_its_own_group_which_exists_before_it(
    platform_dev: Deployment, name: str
) -> None:
    """Given the dev stack keeps logs 14 days
    When the program runs
    Then each function has /aws/lambda/<its name> with that retention, and the function waits for its
    log group and its policy."""
    log_group = platform_dev.one(T.LOG_GROUP, name, T.FUNCTIONS)
    assert log_group.inputs["name"] == f"/aws/lambda/plat-dev-{name}"
    assert log_group.inputs["retentionInDays"] == StackConfig.from_stack_file("dev").log_retention_days == 14
    function = platform_dev.one(T.FUNCTION, name)
    assert log_group.urn in function.dependencies
    assert platform_dev.one(T.ROLE_POLICY, name, T.FUNCTIONS).urn in function.dependencies


def test_every_function_receives_the_stack_environment(platform_dev: Deployment) -> None:
    """Given the spec binds buckets, a table, the stream and the state machine to variables
    When the program runs for dev (log level DEBUG in Pulumi.dev.yaml)
    Then every function gets the same variables, naming the deployed resources, and the stack exports
    that same environment."""
    expected = platform_dev.names().environment(
        platform_dev.spec,
        "dev",
        "DEBUG",
        code_version(),
        StackConfig.from_stack_file("dev").function_environment(),
    )
    assert expected["FLYWHEEL_DATA_BUCKET"] == platform_dev.one(T.BUCKET, "data").outputs["bucket"]
    for function in platform_dev.all(T.FUNCTION):
        assert function.inputs["environment"] == {"variables": expected}, function.name
    assert platform_dev.outputs["environment"] == expected


def test_one_image_built_from_the_repository_dockerfile_is_pushed_to_one_private_repository(
    platform_dev: Deployment,
) -> None:
    """Given any number of functions
    When the program runs
    Then one ECR repository (immutable tags, scanned on push, KMS-encrypted) receives one image built
    for x86_64 from the repository root's Dockerfile, tagged with the digest of its sources, pushed
    with the credentials of an ECR authorization token."""
    [repository] = platform_dev.all(T.REPOSITORY)
    assert repository.inputs["name"] == "plat-dev-functions"
    assert repository.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repository.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS"}]
    assert repository.inputs["forceDelete"] is True  # dev is not protected
    url = repository.outputs["repositoryUrl"]

    [image] = platform_dev.all(T.IMAGE)
    assert Path(image.inputs["context"]["location"]) == REPO_ROOT
    assert Path(image.inputs["dockerfile"]["location"]) == REPO_ROOT / "Dockerfile"
    assert (REPO_ROOT / "Dockerfile").is_file()
    assert image.inputs["platforms"] == ["linux/amd64"]
    assert image.inputs["push"] is True
    assert image.inputs["tags"] == [f"{url}:{code_version()}"]
    assert image.inputs["registries"] == [{"address": url, "username": "AWS", "password": "ecr-password"}]
    assert {f.inputs["architectures"][0] for f in platform_dev.all(T.FUNCTION)} == {"x86_64"}


def test_a_spec_without_functions_builds_no_image() -> None:
    spec = StackSpec(project="plat", buckets=(BucketSpec(name="data"),))
    deployed = run_program(lambda _config: spec, "dev")
    assert deployed.all(T.REPOSITORY) == deployed.all(T.IMAGE) == deployed.all(T.FUNCTION) == []
    assert deployed.outputs["functions"] == {}
