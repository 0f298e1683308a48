"""Continuous delivery: the pipeline's promotion under the environment's policy, and its approvals.

``Promote`` moves a verified version to ``staging`` (approval policy, before the wait) or to ``production``
(when the policy allows it, :mod:`shared.pipeline.policy`); ``AwaitApproval`` keeps the state machine's
task token on the version until a person approves or rejects it, and ``Declined`` records a rejection or an
expired wait. Every move is a conditional registry write with an audit entry naming the actor and reason.
Proving a version on the serving path (Verify, PostDeployCheck) is :mod:`shared.pipeline.verification`'s;
the CLI's manual moves are :mod:`shared.pipeline.controls`'. Light on purpose: the registry and the metadata
store; the policy arrives in the run's state, so not even the contract is read.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict

from shared.errors import FlywheelError, NotFoundError
from shared.metadata import ErrorInfo, NodeType, model_version_id
from shared.observability import logger, metrics
from shared.pipeline.policy import STAGING_PASSES_KEY, refusals, staging_passes
from shared.pipeline.runs import recorded_step
from shared.pipeline.state import PIPELINE_ACTOR, RunState
from shared.registry import ModelVersion, PendingApproval, Stage, TransitionKind
from shared.services import Services
from shared.settings import EnvironmentPolicy, PolicyKind

STAGING_ALIAS = "staging"


class PromotionRefusedError(FlywheelError):
    """The policy does not allow this move; the message says why (never retried)."""


class ApprovalRequest(BaseModel):
    """What ``AwaitApproval`` hands the approval function: the run's state and the task token."""

    model_config = ConfigDict(extra="ignore")
    state: RunState
    task_token: str


# --- Promote -----------------------------------------------------------------------------------------------


def promote_step(state: RunState, svc: Services) -> RunState:
    """Under ``auto``: production. Under ``approval``: staging before the wait, production after it — if
    the policy allows (``min_staging_successes``); otherwise the version stays in staging with the reason.

    Production moves only if it is still the version the candidate was compared with: a run never replaces
    a model it did not beat.
    """
    number: int = state.require("version")
    policy = EnvironmentPolicy.model_validate(
        {k: v for k, v in (state.policy or {}).items() if k != "approval_timeout_seconds"}
    )
    awaiting = policy.policy is PolicyKind.APPROVAL and state.approval is None
    with recorded_step(svc, state, "promote"):
        version = svc.registry.get_model_version(state.model, number)
        if awaiting:
            stage_version(
                svc,
                version,
                actor=PIPELINE_ACTOR,
                reason="verified; waiting for approval"
                + (
                    f" (held for a person: {state.evaluation.held})"
                    if state.evaluation and state.evaluation.held
                    else ""
                ),
                run_id=state.run_id,
            )
            # The verification that just passed was the version's first as a staging candidate: it counts.
            svc.registry.update_runtime_metrics(
                state.model, number, {STAGING_PASSES_KEY: staging_passes(version) + 1}
            )
            return state.model_copy(update={"staged": True})
        if state.approval is not None:
            svc.metadata.finish_step(state.run_id, "approval")
        problems = refusals(version, Stage.PRODUCTION, policy)
        if problems:
            logger.info("promotion refused", extra={"version": number, "problems": problems})
            metrics.add_metric(name="PromotionRefused", unit=MetricUnit.Count, value=1)
            return state.model_copy(update={"promoted": False, "promotion_refusals": problems})
        approval = state.approval or {}
        reason = (
            f"approved by {approval.get('approved_by')}"
            + (f": {approval['comment']}" if approval.get("comment") else "")
            if approval
            else "automatic policy: passed the gates and verification"
        )
        result = svc.registry.promote(
            state.model,
            number,
            actor=PIPELINE_ACTOR,
            reason=reason,
            run_id=state.run_id,
            expected_version=state.evaluation.champion_version if state.evaluation else None,
        )
        svc.metadata.link(
            NodeType.RUN,
            state.run_id,
            NodeType.MODEL_VERSION,
            model_version_id(state.model, number),
            "promoted",
        )
        metrics.add_metric(name="ModelPromoted", unit=MetricUnit.Count, value=1)
        logger.info("model promoted", extra={"version": number, "previous": result.previous_version})
        return state.model_copy(update={"promoted": True, "previous_version": result.previous_version})


