"""IAM documents derived from the spec, identical for both clouds.

A function's policy is exactly its spec permissions (actions on resolved ARNs), plus writing its own logs
and X-Ray segments. X-Ray's two write actions accept no resource but ``*`` (AWS documents no resource-level
permissions for them): that is the one ``*`` in any policy, and it is never on a spec permission.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from infra.names import StackNames
from infra.spec import FunctionSpec, Permission, StateMachineRef

XRAY_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
# A traced state machine also reads X-Ray's sampling rules and targets before it records
# (https://docs.aws.amazon.com/step-functions/latest/dg/xray-iam.html).
STATES_XRAY_ACTIONS = (*XRAY_ACTIONS, "xray:GetSamplingRules", "xray:GetSamplingTargets")
LOG_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")
# The statement on a Distributed Map's child executions (execution:<machine>/<label>:<id>): named, so the
# preflight can accept the one finding its linter's older copy of AWS's reference raises on it.
MAP_RUN_CHILDREN_SID = "MapRunChildExecutions"


def assume_role_policy(service: str) -> dict[str, Any]:
    """Trust policy letting one AWS service (``lambda.amazonaws.com``, ...) assume the role."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def log_group_arn(names: StackNames, function_name: str) -> str:
    return f"arn:{names.partition}:logs:{names.region}:{names.account}:log-group:/aws/lambda/{function_name}"


def function_policy(function: FunctionSpec, names: StackNames) -> dict[str, Any]:
    """The function's whole policy: its spec permissions, its own log group, X-Ray."""
    statements = [
        {"Sid": _sid(i), "Effect": "Allow", "Action": list(p.actions), "Resource": names.arn(p.resource)}
        for i, p in enumerate(function.permissions)
    ]
    log_group = log_group_arn(names, names.functions[function.name])
    statements.append(
        {"Sid": "OwnLogs", "Effect": "Allow", "Action": list(LOG_ACTIONS), "Resource": f"{log_group}:*"}
    )
    statements.append({"Sid": "Tracing", "Effect": "Allow", "Action": list(XRAY_ACTIONS), "Resource": "*"})
    return {"Version": "2012-10-17", "Statement": statements}


def state_machine_policy(
    invoked_functions: Iterable[str], names: StackNames, permissions: Iterable[Permission] = ()
) -> dict[str, Any]:
    """The state machine may invoke exactly the functions its definition names (any version of them), do
    what its spec permissions name (a Distributed Map's listing and child executions), and record its
    traces."""
    arns = sorted(names.function_arn(f) for f in invoked_functions)
    statements: list[dict[str, Any]] = []
    if arns:
        statements.append(
            {
                "Sid": "InvokePipelineFunctions",
                "Effect": "Allow",
                "Action": ["lambda:InvokeFunction"],
                "Resource": arns + [f"{arn}:*" for arn in arns],
            }
        )
    statements += [
        {
            "Sid": MAP_RUN_CHILDREN_SID if _map_runs(p) else _sid(i),
            "Effect": "Allow",
            "Action": list(p.actions),
            "Resource": names.arn(p.resource),
        }
        for i, p in enumerate(permissions)
    ]
    statements.append(
        {"Sid": "Tracing", "Effect": "Allow", "Action": list(STATES_XRAY_ACTIONS), "Resource": "*"}
    )
    return {"Version": "2012-10-17", "Statement": statements}


def delivery_stream_policy(bucket_arn: str, prefix: str, error_prefix: str) -> dict[str, Any]:
    """Firehose may write under the capture prefixes of one bucket, and nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteCaptures",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                "Resource": [f"{bucket_arn}/{prefix}*", f"{bucket_arn}/{error_prefix}*"],
            },
            {
                "Sid": "LocateBucket",
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                "Resource": bucket_arn,
            },
        ],
    }


def tls_only_bucket_policy(bucket_arn: str) -> dict[str, Any]:
    """Deny every request to the bucket that does not arrive over TLS."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def _map_runs(permission: Permission) -> bool:
    return isinstance(permission.resource, StateMachineRef) and permission.resource.map_runs


def _sid(index: int) -> str:
    return f"Spec{index}"
