"""Continuous delivery's rules on in-memory services: which moves the policy refuses and why, which policy
applies, what verification measures and when it fails a candidate, and how an approval is answered.

The registry's side of approvals (pending requests, decision entries) is in the registry contract
(tests/unit/test_registry.py), run on both stores; the whole flow runs on the local cloud in
tests/integration/test_delivery.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cli import stack as cli_stack
from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.names import StackNames
from shared.env_names import EnvVar
from shared.errors import ConflictError, NotFoundError, TransientError
from shared.hashing import sha256_hex
from shared.pipeline.controls import (
    WaitEndedError,
    decide_approval,
    environment_policy,
    promote_manually,
    rollback,
)
from shared.pipeline.delivery import STAGING_ALIAS, PromotionRefusedError
from shared.pipeline.intake import validate_step
from shared.pipeline.policy import STAGING_PASSES_KEY, policy_for, refusals
from shared.pipeline.state import RunState
from shared.pipeline.steps import evaluate_step, register_step, train_step
from shared.pipeline.trigger import on_new_object
from shared.pipeline.verification import _compare, _latency, verify_version
from shared.registry import (
    ArtifactRef,
    ModelVersion,
    NewModelVersion,
    PendingApproval,
    Stage,
    TransitionKind,
)
from shared.services import Services
from shared.settings import EnvironmentPolicy, PolicyKind, Settings
from tests.fixtures.services import (
    SETTINGS,
    churn_contract,
    churn_csv,
    in_memory_services,
    put_churn_contract,
    serving_invoker,
    upload,
)

pytestmark = pytest.mark.unit

FAST_TRAINING = {"estimator": "logistic_regression", "params": {"max_iter": 500}}
# The latency gate is generous unless a test sets it: tests assert behaviour, not this machine's timings.
SERVING = {"smoke_rows": 16, "load_requests": 20, "load_concurrency": 4, "max_p99_ms": 10_000.0}
Invoke = Callable[[dict[str, Any]], dict[str, Any]]


def a_version(stage: Stage = Stage.STAGING, **runtime_metrics: Any) -> ModelVersion:
    return ModelVersion(
        name="churn",
        version=4,
        created_at=datetime(2026, 3, 1, tzinfo=UTC),
        stage=stage,
        run_id="run-4",
        registered_by="pipeline",
        artifact=ArtifactRef(uri="s3://artifacts/models/churn/run-4/model.pkl", sha256="ab" * 32),
        runtime_metrics=runtime_metrics,
    )


PASSED = {"passed": True, "reasons": ["smoke rows match; p99 3.0 ms"]}
AUTO = EnvironmentPolicy()
PROD = EnvironmentPolicy(policy=PolicyKind.APPROVAL, min_staging_successes=3)


# --- refusals: one rule at a time ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", [Stage.STAGING, Stage.PRODUCTION])
@pytest.mark.parametrize("stage", [Stage.DEVELOPMENT, Stage.STAGING])
def test_a_verified_version_may_move_to_staging_or_production_under_auto(stage: Stage, target: Stage) -> None:
    assert refusals(a_version(stage, verification=PASSED), target, AUTO) == []


@pytest.mark.parametrize("target", [Stage.DEVELOPMENT, Stage.ARCHIVED, Stage.REJECTED])
def test_versions_are_promoted_to_staging_or_production_only(target: Stage) -> None:
    assert refusals(a_version(verification=PASSED), target, AUTO) == [
        f"versions are promoted to staging or production, not {target.value}"
    ]


@pytest.mark.parametrize("target", [Stage.STAGING, Stage.PRODUCTION])
def test_a_rejected_version_is_refused_everywhere(target: Stage) -> None:
    assert refusals(a_version(Stage.REJECTED, verification=PASSED), target, AUTO) == [
        "churn v4 was rejected; register a new version instead"
    ]


def test_an_archived_version_may_return_to_production_but_not_to_staging() -> None:
    archived = a_version(Stage.ARCHIVED, verification=PASSED)
    assert refusals(archived, Stage.PRODUCTION, AUTO) == []
    assert refusals(archived, Stage.STAGING, AUTO) == [
        "churn v4 is archived; roll back to it with `flywheel rollback` instead"
    ]


@pytest.mark.parametrize("target", [Stage.STAGING, Stage.PRODUCTION])
def test_a_version_never_verified_is_refused(target: Stage) -> None:
    assert refusals(a_version(), target, AUTO) == ["churn v4 has not been verified on the serving path"]
    # a malformed record is no verification either
    assert refusals(a_version(verification="passed"), target, AUTO) == [
        "churn v4 has not been verified on the serving path"
    ]


def test_a_version_that_failed_its_last_verification_is_refused_with_its_reasons() -> None:
    failed = {"passed": False, "reasons": ["p99 latency 812.0 ms is over the gate 500 ms", "error rate 5%"]}
    assert refusals(a_version(verification=failed), Stage.PRODUCTION, AUTO) == [
        "churn v4 failed its last verification (p99 latency 812.0 ms is over the gate 500 ms; error rate 5%)"
    ]
    assert refusals(a_version(verification={"passed": False}), Stage.STAGING, AUTO) == [
        "churn v4 failed its last verification (no reason recorded)"
    ]


@pytest.mark.parametrize("passes", [0, 1, 2])
def test_production_is_refused_below_min_staging_successes_with_the_count_shown(passes: int) -> None:
    version = a_version(verification=PASSED, **{STAGING_PASSES_KEY: passes})
    assert refusals(version, Stage.PRODUCTION, PROD) == [
        f"churn v4 has passed {passes} of the 3 staging verifications this environment requires before "
        "production"
    ]
    # staging is where the passes are earned: never refused for the count
    assert refusals(version, Stage.STAGING, PROD) == []


@pytest.mark.parametrize("passes", [3, 7])
def test_production_is_allowed_at_or_above_min_staging_successes(passes: int) -> None:
    version = a_version(verification=PASSED, **{STAGING_PASSES_KEY: passes})
    assert refusals(version, Stage.PRODUCTION, PROD) == []


def test_every_reason_is_given_at_once() -> None:
    assert refusals(a_version(Stage.REJECTED), Stage.PRODUCTION, PROD) == [
        "churn v4 was rejected; register a new version instead",
        "churn v4 has not been verified on the serving path",
        "churn v4 has passed 0 of the 3 staging verifications this environment requires before production",
    ]


# --- which policy applies -----------------------------------------------------------------------------------


def test_the_contract_policy_wins_over_the_stack_default_which_wins_over_auto() -> None:
    contract = {
        "prod": EnvironmentPolicy(policy=PolicyKind.APPROVAL, min_staging_successes=5),
        "dev": EnvironmentPolicy(),
    }
    stack_default = EnvironmentPolicy(policy=PolicyKind.APPROVAL, approval_timeout_hours=72)

    assert policy_for("prod", contract, stack_default) == contract["prod"]
    assert policy_for("dev", contract, stack_default) == EnvironmentPolicy()  # an explicit auto still wins
    assert policy_for("staging", contract, stack_default) == stack_default  # not in the contract
    assert policy_for("staging", contract) == EnvironmentPolicy()
    assert policy_for("staging", {}, None).policy is PolicyKind.AUTO


def test_the_service_reads_the_stack_default_from_its_settings_and_the_contract_from_the_bucket() -> None:
    """Given FLYWHEEL_PROMOTION_POLICY as every function receives it, and a contract for one model that
    sets its own policy for this environment
    When the steps ask which policy applies
    Then the contract's model gets its own, and a model whose contract is silent gets the stack's."""
    stack_json = json.dumps({"policy": "approval", "min_staging_successes": 3, "approval_timeout_hours": 72})
    variables = {
        **{
            EnvVar.DATA_BUCKET.value: SETTINGS.data_bucket,
            EnvVar.ARTIFACTS_BUCKET.value: SETTINGS.artifacts_bucket,
            EnvVar.REGISTRY_TABLE.value: SETTINGS.registry_table,
            EnvVar.METADATA_TABLE.value: SETTINGS.metadata_table,
            EnvVar.IDEMPOTENCY_TABLE.value: SETTINGS.idempotency_table,
            EnvVar.CAPTURE_STREAM.value: SETTINGS.capture_stream,
            EnvVar.STATE_MACHINE_ARN.value: SETTINGS.state_machine_arn,
            EnvVar.TRIGGER_FUNCTION.value: SETTINGS.trigger_function,
            EnvVar.ENVIRONMENT.value: "prod",
            "AWS_REGION": "us-east-1",
        },
        EnvVar.PROMOTION_POLICY.value: stack_json,
    }
    settings = Settings.model_validate(variables)
    assert settings.promotion_policy == PROD.model_copy(update={"approval_timeout_hours": 72.0})
    svc = in_memory_services(settings)
    put_churn_contract(svc, churn_contract(promotion={"prod": {"policy": "auto"}}))
    put_churn_contract(svc, churn_contract(model="churn-silent"))

    assert environment_policy(svc, "churn") == EnvironmentPolicy()
    assert environment_policy(svc, "churn-silent") == settings.promotion_policy


def test_the_cli_reads_the_policy_of_a_served_or_deployed_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the variables a stack's functions receive, as `make local` serves them or as a Pulumi stack
    exports them (the policy is a JSON string there)
    When a `flywheel` command builds its settings
    Then it reads the stack's promotion policy (prod: approval, three staging verifications)."""
    for variable in [v for v in EnvVar if v.value.startswith("FLYWHEEL_")]:
        monkeypatch.delenv(variable.value, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    assert cli_stack.settings_for("local").promotion_policy == EnvironmentPolicy()  # dev's, served locally

    config = StackConfig.from_stack_file("prod")
    spec = flywheel_stack(config)
    exported = StackNames.for_spec(spec, "prod", config.region, "123456789012").environment(
        spec, config.environment, extra=config.function_environment()
    )
    assert isinstance(exported[EnvVar.PROMOTION_POLICY.value], str)
    monkeypatch.setattr(cli_stack, "pulumi_output", lambda stack, name: exported)
    assert cli_stack.settings_for("prod").promotion_policy == EnvironmentPolicy(
        policy=PolicyKind.APPROVAL, min_staging_successes=3, approval_timeout_hours=72
    )


@pytest.mark.parametrize(
    ("hours", "seconds"), [(24.0, 86_400), (72.0, 259_200), (0.5, 1_800), (0.0003, 1), (0.00001, 1)]
)
def test_the_approval_timeout_is_whole_seconds_and_at_least_one(hours: float, seconds: int) -> None:
    """Step Functions takes TimeoutSecondsPath as a positive integer."""
    assert EnvironmentPolicy(approval_timeout_hours=hours).approval_timeout_seconds == seconds


# --- verification: comparing answers and measuring latency --------------------------------------------------


def offline(*rows: tuple[Any, dict[str, float] | None]) -> list[dict[str, Any]]:
    return [{"prediction": label, "probabilities": probabilities} for label, probabilities in rows]


def test_identical_answers_match() -> None:
    expected = offline(("true", {"false": 0.2, "true": 0.8}), ("false", {"false": 0.9, "true": 0.1}))
    answer = {
        "predictions": ["true", "false"],
        "probabilities": [{"false": 0.2, "true": 0.8}, {"false": 0.9, "true": 0.1}],
    }
    assert _compare(answer, expected) == (0, 0.0)


def test_probabilities_match_within_the_tolerance_and_not_beyond() -> None:
    expected = offline(("true", {"false": 0.2, "true": 0.8}), ("true", {"false": 0.3, "true": 0.7}))
    close = {
        "predictions": ["true", "true"],
        "probabilities": [{"false": 0.20005, "true": 0.79995}, {"false": 0.3, "true": 0.7}],
    }
    mismatches, worst = _compare(close, expected)
    assert mismatches == 0 and worst == pytest.approx(5e-5)

    drifted = {
        "predictions": ["true", "true"],
        "probabilities": [{"false": 0.2, "true": 0.8}, {"false": 0.3003, "true": 0.6997}],
    }
    mismatches, worst = _compare(drifted, expected)
    assert mismatches == 1 and worst == pytest.approx(3e-4)


def test_a_different_label_or_a_missing_probability_is_a_mismatch() -> None:
    expected = offline(("true", {"false": 0.4, "true": 0.6}), ("false", {"false": 0.6, "true": 0.4}))
    flipped = {
        "predictions": ["false", "false"],
        "probabilities": [{"false": 0.4, "true": 0.6}, {"false": 0.6, "true": 0.4}],
    }
    assert _compare(flipped, expected)[0] == 1
    no_probabilities = {"predictions": ["true", "false"]}
    assert _compare(no_probabilities, expected) == (2, float("inf"))


def test_regression_values_match_relative_to_their_size() -> None:
    expected = offline((1000.0, None), (0.5, None))
    assert _compare({"predictions": [1000.05, 0.50005]}, expected)[0] == 0
    assert _compare({"predictions": [1000.2, 0.50005]}, expected)[0] == 1
    assert _compare({"predictions": [1000.0, 0.5002]}, expected)[0] == 1


def test_an_answer_with_another_number_of_rows_mismatches_every_row() -> None:
    expected = offline(("true", None), ("false", None), ("true", None))
    assert _compare({"predictions": ["true", "false"]}, expected) == (3, None)
    assert _compare({}, expected) == (3, None)


def test_latency_percentiles_are_nearest_rank_over_the_samples() -> None:
    samples = [float(ms) for ms in range(100, 0, -1)]  # 1..100 ms, in any order

    latency = _latency(samples)

    assert (latency.p50_ms, latency.p95_ms, latency.p99_ms) == (50.0, 95.0, 99.0)
    assert latency.mean_ms == pytest.approx(50.5)
    # With the 20 requests of a small load test, p99 is the slowest one and p95 the second slowest
    twenty = _latency([float(ms) for ms in range(1, 21)])
    assert (twenty.p50_ms, twenty.p95_ms, twenty.p99_ms) == (10.0, 19.0, 20.0)
    single = _latency([7.0])
    assert (single.p50_ms, single.p95_ms, single.p99_ms, single.mean_ms) == (7.0, 7.0, 7.0, 7.0)


# --- verification of a real version through a stand-in for the predict function -----------------------------


def trained_services(**contract_blocks: Any) -> Services:
    """In-memory services with churn v1 trained (logistic regression) and registered, not promoted."""
    svc = in_memory_services()
    put_churn_contract(svc, churn_contract(training=FAST_TRAINING, serving=SERVING, **contract_blocks))
    body = churn_csv(600, seed=1)
    ref = upload(svc, "incoming/churn/jan.csv", body)
    outcome = on_new_object(svc, ref.bucket, ref.key, ref.version_id, sha256_hex(body)[:32])
    started: dict[str, dict[str, Any]] = svc.workflow.started  # type: ignore[attr-defined]
    state = RunState.model_validate(started[outcome.run_id])
    register_step(evaluate_step(train_step(validate_step(state, svc), svc), svc), svc)
    assert svc.registry.get_model_version("churn", 1).stage is Stage.DEVELOPMENT
    return svc


@pytest.fixture
def svc() -> Services:
    return trained_services()


def set_gates(svc: Services, **gates: Any) -> None:
    put_churn_contract(svc, churn_contract(training=FAST_TRAINING, serving={**SERVING, **gates}))


def answering(invoke: Invoke, change: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]) -> Invoke:
    """``invoke``, with its answer's body changed by ``change(event, body)``."""

    def changed(event: dict[str, Any]) -> dict[str, Any]:
        response = invoke(event)
        body = change(event, json.loads(response["body"]))
        return {**response, "body": json.dumps(body)}

    return changed


