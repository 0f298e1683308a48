"""What invokes functions besides buckets: schedules (EventBridge) and routes (API Gateway HTTP API)."""

from __future__ import annotations

import json

import pytest

from tests.infra.harness import Deployment, T

pytestmark = pytest.mark.infra


@pytest.mark.parametrize(
    ("schedule", "expression", "constant"),
    [
        ("nightly", "cron(0 3 * * ? *)", None),
        ("every-5-min", "rate(5 minutes)", {"fired": "rate"}),
    ],
)
def test_a_schedule_invokes_its_function_with_its_constant_input(
    platform_dev: Deployment, schedule: str, expression: str, constant: dict[str, str] | None
) -> None:
    """Given a schedule of the platform spec (with or without a constant input)
    When the program runs for dev
    Then an enabled rule fires on its expression, targets the function with exactly that input (or the
    scheduled event when there is none), and EventBridge may invoke the function from that rule only."""
    function = platform_dev.one(T.FUNCTION, "on-schedule")
    rule = platform_dev.one(T.RULE, schedule)
    assert rule.inputs["name"] == f"plat-dev-{schedule}"
    assert rule.inputs["scheduleExpression"] == expression
    assert rule.inputs["state"] == "ENABLED"

    target = platform_dev.one(T.TARGET, schedule).inputs
    assert target["rule"] == rule.inputs["name"]
    assert target["arn"] == function.outputs["arn"]
    if constant is None:
        assert "input" not in target
    else:
        assert json.loads(target["input"]) == constant

    permission = platform_dev.one(T.PERMISSION, schedule, T.SCHEDULES).inputs
    assert permission["principal"] == "events.amazonaws.com"
    assert permission["function"] == "plat-dev-on-schedule"
    assert permission["sourceArn"] == rule.outputs["arn"]


def test_routes_are_authorised_by_iam_except_the_open_one(platform_dev: Deployment) -> None:
    """Given apiAuth iam (Pulumi.dev.yaml) and two routes, one declared open
    When the program runs
    Then the authorised route requires IAM, the open one nothing, and there is no JWT authorizer."""
    routes = {r.inputs["routeKey"]: r.inputs for r in platform_dev.all(T.ROUTE)}
    assert set(routes) == {"GET /hello/{name}", "POST /echo"}
    assert routes["GET /hello/{name}"]["authorizationType"] == "AWS_IAM"
    assert routes["POST /echo"]["authorizationType"] == "NONE"
    assert platform_dev.all(T.AUTHORIZER) == []
    assert all("authorizerId" not in r for r in routes.values())


def test_routes_are_authorised_by_jwt_when_the_stack_says_so(platform_jwt: Deployment) -> None:
    """Given apiAuth jwt with an issuer and an audience
    When the program runs
    Then a JWT authorizer reads the Authorization header against them, the authorised route uses it,
    and the open route stays open."""
    [authorizer] = platform_jwt.all(T.AUTHORIZER)
    assert authorizer.inputs["authorizerType"] == "JWT"
    assert authorizer.inputs["identitySources"] == ["$request.header.Authorization"]
    assert authorizer.inputs["jwtConfiguration"] == {
        "issuer": "https://issuer.example.com/",
        "audiences": ["flywheel-api"],
    }
    routes = {r.inputs["routeKey"]: r.inputs for r in platform_jwt.all(T.ROUTE)}
    assert routes["GET /hello/{name}"]["authorizationType"] == "JWT"
    assert routes["GET /hello/{name}"]["authorizerId"] == authorizer.id
    assert routes["POST /echo"]["authorizationType"] == "NONE"
    assert "authorizerId" not in routes["POST /echo"]


def test_each_route_proxies_to_its_function_which_only_that_route_may_invoke(
    platform_dev: Deployment,
) -> None:
    """Given two routes served by the http function
    When the program runs
    Then both target one payload-v2 proxy integration of that function, and API Gateway may invoke the
    function for exactly those methods and paths of this API."""
    function = platform_dev.one(T.FUNCTION, "http")
    [integration] = platform_dev.all(T.INTEGRATION)
    assert integration.inputs["integrationType"] == "AWS_PROXY"
    assert integration.inputs["payloadFormatVersion"] == "2.0"
    assert integration.inputs["integrationUri"] == function.outputs["arn"]
    assert {r.inputs["target"] for r in platform_dev.all(T.ROUTE)} == {f"integrations/{integration.id}"}

    execution_arn = platform_dev.one(T.API, "api").outputs["executionArn"]
    permissions = {p.name: p.inputs for p in platform_dev.all(T.PERMISSION, T.API_COMPONENT)}
    assert {p["principal"] for p in permissions.values()} == {"apigateway.amazonaws.com"}
    assert {p["function"] for p in permissions.values()} == {"plat-dev-http"}
    assert {k: p["sourceArn"] for k, p in permissions.items()} == {
        "get-hello-name": f"{execution_arn}/*/GET/hello/*",
        "post-echo": f"{execution_arn}/*/POST/echo",
    }


def test_the_api_deploys_its_default_stage_with_access_logs(platform_dev: Deployment) -> None:
    api = platform_dev.one(T.API, "api")
    assert api.inputs["name"] == "plat-dev-api"
    assert api.inputs["protocolType"] == "HTTP"
    [stage] = platform_dev.all(T.STAGE)
    assert stage.inputs["apiId"] == platform_dev.one(T.API, "api").id
    assert stage.inputs["name"] == "$default"
    assert stage.inputs["autoDeploy"] is True
    log_group = platform_dev.one(T.LOG_GROUP, "api-access", T.API_COMPONENT)
    assert stage.inputs["accessLogSettings"]["destinationArn"] == log_group.outputs["arn"]
    assert "$context.requestId" in json.loads(stage.inputs["accessLogSettings"]["format"]).values()
    assert platform_dev.outputs["api_endpoint"] == api.outputs["apiEndpoint"]
