"""``flywheel``: run the local cloud and drive a stack from the shell.

Every command finds the stack's resources by itself: ``--stack local`` (the default, or ``FLYWHEEL_STACK``)
is the local cloud that ``make local`` serves; any other name is a deployed Pulumi stack.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path

import click

from cli import actions, code_change, delivery, features, monitoring, projects, render
from cli import experiments as experiments_cli
from cli import scoring as scoring_cli
from cli.common import Context, finish_run, json_option, pass_context, reported, wait_option
from cli.diff import COMMANDS as DIFF_COMMANDS
from cli.stack import LOCAL


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--stack",
    envvar="FLYWHEEL_STACK",
    default=LOCAL,
    show_default=True,
    help="'local' or a Pulumi stack name.",
)
@click.pass_context
def main(ctx: click.Context, stack: str) -> None:
    """Flywheel: continuous training for tabular models, on AWS or on this machine."""
    ctx.obj = Context(stack)


# --- the local cloud ----------------------------------------------------------------------------------------


@main.command()
@click.option("--port", default=5000, show_default=True, help="Port of the AWS endpoint (moto).")
@click.option("--gateway-port", default=8787, show_default=True, help="Port of the HTTP API.")
@click.option(
    "--config", "config_stack", default="dev", show_default=True, help="Settings of Pulumi.<config>.yaml."
)
def local(port: int, gateway_port: int, config_stack: str) -> None:
    """Run the local cloud in the foreground until Ctrl-C."""
    from infra.config import StackConfig
    from infra.flywheel import flywheel_stack
    from infra.local import LocalCloud

    config = StackConfig.from_stack_file(config_stack)
    cloud = LocalCloud(flywheel_stack(config), config, stack=LOCAL)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with cloud.serving(port=port, gateway_port=gateway_port):
        click.echo(
            click.style("Flywheel local cloud is up", bold=True)
            + f" (settings of {config_stack!r}, stack 'local')"
        )
        click.echo(f"  AWS endpoint : {cloud.endpoint_url}")
        click.echo(f"  HTTP API     : {cloud.gateway.url if cloud.gateway else '-'}")
        click.echo(f"  buckets      : {', '.join(cloud.names.buckets.values())}")
        click.echo(f"  tables       : {', '.join(cloud.names.tables.values())}")
        click.echo("\nIn another shell:")
        for name, value in cloud.exports().items():
            click.echo(f"  export {name}={value}")
        click.echo(
            "  flywheel contract put examples/churn.yaml   # then: flywheel push FILE --model churn --wait"
        )
        example = _predict_example()
        if example:
            click.echo("\nOnce churn has a production version, ask it (or: flywheel predict churn '{...}'):")
            click.echo(f"  {example}")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    click.echo("stopped")


def _predict_example() -> str | None:
    from cli.api import curl_example
    from shared.data.contract import parse_contract

    path = Path(__file__).resolve().parents[1] / "examples" / "churn.yaml"
    if not path.is_file():  # an installed CLI without the checkout's examples
        return None
    return curl_example(parse_contract(path.read_text()))


# --- contracts ----------------------------------------------------------------------------------------------


@main.group()
def contract() -> None:
    """Data contracts: what a model's data must look like and how it is trained and judged."""


@contract.command("put")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@pass_context
@reported
def contract_put(ctx: Context, file: Path, as_json: bool) -> None:
    """Check a contract completely and store it (refused with every problem listed)."""
    stored, version = actions.contract_put(ctx.services, file)
    if as_json:
        click.echo(render.as_json({"model": stored.model, "version_id": version, "contract": stored}))
        return
    click.echo(
        f"contract for {stored.model!r} stored ({stored.task.value}, target {stored.target!r}, "
        f"{len(stored.features)} features, model {stored.training.builder})"
    )


@contract.command("show")
@click.argument("model")
@json_option
@pass_context
@reported
def contract_show(ctx: Context, model: str, as_json: bool) -> None:
    """Print a model's contract."""
    stored = actions.contract_show(ctx.services, model)
    click.echo(render.as_json(stored) if as_json else stored.to_yaml().rstrip())


# --- data and runs ------------------------------------------------------------------------------------------


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", required=True, help="The model whose contract the file follows.")
@wait_option
@json_option
@pass_context
@reported
def push(ctx: Context, file: Path, model: str, wait: bool, as_json: bool) -> None:
    """Upload a CSV or Parquet file under incoming/<model>/; its arrival starts a run."""
    result = actions.push(ctx.services, file, model)
    if not as_json:
        click.echo(f"uploaded {result.uri} (version {result.version_id}); run {result.run_id}")
    finish_run(ctx, result.run_id, wait, as_json, extra={"push": result})


