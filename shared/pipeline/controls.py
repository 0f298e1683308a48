"""Delivery by hand: what a person does with ``flywheel promote | rollback | approve | reject``.

Each move is checked against the environment's policy (:func:`environment_policy`: the contract's
``promotion:`` block for this environment, else the stack's default) and refused with the reasons when it
does not allow it; every move is a conditional registry write with an audit entry naming who and why. The
pipeline's own moves are :mod:`shared.pipeline.delivery`'s, which never reads a contract (Verify put the
policy in the run's state), so the functions that run them do not import one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.data.catalog import load_contract
from shared.errors import ConflictError, FlywheelError, NotFoundError, TransientError
from shared.pipeline.delivery import PromotionRefusedError, stage_version
from shared.pipeline.policy import policy_for, refusals
from shared.registry import (
    PRODUCTION_ALIAS,
    AlreadyDecidedError,
    ModelVersion,
    PendingApproval,
    Stage,
    Transition,
    TransitionKind,
)
from shared.services import Services
from shared.settings import EnvironmentPolicy


def environment_policy(svc: Services, model: str) -> EnvironmentPolicy:
    """The policy that moves ``model``'s versions in this stack's environment."""
    contract = load_contract(svc.objects, svc.settings, model)
    return policy_for(svc.settings.environment, contract.promotion, svc.settings.promotion_policy)


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


class WaitEndedError(FlywheelError):
    """The run no longer waits for a decision (its wait timed out, or the task token is unknown): what a
    ``send`` raises when Step Functions refuses the token for good."""


def decide_approval(
    svc: Services,
    send: Callable[[str, bool, dict[str, Any]], None],
    model: str,
    number: int,
    actor: str,
    comment: str,
    approve: bool,
) -> PendingApproval:
    """``flywheel approve`` / ``flywheel reject``: claim the waiting decision, then answer the run.

    The claim is one conditional commit (the wait ends and the decision joins the audit trail), so of an
    approval and a rejection sent at the same instant exactly one is sent to the run; the other is refused
    with who decided first, what, and when. If the run no longer takes the decision (:class:`WaitEndedError`
    from ``send``), the trail says it was not delivered; if sending failed for a passing reason, the wait
    is restored so the person can try again.
    """
    verdict = "approval" if approve else "rejection"
    version = svc.registry.get_model_version(model, number)
    pending = version.pending_approval
    if pending is None:
        raise PromotionRefusedError(
            f"{model} v{number} is not waiting for an approval"
            + _decided(svc.registry.decision_on(model, number))
        )
    if pending.expires_at < datetime.now(UTC):
        raise PromotionRefusedError(
            f"the approval of {model} v{number} expired at {pending.expires_at.isoformat()}"
        )
    reason = comment or ("approved" if approve else "rejected")
    try:
        claimed = svc.registry.claim_decision(
            model, number, token=pending.token, approved=approve, actor=actor, reason=reason
        )
    except AlreadyDecidedError as exc:
        raise PromotionRefusedError(
            f"{model} v{number}: your {verdict} was not sent; the wait was already decided"
            + _decided(exc.decision),
            problems=exc.problems,
        ) from exc
    detail = {
        ("approved_by" if approve else "rejected_by"): actor,
        "comment": comment,
        "at": claimed.at.isoformat(),
    }
    try:
        send(pending.token, approve, detail)
    except WaitEndedError as exc:
        svc.registry.record_undelivered(model, number, claimed=claimed, error=str(exc))
        raise PromotionRefusedError(
            f"{model} v{number}: your {verdict} was recorded but the run no longer waits for it ({exc}); "
            "the trail says it was not delivered"
        ) from exc
    except Exception as exc:
        svc.registry.record_undelivered(model, number, claimed=claimed, error=f"{type(exc).__name__}: {exc}")
        svc.registry.request_approval(model, number, pending)
        raise TransientError(
            f"{model} v{number}: your {verdict} could not be sent ({type(exc).__name__}: {exc}); the version "
            "waits again, try once more"
        ) from exc
    if approve:
        svc.registry.add_approval(model, number, actor=actor, comment=reason, run_id=pending.run_id)
    return pending


def _decided(decision: Transition | None) -> str:
    if decision is None:
        return ""
    what = {
        TransitionKind.APPROVED: "approved",
        TransitionKind.REJECTED: "rejected",
        TransitionKind.UNDELIVERED: "answered without reaching the run",
    }[decision.kind]
    return f": {what} by {decision.actor} at {decision.at.isoformat()} ({decision.reason})"
