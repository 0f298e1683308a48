"""The training pipeline as an Amazon States Language document, built from Python dicts.

``Validate → Train → Evaluate → Gate → Register → Verify → Promote → PostDeployCheck → Finish``. An experiment
run first loops ``Experiment → Trials → Experiment``: Experiment asks a batch of trials, the ``Trials`` Map
runs them at once (each iteration the trial function; a failed iteration becomes a failed trial, never a
failed Map), until the budget is spent and Train refits the winner. A failed
gate registers the candidate as rejected, and a failed verification rejects it, both without promoting. Under
the approval policy, Promote first moves the version to staging and ``AwaitApproval`` waits on a task token
for a person (a timeout rejects). Every task retries transient errors with backoff and never retries
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
    ("Experiment", "experiment", "MoreTrials"),
    ("Train", "train", "Evaluate"),
    ("Evaluate", "evaluate", "Gate"),
    ("Register", "register", "Verify"),
    ("RegisterRejected", "register", "Finish"),
    ("Verify", "verify", "Verified"),
    ("StageCandidate", "promote", "AwaitApproval"),
    ("Declined", "approval", "Finish"),
    ("Promote", "promote", "Promoted"),
    ("PostDeployCheck", "post-deploy-check", "Finish"),
    ("Finish", "finish", None),
)
# A person's "no" (flywheel reject sends it) and an expired wait both decline the promotion.
APPROVAL_DECLINED = "ApprovalRejected"


def pipeline_definition(arns: FunctionArns) -> dict[str, Any]:
    """The pipeline for these function ARNs (the spec passes declared functions only)."""
    states: dict[str, Any] = {
        "HasNewFile": _choice(
            "a run for a new file validates it; other runs train on the datasets there are",
            [
                {"Variable": "$.source", "IsPresent": True, "Next": "Validate"},
                {"Variable": "$.reason", "StringEquals": "experiment", "Next": "Experiment"},
            ],
            default="Train",
        ),
        "MoreTrials": _choice(
            "the experiment asked another batch, or spent its budget and chose the winner Train refits",
            [{"Variable": "$.experiment.done", "BooleanEquals": True, "Next": "Train"}],
            default="Trials",
        ),
        "Trials": _trials(arns["trial"]),
        "TrialsFailed": _failed("trials"),
        "Gate": _choice(
            "Evaluate's gate decision; Register records a rejected candidate with the reasons",
            [{"Variable": "$.evaluation.passed", "BooleanEquals": True, "Next": "Register"}],
            default="RegisterRejected",
        ),
        "Verified": _choice(
            "a candidate that failed on the serving path is rejected (Verify recorded why)",
            [{"Variable": "$.verification.passed", "BooleanEquals": True, "Next": "Policy"}],
            default="Finish",
        ),
        "Policy": _choice(
            "the environment's promotion policy",
            [{"Variable": "$.policy.policy", "StringEquals": "approval", "Next": "StageCandidate"}],
            default="Promote",
        ),
        "AwaitApproval": {
            "Type": "Task",
            "Comment": "waits for flywheel approve/reject (SendTaskSuccess/Failure); the timeout rejects",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {
                "FunctionName": arns["approval"],
                "Payload": {"state.$": "$", "task_token.$": "$$.Task.Token"},
            },
            "TimeoutSecondsPath": "$.policy.approval_timeout_seconds",
            "ResultPath": "$.approval",
            "Retry": [RETRY_TRANSIENT],
            "Catch": [
                {
                    "ErrorEquals": [APPROVAL_DECLINED, "States.Timeout"],
                    "ResultPath": "$.declined",
                    "Next": "Declined",
                },
                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "AwaitApprovalFailed"},
            ],
            "Next": "Promote",
        },
        "AwaitApprovalFailed": _failed("approval"),
        "Promoted": _choice(
            "a promotion the policy refused leaves production as it was: nothing to check",
            [{"Variable": "$.promoted", "BooleanEquals": True, "Next": "PostDeployCheck"}],
            default="Finish",
        ),
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
        states[f"{state}Failed"] = _failed(function)
    return {
        "Comment": "Flywheel: validate, train, evaluate, gate, register, verify, promote, check",
        "StartAt": "HasNewFile",
        "States": states,
    }


# A trial's function may run to Lambda's limit; its own budget (the contract's) stops the fit before that.
TRIAL_TASK_TIMEOUT_S = 900


def _trials(trial_arn: str) -> dict[str, Any]:
    """The fan-out: one iteration per trial of the batch, ``parallel`` at a time. The Catch inside turns a
    function's failure (a crash, Lambda's timeout) into that trial's result, so one bad trial never fails
    the Map; the Experiment step records it as failed with the error."""
    return {
        "Type": "Map",
        "Comment": "runs the batch Experiment asked, at most experiment.parallel trials at once",
        "ItemsPath": "$.experiment.batch",
        "MaxConcurrencyPath": "$.experiment.parallel",
        "ItemSelector": {
            "run_id.$": "$.run_id",
            "model.$": "$.model",
            "experiment_id.$": "$.experiment.experiment_id",
            "trial.$": "$$.Map.Item.Value",
        },
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "INLINE"},
            "StartAt": "Trial",
            "States": {
                "Trial": {
                    "Type": "Task",
                    "Resource": trial_arn,
                    "TimeoutSeconds": TRIAL_TASK_TIMEOUT_S,
                    "Retry": [RETRY_TRANSIENT],
                    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "TrialLost"}],
                    "End": True,
                },
                "TrialLost": {
                    "Type": "Pass",
                    "Parameters": {"number.$": "$.trial.number", "status": "failed", "error.$": "$.error"},
                    "End": True,
                },
            },
        },
        "ResultPath": "$.experiment.results",
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "TrialsFailed"}],
        "Next": "Experiment",
    }


def _choice(comment: str, choices: list[dict[str, Any]], default: str) -> dict[str, Any]:
    return {"Type": "Choice", "Comment": comment, "Choices": choices, "Default": default}


def _failed(step: str) -> dict[str, Any]:
    # Catch cannot add a constant, so a Pass state names the failed step for RecordFailure.
    return {"Type": "Pass", "Result": step, "ResultPath": "$.failed_step", "Next": "RecordFailure"}


assert not set(NEVER_RETRIED) & set(RETRY_TRANSIENT["ErrorEquals"]), "validation errors must never be retried"
