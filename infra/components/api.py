"""The HTTP API: API Gateway (HTTP, payload v2) routes to functions, authorised by IAM or JWT as the
stack config says, with access logs."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from functools import partial

import pulumi
import pulumi_aws as aws
from pulumi import Output, ResourceOptions

from infra.components.functions import EntryPoint
from infra.config import StackConfig
from infra.names import physical_name
from infra.spec import RouteSpec

ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "integrationError": "$context.integrationErrorMessage",
    "authorizerError": "$context.authorizer.error",
}
_PATH_PARAMETER = re.compile(r"\{[^}]+\}")


def authorization_type(route: RouteSpec, config: StackConfig) -> str:
    """``NONE`` for an open route, otherwise the stack's choice: ``AWS_IAM`` or ``JWT``."""
    if not route.authorized:
        return "NONE"
    return "AWS_IAM" if config.api_auth == "iam" else "JWT"


def invoke_source(execution_arn: str, route: RouteSpec) -> str:
    """The execute-api ARN of one route in any stage (``{param}`` and ``ANY`` become wildcards)."""
    method = "*" if route.method == "ANY" else route.method
    return f"{execution_arn}/*/{method}{_PATH_PARAMETER.sub('*', route.path)}"


class HttpApi(pulumi.ComponentResource):
    """The API, its ``$default`` stage, an integration per function and a route per spec route."""

    def __init__(
        self,
        name: str,
        routes: Sequence[RouteSpec],
        *,
        functions: Mapping[str, EntryPoint],
        project: str,
        stack: str,
        config: StackConfig,
        opts: ResourceOptions | None = None,
    ) -> None:
        super().__init__("flywheel:api:HttpApi", name, None, opts)
        child = ResourceOptions(parent=self)
        physical = physical_name(project, stack, "api")
        api = aws.apigatewayv2.Api("api", name=physical, protocol_type="HTTP", opts=child)
        access_logs = aws.cloudwatch.LogGroup(
            "api-access",
            name=f"/aws/apigateway/{physical}",
            retention_in_days=config.log_retention_days,
            opts=child,
        )
        aws.apigatewayv2.Stage(
            "default",
            api_id=api.id,
            name="$default",
            auto_deploy=True,
            # A flood is refused at the edge (429) before it costs an invocation.
            default_route_settings={
                "throttling_rate_limit": config.api_throttle.rate,
                "throttling_burst_limit": config.api_throttle.burst,
            },
            access_log_settings={"destination_arn": access_logs.arn, "format": json.dumps(ACCESS_LOG_FORMAT)},
            opts=child,
        )
        authorizer = None
        if any(authorization_type(r, config) == "JWT" for r in routes):
            authorizer = aws.apigatewayv2.Authorizer(
                "jwt",
                api_id=api.id,
                name=f"{physical}-jwt",
                authorizer_type="JWT",
                identity_sources=["$request.header.Authorization"],
                jwt_configuration={"issuer": config.jwt_issuer, "audiences": list(config.jwt_audience)},
                opts=child,
            )
        integrations = {
            function: aws.apigatewayv2.Integration(
                function,
                api_id=api.id,
                integration_type="AWS_PROXY",
                integration_method="POST",
                integration_uri=functions[function].arn,
                payload_format_version="2.0",
                opts=child,
            )
            for function in sorted({r.function for r in routes})
        }
        for route in routes:
            auth = authorization_type(route, config)
            aws.apigatewayv2.Route(
                route.logical_name,
                api_id=api.id,
                route_key=route.route_key,
                target=integrations[route.function].id.apply(lambda i: f"integrations/{i}"),
                authorization_type=auth,
                authorizer_id=authorizer.id if authorizer is not None and auth == "JWT" else None,
                opts=child,
            )
            aws.lambda_.Permission(
                route.logical_name,
                action="lambda:InvokeFunction",
                function=functions[route.function].name,
                # A function invoked through its alias is permitted through it (the alias is the resource).
                qualifier=functions[route.function].qualifier,
                principal="apigateway.amazonaws.com",
                source_arn=api.execution_arn.apply(partial(invoke_source, route=route)),
                opts=child,
            )
        self.endpoint: Output[str] = api.api_endpoint
        self.register_outputs({"endpoint": self.endpoint})
