"""Continuous delivery: the pipeline's steps after Register, and the manual controls the CLI uses.

``Verify`` proves the version on the serving path (:mod:`shared.pipeline.verification`) and works out the
environment's policy (:mod:`shared.pipeline.policy`); ``Promote`` moves the version to ``staging`` (approval
policy, before the wait) or to ``production`` (when the policy allows it); ``AwaitApproval`` keeps the state
machine's task token on the version until a person approves or rejects it (or the wait expires, which
rejects); ``PostDeployCheck`` asks the live route and, if production does not answer well, puts the previous
version back. Every move is a conditional registry write with an audit entry naming the actor and reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict

from shared.data.catalog import load_contract, load_training_contract, read_parquet
from shared.data.contract import EnvironmentPolicy, PolicyKind
from shared.errors import ConflictError, FlywheelError, NotFoundError
from shared.featurestore.contracts import servable_rows
from shared.metadata import NodeType, model_version_id
from shared.observability import logger, metrics
from shared.pipeline.policy import STAGING_PASSES_KEY, VERIFICATION_KEY, policy_for, refusals, staging_passes
from shared.pipeline.steps import PIPELINE_ACTOR, RunState, load_model, recorded_step
from shared.pipeline.verification import Invoke, Verification, http_event, request_rows, verify
from shared.registry import PRODUCTION_ALIAS, ModelVersion, PendingApproval, Stage, TransitionKind
from shared.services import Services

STAGING_ALIAS = "staging"


class PromotionRefusedError(FlywheelError):
    """The policy does not allow this move; the message says why (never retried)."""


class PostDeployCheckError(FlywheelError):
    """Production did not answer well after a promotion; the previous version was put back."""


class ApprovalRequest(BaseModel):
    """What ``AwaitApproval`` hands the approval function: the run's state and the task token."""

    model_config = ConfigDict(extra="ignore")
    state: RunState
    task_token: str


# --- invoking the predict function ------------------------------------------------------------------------


class LambdaInvoker:
    """Calls the ``predict`` function with an HTTP API event, as API Gateway would; returns its response."""

    def __init__(self, function_name: str, client: Any = None) -> None:
        self.function_name = function_name
        self._client = client

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        if self._client is None:
            import boto3  # noqa: PLC0415  (made on first use, after any mock)

            self._client = boto3.client("lambda")
        response = self._client.invoke(FunctionName=self.function_name, Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read() or b"null")
        if "FunctionError" in response:
            return {"statusCode": 502, "body": json.dumps(payload)}
        return payload if isinstance(payload, dict) else {"statusCode": 502, "body": json.dumps(payload)}


def predict_invoker(svc: Services) -> Invoke:
    if not svc.settings.predict_function:
        raise FlywheelError("the stack declares no predict function to verify against")
    return LambdaInvoker(svc.settings.predict_function)


# --- Verify -------------------------------------------------------------------------------------------------


def verify_version(
    svc: Services, model: str, number: int, invoke: Invoke, run_id: str | None = None
) -> Verification:
    """Verify ``model`` v``number`` on the serving path and record the figures on the version.

    A pass while the version holds the staging alias counts toward ``min_staging_successes``.
    """
    version = svc.registry.get_model_version(model, number)
    contract = load_training_contract(svc.objects, svc.settings, model).contract  # the views' features too
    holdout = _holdout_of(svc, version)
    sample = holdout.head(contract.serving.smoke_rows)
    offline = _offline_predictions(svc, version, sample, contract)
    result = verify(version, svc.objects, sample.to_dict("records"), offline, invoke, contract.serving)
    update: dict[str, Any] = {
        VERIFICATION_KEY: result.model_dump(mode="json"),
        "load_seconds": result.load_seconds,
        "error_rate": result.error_rate,
    }
    if result.latency is not None:
        update |= {
            "p50_ms": result.latency.p50_ms,
            "p95_ms": result.latency.p95_ms,
            "p99_ms": result.latency.p99_ms,
        }
    if result.passed and _holds_staging(svc, version):
        update[STAGING_PASSES_KEY] = staging_passes(version) + 1
    svc.registry.update_runtime_metrics(model, number, update)
    metrics.add_metric(
        name="VerificationPassed" if result.passed else "VerificationFailed", unit=MetricUnit.Count, value=1
    )
    logger.info(
        "version verified",
        extra={"version": number, "passed": result.passed, "reasons": result.reasons, "run_id": run_id},
    )
    return result


