"""Serving one model: behind ``mlflow models serve`` and behind Flywheel's predict handler, same machine.

One churn model (histogram gradient boosting, ``examples.churn.generate(4000, 1)``) is trained through
Flywheel's pipeline on the local cloud (moto's server on loopback, the gateway serving the routes, as
``make local`` runs it) and registered in the ONNX flavour. The very same fitted scikit-learn pipeline
(read back from the registry, sha256-checked) is saved with ``mlflow.sklearn.save_model`` and served by
``mlflow models serve --env-manager local`` (its uvicorn/FastAPI scoring server, one worker, MLflow's
default). Then, on the same row (``generate(100, 2)``'s first):

- **over HTTP**: ``--requests`` one-row requests from a client process at 1 and at 8 concurrent clients
  with keep-alive, p50, p99 and requests/s, against ``POST /invocations`` (``dataframe_records``) and
  against Flywheel's ``POST /models/churn/predict`` through the local gateway (which invokes the function
  through Lambda's API, as API Gateway does, in the same process as moto);
- **in process**: Flywheel's whole predict handler on an HTTP API event (routing, validation against the
  contract's signature, the ONNX model, the capture record kept in memory, metrics) against MLflow's pyfunc
  (``mlflow.pyfunc.load_model(...).predict`` on a one-row DataFrame built from the same JSON row).

MLflow is given the row as the fitted pipeline takes it (the boolean as 0/1, a missing category as
Flywheel's placeholder): its scoring server checks nothing of the row unless a signature is logged, where
Flywheel's handler validates every field against the contract first.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from bench.anchors.common import Timing, say
from bench.serving import HTTP_CLIENT, Context, captures_in_memory, free_port, http_api_event, median_ms
from examples.churn import generate, request_rows
from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.local import LocalCloud
from shared.data.contract import DataContract, parse_contract
from shared.featurestore.contracts import put_contract
from shared.ml.training import model_from_bytes, prepare_features
from shared.registry import PRODUCTION_ALIAS
from shared.services import services
from shared.storage import ObjectRef

ROOT = Path(__file__).resolve().parents[2]
MODEL = "churn"
CONCURRENCY = (1, 8)


def contract() -> DataContract:
    document = parse_contract((ROOT / "examples" / "churn.yaml").read_text()).model_dump(
        mode="json", exclude_none=True
    )
    document["training"] = {**document["training"], "window": {"files": 20}}
    return DataContract.model_validate(document)


def train(cloud: LocalCloud) -> tuple[Any, DataContract]:
    svc = services()
    rules, _ = put_contract(svc.objects, svc.settings, contract().to_yaml())
    body = generate(4000, 1).to_csv(index=False).encode()
    cloud.client("s3").put_object(Bucket=svc.settings.data_bucket, Key=f"incoming/{MODEL}/a.csv", Body=body)
    [run] = svc.metadata.list_runs(MODEL)
    described = cloud.wait_for_execution(run.execution_arn, timeout_s=600)
    if described["status"] != "SUCCEEDED":
        raise SystemExit(f"the pipeline ended {described['status']}: {described.get('cause')}")
    if PRODUCTION_ALIAS not in {a.alias for a in svc.registry.list_aliases(MODEL)}:
        raise SystemExit(f"v1 was not promoted: {svc.metadata.get_run(run.run_id).outcome}")
    version = svc.registry.get_model_version(MODEL, 1)
    body = svc.objects.get(ObjectRef.parse(version.artifact.uri)).body
    say(f"serving: churn v1 in production, {version.serving_flavor.value} flavour")
    return model_from_bytes(body, version.artifact.sha256), rules


@contextlib.contextmanager
def mlflow_server(model_dir: Path) -> Iterator[str]:
    port = free_port()
    command = [
        *(sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model_dir)),
        *("--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)),
    ]
    # MLflow starts uvicorn by name: this environment's bin/ must come first on PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    environment = {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": f"file://{model_dir.parent / 'runs'}"}
    server = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    error = server.stderr.read().decode()[-2000:] if server.stderr else ""
                    raise SystemExit(f"mlflow models serve did not start:\n{error}") from None
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def http(url: str, path: str, body: dict[str, Any], requests: int, concurrency: int) -> dict[str, float]:
    host, port = url.removeprefix("http://").split(":")
    spec = [host, int(port), path, json.dumps(body), requests, concurrency]
    out = subprocess.run(
        [sys.executable, "-c", HTTP_CLIENT, json.dumps(spec)], capture_output=True, text=True, check=True
    )
    measured = json.loads(out.stdout)
    bad = [s for s in measured["statuses"] if s != 200]
    if bad:
        raise SystemExit(f"{url}{path}: {len(bad)} answers were not 200 ({sorted(set(bad))})")
    times = sorted(t * 1000 for t in measured["times"])
    return {
        "p50": statistics.median(times),
        "p99": times[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)],
        "rps": requests / measured["elapsed"],
    }


def best_of(runs: list[dict[str, float]]) -> tuple[dict[str, float], str]:
    """The run with the best p50, and how the p50 and the throughput varied across runs."""
    best = min(runs, key=lambda r: r["p50"])
    if len(runs) < 2:
        return best, "1 run"
    p50s, rps = [r["p50"] for r in runs], [r["rps"] for r in runs]
    return (
        best,
        f"p50 {min(p50s):.2f}-{max(p50s):.2f} ms, {min(rps):.0f}-{max(rps):.0f} req/s over {len(runs)}",
    )


def compare(requests: int, repeat: int) -> list[str]:
    import mlflow.pyfunc
    import mlflow.sklearn

    from functions.predict.handler import handler

    lines: list[str] = []
    config = StackConfig.from_stack_file("dev").model_copy(update={"log_level": "ERROR"})
    cloud = LocalCloud(flywheel_stack(config), config)
    with (
        cloud.serving(port=free_port(), run_scheduler=False),
        tempfile.TemporaryDirectory(prefix="flywheel-anchor-") as folder,
        open(os.devnull, "w") as devnull,  # noqa: PTH123
        contextlib.redirect_stdout(devnull),  # the functions' metrics, printed as in Lambda
    ):
        pipeline, rules = train(cloud)
        row = request_rows(generate(100, 2))[0]
        prepared = prepare_features(pd.DataFrame([row]), rules)
        record = {k: (v.item() if hasattr(v, "item") else v) for k, v in prepared.iloc[0].to_dict().items()}
        model_dir = Path(folder) / "model"
        # MLflow's default format (skops) refuses types it has not been told to trust; this process made
        # the file, so the types it reports are trusted.
        import skops.io

        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
        mlflow.sklearn.save_model(pipeline, str(model_dir), skops_trusted_types=trusted)
        pyfunc = mlflow.pyfunc.load_model(str(model_dir))
        expected = [str(v) for v in pipeline.predict(prepared)]
        event = http_api_event(MODEL, json.dumps({"instances": [row]}))
        answer = handler(event, Context())
        served = [str(p) for p in json.loads(answer["body"])["predictions"]]
        if answer["statusCode"] != 200 or served != expected:
            raise SystemExit(f"Flywheel answered {answer['statusCode']} {served}, scikit-learn {expected}")

        say("serving: in process, Flywheel's handler vs MLflow's pyfunc")
        flywheel_ms, mlflow_ms = [], []
        with threadpool_limits(limits=1), captures_in_memory():
            for _ in range(repeat):
                flywheel_ms.append(median_ms(lambda: handler(event, Context()), 1.0, 4000))
                mlflow_ms.append(
                    median_ms(lambda: pyfunc.predict(pd.DataFrame.from_records([record])), 1.0, 4000)
                )
        mine, theirs = Timing(tuple(flywheel_ms)), Timing(tuple(mlflow_ms))
        lines.append(
            f"serving in process, 1 row (median): Flywheel's whole handler {mine.best:.3f} ms, MLflow's "
            f"pyfunc {theirs.best:.3f} ms (Flywheel {theirs.best / mine.best:.1f}x faster); "
            f"spread over {repeat}: "
            f"{min(flywheel_ms):.3f}-{max(flywheel_ms):.3f} and {min(mlflow_ms):.3f}-{max(mlflow_ms):.3f} ms"
        )

        assert cloud.gateway is not None
        with mlflow_server(model_dir) as mlflow_url:
            say(f"serving: mlflow models serve at {mlflow_url}; {requests} requests per setting")
            for concurrency in CONCURRENCY:
                ours = [
                    http(
                        cloud.gateway.url,
                        f"/models/{MODEL}/predict",
                        {"instances": [row]},
                        requests,
                        concurrency,
                    )
                    for _ in range(repeat)
                ]
                peers = [
                    http(mlflow_url, "/invocations", {"dataframe_records": [record]}, requests, concurrency)
                    for _ in range(repeat)
                ]
                (f, f_spread), (m, m_spread) = best_of(ours), best_of(peers)
                lines.append(
                    f"serving over HTTP, 1 row, {concurrency} client(s): Flywheel (gateway → Lambda API → "
                    f"handler) p50 {f['p50']:.2f} ms, p99 {f['p99']:.2f} ms, {f['rps']:.0f} req/s; "
                    f"mlflow models serve p50 {m['p50']:.2f} ms, p99 {m['p99']:.2f} ms, {m['rps']:.0f} req/s "
                    f"(throughput {f['rps'] / m['rps']:.2f}x)"
                )
                lines.append(f"  spread: Flywheel {f_spread}; MLflow {m_spread}")
    return lines
