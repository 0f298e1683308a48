"""``make demo``: Flywheel's loop on this machine, told as a story.

Everything runs in this process on the local cloud (moto): the same stack spec, state machine and Lambda
handlers that ``pulumi up`` deploys. The demo calls the same functions as the ``flywheel`` command.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

# The functions log and emit metrics as they would in Lambda; the story is easier to read without them.
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "CRITICAL")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
warnings.filterwarnings("ignore", module="aws_lambda_powertools")

import click  # noqa: E402

from cli import actions, render  # noqa: E402
from cli.api import RequestRefusedError, post_json, predict_url  # noqa: E402
from examples.churn import generate, write  # noqa: E402
from infra.config import StackConfig  # noqa: E402
from infra.flywheel import flywheel_stack  # noqa: E402
from infra.local import LocalCloud  # noqa: E402
from shared.metadata import RunStatus  # noqa: E402
from shared.services import Services, services  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent
MODEL = "churn"


def chapter(number: int, title: str, *lines: str) -> None:
    click.echo()
    click.secho(f"{number}. {title}", bold=True, fg="cyan")
    for line in lines:
        click.echo(f"   {line}")


def follow(svc: Services, path: Path, expect: RunStatus | None = None) -> actions.RunView:
    pushed = actions.push(svc, path, MODEL)
    click.echo(f"   pushed {pushed.uri}")
    click.echo(f"   run {pushed.run_id}")
    view = actions.wait_for_run(svc, pushed.run_id, lambda line: click.echo("   " + line))
    click.echo()
    click.echo("\n".join("   " + line for line in render.run_details(view).splitlines()))
    if expect is not None and view.run.status is not expect:
        raise SystemExit(f"demo: expected the run to end {expect.value}, it ended {view.run.status.value}")
    return view


def main() -> None:
    started = time.monotonic()
    config = StackConfig.from_stack_file("dev").model_copy(update={"log_level": "ERROR"})
    cloud = LocalCloud(flywheel_stack(config), config)
    workdir = Path(tempfile.mkdtemp(prefix="flywheel-demo-"))
    click.secho("Flywheel demo: continuous training on a local cloud", bold=True)
    with cloud.in_process():
        svc = services()
        chapter(
            1,
            "A local cloud, provisioned from the same spec `pulumi up` deploys",
            f"buckets   {', '.join(cloud.names.buckets.values())}",
            f"tables    {', '.join(cloud.names.tables.values())}",
            f"functions {', '.join(cloud.names.functions.values())}",
            f"pipeline  {cloud.names.state_machine}",
        )

        chapter(
            2,
            "A data contract says what the churn data must look like and how to judge a model",
            "flywheel contract put examples/churn.yaml",
        )
        contract, _ = actions.contract_put(svc, EXAMPLES / "churn.yaml")
        click.echo(
            f"   stored: {contract.task.value} of {contract.target!r} "
            f"from {len(contract.features)} features, {contract.training.estimator};\n"
            f"   gates {contract.gates.model_dump()}"
        )

        january = workdir / "churn-2026-01.csv"
        write(generate(4000, seed=1, start="2026-01-01", days=31), january)
        chapter(
            3,
            "January's data arrives: the first model goes to production",
            "An S3 event starts the pipeline: Validate → Train → Evaluate → Gate → Register → Promote.",
        )
        follow(svc, january, RunStatus.SUCCEEDED)

        february = workdir / "churn-2026-02.csv"
        write(generate(4000, seed=2, start="2026-02-01", days=28), february)
        chapter(
            4,
            "February's data arrives: v2 is trained on both months and judged against v1 on the same holdout",
            "The gate promotes it only if it clears the floors and does not fall behind production.",
        )
        follow(svc, february)

        broken = workdir / "churn-2026-03-broken.csv"
        frame = generate(400, seed=3, start="2026-03-01", days=5)
        frame.loc[frame.index[:7], "plan"] = "platinum"
        frame["tenure_months"] = frame["tenure_months"].astype(object)
        frame.loc[frame.index[7:12], "tenure_months"] = "unknown"
        frame = frame.drop(columns=["churned"])
        write(frame, broken)
        chapter(
            5,
            "A malformed file arrives: a plan that does not exist, text in a number, the target missing",
            "It is quarantined beside a report of every problem; production is untouched.",
        )
        follow(svc, broken, RunStatus.FAILED)

        chapter(6, "The model's versions", f"flywheel models {MODEL}")
        click.echo(
            "\n".join("   " + line for line in render.models_table(actions.models(svc, MODEL)).splitlines())
        )

        production = svc.registry.get_model_version_by_alias(MODEL, "production")
        latest = max(v.version for v in svc.registry.search_model_versions(name=MODEL))
        chapter(7, f"Where v{latest} came from", f"flywheel lineage {MODEL}:{latest}")
        view = actions.lineage(svc, f"{MODEL}:{latest}")
        click.echo("\n".join("   " + line for line in render.lineage_text(view).splitlines()))

        api_url = cloud.start_gateway()
        customers = [
            {
                "customer_id": "C-new-1",
                "tenure_months": 3,
                "monthly_charges": 89.0,
                "plan": "basic",
                "region": "south",
                "autopay": False,
                "support_calls": 6,
            },
            {
                "customer_id": "C-new-2",
                "tenure_months": 60,
                "monthly_charges": 45.5,
                "plan": "pro",
                "region": "north",
                "autopay": True,
                "support_calls": 0,
            },
        ]
        chapter(
            8,
            "The production model answers over HTTP (the HTTP API, served locally as API Gateway would)",
            f"POST {api_url}/models/{MODEL}/predict",
            "flywheel predict churn '{\"tenure_months\": 3, ...}'   # the same, from the command line",
        )
        answer = post_json(predict_url(api_url, MODEL), {"instances": customers})
        click.echo(f"   answered by {answer['model']} v{answer['version']} ({answer['flavor']} flavour)")
        click.echo("\n".join("   " + line for line in render.predictions_table(answer).splitlines()))
        click.echo("   Each row's request_id is how its true outcome is attached later, as a label.")
        bad = dict(customers[0], plan="platinum", tenure_months="three")
        try:
            post_json(predict_url(api_url, MODEL), {"instances": [bad]})
        except RequestRefusedError as refused:
            click.echo(f"   a malformed request is refused with {refused.status} and every problem:")
            for problem in refused.problems:
                click.echo(f"     row {problem.get('row')} {problem.get('field')}: {problem.get('problem')}")

        click.echo()
        click.secho(
            f"Done in {time.monotonic() - started:.0f}s: v{production.version} serves production. "
            "Run `make local` to keep a local cloud up and drive it with the flywheel command.",
            bold=True,
        )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
