"""What AWS refuses, held against what the program declares.

Two kinds of rule, each tied to its source:

- **The API's own model.** Each Pulumi input that reaches an AWS API call is mapped to the member of that
  call (``ApiMember``); botocore's service model gives the member's type, length or value range, enum and
  pattern, and the value is checked against all of them. AWS validates patterns against the whole value
  ("Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)"), so they are matched whole here too.
- **The documentation**, where the model is silent or looser than the service (``Documented``: a check
  and the page that states it), and rules that join resources (a traced state machine's role must allow
  X-Ray's sampling calls).

``check(resources)`` returns every finding; an empty list is what `pulumi up` needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import botocore.session
import regex  # botocore's patterns use \p{...} classes, which `re` does not know

from infra.preflight.mocks import Registered


@dataclass(frozen=True)
class Finding:
    """One value AWS would refuse: which resource, which input, why, and where the rule is written."""

    resource: str
    input: str
    problem: str
    source: str

    def __str__(self) -> str:
        return f"{self.resource}: {self.input}: {self.problem} [{self.source}]"


@dataclass(frozen=True)
class ApiMember:
    """A Pulumi input path (``a.b``, ``list[]``, ``map{k}``/``map{v}``) and the API member receiving it."""

    input: str
    service: str
    operation: str
    member: str


@dataclass(frozen=True)
class Documented:
    """A rule the model does not carry: ``check`` returns the problem with a value, or None."""

    input: str
    check: Callable[[Any], str | None]
    source: str


Rule = ApiMember | Documented


# -- reading values and shapes by path --------------------------------------------------------------------


def values_at(document: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every value at ``path`` in ``document``, with the concrete path it stands at."""

    def walk(node: Any, segments: list[str], where: str) -> Iterator[tuple[str, Any]]:
        if not segments:
            yield where, node
            return
        head, rest = segments[0], segments[1:]
        key, suffix = head, ""
        for marker in ("[]", "{k}", "{v}"):
            if head.endswith(marker):
                key, suffix = head[: -len(marker)], marker
        child = node.get(key) if isinstance(node, dict) and key else node
        if child is None:
            return
        here = f"{where}.{key}" if where and key else (key or where)
        if suffix == "[]" and isinstance(child, list):
            for index, item in enumerate(child):
                yield from walk(item, rest, f"{here}[{index}]")
        elif suffix in ("{k}", "{v}") and isinstance(child, dict):
            for name, value in child.items():
                yield from walk(name if suffix == "{k}" else value, rest, f"{here}.{name}")
        elif not suffix:
            yield from walk(child, rest, here)

    yield from walk(document, path.split("."), "")


@cache
def _service_model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


def api_shape(service: str, operation: str, member: str) -> Any:
    """The botocore shape of ``member`` (same path syntax) in ``operation``'s input."""
    shape = _service_model(service).operation_model(operation).input_shape
    for segment in member.split("."):
        name = segment.removesuffix("[]").removesuffix("{k}").removesuffix("{v}")
        if name:
            shape = shape.members[name]
        if segment.endswith("[]"):
            shape = shape.member
        elif segment.endswith("{k}"):
            shape = shape.key
        elif segment.endswith("{v}"):
            shape = shape.value
    return shape


def shape_problems(shape: Any, value: Any) -> list[str]:
    """Where ``value`` breaks the shape's type, range, length, enum or pattern."""
    checks: dict[str, Callable[[Any, Any], list[str]]] = {
        "string": _string_problems,
        "integer": _number_problems,
        "long": _number_problems,
        "list": _size_problems,
        "map": _size_problems,
        "boolean": lambda _shape, v: [] if isinstance(v, bool) else [f"{v!r} is not a boolean"],
    }
    check = checks.get(shape.type_name)
    return check(shape, value) if check else []


def _limits(meta: dict[str, Any], size: int, unit: str) -> list[str]:
    problems = []
    if "min" in meta and size < meta["min"]:
        problems.append(f"{size} {unit}, fewer than the minimum {meta['min']}")
    if "max" in meta and size > meta["max"]:
        problems.append(f"{size} {unit}, more than the maximum {meta['max']}")
    return problems


