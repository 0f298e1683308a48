"""IAM documents derived from the spec, identical for both clouds.

A function's policy is exactly its spec permissions (actions on resolved ARNs), plus writing its own logs
and X-Ray segments. X-Ray's two write actions accept no resource but ``*`` (AWS documents no resource-level
permissions for them): that is the one ``*`` in any policy, and it is never on a spec permission.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from infra.names import StackNames
from infra.spec import FunctionSpec, Permission, StackSpec, StateMachineRef, TaskSpec

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


ECS_TASKS_SERVICE = "ecs-tasks.amazonaws.com"
# The rule Step Functions manages in the account to hear when a .sync task stops
# (https://docs.aws.amazon.com/step-functions/latest/dg/ecs-iam.html).
ECS_SYNC_RULE = "StepFunctionsGetEventsForECSTaskRule"
ECS_SYNC_RULE_ACTIONS = ("events:PutTargets", "events:PutRule", "events:DescribeRule")
# What an execution role does for ECS before the container starts: pull the image, send its logs.
ECR_PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage")


def task_policy(task: TaskSpec, function: FunctionSpec, names: StackNames) -> dict[str, Any]:
    """A task's role: exactly its function's spec permissions and X-Ray (:func:`function_policy`), and
    the handover of its state; its logs go through the execution role, not this one."""
    document = function_policy(function, names)
    statements = [s for s in document["Statement"] if s["Sid"] != "OwnLogs"]
    statements[-1:-1] = [
        {
            "Sid": f"Handover{i}",
            "Effect": "Allow",
            "Action": list(p.actions),
            "Resource": names.arn(p.resource),
        }
        for i, p in enumerate(task.handover_permissions())
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def task_execution_policy(repository_arn: str, log_group_arn: str) -> dict[str, Any]:
    """A task's execution role: pull the functions' image from its repository and write the task's logs.
    ``ecr:GetAuthorizationToken`` takes no resource but ``*`` (AWS documents none for it)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PullImage",
                "Effect": "Allow",
                "Action": list(ECR_PULL_ACTIONS),
                "Resource": repository_arn,
            },
            {
                "Sid": "RegistryToken",
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken"],
                "Resource": "*",
            },
            {
                "Sid": "TaskLogs",
                "Effect": "Allow",
                "Action": list(LOG_ACTIONS),
                "Resource": f"{log_group_arn}:*",
            },
        ],
    }


def state_machine_task_statements(spec: StackSpec, names: StackNames) -> list[dict[str, Any]]:
    """What ``ecs:runTask.sync`` needs of the state machine's role: run the step tasks' definitions in
    the stack's cluster, watch and stop their tasks, pass their two roles to ECS, and keep the managed
    EventBridge rule through which Step Functions hears a task stop."""
    if not spec.tasks:
        return []
    functions = [t.function for t in spec.tasks]
    roles = sorted(
        names.role_arn(role)
        for f in functions
        for role in (names.task_role_name(f), names.task_execution_role_name(f))
    )
    return [
        {
            "Sid": "RunStepTasks",
            "Effect": "Allow",
            "Action": ["ecs:RunTask"],
            "Resource": sorted(names.task_definition_arn(f) for f in functions),
            "Condition": {"ArnEquals": {"ecs:cluster": names.cluster_arn()}},
        },
        {
            "Sid": "WatchStepTasks",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
            "Resource": names.task_arn_pattern(),
        },
        {
            "Sid": "PassTaskRoles",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": roles,
            "Condition": {"StringEquals": {"iam:PassedToService": ECS_TASKS_SERVICE}},
        },
        {
            "Sid": "TaskStopEvents",
            "Effect": "Allow",
            "Action": list(ECS_SYNC_RULE_ACTIONS),
            "Resource": names.event_rule_arn(ECS_SYNC_RULE),
        },
    ]


def state_machine_policy(
    invoked_functions: Iterable[str],
    names: StackNames,
    permissions: Iterable[Permission] = (),
    spec: StackSpec | None = None,
) -> dict[str, Any]:
    """The state machine may invoke exactly the functions its definition names (any version of them), do
    what its spec permissions name (a Distributed Map's listing and child executions), run the spec's step
    tasks when it is the pipeline that runs them (:func:`state_machine_task_statements`), and record its
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
    if spec is not None:
        statements.extend(state_machine_task_statements(spec, names))
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
