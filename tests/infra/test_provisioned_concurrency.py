"""Provisioned concurrency for predict: a stack setting that publishes a version, points a ``live`` alias at
it, keeps that many instances warm on the alias, and routes the API's requests through the alias."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from tests.infra.harness import Deployment, T, reset_pulumi, run_program

pytestmark = pytest.mark.infra

ALIAS = "aws:lambda/alias:Alias"
PROVISIONED = "aws:lambda/provisionedConcurrencyConfig:ProvisionedConcurrencyConfig"


@pytest.fixture(scope="module")
def provisioned() -> Iterator[Deployment]:
    reset_pulumi()
    yield run_program(flywheel_stack, "dev", {"flywheel:predictProvisionedConcurrency": 2})
    reset_pulumi()


@pytest.fixture(scope="module")
def on_demand() -> Iterator[Deployment]:
    reset_pulumi()
    yield run_program(flywheel_stack, "dev")
    reset_pulumi()


def predict_permissions(deployment: Deployment) -> list[dict[str, object]]:
    return [
        p.inputs
        for p in deployment.all(T.PERMISSION)
        if p.inputs.get("principal") == "apigateway.amazonaws.com" and "predict" in str(p.inputs["function"])
    ]


def test_the_setting_keeps_instances_warm_on_an_alias_of_a_published_version(provisioned: Deployment) -> None:
    """Given flywheel:predictProvisionedConcurrency: 2
    When the program runs
    Then predict publishes versions, a 'live' alias follows the published one, and two instances are
    provisioned on that alias (never on $LATEST); no other function publishes or is provisioned."""
    predict = provisioned.one(T.FUNCTION, "predict")
    assert predict.inputs["publish"] is True
    [alias] = provisioned.all(ALIAS)
    assert alias.inputs["name"] == "live"
    assert alias.inputs["functionName"] == predict.outputs["name"]
    assert alias.inputs["functionVersion"] == predict.outputs["version"] != "$LATEST"
    [config] = provisioned.all(PROVISIONED)
    assert config.inputs["provisionedConcurrentExecutions"] == 2
    assert (config.inputs["functionName"], config.inputs["qualifier"]) == (predict.outputs["name"], "live")
    others = [f for f in provisioned.all(T.FUNCTION) if f.name != "predict"]
    assert not any(f.inputs.get("publish") for f in others)


def test_the_api_invokes_the_alias_and_is_permitted_on_it(provisioned: Deployment) -> None:
    """Then the predict routes' integration targets the alias's ARN, and each route's permission names
    the alias as its qualifier (a permission on the function alone does not let API Gateway invoke an
    alias)."""
    [alias] = provisioned.all(ALIAS)
    uris = {i.inputs["integrationUri"] for i in provisioned.all(T.INTEGRATION)}
    assert alias.outputs["arn"] in uris
    assert alias.outputs["arn"].endswith(":live")
    permissions = predict_permissions(provisioned)
    assert permissions
    assert {p.get("qualifier") for p in permissions} == {"live"}


def test_without_the_setting_nothing_is_published_or_provisioned(on_demand: Deployment) -> None:
    """Given no predictProvisionedConcurrency, then the API invokes $LATEST, as before: no alias, no
    provisioned instances, no published versions."""
    assert on_demand.all(ALIAS) == [] and on_demand.all(PROVISIONED) == []
    assert not any(f.inputs.get("publish") for f in on_demand.all(T.FUNCTION))
    assert {p.get("qualifier") for p in predict_permissions(on_demand)} == {None}


def test_more_instances_than_predict_may_run_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"exceeds reservedConcurrency\.predict"):
        StackConfig.from_values(
            "prod",
            {"flywheel:reservedConcurrency": {"predict": 10}, "flywheel:predictProvisionedConcurrency": 20},
        )