def _string_problems(shape: Any, value: Any) -> list[str]:
    if not isinstance(value, str):
        return [f"{value!r} is not a string"]
    problems = _limits(shape.metadata, len(value), "characters")
    enum = getattr(shape, "enum", None) or []
    if enum and value not in enum:
        problems.append(f"{value!r} is not one of {enum}")
    pattern = shape.metadata.get("pattern")
    if pattern is not None and not regex.fullmatch(pattern, value):
        problems.append(f"{value!r} does not match the pattern {pattern}")
    return problems


def _number_problems(shape: Any, value: Any) -> list[str]:
    # Pulumi hands numbers over as floats (14.0): a whole float is a whole number.
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return [f"{value!r} is not a whole number"]
    meta, problems = shape.metadata, []
    if "min" in meta and value < meta["min"]:
        problems.append(f"{value:g} is less than the minimum {meta['min']}")
    if "max" in meta and value > meta["max"]:
        problems.append(f"{value:g} is more than the maximum {meta['max']}")
    return problems


def _size_problems(shape: Any, value: Any) -> list[str]:
    if not isinstance(value, list | dict):
        return [f"{value!r} is not a {shape.type_name}"]
    return _limits(shape.metadata, len(value), "items")


# -- documented rules --------------------------------------------------------------------------------------


def _matches(pattern: str, what: str) -> Callable[[Any], str | None]:
    compiled = re.compile(pattern)

    def check(value: Any) -> str | None:
        if isinstance(value, str) and compiled.fullmatch(value):
            return None
        return f"{value!r} is not {what}"

    return check


def _at_most(limit: int, what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value <= limit else f"{value:g} is more than {what} ({limit})"

    return check


def _one_of(allowed: Sequence[Any], what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in allowed else f"{value!r} is not {what}: {list(allowed)}"

    return check


LAMBDA_QUOTAS = "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"
LAMBDA_ENV = "https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html"
# An ECR image: the registry, the repository, then a tag or a digest, not both.
ECR_IMAGE_URI = (
    r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"
    r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})"
)
# Variables Lambda sets itself and refuses from the user.
RESERVED_VARIABLES = (
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
)
ENVIRONMENT_LIMIT = 4096


def _environment(variables: Any) -> str | None:
    reserved = sorted(set(variables) & set(RESERVED_VARIABLES))
    if reserved:
        return f"sets variables Lambda reserves: {reserved}"
    size = sum(len(k.encode()) + len(str(v).encode()) for k, v in variables.items())
    if size > ENVIRONMENT_LIMIT:
        return f"variables take {size} bytes, more than Lambda's {ENVIRONMENT_LIMIT}"
    return None


# Values CloudWatch Logs accepts for a retention (PutRetentionPolicy); the model types it as any integer.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


def _state_machine_name(value: Any) -> str | None:
    # "must not contain whitespace, brackets < > { } [ ], wildcard characters ? *, special characters
    # " # % \ ^ | ~ ` $ & , ; : /, or control characters"
    if not isinstance(value, str) or re.search(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]", value):
        return f"{value!r} has a character Step Functions refuses in a name"
    return None


def _log_destination(value: Any) -> str | None:
    if not (isinstance(value, str) and value.startswith("arn:") and value.endswith(":*")):
        return f"{value!r} is not a log group ARN ending in ':*'"
    return None


# Lowercase letters, digits, dots and hyphens, 3-63 long, a letter or digit at each end, none of the
# reserved prefixes and suffixes.
S3_BUCKET_NAME = (
    r"(?!xn--|sthree-|amzn-s3-demo-)(?!.*(-s3alias|--ol-s3|--x-s3|--table-s3)$)"
    r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
)
DOCKER_TAG = r"[^\s/]+(:\d+)?(/[^\s/:@]+)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"


def _api(service: str, operation: str, *pairs: tuple[str, str]) -> tuple[ApiMember, ...]:
    return tuple(ApiMember(input=i, service=service, operation=operation, member=m) for i, m in pairs)


