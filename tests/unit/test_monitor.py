"""The monitor run on in-memory fakes: what it reads, decides, writes, asks for and remembers.

A churn model (logistic regression) is put in production directly; traffic is captured where Firehose would
write it; labels arrive through the labels logic; the bucket's clock moves by hand.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from examples.churn import generate
from shared.errors import ConflictError, IntegrityError
from shared.metadata import DatasetKind, NodeType, RunReason, file_id
from shared.monitoring.decision import MonitorReport
from shared.monitoring.labels import accept_label_file
from shared.monitoring.log import InMemoryMonitorLog
from shared.monitoring.monitor import (
    DirectRunRequester,
    MonitorOutcome,
    MonitorRequest,
    emit_metrics,
    monitor,
    monitor_model,
    parse_monitor_event,
)
from shared.monitoring.report import render_html
from shared.storage import ObjectRef
from tests.fixtures.monitoring import (
    ClockedObjectStore,
    Production,
    Traffic,
    label_csv,
    monitoring_contract,
    production_churn,
    services_at,
)

pytestmark = pytest.mark.unit

START = datetime(2026, 3, 1, 12, tzinfo=UTC)


class World:
    """A model in production, its traffic, the monitor's log and a trigger that starts runs in memory."""

    def __init__(self, production: Production) -> None:
        self.production = production
        self.svc = production.svc
        self.store: ClockedObjectStore = production.objects
        self.traffic = Traffic(production)
        self.log = InMemoryMonitorLog()
        self.runs = DirectRunRequester(self.svc)

    @property
    def model(self) -> str:
        return self.production.model

    def monitor(self, **after: float) -> MonitorOutcome:
        now = self.store.advance(**(after or {"minutes": 5}))
        return monitor_model(self.svc, self.log, self.runs, self.model, now=now, requested_by="test")

    def labels(self, frame: Any, ids: list[str], name: str = "labels.csv") -> str:
        """Send a label file back; its lineage id (URI and S3 version)."""
        ref = self.svc.objects.put(
            ObjectRef(self.svc.settings.data_bucket, f"labels/{self.model}/{name}"), label_csv(frame, ids)
        )
        assert accept_label_file(self.svc, ref.bucket, ref.key, ref.version_id).accepted
        return file_id(ref.uri, ref.version_id)

    def json(self, uri: str | None) -> dict[str, Any]:
        assert uri
        found: dict[str, Any] = json.loads(self.svc.objects.get(ObjectRef.parse(uri)).body)
        return found


@pytest.fixture
def world() -> World:
    svc = services_at(START)
    return World(production_churn(svc, monitoring_contract()))


# --- deciding ------------------------------------------------------------------------------------------


def test_traffic_like_the_training_data_asks_for_nothing(world: World) -> None:
    world.traffic.send(generate(300, seed=5))

    outcome = world.monitor()

    assert (outcome.action, outcome.run_id, outcome.rows) == ("none", None, 300)
    assert world.runs.requests == []
    report = world.json(outcome.report_uri)
    assert report["decision"]["action"] == "none" and report["monitor"]["requested_run"] is None
    assert (
        outcome.report_uri == "s3://flywheel-test-artifacts/reports/churn/20260301T120500.000000Z/report.json"
    )


def test_a_covariate_shift_asks_the_trigger_for_a_drift_run_with_the_report_as_evidence(world: World) -> None:
    world.traffic.send(generate(300, seed=6, covariate_shift=1.0))

    outcome = world.monitor()

    assert (outcome.action, outcome.reason) == ("retrain", "drift") and outcome.run_started
    [request] = world.runs.requests
    assert (request.model, request.reason, request.requested_by) == ("churn", RunReason.DRIFT, "monitor")
    assert request.evidence_uri == outcome.report_uri
    report = world.json(outcome.report_uri)
    window_end = datetime.fromisoformat(report["window_end"].replace("Z", "+00:00"))
    assert request.idempotency_key == f"churn/{window_end.isoformat()}"
    assert report["monitor"]["requested_run"] == outcome.run_id
    run = world.svc.metadata.get_run(str(outcome.run_id))
    assert run.reason is RunReason.DRIFT and run.evidence_uri == outcome.report_uri
    assert world.log.state("churn").last_triggered_run == outcome.run_id


