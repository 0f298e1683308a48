"""Placing Validate and Train: on their Lambda function, or as an ECS Fargate task of the same image.

Three parts, one per moment of a placed step:

- :func:`plan_step` (the ``compute`` function, just before the step): reads the contract's ``compute``
  block and the dataset metadata the run has, decides the engine with :func:`shared.data.compute.place`,
  and for a task writes the state the task starts from beside the run (``tasks/<model>/<run>/<step>/``),
  since a container override cannot carry a whole state and Step Functions caps payloads anyway.
- :func:`run_step_task` (the task's container, ``python -m functions.task STEP``): reads that state, runs
  the step's own function (the same code the Lambda function calls) and writes the state it returns.
- :func:`collect_step` (the ``compute`` function again, after the task stopped): reads that state back,
  because an ``ecs:runTask.sync`` result describes the task, not what its container produced.

Light on purpose: the step modules (pandas, scikit-learn) are imported only inside the task.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.data.catalog import load_contract
from shared.data.compute import Engine, Estimate, estimate, place, rows_in_file
from shared.data.contract import DataContract
from shared.errors import ContractError, FlywheelError, NotFoundError
from shared.featurestore.contracts import load_training_contract
from shared.layout import ArtifactPrefix, TaskFile
from shared.observability import logger
from shared.pipeline.state import RunState, StepPlacement
from shared.services import Services
from shared.storage import ObjectRef

INPUT, OUTPUT = TaskFile.INPUT, TaskFile.OUTPUT


class PlanRequest(BaseModel):
    """What the state machine asks before a placed step: the step, its function's size, the state."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Literal["plan"] = "plan"
    step: Literal["validate", "train"]
    memory_mb: int = Field(ge=128)
    timeout_s: int = Field(ge=1)
    state: RunState


class CollectRequest(BaseModel):
    """What the state machine asks after a step's task stopped: the state the task wrote."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Literal["collect"] = "collect"
    step: Literal["validate", "train"]
    state: RunState


class ComputeRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    request: Annotated[PlanRequest | CollectRequest, Field(discriminator="action")]


def task_key(state: RunState, step: str, name: str) -> str:
    """``tasks/<model>/<run id>/<step>/<name>``: a task's handover files, beside its run."""
    return f"{ArtifactPrefix.TASKS}{state.model}/{state.run_id}/{step}/{name}"


def plan_step(request: PlanRequest, svc: Services) -> RunState:
    """Decide where ``request.step`` runs and record it in the state (and, for a task, its input)."""
    state, step = request.state, request.step
    try:
        contract, sized = _sized(request, svc)
    except (ContractError, NotFoundError) as exc:
        # Nothing to weigh (no contract, the file gone): the step's function refuses the run as it always
        # has, quarantining a file with the reason, so the plan does not fail in its place.
        logger.info("step placed on its function", extra={"step": step, "error": type(exc).__name__})
        placed = StepPlacement(
            engine=Engine.LAMBDA.value,
            reason=f"nothing to weigh ({type(exc).__name__}): the {step} function reports it",
        )
        return state.model_copy(update={"compute": {**(state.compute or {}), step: placed}})
    placement = place(step, contract.compute, request.memory_mb, request.timeout_s, sized)
    placed = StepPlacement(
        engine=placement.engine.value,
        reason=placement.reason,
        cpu=str(placement.cpu) if placement.cpu else None,
        memory=str(placement.memory) if placement.memory else None,
    )
    if placement.engine is Engine.FARGATE:
        bucket = svc.settings.artifacts_bucket
        placed = placed.model_copy(
            update={
                "input_uri": ObjectRef(bucket, task_key(state, step, INPUT)).uri,
                "output_uri": ObjectRef(bucket, task_key(state, step, OUTPUT)).uri,
            }
        )
    planned = state.model_copy(update={"compute": {**(state.compute or {}), step: placed}})
    if placed.input_uri:
        svc.objects.put(ObjectRef.parse(placed.input_uri), _state_json(planned), "application/json")
    logger.info("step placed", extra={"step": step, "engine": placed.engine, "reason": placed.reason})
    return planned


def _sized(request: PlanRequest, svc: Services) -> tuple[DataContract, Estimate]:
    """The contract the step runs under and the estimate of its work, from the run's metadata."""
    state, step = request.state, request.step
    if step == "validate":
        contract = load_contract(svc.objects, svc.settings, state.model)
        source = state.require("source")
        size = svc.objects.head(source.ref).size
        columns = len(contract.columns)
        return contract, estimate(step, rows_in_file(size, columns, source.key), columns)
    contract = load_training_contract(svc.objects, svc.settings, state.model).contract
    from shared.ml.training_window import training_window  # noqa: PLC0415 (pandas)

    datasets = training_window(svc.metadata.list_datasets(state.model), contract)
    return contract, estimate(step, sum(d.rows for d in datasets), len(contract.columns))


def collect_step(request: CollectRequest, svc: Services) -> RunState:
    """The state the step's task wrote, with the task's ARN and stop reason the state machine added."""
    placed = _placement(request.state, request.step)
    if not placed.output_uri:
        raise FlywheelError(f"run {request.state.run_id}: {request.step} was not placed on a task")
    body = svc.objects.get(ObjectRef.parse(placed.output_uri)).body
    produced = RunState.model_validate_json(body)
    compute = {**(produced.compute or {}), request.step: placed}
    return produced.model_copy(update={"compute": compute})


def run_step_task(step: str, input_uri: str, output_uri: str, svc: Services) -> RunState:
    """The container's work: the step's own function on the state at ``input_uri``, its result written
    to ``output_uri``. An error propagates, so the process exits non-zero and the task fails."""
    state = RunState.model_validate_json(svc.objects.get(ObjectRef.parse(input_uri)).body)
    produced = _step_function(step)(state, svc)
    svc.objects.put(ObjectRef.parse(output_uri), _state_json(produced), "application/json")
    return produced


def _step_function(step: str) -> Callable[[RunState, Services], RunState]:
    # Imported here: the step modules load the data and ML libraries, which only the task needs.
    if step == "validate":
        from shared.pipeline.intake import validate_step  # noqa: PLC0415

        return validate_step
    if step == "train":
        from shared.pipeline.steps import train_step  # noqa: PLC0415

        return train_step
    raise FlywheelError(f"step {step!r} cannot run as a task; tasks run validate or train")


def _placement(state: RunState, step: str) -> StepPlacement:
    placed = (state.compute or {}).get(step)
    if placed is None:
        raise FlywheelError(f"run {state.run_id}: {step} has no placement; the pipeline is out of order")
    return placed


def _state_json(state: RunState) -> bytes:
    return json.dumps(state.dump(), sort_keys=True).encode()


def compute_request(event: dict[str, Any]) -> PlanRequest | CollectRequest:
    return ComputeRequest.model_validate({"request": event}).request