def _holds_staging(svc: Services, version: ModelVersion) -> bool:
    try:
        return svc.registry.get_alias(version.name, STAGING_ALIAS).version == version.version
    except NotFoundError:
        return False


def _holdout_of(svc: Services, version: ModelVersion) -> Any:
    artifact = svc.metadata.get_artifact(f"{version.run_id}/holdout.parquet")
    # Only rows a client could send: a view's required feature may be missing in a holdout row.
    return servable_rows(read_parquet(svc.objects, artifact.uri, artifact.sha256), version.signature)


def _offline_predictions(
    svc: Services, version: ModelVersion, sample: Any, contract: Any
) -> list[dict[str, Any]]:
    """What the trained pipeline itself says about the sample: the answer the serving path must give."""
    from shared.ml.training import PROBABILITY_PREFIX, predict_frame  # noqa: PLC0415  (pandas, scikit-learn)

    frame = predict_frame(load_model(svc, version.artifact), sample, contract)
    columns = [c for c in frame.columns if c.startswith(PROBABILITY_PREFIX)]
    return [
        {
            "prediction": row["prediction"],
            "probabilities": {c.removeprefix(PROBABILITY_PREFIX): float(row[c]) for c in columns} or None,
        }
        for row in frame.to_dict("records")
    ]


class VerifyRequest(BaseModel):
    """``flywheel verify MODEL:VERSION``: verify a registered version outside a run."""

    model_config = ConfigDict(extra="forbid")
    model: str
    version: int


def verify_on_request(request: VerifyRequest, svc: Services, invoke: Invoke) -> Verification:
    return verify_version(svc, request.model, request.version, invoke)


def environment_policy(svc: Services, model: str) -> EnvironmentPolicy:
    contract = load_contract(svc.objects, svc.settings, model)
    return policy_for(svc.settings.environment, contract.promotion, svc.settings.promotion_policy)


def verify_step(state: RunState, svc: Services, invoke: Invoke) -> RunState:
    """Prove the registered candidate on the serving path; a failure rejects it with the figures."""
    number: int = state.require("version")
    with recorded_step(svc, state, "verify"):
        result = verify_version(svc, state.model, number, invoke, state.run_id)
        policy = environment_policy(svc, state.model)
        if not result.passed:
            svc.registry.transition_stage(
                state.model,
                number,
                Stage.REJECTED,
                actor=PIPELINE_ACTOR,
                reason="failed verification on the serving path: " + "; ".join(result.reasons),
                run_id=state.run_id,
            )
        return state.model_copy(
            update={
                "verification": {"passed": result.passed, "reasons": result.reasons},
                "policy": {
                    **policy.model_dump(mode="json"),
                    "approval_timeout_seconds": policy.approval_timeout_seconds,
                },
            }
        )


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
                reason="verified; waiting for approval",
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


def _error(message: str) -> Any:
    from shared.metadata import ErrorInfo  # noqa: PLC0415

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


# --- PostDeployCheck ---------------------------------------------------------------------------------------


def post_deploy_check_step(
    state: RunState, svc: Services, invoke: Invoke, sleep: Callable[[float], None] = time.sleep
) -> RunState:
    """Ask the live route (no version pinned) until it answers with the new version; if it does not answer
    well, put the previous production version back and fail the run with why."""
    number: int = state.require("version")
    with recorded_step(svc, state, "post-deploy-check"):
        version = svc.registry.get_model_version(state.model, number)
        from shared.serving.runtime import Signature  # noqa: PLC0415

        rows = request_rows(
            _holdout_of(svc, version).head(3).to_dict("records"), Signature.from_dict(version.signature)
        )
        deadline = time.monotonic() + svc.settings.alias_refresh_seconds + 15
        problem = ""
        while True:
            event = http_event(state.model, number, rows, source="post-deploy-check")
            event["rawQueryString"], event["queryStringParameters"] = "", None
            response = invoke(event)
            status = int(response.get("statusCode", 502))
            body = _json(response.get("body"))
            if (
                status == 200
                and body.get("version") == number
                and len(body.get("predictions", [])) == len(rows)
            ):
                logger.info("post-deploy check passed", extra={"version": number})
                return state.model_copy(update={"post_deploy": {"passed": True}})
            problem = (
                f"the live route answered {status}: {body.get('message', body)}"
                if status != 200
                else f"the live route still answers v{body.get('version')}, not v{number}"
            )
            if status != 200 or time.monotonic() > deadline:
                break
            sleep(1.0)
        previous = state.previous_version
        if previous is None:
            raise PostDeployCheckError(
                f"post-deploy check failed and there is no previous version to restore: {problem}"
            )
        svc.registry.promote(
            state.model,
            previous,
            actor=PIPELINE_ACTOR,
            reason=f"automatic rollback: post-deploy check of v{number} failed ({problem})",
            run_id=state.run_id,
            expected_version=number,
        )
        # Archived by the rollback, it would be what a bare `flywheel rollback` restores: reject it instead.
        svc.registry.transition_stage(
            state.model,
            number,
            Stage.REJECTED,
            actor=PIPELINE_ACTOR,
            reason=f"failed its post-deploy check ({problem})",
            run_id=state.run_id,
        )
        metrics.add_metric(name="RolledBack", unit=MetricUnit.Count, value=1)
        raise PostDeployCheckError(
            f"post-deploy check of v{number} failed ({problem}); production rolled back to v{previous}"
        )


