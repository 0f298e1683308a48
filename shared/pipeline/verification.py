"""Verification: proof that a registered version runs on the serving path, before it is promoted.

Three checks, through the same code the ``predict`` function runs:

1. **load** — the version is loaded as ``predict`` loads it (its flavour, the sha256 check, the signature);
2. **smoke** — holdout rows are sent to the ``predict`` function as real HTTP API (payload v2) events
   pinned to the version, and its answers must equal the offline predictions (labels identical,
   probabilities within 1e-4; regression values within the packaging tolerance);
3. **load test** — a bounded number of one-row requests at a bounded concurrency, recording p50/p95/p99
   latency and the error rate.

The contract's ``serving:`` gates (``max_p99_ms``, ``max_error_rate``) then pass or fail the candidate, with
the measured figures in the reasons. The result is stored in the version's runtime metrics.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from shared.ml.features import BOOLEAN, CATEGORICAL
from shared.pipeline.policy import ServingGates
from shared.registry import ModelVersion
from shared.serving.runtime import Signature, load_served_model
from shared.storage import ObjectStore

PROBABILITY_TOLERANCE = 1e-4
VALUE_RTOL = 1e-4

# An HTTP API v2 event in, the function's proxy response out.
Invoke = Callable[[dict[str, Any]], dict[str, Any]]


class Latency(BaseModel):
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float


class Verification(BaseModel):
    passed: bool
    reasons: list[str]
    version: int
    flavor: str
    load_seconds: float
    smoke_rows: int
    smoke_mismatches: int
    smoke_max_difference: float | None = None
    requests: int
    concurrency: int
    errors: int
    error_rate: float
    latency: Latency | None = None
    gates: dict[str, float] = Field(default_factory=dict)
    at: datetime


def http_event(
    model: str,
    version: int,
    rows: Sequence[Mapping[str, Any]],
    stage_host: str = "verify.local",
    source: str = "verify",
) -> dict[str, Any]:
    """``POST /models/{model}/predict?version=N`` as API Gateway's HTTP API delivers it (payload v2)."""
    now = datetime.now(UTC)
    return {
        "version": "2.0",
        "routeKey": "POST /models/{model}/predict",
        "rawPath": f"/models/{model}/predict",
        "rawQueryString": f"version={version}",
        # x-flywheel-source: captures of Flywheel's own requests are kept apart from clients'.
        "headers": {
            "content-type": "application/json",
            "host": stage_host,
            "user-agent": "flywheel-verify",
            "x-flywheel-source": source,
        },
        "queryStringParameters": {"version": str(version)},
        "pathParameters": {"model": model},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "verify",
            "domainName": stage_host,
            "domainPrefix": "verify",
            "http": {
                "method": "POST",
                "path": f"/models/{model}/predict",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "flywheel-verify",
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "POST /models/{model}/predict",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "body": json.dumps({"instances": list(rows)}),
        "isBase64Encoded": False,
    }


def request_rows(records: Sequence[Mapping[str, Any]], signature: Signature) -> list[dict[str, Any]]:
    """Holdout rows as a client would send them: the features only, JSON types, missing as null."""
    rows = []
    for record in records:
        row: dict[str, Any] = {}
        for feature in signature.features:
            value = record.get(feature.name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                row[feature.name] = None
            elif feature.type == BOOLEAN:
                row[feature.name] = bool(value)
            elif feature.type == CATEGORICAL:
                row[feature.name] = str(value)
            else:
                row[feature.name] = float(value)
        rows.append(row)
    return rows


def verify(
    version: ModelVersion,
    objects: ObjectStore,
    sample: Sequence[Mapping[str, Any]],
    offline: Sequence[Mapping[str, Any]],
    invoke: Invoke,
    gates: ServingGates,
) -> Verification:
    """Run the three checks for ``version``; ``offline`` holds the offline prediction for each sample row
    (``{"prediction": ..., "probabilities": {class: p} | None}``)."""
    served = load_served_model(version, objects)
    rows = request_rows(sample, served.signature)
    reasons: list[str] = []

    answer = _call(invoke, http_event(version.name, version.version, rows))
    mismatches, difference = len(rows), None
    if answer.status == 200 and isinstance(answer.body, dict):
        mismatches, difference = _compare(answer.body, offline)
        if answer.body.get("version") != version.version:
            reasons.append(
                f"the smoke request was answered by v{answer.body.get('version')}, not v{version.version}"
            )
    else:
        reasons.append(f"the smoke request failed with {answer.status}: {_short(answer.body)}")
    if mismatches:
        reasons.append(f"served predictions differ from the offline ones on {mismatches} of {len(rows)} rows")

    latencies, errors = _load_test(invoke, version, rows, gates)
    requests = len(latencies)
    error_rate = errors / requests if requests else 1.0
    latency = _latency(latencies) if latencies else None
    if latency is not None and latency.p99_ms > gates.max_p99_ms:
        reasons.append(f"p99 latency {latency.p99_ms:.1f} ms is over the gate {gates.max_p99_ms:g} ms")
    if error_rate > gates.max_error_rate:
        reasons.append(
            f"error rate {error_rate:.2%} ({errors} of {requests}) "
            f"is over the gate {gates.max_error_rate:.2%}"
        )
    passed = not reasons
    if passed:
        reasons.append(
            f"loaded in {served.load_seconds * 1000:.0f} ms ({served.flavor}); {len(rows)} smoke rows "
            f"match the offline predictions; p99 {latency.p99_ms if latency else 0:.1f} ms "
            f"over {requests} requests (gate {gates.max_p99_ms:g} ms), error rate {error_rate:.2%}"
        )
    return Verification(
        passed=passed,
        reasons=reasons,
        version=version.version,
        flavor=served.flavor,
        load_seconds=served.load_seconds,
        smoke_rows=len(rows),
        smoke_mismatches=mismatches,
        smoke_max_difference=difference,
        requests=requests,
        concurrency=gates.load_concurrency,
        errors=errors,
        error_rate=error_rate,
        latency=latency,
        gates={"max_p99_ms": gates.max_p99_ms, "max_error_rate": gates.max_error_rate},
        at=datetime.now(UTC),
    )


class _Answer(BaseModel):
    status: int
    body: Any = None


def _call(invoke: Invoke, event: dict[str, Any]) -> _Answer:
    try:
        response = invoke(event)
    except Exception as exc:  # an invocation that fails is an error the gates count, not a crash here
        return _Answer(status=599, body=f"{type(exc).__name__}: {exc}")
    status = int(response.get("statusCode", 502))
    body = response.get("body")
    try:
        parsed = json.loads(body) if isinstance(body, str) else body
    except ValueError:
        parsed = body
    return _Answer(status=status, body=parsed)


def _compare(answer: Mapping[str, Any], offline: Sequence[Mapping[str, Any]]) -> tuple[int, float | None]:
    served = answer.get("predictions") or []
    probabilities = answer.get("probabilities") or [None] * len(served)
    if len(served) != len(offline):
        return len(offline), None
    mismatches, worst = 0, 0.0
    for got, got_probabilities, expected in zip(served, probabilities, offline, strict=True):
        want = expected["prediction"]
        if isinstance(want, float) or isinstance(got, float):
            gap = abs(float(got) - float(want))
            worst = max(worst, gap)
            if gap > VALUE_RTOL * max(1.0, abs(float(want))):
                mismatches += 1
            continue
        if str(got) != str(want):
            mismatches += 1
        for label, p in (expected.get("probabilities") or {}).items():
            gap = abs(float((got_probabilities or {}).get(label, math.inf)) - float(p))
            worst = max(worst, gap)
            if gap > PROBABILITY_TOLERANCE:
                mismatches += 1
                break
    return mismatches, worst


def _load_test(
    invoke: Invoke, version: ModelVersion, rows: list[dict[str, Any]], gates: ServingGates
) -> tuple[list[float], int]:
    events = [
        http_event(version.name, version.version, [rows[i % len(rows)]]) for i in range(gates.load_requests)
    ]

    def one(event: dict[str, Any]) -> tuple[float, bool]:
        started = time.perf_counter()
        answer = _call(invoke, event)
        return (time.perf_counter() - started) * 1000, answer.status != 200

    with ThreadPoolExecutor(max_workers=gates.load_concurrency, thread_name_prefix="verify") as pool:
        results = list(pool.map(one, events))
    return [ms for ms, _ in results], sum(1 for _, failed in results if failed)


def _latency(samples: list[float]) -> Latency:
    ordered = sorted(samples)

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return Latency(
        p50_ms=quantile(0.50), p95_ms=quantile(0.95), p99_ms=quantile(0.99), mean_ms=statistics.fmean(ordered)
    )


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
