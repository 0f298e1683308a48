"""Continuous delivery on the local cloud: Flywheel's real stack, configured as dev (automatic promotion),
staging (a person approves) and prod (a person approves, after three staging verifications), driven through
S3, the trigger, the `flywheel` CLI (click's runner, in this process) and Step Functions' task tokens.

Each class gets its own cloud. The contract is the demo's with a logistic regression and a 20-request load
test, so a run takes a second or two; its gates let every candidate through the gate, since what is tested
here is what happens after Register. The predict function runs in this process, so a test can make the
serving path misbehave (a skewed model, a crashing one, an artifact altered after promotion).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner, Result

import functions.post_deploy_check.handler as post_deploy
from cli.main import main
from examples.churn import generate
from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.local import LocalCloud
from shared.env_names import EnvVar
from shared.errors import ConflictError, NotFoundError
from shared.featurestore.contracts import put_contract
from shared.metadata import Run, RunStatus, Step, StepStatus
from shared.pipeline.controls import promote_manually
from shared.pipeline.delivery import STAGING_ALIAS
from shared.pipeline.policy import STAGING_PASSES_KEY
from shared.pipeline.verification import http_event
from shared.registry import ModelRegistry, ModelVersion, Stage, Transition, TransitionKind
from shared.services import Services, services
from shared.serving import api
from shared.serving.runtime import Predictions, ServedModel
from shared.storage import ObjectRef
from tests.fixtures.services import churn_contract

pytestmark = pytest.mark.integration

MODEL = "churn"
TRAINING = {"estimator": "logistic_regression", "params": {"max_iter": 500}}
# A generous latency gate: on a busy machine one of 20 in-process requests can take half a second, and the
# gate is proven separately (with a gate no serving path meets).
SERVING = {"smoke_rows": 16, "load_requests": 20, "load_concurrency": 4, "max_p99_ms": 10_000.0}
# Every candidate passes the gate: this module is about what comes after Register.
GATES = {"min": {"roc_auc": 0.6}, "max_regression": {"roc_auc": 1.0}}
# predict re-reads the production alias this often: the post-deploy check sees a promotion quickly.
ENVIRONMENT = {EnvVar.ALIAS_REFRESH_SECONDS.value: "0.5"}
TIMEOUT_S = 120


def contract_yaml(**blocks: Any) -> str:
    document = {"training": TRAINING, "serving": SERVING, "gates": GATES} | blocks
    return churn_contract(**document).to_yaml()


# --- observing the cloud ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """A run after its execution ended."""

    run: Run
    status: str  # the execution's
    history: list[dict[str, Any]]
    steps: list[Step]

    def entered(self) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e
        ]

    @property
    def version(self) -> int:
        number: int = self.run.outcome["version"]
        return number


@dataclass
class Delivery:
    cloud: LocalCloud
    svc: Services

    # runs

    def upload(self, key: str, rows: int = 800, seed: int = 1) -> Run:
        """A data file under incoming/churn/: S3 notifies the trigger, which starts a run."""
        body = generate(rows, seed).to_csv(index=False).encode()
        version = self.cloud.client("s3").put_object(Bucket=self.svc.settings.data_bucket, Key=key, Body=body)
        (run,) = [
            r
            for r in self.svc.metadata.list_runs(MODEL, limit=500)
            if r.input.get("source", {}).get("version_id") == version["VersionId"]
        ]
        return run

    def start(self) -> Run:
        """A manual run (`flywheel run`): trains on the datasets there are."""
        errored, answer = self.cloud.invoke(
            self.cloud.names.functions["trigger"], {"model": MODEL, "requested_by": "test"}
        )
        assert not errored, answer
        return self.svc.metadata.get_run(answer["runs"][0]["run_id"])

    def finish(self, run: Run) -> Finished:
        assert run.execution_arn
        described = self.cloud.wait_for_execution(run.execution_arn, timeout_s=TIMEOUT_S)
        return Finished(
            run=self.svc.metadata.get_run(run.run_id),
            status=described["status"],
            history=self.cloud.history(run.execution_arn),
            steps=self.svc.metadata.list_steps(run.run_id),
        )

    def execution_status(self, run: Run) -> str:
        status: str = self.cloud.client("stepfunctions").describe_execution(executionArn=run.execution_arn)[
            "status"
        ]
        return status

    def awaiting_approval(self, run: Run) -> ModelVersion:
        """The version the run staged, once the approval function has kept its task token on it and
        recorded the run's approval step as running."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            steps = self.svc.metadata.list_steps(run.run_id)
            if steps and (steps[-1].name, steps[-1].status) == ("approval", StepStatus.RUNNING):
                for version in self.svc.registry.search_model_versions(MODEL):
                    pending = version.pending_approval
                    if pending is not None and pending.run_id == run.run_id:
                        return version
            status = self.execution_status(run)
            assert status == "RUNNING", f"the run ended ({status}) without waiting for an approval"
            assert time.monotonic() < deadline, "no approval was requested"
            time.sleep(0.05)

    # the registry

    def production(self) -> int | None:
        return self.alias("production")

    def alias(self, name: str) -> int | None:
        try:
            return self.svc.registry.get_alias(MODEL, name).version
        except NotFoundError:
            return None

    def version(self, number: int) -> ModelVersion:
        return self.svc.registry.get_model_version(MODEL, number)

    def trail(self, limit: int | None = None) -> list[Transition]:
        return self.svc.registry.audit_trail(MODEL, limit)

    def put_contract(self, **blocks: Any) -> None:
        put_contract(self.svc.objects, self.svc.settings, contract_yaml(**blocks))

    # the CLI

    def flywheel(self, *args: str) -> Result:
        """`flywheel ARGS` as a person types it, with this cloud's `export` lines as the environment."""
        return CliRunner().invoke(main, list(args), env=self.cloud.exports(), catch_exceptions=False)


