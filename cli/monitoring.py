"""``flywheel labels push | monitor | report``: ground truth in, the monitor on demand, its reports out.

The actions are functions over :class:`Services` (and, for the monitor, a way to invoke its function), like
``cli/actions.py``, so tests and the demo call them too; their texts and the click commands follow, and
``COMMANDS`` is what ``cli/main.py`` adds to ``flywheel``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import click
from pydantic import BaseModel

from cli import actions, render
from cli.common import Context, json_option, pass_context, report_push, reported
from cli.render import table
from cli.uploads import upload, wait_for_verdict
from shared.aws import AwsClients
from shared.data.catalog import load_contract
from shared.data.quarantine import FileKind, Refusal, quarantine_ref
from shared.errors import FlywheelError, NotFoundError
from shared.invoke import LambdaFunction
from shared.layout import DataPrefix
from shared.metadata import RunStatus
from shared.monitoring.labels import LabelOutcome, accepted_refs, label_set_id
from shared.monitoring.log import DynamoMonitorLog, MonitorLog, MonitorRecord
from shared.monitoring.monitor import MonitorOutcome
from shared.services import Services
from shared.settings import Settings
from shared.storage import ObjectRef

Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]


# --- labels ---------------------------------------------------------------------------------------------


class LabelPush(BaseModel):
    model: str
    uri: str
    version_id: str | None
    label_set_id: str


def push_labels(svc: Services, path: Path, model: str, name: str | None = None) -> LabelPush:
    """Upload a label file under ``labels/<model>/``; its arrival invokes the labels function."""
    load_contract(svc.objects, svc.settings, model)  # refuse early, with the reason, when there is none
    stored = upload(svc, path, f"{DataPrefix.LABELS}{model}/{name or path.name}")
    return LabelPush(
        model=model, uri=stored.uri, version_id=stored.version_id, label_set_id=label_set_id(model, stored)
    )


def wait_for_labels(svc: Services, pushed: LabelPush, timeout_s: float = 120.0) -> LabelOutcome:
    """What the labels function made of an upload: its accepted report, or its quarantine report."""
    source = ObjectRef.parse(pushed.uri, pushed.version_id)
    parquet, report = accepted_refs(source.bucket, pushed.model, pushed.label_set_id)
    name = source.key.removeprefix(f"{DataPrefix.LABELS}{pushed.model}/")

    def accepted() -> LabelOutcome | None:
        try:
            found: dict[str, Any] = json.loads(svc.objects.get(report).body)
        except NotFoundError:
            return None
        return LabelOutcome(
            model=pushed.model,
            source=pushed.uri,
            source_version_id=pushed.version_id,
            accepted=True,
            label_set_id=pushed.label_set_id,
            accepted_uri=parquet.uri,
            report_uri=report.uri,
            rows=int(found.get("rows", 0)),
            rejected_rows=int(found.get("rejected_rows", 0)),
            problems=list(found.get("problems") or []),
        )

    def quarantined(refusal: Refusal) -> LabelOutcome:
        return LabelOutcome.refused(pushed.model, refusal)

    refused_at = quarantine_ref(FileKind.LABELS, source.bucket, pushed.model, name)
    unfinished = f"the labels in {pushed.uri} were not checked"
    return wait_for_verdict(svc, source, refused_at, accepted, quarantined, unfinished, timeout_s)


def labels_text(outcome: LabelOutcome) -> str:
    if outcome.accepted:
        lines = [
            f"{outcome.rows} label(s) accepted for {outcome.model}"
            + (f", {outcome.rejected_rows} row(s) left out" if outcome.rejected_rows else ""),
            f"  stored  {outcome.accepted_uri}",
        ]
    else:
        lines = [f"the label file was refused and quarantined as {outcome.quarantined_as}"]
    rows = [(p.get("rule"), p.get("column"), p.get("count"), p.get("message")) for p in outcome.problems]
    if rows:
        lines.append(table(["rule", "column", "rows", "problem"], rows))
    return "\n".join(lines)


# --- the monitor ----------------------------------------------------------------------------------------


def invoker(settings: Settings) -> Invoke:
    """Invoke a function of the stack synchronously, waiting as long as the monitor may run."""

    clients = AwsClients(settings.region)

    def invoke(function_name: str, payload: dict[str, Any]) -> dict[str, Any]:
        client = clients.client("lambda", read_timeout=910, retries={"max_attempts": 1})
        answer: dict[str, Any] = LambdaFunction(function_name, client).invoke(payload).payload or {}
        return answer

    return invoke


def run_monitor(settings: Settings, invoke: Invoke, model: str, by: str) -> MonitorOutcome:
    """Ask the monitor function to monitor ``model`` now; what it found and did."""
    if not settings.monitor_function:
        raise FlywheelError("this stack has no monitor function (deploy a version of Flywheel that has one)")
    answer = invoke(settings.monitor_function, {"model": model, "requested_by": by})
    if "errorType" in answer:
        raise FlywheelError(f"{answer['errorType']}: {answer.get('errorMessage', '')}")
    return MonitorOutcome.model_validate(answer["models"][0])


def outcome_text(outcome: MonitorOutcome) -> str:
    if not outcome.monitored:
        return f"{outcome.model}: not monitored ({outcome.error or outcome.detail})"
    headline = (outcome.action or "").replace("_", " ") + (f" ({outcome.reason})" if outcome.reason else "")
    lines = [
        f"{outcome.model} v{outcome.version}: {headline} — {outcome.rows:,} rows, "
        f"{outcome.labelled_rows:,} labelled",
        *(f"  - {reason}" for reason in outcome.reasons),
    ]
    if outcome.run_id:
        state = (
            "started" if outcome.run_started else "already started" if outcome.run_duplicate else "refused"
        )
        lines.append(f"  run      {outcome.run_id} ({state})")
    if outcome.feedback_dataset:
        lines.append(f"  feedback {outcome.feedback_dataset}")
    lines.append(f"  report   {outcome.html_uri}")
    return "\n".join(lines)


# --- reports --------------------------------------------------------------------------------------------


class ReportView(BaseModel):
    model: str
    latest: MonitorRecord
    history: list[MonitorRecord]
    written: list[str] = []


def reports(svc: Services, model: str, limit: int = 10, log: MonitorLog | None = None) -> ReportView:
    """The model's latest monitor report and its recent monitor runs (held-back decisions included)."""
    if log is None:
        log = DynamoMonitorLog(svc.settings.metadata_table, client=svc.clients.client("dynamodb"))
    history = log.history(model, limit)
    if not history:
        raise NotFoundError(f"model {model!r} has no monitor report yet; run `flywheel monitor {model}`")
    return ReportView(model=model, latest=history[0], history=history)