def test_a_second_crossing_inside_the_cooldown_is_held_back_and_recorded_and_one_after_it_is_not(
    world: World,
) -> None:
    world.traffic.send(generate(300, seed=6, covariate_shift=1.0))
    first = world.monitor()
    world.store.advance(hours=2)
    world.traffic.send(generate(300, seed=7, covariate_shift=1.0))

    held = world.monitor()

    assert (held.action, held.reason, held.run_id) == ("held_back", "drift", None)
    assert len(world.runs.requests) == 1
    latest = world.log.history("churn")[0]
    assert (latest.action, latest.reason) == ("held_back", "drift")
    assert latest.reasons[0].startswith("held back: last retraining triggered 2.1 h ago, cooldown 24 h")
    assert world.log.state("churn").last_triggered_run == first.run_id

    world.store.advance(hours=23)
    world.traffic.send(generate(300, seed=8, covariate_shift=1.0))
    again = world.monitor()
    assert (again.action, again.reason) == ("retrain", "drift") and again.run_id != first.run_id


def test_the_same_evidence_asked_for_twice_starts_one_run(world: World) -> None:
    """A run retried after a crash (its state not committed) reads the same window and asks with the same
    idempotency key: the trigger answers 'duplicate'."""
    world.traffic.send(generate(300, seed=6, covariate_shift=1.0))
    first = world.monitor()
    world.log = InMemoryMonitorLog()  # as if the commit had been lost

    second = world.monitor()

    assert second.run_id == first.run_id and second.run_duplicate and not second.run_started


def test_concept_drift_with_labels_asks_for_a_degradation_run_and_writes_feedback(world: World) -> None:
    frame = generate(300, seed=9, concept_drift=1.0)
    ids = world.traffic.send(frame)
    label_file = world.labels(frame, ids)

    outcome = world.monitor()

    assert (outcome.action, outcome.reason, outcome.labelled_rows) == ("retrain", "degradation", 300)
    assert "fell from" in outcome.reasons[0]
    record = world.log.history("churn")[0]
    assert record.live_metric is not None and record.holdout_metric is not None
    assert record.live_metric < record.holdout_metric - 0.05
    [feedback] = world.svc.metadata.list_datasets("churn", DatasetKind.FEEDBACK)
    assert feedback.dataset_id == outcome.feedback_dataset == record.feedback_dataset
    assert feedback.rows == record.feedback_rows == 300 and feedback.source_uri == outcome.report_uri
    sources = {e.src.id for e in world.svc.metadata.upstream(NodeType.DATASET, feedback.dataset_id)}
    assert label_file in sources and any("/captures/churn/" in s for s in sources)


def test_labels_wait_for_enough_of_them_unless_they_have_waited_a_window(world: World) -> None:
    first = generate(60, seed=10)
    world.labels(first, world.traffic.send(first), "a.csv")
    waiting = world.monitor()
    assert waiting.labelled_rows == 0 and waiting.feedback_dataset is None
    assert any(
        "wait for more: 60 found their capture, 100 needed" in n for n in world.log.history("churn")[0].notes
    )

    second = generate(60, seed=11)
    world.labels(second, world.traffic.send(second), "b.csv")
    judged = world.monitor()
    assert judged.labelled_rows == 120 and judged.feedback_dataset is not None

    few = generate(10, seed=12)
    world.labels(few, world.traffic.send(few), "c.csv")
    assert world.monitor().labelled_rows == 0
    stale = world.monitor(hours=25)
    assert stale.labelled_rows == 10 and stale.action == "insufficient_data"
    assert len(world.svc.metadata.list_datasets("churn", DatasetKind.FEEDBACK)) == 2


def test_late_labels_find_captures_judged_in_an_earlier_window(world: World) -> None:
    frame = generate(150, seed=13, concept_drift=1.0)
    ids = world.traffic.send(frame)
    assert world.monitor().labelled_rows == 0
    world.labels(frame, ids)

    later = world.monitor(hours=30)

    assert later.rows == 0 and later.labelled_rows == 150
    assert (later.action, later.reason) == ("retrain", "degradation")


def test_captures_another_version_answered_are_not_judged_but_feed_back(world: World) -> None:
    frame = generate(200, seed=14)
    ids = world.traffic.send(frame, version=7)
    world.labels(frame, ids)

    outcome = world.monitor()

    assert (outcome.rows, outcome.labelled_rows, outcome.action) == (0, 0, "insufficient_data")
    assert outcome.feedback_dataset is not None
    notes = world.log.history("churn")[0].notes
    assert any("answered by v7 are not judged against v1" in n for n in notes)


# --- bookkeeping ---------------------------------------------------------------------------------------


