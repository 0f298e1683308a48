"""The training pipeline as an Amazon States Language document, built from Python dicts.

``Validate → Train → Evaluate → Gate → Register → Promote → Finish``; a failed gate registers the candidate as
rejected and finishes without promoting. Every task retries transient errors with backoff and never retries
a :class:`DataValidationError` or :class:`ContractError` (the same input fails the same way). Any failure is
caught into a per-step Pass state that names the step, then ``RecordFailure`` marks the run failed and the
execution ends in ``Fail``. Payloads between states are references (ids, URIs), never data.
"""

from __future__ import annotations

from typing import Any

from infra.spec import FunctionArns
from shared.errors import NEVER_RETRIED, RETRYABLE

# Lambda's own transient failures, as Step Functions names them.
LAMBDA_TRANSIENT = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
RETRY_TRANSIENT: dict[str, Any] = {
    "ErrorEquals": [*RETRYABLE, *LAMBDA_TRANSIENT],
    "IntervalSeconds": 1,
    "MaxAttempts": 3,
    "BackoffRate": 2.0,
}

# (state, function, next state; None ends the execution). The function's name is the step's name.
STEPS: tuple[tuple[str, str, str | None], ...] = (
    ("Validate", "validate", "Train"),
    ("Train", "train", "Evaluate"),
    ("Evaluate", "evaluate", "Gate"),
    ("Register", "register", "Promote"),
    ("RegisterRejected", "register", "Finish"),
    ("Promote", "promote", "Finish"),
    ("Finish", "finish", None),
)


def pipeline_definition(arns: FunctionArns) -> dict[str, Any]:
    """The pipeline for these function ARNs (the spec passes declared functions only)."""
    states: dict[str, Any] = {
        "HasNewFile": {
            "Type": "Choice",
            "Comment": "a run for a new file validates it; other runs train on the datasets there are",
            "Choices": [{"Variable": "$.source", "IsPresent": True, "Next": "Validate"}],
            "Default": "Train",
        },
        "Gate": {
            "Type": "Choice",
            "Comment": "Evaluate's gate decision; Register records a rejected candidate with the reasons",
            "Choices": [{"Variable": "$.evaluation.passed", "BooleanEquals": True, "Next": "Register"}],
            "Default": "RegisterRejected",
        },
        "RecordFailure": {
            "Type": "Task",
            "Resource": arns["record-failure"],
            "Comment": "marks the run failed with the step, error type and message",
            "Retry": [RETRY_TRANSIENT],
            "Next": "Failed",
        },
        "Failed": {
            "Type": "Fail",
            "Error": "PipelineFailed",
            "Cause": "a step failed; the run records which and why",
        },
    }
    for state, function, following in STEPS:
        task: dict[str, Any] = {
            "Type": "Task",
            "Resource": arns[function],
            "Retry": [RETRY_TRANSIENT],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": f"{state}Failed"}],
        }
        task.update({"Next": following} if following else {"End": True})
        states[state] = task
        # Catch cannot add a constant, so a Pass state names the failed step for RecordFailure.
        states[f"{state}Failed"] = {
            "Type": "Pass",
            "Result": function,
            "ResultPath": "$.failed_step",
            "Next": "RecordFailure",
        }
    return {
        "Comment": "Flywheel: validate, train, evaluate, gate, register, promote",
        "StartAt": "HasNewFile",
        "States": states,
    }


assert not set(NEVER_RETRIED) & set(RETRY_TRANSIENT["ErrorEquals"]), "validation errors must never be retried"
