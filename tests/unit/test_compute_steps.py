"""The placed steps on in-memory services: the plan, the task's own run of the step, the state read back,
and a failed task's error on the run (shared.pipeline.compute, shared.pipeline.runs)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.errors import NotFoundError
from shared.metadata import RunStatus, StepStatus
from shared.pipeline.compute import (
    CollectRequest,
    PlanRequest,
    collect_step,
    compute_request,
    plan_step,
    run_step_task,
)
from shared.pipeline.intake import validate_step
from shared.pipeline.runs import record_failure
from shared.pipeline.state import RunState
from shared.services import Services
from shared.storage import ObjectRef
from tests.fixtures.services import churn_csv, in_memory_services, put_churn_contract
from tests.unit.test_steps import fast_contract, new_file, through_json

pytestmark = pytest.mark.unit
FARGATE = {"engine": "fargate", "cpu": 2048, "memory": 8192}


def services(**contract: Any) -> Services:
    svc = in_memory_services()
    put_churn_contract(svc, fast_contract(**contract))
    return svc


def plan(svc: Services, state: RunState, step: str, memory_mb: int = 2048) -> RunState:
    request = compute_request(
        {"action": "plan", "step": step, "memory_mb": memory_mb, "timeout_s": 300, "state": state.dump()}
    )
    assert isinstance(request, PlanRequest)
    return through_json(plan_step(request, svc))


def test_without_a_block_the_plan_keeps_the_step_on_its_function_and_writes_nothing() -> None:
    svc = services()
    state = new_file(svc, "incoming/churn/a.csv", churn_csv(300, 1))
    planned = plan(svc, state, "validate")
    placed = planned.require("compute")["validate"]
    assert (placed.engine, placed.reason, placed.input_uri) == (
        "lambda",
        "no compute block: the validate function",
        None,
    )
    assert not svc.objects.list(svc.settings.artifacts_bucket, "tasks/")


def test_a_task_runs_the_step_on_the_state_handed_over_and_collect_reads_its_output_back() -> None:
    """Given compute: fargate, when the plan places Validate, the task runs it on the state at its input
    and writes what it returns; Collect returns that state with the placement (and the task's ARN)."""
    svc = services(compute=FARGATE)
    state = new_file(svc, "incoming/churn/a.csv", churn_csv(300, 1))
    planned = plan(svc, state, "validate")
    placed = planned.require("compute")["validate"]
    assert (placed.engine, placed.cpu, placed.memory) == ("fargate", "2048", "8192")
    assert placed.input_uri and placed.input_uri.endswith(f"tasks/churn/{state.run_id}/validate/input.json")
    assert placed.output_uri and placed.output_uri.endswith("/validate/output.json")

    produced = run_step_task("validate", placed.input_uri, placed.output_uri, svc)
    assert produced.dataset_id is not None
    (step,) = svc.metadata.list_steps(state.run_id)
    assert (step.name, step.status, step.engine) == ("validate", StepStatus.SUCCEEDED, "fargate")
    assert step.engine_reason == "the contract asks for fargate (2048 cpu, 8192 MiB)"

    with_task = planned.dump()
    with_task["compute"]["validate"]["task"] = {"task_arn": "arn:aws:ecs:r:1:task/c/t", "stopped_reason": "x"}
    request = compute_request({"action": "collect", "step": "validate", "state": with_task})
    assert isinstance(request, CollectRequest)
    collected = collect_step(request, svc)
    assert collected.dataset_id == produced.dataset_id
    assert collected.require("compute")["validate"].task == with_task["compute"]["validate"]["task"]


def test_auto_weighs_the_training_window_against_the_function() -> None:
    svc = services(compute="auto")
    state = new_file(svc, "incoming/churn/a.csv", churn_csv(300, 1))
    validated = run_step_task_here(svc, state)
    small = plan(svc, validated, "train", memory_mb=256).require("compute")["train"]
    assert small.engine == "fargate" and small.reason.startswith("auto: 300 rows x ")
    roomy = plan(svc, validated, "train", memory_mb=3008).require("compute")["train"]
    assert roomy.engine == "lambda" and "within the train function's 3008 MiB" in roomy.reason


def run_step_task_here(svc: Services, state: RunState) -> RunState:
    return through_json(validate_step(state, svc))


def test_a_plan_with_no_contract_leaves_the_step_to_its_function_which_refuses_it() -> None:
    svc = in_memory_services()
    state = new_file(svc, "incoming/churn/a.csv", churn_csv(300, 1))
    placed = plan(svc, state, "validate").require("compute")["validate"]
    assert (placed.engine, placed.reason) == (
        "lambda",
        "nothing to weigh (ContractError): the validate function reports it",
    )


def test_a_failed_task_records_the_steps_own_error_with_the_exit_code_ecs_reported() -> None:
    """Given Train ran as a task and failed inside its container (recorded on its step), when
    RecordFailure receives Step Functions' States.TaskFailed whose cause is the stopped task, then the
    run's error is the step's own, with ECS's reason and exit code."""
    svc = services(compute=FARGATE)
    state = new_file(svc, "incoming/churn/a.csv", churn_csv(300, 1))
    validated = run_step_task_here(svc, state)
    (dataset,) = svc.metadata.list_datasets("churn")
    gone = ObjectRef.parse(dataset.uri)
    svc.objects._versions.pop((gone.bucket, gone.key))  # type: ignore[attr-defined]  # deleted behind its back
    planned = plan(svc, validated, "train")
    placed = planned.require("compute")["train"]
    with pytest.raises(NotFoundError):
        run_step_task("train", placed.input_uri or "", placed.output_uri or "", svc)
    stopped = {
        "TaskArn": "arn:aws:ecs:r:1:task/c/t",
        "StoppedReason": "Essential container in task exited",
        "Containers": [{"ExitCode": 1}],
    }
    failed = planned.model_copy(
        update={"failed_step": "train", "error": {"Error": "States.TaskFailed", "Cause": json.dumps(stopped)}}
    )
    record_failure(failed, svc)
    run = svc.metadata.get_run(state.run_id)
    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error.step == "train"
    assert run.error.type != "States.TaskFailed"
    assert run.error.message.endswith(
        "(fargate task stopped: Essential container in task exited, exit code 1)"
    )


def test_a_task_that_died_before_recording_is_reported_by_ecss_reason() -> None:
    svc = services(compute=FARGATE)
    state = new_file(svc, "incoming/churn/a.csv", churn_csv(300, 1))
    stopped = {
        "TaskArn": "t",
        "StoppedReason": "OutOfMemoryError: Container killed due to memory usage",
        "Containers": [{"ExitCode": 137}],
    }
    failed = state.model_copy(
        update={"failed_step": "train", "error": {"Error": "States.TaskFailed", "Cause": json.dumps(stopped)}}
    )
    record_failure(failed, svc)
    error = svc.metadata.get_run(state.run_id).error
    assert error is not None and error.type == "TaskFailed"
    assert (
        error.message
        == "fargate task stopped: OutOfMemoryError: Container killed due to memory usage, exit code 137"
    )
