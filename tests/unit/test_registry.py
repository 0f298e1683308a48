"""The model registry's rules: gapless version numbers, one version per run, conditional aliases, atomic
promotions and an audit trail that always agrees with the production alias.

:class:`RegistryContract` holds the behaviour once; this module runs it on the in-memory store and
``tests/integration/test_stores_dynamodb.py`` runs it again on the DynamoDB store on moto.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from shared.errors import ConflictError, NotFoundError
from shared.registry import (
    AlreadyDecidedError,
    AppendTransition,
    ArtifactRef,
    GateResult,
    InMemoryRegistryStore,
    ModelRegistry,
    NewModelVersion,
    PendingApproval,
    RegistryStore,
    Stage,
    TrainingDataset,
    Transition,
    TransitionKind,
    WriteConflictError,
)

pytestmark = pytest.mark.unit


def candidate(**overrides: Any) -> NewModelVersion:
    fields: dict[str, Any] = {
        "artifact": ArtifactRef(uri="s3://artifacts/models/churn/model.joblib", sha256="ab" * 32, size=1234),
        "signature": {"features": {"tenure": {"type": "numeric", "nullable": False, "min": 0}}},
        "training_datasets": [
            TrainingDataset(
                dataset_id="ds-1", uri="s3://data/datasets/churn/ds-1.parquet", sha256="cd" * 32, rows=500
            )
        ],
        "params": {"estimator": "logistic_regression", "C": 1.0},
        "metrics": {"accuracy": 0.91, "roc_auc": float("nan")},
        "gate": GateResult(passed=True, reasons=[]),
        "library_versions": {"scikit-learn": "1.9.1"},
        "code_version": "abc123",
    }
    return NewModelVersion(**{**fields, **overrides})


def in_threads(count: int, work: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run ``work(i)`` in ``count`` threads released together; return the results and the errors."""
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            value = work(i)
        except Exception as error:
            with lock:
                errors.append(error)
        else:
            with lock:
                results.append(value)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


# How many times each race is run: enough for both orders to win, a few seconds on moto.
ROUNDS = 50


def replayed_production(registry: ModelRegistry, name: str) -> int | None:
    """The production alias as the audit trail tells it, oldest entry first."""
    production = None
    for entry in reversed(registry.audit_trail(name)):
        if entry.alias == "production" and entry.kind is TransitionKind.STAGE:
            production = entry.version
    return production


def replayed_stages(registry: ModelRegistry, name: str) -> dict[int, Stage]:
    """Each version's stage as the audit trail tells it."""
    stages: dict[int, Stage] = {}
    for entry in reversed(registry.audit_trail(name)):
        if entry.kind is TransitionKind.STAGE and entry.to_stage is not None:
            stages[entry.version] = entry.to_stage
    return stages


