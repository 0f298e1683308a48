"""The training pipeline as an Amazon States Language document, built from Python dicts.

``Validate → Train → Evaluate → Gate → Register → Verify → Promote → PostDeployCheck → Finish``. When the spec
declares a container task for Validate or Train, that step is entered through ``Plan<Step>`` (the compute
function places it) and ``<Step>Engine`` (a Choice on ``$.compute.<step>.engine``): its Lambda task as ever,
or ``<Step>OnFargate`` (``ecs:runTask.sync``, the same step code in the same image) and ``Collect<Step>``
(the state the task wrote, read back: an ECS result carries no container output). An experiment
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

from infra.spec import FunctionArns, TaskTarget
from shared.env_names import EnvVar
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
# Steps that may run as a container task (when the spec declares one for their function): each is entered
# through Plan<State> (the compute function places it) and <State>Engine (the Choice on its placement).
PLACED_STEPS = {"Validate": "validate", "Train": "train"}
FARGATE = "fargate"

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
    placed = {state: arns.task(function) for state, function in PLACED_STEPS.items()}
    placed_targets = {state: target for state, target in placed.items() if target is not None}
    for state, function, following in STEPS:
        target = placed_targets.get(state)
        if target is not None:
            states.update(_placed_step(state, function, following, target, arns["compute"]))
        task: dict[str, Any] = {
            "Type": "Task",
            "Resource": arns[function],
            "Retry": [RETRY_TRANSIENT],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": f"{state}Failed"}],
        }
        task.update({"Next": following} if following else {"End": True})
        states[state] = task
        states[f"{state}Failed"] = _failed(function)
    _enter_through_plans(states, set(placed_targets))
    return {
        "Comment": "Flywheel: validate, train, evaluate, gate, register, verify, promote, check",
        "StartAt": "HasNewFile",
        "States": states,
    }


def _placed_step(
    state: str, function: str, following: str | None, target: TaskTarget, compute_arn: str
) -> dict[str, Any]:
    """Plan<State> → <State>Engine → <State> (its Lambda task, as ever) or <State>OnFargate (the same
    step's code as an ECS task of the same image) → Collect<State> (the state the task wrote) → next."""
    path = f"$.compute.{function}"
    plan: dict[str, Any] = {
        "Type": "Task",
        "Comment": f"places {function}: its Lambda function or a Fargate task (the contract's compute block)",
        "Resource": compute_arn,
        "Parameters": {
            "action": "plan",
            "step": function,
            "memory_mb": target.function_memory_mb,
            "timeout_s": target.function_timeout_s,
            "state.$": "$",
        },
        "Retry": [RETRY_TRANSIENT],
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": f"{state}Failed"}],
        "Next": f"{state}Engine",
    }
    engine = _choice(
        f"where the plan placed {function}",
        [{"Variable": f"{path}.engine", "StringEquals": FARGATE, "Next": f"{state}OnFargate"}],
        default=state,
    )
    on_fargate: dict[str, Any] = {
        "Type": "Task",
        "Comment": f"{function} as an ECS Fargate task; a non-zero exit fails the state (States.TaskFailed)",
        "Resource": "arn:aws:states:::ecs:runTask.sync",
        "Parameters": {
            "LaunchType": "FARGATE",
            "Cluster": target.cluster,
            "TaskDefinition": target.task_definition,
            "NetworkConfiguration": {
                "AwsvpcConfiguration": {
                    "Subnets": list(target.subnets),
                    "SecurityGroups": list(target.security_groups),
                    "AssignPublicIp": "ENABLED" if target.assign_public_ip else "DISABLED",
                }
            },
            "Overrides": {
                "Cpu.$": f"{path}.cpu",
                "Memory.$": f"{path}.memory",
                "ContainerOverrides": [
                    {
                        "Name": target.container,
                        "Command": list(target.command),
                        "Environment": [
                            {"Name": EnvVar.TASK_INPUT.value, "Value.$": f"{path}.input_uri"},
                            {"Name": EnvVar.TASK_OUTPUT.value, "Value.$": f"{path}.output_uri"},
                        ],
                    }
                ],
            },
        },
        # The stopped task's description is large; the run keeps which task it was and why it stopped.
        "ResultSelector": {"task_arn.$": "$.TaskArn", "stopped_reason.$": "$.StoppedReason"},
        "ResultPath": f"{path}.task",
        # No retry: a failed task is the step's own failure (its error is on the step record), and a
        # step's errors that deserve a retry are retried inside it.
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": f"{state}Failed"}],
        "Next": f"Collect{state}",
    }
    collect: dict[str, Any] = {
        "Type": "Task",
        "Comment": f"reads back the state the {function} task wrote (an ECS result carries no output)",
        "Resource": compute_arn,
        "Parameters": {"action": "collect", "step": function, "state.$": "$"},
        "Retry": [RETRY_TRANSIENT],
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": f"{state}Failed"}],
    }
    collect.update({"Next": following} if following else {"End": True})
    return {
        f"Plan{state}": plan,
        f"{state}Engine": engine,
        f"{state}OnFargate": on_fargate,
        f"Collect{state}": collect,
    }


def _enter_through_plans(states: dict[str, Any], placed: set[str]) -> None:
    """Every transition into a placed step goes through its plan first (but the Engine's own default)."""

    def redirect(target: str) -> str:
        return f"Plan{target}" if target in placed else target

    for name, body in states.items():
        if name.endswith("Engine") and name.removesuffix("Engine") in placed:
            continue
        if "Next" in body:
            body["Next"] = redirect(body["Next"])
        if body.get("Type") == "Choice":
            body["Default"] = redirect(body["Default"])
            for choice in body["Choices"]:
                choice["Next"] = redirect(choice["Next"])


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
