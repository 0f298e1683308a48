"""The program against AWS's own rules: what the real providers answer, what the APIs accept, what the IAM
linter and the ASL validator say. Each of the first deployment's failures (issue 11) has its test here, and
every checker is shown to refuse what AWS refuses, so a clean verdict means something."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.policies import state_machine_policy
from infra.preflight import asl, policies, rules
from infra.preflight.mocks import ACCOUNT, Registered, auto_name, run_main
from infra.spec import RouteSpec
from tests.infra.harness import Deployment, T

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("dev", "staging", "prod")


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> tuple[str, list[Registered]]:
    """``infra/__main__.py`` itself, as `pulumi up` runs it for each environment."""
    resources, _ = run_main(request.param)
    return request.param, resources


def registered(type_token: str, logical: str = "x", **inputs: Any) -> Registered:
    """A resource as the program would declare it, with ``inputs`` (outputs echo them)."""
    return Registered(
        urn=f"urn:pulumi:dev::flywheel::{type_token}::{logical}",
        id=logical,
        type=type_token,
        name=logical,
        inputs=inputs,
        outputs=dict(inputs),
        parent="",
        dependencies=frozenset(),
        protect=False,
        retain_on_delete=False,
    )


def test_no_stack_declares_anything_aws_refuses(stack: tuple[str, list[Registered]]) -> None:
    """Given the program for dev, staging or prod under mocks that answer as the providers do
    When every resource is held to its API call, every IAM document to parliament and the state machine
    to asl-validator
    Then nothing is refused."""
    name, resources = stack
    assert len(resources) > 100
    assert rules.check(resources) == [], name
    assert policies.lint(resources) == [], name
    assert asl.validate(resources) == [], name


# -- the providers' own answers ------------------------------------------------------------------------


def test_the_mocks_name_what_the_program_leaves_unnamed_as_pulumi_aws_does(flywheel_dev: Deployment) -> None:
    """A permission without a statement id gets `<logical name>-<7 hex>` (tfbridge.AutoName), a bucket with
    a prefix Terraform's 26-character suffix, a role's id is its name, docker-build's ref is tag@digest."""
    for permission in flywheel_dev.all(T.PERMISSION):
        assert permission.inputs["statementId"] == auto_name(
            permission.name, f"{T.PERMISSION}::{permission.name}"
        )
    bucket = flywheel_dev.one(T.BUCKET, "data")
    assert len(bucket.outputs["bucket"]) == len(bucket.inputs["bucketPrefix"]) + 26
    role = flywheel_dev.one(T.ROLE, "trigger", T.FUNCTIONS)
    assert role.id == role.inputs["name"]
    assert role.outputs["arn"] == f"arn:aws:iam::{ACCOUNT}:role/{role.inputs['name']}"
    image = flywheel_dev.one(T.IMAGE, "functions")
    tag, digest = image.inputs["tags"][0], image.outputs["digest"]
    assert image.outputs["ref"] == f"{tag}@{digest}"
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64


# -- defect 2: permission statement ids ------------------------------------------------------------------


def test_route_permissions_get_statement_ids_lambda_accepts(flywheel_dev: Deployment) -> None:
    """Given routes whose keys hold spaces, slashes and braces (`POST /models/{model}/predict`)
    When Pulumi names their permissions
    Then every statement id is letters, digits, - and _ (Lambda's AddPermission pattern)."""
    shape = rules.api_shape("lambda", "AddPermission", "StatementId")
    permissions = flywheel_dev.all(T.PERMISSION, T.API_COMPONENT)
    assert len(permissions) == 4
    for permission in permissions:
        assert rules.shape_problems(shape, permission.inputs["statementId"]) == []
    assert RouteSpec(method="POST", path="/models/{model}/predict", function="predict").logical_name == (
        "post-models-model-predict"
    )


def test_a_statement_id_from_a_route_key_is_refused() -> None:
    permission = registered(T.PERMISSION, statementId="POST /models/{model}/predict-1a2b3c4")
    [finding] = rules.resource_problems(permission)
    assert finding.input == "statementId"
    assert "([a-zA-Z0-9-_]+)" in finding.problem
    assert finding.source == "botocore lambda AddPermission StatementId"


# -- defect 3: the image URI ---------------------------------------------------------------------------