class RegistryContract:
    """Behaviour every registry store must give the registry. Subclasses provide the ``store`` fixture."""

    @pytest.fixture
    def registry(self, store: RegistryStore) -> ModelRegistry:
        return ModelRegistry(store)

    def register(self, registry: ModelRegistry, run_id: str, name: str = "churn", **fields: Any) -> int:
        return registry.create_model_version(
            name, candidate(**fields), run_id=run_id, registered_by="pipeline"
        ).version

    # --- registration ---

    def test_concurrent_registrations_get_distinct_versions_without_gaps(
        self, registry: ModelRegistry
    ) -> None:
        # Given 16 pipeline runs registering at the same moment
        versions, errors = in_threads(16, lambda i: self.register(registry, f"run-{i}"))

        # Then each got its own number, 1..16, and the store holds exactly those
        assert errors == []
        assert sorted(versions) == list(range(1, 17))
        assert [v.version for v in registry.search_model_versions("churn")] == list(range(1, 17))
        assert registry.get_registered_model("churn").latest_version == 16
        assert [t.seq for t in registry.audit_trail("churn")] == list(range(16, 0, -1))

    def test_registration_is_idempotent_per_run(self, registry: ModelRegistry) -> None:
        first = registry.create_model_version("churn", candidate(), run_id="run-a", registered_by="pipeline")

        again = registry.create_model_version("churn", candidate(), run_id="run-a", registered_by="pipeline")

        assert again == first
        assert [v.version for v in registry.search_model_versions("churn")] == [1]
        assert len(registry.audit_trail("churn")) == 1
        # the same run id registering another model is another version
        assert self.register(registry, "run-a", name="fraud") == 1

    def test_concurrent_retries_of_one_run_register_once(self, registry: ModelRegistry) -> None:
        versions, errors = in_threads(8, lambda _: self.register(registry, "run-a"))

        assert errors == []
        assert versions == [1] * 8
        assert [v.version for v in registry.search_model_versions("churn")] == [1]

    def test_registration_records_the_version_and_its_transition(self, registry: ModelRegistry) -> None:
        version = registry.create_model_version(
            "churn",
            candidate(tags={"team": "growth"}),
            run_id="run-a",
            registered_by="pipeline",
            stage=Stage.STAGING,
            reason="passed the gate",
        )

        stored = registry.get_model_version("churn", 1)
        assert stored == version
        assert stored.stage is Stage.STAGING
        assert stored.run_id == "run-a"
        assert stored.tags == {"team": "growth"}
        assert stored.created_at.tzinfo is not None
        assert stored.metrics["roc_auc"] is None  # NaN has no JSON form: stored as null
        (entry,) = registry.audit_trail("churn")
        assert (entry.version, entry.from_stage, entry.to_stage) == (1, None, Stage.STAGING)
        assert (entry.actor, entry.reason, entry.run_id) == ("pipeline", "passed the gate", "run-a")

    def test_missing_versions_and_models_are_not_found(self, registry: ModelRegistry) -> None:
        with pytest.raises(NotFoundError):
            registry.get_model_version("churn", 1)
        with pytest.raises(NotFoundError):
            registry.get_registered_model("churn")
        assert registry.search_model_versions("churn") == []

    def test_registration_refuses_production(self, registry: ModelRegistry) -> None:
        with pytest.raises(ValueError, match="promote"):
            registry.create_model_version(
                "churn", candidate(), run_id="r", registered_by="x", stage=Stage.PRODUCTION
            )

    # --- aliases ---

    def test_alias_moves_conditionally(self, registry: ModelRegistry) -> None:
        for run in ("r1", "r2", "r3"):
            self.register(registry, run)
        registry.set_alias("churn", "staging", 1, actor="alice", reason="try it", expected_version=None)

        # When someone expects the alias elsewhere
        with pytest.raises(ConflictError) as conflict:
            registry.set_alias("churn", "staging", 3, actor="bob", reason="x", expected_version=2)

        # Then the error names both versions and nothing moved
        assert "v1" in str(conflict.value)
        assert "v2" in str(conflict.value)
        assert registry.get_model_version_by_alias("churn", "staging").version == 1
        with pytest.raises(ConflictError, match="absent"):
            registry.set_alias("churn", "staging", 3, actor="bob", reason="x", expected_version=None)

        moved = registry.set_alias("churn", "staging", 2, actor="bob", reason="better", expected_version=1)
        assert (moved.version, moved.previous_version, moved.updated_by) == (2, 1, "bob")
        assert registry.get_alias("churn", "staging") == moved
        newest = registry.audit_trail("churn")[0]
        assert (newest.kind, newest.alias, newest.version, newest.previous_version) == (
            TransitionKind.ALIAS,
            "staging",
            2,
            1,
        )

    def test_setting_an_alias_to_its_value_changes_nothing(self, registry: ModelRegistry) -> None:
        self.register(registry, "r1")
        first = registry.set_alias("churn", "staging", 1, actor="a", reason="r", expected_version=None)
        entries = len(registry.audit_trail("churn"))

        again = registry.set_alias("churn", "staging", 1, actor="a", reason="r", expected_version=None)

        assert again == first
        assert len(registry.audit_trail("churn")) == entries

    def test_alias_errors(self, registry: ModelRegistry) -> None:
        self.register(registry, "r1")
        with pytest.raises(NotFoundError):
            registry.set_alias("churn", "staging", 7, actor="a", reason="r")
        with pytest.raises(NotFoundError):
            registry.get_model_version_by_alias("churn", "staging")
        with pytest.raises(ValueError, match="promote"):
            registry.set_alias("churn", "production", 1, actor="a", reason="r")
        with pytest.raises(ValueError, match="alias"):
            registry.set_alias("churn", "Not Valid", 1, actor="a", reason="r")

    def test_delete_alias(self, registry: ModelRegistry) -> None:
        self.register(registry, "r1")
        registry.set_alias("churn", "canary", 1, actor="a", reason="r")

        with pytest.raises(ConflictError):
            registry.delete_alias("churn", "canary", actor="a", reason="done", expected_version=2)
        registry.delete_alias("churn", "canary", actor="a", reason="done", expected_version=1)
        registry.delete_alias("churn", "canary", actor="a", reason="done")  # already gone: a no-op

        assert registry.list_aliases("churn") == []
        newest = registry.audit_trail("churn")[0]
        assert (newest.kind, newest.alias, newest.version) == (TransitionKind.ALIAS_REMOVED, "canary", 1)

    def test_a_removed_alias_reads_as_absent_and_can_be_set_again(self, registry: ModelRegistry) -> None:
        """Given an alias that was set and removed (a tombstone on DynamoDB, where nothing is deleted)
        When it is read, listed, moved conditionally and set again
        Then it reads as never set, a move expecting its old version conflicts, and setting it as new
        works and is what every read then sees."""
        self.register(registry, "r1")
        self.register(registry, "r2")
        registry.set_alias("churn", "canary", 1, actor="a", reason="r")
        registry.delete_alias("churn", "canary", actor="a", reason="done")

        with pytest.raises(NotFoundError):
            registry.get_alias("churn", "canary")
        with pytest.raises(NotFoundError):
            registry.get_model_version_by_alias("churn", "canary")
        assert registry.list_aliases("churn") == []
        with pytest.raises(ConflictError):
            registry.set_alias("churn", "canary", 2, actor="a", reason="r", expected_version=1)

        registry.set_alias("churn", "canary", 2, actor="a", reason="again", expected_version=None)

        assert registry.get_model_version_by_alias("churn", "canary").version == 2
        assert [(a.alias, a.version) for a in registry.list_aliases("churn")] == [("canary", 2)]
        with pytest.raises(ConflictError):
            registry.set_alias("churn", "canary", 1, actor="a", reason="r", expected_version=None)
        kinds = [e.kind for e in registry.audit_trail("churn")[:3]]
        assert kinds == [TransitionKind.ALIAS, TransitionKind.ALIAS_REMOVED, TransitionKind.ALIAS]

    def test_an_audit_entry_cannot_be_overwritten(self, registry: ModelRegistry) -> None:
        """Given the audit trail is append-only
        When a write tries to put an entry under a number already taken
        Then the store refuses it (on DynamoDB, a put conditional on the key being free) and the first
        entry is what the trail holds."""
        registry.create_model_version("churn", candidate(), run_id="exec-1", registered_by="pipeline")
        first = registry.audit_trail("churn")[0]
        forged = Transition.model_validate(
            {**first.model_dump(), "actor": "someone else", "reason": "rewritten history"}
        )

        with pytest.raises(WriteConflictError):
            registry.store.commit([AppendTransition(forged)])

        assert registry.audit_trail("churn") == [first]

    # --- stages ---

    def test_transition_stage_is_conditional_and_audited(self, registry: ModelRegistry) -> None:
        self.register(registry, "r1")

        moved = registry.transition_stage(
            "churn",
            1,
            Stage.STAGING,
            actor="verify",
            reason="serving parity ok",
            expected_stage=Stage.DEVELOPMENT,
        )
        # a retry of the same step changes nothing, even with its (now stale) expectation
        again = registry.transition_stage(
            "churn",
            1,
            Stage.STAGING,
            actor="verify",
            reason="serving parity ok",
            expected_stage=Stage.DEVELOPMENT,
        )

        assert moved.stage is again.stage is Stage.STAGING
        assert registry.get_model_version("churn", 1).stage is Stage.STAGING
        trail = registry.audit_trail("churn")
        assert len(trail) == 2
        assert (trail[0].from_stage, trail[0].to_stage, trail[0].actor) == (
            Stage.DEVELOPMENT,
            Stage.STAGING,
            "verify",
        )
        with pytest.raises(ConflictError, match="staging"):
            registry.transition_stage(
                "churn", 1, Stage.REJECTED, actor="x", reason="y", expected_stage=Stage.DEVELOPMENT
            )
        with pytest.raises(ValueError, match="promote"):
            registry.transition_stage("churn", 1, Stage.PRODUCTION, actor="x", reason="y")

    def test_the_production_version_leaves_production_only_by_promotion(
        self, registry: ModelRegistry
    ) -> None:
        self.register(registry, "r1")
        registry.promote("churn", 1, actor="a", reason="first")

        with pytest.raises(ConflictError, match="production"):
            registry.transition_stage("churn", 1, Stage.ARCHIVED, actor="a", reason="r")

    # --- promotion ---

    def test_promotion_archives_the_previous_version_with_two_audit_entries(
        self, registry: ModelRegistry
    ) -> None:
        self.register(registry, "r1")
        self.register(registry, "r2")
        first = registry.promote("churn", 1, actor="pipeline", reason="first model", run_id="r1")
        assert (first.version, first.previous_version) == (1, None)
        before = len(registry.audit_trail("churn"))

        result = registry.promote("churn", 2, actor="pipeline", reason="beats champion", run_id="r2")

        assert (result.version, result.previous_version, result.run_id) == (2, 1, "r2")
        assert registry.get_model_version_by_alias("churn", "production").version == 2
        assert registry.get_model_version("churn", 2).stage is Stage.PRODUCTION
        assert registry.get_model_version("churn", 1).stage is Stage.ARCHIVED
        trail = registry.audit_trail("churn")
        assert len(trail) == before + 2
        promoted, archived = trail[0], trail[1]
        assert (promoted.version, promoted.from_stage, promoted.to_stage) == (
            2,
            Stage.DEVELOPMENT,
            Stage.PRODUCTION,
        )
        assert (promoted.alias, promoted.previous_version, promoted.run_id) == ("production", 1, "r2")
        assert (archived.version, archived.from_stage, archived.to_stage) == (
            1,
            Stage.PRODUCTION,
            Stage.ARCHIVED,
        )
        assert "v2" in archived.reason

    def test_promoting_the_production_version_again_is_a_no_op(self, registry: ModelRegistry) -> None:
        self.register(registry, "r1")
        self.register(registry, "r2")
        registry.promote("churn", 1, actor="a", reason="first")
        result = registry.promote("churn", 2, actor="pipeline", reason="better", run_id="r2")
        trail = registry.audit_trail("churn")

        again = registry.promote(
            "churn", 2, actor="someone else", reason="retry", run_id="r2", expected_version=1
        )

        assert again == result
        assert registry.audit_trail("churn") == trail

    def test_promotion_with_a_stale_expectation_conflicts(self, registry: ModelRegistry) -> None:
        for run in ("r1", "r2", "r3"):
            self.register(registry, run)
        registry.promote("churn", 1, actor="a", reason="first")
        registry.promote("churn", 2, actor="a", reason="second")

        with pytest.raises(ConflictError) as conflict:
            registry.promote("churn", 3, actor="a", reason="compared with v1", expected_version=1)

        assert "v1" in str(conflict.value)
        assert "v2" in str(conflict.value)
        assert registry.get_alias("churn", "production").version == 2

    def test_concurrent_promotions_from_the_same_champion_have_one_winner(
        self, registry: ModelRegistry
    ) -> None:
        # Given v1 in production and eight candidates, each compared with v1
        for i in range(1, 10):
            self.register(registry, f"r{i}")
        registry.promote("churn", 1, actor="a", reason="first")

        # When all are promoted at once
        results, errors = in_threads(
            8, lambda i: registry.promote("churn", i + 2, actor="p", reason="better", expected_version=1)
        )

        # Then exactly one won and the others were told why
        assert len(results) == 1
        assert len(errors) == 7
        assert all(isinstance(e, ConflictError) for e in errors)
        self.assert_consistent(registry, "churn")
        assert registry.get_alias("churn", "production").version == results[0].version

    def test_concurrent_promotions_keep_the_trail_consistent(self, registry: ModelRegistry) -> None:
        for i in range(1, 10):
            self.register(registry, f"r{i}")
        registry.promote("churn", 1, actor="a", reason="first")

        results, errors = in_threads(8, lambda i: registry.promote("churn", i + 2, actor="p", reason="r"))

        # Whoever read the alias before another promotion landed lost; whoever read it after won
        assert results
        assert all(isinstance(e, ConflictError) for e in errors)
        assert len(results) + len(errors) == 8
        self.assert_consistent(registry, "churn")

    def assert_consistent(self, registry: ModelRegistry, name: str) -> None:
        """The alias, the stages and the audit trail tell the same story."""
        production = registry.get_alias(name, "production").version
        trail = registry.audit_trail(name)
        assert [t.seq for t in trail] == list(range(len(trail), 0, -1))
        assert trail[0].to_stage is Stage.PRODUCTION
        assert trail[0].version == production
        assert [v.version for v in registry.search_model_versions(name, Stage.PRODUCTION)] == [production]
        promotions = [t for t in reversed(trail) if t.to_stage is Stage.PRODUCTION]
        for before, after in pairwise(promotions):
            assert after.previous_version == before.version
        archived = {t.version for t in trail if t.to_stage is Stage.ARCHIVED}
        assert archived == {p.version for p in promotions[:-1]}

    def test_rollback_promotes_an_archived_version(self, registry: ModelRegistry) -> None:
        self.register(registry, "r1")
        self.register(registry, "r2")
        registry.promote("churn", 1, actor="a", reason="first")
        registry.promote("churn", 2, actor="a", reason="second")

        result = registry.promote("churn", 1, actor="oncall", reason="rollback: v2 misbehaves")

        assert (result.version, result.previous_version) == (1, 2)
        assert registry.get_model_version("churn", 2).stage is Stage.ARCHIVED
        assert registry.audit_trail("churn")[0].from_stage is Stage.ARCHIVED
        self.assert_consistent(registry, "churn")

    def test_rejected_versions_cannot_be_promoted(self, registry: ModelRegistry) -> None:
        self.register(registry, "r1")
        registry.transition_stage("churn", 1, Stage.REJECTED, actor="gate", reason="worse than champion")

        with pytest.raises(ConflictError, match="rejected"):
            registry.promote("churn", 1, actor="a", reason="r")
        with pytest.raises(NotFoundError):
            registry.promote("churn", 9, actor="a", reason="r")

    # --- searching ---

    def test_stage_searches(self, registry: ModelRegistry) -> None:
        for i in range(1, 5):
            self.register(registry, f"c{i}")
        self.register(registry, "f1", name="fraud")
        registry.promote("churn", 1, actor="a", reason="r")
        registry.promote("churn", 2, actor="a", reason="r")
        registry.transition_stage("churn", 3, Stage.STAGING, actor="a", reason="r")
        registry.transition_stage("churn", 4, Stage.REJECTED, actor="a", reason="r")

        def found(name: str | None = None, stage: Stage | None = None) -> list[tuple[str, int]]:
            return [(v.name, v.version) for v in registry.search_model_versions(name, stage)]

        assert found("churn", Stage.PRODUCTION) == [("churn", 2)]
        assert found("churn", Stage.ARCHIVED) == [("churn", 1)]
        assert found(stage=Stage.DEVELOPMENT) == [("fraud", 1)]
        assert found(stage=Stage.STAGING) == [("churn", 3)]
        assert found() == [("churn", 1), ("churn", 2), ("churn", 3), ("churn", 4), ("fraud", 1)]
        latest = registry.get_latest_versions("churn")
        assert [(v.stage, v.version) for v in latest] == [
            (Stage.STAGING, 3),
            (Stage.PRODUCTION, 2),
            (Stage.ARCHIVED, 1),
            (Stage.REJECTED, 4),
        ]
        assert [v.version for v in registry.get_latest_versions("churn", [Stage.PRODUCTION])] == [2]
        assert [m.name for m in registry.list_models()] == ["churn", "fraud"]

    # --- annotations ---

    def test_runtime_metrics_tags_and_approvals_survive_transitions(self, registry: ModelRegistry) -> None:
        self.register(registry, "r1", tags={"team": "growth"})

        registry.update_runtime_metrics("churn", 1, {"load_time_s": 0.25, "p50_ms": 1.5})
        registry.update_runtime_metrics("churn", 1, {"p99_ms": 4.0})
        registry.set_tag("churn", 1, "owner", "alice")
        registry.delete_tag("churn", 1, "team")
        registry.add_approval("churn", 1, actor="carol", comment="looks good")
        registry.promote("churn", 1, actor="a", reason="r")

        version = registry.get_model_version("churn", 1)
        assert version.runtime_metrics == {"load_time_s": 0.25, "p50_ms": 1.5, "p99_ms": 4.0}
        assert version.tags == {"owner": "alice"}
        assert [(a.actor, a.comment) for a in version.approvals] == [("carol", "looks good")]
        assert version.stage is Stage.PRODUCTION
        with pytest.raises(NotFoundError):
            registry.set_tag("churn", 5, "k", "v")

    # --- approvals (continuous delivery) ---

    def pending(self, run_id: str = "run-9", token: str = "token-1") -> PendingApproval:
        requested = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        return PendingApproval(
            run_id=run_id,
            token=token,
            environment="staging",
            requested_at=requested,
            expires_at=requested + timedelta(hours=24),
        )

    def test_a_pending_approval_stays_on_the_version_until_it_is_cleared(
        self, registry: ModelRegistry
    ) -> None:
        # Given a version moved to staging, waiting for a person
        self.register(registry, "r1")
        registry.transition_stage("churn", 1, Stage.STAGING, actor="pipeline", reason="verified")
        trail_before = registry.audit_trail("churn")

        # When the approval step keeps the task token on it
        returned = registry.request_approval("churn", 1, self.pending())

        # Then it reads back exactly, survives other annotations, and writes no audit entry
        assert returned.pending_approval == self.pending()
        registry.update_runtime_metrics("churn", 1, {"p99_ms": 3.0})
        registry.set_tag("churn", 1, "owner", "alice")
        stored = registry.get_model_version("churn", 1)
        assert stored.pending_approval == self.pending()
        assert stored.pending_approval is not None and stored.pending_approval.expires_at.tzinfo is not None
        assert (stored.stage, stored.runtime_metrics, stored.tags) == (
            Stage.STAGING,
            {"p99_ms": 3.0},
            {"owner": "alice"},
        )
        assert registry.audit_trail("churn") == trail_before
        # A newer request (a re-run of the step) replaces the token; clearing forgets it, twice is harmless
        registry.request_approval("churn", 1, self.pending(token="token-2"))
        assert registry.get_model_version("churn", 1).pending_approval == self.pending(token="token-2")
        assert registry.clear_pending_approval("churn", 1).pending_approval is None
        assert registry.clear_pending_approval("churn", 1).pending_approval is None
        assert registry.get_model_version("churn", 1).runtime_metrics == {"p99_ms": 3.0}
        with pytest.raises(NotFoundError):
            registry.request_approval("churn", 2, self.pending())

    def test_an_approval_and_a_rejection_sent_at_the_same_instant_have_one_winner(
        self, registry: ModelRegistry
    ) -> None:
        """Round after round, approve and reject race for the same wait: exactly one claims it, the other is
        told who decided first, and the trail holds one decision per wait, replaying to what happened."""
        winners: dict[int, TransitionKind] = {}
        for round_ in range(1, ROUNDS + 1):
            number = self.register(registry, f"r{round_}")
            registry.request_approval(
                "churn", number, self.pending(run_id=f"run-{round_}", token=f"t-{round_}")
            )

            def decide(i: int, number: int = number, round_: int = round_) -> Transition:
                return registry.claim_decision(
                    "churn",
                    number,
                    token=f"t-{round_}",
                    approved=i == 0,
                    actor=["alice", "bob"][i],
                    reason=["ship it", "not yet"][i],
                )

            results, errors = in_threads(2, decide)

            assert len(results) == 1 and len(errors) == 1, (results, errors)
            (won,), (lost,) = results, errors
            assert isinstance(lost, AlreadyDecidedError)
            assert lost.decision == won
            assert registry.get_model_version("churn", number).pending_approval is None
            winners[number] = won.kind
        decisions = [
            t
            for t in reversed(registry.audit_trail("churn"))
            if t.kind in (TransitionKind.APPROVED, TransitionKind.REJECTED)
        ]
        assert {t.version: t.kind for t in decisions} == winners
        assert len(decisions) == ROUNDS
        assert [t.seq for t in registry.audit_trail("churn")] == list(
            range(len(registry.audit_trail("churn")), 0, -1)
        )

    def test_a_decision_for_a_wait_that_ended_is_refused_with_the_first_decision(
        self, registry: ModelRegistry
    ) -> None:
        self.register(registry, "r1")
        registry.request_approval("churn", 1, self.pending())
        first = registry.claim_decision("churn", 1, token="token-1", approved=False, actor="bob", reason="no")

        with pytest.raises(AlreadyDecidedError) as late:
            registry.claim_decision("churn", 1, token="token-1", approved=True, actor="alice", reason="yes")

        assert late.value.decision == first
        # A new wait (a re-run staged it again) is a new token: the old one claims nothing
        registry.request_approval("churn", 1, self.pending(token="token-2"))
        with pytest.raises(AlreadyDecidedError):
            registry.claim_decision("churn", 1, token="token-1", approved=True, actor="alice", reason="yes")
        assert registry.get_model_version("churn", 1).pending_approval == self.pending(token="token-2")

    def test_promotion_and_rollback_at_the_same_instant_have_one_winner(
        self, registry: ModelRegistry
    ) -> None:
        """Round after round, a promotion of a new candidate races a rollback to the version production
        replaced, both decided against the same production: one moves the alias, the other is refused, and
        the trail replays to the alias and the stages."""
        self.register(registry, "r0")
        self.register(registry, "r1")
        registry.promote("churn", 1, actor="a", reason="first")
        registry.promote("churn", 2, actor="a", reason="second")
        for round_ in range(ROUNDS):
            production = registry.get_alias("churn", "production")
            assert production.previous_version is not None
            candidate_ = self.register(registry, f"c{round_}")
            moves = [(candidate_, "promote"), (production.previous_version, "rollback")]

            def move(i: int, moves: list[tuple[int, str]] = moves, expected: int = production.version) -> Any:
                number, why = moves[i]
                return registry.promote("churn", number, actor=why, reason=why, expected_version=expected)

            results, errors = in_threads(2, move)

            assert len(results) == 1 and len(errors) == 1, (results, errors)
            assert isinstance(errors[0], ConflictError)
            assert registry.get_alias("churn", "production").version == results[0].version
        self.assert_consistent(registry, "churn")
        assert replayed_production(registry, "churn") == registry.get_alias("churn", "production").version
        assert replayed_stages(registry, "churn") == {
            v.version: v.stage for v in registry.search_model_versions("churn")
        }

    def test_decisions_are_audit_entries_and_an_approval_is_kept_on_the_version(
        self, registry: ModelRegistry
    ) -> None:
        self.register(registry, "r1")
        self.register(registry, "r2")
        registry.transition_stage("churn", 1, Stage.STAGING, actor="pipeline", reason="verified")

        approved = registry.record_decision(
            "churn", 1, approved=True, actor="alice", reason="numbers look right", run_id="run-1"
        )
        rejected = registry.record_decision(
            "churn", 2, approved=False, actor="bob", reason="not this quarter", run_id="run-2"
        )

        # Each is an entry of its kind, on the version's current stage (a decision moves nothing itself)
        assert (approved.kind, approved.version, approved.from_stage, approved.to_stage) == (
            TransitionKind.APPROVED,
            1,
            Stage.STAGING,
            Stage.STAGING,
        )
        assert (approved.actor, approved.reason, approved.run_id, approved.alias) == (
            "alice",
            "numbers look right",
            "run-1",
            None,
        )
        assert (rejected.kind, rejected.version, rejected.from_stage, rejected.to_stage) == (
            TransitionKind.REJECTED,
            2,
            Stage.DEVELOPMENT,
            Stage.DEVELOPMENT,
        )
        trail = registry.audit_trail("churn")
        assert trail[:2] == [rejected, approved]
        assert [t.seq for t in trail] == list(range(len(trail), 0, -1))
        # The approval is kept on the version too; a rejection is not an approval
        [kept] = registry.get_model_version("churn", 1).approvals
        assert (kept.actor, kept.comment, kept.run_id, kept.at) == (
            "alice",
            "numbers look right",
            "run-1",
            approved.at,
        )
        assert registry.get_model_version("churn", 2).approvals == []
        assert registry.get_model_version("churn", 1).stage is Stage.STAGING
        with pytest.raises(NotFoundError):
            registry.record_decision("churn", 9, approved=True, actor="a", reason="r")

    def test_concurrent_decisions_keep_the_trail_gapless(self, registry: ModelRegistry) -> None:
        self.register(registry, "r1")

        results, errors = in_threads(
            8,
            lambda i: registry.record_decision(
                "churn", 1, approved=i % 2 == 0, actor=f"person-{i}", reason="r", run_id="run-1"
            ),
        )

        assert errors == []
        trail = registry.audit_trail("churn")
        assert [t.seq for t in trail] == list(range(9, 0, -1))
        assert sorted(t.seq for t in results) == list(range(2, 10))
        assert sorted(a.actor for a in registry.get_model_version("churn", 1).approvals) == [
            f"person-{i}" for i in (0, 2, 4, 6)
        ]


class TestInMemoryRegistry(RegistryContract):
    @pytest.fixture
    def store(self) -> RegistryStore:
        return InMemoryRegistryStore()


def test_returned_versions_do_not_share_state_with_the_store() -> None:
    registry = ModelRegistry(InMemoryRegistryStore())
    version = registry.create_model_version("churn", candidate(), run_id="r", registered_by="p")

    version.params["C"] = 99.0

    assert registry.get_model_version("churn", 1).params["C"] == 1.0


def test_model_names_are_checked() -> None:
    registry = ModelRegistry(InMemoryRegistryStore())
    with pytest.raises(ValueError, match="model name"):
        registry.create_model_version("bad#name", candidate(), run_id="r", registered_by="p")