def _json(body: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(body) if isinstance(body, str) else body
    except ValueError:
        return {"message": str(body)}
    return parsed if isinstance(parsed, dict) else {"message": str(parsed)}


# --- manual control (the CLI) ------------------------------------------------------------------------------


def promote_manually(
    svc: Services, model: str, number: int, target: Stage, actor: str, reason: str
) -> ModelVersion:
    """``flywheel promote``: refused with the reasons when the environment's policy does not allow it.

    Production moves only if it is still the version it was when this promotion was decided: of two
    promotions issued at once, one wins and the other is refused (:class:`ConflictError` names both).
    """
    decided_against = _production_version(svc, model)
    version = svc.registry.get_model_version(model, number)
    policy = environment_policy(svc, model)
    problems = refusals(version, target, policy)
    if problems:
        raise PromotionRefusedError(
            f"cannot promote {model} v{number} to {target.value}: " + "; ".join(problems), problems=problems
        )
    if target is Stage.STAGING:
        stage_version(svc, version, actor=actor, reason=reason, run_id=None)
    else:
        svc.registry.promote(model, number, actor=actor, reason=reason, expected_version=decided_against)
    return svc.registry.get_model_version(model, number)


def _production_version(svc: Services, model: str) -> int | None:
    try:
        return svc.registry.get_alias(model, PRODUCTION_ALIAS).version
    except NotFoundError:
        return None


def rollback(svc: Services, model: str, actor: str, reason: str, to: int | None = None) -> tuple[int, int]:
    """``flywheel rollback``: production back to ``to`` (default: the version it replaced). Returns
    (from, to)."""
    try:
        alias = svc.registry.get_alias(model, PRODUCTION_ALIAS)
    except NotFoundError as exc:
        raise PromotionRefusedError(f"{model} has no production version to roll back") from exc
    target = to if to is not None else alias.previous_version
    if target is None:
        raise PromotionRefusedError(f"{model} v{alias.version} replaced nothing: name a version with --to")
    if target == alias.version:
        raise PromotionRefusedError(f"{model} v{target} is already in production")
    version = svc.registry.get_model_version(model, target)
    if version.stage is Stage.REJECTED:
        raise PromotionRefusedError(f"{model} v{target} was rejected and cannot serve production")
    try:
        svc.registry.promote(
            model, target, actor=actor, reason=f"rollback: {reason}", expected_version=alias.version
        )
    except ConflictError as exc:
        raise PromotionRefusedError(f"production moved while rolling back: {exc}") from exc
    return alias.version, target


def decide_approval(
    svc: Services,
    send: Callable[[str, bool, dict[str, Any]], None],
    model: str,
    number: int,
    actor: str,
    comment: str,
    approve: bool,
) -> PendingApproval:
    """``flywheel approve`` / ``flywheel reject``: answer the waiting run and audit the decision."""
    version = svc.registry.get_model_version(model, number)
    pending = version.pending_approval
    if pending is None:
        raise PromotionRefusedError(f"{model} v{number} is not waiting for an approval")
    if pending.expires_at < datetime.now(UTC):
        raise PromotionRefusedError(
            f"the approval of {model} v{number} expired at {pending.expires_at.isoformat()}"
        )
    detail = {
        ("approved_by" if approve else "rejected_by"): actor,
        "comment": comment,
        "at": datetime.now(UTC).isoformat(),
    }
    send(pending.token, approve, detail)
    svc.registry.record_decision(
        model,
        number,
        approved=approve,
        actor=actor,
        reason=(comment or ("approved" if approve else "rejected")),
        run_id=pending.run_id,
    )
    svc.registry.clear_pending_approval(model, number)
    return pending