def download_report(svc: Services, record: MonitorRecord, out: Path) -> list[str]:
    """Write the report's JSON and HTML into ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for uri in (record.report_uri, record.html_uri):
        path = out / PurePosixPath(ObjectRef.parse(uri).key).name
        path.write_bytes(svc.objects.get(ObjectRef.parse(uri)).body)
        written.append(str(path))
    return written


def report_text(view: ReportView) -> str:
    latest = view.latest
    headline = latest.action.replace("_", " ") + (f" ({latest.reason})" if latest.reason else "")
    lines = [
        f"{view.model} v{latest.version}: {headline}, monitored {latest.started_at:%Y-%m-%d %H:%M:%S} UTC "
        f"({latest.requested_by})",
        *(f"  - {reason}" for reason in latest.reasons),
        f"  report   {latest.html_uri}",
        f"  json     {latest.report_uri}",
    ]
    if latest.run_id:
        lines.append(f"  run      {latest.run_id}")
    if latest.feedback_dataset:
        lines.append(f"  feedback {latest.feedback_dataset} ({latest.feedback_rows} rows)")
    lines += [f"  wrote    {path}" for path in view.written]
    rows = [
        (
            r.started_at,
            f"v{r.version}",
            r.rows,
            r.labelled_rows,
            r.live_metric,
            r.drift_share,
            r.action + (f" ({r.reason})" if r.reason else ""),
            r.run_id,
        )
        for r in view.history
    ]
    metric = latest.metric
    lines += [
        "",
        table(["monitored", "version", "rows", "labelled", metric, "drift share", "decision", "run"], rows),
    ]
    return "\n".join(lines)


# --- the commands ---------------------------------------------------------------------------------------


def _follow(ctx: Context, run_id: str, as_json: bool, extra: dict[str, Any]) -> None:
    """Follow a run the monitor started, as ``flywheel run --wait`` does; exit 1 if it fails."""
    progress = (lambda _line: None) if as_json else click.echo
    view = actions.wait_for_run(ctx.services, run_id, progress)
    click.echo(render.as_json({**extra, "run": view}) if as_json else "\n" + render.run_details(view))
    if view.run.status is RunStatus.FAILED:
        sys.exit(1)


@click.command("monitor")
@click.argument("model")
@click.option("--by", default="cli", show_default=True, help="Who asks (recorded with the monitor run).")
@click.option(
    "--wait", is_flag=True, help="Follow the retraining it starts, if any; exit non-zero if it fails."
)
@json_option
@pass_context
@reported
def monitor_command(ctx: Context, model: str, by: str, wait: bool, as_json: bool) -> None:
    """Monitor MODEL now: drift, live performance, a report; a retraining past the thresholds."""
    settings = ctx.services.settings
    outcome = run_monitor(settings, invoker(settings), model, by)
    if wait and outcome.run_id and (outcome.run_started or outcome.run_duplicate):
        if not as_json:
            click.echo(outcome_text(outcome))
        _follow(ctx, outcome.run_id, as_json, {"monitor": outcome})
        return
    click.echo(render.as_json(outcome) if as_json else outcome_text(outcome))


@click.group("labels")
def labels_group() -> None:
    """Ground truth for answered requests, joined to their predictions by request id."""


@labels_group.command("push")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", required=True, help="The model whose predictions the labels are for.")
@click.option("--wait", is_flag=True, help="Wait for the check; exit 2 if the file is refused.")
@json_option
@pass_context
@reported
def labels_push(ctx: Context, file: Path, model: str, wait: bool, as_json: bool) -> None:
    """Upload a label file (request_id, the target, optionally time) under labels/<model>/."""
    pushed = push_labels(ctx.services, file, model)

    def verdict() -> tuple[LabelOutcome, str, bool]:
        outcome = wait_for_labels(ctx.services, pushed)
        return outcome, labels_text(outcome), outcome.accepted

    report_push(pushed, wait, as_json, verdict)


@click.command("report")
@click.argument("model")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the latest report.json and report.html into this directory.",
)
@click.option("--limit", default=10, show_default=True, help="How many recent monitor runs to list.")
@json_option
@pass_context
@reported
def report_command(ctx: Context, model: str, out: Path | None, limit: int, as_json: bool) -> None:
    """Where MODEL's latest monitoring report is, its decision, and the recent monitor runs."""
    view = reports(ctx.services, model, limit)
    if out is not None:
        view = view.model_copy(update={"written": download_report(ctx.services, view.latest, out)})
    click.echo(render.as_json(view) if as_json else report_text(view))


COMMANDS = (monitor_command, labels_group, report_command)