def cloud_for(stack: str) -> Iterator[Delivery]:
    """Flywheel with ``Pulumi.<stack>.yaml``'s settings (its promotion policy) on the local cloud."""
    config = StackConfig.from_stack_file(stack)
    cloud = LocalCloud(flywheel_stack(config), config)
    cloud.environment.update(ENVIRONMENT)
    with cloud.in_process():
        delivery = Delivery(cloud, services())
        delivery.put_contract()
        yield delivery


@pytest.fixture
def serving_path(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[Predictions], Predictions]], int]:
    """Make the predict function answer differently for the next version registered (the candidate of the
    next run): ``install(change)`` returns that version's number."""

    def install(change: Callable[[Predictions], Predictions]) -> int:
        registry: ModelRegistry = services().registry
        candidate = registry.get_registered_model(MODEL).latest_version + 1
        real = ServedModel.predict

        def predict(self: ServedModel, rows: Any) -> Predictions:
            answer = real(self, rows)
            return change(answer) if (self.name, self.version) == (MODEL, candidate) else answer

        monkeypatch.setattr(ServedModel, "predict", predict)
        return candidate

    return install


def assert_rejected_by_verification(delivery: Delivery, done: Finished, production: int | None) -> list[str]:
    """The candidate was proven unfit on the serving path: not promoted, rejected, and why is recorded on
    the run, on the version (its figures and its stage) and in the audit trail. Returns the reasons."""
    assert done.status == "SUCCEEDED"  # the execution ran as designed; the run's verdict is "rejected"
    assert done.entered()[-4:] == ["Register", "Verify", "Verified", "Finish"]
    assert done.run.status is RunStatus.REJECTED
    assert done.run.outcome["promoted"] is False
    verdict = done.run.outcome["verification"]
    assert verdict["passed"] is False and verdict["reasons"]
    version = delivery.version(done.version)
    assert version.stage is Stage.REJECTED
    assert version.runtime_metrics["verification"]["passed"] is False
    assert version.runtime_metrics["verification"]["reasons"] == verdict["reasons"]
    (entry,) = delivery.trail(limit=1)
    assert (entry.version, entry.from_stage, entry.to_stage, entry.actor, entry.run_id) == (
        done.version,
        Stage.DEVELOPMENT,
        Stage.REJECTED,
        "pipeline",
        done.run.run_id,
    )
    assert entry.reason == "failed verification on the serving path: " + "; ".join(verdict["reasons"])
    assert delivery.production() == production
    assert [(s.name, s.status) for s in done.steps][-2:] == [
        ("verify", StepStatus.SUCCEEDED),
        ("finish", StepStatus.SUCCEEDED),
    ]
    refused = delivery.flywheel("promote", f"{MODEL}:{done.version}", "--to", "production", "--by", "eve")
    assert refused.exit_code == 1
    assert f"{MODEL} v{done.version} was rejected" in refused.output
    reasons: list[str] = verdict["reasons"]
    return reasons