def stage_version(
    svc: Services, version: ModelVersion, *, actor: str, reason: str, run_id: str | None
) -> None:
    """Point the ``staging`` alias at ``version`` and move it to the staging stage (audited)."""
    svc.registry.set_alias(
        version.name, STAGING_ALIAS, version.version, actor=actor, reason=reason, run_id=run_id
    )
    if version.stage is not Stage.STAGING:
        svc.registry.transition_stage(
            version.name, version.version, Stage.STAGING, actor=actor, reason=reason, run_id=run_id
        )


# --- AwaitApproval -----------------------------------------------------------------------------------------


def request_approval_step(request: ApprovalRequest, svc: Services) -> dict[str, Any]:
    """Keep the task token on the version: the state machine waits until a person answers or time runs out."""
    state = request.state
    number: int = state.require("version")
    timeout = int((state.policy or {}).get("approval_timeout_seconds", 86400))
    now = datetime.now(UTC)
    svc.registry.request_approval(
        state.model,
        number,
        PendingApproval(
            run_id=state.run_id,
            token=request.task_token,
            environment=svc.settings.environment,
            requested_at=now,
            expires_at=now + timedelta(seconds=timeout),
        ),
    )
    svc.metadata.start_step(state.run_id, "approval")
    logger.info("approval requested", extra={"version": number, "expires_in_s": timeout})
    metrics.add_metric(name="ApprovalRequested", unit=MetricUnit.Count, value=1)
    return {"requested": True}


def declined_step(state: RunState, svc: Services) -> RunState:
    """A person rejected the version, or nobody answered in time: record it, reject the version."""
    number: int = state.require("version")
    caught = state.declined or {}
    expired = caught.get("Error") == "States.Timeout"
    if expired:
        actor, reason = "timeout", "no approval before the wait expired"
    else:
        actor, comment = _rejection(svc, state, number, caught)
        reason = f"rejected by {actor}" + (f": {comment}" if comment else "")
    with recorded_step(svc, state, "approval-declined"):
        version = svc.registry.get_model_version(state.model, number)
        if version.pending_approval is not None:
            svc.registry.clear_pending_approval(state.model, number)
        if expired:  # a person's rejection was audited by the CLI when it was sent
            svc.registry.record_decision(
                state.model, number, approved=False, actor=actor, reason=reason, run_id=state.run_id
            )
        svc.metadata.fail_step(state.run_id, "approval", _error(reason))
        if version.stage is not Stage.REJECTED:
            _drop_staging(svc, version, reason, state.run_id)
            svc.registry.transition_stage(
                state.model, number, Stage.REJECTED, actor=actor, reason=reason, run_id=state.run_id
            )
        metrics.add_metric(
            name="ApprovalExpired" if expired else "ApprovalRejected", unit=MetricUnit.Count, value=1
        )
        return state.model_copy(update={"promoted": False, "promotion_refusals": [reason]})


def _rejection(svc: Services, state: RunState, number: int, caught: dict[str, Any]) -> tuple[str, str]:
    """Who rejected, and why: the audit entry ``flywheel reject`` wrote (the Cause it sent says the same)."""
    for entry in svc.registry.audit_trail(state.model):
        if entry.kind is TransitionKind.REJECTED and entry.version == number and entry.run_id == state.run_id:
            return entry.actor, entry.reason
    try:
        detail = json.loads(str(caught.get("Cause") or "{}"))
    except ValueError:
        detail = {"comment": str(caught.get("Cause") or "")}
    detail = detail if isinstance(detail, dict) else {}
    return str(detail.get("rejected_by") or "unknown"), str(detail.get("comment") or "")


def _error(message: str) -> ErrorInfo:
    return ErrorInfo(step="approval", type="ApprovalDeclined", message=message)


def _drop_staging(svc: Services, version: ModelVersion, reason: str, run_id: str | None) -> None:
    try:
        alias = svc.registry.get_alias(version.name, STAGING_ALIAS)
    except NotFoundError:
        return
    if alias.version == version.version:
        svc.registry.delete_alias(
            version.name,
            STAGING_ALIAS,
            actor=PIPELINE_ACTOR,
            reason=reason,
            run_id=run_id,
            expected_version=version.version,
        )
