"""The state machine: the spec's definition over the deployed functions, invoking exactly those."""

from __future__ import annotations

import json

import pytest

from tests.infra.harness import Deployment, T, document

pytestmark = pytest.mark.infra

# The platform definition's Task states invoke these, and no other function.
INVOKED = {"echo", "flaky", "broken", "sleepy", "patient"}


def test_the_state_machine_runs_the_spec_definition_over_the_deployed_functions(
    platform_dev: Deployment,
) -> None:
    """Given the platform spec's definition builder
    When the program runs for dev
    Then the state machine's definition is what the builder makes of the deployed functions' ARNs,
    and it is traced and logs its errors to a log group of its own."""
    machine = platform_dev.one(T.STATE_MACHINE, "pipeline").inputs
    assert machine["name"] == "plat-dev-pipeline"
    assert machine["type"] == "STANDARD"
    deployed_arns = {f.name: f.outputs["arn"] for f in platform_dev.all(T.FUNCTION)}
    expected, _ = platform_dev.spec.state_machine_definition(deployed_arns)
    definition = json.loads(machine["definition"])
    assert definition == expected
    tasks = {s["Resource"] for s in definition["States"].values() if s["Type"] == "Task"}
    assert tasks == {deployed_arns[name] for name in INVOKED}

    assert machine["tracingConfiguration"] == {"enabled": True}
    log_group = platform_dev.one(T.LOG_GROUP, "pipeline", T.PIPELINE)
    assert log_group.inputs["name"].endswith("/plat-dev-pipeline")
    assert machine["loggingConfiguration"]["level"] == "ERROR"
    assert machine["loggingConfiguration"]["logDestination"] == f"{log_group.outputs['arn']}:*"


def test_the_state_machine_role_invokes_exactly_the_functions_its_definition_names(
    platform_dev: Deployment,
) -> None:
    """Given a definition invoking five of the eight functions
    When the program runs
    Then the state machine's role may invoke those five (any version) and no other; the only
    statements on "*" are X-Ray's and log delivery's, which name their actions one by one."""
    role = platform_dev.one(T.ROLE, "pipeline", T.PIPELINE)
    assert document(role, "assumeRolePolicy")["Statement"][0]["Principal"] == {
        "Service": "states.amazonaws.com"
    }
    assert platform_dev.one(T.STATE_MACHINE, "pipeline").inputs["roleArn"] == role.outputs["arn"]

    statements = document(platform_dev.one(T.ROLE_POLICY, "pipeline", T.PIPELINE))["Statement"]
    arns = {f.name: f.outputs["arn"] for f in platform_dev.all(T.FUNCTION)}
    [invoke] = [s for s in statements if "lambda:InvokeFunction" in s["Action"]]
    assert invoke["Action"] == ["lambda:InvokeFunction"]
    assert set(invoke["Resource"]) == {arns[f] for f in INVOKED} | {f"{arns[f]}:*" for f in INVOKED}

    on_everything = {s["Sid"]: s for s in statements if s["Resource"] == "*"}
    assert set(on_everything) == {"Tracing", "LogDelivery"}
    assert all(a.startswith("logs:") and "*" not in a for a in on_everything["LogDelivery"]["Action"])
    assert all(a.startswith("xray:") and "*" not in a for a in on_everything["Tracing"]["Action"])


def test_the_state_machine_waits_for_its_role_policy_and_the_functions_it_invokes(
    platform_dev: Deployment,
) -> None:
    machine = platform_dev.one(T.STATE_MACHINE, "pipeline")
    assert platform_dev.one(T.ROLE_POLICY, "pipeline", T.PIPELINE).urn in machine.dependencies
    for name in INVOKED:
        assert platform_dev.one(T.FUNCTION, name).urn in machine.dependencies, name


def test_functions_are_told_and_granted_the_deployed_state_machine(platform_dev: Deployment) -> None:
    """Given the http function may start executions and describe them
    When the program runs
    Then the ARN in every function's environment, the one it is granted, and the stack output are the
    deployed state machine's."""
    arn = platform_dev.one(T.STATE_MACHINE, "pipeline").outputs["arn"]
    assert platform_dev.outputs["state_machine_arn"] == arn
    assert platform_dev.outputs["environment"]["FLYWHEEL_STATE_MACHINE_ARN"] == arn
    statements = document(platform_dev.one(T.ROLE_POLICY, "http", T.FUNCTIONS))["Statement"]
    granted = {s["Action"][0]: s["Resource"] for s in statements}
    assert granted["states:StartExecution"] == arn
    assert granted["states:DescribeExecution"] == arn.replace(":stateMachine:", ":execution:") + ":*"
