"""``make demo``: Flywheel's loop on this machine, told as a story.

Everything runs in this process on the local cloud (moto): the same stack spec, state machine and Lambda
handlers that ``pulumi up`` deploys. The demo calls the same functions as the ``flywheel`` command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

# The functions log and emit metrics as they would in Lambda; the story is easier to read without them.
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "CRITICAL")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
warnings.filterwarnings("ignore", module="aws_lambda_powertools")

import click  # noqa: E402
import pandas as pd  # noqa: E402

from cli import actions, code_change, experiments, features, monitoring, render  # noqa: E402
from cli.api import RequestRefusedError, post_json, predict_url  # noqa: E402
from cli.experiment_page import render_experiment_html  # noqa: E402
from examples.churn import generate, write  # noqa: E402
from examples.profiles import current_profiles, profile_updates  # noqa: E402
from infra.config import StackConfig  # noqa: E402
from infra.flywheel import flywheel_stack  # noqa: E402
from infra.local import LocalCloud  # noqa: E402
from infra.local.output import WithoutMetrics  # noqa: E402
from shared.env_names import EnvVar  # noqa: E402
from shared.metadata import RunReason, RunStatus  # noqa: E402
from shared.pipeline.trigger import RunRequest  # noqa: E402
from shared.services import Services, services  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
MODEL = "churn"
KINDS = ("--kind", "unit", "--kind", "component")  # the demo's project test: its integration test is a loop


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
    echo_block(render.run_details(view))
    if expect is not None and view.run.status is not expect:
        raise SystemExit(f"demo: expected the run to end {expect.value}, it ended {view.run.status.value}")
    return view


def monitoring_chapters(cloud: LocalCloud, svc: Services, api_url: str, workdir: Path) -> str | None:
    """The closed loop: shifted traffic, late labels, the monitor, a retrained model."""
    march = generate(
        1200, seed=9, start=TODAY - timedelta(days=7), days=7, covariate_shift=0.6, concept_drift=1.0
    )
    chapter(
        9,
        "This week: the customers change, and so does what makes them leave",
        "1,200 requests arrive with shifted features (covariate shift) and, unknown to v2, a new rule",
        "linking features to churn (concept drift). Each answer carries a request id.",
    )
    request_ids: list[str] = []
    features = [c for c in march.columns if c not in ("event_time", "churned")]
    for start in range(0, len(march), 100):
        batch = march.iloc[start : start + 100][features]
        rows = batch.astype(object).where(batch.notna(), None).to_dict("records")
        request_ids += post_json(predict_url(api_url, MODEL), {"instances": rows})["request_ids"]
    click.echo(f"   {len(request_ids)} predictions served and captured (captures/{MODEL}/...)")

    labels = workdir / "labels-this-week.csv"
    pd.DataFrame({"request_id": request_ids, "churned": march["churned"].tolist()}).to_csv(
        labels, index=False
    )
    chapter(
        10,
        "Weeks later the true outcomes arrive as labels, joined to the predictions by request id",
        f"flywheel labels push {labels.name} --model {MODEL}",
    )
    outcome = monitoring.wait_for_labels(svc, monitoring.push_labels(svc, labels, MODEL))
    echo_block(monitoring.labels_text(outcome))

    chapter(
        11,
        "The monitor compares the window with v2's training profile and its live accuracy with the holdout",
        f"flywheel monitor {MODEL} --wait",
    )
    found = monitoring.run_monitor(svc.settings, monitoring.invoker(svc.settings), MODEL, "demo")
    echo_block(monitoring.outcome_text(found))
    if not found.run_id:
        return None
    view = actions.wait_for_run(svc, found.run_id, lambda line: click.echo("   " + line))
    click.echo()
    echo_block(render.run_details(view))

    latest = max(v.version for v in svc.registry.search_model_versions(name=MODEL))
    chapter(
        12,
        f"v{latest} came from the monitor's evidence and the feedback data production saw",
        f"flywheel lineage {MODEL}:{latest}    flywheel report {MODEL} --out ./report",
    )
    click.echo(
        "\n".join(
            "   " + line
            for line in render.lineage_text(actions.lineage(svc, f"{MODEL}:{latest}")).splitlines()
        )
    )
    report_dir = workdir / "report"
    written = monitoring.download_report(svc, monitoring.reports(svc, MODEL).latest, report_dir)
    click.echo(
        f"   the drift report, to open in a browser: {report_dir / 'report.html'} ({len(written)} files)"
    )
    return found.run_id


def history_chapters(svc: Services, workdir: Path) -> None:
    """Three months of history, ending a month ago: this week's traffic is what production sees now."""
    first_start, second_start = TODAY - timedelta(days=91), TODAY - timedelta(days=60)
    first = workdir / f"churn-{first_start:%Y-%m}.csv"
    write(generate(4000, seed=1, start=first_start, days=31), first)
    chapter(
        3,
        f"{first_start:%B}'s data arrives: the first model goes to production",
        "An S3 event starts the pipeline: Validate → Train → Evaluate → Gate → Register → Verify on the",
        "serving path → Promote (this stack's policy: auto) → PostDeployCheck.",
    )
    follow(svc, first, RunStatus.SUCCEEDED)

    second = workdir / f"churn-{second_start:%Y-%m}.csv"
    write(generate(4000, seed=2, start=second_start, days=28), second)
    chapter(
        4,
        f"{second_start:%B}'s data arrives: v2 trains on the last four weeks and is judged against v1",
        "on the same holdout. The gate promotes it only if it clears the floors and does not fall behind.",
    )
    follow(svc, second)

    broken = workdir / "churn-broken.csv"
    frame = generate(400, seed=3, start=TODAY - timedelta(days=20), days=5)
    frame.loc[frame.index[:7], "plan"] = "platinum"
    frame["tenure_months"] = frame["tenure_months"].astype(object)
    frame.loc[frame.index[7:12], "tenure_months"] = "unknown"
    write(frame.drop(columns=["churned"]), broken)
    chapter(
        5,
        "A malformed file arrives: a plan that does not exist, text in a number, the target missing",
        "It is quarantined beside a report of every problem; production is untouched.",
    )
    follow(svc, broken, RunStatus.FAILED)

    chapter(6, "The model's versions", f"flywheel models {MODEL}")
    echo_block(render.models_table(actions.models(svc, MODEL)))
    latest = max(v.version for v in svc.registry.search_model_versions(name=MODEL))
    chapter(7, f"Where v{latest} came from", f"flywheel lineage {MODEL}:{latest}")
    echo_block(render.lineage_text(actions.lineage(svc, f"{MODEL}:{latest}")))


