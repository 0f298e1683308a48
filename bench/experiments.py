"""What an experiment's fan-out buys, and whether the search is worth running.

Two questions, each answered on Flywheel's real path: a fresh local cloud (in-process moto, Flywheel's own
spec), the data uploaded under ``incoming/<model>/`` and trained once with the contract's own parameters
(that version goes to production), then experiments started as ``flywheel experiment`` starts them (a
request to the trigger function) and followed to their end.

- **Fan-out**: the same 16 trials (a 4 x 4 grid: ``learning_rate`` x ``max_depth`` of the churn model's
  histogram gradient boosting, scored on one validation split) on 100,000 churn rows, once with
  ``parallel: 4`` (four iterations of each Map state at once) and once with ``parallel: 1`` (one after
  another), in the same run. Printed: each search's wall time (the experiment's start to its last trial)
  and the whole run's (the trigger to Finish: refit, Evaluate, Register, Verify, Promote), their ratio,
  the trials completed and the best metric of each, and whether both saw identical trials with identical
  metrics. The speed-up is bounded by the machine's CPUs (printed): four trials on two cores are two at a
  time. Each trial's process is held to ``--threads`` OpenMP threads (``OMP_NUM_THREADS``, one by
  default) so that four concurrent fits do not oversubscribe the cores; in AWS each trial is a Lambda of
  its own with its own CPUs.
- **Worth running**: the winner is refitted on the whole training window and Evaluate scores it beside
  production — the contract's default parameters — on the same holdout; both figures are printed with
  the difference. On the demo's churn data (the experiment above) and on scikit-learn's diabetes
  regression data (442 rows, ten numeric features, ``load_diabetes``; rmse, lower is better) searched by
  TPE over the same model.

    python bench/experiments.py                 # 100,000 churn rows, 16 trials, parallel 4 vs 1
    python bench/experiments.py --quick         # 20,000 rows, a smoke run
    python bench/experiments.py --rows 250000 --parallel 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before numpy and scikit-learn load OpenMP: the trials' processes inherit this environment.
_threads = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), None)
if "--threads" in sys.argv[:-1]:
    _threads = sys.argv[sys.argv.index("--threads") + 1]
os.environ["OMP_NUM_THREADS"] = _threads or "1"
# The functions log and emit metrics as they would in Lambda; the report is easier to read without them.
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
warnings.filterwarnings("ignore", module="aws_lambda_powertools")

import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from sklearn.datasets import load_diabetes  # noqa: E402

from cli import actions  # noqa: E402
from examples.churn import generate, write  # noqa: E402
from infra.config import StackConfig  # noqa: E402
from infra.flywheel import flywheel_stack  # noqa: E402
from infra.local import LocalCloud  # noqa: E402
from infra.local.output import WithoutMetrics  # noqa: E402
from shared.experiments import Trial, TrialStatus  # noqa: E402
from shared.featurestore.contracts import put_contract  # noqa: E402
from shared.metadata import RunReason  # noqa: E402
from shared.pipeline.trigger import RunRequest  # noqa: E402
from shared.services import Services, services  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 3600.0
GRID = {
    "learning_rate": {"choice": [0.03, 0.1, 0.2, 0.4]},
    "max_depth": {"choice": [2, 3, 5, 8]},
}
DIABETES_SPACE = {
    "learning_rate": {"float": [0.01, 0.3], "log": True},
    "max_depth": {"int": [2, 6]},
    "min_samples_leaf": {"int": [5, 60]},
    "l2_regularization": {"float": [0.001, 10.0], "log": True},
}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- contracts and data ---------------------------------------------------------------------------------


def churn_contract(experiment: dict[str, Any] | None) -> dict[str, Any]:
    """The demo's churn contract, trained on the whole file (its 28-day window would drop the generated
    file's first days), with ``experiment`` as its search."""
    contract: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "churn.yaml").read_text())
    contract["training"]["window"] = {"files": 20}
    if experiment is not None:
        contract["experiment"] = experiment
    return contract


def diabetes_frame() -> pd.DataFrame:
    """scikit-learn's diabetes data with the id and event time a contract asks for: one row an hour."""
    data = load_diabetes(as_frame=True)
    frame = data.frame.rename(columns={"target": "progression"})
    frame.insert(0, "patient_id", [f"p{i:04d}" for i in range(len(frame))])
    frame.insert(1, "event_time", pd.date_range("2026-01-01", periods=len(frame), freq="h", tz="UTC"))
    return frame


