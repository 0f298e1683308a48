"""The monitor log's contract: one run per model at a time, a commit writes the record and the state together,
history newest first. :class:`MonitorLogContract` runs again on DynamoDB in the integration tier."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import ConflictError
from shared.monitoring.log import InMemoryMonitorLog, MonitorLog, MonitorRecord, MonitorState
from shared.monitoring.window import ObjectCursor

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
LEASE = timedelta(minutes=15)


def record(monitor_id: str, at: datetime, action: str = "none", model: str = "churn") -> MonitorRecord:
    return MonitorRecord.model_validate(
        {
            "monitor_id": monitor_id,
            "model": model,
            "version": 1,
            "requested_by": "test",
            "started_at": at,
            "ended_at": at,
            "window_start": at - timedelta(hours=1),
            "window_end": at,
            "rows": 10,
            "labelled_rows": 0,
            "metric": "roc_auc",
            "action": action,
            "report_uri": f"s3://a/reports/{model}/{monitor_id}/report.json",
            "html_uri": f"s3://a/reports/{model}/{monitor_id}/report.html",
        }
    )


def state(last_key: str, triggered: datetime | None = None) -> MonitorState:
    cursor = ObjectCursor(last_modified=NOW, last_key=last_key, listed_at=NOW, recent=[last_key])
    return MonitorState(
        captures=cursor, last_triggered_at=triggered, last_triggered_run="run-1" if triggered else None
    )


class MonitorLogContract:
    @pytest.fixture
    def log(self) -> MonitorLog:
        raise NotImplementedError

    def test_a_new_model_starts_from_an_empty_state(self, log: MonitorLog) -> None:
        assert log.acquire("churn", "m-1", NOW, LEASE) == MonitorState()
        assert log.state("churn") == MonitorState() and log.history("churn") == []

    def test_a_commit_records_the_run_and_the_state_and_frees_the_model(self, log: MonitorLog) -> None:
        log.acquire("churn", "m-1", NOW, LEASE)
        log.commit("churn", "m-1", state("k1", NOW), record("m-1", NOW, "retrain"))

        assert log.state("churn") == state("k1", NOW)
        assert [r.monitor_id for r in log.history("churn")] == ["m-1"]
        assert log.history("churn")[0] == record("m-1", NOW, "retrain")
        assert log.acquire("churn", "m-2", NOW + timedelta(seconds=1), LEASE) == state("k1", NOW)

    def test_a_second_run_for_the_same_model_is_refused_while_the_first_works(self, log: MonitorLog) -> None:
        log.acquire("churn", "m-1", NOW, LEASE)
        with pytest.raises(ConflictError, match="in progress"):
            log.acquire("churn", "m-2", NOW + timedelta(minutes=1), LEASE)
        log.acquire("other", "m-3", NOW, LEASE)  # another model is not held

    def test_a_released_or_expired_lease_can_be_taken(self, log: MonitorLog) -> None:
        log.acquire("churn", "m-1", NOW, LEASE)
        log.release("churn", "m-1")
        log.acquire("churn", "m-2", NOW, LEASE)
        log.acquire("churn", "m-3", NOW + LEASE + timedelta(seconds=1), LEASE)  # m-2 crashed: expired

    def test_a_run_that_lost_its_lease_cannot_commit(self, log: MonitorLog) -> None:
        log.acquire("churn", "m-1", NOW, LEASE)
        log.acquire("churn", "m-2", NOW + LEASE + timedelta(seconds=1), LEASE)
        with pytest.raises(ConflictError, match="lost the lease"):
            log.commit("churn", "m-1", state("k1"), record("m-1", NOW))
        assert log.history("churn") == [] and log.state("churn") == MonitorState()
        log.release("churn", "m-1")  # not its lease any more: nothing happens
        with pytest.raises(ConflictError):
            log.acquire("churn", "m-3", NOW + LEASE + timedelta(seconds=2), LEASE)

    def test_history_is_newest_first_and_limited(self, log: MonitorLog) -> None:
        for n in range(4):
            owner = f"m-{n}"
            log.acquire("churn", owner, NOW + timedelta(hours=n), LEASE)
            log.commit("churn", owner, state(f"k{n}"), record(owner, NOW + timedelta(hours=n)))
        assert [r.monitor_id for r in log.history("churn")] == ["m-3", "m-2", "m-1", "m-0"]
        assert [r.monitor_id for r in log.history("churn", limit=2)] == ["m-3", "m-2"]
        assert log.history("other") == []


class TestInMemoryMonitorLog(MonitorLogContract):
    @pytest.fixture
    def log(self) -> MonitorLog:
        return InMemoryMonitorLog()
