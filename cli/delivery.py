"""``flywheel promote | rollback | audit | approve | reject | verify``: the manual controls of delivery.

Each refuses with the reason when the environment's policy does not allow the move
(``shared.pipeline.policy``), and every move is an audit entry naming who and why.
"""

from __future__ import annotations

import json
from typing import Any

import click
from botocore.exceptions import ClientError

from cli import render
from cli.common import Context, json_option, pass_context, reported, version_reference
from shared.errors import FlywheelError
from shared.pipeline.controls import WaitEndedError, decide_approval, promote_manually, rollback
from shared.pipeline.policy import STAGING_PASSES_KEY
from shared.registry import Stage

# What Step Functions answers for a token whose wait is over for good: the run will never take a decision.
WAIT_ENDED = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})


@click.command()
@click.argument("reference", metavar="MODEL:VERSION")
@click.option("--to", "target", type=click.Choice(["staging", "production"]), required=True)
@click.option("--by", "actor", required=True, help="Who promotes (recorded in the audit trail).")
@click.option("--reason", default="manual promotion", show_default=True)
@json_option
@pass_context
@reported
def promote(ctx: Context, reference: str, target: str, actor: str, reason: str, as_json: bool) -> None:
    """Move a verified version to staging or production (refused, with why, if the policy says no)."""
    name, number = version_reference(reference)
    version = promote_manually(ctx.services, name, number, Stage(target), actor, reason)
    click.echo(render.as_json(version) if as_json else f"{name} v{number} is now {version.stage.value}")


@click.command("rollback")
@click.argument("model")
@click.option("--to", "to_version", type=int, default=None, help="Default: the version production replaced.")
@click.option("--by", "actor", required=True)
@click.option("--reason", default="manual rollback", show_default=True)
@json_option
@pass_context
@reported
def rollback_command(
    ctx: Context, model: str, to_version: int | None, actor: str, reason: str, as_json: bool
) -> None:
    """Put a previous version back in production."""
    before, after = rollback(ctx.services, model, actor, reason, to_version)
    answer = {"model": model, "from": before, "to": after}
    click.echo(
        render.as_json(answer) if as_json else f"{model}: production rolled back from v{before} to v{after}"
    )


@click.command()
@click.argument("model")
@json_option
@pass_context
@reported
def audit(ctx: Context, model: str, as_json: bool) -> None:
    """The full trail of a model's versions: every stage, alias and approval, newest first."""
    trail = ctx.services.registry.audit_trail(model)
    if as_json:
        click.echo(render.as_json(trail))
        return
    rows = [
        (
            t.at,
            f"v{t.version}",
            t.kind.value,
            f"{t.from_stage.value if t.from_stage else '-'} -> {t.to_stage.value if t.to_stage else '-'}",
            t.alias,
            t.actor,
            t.reason,
            t.run_id,
        )
        for t in trail
    ]
    click.echo(render.table(["at", "version", "what", "stage", "alias", "by", "reason", "run"], rows))


def _decide(ctx: Context, reference: str, actor: str, comment: str, approve: bool, as_json: bool) -> None:
    name, number = version_reference(reference)
    sfn = _stepfunctions(ctx)

    def send(token: str, ok: bool, detail: dict[str, Any]) -> None:
        try:
            if ok:
                sfn.send_task_success(taskToken=token, output=json.dumps(detail))
            else:
                sfn.send_task_failure(taskToken=token, error="ApprovalRejected", cause=json.dumps(detail))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in WAIT_ENDED:
                raise WaitEndedError(f"{code}: {exc.response['Error'].get('Message', '')}") from exc
            raise

    pending = decide_approval(ctx.services, send, name, number, actor, comment, approve)
    verdict = "approved" if approve else "rejected"
    answer = {
        "model": name,
        "version": number,
        "decision": verdict,
        "run_id": pending.run_id,
        "by": actor,
    }
    click.echo(
        render.as_json(answer)
        if as_json
        else f"{name} v{number} {verdict} by {actor}; run {pending.run_id} continues"
    )


@click.command()
@click.argument("reference", metavar="MODEL:VERSION")
@click.option("--by", "actor", required=True)
@click.option("--comment", default="", help="Why (kept in the audit trail).")
@json_option
@pass_context
@reported
def approve(ctx: Context, reference: str, actor: str, comment: str, as_json: bool) -> None:
    """Approve a version waiting for promotion."""
    _decide(ctx, reference, actor, comment, True, as_json)


@click.command()
@click.argument("reference", metavar="MODEL:VERSION")
@click.option("--by", "actor", required=True)
@click.option("--comment", default="", help="Why (kept in the audit trail).")
@json_option
@pass_context
@reported
def reject(ctx: Context, reference: str, actor: str, comment: str, as_json: bool) -> None:
    """Reject a version waiting for promotion."""
    _decide(ctx, reference, actor, comment, False, as_json)


@click.command()
@click.argument("reference", metavar="MODEL:VERSION")
@json_option
@pass_context
@reported
def verify(ctx: Context, reference: str, as_json: bool) -> None:
    """Verify a version on the serving path now (counts toward min_staging_successes while in staging)."""
    name, number = version_reference(reference)
    settings = ctx.services.settings
    if not settings.verify_function:
        raise FlywheelError("this stack has no verify function")
    answer = ctx.invoke(settings.verify_function, {"model": name, "version": number})
    if "errorType" in answer:
        raise FlywheelError(f"{answer['errorType']}: {answer.get('errorMessage', '')}")
    if as_json:
        click.echo(render.as_json(answer))
    else:
        version = ctx.services.registry.get_model_version(name, number)
        verdict = "passed" if answer["passed"] else "FAILED"
        click.echo(f"{name} v{number} verification {verdict}")
        for reason in answer["reasons"]:
            click.echo(f"  - {reason}")
        click.echo(f"  staging verifications passed: {version.runtime_metrics.get(STAGING_PASSES_KEY, 0)}")
    if not answer["passed"]:
        raise SystemExit(1)


def _stepfunctions(ctx: Context) -> Any:
    return ctx.services.clients.client("stepfunctions")


COMMANDS = (promote, rollback_command, audit, approve, reject, verify)
