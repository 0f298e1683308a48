"""What batch scoring costs: the score function's path against a bare onnxruntime loop over the same files.

Same model, same files, same machine, same run. A churn model (histogram gradient boosting) is trained
through the real pipeline on the local cloud (moto in this process, Flywheel's dev stack) and registered in
the ONNX flavour. ``--files`` CSV files of ``--rows`` rows each (``examples.churn.generate``, rows the
model never saw, labelled: the target column is in the files) are put under ``score-inputs/``. Then, one
thread on both sides:

- **baseline**: for each file, its bytes (already in memory) read by pyarrow's CSV reader, one numpy array
  per feature (float32 numerics, NaN for missing; categoricals as text, the missing sentinel for empty),
  one ``session.run`` of the same ONNX bytes in the same session options, labels picked from the
  probabilities. No checking, no writing: the least any scorer must do.
- **Flywheel**: :func:`shared.scoring.run.score_file` for each file, as a Distributed Map child runs it: the
  object read from S3 (moto) into columns, every row checked against the signature (a column at a time),
  the valid rows' columns predicted through :class:`~shared.serving.runtime.ServedModel`, the predictions
  written as Parquet to S3 with their request ids, every row's capture line written (kept in memory here:
  the capture stream's cost is the network's), the file's outcome written. The model is loaded before
  timing, as in a warm function; its load (sha256 check, session, warm-up) is shown apart.

Ratio = Flywheel rows/s ÷ baseline rows/s (goal: at least 0.7), best of ``--repeats`` passes over the files.

    python bench/batch_scoring.py             # 8 files of 25,000 rows
    python bench/batch_scoring.py --quick     # 4 files of 5,000 rows
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
import uuid
import warnings
from typing import Any

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
warnings.filterwarnings("ignore", module="aws_lambda_powertools")

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from examples.churn import generate  # noqa: E402
from infra.config import StackConfig  # noqa: E402
from infra.flywheel import flywheel_stack  # noqa: E402
from infra.local import LocalCloud  # noqa: E402
from shared.featurestore.contracts import put_contract  # noqa: E402
from shared.ml.features import MISSING  # noqa: E402
from shared.registry import PRODUCTION_ALIAS  # noqa: E402
from shared.scoring.job import ScoreItem  # noqa: E402
from shared.scoring.run import ScoringRuntime, score_file  # noqa: E402
from shared.services import Services, services  # noqa: E402
from shared.serving.capture import InMemoryCaptureSink  # noqa: E402
from shared.serving.runtime import ModelCache, Signature, onnx_session  # noqa: E402
from shared.storage import ObjectRef  # noqa: E402
from tests.fixtures.services import churn_contract  # noqa: E402

MODEL = "churn"
TRAINING_ROWS = 4000


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def train(cloud: LocalCloud, svc: Services) -> int:
    """v1 of churn through the whole pipeline, in production."""
    contract = churn_contract(
        training={"estimator": "hist_gradient_boosting", "params": {"max_iter": 100}},
        serving={"max_p99_ms": 60_000.0},
    )
    put_contract(svc.objects, svc.settings, contract.to_yaml())
    csv = generate(TRAINING_ROWS, 1).to_csv(index=False).encode()
    cloud.client("s3").put_object(Bucket=svc.settings.data_bucket, Key=f"incoming/{MODEL}/a.csv", Body=csv)
    [run] = svc.metadata.list_runs(MODEL)
    described = cloud.wait_for_execution(run.execution_arn or "", timeout_s=600)
    if described["status"] != "SUCCEEDED":
        raise SystemExit(f"the pipeline ended {described['status']}: {described.get('cause')}")
    return svc.registry.get_alias(MODEL, PRODUCTION_ALIAS).version


def bare_scorer(onnx: bytes, signature: Signature, classes: list[str]) -> Any:
    """The baseline: pyarrow's CSV reader, one array per feature, one session.run per file."""
    import pyarrow as pa
    from pyarrow import csv

    session = onnx_session(onnx)
    text = {f.name: pa.string() for f in signature.features if f.type == "categorical"}
    options = csv.ConvertOptions(column_types=text)

    def score(body: bytes) -> int:
        table = csv.read_csv(io.BytesIO(body), convert_options=options)
        feed: dict[str, np.ndarray] = {}
        for feature in signature.features:
            column = table.column(feature.name)
            if feature.type == "categorical":
                values = np.array([v or MISSING for v in column.to_pylist()], dtype=object)
            else:
                values = column.cast(pa.float32()).to_numpy(zero_copy_only=False).astype(np.float32)
            feed[feature.name] = values.reshape(-1, 1)
        (probabilities,) = session.run(["probabilities"], feed)
        labels = [classes[i] for i in np.asarray(probabilities).argmax(axis=1)]
        return len(labels)

    return score