CUSTOMERS = [
    {"customer_id": "C-new-1", "tenure_months": 3, "monthly_charges": 89.0, "plan": "basic",
     "region": "south", "autopay": False, "support_calls": 6},
    {"customer_id": "C-new-2", "tenure_months": 60, "monthly_charges": 45.5, "plan": "pro",
     "region": "north", "autopay": True, "support_calls": 0},
]  # fmt: skip


def serving_chapter(api_url: str) -> None:
    chapter(
        8,
        "The production model answers over HTTP (the HTTP API, served locally as API Gateway would)",
        f"POST {api_url}/models/{MODEL}/predict",
        "flywheel predict churn '{\"tenure_months\": 3, ...}'   # the same, from the command line",
    )
    answer = post_json(predict_url(api_url, MODEL), {"instances": CUSTOMERS})
    click.echo(f"   answered by {answer['model']} v{answer['version']} ({answer['flavor']} flavour)")
    echo_block(render.predictions_table(answer))
    click.echo("   Each row's request_id is how its true outcome is attached later, as a label.")
    bad = dict(CUSTOMERS[0], plan="platinum", tenure_months="three")
    try:
        post_json(predict_url(api_url, MODEL), {"instances": [bad]})
    except RequestRefusedError as refused:
        click.echo(f"   a malformed request is refused with {refused.status} and every problem:")
        for problem in refused.problems:
            click.echo(f"     row {problem.get('row')} {problem.get('field')}: {problem.get('problem')}")


def echo_block(text: str) -> None:
    click.echo("\n".join("   " + line for line in text.splitlines()))


