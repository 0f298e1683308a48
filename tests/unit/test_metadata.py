"""The metadata store's rules: duplicate runs are refused, steps keep their attempts, datasets are found by
their source, and lineage walks both ways over several hops.

:class:`MetadataContract` holds the behaviour once; this module runs it on the in-memory store and
``tests/integration/test_stores_dynamodb.py`` runs it again on the DynamoDB store on moto.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from shared.errors import ConflictError, NotFoundError
from shared.metadata import (
    Artifact,
    ArtifactKind,
    Dataset,
    DatasetKind,
    Direction,
    ErrorInfo,
    InMemoryMetadataStore,
    MetadataStore,
    NodeType,
    Relation,
    Run,
    RunReason,
    RunStatus,
    StepStatus,
    TimeRange,
    file_id,
    model_version_id,
)
from tests.unit.test_registry import in_threads

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def run(run_id: str, model: str = "churn", started: float = 0, **fields: Any) -> Run:
    return Run(run_id=run_id, model=model, reason=RunReason.NEW_DATA, started_at=at(started), **fields)


def dataset(dataset_id: str, created: float = 0, **fields: Any) -> Dataset:
    values: dict[str, Any] = {
        "dataset_id": dataset_id,
        "model": "churn",
        "uri": f"s3://data/datasets/churn/{dataset_id}.parquet",
        "version_id": "v-parquet",
        "sha256": "ef" * 32,
        "rows": 500,
        "schema": {"tenure": "numeric", "plan": "categorical"},
        "time_range": TimeRange(start=at(-60 * 24), end=at(0)),
        "profile": {"tenure": {"quantiles": [0.0, 0.5, float("nan")]}},
        "source_uri": f"s3://data/incoming/churn/{dataset_id}.csv",
        "source_version_id": "v1",
        "created_at": at(created),
    }
    return Dataset(**{**values, **fields})


class MetadataContract:
    """Behaviour every metadata store must have. Subclasses provide the ``store`` fixture."""

    # --- runs ---

    def test_a_duplicate_run_start_is_refused(self, store: MetadataStore) -> None:
        assert store.start_run(run("exec-1", input={"key": "incoming/churn/a.csv"})) is True

        assert store.start_run(run("exec-1", started=5, input={"key": "other"})) is False

        assert store.get_run("exec-1").input == {"key": "incoming/churn/a.csv"}
        assert [r.run_id for r in store.list_runs()] == ["exec-1"]

    def test_update_run(self, store: MetadataStore) -> None:
        store.start_run(run("exec-1"))

        store.update_run(
            "exec-1", status=RunStatus.RUNNING, execution_arn="arn:aws:states:::execution:p:exec-1"
        )
        updated = store.update_run(
            "exec-1",
            status="rejected",
            ended_at=at(3),
            outcome={"version": 3, "promoted": False, "gate_reasons": ["accuracy below champion"]},
        )

        assert updated == store.get_run("exec-1")
        assert updated.status is RunStatus.REJECTED
        assert updated.execution_arn == "arn:aws:states:::execution:p:exec-1"
        assert updated.outcome["gate_reasons"] == ["accuracy below champion"]
        with pytest.raises(ValidationError):
            store.update_run("exec-1", status="exploded")
        with pytest.raises(ValueError, match="model"):
            store.update_run("exec-1", model="fraud")
        with pytest.raises(NotFoundError):
            store.update_run("nope", status=RunStatus.FAILED)
        with pytest.raises(NotFoundError):
            store.get_run("nope")

    def test_concurrent_updates_of_different_fields_all_land(self, store: MetadataStore) -> None:
        store.start_run(run("exec-1"))
        changes: list[dict[str, Any]] = [
            {"status": RunStatus.FAILED},
            {"execution_arn": "arn:x"},
            {"evidence_uri": "s3://artifacts/reports/churn/r.json"},
            {"ended_at": at(9)},
            {"error": ErrorInfo(step="Train", type="TransientError", message="throttled")},
            {"input": {"bucket": "data"}},
        ]

        _, errors = in_threads(len(changes), lambda i: store.update_run("exec-1", **changes[i]))

        assert errors == []
        final = store.get_run("exec-1")
        assert final.status is RunStatus.FAILED
        assert final.execution_arn == "arn:x"
        assert final.evidence_uri == "s3://artifacts/reports/churn/r.json"
        assert final.ended_at == at(9)
        assert final.error is not None
        assert final.error.step == "Train"
        assert final.input == {"bucket": "data"}

    def test_list_runs_newest_first(self, store: MetadataStore) -> None:
        store.start_run(run("a", started=1))
        store.start_run(run("c", started=3, status=RunStatus.SUCCEEDED))
        store.start_run(run("b", started=2, status=RunStatus.SUCCEEDED))
        store.start_run(run("f", model="fraud", started=4))

        assert [r.run_id for r in store.list_runs()] == ["f", "c", "b", "a"]
        assert [r.run_id for r in store.list_runs(limit=2)] == ["f", "c"]
        assert [r.run_id for r in store.list_runs("churn")] == ["c", "b", "a"]
        assert [r.run_id for r in store.list_runs("churn", limit=1)] == ["c"]
        assert store.list_runs("nobody") == []
        last = store.last_run("churn")
        assert last is not None
        assert last.run_id == "c"
        store.update_run("c", status=RunStatus.FAILED)
        last_good = store.last_run("churn", RunStatus.SUCCEEDED)
        assert last_good is not None
        assert last_good.run_id == "b"
        assert store.last_run("churn", RunStatus.SKIPPED) is None

    # --- steps ---

    def test_steps_record_attempts_timings_and_errors(self, store: MetadataStore) -> None:
        store.start_run(run("exec-1"))

        store.start_step("exec-1", "Validate", at=at(0))
        done = store.finish_step("exec-1", "Validate", at=at(0.5))
        store.start_step("exec-1", "Train", at=at(1))
        failed = store.fail_step(
            "exec-1", "Train", ErrorInfo(type="TransientError", message="slow"), at=at(2)
        )
        retried = store.start_step("exec-1", "Train", at=at(3))
        store.finish_step("exec-1", "Train", at=at(5))

        assert (done.status, done.duration_s, done.attempt) == (StepStatus.SUCCEEDED, 30.0, 1)
        assert failed.error is not None
        assert failed.error.type == "TransientError"
        assert retried.attempt == 2
        steps = store.list_steps("exec-1")
        assert [(s.name, s.attempt, s.status) for s in steps] == [
            ("Validate", 1, StepStatus.SUCCEEDED),
            ("Train", 1, StepStatus.FAILED),
            ("Train", 2, StepStatus.SUCCEEDED),
        ]
        assert steps[-1].duration_s == 120.0

    def test_ending_a_step_is_idempotent_and_needs_no_start(self, store: MetadataStore) -> None:
        store.start_run(run("exec-1"))
        store.start_step("exec-1", "Validate", at=at(0))
        first = store.finish_step("exec-1", "Validate", at=at(1))

        again = store.finish_step("exec-1", "Validate", at=at(2))
        # a step that crashed before recording its start still gets its failure recorded
        crashed = store.fail_step(
            "exec-1", "Train", ErrorInfo(step="Train", type="ImportError", message="x"), at=at(3)
        )

        assert again == first
        assert (crashed.status, crashed.attempt, crashed.started_at) == (StepStatus.FAILED, 1, at(3))
        assert len(store.list_steps("exec-1")) == 2
        assert store.list_steps("nope") == []

    # --- datasets and artifacts ---

    def test_datasets_list_oldest_first_by_kind(self, store: MetadataStore) -> None:
        store.put_dataset(dataset("d2", created=2))
        store.put_dataset(dataset("d1", created=1))
        store.put_dataset(dataset("d3", created=3, kind=DatasetKind.FEEDBACK))
        store.put_dataset(dataset("x1", model="fraud"))

        assert [d.dataset_id for d in store.list_datasets("churn")] == ["d1", "d2", "d3"]
        assert [d.dataset_id for d in store.list_datasets("churn", DatasetKind.FEEDBACK)] == ["d3"]
        assert [d.dataset_id for d in store.list_datasets("churn", DatasetKind.UPLOAD)] == ["d1", "d2"]
        stored = store.get_dataset("d1")
        assert stored.schema_ == {"tenure": "numeric", "plan": "categorical"}
        assert stored.time_range == TimeRange(start=at(-60 * 24), end=at(0))
        assert stored.profile["tenure"]["quantiles"][:2] == [0.0, 0.5]
        with pytest.raises(NotFoundError):
            store.get_dataset("nope")

    def test_datasets_are_found_by_their_source_object_version(self, store: MetadataStore) -> None:
        first = store.put_dataset(dataset("d1"))

        # a re-run of validation on the same object version gets the dataset recorded the first time
        again = store.put_dataset(dataset("d1-rerun", source_uri=first.source_uri))

        assert again == first
        found = store.find_dataset_by_source("churn", "s3://data/incoming/churn/d1.csv", "v1")
        assert found == first
        assert store.find_dataset_by_source("churn", "s3://data/incoming/churn/d1.csv", "v2") is None
        assert store.find_dataset_by_source("fraud", "s3://data/incoming/churn/d1.csv", "v1") is None
        unversioned = store.put_dataset(
            dataset("d9", source_uri="s3://data/incoming/churn/a#b.csv", source_version_id=None)
        )
        assert store.find_dataset_by_source("churn", "s3://data/incoming/churn/a#b.csv", None) == unversioned
        with pytest.raises(ConflictError):
            store.put_dataset(dataset("d1", source_uri="s3://data/incoming/churn/other.csv"))

    def test_artifacts_are_immutable(self, store: MetadataStore) -> None:
        artifact = Artifact(
            artifact_id="a1",
            kind=ArtifactKind.MODEL,
            uri="s3://artifacts/models/churn/1/model.joblib",
            sha256="12" * 32,
            created_at=at(0),
            properties={"size": 1234, "flavor": "sklearn"},
        )

        assert store.put_artifact(artifact) == artifact
        assert store.put_artifact(artifact.model_copy(update={"sha256": "00" * 32})) == artifact
        assert store.get_artifact("a1") == artifact
        with pytest.raises(NotFoundError):
            store.get_artifact("nope")

    # --- lineage ---

    def build_lineage(self, store: MetadataStore) -> dict[str, str]:
        """Two uploads feed two runs; the second run also reads the first dataset; each makes a version."""
        f1, f2 = (
            file_id("s3://data/incoming/churn/jan.csv", "v1"),
            file_id("s3://data/incoming/churn/feb.csv", "v7"),
        )
        m1, m2 = model_version_id("churn", 1), model_version_id("churn", 2)
        edges = [
            (NodeType.FILE, f1, NodeType.DATASET, "d1", Relation.DERIVED),
            (NodeType.FILE, f2, NodeType.DATASET, "d2", Relation.DERIVED),
            (NodeType.DATASET, "d1", NodeType.RUN, "run-1", Relation.INPUT),
            (NodeType.DATASET, "d1", NodeType.RUN, "run-2", Relation.INPUT),
            (NodeType.DATASET, "d2", NodeType.RUN, "run-2", Relation.INPUT),
            (NodeType.RUN, "run-1", NodeType.ARTIFACT, "model-1", Relation.OUTPUT),
            (NodeType.RUN, "run-2", NodeType.ARTIFACT, "model-2", Relation.OUTPUT),
            (NodeType.RUN, "run-2", NodeType.ARTIFACT, "holdout-2", Relation.OUTPUT),
            (NodeType.ARTIFACT, "model-1", NodeType.MODEL_VERSION, m1, Relation.DERIVED),
            (NodeType.ARTIFACT, "model-2", NodeType.MODEL_VERSION, m2, Relation.DERIVED),
            (NodeType.RUN, "run-1", NodeType.MODEL_VERSION, m1, Relation.OUTPUT),
            (NodeType.RUN, "run-2", NodeType.MODEL_VERSION, m2, Relation.OUTPUT),
        ]
        for src_type, src, dst_type, dst, relation in edges:
            store.link(src_type, src, dst_type, dst, relation)
        return {"f1": f1, "f2": f2, "m1": m1, "m2": m2}

    def test_links_are_stored_both_ways_once(self, store: MetadataStore) -> None:
        ids = self.build_lineage(store)
        store.link(NodeType.DATASET, "d1", NodeType.RUN, "run-1", Relation.INPUT)  # a re-run links again

        into_run = store.upstream(NodeType.RUN, "run-2")
        out_of_d1 = store.downstream(NodeType.DATASET, "d1")

        assert sorted((e.src.id, e.relation) for e in into_run) == [("d1", "input"), ("d2", "input")]
        assert sorted(e.dst.id for e in out_of_d1) == ["run-1", "run-2"]
        assert [(e.src.type, e.src.id) for e in store.upstream(NodeType.DATASET, "d1")] == [
            (NodeType.FILE, ids["f1"])
        ]
        assert store.upstream(NodeType.FILE, ids["f1"]) == []
        with pytest.raises(ValueError, match="relation"):
            store.link(NodeType.RUN, "a", NodeType.RUN, "b", "Not Valid")

    def test_lineage_walks_upstream_to_the_source_files(self, store: MetadataStore) -> None:
        ids = self.build_lineage(store)

        graph = store.lineage(NodeType.MODEL_VERSION, ids["m2"], Direction.UPSTREAM, depth=4)

        assert graph.nodes[0].id == ids["m2"]
        assert graph.nodes[0].depth == 0
        assert graph.ids(NodeType.RUN) == ["run-2"]
        assert sorted(graph.ids(NodeType.DATASET)) == ["d1", "d2"]
        assert sorted(graph.ids(NodeType.FILE)) == sorted([ids["f1"], ids["f2"]])
        assert graph.ids(NodeType.ARTIFACT) == ["model-2"]  # the holdout is a sibling output, not upstream
        depths = {n.id: n.depth for n in graph.nodes}
        assert (depths["run-2"], depths["d1"], depths[ids["f1"]]) == (1, 2, 3)
        near = store.lineage(NodeType.MODEL_VERSION, ids["m2"], Direction.UPSTREAM, depth=1)
        assert sorted(n.id for n in near.nodes) == sorted([ids["m2"], "model-2", "run-2"])

    def test_lineage_walks_downstream_to_every_model_a_file_fed(self, store: MetadataStore) -> None:
        ids = self.build_lineage(store)

        from_jan = store.lineage(NodeType.FILE, ids["f1"], Direction.DOWNSTREAM, depth=5)
        from_feb = store.lineage(NodeType.FILE, ids["f2"], Direction.DOWNSTREAM, depth=5)

        assert sorted(from_jan.ids(NodeType.MODEL_VERSION)) == [ids["m1"], ids["m2"]]
        assert from_feb.ids(NodeType.MODEL_VERSION) == [ids["m2"]]
        assert sorted(from_feb.ids(NodeType.ARTIFACT)) == ["holdout-2", "model-2"]
        assert len({(e.src, e.dst, e.relation) for e in from_jan.events}) == len(from_jan.events)

    def test_model_context_groups_what_a_version_came_from(self, store: MetadataStore) -> None:
        ids = self.build_lineage(store)

        context = store.model_context("churn", 1)

        assert context.context_id == "churn:1"
        assert (context.runs, context.datasets, context.artifacts, context.files) == (
            ["run-1"],
            ["d1"],
            ["model-1"],
            [ids["f1"]],
        )


class TestInMemoryMetadata(MetadataContract):
    @pytest.fixture
    def store(self) -> MetadataStore:
        return InMemoryMetadataStore()


def test_records_keep_timestamps_in_utc() -> None:
    paris = datetime(2026, 3, 1, 13, 0, tzinfo=ZoneInfo("Europe/Paris"))

    recorded = Run.model_validate({**run("r").model_dump(), "started_at": paris})

    assert recorded.started_at == at(0)
    assert recorded.started_at.tzinfo is UTC
    assert '"started_at":"2026-03-01T12:00:00Z"' in run("r").model_dump_json()
    with pytest.raises(ValidationError):
        Run(run_id="r", model="m", reason=RunReason.MANUAL, started_at=datetime(2026, 3, 1))
