"""The step tasks under Pulumi's mocks: Validate and Train as Fargate tasks of the functions' own image,
their roles, their network, and the state machine's rights to run them with ecs:runTask.sync.

Expected values are written out here, not read back from the spec under test.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.flywheel import flywheel_stack
from infra.preflight.mocks import DEFAULT_SUBNETS
from tests.infra.harness import ACCOUNT, Deployment, T, document, run_program

REGION = "us-east-1"
CLUSTER = "aws:ecs/cluster:Cluster"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
TASKS_COMPONENT = "flywheel:tasks:StepTasks"
STEPS = ("validate", "train")


def definition(deployed: Deployment) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(deployed.one(T.STATE_MACHINE, "pipeline").inputs["definition"])
    return parsed


def container(deployed: Deployment, step: str) -> dict[str, Any]:
    [only] = json.loads(deployed.one(TASK_DEFINITION, f"{step}-task").inputs["containerDefinitions"])
    return dict(only)


@pytest.mark.parametrize("step", STEPS)
def test_each_step_task_runs_the_functions_image_with_the_steps_command(
    flywheel_dev: Deployment, step: str
) -> None:
    """Given the functions' image, when the program runs, then each step's task definition is Fargate,
    awsvpc, sized within Fargate's combinations, runs that very image (by digest) with the step's command
    through the image's Python, the functions' environment and logs to its own group."""
    task = flywheel_dev.one(TASK_DEFINITION, f"{step}-task").inputs
    assert task["family"] == f"flywheel-dev-{step}-task"
    assert (task["requiresCompatibilities"], task["networkMode"]) == (["FARGATE"], "awsvpc")
    assert (task["cpu"], task["memory"]) == ("4096", "16384")
    assert task["runtimePlatform"] == {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"}
    spec = container(flywheel_dev, step)
    function = flywheel_dev.one(T.FUNCTION, step).inputs
    assert spec["image"] == function["imageUri"]
    assert (spec["entryPoint"], spec["command"]) == (
        ["/usr/bin/env"],
        ["python", "-m", "functions.task", step],
    )
    environment = {pair["name"]: pair["value"] for pair in spec["environment"]}
    assert environment == {**function["environment"]["variables"], "AWS_REGION": REGION}
    log_group = flywheel_dev.one(T.LOG_GROUP, f"{step}-task", TASKS_COMPONENT).inputs["name"]
    assert log_group == f"/ecs/flywheel-dev-{step}-task"
    assert spec["logConfiguration"]["options"]["awslogs-group"] == log_group


@pytest.mark.parametrize("step", STEPS)
def test_a_task_role_allows_exactly_its_functions_permissions_and_its_handover(
    flywheel_dev: Deployment, step: str
) -> None:
    function_statements = document(flywheel_dev.one(T.ROLE_POLICY, step, T.FUNCTIONS))["Statement"]
    task_statements = document(flywheel_dev.one(T.ROLE_POLICY, f"{step}-task", TASKS_COMPONENT))["Statement"]
    spec_grants = [s for s in function_statements if s["Sid"] != "OwnLogs"]
    handover = [s for s in task_statements if s["Sid"].startswith("Handover")]
    assert [s for s in task_statements if not s["Sid"].startswith("Handover")] == spec_grants
    artifacts = flywheel_dev.one(T.BUCKET, "artifacts").outputs["arn"]
    assert [(s["Action"], s["Resource"]) for s in handover] == [
        (["s3:GetObject", "s3:GetObjectVersion"], f"{artifacts}/tasks/*/*/{step}/input.json"),
        (["s3:PutObject"], f"{artifacts}/tasks/*/*/{step}/output.json"),
    ]
    role = flywheel_dev.one(T.ROLE, f"{step}-task", TASKS_COMPONENT)
    assert role.inputs["name"] == f"flywheel-dev-{step}-task-role"
    trust = document(role, "assumeRolePolicy")["Statement"][0]["Principal"]
    assert trust == {"Service": "ecs-tasks.amazonaws.com"}
    assert flywheel_dev.one(TASK_DEFINITION, f"{step}-task").inputs["taskRoleArn"] == role.outputs["arn"]


@pytest.mark.parametrize("step", STEPS)
def test_the_execution_role_only_pulls_the_image_and_writes_the_tasks_logs(
    flywheel_dev: Deployment, step: str
) -> None:
    statements = document(flywheel_dev.one(T.ROLE_POLICY, f"{step}-task-exec", TASKS_COMPONENT))["Statement"]
    repository = flywheel_dev.one(T.REPOSITORY, "functions").outputs["arn"]
    logs = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/flywheel-dev-{step}-task:*"
    assert {s["Sid"]: (s["Action"], s["Resource"]) for s in statements} == {
        "PullImage": (
            ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
            repository,
        ),
        "RegistryToken": (["ecr:GetAuthorizationToken"], "*"),
        "TaskLogs": (["logs:CreateLogStream", "logs:PutLogEvents"], logs),
    }


def test_without_network_settings_the_tasks_run_in_the_default_vpc_with_egress_only(
    flywheel_dev: Deployment,
) -> None:
    group = flywheel_dev.one(SECURITY_GROUP, "tasks", TASKS_COMPONENT)
    assert group.inputs.get("ingress") in (None, [])
    assert [(e["protocol"], e["fromPort"], e["toPort"]) for e in group.inputs["egress"]] == [
        ("tcp", 443, 443)
    ]
    network = definition(flywheel_dev)["States"]["TrainOnFargate"]["Parameters"]["NetworkConfiguration"]
    assert network == {
        "AwsvpcConfiguration": {
            "Subnets": list(DEFAULT_SUBNETS),
            "SecurityGroups": [group.id],
            "AssignPublicIp": "ENABLED",
        }
    }


def test_network_settings_place_the_tasks_in_the_stacks_subnets() -> None:
    deployed = run_program(
        flywheel_stack,
        "dev",
        {
            "flywheel:taskSubnets": ["subnet-0123456789abcdef0"],
            "flywheel:taskSecurityGroups": ["sg-0123456789abcdef0"],
        },
    )
    assert not deployed.all(SECURITY_GROUP)
    network = definition(deployed)["States"]["ValidateOnFargate"]["Parameters"]["NetworkConfiguration"]
    assert network["AwsvpcConfiguration"] == {
        "Subnets": ["subnet-0123456789abcdef0"],
        "SecurityGroups": ["sg-0123456789abcdef0"],
        "AssignPublicIp": "DISABLED",
    }


@pytest.mark.parametrize("step", ["Validate", "Train"])
def test_the_task_state_runs_the_steps_definition_in_the_cluster_with_the_plans_size(
    flywheel_dev: Deployment, step: str
) -> None:
    state = definition(flywheel_dev)["States"][f"{step}OnFargate"]
    cluster = flywheel_dev.one(CLUSTER, "tasks", TASKS_COMPONENT)
    assert state["Resource"] == "arn:aws:states:::ecs:runTask.sync"
    parameters = state["Parameters"]
    assert (parameters["LaunchType"], parameters["Cluster"]) == ("FARGATE", cluster.outputs["arn"])
    assert parameters["TaskDefinition"] == f"flywheel-dev-{step.lower()}-task"
    path = f"$.compute.{step.lower()}"
    overrides = parameters["Overrides"]
    assert (overrides["Cpu.$"], overrides["Memory.$"]) == (f"{path}.cpu", f"{path}.memory")
    [override] = overrides["ContainerOverrides"]
    assert override["Environment"] == [
        {"Name": "FLYWHEEL_TASK_INPUT", "Value.$": f"{path}.input_uri"},
        {"Name": "FLYWHEEL_TASK_OUTPUT", "Value.$": f"{path}.output_uri"},
    ]
    assert "Retry" not in state  # a failed task is the step's failure, caught like any other
    assert state["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": f"{step}Failed"}
    ]


def test_the_state_machine_may_run_the_step_tasks_pass_their_roles_and_keep_the_sync_rule(
    flywheel_dev: Deployment,
) -> None:
    statements = {
        s["Sid"]: s
        for s in document(flywheel_dev.one(T.ROLE_POLICY, "pipeline", "flywheel:pipeline:Pipeline"))[
            "Statement"
        ]
    }
    regional = f"{REGION}:{ACCOUNT}"
    run = statements["RunStepTasks"]
    assert run["Action"] == ["ecs:RunTask"]
    assert run["Resource"] == [
        f"arn:aws:ecs:{regional}:task-definition/flywheel-dev-{s}-task:*" for s in ("train", "validate")
    ]
    assert run["Condition"] == {
        "ArnEquals": {"ecs:cluster": f"arn:aws:ecs:{regional}:cluster/flywheel-dev-tasks"}
    }
    watch = statements["WatchStepTasks"]
    assert (watch["Action"], watch["Resource"]) == (
        ["ecs:DescribeTasks", "ecs:StopTask"],
        f"arn:aws:ecs:{regional}:task/flywheel-dev-tasks/*",
    )
    passed = statements["PassTaskRoles"]
    roles = {r.outputs["arn"] for r in flywheel_dev.all(T.ROLE, TASKS_COMPONENT)}
    assert passed["Action"] == ["iam:PassRole"] and set(passed["Resource"]) == roles and len(roles) == 4
    assert passed["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    rule = statements["TaskStopEvents"]
    assert (rule["Action"], rule["Resource"]) == (
        ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
        f"arn:aws:events:{regional}:rule/StepFunctionsGetEventsForECSTaskRule",
    )