RULES: dict[str, tuple[Rule, ...]] = {
    "aws:lambda/function:Function": (
        *_api(
            "lambda",
            "CreateFunction",
            ("name", "FunctionName"),
            ("role", "Role"),
            ("description", "Description"),
            ("packageType", "PackageType"),
            ("memorySize", "MemorySize"),
            ("timeout", "Timeout"),
            ("architectures", "Architectures"),
            ("architectures[]", "Architectures[]"),
            ("imageConfig.commands", "ImageConfig.Command"),
            ("tracingConfig.mode", "TracingConfig.Mode"),
            ("environment.variables{k}", "Environment.Variables{k}"),
        ),
        *_api(
            "lambda",
            "PutFunctionConcurrency",
            ("reservedConcurrentExecutions", "ReservedConcurrentExecutions"),
        ),
        Documented(
            "name",
            _matches(r"[A-Za-z0-9_-]{1,64}", "a function name of at most 64 letters, digits, - or _"),
            "https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html#lambda-CreateFunction-request-FunctionName",
        ),
        Documented(
            "imageUri",
            _matches(ECR_IMAGE_URI, "an ECR image URI with a tag or a digest (not both)"),
            "https://docs.aws.amazon.com/lambda/latest/api/API_FunctionCode.html",
        ),
        Documented("memorySize", _at_most(10240, "Lambda's memory limit in MB"), LAMBDA_QUOTAS),
        Documented("timeout", _at_most(900, "Lambda's timeout limit in seconds"), LAMBDA_QUOTAS),
        Documented("ephemeralStorage.size", _at_most(10240, "Lambda's /tmp limit in MB"), LAMBDA_QUOTAS),
        Documented("environment.variables", _environment, LAMBDA_ENV),
    ),
    "aws:lambda/permission:Permission": _api(
        "lambda",
        "AddPermission",
        ("function", "FunctionName"),
        ("statementId", "StatementId"),
        ("action", "Action"),
        ("principal", "Principal"),
        ("sourceArn", "SourceArn"),
        ("sourceAccount", "SourceAccount"),
    ),
    "aws:iam/role:Role": _api(
        "iam",
        "CreateRole",
        ("name", "RoleName"),
        ("assumeRolePolicy", "AssumeRolePolicyDocument"),
        ("path", "Path"),
    ),
    "aws:iam/rolePolicy:RolePolicy": _api(
        "iam", "PutRolePolicy", ("role", "RoleName"), ("name", "PolicyName"), ("policy", "PolicyDocument")
    ),
    "aws:s3/bucket:Bucket": (
        Documented(
            "bucket",
            _matches(S3_BUCKET_NAME, "a valid bucket name (3-63 lowercase letters, digits, . or -)"),
            "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html",
        ),
    ),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": _api(
        "s3", "PutBucketLifecycleConfiguration", ("rules[].status", "LifecycleConfiguration.Rules[].Status")
    ),
    "aws:dynamodb/table:Table": (
        *_api(
            "dynamodb",
            "CreateTable",
            ("name", "TableName"),
            ("billingMode", "BillingMode"),
            ("attributes[].name", "AttributeDefinitions[].AttributeName"),
            ("attributes[].type", "AttributeDefinitions[].AttributeType"),
            ("hashKey", "KeySchema[].AttributeName"),
            ("rangeKey", "KeySchema[].AttributeName"),
            ("globalSecondaryIndexes[].name", "GlobalSecondaryIndexes[].IndexName"),
            ("globalSecondaryIndexes[].projectionType", "GlobalSecondaryIndexes[].Projection.ProjectionType"),
            ("globalSecondaryIndexes[].keySchemas[].keyType", "GlobalSecondaryIndexes[].KeySchema[].KeyType"),
        ),
        *_api("dynamodb", "UpdateTimeToLive", ("ttl.attributeName", "TimeToLiveSpecification.AttributeName")),
        Documented(
            "name",
            _matches(r"[A-Za-z0-9_.-]{3,255}", "a table name of 3-255 letters, digits, _ . or -"),
            "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html",
        ),
    ),
    "aws:ecr/repository:Repository": _api(
        "ecr",
        "CreateRepository",
        ("name", "repositoryName"),
        ("imageTagMutability", "imageTagMutability"),
        ("encryptionConfigurations[].encryptionType", "encryptionConfiguration.encryptionType"),
    ),
    "docker-build:index:Image": (
        Documented(
            "tags[]",
            _matches(DOCKER_TAG, "a repository with a Docker tag"),
            "https://docs.docker.com/reference/cli/docker/image/tag/",
        ),
    ),
    "aws:cloudwatch/logGroup:LogGroup": (
        *_api("logs", "CreateLogGroup", ("name", "logGroupName")),
        Documented(
            "retentionInDays",
            _one_of(LOG_RETENTION_DAYS, "a retention CloudWatch Logs accepts"),
            "https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html",
        ),
    ),
    "aws:cloudwatch/eventRule:EventRule": _api(
        "events",
        "PutRule",
        ("name", "Name"),
        ("scheduleExpression", "ScheduleExpression"),
        ("state", "State"),
        ("description", "Description"),
    ),
    "aws:cloudwatch/eventTarget:EventTarget": _api(
        "events",
        "PutTargets",
        ("rule", "Rule"),
        ("targetId", "Targets[].Id"),
        ("arn", "Targets[].Arn"),
        ("input", "Targets[].Input"),
    ),
    "aws:sfn/stateMachine:StateMachine": (
        *_api(
            "stepfunctions",
            "CreateStateMachine",
            ("name", "name"),
            ("definition", "definition"),
            ("roleArn", "roleArn"),
            ("type", "type"),
            ("loggingConfiguration.level", "loggingConfiguration.level"),
        ),
        Documented(
            "name",
            _state_machine_name,
            "https://docs.aws.amazon.com/step-functions/latest/apireference/API_CreateStateMachine.html",
        ),
        Documented(
            "loggingConfiguration.logDestination",
            _log_destination,
            "https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html",
        ),
    ),
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": _api(
        "firehose",
        "CreateDeliveryStream",
        ("name", "DeliveryStreamName"),
        ("extendedS3Configuration.roleArn", "ExtendedS3DestinationConfiguration.RoleARN"),
        ("extendedS3Configuration.bucketArn", "ExtendedS3DestinationConfiguration.BucketARN"),
        ("extendedS3Configuration.prefix", "ExtendedS3DestinationConfiguration.Prefix"),
        ("extendedS3Configuration.errorOutputPrefix", "ExtendedS3DestinationConfiguration.ErrorOutputPrefix"),
        (
            "extendedS3Configuration.bufferingSize",
            "ExtendedS3DestinationConfiguration.BufferingHints.SizeInMBs",
        ),
        (
            "extendedS3Configuration.bufferingInterval",
            "ExtendedS3DestinationConfiguration.BufferingHints.IntervalInSeconds",
        ),
        ("extendedS3Configuration.compressionFormat", "ExtendedS3DestinationConfiguration.CompressionFormat"),
        ("extendedS3Configuration.fileExtension", "ExtendedS3DestinationConfiguration.FileExtension"),
    ),
    "aws:apigatewayv2/api:Api": _api("apigatewayv2", "CreateApi", ("protocolType", "ProtocolType")),
    "aws:apigatewayv2/stage:Stage": (
        *_api(
            "apigatewayv2",
            "CreateStage",
            ("defaultRouteSettings.throttlingBurstLimit", "DefaultRouteSettings.ThrottlingBurstLimit"),
        ),
        Documented(
            "defaultRouteSettings.throttlingRateLimit",
            lambda v: None if isinstance(v, int | float) and v > 0 else f"{v!r} is not a positive rate",
            "https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html",
        ),
    ),
    "aws:apigatewayv2/route:Route": (
        *_api("apigatewayv2", "CreateRoute", ("authorizationType", "AuthorizationType")),
        Documented(
            "routeKey",
            _matches(
                r"\$default|(ANY|GET|HEAD|OPTIONS|PATCH|POST|PUT|DELETE) /\S*", "'$default' or 'METHOD /path'"
            ),
            "https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html",
        ),
    ),
    "aws:apigatewayv2/integration:Integration": _api(
        "apigatewayv2",
        "CreateIntegration",
        ("integrationType", "IntegrationType"),
        ("timeoutMilliseconds", "TimeoutInMillis"),
    ),
    "aws:apigatewayv2/authorizer:Authorizer": _api(
        "apigatewayv2", "CreateAuthorizer", ("authorizerType", "AuthorizerType")
    ),
}