def test_each_run_is_recorded_with_lineage_to_what_it_read_and_wrote(world: World) -> None:
    frame = generate(150, seed=15)
    label_file = world.labels(frame, world.traffic.send(frame))

    outcome = world.monitor()

    monitor_id = str(outcome.monitor_id)
    edges = world.svc.metadata.upstream(NodeType.RUN, monitor_id)
    read = {e.src.id for e in edges}
    assert any("/captures/churn/" in s for s in read)
    assert label_file in read
    written = {(e.dst.type, e.dst.id) for e in world.svc.metadata.downstream(NodeType.RUN, monitor_id)}
    assert (NodeType.ARTIFACT, f"{monitor_id}/report.json") in written
    assert (NodeType.ARTIFACT, f"{monitor_id}/report.html") in written
    assert (NodeType.DATASET, outcome.feedback_dataset) in written
    artifact = world.svc.metadata.get_artifact(f"{monitor_id}/report.json")
    assert artifact.uri == outcome.report_uri and artifact.properties["action"] == outcome.action


def test_the_report_carries_the_metric_history_with_its_versions(world: World) -> None:
    for seed in (16, 17, 18):
        frame = generate(120, seed=seed)
        world.labels(frame, world.traffic.send(frame), f"{seed}.csv")
        outcome = world.monitor(hours=1)
    report = MonitorReport.model_validate(world.json(outcome.report_uri))
    assert [p.version for p in report.metric_history] == [1, 1, 1]
    assert report.metric_history[-1].metric == report.live.metrics["roc_auc"]  # type: ignore[union-attr]
    assert "Live roc_auc over time" in render_html(report)
    html = world.svc.objects.get(ObjectRef.parse(str(outcome.html_uri))).body.decode()
    assert html == render_html(report)


def test_a_run_that_fails_frees_the_model_and_reads_the_same_window_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.traffic.send(generate(150, seed=19))

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("the report could not be drawn")

    monkeypatch.setattr("shared.monitoring.monitor.render_html", broken)
    with pytest.raises(RuntimeError):
        world.monitor()
    monkeypatch.undo()

    retried = world.monitor()
    assert retried.rows == 150 and len(world.log.history("churn")) == 1


def test_a_run_for_a_model_another_run_is_working_on_is_refused(world: World) -> None:
    world.log.acquire("churn", "monitor-elsewhere", world.store.now, timedelta(minutes=15))
    with pytest.raises(ConflictError, match="in progress"):
        world.monitor(seconds=1)


def test_an_altered_reference_profile_is_never_read(world: World) -> None:
    version = world.production.version
    assert version.reference_profile_uri
    world.svc.objects.put(ObjectRef.parse(version.reference_profile_uri), b'{"features": {}}')
    world.traffic.send(generate(150, seed=20))
    with pytest.raises(IntegrityError, match="refusing to read it"):
        world.monitor()


def test_metrics_are_emitted_in_embedded_metric_format(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.traffic.send(generate(300, seed=6, covariate_shift=1.0))
    outcome = world.monitor()
    report = MonitorReport.model_validate(world.json(outcome.report_uri))
    capsys.readouterr()

    emit_metrics("churn", report)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    names = {
        name
        for line in lines
        for d in line["_aws"]["CloudWatchMetrics"]
        for name in (m["Name"] for m in d["Metrics"])
    }
    assert {"FeaturePSI", "DriftShare", "WindowRows", "RetrainRequested", "DriftDetected"} <= names
    psi = {line["feature"]: line["FeaturePSI"] for line in lines if "FeaturePSI" in line}
    assert set(psi) == set(world.production.contract.features)
    assert all(line["model"] == "churn" for line in lines)


# --- the sweep and the event ---------------------------------------------------------------------------


def test_the_schedule_monitors_every_model_in_production_and_skips_the_others(world: World) -> None:
    svc = world.svc
    svc.objects.put(
        ObjectRef(svc.settings.data_bucket, "contracts/untrained.yaml"),
        monitoring_contract("untrained").to_yaml().encode(),
    )
    world.traffic.send(generate(150, seed=21))

    outcomes = monitor(
        svc,
        world.log,
        world.runs,
        parse_monitor_event({"detail-type": "Scheduled Event"}),
        world.store.advance(minutes=1),
    )

    by_model = {o.model: o for o in outcomes}
    assert by_model["churn"].monitored and by_model["churn"].rows == 150
    assert not by_model["untrained"].monitored and "no production version" in by_model["untrained"].detail
    assert world.log.history("churn")[0].requested_by == "schedule"


def test_a_request_names_one_model() -> None:
    assert parse_monitor_event({"model": "churn"}) == MonitorRequest(model="churn", requested_by="cli")
    with pytest.raises(ValueError):
        parse_monitor_event({"model": "churn", "unexpected": 1})