def best_of(repeats: int, run: Any) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 files of 5,000 rows")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--rows", type=int, default=25_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    files, rows = (4, 5000) if args.quick else (args.files, args.rows)

    config = StackConfig.from_stack_file("dev").model_copy(update={"log_level": "ERROR"})
    cloud = LocalCloud(flywheel_stack(config), config)
    with (
        cloud.in_process(),
        open(os.devnull, "w") as devnull,  # noqa: PTH123
        contextlib.redirect_stdout(devnull),  # the functions' metrics, printed as in Lambda
        threadpool_limits(limits=1),
    ):
        svc = services()
        say(f"training churn on {TRAINING_ROWS} rows through the pipeline")
        version_number = train(cloud, svc)
        version = svc.registry.get_model_version(MODEL, version_number)
        if version.onnx_artifact is None:
            raise SystemExit(f"v{version_number} has no ONNX flavour: {version.flavor_reason}")

        say(f"writing {files} files of {rows} rows under score-inputs/")
        bucket, prefix = svc.settings.data_bucket, f"score-inputs/{MODEL}/bench/"
        bodies = []
        for index in range(files):
            body = generate(rows, 100 + index).to_csv(index=False).encode()
            svc.objects.put(ObjectRef(bucket, f"{prefix}part-{index:03d}.csv"), body, "text/csv")
            bodies.append(body)

        models = ModelCache(svc.registry, svc.objects)
        started = time.perf_counter()
        served = models.resolve(MODEL, version=version_number)
        load_s = time.perf_counter() - started
        captures = InMemoryCaptureSink()
        runtime = ScoringRuntime(models, captures)

        def flywheel() -> None:
            job = f"bench-{uuid.uuid4().hex[:12]}"  # a fresh job each pass: nothing is found done already
            for index in range(files):
                item = ScoreItem(
                    job_id=job,
                    model=MODEL,
                    version=version_number,
                    bucket=bucket,
                    prefix=prefix,
                    key=f"{prefix}part-{index:03d}.csv",
                    index=index,
                )
                outcome = score_file(svc, item, runtime)
                assert outcome["status"] == "scored", outcome

        onnx = svc.objects.get(ObjectRef.parse(version.onnx_artifact.uri)).body
        bare = bare_scorer(onnx, served.signature, list(served.classes or []))

        def baseline() -> None:
            assert sum(bare(body) for body in bodies) == files * rows

        say("scoring: baseline, then Flywheel")
        baseline_s = best_of(args.repeats, baseline)
        flywheel_s = best_of(args.repeats, flywheel)

    total = files * rows
    ratio = baseline_s / flywheel_s
    print()
    print(
        f"batch scoring: {files} files x {rows} rows, churn v{version_number} (ONNX, histogram gradient "
        f"boosting), one thread, best of {args.repeats} "
        f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)"
    )
    print(f"  bare onnxruntime loop   {baseline_s:8.2f} s   {total / baseline_s:10.0f} rows/s")
    print(f"  Flywheel score_file     {flywheel_s:8.2f} s   {total / flywheel_s:10.0f} rows/s")
    print(f"  model load (once)       {load_s * 1000:8.1f} ms")
    print(f"  throughput ratio        {ratio:8.2f}x   goal >= 0.70x: {'met' if ratio >= 0.7 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