def resource_problems(resource: Registered) -> list[Finding]:
    """Every input of one resource that its API call (or its documentation) refuses."""
    found: list[Finding] = []
    where = f"{resource.type.rsplit(':', 1)[-1]} {resource.name!r}"
    for rule in RULES.get(resource.type, ()):
        for path, value in values_at(resource.inputs, rule.input):
            if isinstance(rule, ApiMember):
                shape = api_shape(rule.service, rule.operation, rule.member)
                source = f"botocore {rule.service} {rule.operation} {rule.member}"
                problems = shape_problems(shape, value)
            else:
                source = rule.source
                problem = rule.check(value)
                problems = [problem] if problem else []
            found.extend(Finding(where, path, p, source) for p in problems)
    return found


# -- rules that join resources -----------------------------------------------------------------------------

# What each service's page asks a role to allow. Written here from those pages, not imported from infra/:
# a check that reads the program's own list could never find that list wrong.
XRAY_LAMBDA = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
XRAY_STATES = (*XRAY_LAMBDA, "xray:GetSamplingRules", "xray:GetSamplingTargets")
STATES_LOG_DELIVERY = (
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
)
INLINE_POLICY_LIMIT = 10_240


def _allowed_actions(document: dict[str, Any]) -> set[str]:
    actions: set[str] = set()
    for statement in document.get("Statement", []):
        if statement.get("Effect") == "Allow":
            listed = statement.get("Action", [])
            actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def _role_documents(resources: Sequence[Registered]) -> dict[str, list[dict[str, Any]]]:
    """Inline policy documents by role ARN."""
    arn_by_name = {r.inputs["name"]: r.outputs["arn"] for r in resources if r.type == "aws:iam/role:Role"}
    documents: dict[str, list[dict[str, Any]]] = {arn: [] for arn in arn_by_name.values()}
    for policy in (r for r in resources if r.type == "aws:iam/rolePolicy:RolePolicy"):
        arn = arn_by_name.get(policy.inputs["role"])
        if arn is not None:
            documents[arn].append(json.loads(policy.inputs["policy"]))
    return documents


