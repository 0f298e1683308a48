"""Verification: proof that a registered version runs on the serving path, before and after it is promoted.

Three checks, through the same code the ``predict`` function runs:

1. **load** — the version is loaded as ``predict`` loads it (its flavour, the sha256 check, the signature);
2. **smoke** — holdout rows are sent to the ``predict`` function as real HTTP API (payload v2) events
   pinned to the version, and its answers must equal the offline predictions (labels identical,
   probabilities within 1e-4; regression values within the packaging tolerance);
3. **load test** — a bounded number of one-row requests at a bounded concurrency, recording p50/p95/p99
   latency and the error rate.

The contract's ``serving:`` gates (``max_p99_ms``, ``max_error_rate``) then pass or fail the candidate, with
the measured figures in the reasons. The result is stored in the version's runtime metrics.

The steps: ``Verify`` runs the three checks on the registered candidate and works out the environment's
policy for ``Promote``; ``PostDeployCheck`` asks the live route (no version pinned) after a promotion and,
if production does not answer well, puts the previous version back.
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

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field

from shared.data.contract import ServingGates
from shared.data.datasets import read_parquet
from shared.errors import FlywheelError, NotFoundError
from shared.featurestore.contracts import load_training_contract, servable_rows
from shared.layout import RunArtifact
from shared.ml.features import BOOLEAN, CATEGORICAL
from shared.ml.training import PROBABILITY_PREFIX, predict_frame
from shared.observability import logger, metrics
from shared.pipeline.controls import environment_policy
from shared.pipeline.delivery import STAGING_ALIAS
from shared.pipeline.policy import STAGING_PASSES_KEY, VERIFICATION_KEY, staging_passes
from shared.pipeline.runs import recorded_step
from shared.pipeline.state import PIPELINE_ACTOR, RunState
from shared.pipeline.steps import load_model
from shared.registry import ModelVersion, Stage
from shared.services import Services
from shared.serving.capture import INTERNAL_SOURCE_FIELD
from shared.serving.runtime import Signature, load_served_model
from shared.settings import PolicyKind
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
        # Captures of Flywheel's own requests are kept apart from clients': a direct invocation's own field,
        # which no HTTP request can set (see shared.serving.capture).
        INTERNAL_SOURCE_FIELD: source,
        "headers": {
            "content-type": "application/json",
            "host": stage_host,
            "user-agent": "flywheel-verify",
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


# --- the steps: Verify (after Register) and PostDeployCheck (after Promote) --------------------------------


class PostDeployCheckError(FlywheelError):
    """Production did not answer well after a promotion; the previous version was put back."""


def predict_invoker(svc: Services) -> Invoke:
    """The ``predict`` function, asked with an HTTP API event as API Gateway would ask it; a failed
    invocation answers as API Gateway would (502)."""
    if not svc.settings.predict_function:
        raise FlywheelError("the stack declares no predict function to verify against")
    predict = svc.function(svc.settings.predict_function)

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        answer = predict.invoke(event)
        if answer.error is None and isinstance(answer.payload, dict):
            return answer.payload
        return {"statusCode": 502, "body": json.dumps(answer.payload)}

    return invoke


def verify_version(
    svc: Services, model: str, number: int, invoke: Invoke, run_id: str | None = None
) -> Verification:
    """Verify ``model`` v``number`` on the serving path and record the figures on the version.

    A pass while the version holds the staging alias counts toward ``min_staging_successes``.
    """
    version = svc.registry.get_model_version(model, number)
    contract = load_training_contract(svc.objects, svc.settings, model).contract  # the views' features too
    holdout = _holdout_of(svc, version)
    sample = holdout.head(contract.serving.smoke_rows)
    offline = _offline_predictions(svc, version, sample, contract)
    result = verify(version, svc.objects, sample.to_dict("records"), offline, invoke, contract.serving)
    update: dict[str, Any] = {
        VERIFICATION_KEY: result.model_dump(mode="json"),
        "load_seconds": result.load_seconds,
        "error_rate": result.error_rate,
    }
    if result.latency is not None:
        update |= {
            "p50_ms": result.latency.p50_ms,
            "p95_ms": result.latency.p95_ms,
            "p99_ms": result.latency.p99_ms,
        }
    if result.passed and _holds_staging(svc, version):
        update[STAGING_PASSES_KEY] = staging_passes(version) + 1
    svc.registry.update_runtime_metrics(model, number, update)
    metrics.add_metric(
        name="VerificationPassed" if result.passed else "VerificationFailed", unit=MetricUnit.Count, value=1
    )
    logger.info(
        "version verified",
        extra={"version": number, "passed": result.passed, "reasons": result.reasons, "run_id": run_id},
    )
    return result


def _holds_staging(svc: Services, version: ModelVersion) -> bool:
    try:
        return svc.registry.get_alias(version.name, STAGING_ALIAS).version == version.version
    except NotFoundError:
        return False


def _holdout_of(svc: Services, version: ModelVersion) -> Any:
    artifact = svc.metadata.get_artifact(f"{version.run_id}/{RunArtifact.HOLDOUT}")
    # Only rows a client could send: a view's required feature may be missing in a holdout row.
    return servable_rows(read_parquet(svc.objects, artifact.uri, artifact.sha256), version.signature)


def _offline_predictions(
    svc: Services, version: ModelVersion, sample: Any, contract: Any
) -> list[dict[str, Any]]:
    """What the trained pipeline itself says about the sample: the answer the serving path must give."""
    frame = predict_frame(
        load_model(svc, version.artifact, version.code_artifact, model=version.name), sample, contract
    )
    columns = [c for c in frame.columns if c.startswith(PROBABILITY_PREFIX)]
    return [
        {
            "prediction": row["prediction"],
            "probabilities": {c.removeprefix(PROBABILITY_PREFIX): float(row[c]) for c in columns} or None,
        }
        for row in frame.to_dict("records")
    ]


class VerifyRequest(BaseModel):
    """``flywheel verify MODEL:VERSION``: verify a registered version outside a run."""

    model_config = ConfigDict(extra="forbid")
    model: str
    version: int


def verify_on_request(request: VerifyRequest, svc: Services, invoke: Invoke) -> Verification:
    return verify_version(svc, request.model, request.version, invoke)


def verify_step(state: RunState, svc: Services, invoke: Invoke) -> RunState:
    """Prove the registered candidate on the serving path; a failure rejects it with the figures."""
    number: int = state.require("version")
    with recorded_step(svc, state, "verify"):
        result = verify_version(svc, state.model, number, invoke, state.run_id)
        policy = environment_policy(svc, state.model)
        held = state.evaluation.held if state.evaluation else None
        if held and policy.policy is not PolicyKind.APPROVAL:
            # Evaluate could not compare the candidate with production: no policy promotes it unseen.
            policy = policy.model_copy(update={"policy": PolicyKind.APPROVAL})
            logger.info("candidate held for a person", extra={"version": number, "why": held})
        if not result.passed:
            svc.registry.transition_stage(
                state.model,
                number,
                Stage.REJECTED,
                actor=PIPELINE_ACTOR,
                reason="failed verification on the serving path: " + "; ".join(result.reasons),
                run_id=state.run_id,
            )
        return state.model_copy(
            update={
                "verification": {"passed": result.passed, "reasons": result.reasons},
                "policy": {
                    **policy.model_dump(mode="json"),
                    "approval_timeout_seconds": policy.approval_timeout_seconds,
                },
            }
        )


def post_deploy_check_step(
    state: RunState, svc: Services, invoke: Invoke, sleep: Callable[[float], None] = time.sleep
) -> RunState:
    """Ask the live route (no version pinned) until it answers with the new version; if it does not answer
    well, put the previous production version back and fail the run with why."""
    number: int = state.require("version")
    with recorded_step(svc, state, "post-deploy-check"):
        version = svc.registry.get_model_version(state.model, number)
        rows = request_rows(
            _holdout_of(svc, version).head(3).to_dict("records"), Signature.from_dict(version.signature)
        )
        deadline = time.monotonic() + svc.settings.alias_refresh_seconds + 15
        problem = ""
        while True:
            event = http_event(state.model, number, rows, source="post-deploy-check")
            event["rawQueryString"], event["queryStringParameters"] = "", None
            response = invoke(event)
            status = int(response.get("statusCode", 502))
            body = _json(response.get("body"))
            if (
                status == 200
                and body.get("version") == number
                and len(body.get("predictions", [])) == len(rows)
            ):
                logger.info("post-deploy check passed", extra={"version": number})
                return state.model_copy(update={"post_deploy": {"passed": True}})
            problem = (
                f"the live route answered {status}: {body.get('message', body)}"
                if status != 200
                else f"the live route still answers v{body.get('version')}, not v{number}"
            )
            if status != 200 or time.monotonic() > deadline:
                break
            sleep(1.0)
        previous = state.previous_version
        if previous is None:
            raise PostDeployCheckError(
                f"post-deploy check failed and there is no previous version to restore: {problem}"
            )
        svc.registry.promote(
            state.model,
            previous,
            actor=PIPELINE_ACTOR,
            reason=f"automatic rollback: post-deploy check of v{number} failed ({problem})",
            run_id=state.run_id,
            expected_version=number,
        )
        # Archived by the rollback, it would be what a bare `flywheel rollback` restores: reject it instead.
        svc.registry.transition_stage(
            state.model,
            number,
            Stage.REJECTED,
            actor=PIPELINE_ACTOR,
            reason=f"failed its post-deploy check ({problem})",
            run_id=state.run_id,
        )
        metrics.add_metric(name="RolledBack", unit=MetricUnit.Count, value=1)
        raise PostDeployCheckError(
            f"post-deploy check of v{number} failed ({problem}); production rolled back to v{previous}"
        )


def _json(body: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(body) if isinstance(body, str) else body
    except ValueError:
        return {"message": str(body)}
    return parsed if isinstance(parsed, dict) else {"message": str(parsed)}