def feature_store_chapter(svc: Services, api_url: str, workdir: Path) -> None:
    """A second model that reads the customer profile from the feature store, and answers by key alone."""
    chapter(
        13,
        "The feature store: the CRM's customer profile, shared by training and serving",
        "flywheel features put examples/customer_profile.yaml",
        "flywheel features push profiles.csv --view customer_profile",
        "flywheel contract put examples/churn-profile.yaml   # churn + feature_views: [customer_profile]",
    )
    features.put(svc, EXAMPLES / "customer_profile.yaml")
    # Profile updates run up to 20 days past each row: a join that leaked the future would use them.
    customers = generate(3000, seed=21, start=TODAY - timedelta(days=42), days=21)
    history = workdir / "profiles.csv"
    write(profile_updates(customers, seed=21), history)
    arrival = features.wait_for_features(svc, features.push(svc, history, "customer_profile"))
    echo_block(features.arrival_text(arrival))
    contract, _ = actions.contract_put(svc, EXAMPLES / "churn-profile.yaml")
    data = workdir / "churn-profile.csv"
    write(customers, data)
    click.echo("   Each training row gets the profile as it was at the row's time, never a later one:")
    pushed = actions.push(svc, data, contract.model)
    view = actions.wait_for_run(svc, pushed.run_id, lambda line: click.echo("   " + line))
    click.echo(f"   {contract.model}: run {view.run.status.value}, v{view.run.outcome.get('version')}")
    if not view.run.outcome.get("promoted"):
        echo_block(render.run_details(view))
        raise click.ClickException(f"{contract.model} v1 did not reach production; the run above says why")

    # Today's profiles for a few customers, then a request that names only the customer.
    today = workdir / "profiles-today.csv"
    asking = customers.head(3)
    write(current_profiles(asking, at=TODAY, seed=22), today)
    features.wait_for_features(svc, features.push(svc, today, "customer_profile"))
    row = asking.iloc[0]
    request = {k: row[k] for k in ("customer_id", "tenure_months", "plan", "autopay", "support_calls")}
    request |= {"monthly_charges": None if pd.isna(row["monthly_charges"]) else row["monthly_charges"]}
    request |= {"region": None if pd.isna(row["region"]) else row["region"]}
    answer = post_json(predict_url(api_url, contract.model), {"instances": [request]})
    click.echo(
        f"   POST /models/{contract.model}/predict with {request['customer_id']} and no profile fields:"
    )
    echo_block(render.predictions_table(answer))
    click.echo("   lifetime_value and segment came from the online store, as of today.")


# What a team appends to churn.yaml to search it (README: "Experiments"); four trials at a time.
EXPERIMENT_BLOCK = """
experiment:
  metric: roc_auc
  trials: 12
  parallel: 4
  strategy: tpe
  cv: {folds: 3}
  trial_timeout_seconds: 120
  space:
    learning_rate: {float: [0.02, 0.3], log: true}
    max_depth: {int: [2, 8]}
    min_samples_leaf: {int: [5, 80]}
    l2_regularization: {choice: [0.0, 0.1, 1.0]}
"""


def experiment_chapter(cloud: LocalCloud, svc: Services, workdir: Path) -> None:
    """An experiment: the contract's search space, trials fanned out by the Map state, the winner judged."""
    contract_file = workdir / "churn.yaml"
    contract_file.write_text((EXAMPLES / "churn.yaml").read_text() + EXPERIMENT_BLOCK)
    chapter(
        14,
        "An experiment: a hyperparameter search in the pipeline, its winner judged like any candidate",
        "churn.yaml gains an experiment: block (12 trials, 4 at a time, TPE, 3-fold cross-validation on",
        "the training window, never the holdout); each batch of trials is a Map state's iterations.",
        "flywheel contract put churn.yaml && flywheel experiment churn --wait",
    )
    echo_block(EXPERIMENT_BLOCK.strip("\n"))
    actions.contract_put(svc, contract_file)
    trigger = cloud.names.functions["trigger"]
    request = RunRequest(model=MODEL, reason=RunReason.EXPERIMENT, requested_by="demo")
    run_id = actions.ask_trigger(lambda payload: cloud.invoke(trigger, payload)[1], request).run_id
    click.echo(f"   experiment {run_id}")
    view = actions.wait_for_run(svc, run_id, lambda line: click.echo("   " + line))
    click.echo()
    echo_block(render.run_details(view))
    found = svc.experiments.get(run_id)
    page = workdir / f"experiment-{MODEL}.html"
    page.write_text(render_experiment_html(found, svc.experiments.trials(run_id)), encoding="utf-8")
    click.echo(f"\n   flywheel experiment show {run_id} --html {page.name}")
    shown = experiments.experiment_text(found, svc.experiments.trials(run_id)).splitlines()
    echo_block("\n".join(shown[: 6 + 5]))  # the summary and the five best trials
    click.echo(f"   the page, to open in a browser: {page}")
    version = view.run.outcome.get("version")
    if version is not None:
        click.echo()
        echo_block(render.lineage_text(actions.lineage(svc, f"{MODEL}:{version}")))