def test_a_faithful_serving_path_passes_and_its_figures_are_recorded(svc: Services) -> None:
    result = verify_version(svc, "churn", 1, serving_invoker(svc), run_id="run-1")

    assert result.passed, result.reasons
    assert (result.version, result.flavor, result.smoke_rows, result.smoke_mismatches) == (1, "onnx", 16, 0)
    assert (result.requests, result.concurrency, result.errors, result.error_rate) == (20, 4, 0, 0.0)
    assert result.latency is not None and 0 < result.latency.p50_ms <= result.latency.p99_ms
    assert result.gates == {"max_p99_ms": 10_000.0, "max_error_rate": 0.0}
    assert "16 smoke rows match the offline predictions" in result.reasons[0]
    recorded = svc.registry.get_model_version("churn", 1).runtime_metrics
    assert recorded["verification"] == result.model_dump(mode="json")
    assert (recorded["p50_ms"], recorded["p95_ms"], recorded["p99_ms"]) == (
        result.latency.p50_ms,
        result.latency.p95_ms,
        result.latency.p99_ms,
    )
    assert (recorded["load_seconds"], recorded["error_rate"]) == (result.load_seconds, 0.0)
    assert STAGING_PASSES_KEY not in recorded  # not in staging: nothing earned toward production


def test_served_predictions_that_differ_from_the_offline_ones_fail_parity(svc: Services) -> None:
    def skewed(event: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        body["probabilities"] = [{k: v * 0.99 for k, v in p.items()} for p in body["probabilities"]]
        return body

    result = verify_version(svc, "churn", 1, answering(serving_invoker(svc), skewed))

    assert not result.passed
    assert result.reasons == ["served predictions differ from the offline ones on 16 of 16 rows"]
    assert result.smoke_mismatches == 16 and result.smoke_max_difference is not None
    assert result.smoke_max_difference > 1e-4
    assert svc.registry.get_model_version("churn", 1).runtime_metrics["verification"]["passed"] is False


def test_a_smoke_request_answered_by_another_version_fails(svc: Services) -> None:
    def other_version(event: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "version": 7}

    result = verify_version(svc, "churn", 1, answering(serving_invoker(svc), other_version))

    assert result.reasons == ["the smoke request was answered by v7, not v1"]


def test_a_failing_smoke_request_fails_with_its_status_and_every_error_counts(svc: Services) -> None:
    def broken(event: dict[str, Any]) -> dict[str, Any]:
        return {"statusCode": 500, "body": json.dumps({"message": "onnxruntime: invalid graph"})}

    result = verify_version(svc, "churn", 1, broken)

    assert not result.passed
    assert result.reasons == [
        'the smoke request failed with 500: {"message": "onnxruntime: invalid graph"}',
        "served predictions differ from the offline ones on 16 of 16 rows",
        "error rate 100.00% (20 of 20) is over the gate 0.00%",
    ]
    assert (result.errors, result.error_rate) == (20, 1.0)


def test_an_invocation_that_raises_is_an_error_not_a_crash(svc: Services) -> None:
    def unreachable(event: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("predict is not deployed")

    result = verify_version(svc, "churn", 1, unreachable)

    assert not result.passed
    assert result.reasons[0] == "the smoke request failed with 599: ConnectionError: predict is not deployed"
    assert result.errors == 20


def test_the_latency_gate_fails_a_slow_serving_path_with_the_measured_p99(svc: Services) -> None:
    set_gates(svc, max_p99_ms=1.0)
    faithful = serving_invoker(svc)

    def slow(event: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.005)
        return faithful(event)

    result = verify_version(svc, "churn", 1, slow)

    assert not result.passed
    assert result.latency is not None and result.latency.p99_ms >= 5.0
    assert result.reasons == [f"p99 latency {result.latency.p99_ms:.1f} ms is over the gate 1 ms"]
    assert result.gates["max_p99_ms"] == 1.0


@pytest.mark.parametrize(("max_error_rate", "passed"), [(0.25, True), (0.2, False)])
def test_the_error_rate_gate_counts_failed_load_requests(
    svc: Services, max_error_rate: float, passed: bool
) -> None:
    set_gates(svc, max_error_rate=max_error_rate)
    faithful = serving_invoker(svc)
    calls, lock = [0], threading.Lock()

    def flaky(event: dict[str, Any]) -> dict[str, Any]:
        if len(json.loads(event["body"])["instances"]) > 1:
            return faithful(event)  # the smoke request
        with lock:
            calls[0] += 1
            fail = calls[0] % 4 == 0
        return {"statusCode": 503, "body": "{}"} if fail else faithful(event)

    result = verify_version(svc, "churn", 1, flaky)

    assert (result.errors, result.requests, result.error_rate) == (5, 20, 0.25)
    assert result.passed is passed
    if not passed:
        assert result.reasons == ["error rate 25.00% (5 of 20) is over the gate 20.00%"]


def test_passes_while_holding_the_staging_alias_count_toward_production(svc: Services) -> None:
    svc.registry.set_alias("churn", STAGING_ALIAS, 1, actor="alice", reason="try it")

    for _ in range(2):
        verify_version(svc, "churn", 1, serving_invoker(svc))
    set_gates(svc, max_p99_ms=0.000001)
    failed = verify_version(svc, "churn", 1, serving_invoker(svc))

    assert not failed.passed
    metrics = svc.registry.get_model_version("churn", 1).runtime_metrics
    assert metrics[STAGING_PASSES_KEY] == 2  # a failure neither counts nor resets
    assert metrics["verification"]["passed"] is False


# --- answering an approval ----------------------------------------------------------------------------------


class Sent:
    """A stand-in for Step Functions' SendTaskSuccess / SendTaskFailure."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, bool, dict[str, Any]]] = []
        self.fail = fail

    def __call__(self, token: str, approve: bool, detail: dict[str, Any]) -> None:
        if self.fail:
            raise self.fail
        self.calls.append((token, approve, detail))


def waiting(svc: Services, expires_in: timedelta = timedelta(hours=1)) -> PendingApproval:
    now = datetime.now(UTC)
    pending = PendingApproval(
        run_id="run-1", token="tok-1", environment="staging", requested_at=now, expires_at=now + expires_in
    )
    svc.registry.request_approval("churn", 1, pending)
    return pending


def test_approving_answers_the_run_audits_the_decision_and_clears_the_request(svc: Services) -> None:
    waiting(svc)
    send = Sent()

    pending = decide_approval(svc, send, "churn", 1, "alice", "numbers look right", approve=True)

    [(token, approve, detail)] = send.calls
    assert (token, approve, pending.run_id) == ("tok-1", True, "run-1")
    assert (detail["approved_by"], detail["comment"]) == ("alice", "numbers look right")
    assert datetime.fromisoformat(detail["at"]).tzinfo is not None
    [entry] = svc.registry.audit_trail("churn", limit=1)
    assert (entry.kind, entry.actor, entry.reason, entry.run_id) == (
        TransitionKind.APPROVED,
        "alice",
        "numbers look right",
        "run-1",
    )
    version = svc.registry.get_model_version("churn", 1)
    assert version.pending_approval is None
    assert [(a.actor, a.comment) for a in version.approvals] == [("alice", "numbers look right")]


def test_rejecting_answers_the_run_with_a_failure_and_audits_it(svc: Services) -> None:
    waiting(svc)
    send = Sent()

    decide_approval(svc, send, "churn", 1, "bob", "", approve=False)

    [(token, approve, detail)] = send.calls
    assert (token, approve, detail["rejected_by"]) == ("tok-1", False, "bob")
    [entry] = svc.registry.audit_trail("churn", limit=1)
    assert (entry.kind, entry.actor, entry.reason) == (TransitionKind.REJECTED, "bob", "rejected")
    version = svc.registry.get_model_version("churn", 1)
    assert version.pending_approval is None and version.approvals == []


def test_a_version_not_waiting_for_an_approval_is_refused(svc: Services) -> None:
    send = Sent()
    trail = svc.registry.audit_trail("churn")

    with pytest.raises(PromotionRefusedError, match="churn v1 is not waiting for an approval"):
        decide_approval(svc, send, "churn", 1, "alice", "", approve=True)

    assert send.calls == [] and svc.registry.audit_trail("churn") == trail
    with pytest.raises(NotFoundError):
        decide_approval(svc, send, "churn", 9, "alice", "", approve=True)


def test_an_expired_approval_is_refused_and_nothing_is_sent(svc: Services) -> None:
    pending = waiting(svc, expires_in=timedelta(seconds=-1))
    send = Sent()
    trail = svc.registry.audit_trail("churn")

    with pytest.raises(PromotionRefusedError) as refused:
        decide_approval(svc, send, "churn", 1, "alice", "", approve=True)

    assert str(refused.value) == (f"the approval of churn v1 expired at {pending.expires_at.isoformat()}")
    assert send.calls == [] and svc.registry.audit_trail("churn") == trail


def test_a_decision_the_run_no_longer_waits_for_is_recorded_as_undelivered(svc: Services) -> None:
    """SendTaskSuccess refuses a token whose wait timed out: the decision was claimed, so the trail keeps it
    and says right after that it never reached the run; nothing is approved on the version."""
    waiting(svc)
    trail = svc.registry.audit_trail("churn")

    with pytest.raises(PromotionRefusedError, match="the run no longer waits for it"):
        decide_approval(
            svc, Sent(fail=WaitEndedError("TaskTimedOut: expired")), "churn", 1, "alice", "", True
        )

    undelivered, claimed, *rest = svc.registry.audit_trail("churn")
    assert rest == trail
    assert (claimed.kind, claimed.actor) == (TransitionKind.APPROVED, "alice")
    assert (undelivered.kind, undelivered.actor, undelivered.run_id) == (
        TransitionKind.UNDELIVERED,
        "alice",
        "run-1",
    )
    assert f"audit #{claimed.seq}" in undelivered.reason and "TaskTimedOut" in undelivered.reason
    version = svc.registry.get_model_version("churn", 1)
    assert version.pending_approval is None and version.approvals == []


def test_a_decision_that_could_not_be_sent_leaves_the_version_waiting_for_another_try(svc: Services) -> None:
    pending = waiting(svc)

    with pytest.raises(TransientError, match="the version waits again"):
        decide_approval(svc, Sent(fail=ConnectionError("connection reset")), "churn", 1, "alice", "", True)

    assert svc.registry.get_model_version("churn", 1).pending_approval == pending
    assert svc.registry.audit_trail("churn", limit=1)[0].kind is TransitionKind.UNDELIVERED
    send = Sent()
    decide_approval(svc, send, "churn", 1, "alice", "second try", approve=True)
    assert len(send.calls) == 1
    assert [a.actor for a in svc.registry.get_model_version("churn", 1).approvals] == ["alice"]


def approve_and_reject_at_once(svc: Services, send: Sent) -> dict[str, Exception | None]:
    """alice approves churn v1 while bob rejects it, released by one barrier: who was refused, and why."""
    barrier = threading.Barrier(2)
    outcomes: dict[str, Exception | None] = {}

    def decide(actor: str, approve: bool) -> None:
        barrier.wait()
        try:
            decide_approval(svc, send, "churn", 1, actor, "", approve=approve)
            outcomes[actor] = None
        except PromotionRefusedError as exc:
            outcomes[actor] = exc

    threads = [
        threading.Thread(target=decide, args=("alice", True)),
        threading.Thread(target=decide, args=("bob", False)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_approve_and_reject_at_the_same_instant_send_one_decision_and_tell_the_other_who_won(
    svc: Services,
) -> None:
    """Fifty times, alice approves while bob rejects the same wait: one decision reaches the run, the other
    person is refused with who decided first, and the trail holds exactly the decision that was sent."""
    for round_ in range(50):
        now = datetime.now(UTC)
        token = f"tok-{round_}"
        svc.registry.request_approval(
            "churn",
            1,
            PendingApproval(
                run_id=f"run-{round_}",
                token=token,
                environment="staging",
                requested_at=now,
                expires_at=now + timedelta(hours=1),
            ),
        )
        send = Sent()
        outcomes = approve_and_reject_at_once(svc, send)

        [(sent_token, approved, _)] = send.calls
        winner = "alice" if approved else "bob"
        loser = "bob" if approved else "alice"
        assert sent_token == token and outcomes[winner] is None
        refusal = str(outcomes[loser])
        # Refused at the claim, or (had the winner finished) before it: either way, told who won and how
        assert "the wait was already decided" in refusal or "is not waiting for an approval" in refusal
        assert f"{'approved' if approved else 'rejected'} by {winner} at " in refusal
        decisions = [
            t
            for t in svc.registry.audit_trail("churn")
            if t.run_id == f"run-{round_}" and t.kind in (TransitionKind.APPROVED, TransitionKind.REJECTED)
        ]
        assert [(t.actor, t.kind is TransitionKind.APPROVED) for t in decisions] == [(winner, approved)]


# --- manual promotion and rollback --------------------------------------------------------------------------


def test_a_manual_promotion_the_policy_refuses_names_every_reason_and_moves_nothing(svc: Services) -> None:
    with pytest.raises(PromotionRefusedError) as refused:
        promote_manually(svc, "churn", 1, Stage.PRODUCTION, "alice", "ship it")

    assert str(refused.value) == (
        "cannot promote churn v1 to production: churn v1 has not been verified on the serving path"
    )
    assert refused.value.problems == ["churn v1 has not been verified on the serving path"]
    assert svc.registry.list_aliases("churn") == []


def test_a_verified_version_is_staged_then_promoted_by_hand(svc: Services) -> None:
    verify_version(svc, "churn", 1, serving_invoker(svc))

    staged = promote_manually(svc, "churn", 1, Stage.STAGING, "alice", "try it")
    promoted = promote_manually(svc, "churn", 1, Stage.PRODUCTION, "alice", "ship it")

    assert (staged.stage, promoted.stage) == (Stage.STAGING, Stage.PRODUCTION)
    assert svc.registry.get_alias("churn", "production").version == 1
    newest = svc.registry.audit_trail("churn", limit=1)[0]
    assert (newest.to_stage, newest.alias, newest.actor, newest.reason) == (
        Stage.PRODUCTION,
        "production",
        "alice",
        "ship it",
    )


def test_a_manual_promotion_is_refused_if_production_moved_after_it_was_decided(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given v1 verified, a copy of it (v2), and no production version
    When v2 is promoted by someone else between `flywheel promote churn:1` reading production and writing
    Then the promotion of v1 is refused with the conflict named, and v2 stays in production."""
    v1 = svc.registry.get_model_version("churn", 1)
    copy = NewModelVersion.model_validate(v1.model_dump(include=set(NewModelVersion.model_fields)))
    svc.registry.create_model_version("churn", copy, run_id="someone-else", registered_by="bob")
    verify_version(svc, "churn", 1, serving_invoker(svc))
    real_promote = svc.registry.promote

    def another_lands_first(*args: Any, **kwargs: Any) -> Any:
        real_promote("churn", 2, actor="bob", reason="mine first")
        return real_promote(*args, **kwargs)

    monkeypatch.setattr(svc.registry, "promote", another_lands_first)

    with pytest.raises(ConflictError, match="alias production of churn points at v2, expected absent"):
        promote_manually(svc, "churn", 1, Stage.PRODUCTION, "alice", "ship it")

    assert svc.registry.get_alias("churn", "production").version == 2
    assert svc.registry.get_model_version("churn", 1).stage is Stage.DEVELOPMENT


def test_rollback_refuses_when_there_is_nothing_to_return_to(svc: Services) -> None:
    with pytest.raises(PromotionRefusedError, match="churn has no production version to roll back"):
        rollback(svc, "churn", "oncall", "bad answers")
    svc.registry.promote("churn", 1, actor="pipeline", reason="first")
    with pytest.raises(PromotionRefusedError, match="v1 replaced nothing: name a version with --to"):
        rollback(svc, "churn", "oncall", "bad answers")
    with pytest.raises(PromotionRefusedError, match="churn v1 is already in production"):
        rollback(svc, "churn", "oncall", "bad answers", to=1)
    with pytest.raises(NotFoundError):
        rollback(svc, "churn", "oncall", "bad answers", to=5)
