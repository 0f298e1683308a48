"""Tables: on-demand, recoverable, encrypted, with the keys, indexes and TTL the spec declares."""

from __future__ import annotations

import pytest

from tests.infra.harness import Deployment, T

pytestmark = pytest.mark.infra


def test_a_table_has_its_keys_index_and_ttl_and_is_on_demand_recoverable_and_encrypted(
    platform_dev: Deployment,
) -> None:
    """Given the platform spec's events table (pk/sk, a by-kind index on kind/sk, TTL on expires_at)
    When the program runs for dev
    Then the table is declared with exactly those keys, that index projecting everything, that TTL,
    pay-per-request billing, point-in-time recovery and encryption."""
    table = platform_dev.one(T.TABLE, "events").inputs
    assert table["name"] == "plat-dev-events"
    assert table["billingMode"] == "PAY_PER_REQUEST"
    assert (table["hashKey"], table["rangeKey"]) == ("pk", "sk")
    assert sorted((a["name"], a["type"]) for a in table["attributes"]) == [
        ("kind", "S"),
        ("pk", "S"),
        ("sk", "S"),
    ]
    [index] = table["globalSecondaryIndexes"]
    assert index["name"] == "by-kind"
    assert index["projectionType"] == "ALL"
    assert index["keySchemas"] == [
        {"attributeName": "kind", "keyType": "HASH"},
        {"attributeName": "sk", "keyType": "RANGE"},
    ]
    assert table["ttl"] == {"attributeName": "expires_at", "enabled": True}
    assert table["pointInTimeRecovery"]["enabled"] is True
    assert table["serverSideEncryption"]["enabled"] is True


def test_flywheel_tables_follow_their_spec(flywheel_dev: Deployment) -> None:
    """Given Flywheel's own spec (registry and metadata with an inverted index, idempotency with TTL)
    When the program runs for dev
    Then every declared table exists under its physical name, with TTL exactly where the spec asks."""
    declared = {t.name: t.inputs for t in flywheel_dev.all(T.TABLE)}
    assert set(declared) == {t.name for t in flywheel_dev.spec.tables}
    for spec in flywheel_dev.spec.tables:
        table = declared[spec.name]
        assert table["name"] == f"flywheel-dev-{spec.name}"
        assert table["hashKey"] == spec.partition_key.name
        assert table.get("rangeKey") == (spec.sort_key.name if spec.sort_key else None)
        assert [i["name"] for i in table.get("globalSecondaryIndexes", [])] == [i.name for i in spec.indexes]
        if spec.ttl_attribute:
            assert table["ttl"] == {"attributeName": spec.ttl_attribute, "enabled": True}
        else:
            assert "ttl" not in table
