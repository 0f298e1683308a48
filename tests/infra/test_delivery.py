"""Each environment's promotion policy, as the Pulumi program deploys it: Pulumi.<stack>.yaml's
``flywheel:promotion`` reaches every function as FLYWHEEL_PROMOTION_POLICY, which ``shared.settings`` reads.
Prod also protects its tables and authorises its API with IAM: the environment where a person approves is
the one nobody can delete or call anonymously.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra.flywheel import flywheel_stack
from shared.env_names import EnvVar
from shared.settings import EnvironmentPolicy, PolicyKind, Settings
from tests.infra.harness import Deployment, T, reset_pulumi, run_program

pytestmark = pytest.mark.infra

POLICIES = {
    "dev": {"policy": "auto", "min_staging_successes": 0, "approval_timeout_hours": 24.0},
    "staging": {"policy": "approval", "min_staging_successes": 0, "approval_timeout_hours": 24.0},
    "prod": {"policy": "approval", "min_staging_successes": 3, "approval_timeout_hours": 72.0},
}


@pytest.fixture(scope="module")
def deployed() -> Iterator[dict[str, Deployment]]:
    """Flywheel's program once per stack."""
    stacks = {}
    for stack in POLICIES:
        reset_pulumi()
        stacks[stack] = run_program(flywheel_stack, stack)
    reset_pulumi()
    yield stacks


def variables(deployment: Deployment) -> list[dict[str, str]]:
    found: list[dict[str, str]] = [f.inputs["environment"]["variables"] for f in deployment.all(T.FUNCTION)]
    assert found
    return found


@pytest.mark.parametrize("stack", POLICIES)
def test_every_function_receives_its_stacks_promotion_policy(
    deployed: dict[str, Deployment], stack: str
) -> None:
    """Given Pulumi.<stack>.yaml's flywheel:promotion
    When the program runs for that stack
    Then every function (the pipeline's, predict, verify, approval, the monitor...) gets it as
    FLYWHEEL_PROMOTION_POLICY, and the settings the functions load read it back as that policy."""
    deployment = deployed[stack]
    assert deployment.config.promotion == EnvironmentPolicy.model_validate(POLICIES[stack])
    for environment in variables(deployment):
        assert json.loads(environment[EnvVar.PROMOTION_POLICY.value]) == POLICIES[stack]
        settings = Settings.model_validate({**environment, "AWS_REGION": deployment.config.region})
        assert settings.environment == stack
        assert settings.promotion_policy == EnvironmentPolicy.model_validate(POLICIES[stack])
    assert json.loads(deployment.outputs["environment"][EnvVar.PROMOTION_POLICY.value]) == POLICIES[stack]


def test_prod_waits_for_a_person_after_three_staging_passes_behind_protected_tables_and_iam(
    deployed: dict[str, Deployment],
) -> None:
    """Given Pulumi.prod.yaml
    When the program runs
    Then its functions are told: approval, three staging verifications before production, a 72-hour wait;
    every table has deletion protection and is protected and retained by Pulumi; the prediction and
    description routes require IAM (only /health and the OpenAPI document are open) and no JWT authorizer
    exists."""
    prod = deployed["prod"]
    policy: dict[str, Any] = json.loads(variables(prod)[0][EnvVar.PROMOTION_POLICY.value])
    settings_policy = EnvironmentPolicy.model_validate(policy)
    assert settings_policy.policy is PolicyKind.APPROVAL
    assert settings_policy.min_staging_successes == 3
    assert settings_policy.approval_timeout_seconds == 72 * 3600

    tables = prod.all(T.TABLE)
    assert {t.name for t in tables} == {t.name for t in prod.spec.tables} >= {"registry", "metadata"}
    for table in tables:
        assert table.inputs["deletionProtectionEnabled"] is True, table.name
        assert table.protect and table.retain_on_delete, table.name

    routes = {r.inputs["routeKey"]: r.inputs["authorizationType"] for r in prod.all(T.ROUTE)}
    assert routes == {
        "POST /models/{model}/predict": "AWS_IAM",
        "GET /models/{model}": "AWS_IAM",
        "GET /health": "NONE",
        "GET /openapi.json": "NONE",
    }
    assert prod.all(T.AUTHORIZER) == []


def test_only_dev_promotes_without_a_person(deployed: dict[str, Deployment]) -> None:
    automatic = {
        stack
        for stack, deployment in deployed.items()
        if json.loads(variables(deployment)[0][EnvVar.PROMOTION_POLICY.value])["policy"] == "auto"
    }
    assert automatic == {"dev"}


@pytest.mark.parametrize(
    ("stack", "rate", "burst", "predict"),
    [("dev", 10, 20, 10), ("staging", 50, 100, 25), ("prod", 200, 400, 100)],
)
def test_a_flood_of_requests_has_a_bounded_cost_in_every_environment(
    deployed: dict[str, Deployment], stack: str, rate: int, burst: int, predict: int
) -> None:
    """Given the stack's flywheel:apiThrottle and flywheel:reservedConcurrency
    When the program runs
    Then the API's stage throttles every route to that rate and burst (API Gateway answers 429 beyond it,
    invoking nothing), predict runs at most that many instances, and no other function holds any."""
    deployment = deployed[stack]
    [stage] = deployment.all(T.STAGE)
    assert stage.inputs["defaultRouteSettings"] == {
        "throttlingRateLimit": rate,
        "throttlingBurstLimit": burst,
    }
    reserved = {f.name: f.inputs.get("reservedConcurrentExecutions") for f in deployment.all(T.FUNCTION)}
    assert reserved.pop("predict") == predict
    assert set(reserved.values()) == {None}
