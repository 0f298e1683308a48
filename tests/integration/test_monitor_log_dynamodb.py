"""The monitor log's contract again, on the DynamoDB adapter and the stack's metadata table in moto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.local import LocalCloud
from shared.monitoring.log import DynamoMonitorLog, MonitorLog
from tests.integration.test_stores_dynamodb import emptied
from tests.unit.test_monitor_log import LEASE, NOW, MonitorLogContract, record, state

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    local = LocalCloud(flywheel_stack(StackConfig(environment="dev")))
    with local.in_process():
        yield local


class TestDynamoMonitorLog(MonitorLogContract):
    @pytest.fixture
    def log(self, cloud: LocalCloud) -> MonitorLog:
        return DynamoMonitorLog(emptied(cloud, "metadata"), client=cloud.client("dynamodb"))

    def test_items_follow_the_documented_layout(self, cloud: LocalCloud, log: MonitorLog) -> None:
        log.acquire("churn", "m-1", NOW, LEASE)
        log.commit("churn", "m-1", state("k1"), record("m-1", NOW))
        items = cloud.client("dynamodb").scan(TableName=cloud.names.tables["metadata"])["Items"]
        keys = sorted((i["pk"]["S"], i["sk"]["S"]) for i in items)
        assert keys == [
            ("MONITOR#churn", "RUN#2026-03-01T12:00:00.000000Z#m-1"),
            ("MONITOR#churn", "STATE"),
        ]
        [state_item] = [i for i in items if i["sk"]["S"] == "STATE"]
        assert "lease_owner" not in state_item and "lease_until" not in state_item
