"""What the pipeline costs over doing the same work by hand.

For each size, one churn CSV is generated (``examples.churn.generate``; not timed) and then:

- **Flywheel**: a fresh local cloud (in-process moto, Flywheel's own spec) with the churn contract (its
  training window widened to the whole file); timed from ``put_object`` under ``incoming/churn/`` to the
  end of the execution the upload starts (trigger, Validate, Train, Evaluate, Gate, Register, Verify,
  Promote, PostDeployCheck, Finish), with each step's duration from the metadata store and the fit's own
  seconds, so the time can be placed. A run that ends without the model in production is reported with
  the reason, not counted;
- **baseline**: a bare script doing the same work directly: ``pd.read_csv`` with the contract's dtypes,
  the contract's checks as pandas one-liners (required columns, nulls, ranges, allowed values, booleans,
  target values, duplicate ids, minimum rows), the same holdout (the latest 20% by time), the same model
  (``shared.ml.training.build_pipeline``, reused so that the fits are identical work: same preprocessing,
  estimator and seed) fitted on the same rows and scored with the same metrics. The table says whether
  both sides ended with identical metrics.

The run is the model's first, so Evaluate has no production model to score beside the candidate, and the
baseline none either. Handlers are imported before timing: this measures warm functions, not cold starts.

Threads: both sides run under ``threadpoolctl`` with the same BLAS/OpenMP thread count, one by default. The
ratio is about overhead, not parallel scaling, and one thread keeps it steady on a shared machine (two
OpenMP threads on two busy cores can slow a fit several-fold from one run to the next). Each side runs in
a thread of its own, as the local runtime runs each function (see :func:`in_own_thread` for why that
matters). ``--repeat N`` keeps the fastest of N runs of each side.

    python bench/pipeline_overhead.py                     # 100,000 and 1,000,000 rows
    python bench/pipeline_overhead.py --quick             # 20,000 rows, a smoke run
    python bench/pipeline_overhead.py --rows 250000 --threads 2 --repeat 3
    python bench/pipeline_overhead.py --engine fargate --threads 2   # 10,000,000 rows on the task path

``--engine fargate`` gives the contract ``compute: {engine: fargate, cpu: 4096, memory: 30720}``: Validate
and Train run as Fargate tasks, which the local cloud runs as processes of their own (``infra/local/
containers.py``) reaching moto through its server on a loopback port, as a task reaches AWS over the
network. A task's process is not a function's thread, so ``--threads`` cannot limit it: it uses every CPU's
OpenMP thread, as a task does on its own vCPUs; pass ``--threads`` equal to the CPUs for a like-for-like
baseline.

Goals: Flywheel at most 1.5x the baseline at 1,000,000 rows on the Lambda path, and at 10,000,000 rows on
the task path.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The functions log and emit metrics as they would in Lambda; the table is easier to read without them.
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
warnings.filterwarnings("ignore", module="aws_lambda_powertools")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score  # noqa: E402
from threadpoolctl import ThreadpoolController, threadpool_limits  # noqa: E402

from examples.churn import generate, write  # noqa: E402
from infra.config import StackConfig  # noqa: E402
from infra.flywheel import flywheel_stack  # noqa: E402
from infra.local import LocalCloud  # noqa: E402
from infra.local.output import WithoutMetrics  # noqa: E402
from shared.data.contract import DataContract, FeatureType, parse_contract  # noqa: E402
from shared.featurestore.contracts import put_contract  # noqa: E402
from shared.ml.training import MISSING, build_pipeline  # noqa: E402
from shared.services import services  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "examples" / "churn.yaml"
MODEL = "churn"
DEFAULT_ROWS = (100_000, 1_000_000)
TASK_ROWS = (10_000_000,)
FARGATE = {"engine": "fargate", "cpu": 4096, "memory": 30720}
QUICK_ROWS = (20_000,)
GOAL_ROWS, GOAL_RATIO = {"lambda": 1_000_000, "fargate": 10_000_000}, 1.5
# Generous: a step that outlives its function's timeout fails the execution by itself, and that is shown.
EXECUTION_TIMEOUT_S = 3600.0
STEPS = ("validate", "train", "evaluate", "register", "verify", "promote", "post-deploy-check", "finish")


def bench_contract(engine: str = "lambda") -> DataContract:
    """The demo contract, training on the whole file (its rolling 28-day window would drop the generated
    file's first days, which the baseline reads) — both sides fit exactly the same rows."""
    contract = parse_contract(CONTRACT.read_text())
    training = contract.training.model_copy(
        update={"window": contract.training.window.model_copy(update={"days": None, "files": 20})}
    )
    placed = contract.model_copy(update={"training": training})
    if engine == "lambda":
        return placed
    document = placed.model_dump(mode="json", exclude_none=True) | {"compute": FARGATE}
    return DataContract.model_validate(document)


@dataclass
class FlywheelRun:
    seconds: float
    status: str
    upload_s: float
    steps: dict[str, float] = field(default_factory=dict)
    fit_s: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    threads_seen: dict[str, int | None] = field(default_factory=dict)


@dataclass
class BaselineRun:
    seconds: float
    phases: dict[str, float]
    metrics: dict[str, float]


@dataclass
class Measured:
    rows: int
    flywheel: FlywheelRun
    baseline: BaselineRun

    @property
    def ratio(self) -> float:
        return self.flywheel.seconds / self.baseline.seconds


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- threads ----------------------------------------------------------------------------------------------


def in_own_thread[Result](work: Callable[[], Result]) -> Result:
    """Run ``work`` in a thread of its own, as the local runtime runs each function, and return its result.

    Not a detail: libgomp throttles its spin-waiting once more OpenMP threads exist than CPUs, and the
    idle pool a thread leaves behind counts until that thread ends. Fitting in the main thread would leave
    such a pool and slow every later fit in a function's thread (4x for this model on 2 CPUs).
    """
    outcome: list[Result] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # re-raised in the caller
            failure.append(exc)

    thread = threading.Thread(target=target, name="bench-side")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def openmp_threads(controller: ThreadpoolController) -> int | None:
    """OpenMP's thread count as the calling thread sees it (its limit is per thread)."""
    counts = [i["num_threads"] for i in controller.select(internal_api="openmp").info()]
    return counts[0] if counts else None


def limit_function_threads(cloud: LocalCloud, threads: int, seen: dict[str, int | None]) -> None:
    """Make every handler call run under a limit of ``threads``, in the function's own thread.

    A limit entered in this thread would not reach OpenMP in the threads the local runtime starts, so the
    handler the runtime resolves is wrapped to enter it there. Records the OpenMP thread count each
    function saw, so the report can show both sides ran alike.

    One controller, made after the handlers are imported, serves every call: ``threadpool_limits`` would
    scan the process's libraries again each time (about 5 ms), which Verify's hundred requests to the
    predict function would add to Flywheel's side.
    """
    resolve = cloud.runtime._handler  # the runtime's handler lookup (infra/local/runtime.py)
    controller = ThreadpoolController()

    def limited(path: str) -> Callable[[Any, Any], Any]:
        handler = resolve(path)

        def run(event: Any, context: Any) -> Any:
            with controller.limit(limits=threads):
                seen[context.function_name] = openmp_threads(controller)
                return handler(event, context)

        return run

    cloud.runtime._handler = limited  # type: ignore[method-assign]


# --- Flywheel -----------------------------------------------------------------------------------------------


@contextmanager
def step_progress(svc: Any, run_id: str, started: float) -> Iterator[None]:
    """Print each step as it starts and ends, from the metadata store, while the execution runs."""
    stop = threading.Event()

    def watch() -> None:
        reported: set[tuple[str, str]] = set()
        while not stop.wait(1.0):
            try:
                steps = svc.metadata.list_steps(run_id)
            except Exception:  # progress is best effort; the measurement does not depend on it
                continue
            for step in steps:
                status = str(getattr(step.status, "value", step.status))
                if (step.name, status) not in reported:
                    reported.add((step.name, status))
                    took = f" in {step.duration_s:.1f} s" if step.duration_s is not None else ""
                    say(f"    {step.name} {status}{took} (t+{time.perf_counter() - started:.0f} s)")

    watcher = threading.Thread(target=watch, name="bench-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


def run_flywheel(csv: Path, threads: int, engine: str) -> FlywheelRun:
    config = StackConfig.from_stack_file("dev").model_copy(update={"log_level": "ERROR"})
    cloud = LocalCloud(flywheel_stack(config), config)
    seen: dict[str, int | None] = {}
    limit_function_threads(cloud, threads, seen)
    body = csv.read_bytes()
    with cloud.in_process():
        svc = services()
        put_contract(svc.objects, svc.settings, bench_contract(engine).to_yaml())
        s3 = cloud.client("s3")
        say(f"  flywheel: put_object incoming/{MODEL}/{csv.name}")
        started = time.perf_counter()
        # In-process, S3 delivers the notification before put_object returns: this includes the trigger.
        s3.put_object(Bucket=svc.settings.data_bucket, Key=f"incoming/{MODEL}/{csv.name}", Body=body)
        uploaded = time.perf_counter()
        [run] = svc.metadata.list_runs(MODEL)
        with step_progress(svc, run.run_id, started):
            described = cloud.wait_for_execution(run.execution_arn, timeout_s=EXECUTION_TIMEOUT_S)
        measured = FlywheelRun(
            seconds=time.perf_counter() - started,
            status=described["status"],
            upload_s=uploaded - started,
            threads_seen=seen,
        )
        del body
        run = svc.metadata.get_run(run.run_id)
        measured.steps = {s.name: s.duration_s or 0.0 for s in svc.metadata.list_steps(run.run_id)}
        if described["status"] != "SUCCEEDED" or run.error is not None:
            error = run.error
            measured.error = (
                f"step {error.step}: {error.type}: {error.message}"
                if error
                else str(described.get("cause") or described.get("error") or "")
            )
        else:
            outcome = run.outcome or {}
            if not outcome.get("promoted"):
                # The execution succeeded but the run did not end with the model in production: not the
                # whole pipeline, so it is not counted as a measurement of it.
                verification = outcome.get("verification") or {}
                reasons = (
                    outcome.get("gate_reasons", [])
                    if not outcome.get("gate_passed")
                    else verification.get("reasons", [])
                    if not verification.get("passed")
                    else outcome.get("promotion_refusals", [])
                )
                measured.status = str(getattr(run.status, "value", run.status)).upper()
                measured.error = "not promoted: " + "; ".join(reasons)
            measured.metrics = dict(outcome.get("metrics") or {})
            candidate = json.loads(described.get("output") or "{}").get("candidate") or {}
            measured.fit_s = candidate.get("fit_seconds")
    return measured


# --- the baseline -------------------------------------------------------------------------------------------


def run_baseline(csv: Path, contract: DataContract, threads: int) -> BaselineRun:
    features = contract.features
    numeric = [n for n, f in features.items() if f.type is FeatureType.NUMERIC]
    booleans = [n for n, f in features.items() if f.type is FeatureType.BOOLEAN]
    categorical = [n for n, f in features.items() if f.type is FeatureType.CATEGORICAL]
    ts, target, ids = contract.timestamp_column, contract.target, contract.id_column
    assert ts is not None and ids is not None, "the churn contract names its id and timestamp columns"
    phases: dict[str, float] = {}

    with threadpool_limits(limits=threads):
        clock = time.perf_counter()
        frame = pd.read_csv(
            csv,
            dtype={ids: "str", ts: "str", target: "str", **dict.fromkeys(numeric, "float64")}
            | dict.fromkeys(categorical + booleans, "str"),
        )
        frame[ts] = pd.to_datetime(frame[ts], utc=True, format="ISO8601")
        for name in booleans:
            frame[name] = frame[name].str.lower().map({"true": 1.0, "false": 0.0}).astype("float64")
        phases["read"] = time.perf_counter() - clock

        clock = time.perf_counter()
        required = [c for c in contract.columns if c not in features or not features[c].nullable]
        problems = [
            *(["columns differ from the contract"] if list(frame.columns) != contract.columns else []),
            *(["too few rows"] if len(frame) < contract.min_rows else []),
            *(f"{c}: null or not a boolean" for c in required if frame[c].isna().any()),
            *(f"{c}: below min" for c in numeric if (frame[c] < features[c].min).any()),
            *(f"{c}: above max" for c in numeric if (frame[c] > features[c].max).any()),
            *(
                f"{c}: not allowed"
                for c in categorical
                if (frame[c].notna() & ~frame[c].isin(features[c].allowed or ())).any()
            ),
            *(
                [f"{target}: not a class"]
                if (~frame[target].isin(contract.target_values or ())).any()
                else []
            ),
            *([f"{ids}: duplicate"] if frame[ids].duplicated().any() else []),
        ]
        if problems:
            raise SystemExit(f"baseline: the generated data breaks the contract: {problems}")
        phases["validate"] = time.perf_counter() - clock

        clock = time.perf_counter()
        holdout_rows = math.ceil(contract.training.holdout_fraction * len(frame))
        cutoff = frame[ts].sort_values(kind="stable").iloc[len(frame) - holdout_rows]
        in_holdout = (frame[ts] >= cutoff).to_numpy()
        x = frame[list(features)].astype(dict.fromkeys(categorical, object))
        x[categorical] = x[categorical].fillna(MISSING)
        y = frame[target].astype(object)
        phases["split"] = time.perf_counter() - clock

        clock = time.perf_counter()
        pipeline = build_pipeline(contract)
        pipeline.fit(x[~in_holdout], y[~in_holdout])
        phases["fit"] = time.perf_counter() - clock

        clock = time.perf_counter()
        truth = y[in_holdout].to_numpy()
        classes = [str(c) for c in pipeline.classes_]
        probabilities = pipeline.predict_proba(x[in_holdout])
        predicted = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
        positive = sorted(classes)[1]
        metrics = {
            "accuracy": float(accuracy_score(truth, predicted)),
            "f1": float(f1_score(truth, predicted, average="macro")),
            "roc_auc": float(roc_auc_score(truth == positive, probabilities[:, classes.index(positive)])),
            "log_loss": float(log_loss(truth, probabilities, labels=classes)),
        }
        phases["score"] = time.perf_counter() - clock
    return BaselineRun(seconds=sum(phases.values()), phases=phases, metrics=metrics)


# --- the report ---------------------------------------------------------------------------------------------


def breakdown(result: Measured) -> list[str]:
    flywheel, baseline, rows = result.flywheel, result.baseline, f"{result.rows:>9,}"
    parts = [f"upload+trigger {flywheel.upload_s:.1f}"]
    for name in STEPS:
        if name in flywheel.steps:
            fit = f" (fit {flywheel.fit_s:.1f})" if name == "train" and flywheel.fit_s is not None else ""
            parts.append(f"{name} {flywheel.steps[name]:.1f}{fit}")
    parts.append(f"between steps {flywheel.seconds - flywheel.upload_s - sum(flywheel.steps.values()):.1f}")
    lines = [
        f"  {rows}  flywheel  {' · '.join(parts)}",
        f"  {rows}  baseline  {' · '.join(f'{k} {v:.1f}' for k, v in baseline.phases.items())}",
    ]
    if flywheel.metrics:
        same = all(
            math.isclose(flywheel.metrics.get(k, math.nan), v, rel_tol=1e-9, abs_tol=1e-12)
            for k, v in baseline.metrics.items()
        )
        verdict = "identical metrics" if same else "metrics DIFFER"
        lines.append(
            f"  {rows}  {verdict}: roc_auc flywheel {flywheel.metrics.get('roc_auc', math.nan):.6f}, "
            f"baseline {baseline.metrics['roc_auc']:.6f}"
        )
    if flywheel.error:
        lines.append(f"  {rows}  flywheel {flywheel.status}: {flywheel.error[:300]}")
    return lines


def report(results: list[Measured], threads: int, repeat: int, engine: str) -> bool:
    best = f", best of {repeat}" if repeat > 1 else ""
    print()
    print(
        "pipeline overhead: Flywheel on the local cloud vs a bare pandas + scikit-learn script "
        f"({threads} thread{'s' if threads > 1 else ''} each{best})"
    )
    print(f"  {'rows':>9}  {'flywheel s':>10}  {'baseline s':>10}  {'ratio':>6}  status")
    for r in results:
        print(
            f"  {r.rows:>9,}  {r.flywheel.seconds:10.1f}  {r.baseline.seconds:10.1f}  {r.ratio:5.2f}x  "
            f"{r.flywheel.status}"
        )
    print("where the time goes (seconds)")
    for r in results:
        for line in breakdown(r):
            print(line)
    goal = next((r for r in results if r.rows == GOAL_ROWS[engine]), None)
    if goal is not None:
        met = goal.ratio <= GOAL_RATIO and goal.flywheel.status == "SUCCEEDED"
        path = "the task path (Fargate)" if engine == "fargate" else "the Lambda path"
        print(
            f"goal: at most {GOAL_RATIO}x at {GOAL_ROWS[engine]:,} rows on {path}: "
            f"{'met' if met else 'NOT met'} "
            f"({goal.ratio:.2f}x)"
        )
    return all(r.flywheel.status == "SUCCEEDED" for r in results)


# --- main ---------------------------------------------------------------------------------------------------


def measure(rows: int, csv: Path, contract: DataContract, threads: int, repeat: int, engine: str) -> Measured:
    baselines: list[BaselineRun] = []
    flywheels: list[FlywheelRun] = []
    for attempt in range(1, repeat + 1):
        of = f" ({attempt}/{repeat})" if repeat > 1 else ""
        say(f"{rows:,} rows: baseline{of}: read, validate, split, fit, score")
        baselines.append(in_own_thread(lambda: run_baseline(csv, contract, threads)))
        say(f"{rows:,} rows: baseline took {baselines[-1].seconds:.1f} s; flywheel pipeline{of}")
        flywheels.append(run_flywheel(csv, threads, engine))
        say(f"{rows:,} rows: flywheel {flywheels[-1].status} in {flywheels[-1].seconds:.1f} s")
        seen = flywheels[-1].threads_seen
        if any(count != threads for count in seen.values() if count is not None):
            say(f"  warning: functions saw OpenMP thread counts {seen}, not {threads}")
        gc.collect()
    # A failed run is the one to show; otherwise the fastest of each side.
    failed = [f for f in flywheels if f.status != "SUCCEEDED"]
    flywheel = failed[0] if failed else min(flywheels, key=lambda f: f.seconds)
    return Measured(rows, flywheel, min(baselines, key=lambda b: b.seconds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rows",
        help=f"comma-separated sizes (default {DEFAULT_ROWS} on Lambda, {TASK_ROWS} on Fargate)",
    )
    parser.add_argument("--quick", action="store_true", help=f"a smoke run at {QUICK_ROWS[0]:,} rows")
    parser.add_argument(
        "--threads", type=int, default=1, help="BLAS/OpenMP threads for each side (default %(default)s)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="keep the fastest of N runs of each side")
    parser.add_argument(
        "--engine",
        choices=("lambda", "fargate"),
        default="lambda",
        help="where Validate and Train run (default %(default)s; fargate: 10,000,000 rows by default)",
    )
    args = parser.parse_args(argv)
    if args.threads < 1 or args.repeat < 1:
        parser.error("--threads and --repeat must be at least 1")
    default = TASK_ROWS if args.engine == "fargate" else DEFAULT_ROWS
    given = tuple(int(n.replace("_", "")) for n in args.rows.split(",")) if args.rows else default
    sizes = QUICK_ROWS if args.quick else given
    contract = parse_contract(CONTRACT.read_text())
    # Warm imports, so neither side pays for loading modules the other has loaded already.
    for function in flywheel_stack(StackConfig(environment="bench")).functions:
        importlib.import_module(function.handler.rpartition(".")[0])

    results: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="flywheel-bench-") as workdir:
        for rows in sizes:
            csv = Path(workdir) / f"churn-{rows}.csv"
            say(f"{rows:,} rows: generating {csv.name}")
            write(generate(rows, seed=1), csv)
            say(f"{rows:,} rows: {csv.stat().st_size / 2**20:.0f} MiB written")
            results.append(measure(rows, csv, contract, args.threads, args.repeat, args.engine))
            csv.unlink()
    return 0 if report(results, args.threads, args.repeat, args.engine) else 1


if __name__ == "__main__":
    sys.stdout = WithoutMetrics(sys.stdout)
    sys.exit(main())