@main.command("run")
@click.option("--model", required=True)
@click.option("--by", default="cli", show_default=True, help="Who asks (recorded on the run).")
@wait_option
@json_option
@pass_context
@reported
def run_model(ctx: Context, model: str, by: str, wait: bool, as_json: bool) -> None:
    """Start a run on the data the model already has."""
    run_id = actions.request_run(ctx.services, ctx.invoke_trigger, model, by)
    if not as_json:
        click.echo(f"run {run_id} started")
    finish_run(ctx, run_id, wait, as_json, extra={})


@main.group(invoke_without_command=True)
@click.option("--model", default=None)
@click.option("--limit", default=20, show_default=True)
@json_option
@click.pass_context
@reported
def runs(click_ctx: click.Context, model: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first (``runs show RUN`` for one)."""
    if click_ctx.invoked_subcommand is not None:
        return
    found = actions.list_runs(click_ctx.find_object(Context).services, model, limit)  # type: ignore[union-attr]
    click.echo(render.as_json(found) if as_json else render.runs_table(found))


@runs.command("show")
@click.argument("run_id")
@json_option
@pass_context
@reported
def runs_show(ctx: Context, run_id: str, as_json: bool) -> None:
    """One run: reason, steps with timings, error or outcome."""
    view = actions.show_run(ctx.services, run_id)
    click.echo(render.as_json(view) if as_json else render.run_details(view))


# --- serving ------------------------------------------------------------------------------------------------


@main.command()
@click.argument("model")
@click.argument("request", metavar="JSON|@FILE")
@click.option("--version", type=click.IntRange(min=1), default=None, help="Ask this version.")
@click.option("--alias", default=None, help="Ask the version behind this alias (default: production).")
@json_option
@pass_context
@reported
def predict(
    ctx: Context, model: str, request: str, version: int | None, alias: str | None, as_json: bool
) -> None:
    """Ask MODEL's endpoint for predictions.

    JSON is one row (an object), a list of rows, or a request body ({"instances": [...]}, MLflow's
    dataframe_split or dataframe_records); @file.json reads it from a file, @- from stdin.
    """
    from cli import api

    if version is not None and alias is not None:
        raise click.UsageError("give --version or --alias, not both")
    try:
        body = api.read_request(request)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="JSON|@FILE") from exc
    try:
        answer = api.predict(ctx.stack, model, body, version=version, alias=alias)
    except api.RequestRefusedError as exc:
        if as_json:
            click.echo(render.as_json(exc.body))
        else:
            click.echo(render.refused_request(exc.status, str(exc), exc.problems), err=True)
        sys.exit(2)
    click.echo(render.as_json(answer) if as_json else render.predictions_table(answer))


# --- models and lineage -------------------------------------------------------------------------------------


@main.command()
@click.argument("model")
@json_option
@pass_context
@reported
def models(ctx: Context, model: str, as_json: bool) -> None:
    """A model's versions: stages, aliases, metrics, gate."""
    view = actions.models(ctx.services, model)
    click.echo(render.as_json(view) if as_json else render.models_table(view))


@main.command()
@click.argument("reference", metavar="MODEL:VERSION")
@json_option
@pass_context
@reported
def lineage(ctx: Context, reference: str, as_json: bool) -> None:
    """What made a version: datasets (versions, sha256), source files, run, trigger, params, code, metrics."""
    view = actions.lineage(ctx.services, reference)
    click.echo(render.as_json(view) if as_json else render.lineage_text(view))


for _command in delivery.COMMANDS:
    main.add_command(_command)

for _command in DIFF_COMMANDS:
    main.add_command(_command)

for _command in monitoring.COMMANDS:
    main.add_command(_command)

for _command in features.COMMANDS:
    main.add_command(_command)

for _command in projects.COMMANDS:
    main.add_command(_command)

for _command in code_change.COMMANDS:
    main.add_command(_command)


# --- experiments ------------------------------------------------------------------------------------------

main.add_command(experiments_cli.experiment)
main.add_command(experiments_cli.experiments)

# --- batch scoring ------------------------------------------------------------------------------------------

main.add_command(scoring_cli.score)
main.add_command(scoring_cli.scores)


if __name__ == "__main__":
    main()