def _needs(
    resource: Registered,
    role_arn: str,
    documents: dict[str, list[dict[str, Any]]],
    actions: Sequence[str],
    why: str,
    source: str,
) -> list[Finding]:
    granted = set().union(*(_allowed_actions(d) for d in documents.get(role_arn, [])))
    missing = [a for a in actions if a not in granted]
    if not missing:
        return []
    where = f"{resource.type.rsplit(':', 1)[-1]} {resource.name!r}"
    return [Finding(where, "role", f"{why}, but its role does not allow {missing}", source)]


def joined_problems(resources: Sequence[Registered]) -> list[Finding]:
    """Rules between resources: what a traced or logging resource's role must allow; policy sizes."""
    documents = _role_documents(resources)
    found: list[Finding] = []
    for resource in resources:
        inputs = resource.inputs
        if (
            resource.type == "aws:lambda/function:Function"
            and (inputs.get("tracingConfig") or {}).get("mode") == "Active"
        ):
            found += _needs(
                resource,
                inputs["role"],
                documents,
                XRAY_LAMBDA,
                "active tracing is on",
                "https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html",
            )
        if resource.type == "aws:sfn/stateMachine:StateMachine":
            if (inputs.get("tracingConfiguration") or {}).get("enabled"):
                found += _needs(
                    resource,
                    inputs["roleArn"],
                    documents,
                    XRAY_STATES,
                    "X-Ray tracing is on",
                    "https://docs.aws.amazon.com/step-functions/latest/dg/xray-iam.html",
                )
            if (inputs.get("loggingConfiguration") or {}).get("level", "OFF") != "OFF":
                found += _needs(
                    resource,
                    inputs["roleArn"],
                    documents,
                    STATES_LOG_DELIVERY,
                    "it logs to CloudWatch",
                    "https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html",
                )
    for arn, policies in documents.items():
        size = sum(len(re.sub(r"\s", "", json.dumps(p))) for p in policies)
        if size > INLINE_POLICY_LIMIT:
            found.append(
                Finding(
                    f"Role {arn}",
                    "inline policies",
                    f"{size} characters without white space, more than IAM's {INLINE_POLICY_LIMIT} per role",
                    "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html",
                )
            )
    return found


def check(resources: Sequence[Registered]) -> list[Finding]:
    """Every finding for one deployment: each resource's inputs, then the rules that join resources."""
    found = [finding for resource in resources for finding in resource_problems(resource)]
    return found + joined_problems(resources)
