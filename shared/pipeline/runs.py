"""A run's record: each step's start and end on its run, and the run closed (Finish, RecordFailure).

The steps record themselves through :func:`recorded_step`; the last states of the pipeline close the run as
succeeded or rejected with its outcome (:func:`finish_step`), or as failed with the step, the error type
and the message the state machine caught (:func:`record_failure`). Light: only the metadata store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from shared.metadata import ErrorInfo, RunStatus
from shared.observability import logger, metrics
from shared.pipeline.state import RunState
from shared.services import Services


@contextmanager
def recorded_step(svc: Services, state: RunState, name: str) -> Iterator[None]:
    """Record the step's start and end (or failure) on the run; the run is running from its first step.
    A step the pipeline placed (``state.compute``) records where it runs and why."""
    placed = (state.compute or {}).get(name)
    svc.metadata.start_step(
        state.run_id,
        name,
        engine=placed.engine if placed else None,
        engine_reason=placed.reason if placed else None,
    )
    run = svc.metadata.get_run(state.run_id)
    if run.status is RunStatus.PENDING:
        svc.metadata.update_run(state.run_id, status=RunStatus.RUNNING)
    try:
        yield
    except Exception as exc:
        svc.metadata.fail_step(
            state.run_id, name, ErrorInfo(step=name, type=type(exc).__name__, message=str(exc))
        )
        raise
    svc.metadata.finish_step(state.run_id, name)


def finish_step(state: RunState, svc: Services) -> RunState:
    """Close the run: succeeded (promoted) or rejected — by the gate, by verification, by a person or the
    approval timeout, or held in staging by the policy — with the outcome and every reason."""
    with recorded_step(svc, state, "finish"):
        evaluation = state.evaluation
        status = RunStatus.SUCCEEDED if state.promoted else RunStatus.REJECTED
        outcome = {
            "version": state.version,
            "promoted": bool(state.promoted),
            "gate_passed": evaluation.passed if evaluation else None,
            "gate_reasons": evaluation.reasons if evaluation else [],
            "metrics": evaluation.metrics if evaluation else {},
            "champion_version": evaluation.champion_version if evaluation else None,
            "verification": state.verification,
            "policy": (state.policy or {}).get("policy"),
            "approval": state.approval,
            "promotion_refusals": state.promotion_refusals or [],
            "previous_version": state.previous_version,
        }
        svc.metadata.update_run(state.run_id, status=status, ended_at=datetime.now(UTC), outcome=outcome)
        metrics.add_metric(
            name="RunSucceeded" if state.promoted else "RunRejected", unit=MetricUnit.Count, value=1
        )
        logger.info("run finished", extra={"status": status.value, **outcome})
        return state


def record_failure(state: RunState, svc: Services) -> RunState:
    """Mark the run failed with the step, the error type and its message (from the Catch's ``$.error``)."""
    error = ErrorInfo(step=state.failed_step, **_caught(state.error or {}))
    stopped = _stopped_task(state.error or {})
    if stopped is not None and state.failed_step:
        error = _task_error(svc, state, state.failed_step, stopped) or error
    if state.failed_step:
        svc.metadata.fail_step(state.run_id, state.failed_step, error)
    svc.metadata.update_run(state.run_id, status=RunStatus.FAILED, ended_at=datetime.now(UTC), error=error)
    metrics.add_metric(name="RunFailed", unit=MetricUnit.Count, value=1)
    # Not "message": the standard LogRecord owns that name, and logging refuses to overwrite it.
    logger.error(
        "run failed", extra={"step": state.failed_step, "error": error.type, "error_message": error.message}
    )
    return state


def _stopped_task(caught: dict[str, Any]) -> dict[str, Any] | None:
    """The stopped task an ``ecs:runTask.sync`` failure carries as its cause (the task's description)."""
    try:
        body = json.loads(str(caught.get("Cause") or ""))
    except ValueError:
        return None
    return body if isinstance(body, dict) and "Containers" in body and "TaskArn" in body else None


def _task_error(svc: Services, state: RunState, step: str, task: dict[str, Any]) -> ErrorInfo | None:
    """A failed task's error: what the step recorded from inside its container, with the exit code ECS
    reported; or, when the container died before recording (out of memory, a bad image), ECS's reason."""
    codes = [c.get("ExitCode") for c in task.get("Containers", []) if c.get("ExitCode") is not None]
    how = f"fargate task stopped: {task.get('StoppedReason') or 'no reason given'}" + (
        f", exit code {codes[0]}" if codes else ""
    )
    attempts = [s for s in svc.metadata.list_steps(state.run_id) if s.name == step]
    recorded = attempts[-1].error if attempts and attempts[-1].error else None
    if recorded is not None:
        return ErrorInfo(step=step, type=recorded.type, message=f"{recorded.message} ({how})")
    return ErrorInfo(step=step, type="TaskFailed", message=how)


def _caught(caught: dict[str, Any]) -> dict[str, str]:
    """Step Functions' ``{"Error", "Cause"}``; for a Lambda error the cause is Lambda's JSON error body."""
    error_type = str(caught.get("Error") or "Unknown")
    cause = str(caught.get("Cause") or "")
    try:
        body = json.loads(cause)
    except ValueError:
        body = None
    if isinstance(body, dict) and "errorMessage" in body:
        return {"type": str(body.get("errorType") or error_type), "message": str(body["errorMessage"])}
    return {"type": error_type, "message": cause or error_type}