def diabetes_contract(frame: pd.DataFrame, experiment: dict[str, Any] | None) -> dict[str, Any]:
    features = {
        name: {
            "type": "numeric",
            "min": float(frame[name].min()) - 1.0,
            "max": float(frame[name].max()) + 1.0,
        }
        for name in frame.columns
        if name not in {"patient_id", "event_time", "progression"}
    }
    contract: dict[str, Any] = {
        "model": "diabetes",
        "description": "Disease progression a year after baseline (scikit-learn's load_diabetes).",
        "task": "regression",
        "target": "progression",
        "id_column": "patient_id",
        "timestamp_column": "event_time",
        "features": features,
        "min_rows": 100,
        "training": {
            "estimator": "hist_gradient_boosting",
            "params": {"max_iter": 200},
            "holdout_fraction": 0.2,
            "window": {"files": 20},
            "seed": 42,
        },
        "gates": {"min": {"r2": 0.0}, "max_regression": {"rmse": 5.0}},
    }
    if experiment is not None:
        contract["experiment"] = experiment
    return contract


# --- one model on a fresh local cloud ---------------------------------------------------------------------


@dataclass
class Search:
    parallel: int
    search_s: float
    run_s: float
    status: str
    trials: list[Trial]
    best_value: float | None
    higher_is_better: bool
    candidate: dict[str, float]  # the winner, refitted, on the holdout
    production: dict[str, float]  # the contract's default parameters, on the same holdout
    reasons: list[str]

    @property
    def completed(self) -> list[Trial]:
        return [t for t in self.trials if t.status is TrialStatus.SUCCEEDED]

    def mean(self, field: str) -> float:
        values = [getattr(t, field) for t in self.completed if getattr(t, field) is not None]
        return sum(values) / len(values) if values else math.nan

    def scores(self) -> dict[tuple[tuple[str, Any], ...], float | None]:
        return {tuple(sorted(t.params.items())): t.value for t in self.trials}


class Model:
    """One model's data and production version on a fresh local cloud, to run experiments against."""

    def __init__(self, cloud: LocalCloud, svc: Services, name: str) -> None:
        self.cloud, self.svc, self.name = cloud, svc, name
        self._trigger = cloud.names.functions["trigger"]

    def put(self, contract: dict[str, Any]) -> None:
        put_contract(self.svc.objects, self.svc.settings, yaml.safe_dump(contract, sort_keys=False))

    def first_version(self, csv: Path) -> None:
        """Upload ``csv`` and follow the run it starts: the contract's own parameters, into production."""
        s3 = self.cloud.client("s3")
        key = f"incoming/{self.name}/{csv.name}"
        say(f"  {self.name}: put_object {key} ({csv.stat().st_size / 2**20:.1f} MiB)")
        s3.put_object(Bucket=self.svc.settings.data_bucket, Key=key, Body=csv.read_bytes())
        [run] = self.svc.metadata.list_runs(self.name)
        view = actions.wait_for_run(self.svc, run.run_id, lambda line: None, timeout_s=RUN_TIMEOUT_S)
        if not view.run.outcome.get("promoted"):
            raise SystemExit(f"bench: the first {self.name} run did not reach production: {view.run.outcome}")
        say(f"  {self.name}: version {view.run.outcome['version']} (default parameters) in production")

    def experiment(self, parallel: int) -> Search:
        request = RunRequest(model=self.name, reason=RunReason.EXPERIMENT, requested_by="bench")
        started = time.perf_counter()
        run_id = actions.ask_trigger(lambda p: self.cloud.invoke(self._trigger, p)[1], request).run_id
        view = actions.wait_for_run(
            self.svc, run_id, lambda line: say(f"    {line}"), timeout_s=RUN_TIMEOUT_S
        )
        run_s = time.perf_counter() - started
        found = self.svc.experiments.get(run_id)
        trials = self.svc.experiments.trials(run_id)
        search_s = ((found.ended_at or found.started_at) - found.started_at).total_seconds()
        described = self.cloud.client("stepfunctions").describe_execution(executionArn=view.run.execution_arn)
        output = json.loads(described.get("output") or "{}")
        evaluation = output.get("evaluation") or {}
        outcome = view.run.outcome
        return Search(
            parallel=parallel,
            search_s=search_s,
            run_s=run_s,
            status=str(view.run.status.value),
            trials=trials,
            best_value=found.best_value,
            higher_is_better=found.higher_is_better,
            candidate=dict(evaluation.get("metrics") or outcome.get("metrics") or {}),
            production=dict(evaluation.get("champion_metrics") or {}),
            reasons=list(outcome.get("gate_reasons") or []),
        )


def fresh_cloud() -> tuple[LocalCloud, Any]:
    config = StackConfig.from_stack_file("dev").model_copy(update={"log_level": "ERROR"})
    cloud = LocalCloud(flywheel_stack(config), config)
    return cloud, cloud.in_process()