def test_functions_run_the_image_by_repository_and_digest(flywheel_dev: Deployment) -> None:
    url = flywheel_dev.one(T.REPOSITORY, "functions").outputs["repositoryUrl"]
    digest = flywheel_dev.one(T.IMAGE, "functions").outputs["digest"]
    assert {f.inputs["imageUri"] for f in flywheel_dev.all(T.FUNCTION)} == {f"{url}@{digest}"}


@pytest.mark.parametrize(
    ("uri", "accepted"),
    [
        (f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/flywheel-dev-functions@sha256:{'a' * 64}", True),
        (f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/flywheel-dev-functions:src-0123", True),
        # docker-build's `ref`: a tag and a digest
        (
            f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/flywheel-dev-functions:src-0123@sha256:{'a' * 64}",
            False,
        ),
        ("docker.io/library/python:3.12", False),
    ],
)
def test_lambda_takes_an_ecr_image_by_tag_or_by_digest_not_both(uri: str, accepted: bool) -> None:
    function = registered(T.FUNCTION, imageUri=uri)
    assert (rules.resource_problems(function) == []) is accepted


# -- defect 6: tracing needs X-Ray's sampling calls --------------------------------------------------------


def test_the_traced_state_machine_may_read_x_rays_sampling_rules(flywheel_dev: Deployment) -> None:
    machine = flywheel_dev.one(T.STATE_MACHINE, "pipeline")
    assert machine.inputs["tracingConfiguration"] == {"enabled": True}
    policy = json.loads(flywheel_dev.one(T.ROLE_POLICY, "pipeline").inputs["policy"])
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert set(rules.XRAY_STATES) <= actions
    assert set(rules.XRAY_STATES) <= {
        a for s in state_machine_policy([], flywheel_dev.names())["Statement"] for a in s["Action"]
    }


def test_a_traced_state_machine_whose_role_cannot_sample_is_refused() -> None:
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/r"
    machine = registered(T.STATE_MACHINE, roleArn=role_arn, tracingConfiguration={"enabled": True})
    role = registered(T.ROLE, name="r", arn=role_arn)
    allowed = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": list(rules.XRAY_LAMBDA), "Resource": "*"}],
    }
    policy = registered(T.ROLE_POLICY, role="r", policy=json.dumps(allowed))
    [finding] = rules.joined_problems([machine, role, policy])
    assert "xray:GetSamplingRules" in finding.problem
    assert finding.source.endswith("xray-iam.html")


# -- the checkers refuse what AWS refuses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "field"),
    [
        (registered(T.FUNCTION, memorySize=20480.0), "memorySize"),
        (registered(T.FUNCTION, timeout=901.0), "timeout"),
        (registered(T.FUNCTION, name="a" * 65), "name"),
        (
            registered(T.FUNCTION, environment={"variables": {"AWS_REGION": "eu-west-1"}}),
            "environment.variables",
        ),
        (registered(T.FUNCTION, environment={"variables": {"BIG": "x" * 4096}}), "environment.variables"),
        (registered(T.FUNCTION, architectures=["amd64"]), "architectures[0]"),
        (registered(T.ROLE, name="a role"), "name"),
        (registered(T.BUCKET, bucket="Flywheel-Data"), "bucket"),
        (registered(T.TABLE, name="ab"), "name"),
        (registered(T.LOG_GROUP, retentionInDays=10.0), "retentionInDays"),
        (registered(T.RULE, name="x" * 65), "name"),
        (registered(T.STATE_MACHINE, name="pipeline:dev"), "name"),
        (
            registered(
                T.STATE_MACHINE, loggingConfiguration={"logDestination": "arn:aws:logs:r:1:log-group:g"}
            ),
            "loggingConfiguration.logDestination",
        ),
        (
            registered(T.STREAM, extendedS3Configuration={"bufferingSize": 129.0}),
            "extendedS3Configuration.bufferingSize",
        ),
        (registered(T.REPOSITORY, name="Functions"), "name"),
        (registered(T.ROUTE, routeKey="FETCH /x"), "routeKey"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.type.rsplit(":", 1)[-1],
)
def test_each_rule_refuses_what_its_api_refuses(resource: Registered, field: str) -> None:
    assert [f.input for f in rules.resource_problems(resource)] == [field]


def test_parliament_flags_an_unknown_action_and_an_action_on_the_wrong_resource() -> None:
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObjekt", "Resource": "arn:aws:s3:::b/*"},
            {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "arn:aws:s3:::b/*"},
        ],
    }
    issues = {f.problem.split()[0] for f in policies.lint_identity_policy(json.dumps(document), "p")}
    assert {"UNKNOWN_ACTION", "RESOURCE_MISMATCH"} <= issues


def test_a_trust_policy_open_to_anyone_is_refused() -> None:
    open_trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}],
    }
    assert policies.lint_trust_policy(json.dumps(open_trust), "r")


def test_the_asl_validator_refuses_a_broken_definition(flywheel_dev: Deployment) -> None:
    definition = json.loads(flywheel_dev.one(T.STATE_MACHINE, "pipeline").inputs["definition"])
    assert asl.validate_definition(json.dumps(definition), "ok") == []
    definition["States"]["Orphan"] = {"Type": "Task", "Next": "Nowhere"}
    found = asl.validate_definition(json.dumps(definition), "broken")
    assert found and all(f.source == "asl-validator" for f in found)


# -- the deploy role users apply -------------------------------------------------------------------------


class _CloudFormation(yaml.SafeLoader):
    """Reads a template's short-form functions as data (``{"Fn::Sub": ...}``)."""


for _tag, _key in (("!Sub", "Fn::Sub"), ("!Ref", "Ref"), ("!If", "Fn::If"), ("!Equals", "Fn::Equals"),
                   ("!Not", "Fn::Not"), ("!GetAtt", "Fn::GetAtt")):  # fmt: skip

    def _construct(loader: yaml.SafeLoader, node: yaml.Node, key: str = _key) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            return {key: loader.construct_scalar(node)}
        return {key: loader.construct_sequence(node, deep=True)}  # type: ignore[arg-type]

    _CloudFormation.add_constructor(_tag, _construct)


def resolve(value: Any, parameters: dict[str, str]) -> Any:
    """The template's value with its parameters and pseudo-parameters substituted."""
    if isinstance(value, dict):
        if "Fn::Sub" in value:
            text = value["Fn::Sub"]
            for name, replacement in parameters.items():
                text = text.replace("${" + name + "}", replacement)
            return text
        if "Fn::If" in value:
            return resolve(value["Fn::If"][1], parameters)
        return {k: resolve(v, parameters) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, parameters) for v in value if v != {"Ref": "AWS::NoValue"}]
    return value


def test_the_github_deploy_role_passes_the_linter_and_trusts_only_the_repositorys_environments() -> None:
    template = yaml.load(
        (ROOT / "infra" / "bootstrap" / "github-oidc.yaml").read_text(), Loader=_CloudFormation
    )
    parameters = {
        "AWS::Partition": "aws",
        "AWS::AccountId": ACCOUNT,
        "AWS::Region": "us-east-1",
        "GitHubRepository": "acme/flywheel",
        "Project": "flywheel",
        "StateBucket": "acme-pulumi-state",
    }
    role = resolve(template["Resources"]["DeployRole"]["Properties"], parameters)
    for policy in role["Policies"]:
        assert policies.lint_identity_policy(json.dumps(policy["PolicyDocument"]), policy["PolicyName"]) == []
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["Condition"]["StringEquals"] == {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com"
    }
    subjects = trust["Condition"]["StringLike"]["token.actions.githubusercontent.com:sub"]
    assert subjects == [
        f"repo:acme/flywheel:environment:{e}" for e in ("dev", "dev-preview", "staging", "production")
    ]
    # Everything it may touch is named after the project, but the registry login, the API's generated ids,
    # the describes that take only "*" and the tasks' security group (EC2 generates its id).
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    unnamed = {s["Sid"] for s in statements if "flywheel-" not in json.dumps(s["Resource"])}
    assert unnamed == {
        "RegistryLogin",
        "EncryptionGrantsForTheServices",
        "DescribeLogGroups",
        "HttpApi",
        "SmokeTestPrediction",
        "DescribeStepTaskDefinitions",
        "StepTaskNetwork",
        "DescribeStepTaskNetwork",
    }