def new_idea_chapter(cloud: LocalCloud, svc: Services, models: Path) -> None:
    """The second act: not new data but a new idea — the team's own transformer and model, in a project."""
    project = models / MODEL
    chapter(
        15,
        "A new idea: the team's own feature code and model, tested, delivered and judged like new data",
        f"{project.relative_to(models.parent)}/pipeline.py: PerTenureMonth (charges and support calls per",
        "month of tenure, a transformer of the team's own) and AdaBoost, which no built-in estimator offers",
        "flywheel test churn --kind unit --kind component",
    )
    tested = subprocess.run(  # noqa: S603 (this interpreter, the flywheel command)
        [sys.executable, "-m", "cli.main", "test", MODEL, "--models-dir", str(models), *KINDS],
        capture_output=True,
        text=True,
        check=False,
    )
    summary = tested.stdout.rsplit(f"{MODEL}:", 1)[-1].strip("\n")
    echo_block(summary)
    if tested.returncode != 0:
        raise SystemExit(f"demo: the project's tests failed:\n{tested.stdout[-3000:]}")
    click.echo("\n   flywheel deliver --model churn --wait   # what the deploy job runs after `pulumi up`")
    (found,) = code_change.find_projects(models, [MODEL])
    trigger = cloud.names.functions["trigger"]
    delivered = code_change.deliver_project(
        svc,
        lambda payload: cloud.invoke(trigger, payload)[1],
        found,
        by="demo",
        commit=None,
        force=False,
        dry_run=False,
        progress=lambda line: click.echo("   " + line.strip()),
    )
    if delivered.run_id is None:
        raise SystemExit(f"demo: no code_change run was started ({delivered.detail})")
    code_change.follow(svc, delivered, lambda line: click.echo("   " + line), timeout_s=600)
    click.echo(f"   {code_change.verdict(delivered)}")
    for reason in delivered.reasons:
        click.echo(f"     - {reason}")
    if delivered.failed:
        raise SystemExit("demo: the code_change run failed; the lines above say why")
    view = actions.show_run(svc, delivered.run_id)
    click.echo()
    echo_block(render.run_details(view))
    version = view.run.outcome.get("version")
    if version is not None:
        click.echo()
        echo_block(render.lineage_text(actions.lineage(svc, f"{MODEL}:{version}")))


def main() -> None:
    started = time.monotonic()
    config = StackConfig.from_stack_file("dev").model_copy(update={"log_level": "ERROR"})
    cloud = LocalCloud(flywheel_stack(config), config)
    workdir = Path(tempfile.mkdtemp(prefix="flywheel-demo-"))
    # The second act changes nothing in the checkout: Train reads a copy of the churn project.
    models = workdir / "models"
    shutil.copytree(EXAMPLES.parent / "models" / MODEL, models / MODEL)
    cloud.environment[EnvVar.MODELS_DIR.value] = str(models)
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
        history_chapters(svc, workdir)
        api_url = cloud.start_gateway()
        serving_chapter(api_url)
        retrained = monitoring_chapters(cloud, svc, api_url, workdir)
        feature_store_chapter(svc, api_url, workdir)
        experiment_chapter(cloud, svc, workdir)
        new_idea_chapter(cloud, svc, models)
        production = svc.registry.get_model_version_by_alias(MODEL, "production")
        click.echo()
        click.secho(
            f"Done in {time.monotonic() - started:.0f}s: v{production.version} serves production"
            + (f" (retrained by run {retrained})" if retrained else "")
            + ". Run `make local` to keep a local cloud up and drive it with the flywheel command.",
            bold=True,
        )


if __name__ == "__main__":
    sys.stdout = WithoutMetrics(sys.stdout)
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
