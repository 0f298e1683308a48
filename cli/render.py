"""How the ``flywheel`` commands print: aligned tables for people, JSON (``--json``) for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click
from pydantic import BaseModel

from cli.actions import RunView
from shared.metadata import Run, RunStatus

STATUS_COLOURS = {
    RunStatus.SUCCEEDED: "green",
    RunStatus.REJECTED: "yellow",
    RunStatus.FAILED: "red",
    RunStatus.SKIPPED: "bright_black",
    RunStatus.RUNNING: "cyan",
    RunStatus.PENDING: "cyan",
}


def as_json(value: Any) -> str:
    def default(item: Any) -> Any:
        if isinstance(item, BaseModel):
            return item.model_dump(mode="json")
        if isinstance(item, datetime):
            return item.isoformat()
        return str(item)

    return json.dumps(value, indent=2, default=default, sort_keys=False)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, *body])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def status(value: RunStatus) -> str:
    return click.style(value.value, fg=STATUS_COLOURS.get(value))


def runs_table(runs: Sequence[Run]) -> str:
    rows = [
        (
            r.run_id,
            r.model,
            r.reason.value,
            r.status.value,
            r.started_at,
            _seconds(r),
            r.outcome.get("version"),
            (r.error.step if r.error else None) or r.outcome.get("skipped") or _code_note(r),
        )
        for r in runs
    ]
    return table(["run", "model", "reason", "status", "started", "took", "version", "note"], rows)


def run_details(view: RunView) -> str:
    run = view.run
    lines = [
        f"run      {run.run_id}",
        f"model    {run.model}",
        f"reason   {run.reason.value}"
        + (f"  (evidence: {run.evidence_uri})" if run.evidence_uri else "")
        + (f"  ({code})" if (code := code_change(run.input)) else ""),
        f"status   {status(run.status)}",
        f"started  {_cell(run.started_at)}   took {_seconds(run) or '-'}",
    ]
    source = run.input.get("source")
    if source:
        lines.append(
            f"source   s3://{source['bucket']}/{source['key']}  (version {source.get('version_id') or '-'})"
        )
    if view.steps:
        lines.append("")
        lines.append(
            table(
                ["step", "status", "started", "seconds", "ran on", "error"],
                [
                    (
                        s.name,
                        s.status.value,
                        s.started_at,
                        s.duration_s,
                        s.engine,
                        s.error.type if s.error else None,
                    )
                    for s in view.steps
                ],
            )
        )
        # Why each placed step ran where it did (the contract's compute block, or the auto estimate).
        placed = {s.name: s for s in view.steps if s.engine}
        lines += [f"  {name} on {s.engine}: {s.engine_reason}" for name, s in placed.items()]
    if run.error:
        lines += [
            "",
            click.style(f"failed at {run.error.step}: {run.error.type}", fg="red"),
            run.error.message,
        ]
    if view.quarantine:
        lines += [
            "",
            f"quarantined as {view.quarantine.get('quarantined_as')}",
            f"report: {view.quarantine['report_uri']}",
        ]
    if run.outcome:
        outcome = run.outcome
        if "version" in outcome:
            verdict = "promoted to production" if outcome.get("promoted") else "registered, not promoted"
            lines += ["", f"outcome  v{outcome['version']} {verdict}"]
            lines += [f"  - {reason}" for reason in outcome.get("gate_reasons", [])]
            verification = outcome.get("verification") or {}
            if verification and not verification.get("passed"):
                lines += [f"  - failed verification: {r}" for r in verification.get("reasons", [])]
            lines += [f"  - promotion refused: {r}" for r in outcome.get("promotion_refusals", [])]
        elif "skipped" in outcome:
            lines += ["", f"skipped  {outcome['skipped']}"]
    return "\n".join(lines)


def models_table(view: dict[str, Any]) -> str:
    aliases: dict[str, int] = view["aliases"]
    by_version: dict[int, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(version, []).append(alias)
    metric_names = sorted({m for v in view["versions"] for m in v.metrics})
    rows = [
        (
            f"v{v.version}",
            v.stage.value,
            ",".join(by_version.get(v.version, [])) or None,
            v.created_at,
            *(v.metrics.get(m) for m in metric_names),
            "pass" if v.gate and v.gate.passed else ("fail" if v.gate else None),
            # The model's own code, by digest (a built-in estimator has none): which idea each version is.
            v.code_artifact.sha256[:12] if v.code_artifact else v.params.get("estimator"),
            v.run_id,
        )
        for v in view["versions"]
    ]
    return table(
        ["version", "stage", "aliases", "registered", *metric_names, "gate", "model code", "run"], rows
    )


def lineage_text(view: dict[str, Any]) -> str:
    run = view["run"]
    lines = [
        f"{view['model_version']}  ({view['stage']}, registered {_cell(view['registered_at'])})",
        f"  run            {run['run_id']}  (reason: {run['reason']}, {run['status']})",
    ]
    if run.get("evidence_uri"):
        lines.append(f"  evidence       {run['evidence_uri']}")
    if run.get("code_change"):
        lines.append(f"  started by     a code change: {code_change(run)}")
    lines.append(f"  code version   {view['code_version']}")
    if view.get("model_code"):
        code = view["model_code"]
        commit = f" (commit {code['commit']})" if code.get("commit") else ""
        lines.append(f"  model code     {code['digest'][:16]}{commit}  {code['uri']}")
    lines.append(
        "  params         "
        + ", ".join(f"{k}={v}" for k, v in sorted(view["params"].items()) if v is not None)
    )
    if view.get("experiment"):
        found = view["experiment"]
        how = "reused from" if found.get("reused") else "chosen by"
        counts = ", ".join(f"{n} {s}" for s, n in (found.get("trials") or {}).items())
        lines.append(
            f"  parameters     {how} experiment {found['experiment_id']}, trial {found['trial']} "
            f"({found['metric']}={found['value']:.4f} in cross-validation; {counts})"
        )
    lines.append("  metrics        " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(view["metrics"].items())))
    if view.get("champion_metrics"):
        lines.append(
            "  vs production  "
            + ", ".join(f"{k}={v:.4f}" for k, v in sorted(view["champion_metrics"].items()))
        )
    if view.get("gate"):
        lines.append("  gate           " + ("passed" if view["gate"]["passed"] else "failed"))
        lines += [f"                 - {r}" for r in view["gate"]["reasons"]]
    lines.append("  datasets")
    for dataset in view["datasets"]:
        span = dataset.get("time_range") or {}
        lines.append(
            f"    {dataset['dataset_id']}  {dataset['rows']} rows  sha256 {dataset['sha256'][:12]}…  "
            f"{(span.get('start') or '')[:10]}..{(span.get('end') or '')[:10]}"
        )
        lines.append(f"      {dataset['uri']}  (version {dataset.get('version_id') or '-'})")
    if view["source_files"]:
        lines.append("  source files")
        captures = [uri for uri in view["source_files"] if "/captures/" in uri]
        lines += [f"    {uri}" for uri in view["source_files"] if uri not in captures]
        if captures:
            folder = captures[0].split("#")[0].rsplit("/", 1)[0]
            lines.append(f"    {len(captures)} capture object(s) of served predictions, e.g. under {folder}/")
    lines.append(f"  artifact       {view['artifact']['uri']}  sha256 {view['artifact']['sha256'][:12]}…")
    if view.get("scoring_jobs"):
        lines.append("  batch scoring")
        lines += [
            f"    {job['job_id']}  {job.get('rows_scored', 0)} rows scored, "
            f"{job.get('rows_failed', 0)} failed, {job.get('files_failed', 0)} file(s) failed  "
            f"{job['manifest']}"
            for job in view["scoring_jobs"]
        ]
    return "\n".join(lines)


def predictions_table(answer: dict[str, Any]) -> str:
    """The predict route's answer: one line per row, probabilities as ``class=p``."""
    predictions: list[Any] = answer.get("predictions") or []
    probabilities: list[dict[str, float] | None] = answer.get("probabilities") or []
    request_ids: list[str | None] = answer.get("request_ids") or []

    def at(values: list[Any], index: int) -> Any:
        return values[index] if index < len(values) else None

    rows = [
        (
            index,
            prediction,
            " ".join(f"{label}={p:.3f}" for label, p in (at(probabilities, index) or {}).items()) or None,
            at(request_ids, index),
        )
        for index, prediction in enumerate(predictions)
    ]
    head = f"{answer.get('model', '?')} v{answer.get('version', '?')}: {len(rows)} prediction(s)"
    return "\n".join([head, table(["row", "prediction", "probabilities", "request_id"], rows)])


def refused_request(status_code: int, message: str, problems: Sequence[Any]) -> str:
    """A 4xx from the API: its message, then every problem by row and field."""
    lines = [click.style(f"error: the API refused the request ({status_code}): {message}", fg="red")]
    rows = [
        (p.get("row"), p.get("field"), p.get("problem")) if isinstance(p, dict) else (None, None, p)
        for p in problems
    ]
    if rows:
        lines.append(table(["row", "field", "problem"], rows))
    return "\n".join(lines)


def code_change(detail: dict[str, Any]) -> str | None:
    """Which code started a ``code_change`` run (its digest and commit), from its trigger details."""
    code = detail.get("code_change")
    if not code:
        return None
    commit = f", commit {code['commit']}" if code.get("commit") else ""
    return f"model code {code['digest'][:16]}{commit}"


def _code_note(run: Run) -> str | None:
    code = run.input.get("code_change")
    return f"code {code['digest'][:12]}" if code else None


def _seconds(run: Run) -> str | None:
    if run.ended_at is None:
        return None
    return f"{(run.ended_at - run.started_at).total_seconds():.1f}s"