# --- dev: automatic promotion -------------------------------------------------------------------------------


@pytest.fixture(scope="class")
def dev() -> Iterator[Delivery]:
    yield from cloud_for("dev")


@pytest.fixture(scope="class")
def first(dev: Delivery) -> Finished:
    return dev.finish(dev.upload("incoming/churn/2026-01.csv"))


class TestAutomaticPolicy:
    def test_a_verified_candidate_is_promoted_and_checked_on_the_live_route(
        self, dev: Delivery, first: Finished
    ) -> None:
        """Given dev's automatic policy, when a file's run registers v1, then Verify proves it through the
        predict function, Promote moves production to it and PostDeployCheck asks the live route; the
        version keeps the figures it passed and the audit trail says why it was promoted."""
        assert first.status == "SUCCEEDED"
        assert first.entered()[-8:] == [
            "Register",
            "Verify",
            "Verified",
            "Policy",
            "Promote",
            "Promoted",
            "PostDeployCheck",
            "Finish",
        ]
        assert [s.name for s in first.steps][-4:] == ["verify", "promote", "post-deploy-check", "finish"]
        assert all(s.status is StepStatus.SUCCEEDED for s in first.steps)
        assert first.run.status is RunStatus.SUCCEEDED
        assert (first.run.outcome["policy"], first.run.outcome["promoted"]) == ("auto", True)
        assert dev.production() == first.version == 1

        version = dev.version(1)
        figures = version.runtime_metrics
        verification = figures["verification"]
        assert verification["passed"] is True
        assert (verification["smoke_rows"], verification["smoke_mismatches"]) == (16, 0)
        assert (verification["requests"], verification["concurrency"], verification["errors"]) == (20, 4, 0)
        assert verification["gates"] == {"max_p99_ms": 10_000.0, "max_error_rate": 0.0}
        assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"] <= 10_000.0
        assert figures["load_seconds"] > 0 and figures["error_rate"] == 0.0
        assert verification["reasons"] == first.run.outcome["verification"]["reasons"]
        assert STAGING_PASSES_KEY not in figures  # dev never stages

        (promotion,) = dev.trail(limit=1)
        assert (promotion.version, promotion.from_stage, promotion.to_stage, promotion.alias) == (
            1,
            Stage.DEVELOPMENT,
            Stage.PRODUCTION,
            "production",
        )
        assert (promotion.actor, promotion.run_id) == ("pipeline", first.run.run_id)
        assert promotion.reason == "automatic policy: passed the gates and verification"
        assert dev.alias(STAGING_ALIAS) is None
        assert version.pending_approval is None and version.approvals == []

    def test_a_candidate_whose_served_answers_differ_from_the_offline_ones_is_rejected(
        self, dev: Delivery, first: Finished, serving_path: Callable[..., int]
    ) -> None:
        """Parity: the serving path of the candidate answers, but not what the trained pipeline says."""
        production = dev.production()

        def skewed(answer: Predictions) -> Predictions:
            assert answer.probabilities is not None
            shifted = [{k: min(1.0, v + 0.01) for k, v in p.items()} for p in answer.probabilities]
            return Predictions(answer.predictions, shifted)

        candidate = serving_path(skewed)

        done = dev.finish(dev.start())

        assert done.version == candidate
        reasons = assert_rejected_by_verification(dev, done, production)
        assert reasons == ["served predictions differ from the offline ones on 16 of 16 rows"]
        assert dev.version(candidate).runtime_metrics["verification"]["smoke_max_difference"] > 1e-4

    def test_a_candidate_the_serving_path_cannot_answer_fails_its_smoke_test_and_is_rejected(
        self, dev: Delivery, first: Finished, serving_path: Callable[..., int]
    ) -> None:
        """Smoke: the predict function crashes on the candidate (a Lambda error), every request fails."""
        production = dev.production()

        def crashing(answer: Predictions) -> Predictions:
            raise RuntimeError("onnxruntime: [ShapeInferenceError] mismatched input")

        serving_path(crashing)

        done = dev.finish(dev.start())

        reasons = assert_rejected_by_verification(dev, done, production)
        assert reasons[0].startswith("the smoke request failed with 502: ")
        assert "mismatched input" in reasons[0]
        assert reasons[1:] == [
            "served predictions differ from the offline ones on 16 of 16 rows",
            "error rate 100.00% (20 of 20) is over the gate 0.00%",
        ]
        assert dev.version(done.version).runtime_metrics["error_rate"] == 1.0

    def test_a_candidate_over_the_latency_gate_is_rejected_with_the_measured_p99(
        self, dev: Delivery, first: Finished
    ) -> None:
        production = dev.production()
        dev.put_contract(serving={**SERVING, "max_p99_ms": 0.001})
        try:
            done = dev.finish(dev.start())
        finally:
            dev.put_contract()

        reasons = assert_rejected_by_verification(dev, done, production)
        p99 = dev.version(done.version).runtime_metrics["p99_ms"]
        assert reasons == [f"p99 latency {p99:.1f} ms is over the gate 0.001 ms"]
        assert dev.version(done.version).runtime_metrics["verification"]["gates"]["max_p99_ms"] == 0.001

    def test_a_failed_post_deploy_check_puts_the_previous_version_back(
        self, dev: Delivery, first: Finished, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Given a verified candidate promoted to production, when its ONNX object is altered between
        Promote and PostDeployCheck (and a fresh predict instance loads it), then the live route answers
        503, production returns to the version it replaced, and the run fails at post-deploy-check saying
        why; the audit trail shows the promotion and the automatic rollback."""
        previous = dev.production()
        assert previous is not None
        check = post_deploy.post_deploy_check_step
        altered: list[tuple[ObjectRef, bytes]] = []

        def alter_then_check(state: Any, svc: Services, *args: Any, **kwargs: Any) -> Any:
            version = svc.registry.get_model_version(state.model, state.version)
            assert version.onnx_artifact is not None and svc.registry.get_alias(
                MODEL, "production"
            ).version == (version.version)
            ref = ObjectRef.parse(version.onnx_artifact.uri)
            altered.append((ref, svc.objects.get(ref).body))
            svc.objects.put(ref, b"an ONNX model overwritten after promotion", "application/octet-stream")
            # A warm predict keeps the model it loaded for Verify; a new instance reads the object again.
            api._serving_for.cache_clear()
            return check(state, svc, *args, **kwargs)

        monkeypatch.setattr(post_deploy, "post_deploy_check_step", alter_then_check)
        try:
            done = dev.finish(dev.start())
        finally:
            for ref, body in altered:  # the object as it was, for the tests that follow
                dev.svc.objects.put(ref, body, "application/octet-stream")
        (bad,) = [
            v.version for v in dev.svc.registry.search_model_versions(MODEL) if v.run_id == done.run.run_id
        ]

        assert len(altered) == 1
        assert done.status == "FAILED"
        assert done.entered()[-6:] == [
            "Promote",
            "Promoted",
            "PostDeployCheck",
            "PostDeployCheckFailed",
            "RecordFailure",
            "Failed",
        ]
        assert done.run.status is RunStatus.FAILED
        assert done.run.error is not None
        assert (done.run.error.step, done.run.error.type) == ("post-deploy-check", "PostDeployCheckError")
        message = done.run.error.message
        assert message.startswith(f"post-deploy check of v{bad} failed (the live route answered 503: ")
        assert "integrity check" in message
        assert message.endswith(f"production rolled back to v{previous}")
        assert dev.production() == previous
        # the failed version is rejected, so a bare `flywheel rollback` can never restore it
        assert (dev.version(previous).stage, dev.version(bad).stage) == (Stage.PRODUCTION, Stage.REJECTED)

        rejected, rollback, archived, promotion = dev.trail(limit=4)
        assert (rejected.version, rejected.from_stage, rejected.to_stage) == (
            bad,
            Stage.ARCHIVED,
            Stage.REJECTED,
        )
        assert rejected.reason.startswith("failed its post-deploy check (the live route answered 503")
        assert (rollback.version, rollback.from_stage, rollback.to_stage, rollback.alias) == (
            previous,
            Stage.ARCHIVED,
            Stage.PRODUCTION,
            "production",
        )
        assert rollback.previous_version == bad
        assert rollback.reason.startswith(
            f"automatic rollback: post-deploy check of v{bad} failed (the live route answered 503"
        )
        assert (archived.version, archived.from_stage, archived.to_stage) == (
            bad,
            Stage.PRODUCTION,
            Stage.ARCHIVED,
        )
        assert (promotion.version, promotion.to_stage, promotion.previous_version) == (
            bad,
            Stage.PRODUCTION,
            previous,
        )
        assert {e.run_id for e in (rejected, rollback, archived, promotion)} == {done.run.run_id}
        assert {e.actor for e in (rejected, rollback, archived, promotion)} == {"pipeline"}
        # and the live route answers with the restored version again
        assert self.live_version(dev) == previous

    @staticmethod
    def live_version(dev: Delivery) -> int:
        """What predict answers with no version pinned, once its alias cache has caught up."""
        row = {"tenure_months": 3.0, "monthly_charges": 89.0, "plan": "basic", "region": "south"}
        row |= {"autopay": False, "support_calls": 6.0}
        event = http_event(MODEL, 0, [row])
        event["rawQueryString"], event["queryStringParameters"] = "", None
        deadline = time.monotonic() + 10
        seen: list[Any] = []
        while time.monotonic() < deadline:
            errored, answer = dev.cloud.invoke(dev.cloud.names.functions["predict"], event)
            assert not errored and answer["statusCode"] == 200, answer
            seen.append(json.loads(answer["body"])["version"])
            if seen[-1] == dev.production():
                return int(seen[-1])
            time.sleep(0.1)
        raise AssertionError(f"the live route kept answering {seen[-3:]}")

    def test_two_concurrent_promotions_of_different_versions_leave_one_winner(
        self, dev: Delivery, first: Finished, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Given two verified, archived versions and a third in production, when two people promote one
        each at the same moment (both looked at the same production version), then exactly one wins, the
        other is refused with the conflict named, and the registry's stages, alias and audit trail tell
        one consistent story."""
        older = dev.production()
        newer = dev.finish(dev.start()).version
        current = dev.finish(dev.start()).version
        assert older is not None and dev.production() == current
        assert {dev.version(older).stage, dev.version(newer).stage} == {Stage.ARCHIVED}
        trail_before = dev.trail()

        # Both promotions have read production before either writes: they are truly concurrent.
        both_decided = threading.Barrier(2, timeout=30)
        real_promote = ModelRegistry.promote

        def promote_together(self: ModelRegistry, *args: Any, **kwargs: Any) -> Any:
            both_decided.wait()
            return real_promote(self, *args, **kwargs)

        monkeypatch.setattr(ModelRegistry, "promote", promote_together)
        won: dict[int, ModelVersion] = {}
        lost: dict[int, Exception] = {}

        def promote(number: int) -> None:
            svc = Services.from_settings(dev.svc.settings)  # one `flywheel promote` process each
            try:
                won[number] = promote_manually(
                    svc, MODEL, number, Stage.PRODUCTION, f"person-{number}", "promote concurrently"
                )
            except Exception as error:  # collected, then asserted
                lost[number] = error

        threads = [threading.Thread(target=promote, args=(n,)) for n in (older, newer)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert len(won) == 1 and len(lost) == 1, (won, lost)
        [(winner, promoted)] = won.items()
        [(loser, error)] = lost.items()
        assert isinstance(error, ConflictError)
        assert str(error) == f"alias production of {MODEL} points at v{winner}, expected v{current}"
        assert promoted.stage is Stage.PRODUCTION and dev.production() == winner
        assert (dev.version(loser).stage, dev.version(current).stage) == (Stage.ARCHIVED, Stage.ARCHIVED)
        assert [v.version for v in dev.svc.registry.search_model_versions(MODEL, Stage.PRODUCTION)] == [
            winner
        ]
        trail = dev.trail()
        new = trail[: len(trail) - len(trail_before)]
        assert [(t.version, t.from_stage, t.to_stage, t.actor) for t in new] == [
            (winner, Stage.ARCHIVED, Stage.PRODUCTION, f"person-{winner}"),
            (current, Stage.PRODUCTION, Stage.ARCHIVED, f"person-{winner}"),
        ]
        assert new[0].previous_version == current
        assert [t.seq for t in trail] == list(range(len(trail), 0, -1))
        assert trail[len(new) :] == trail_before

    def test_flywheel_rollback_returns_production_and_audit_lists_the_trail_newest_first(
        self, dev: Delivery, first: Finished
    ) -> None:
        before = dev.production()
        assert before is not None
        latest = dev.finish(dev.start()).version
        assert dev.production() == latest

        back = dev.flywheel("rollback", MODEL, "--by", "oncall", "--reason", "answers look off")

        assert back.exit_code == 0, back.output
        assert f"{MODEL}: production rolled back from v{latest} to v{before}" in back.output
        assert dev.production() == before
        assert (dev.version(before).stage, dev.version(latest).stage) == (Stage.PRODUCTION, Stage.ARCHIVED)
        (entry,) = [t for t in dev.trail(limit=2) if t.to_stage is Stage.PRODUCTION]
        assert (entry.version, entry.actor, entry.reason, entry.run_id) == (
            before,
            "oncall",
            "rollback: answers look off",
            None,
        )

        forward = dev.flywheel("rollback", MODEL, "--to", str(latest), "--by", "oncall", "--json")
        assert forward.exit_code == 0, forward.output
        assert json.loads(forward.stdout) == {"model": MODEL, "from": before, "to": latest}
        assert dev.production() == latest
        again = dev.flywheel("rollback", MODEL, "--to", str(latest), "--by", "oncall")
        assert again.exit_code == 1
        assert f"{MODEL} v{latest} is already in production" in again.output
        rejected = [v.version for v in dev.svc.registry.search_model_versions(MODEL, Stage.REJECTED)]
        if rejected:
            refused = dev.flywheel("rollback", MODEL, "--to", str(rejected[0]), "--by", "oncall")
            assert refused.exit_code == 1
            assert "was rejected and cannot serve production" in refused.output
            assert dev.production() == latest

        audit = dev.flywheel("audit", MODEL, "--json")
        assert audit.exit_code == 0, audit.output
        listed = json.loads(audit.stdout)
        assert [e["seq"] for e in listed] == [t.seq for t in dev.trail()]
        assert [e["seq"] for e in listed] == sorted((e["seq"] for e in listed), reverse=True)
        assert (listed[0]["version"], listed[0]["actor"], listed[0]["to_stage"]) == (
            latest,
            "oncall",
            "production",
        )
        table = dev.flywheel("audit", MODEL).output.splitlines()
        assert table[0].split()[:4] == ["AT", "VERSION", "WHAT", "STAGE"]
        assert f"v{latest}" in table[1] and "oncall" in table[1] and "rollback: manual rollback" in table[1]
        assert len(table) == len(listed) + 1


# --- staging: a person approves -----------------------------------------------------------------------------


@pytest.fixture(scope="class")
def staging() -> Iterator[Delivery]:
    yield from cloud_for("staging")


class TestApprovalPolicy:
    def test_a_run_waits_in_staging_until_approved_from_the_cli_then_promotes(
        self, staging: Delivery
    ) -> None:
        run = staging.upload("incoming/churn/2026-01.csv")

        waiting = staging.awaiting_approval(run)

        # The run is parked on its task token; the version waits in staging, the request on the version
        assert staging.execution_status(run) == "RUNNING"
        assert (waiting.version, waiting.stage) == (1, Stage.STAGING)
        assert staging.alias(STAGING_ALIAS) == 1 and staging.production() is None
        pending = waiting.pending_approval
        assert pending is not None
        assert (pending.run_id, pending.environment) == (run.run_id, "staging")
        assert (pending.expires_at - pending.requested_at).total_seconds() == 24 * 3600
        assert waiting.runtime_metrics["verification"]["passed"] is True
        steps = [(s.name, s.status) for s in staging.svc.metadata.list_steps(run.run_id)]
        assert steps[-2:] == [("promote", StepStatus.SUCCEEDED), ("approval", StepStatus.RUNNING)]

        approved = staging.flywheel(
            "approve", f"{MODEL}:1", "--by", "alice", "--comment", "holdout looks right"
        )

        assert approved.exit_code == 0, approved.output
        assert f"{MODEL} v1 approved by alice; run {run.run_id} continues" in approved.output
        done = staging.finish(run)
        assert done.status == "SUCCEEDED" and done.run.status is RunStatus.SUCCEEDED
        assert done.entered()[-7:] == [
            "Policy",
            "StageCandidate",
            "AwaitApproval",
            "Promote",
            "Promoted",
            "PostDeployCheck",
            "Finish",
        ]
        assert done.run.outcome["approval"]["approved_by"] == "alice"
        assert staging.production() == 1
        version = staging.version(1)
        assert version.stage is Stage.PRODUCTION and version.pending_approval is None
        assert [(a.actor, a.comment, a.run_id) for a in version.approvals] == [
            ("alice", "holdout looks right", run.run_id)
        ]
        promotion, decision, staged = staging.trail(limit=3)
        assert (decision.kind, decision.actor, decision.reason, decision.run_id) == (
            TransitionKind.APPROVED,
            "alice",
            "holdout looks right",
            run.run_id,
        )
        assert (promotion.from_stage, promotion.to_stage, promotion.reason) == (
            Stage.STAGING,
            Stage.PRODUCTION,
            "approved by alice: holdout looks right",
        )
        assert (staged.to_stage, staged.actor, staged.reason) == (
            Stage.STAGING,
            "pipeline",
            "verified; waiting for approval",
        )

    def test_a_rejected_run_does_not_promote(self, staging: Delivery) -> None:
        production = staging.production()
        run = staging.start()
        waiting = staging.awaiting_approval(run)

        rejected = staging.flywheel(
            "reject", f"{MODEL}:{waiting.version}", "--by", "bob", "--comment", "not before the launch"
        )

        assert rejected.exit_code == 0, rejected.output
        done = staging.finish(run)
        assert done.status == "SUCCEEDED"
        assert done.entered()[-4:] == ["StageCandidate", "AwaitApproval", "Declined", "Finish"]
        assert done.run.status is RunStatus.REJECTED
        assert done.run.outcome["promotion_refusals"] == ["rejected by bob: not before the launch"]
        assert staging.production() == production
        version = staging.version(waiting.version)
        assert version.stage is Stage.REJECTED and version.pending_approval is None
        assert version.approvals == []
        assert staging.alias(STAGING_ALIAS) is None  # it pointed at the rejected version
        stage, alias_removed, decision = staging.trail(limit=3)
        assert (decision.kind, decision.actor, decision.reason) == (
            TransitionKind.REJECTED,
            "bob",
            "not before the launch",
        )
        assert (alias_removed.kind, alias_removed.alias) == (TransitionKind.ALIAS_REMOVED, STAGING_ALIAS)
        assert (stage.from_stage, stage.to_stage, stage.actor, stage.reason) == (
            Stage.STAGING,
            Stage.REJECTED,
            "bob",
            "rejected by bob: not before the launch",
        )
        steps = {(s.name, s.status) for s in done.steps}
        assert {("approval", StepStatus.FAILED), ("approval-declined", StepStatus.SUCCEEDED)} <= steps

        late = staging.flywheel("approve", f"{MODEL}:{waiting.version}", "--by", "alice")
        assert late.exit_code == 1
        assert f"{MODEL} v{waiting.version} is not waiting for an approval" in late.output

    def test_an_approval_nobody_gives_expires_and_rejects_the_version(self, staging: Delivery) -> None:
        """Given the contract's promotion block waits about a second in staging (Step Functions reads the
        timeout from the run's state: TimeoutSecondsPath), when nobody answers, then the wait times out
        into Declined and the version is rejected by the timeout."""
        production = staging.production()
        staging.put_contract(promotion={"staging": {"policy": "approval", "approval_timeout_hours": 0.0003}})
        try:
            run = staging.start()
            done = staging.finish(run)
        finally:
            staging.put_contract()

        assert done.status == "SUCCEEDED"
        assert done.entered()[-4:] == ["StageCandidate", "AwaitApproval", "Declined", "Finish"]
        timed_out = [e for e in done.history if e["type"] == "TaskTimedOut"]
        assert len(timed_out) == 1, [e["type"] for e in done.history]
        assert timed_out[0]["taskTimedOutEventDetails"]["error"] == "States.Timeout"
        (entered,) = [
            e for e in done.history if e.get("stateEnteredEventDetails", {}).get("name") == "AwaitApproval"
        ]
        waited = (timed_out[0]["timestamp"] - entered["timestamp"]).total_seconds()
        assert 1.0 <= waited < 10.0  # the contract's 0.0003 h, rounded to Step Functions' whole second
        assert done.run.status is RunStatus.REJECTED
        assert done.run.outcome["promotion_refusals"] == ["no approval before the wait expired"]
        assert staging.production() == production
        version = staging.version(done.version)
        assert version.stage is Stage.REJECTED and version.pending_approval is None
        stage, _, decision = staging.trail(limit=3)
        assert (decision.kind, decision.actor, decision.reason, decision.run_id) == (
            TransitionKind.REJECTED,
            "timeout",
            "no approval before the wait expired",
            run.run_id,
        )
        assert (stage.to_stage, stage.actor) == (Stage.REJECTED, "timeout")

        late = staging.flywheel("approve", f"{MODEL}:{done.version}", "--by", "alice")
        assert late.exit_code == 1
        assert "is not waiting for an approval" in late.output


# --- prod: approval, and three staging verifications -----------------------------------------------------


@pytest.fixture(scope="class")
def prod() -> Iterator[Delivery]:
    yield from cloud_for("prod")


class TestProductionPolicy:
    def test_production_is_refused_below_min_staging_successes_until_verified_three_times_in_staging(
        self, prod: Delivery
    ) -> None:
        run = prod.upload("incoming/churn/2026-01.csv")
        waiting = prod.awaiting_approval(run)
        number = waiting.version
        ref = f"{MODEL}:{number}"
        pending = waiting.pending_approval
        assert (
            pending is not None and (pending.expires_at - pending.requested_at).total_seconds() == 72 * 3600
        )

        approved = prod.flywheel("approve", ref, "--by", "alice")
        done = prod.finish(run)

        # Approved, but held in staging: the verification that staged it is one of the three
        assert approved.exit_code == 0, approved.output
        count = (
            f"{MODEL} v{number} has passed 1 of the 3 staging verifications this environment requires "
            "before production"
        )
        assert done.status == "SUCCEEDED" and done.run.status is RunStatus.REJECTED
        assert done.run.outcome["promotion_refusals"] == [count]
        assert done.entered()[-4:] == ["AwaitApproval", "Promote", "Promoted", "Finish"]
        assert prod.production() is None
        assert (prod.version(number).stage, prod.alias(STAGING_ALIAS)) == (Stage.STAGING, number)
        (decision,) = prod.trail(limit=1)
        assert (decision.kind, decision.actor) == (TransitionKind.APPROVED, "alice")

        refused = prod.flywheel("promote", ref, "--to", "production", "--by", "carol")
        assert refused.exit_code == 1
        assert f"cannot promote {MODEL} v{number} to production: {count}" in refused.output

        for passes in (2, 3):
            verified = prod.flywheel("verify", ref)
            assert verified.exit_code == 0, verified.output
            assert f"{MODEL} v{number} verification passed" in verified.output
            assert f"staging verifications passed: {passes}" in verified.output
            if passes == 2:
                early = prod.flywheel("promote", ref, "--to", "production", "--by", "carol")
                assert early.exit_code == 1
                assert "has passed 2 of the 3 staging verifications" in early.output
        assert prod.version(number).runtime_metrics[STAGING_PASSES_KEY] == 3

        promoted = prod.flywheel("promote", ref, "--to", "production", "--by", "carol", "--reason", "3/3")

        assert promoted.exit_code == 0, promoted.output
        assert f"{MODEL} v{number} is now production" in promoted.output
        assert prod.production() == number
        (entry,) = prod.trail(limit=1)
        assert (entry.version, entry.from_stage, entry.to_stage, entry.actor, entry.reason) == (
            number,
            Stage.STAGING,
            Stage.PRODUCTION,
            "carol",
            "3/3",
        )