# --- the report -------------------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def fan_out_report(rows: int, searches: list[Search]) -> bool:
    sequential = next(s for s in searches if s.parallel == 1)
    fanned = next(s for s in searches if s.parallel != 1)
    metric = "roc_auc"
    print()
    print(
        f"experiment fan-out: {len(fanned.trials)} trials on {rows:,} churn rows, parallel {fanned.parallel} "
        f"vs 1 ({os.cpu_count()} CPUs, {os.environ['OMP_NUM_THREADS']} OpenMP thread(s) per trial)"
    )
    print(
        f"  {'parallel':>8}  {'search s':>8}  {'run s':>7}  {'trial s':>7}  {'fit s':>5}  {'trials ok':>9}  "
        f"best {metric:<8}  status"
    )
    for s in (fanned, sequential):
        print(
            f"  {s.parallel:>8}  {s.search_s:8.1f}  {s.run_s:7.1f}  {s.mean('seconds'):7.2f}  "
            f"{s.mean('fit_seconds'):5.2f}  {len(s.completed):>4}/{len(s.trials):<4}  "
            f"{fmt(s.best_value):>13}  {s.status}"
        )
    print("  (trial s: a trial's process, start to result, mean; fit s: its fits, mean)")
    print(
        f"  speed-up: search {sequential.search_s / fanned.search_s:.2f}x, "
        f"whole run {sequential.run_s / fanned.run_s:.2f}x"
    )
    a, b = fanned.scores(), sequential.scores()
    same_trials = a.keys() == b.keys()
    same_values = same_trials and all(
        math.isclose(x, y) if x is not None and y is not None else x is y
        for x, y in ((a[k], b[k]) for k in a)
    )
    verdict = (
        "identical trials, identical metrics"
        if same_values
        else ("identical trials, metrics DIFFER" if same_trials else "the trials DIFFER")
    )
    print(f"  {verdict}")
    return same_values and all(len(s.completed) == len(s.trials) for s in searches)


def worth_report(name: str, metric: str, search: Search) -> None:
    candidate, production = search.candidate.get(metric), search.production.get(metric)
    if candidate is None or production is None:
        print(f"  {name:<9} {metric}: no comparison on the holdout ({search.status}: {search.reasons})")
        return
    gain = candidate - production if search.higher_is_better else production - candidate
    print(
        f"  {name:<9} {metric:<8} default params {production:.4f}  best trial {candidate:.4f}  "
        f"{'better' if gain > 0 else 'NOT better'} by {abs(gain):.4f} "
        f"({abs(gain) / abs(production):.1%}; {len(search.completed)} trials, {search.status})"
    )


# --- main ---------------------------------------------------------------------------------------------


def churn_part(rows: int, parallel: int, workdir: Path) -> tuple[bool, Search]:
    csv = workdir / f"churn-{rows}.csv"
    say(f"churn: generating {rows:,} rows")
    write(generate(rows, seed=1), csv)
    block = {
        "metric": "roc_auc",
        "trials": 16,
        "strategy": "grid",
        "validation_fraction": 0.2,
        "trial_timeout_seconds": 840,
        "space": GRID,
    }
    cloud, inside = fresh_cloud()
    searches: list[Search] = []
    with inside:
        model = Model(cloud, services(), "churn")
        model.put(churn_contract(None))
        model.first_version(csv)
        for width in (parallel, 1):
            model.put(churn_contract(block | {"parallel": width}))
            say(f"churn: experiment, 16 trials, parallel {width}")
            searches.append(model.experiment(width))
            done = searches[-1]
            say(f"churn: parallel {width}: search {done.search_s:.1f} s, run {done.run_s:.1f} s")
    return fan_out_report(rows, searches), searches[0]


def diabetes_part(workdir: Path) -> Search:
    frame = diabetes_frame()
    csv = workdir / "diabetes.csv"
    frame.to_csv(csv, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    block = {
        "metric": "rmse",
        "trials": 24,
        "parallel": 4,
        "strategy": "tpe",
        "cv": {"folds": 3},
        "trial_timeout_seconds": 300,
        "space": DIABETES_SPACE,
    }
    cloud, inside = fresh_cloud()
    with inside:
        model = Model(cloud, services(), "diabetes")
        model.put(diabetes_contract(frame, None))
        model.first_version(csv)
        model.put(diabetes_contract(frame, block))
        say("diabetes: experiment, 24 trials, parallel 4, TPE, 3-fold cross-validation")
        return model.experiment(4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="churn rows (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a smoke run at 20,000 rows")
    parser.add_argument("--parallel", type=int, default=4, help="trials at a time (default %(default)s)")
    parser.add_argument(
        "--threads", type=int, default=1, help="OpenMP threads in each trial's process (default %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.parallel < 2 or args.threads < 1:
        parser.error("--parallel must be at least 2 and --threads at least 1")
    rows = 20_000 if args.quick else args.rows
    with tempfile.TemporaryDirectory(prefix="flywheel-bench-") as folder:
        identical, churn = churn_part(rows, args.parallel, Path(folder))
        diabetes = diabetes_part(Path(folder))
    print()
    print("worth running: the best trial, refitted, against the contract's default parameters (production)")
    print("on the same holdout")
    # Reported, not failed on: a search that finds nothing better is a finding, and the gate stops it.
    worth_report("churn", "roc_auc", churn)
    worth_report("diabetes", "rmse", diabetes)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.stdout = WithoutMetrics(sys.stdout)
    sys.exit(main())
