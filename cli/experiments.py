"""``flywheel experiment MODEL``, ``flywheel experiments MODEL`` and ``flywheel experiment show ID``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from cli import actions, render
from cli.common import Context, finish_run, json_option, pass_context, reported, wait_option
from shared.experiments import Experiment, Trial, TrialStatus
from shared.metadata import RunReason
from shared.pipeline.trigger import RunRequest


class _ExperimentGroup(click.Group):
    """``experiment MODEL`` starts one; ``experiment show ID`` shows one."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "start", self.commands["start"], args
        return super().resolve_command(ctx, args)


@click.group(cls=_ExperimentGroup)
def experiment() -> None:
    """Start a hyperparameter search (``experiment MODEL``) or show one (``experiment show ID``)."""


@experiment.command("start")
@click.argument("model")
@click.option("--by", default="cli", show_default=True, help="Who asks (recorded on the run).")
@wait_option
@json_option
@pass_context
@reported
def start(ctx: Context, model: str, by: str, wait: bool, as_json: bool) -> None:
    """Search the contract's experiment space; the winner is trained, judged and maybe promoted."""
    request = RunRequest(model=model, reason=RunReason.EXPERIMENT, requested_by=by)
    run_id = actions.ask_trigger(ctx.invoke_trigger, request).run_id
    if not as_json:
        click.echo(f"experiment {run_id} started (its run has the same id)")
    finish_run(ctx, run_id, wait, as_json, extra={"experiment_id": run_id})


@experiment.command("show")
@click.argument("experiment_id")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the page (default: experiment-<ID>.html here; with --json, only when given).",
)
@click.option("--no-html", is_flag=True, help="Print the trials only; write no page.")
@json_option
@pass_context
@reported
def show(ctx: Context, experiment_id: str, html_path: Path | None, no_html: bool, as_json: bool) -> None:
    """The experiment and its trials, best first, and a self-contained HTML page of them."""
    found = ctx.services.experiments.get(experiment_id)
    trials = ctx.services.experiments.trials(experiment_id)
    if not no_html and (html_path is not None or not as_json):
        from cli.experiment_page import render_experiment_html

        html_path = html_path or Path(f"experiment-{_file_safe(experiment_id)}.html")
        html_path.write_text(render_experiment_html(found, trials), encoding="utf-8")
    else:
        html_path = None
    if as_json:
        page = {"html": str(html_path)} if html_path is not None else {}
        click.echo(render.as_json({"experiment": found, "trials": ranked(found, trials), **page}))
        return
    click.echo(experiment_text(found, trials))
    if html_path is not None:
        click.echo(f"\n  page       {html_path}")


def _file_safe(name: str) -> str:
    """A run id as a file name: anything but letters, digits, dot, dash and underscore becomes a dash."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)


@click.command("experiments")
@click.argument("model")
@click.option("--limit", default=20, show_default=True)
@json_option
@pass_context
@reported
def experiments(ctx: Context, model: str, limit: int, as_json: bool) -> None:
    """The model's experiments, newest first."""
    found = ctx.services.experiments.recent(model, limit)
    if as_json:
        click.echo(render.as_json(found))
        return
    if not found:
        click.echo(f"no experiments for {model}")
        return
    header = f"{'experiment':<52} {'status':<10} {'metric':<9} {'best':>8} {'trial':>5}  started"
    lines = [header]
    for e in found:
        value = f"{e.best_value:.4f}" if e.best_value is not None else "-"
        trial = str(e.best_trial) if e.best_trial is not None else "-"
        lines.append(
            f"{e.experiment_id:<52} {e.status.value:<10} {e.metric:<9} {value:>8} {trial:>5}  "
            f"{e.started_at.isoformat(timespec='seconds')}"
        )
    click.echo("\n".join(lines))


def ranked(found: Experiment, trials: list[Trial]) -> list[Trial]:
    """Scored trials best first (in the metric's direction), then the others by number."""
    sign = -1.0 if found.higher_is_better else 1.0
    scored = sorted(
        (t for t in trials if t.status is TrialStatus.SUCCEEDED and t.value is not None),
        key=lambda t: (sign * (t.value or 0.0), t.number),
    )
    return [*scored, *sorted((t for t in trials if t not in scored), key=lambda t: t.number)]


def params_text(params: dict[str, Any]) -> str:
    """``name=value`` pairs, floats to four significant digits (the page and ``--json`` keep them whole)."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def experiment_text(found: Experiment, trials: list[Trial]) -> str:
    counts = ", ".join(
        f"{sum(t.status is s for t in trials)} {s.value}"
        for s in TrialStatus
        if any(t.status is s for t in trials)
    )
    best = (
        f"trial {found.best_trial}: {found.metric}={found.best_value:.4f}  "
        f"{params_text(found.best_params or {})}"
        if found.best_trial is not None and found.best_value is not None
        else (found.error or "no winner yet")
    )
    lines = [
        f"experiment {found.experiment_id}  ({found.model}, {found.status.value})",
        f"  builder    {found.builder}  strategy {found.policy.get('strategy')}  "
        f"budget {found.policy.get('trials')}  parallel {found.policy.get('parallel')}",
        f"  trials     {counts or 'none yet'}",
        f"  best       {best}",
        "",
        f"  {'rank':>4} {'trial':>5} {'status':<9} {found.metric:>9} {'seconds':>8}  params / error",
    ]
    for rank, trial in enumerate(ranked(found, trials), start=1):
        value = f"{trial.value:.4f}" if trial.value is not None else "-"
        seconds = f"{trial.seconds:.1f}" if trial.seconds is not None else "-"
        detail = params_text(trial.params)
        if trial.status in {TrialStatus.FAILED, TrialStatus.TIMEOUT}:
            first = (trial.error or "").strip().splitlines()
            detail += f"  {trial.error_type}: {first[0][:120] if first else ''}"
        lines.append(
            f"  {rank:>4} {trial.number:>5} {trial.status.value:<9} {value:>9} {seconds:>8}  {detail}"
        )
    return "\n".join(lines)
