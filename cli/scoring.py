"""``flywheel score MODEL s3://.../score-inputs/...`` and ``flywheel scores MODEL``: batch scoring jobs."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from cli import render
from cli.common import Context, json_option, pass_context, reported, wait_option
from shared.errors import FlywheelError, InvalidRequestError, NotFoundError
from shared.scoring.job import ScoreManifest, ScoreRequest
from shared.scoring.run import JobStarted, job_progress, list_jobs, read_manifest
from shared.services import Services

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
TIMEOUT_S = 3600.0


def start_scoring(ctx: Context, request: ScoreRequest) -> JobStarted:
    """Ask the score-start function for a job; a refusal is an :class:`InvalidRequestError` (or, for an
    unknown model or version, :class:`NotFoundError`) with its reason."""
    function = ctx.services.settings.score_start_function
    if not function:
        raise NotFoundError("this stack has no batch scoring (no score-start function)")
    answer = ctx.invoke(function, request.model_dump(mode="json", exclude_none=True))
    if "errorType" in answer:
        message = f"{answer['errorType']}: {answer.get('errorMessage', '')}"
        kinds: dict[str, type[FlywheelError]] = {
            InvalidRequestError.__name__: InvalidRequestError,
            NotFoundError.__name__: NotFoundError,
        }
        raise kinds.get(answer["errorType"], FlywheelError)(message)
    return JobStarted.model_validate(answer["jobs"][0])


def wait_for_job(svc: Services, started: JobStarted, progress: Any, timeout_s: float = TIMEOUT_S) -> str:
    """Follow the job until its execution ends, printing files done and rows as they change."""
    deadline = time.monotonic() + timeout_s
    seen: tuple[int, int, int] | None = None
    while True:
        now = job_progress(svc, started.job.model, started.job.job_id)
        shown = (now.files_done, now.rows_scored, now.rows_failed)
        if shown != seen:
            seen = shown
            progress(
                f"  files {now.files_done}/{started.files}  rows scored {now.rows_scored}, "
                f"failed {now.rows_failed}"
            )
        if now.status in TERMINAL:
            if now.status != "SUCCEEDED":
                raise FlywheelError(f"scoring job {now.job_id} ended {now.status}: {now.error or ''}".strip())
            return now.status
        if time.monotonic() > deadline:
            raise TimeoutError(f"scoring job {now.job_id} still running after {timeout_s:.0f}s")
        time.sleep(0.2)


def manifest_text(manifest: ScoreManifest) -> str:
    lines = [
        f"job {manifest.job_id}: {manifest.model} v{manifest.version} ({manifest.flavor})",
        f"  source {manifest.prefix}",
        f"  files {manifest.files_scored} scored, {manifest.files_failed} failed; "
        f"rows {manifest.rows_scored} scored, {manifest.rows_failed} failed",
    ]
    rows = [
        [
            f.source.rsplit("/", 1)[-1],
            f.status,
            f.rows_scored,
            f.rows_failed,
            f.output.uri if f.output else (f.error or "")[:90],
        ]
        for f in manifest.files
    ]
    lines.append(render.table(["file", "status", "scored", "failed", "output / reason"], rows))
    return "\n".join(lines)


@click.command()
@click.argument("model")
@click.argument("prefix", metavar="s3://BUCKET/score-inputs/PREFIX/")
@click.option("--version", type=click.IntRange(min=1), default=None, help="Score with this version.")
@click.option("--by", default="cli", show_default=True, help="Who asks (recorded on the job).")
@wait_option
@json_option
@pass_context
@reported
def score(
    ctx: Context, model: str, prefix: str, version: int | None, by: str, wait: bool, as_json: bool
) -> None:
    """Score every file under PREFIX with MODEL's production version (or --version N), in batch."""
    started = start_scoring(ctx, ScoreRequest(model=model, prefix=prefix, version=version, requested_by=by))
    job = started.job
    if not wait:
        click.echo(
            render.as_json(started)
            if as_json
            else f"scoring job {job.job_id} started: {started.files} file(s), {model} v{job.version}\n"
            f"  manifest {started.manifest}"
        )
        return
    if not as_json:
        click.echo(f"scoring job {job.job_id}: {started.files} file(s) with {model} v{job.version}")
    wait_for_job(ctx.services, started, (lambda line: None) if as_json else click.echo)
    manifest = read_manifest(ctx.services, model, job.job_id)
    click.echo(render.as_json(manifest) if as_json else manifest_text(manifest))
    if manifest.files_failed and not as_json:
        click.secho(f"{manifest.files_failed} file(s) could not be scored (see above)", fg="yellow")
    if manifest.files_scored == 0:
        sys.exit(1)


@click.command()
@click.argument("model")
@json_option
@pass_context
@reported
def scores(ctx: Context, model: str, as_json: bool) -> None:
    """MODEL's batch scoring jobs, newest first: the version each scored, files and rows."""
    jobs = list_jobs(ctx.services, model)
    if as_json:
        click.echo(render.as_json(jobs))
        return
    rows = [
        [
            m.job_id,
            m.version,
            m.finished_at,
            f"{m.files_scored}/{m.files_total}",
            m.rows_scored,
            m.rows_failed,
            m.prefix,
        ]
        for m in jobs
    ]
    click.echo(render.table(["job", "version", "finished", "files", "rows", "failed", "prefix"], rows))
