"""The online store's contract again, on the DynamoDB adapter on moto, with a table created from the keys the
adapter documents (``ONLINE_TABLE_KEYS``), the keys the stack spec's ``features`` table is declared with.

moto does not make a DynamoDB request atomic on its own: a conditional ``PutItem`` checks, then writes, and
a second thread can land in between. DynamoDB does not allow that, and the local cloud serialises moto's
requests (``infra/local/atomicity.py``), so these tests run under the same lock. The adapter is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from infra.local.atomicity import atomic_dynamodb_requests
from shared.errors import TransientError
from shared.featurestore.online import (
    ONLINE_TABLE_KEYS,
    DynamoOnlineStore,
    OnlineStore,
    online_table_definition,
)
from tests.unit.test_feature_store import VIEW, OnlineStoreContract, day, feature_rows

pytestmark = pytest.mark.integration

TABLE = "flywheel-test-features"


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws(), atomic_dynamodb_requests():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**online_table_definition(TABLE))
        yield client


class CountingClient:
    """The moto client, counting ``batch_get_item`` calls; the first ``unprocess`` answers hold back all
    but one key of the request as ``UnprocessedKeys``, as DynamoDB does under throttling."""

    def __init__(self, client: Any, unprocess: int = 0) -> None:
        self._client = client
        self.unprocess = unprocess
        self.batch_gets: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        ((table, request),) = RequestItems.items()
        self.batch_gets.append(len(request["Keys"]))
        if self.unprocess > 0 and len(request["Keys"]) > 1:
            self.unprocess -= 1
            now, later = request["Keys"][:1], request["Keys"][1:]
            answer: dict[str, Any] = self._client.batch_get_item(
                RequestItems={table: request | {"Keys": now}}
            )
            answer["UnprocessedKeys"] = {table: request | {"Keys": later}}
            return answer
        result: dict[str, Any] = self._client.batch_get_item(RequestItems=RequestItems)
        return result


class TestDynamoOnlineStore(OnlineStoreContract):
    @pytest.fixture
    def store(self, dynamodb: Any) -> OnlineStore:
        return DynamoOnlineStore(TABLE, client=dynamodb)

    def test_items_follow_the_documented_layout(self, dynamodb: Any, store: OnlineStore) -> None:
        store.materialize(VIEW, feature_rows(("c1", 3, 12, "pro"), sequence="20240201T000000.000000Z-ab"))

        (item,) = dynamodb.scan(TableName=TABLE)["Items"]

        assert ONLINE_TABLE_KEYS == {"partition_key": {"name": "pk", "type": "S"}}
        assert item == {
            "pk": {"S": "customer_profile#c1"},
            "view": {"S": "customer_profile"},
            "entity": {"S": "c1"},
            "event_time": {"N": str(int(day(3).timestamp()) * 10**9)},
            "sequence": {"S": "20240201T000000.000000Z-ab"},
            "values": {"S": '{"tenure_months":12.0,"plan":"pro","support_calls":0.0,"autopay":1.0}'},
        }


def test_a_hundred_entities_are_one_batch_get_and_more_are_chunked(dynamodb: Any) -> None:
    counting = CountingClient(dynamodb)
    store = DynamoOnlineStore(TABLE, client=counting)
    entities = [f"c{i:03d}" for i in range(250)]
    store.materialize(VIEW, feature_rows(*((e, 1, i, "pro") for i, e in enumerate(entities))))

    store.get_many(VIEW.view, entities[:100])
    store.get_many(VIEW.view, [entities[0]])
    found = store.get_many(VIEW.view, entities)

    assert counting.batch_gets == [100, 1, 100, 100, 50]
    assert len(found) == 250


def test_unprocessed_keys_are_asked_for_again(dynamodb: Any) -> None:
    counting = CountingClient(dynamodb, unprocess=2)
    store = DynamoOnlineStore(TABLE, client=counting)
    store.materialize(VIEW, feature_rows(*((f"c{i}", 1, i, "pro") for i in range(5))))

    found = store.get_many(VIEW.view, [f"c{i}" for i in range(5)])

    assert sorted(found) == [f"c{i}" for i in range(5)]
    assert counting.batch_gets == [5, 4, 3]


def test_keys_still_unprocessed_after_the_last_attempt_are_a_transient_error(dynamodb: Any) -> None:
    counting = CountingClient(dynamodb, unprocess=100)
    store = DynamoOnlineStore(TABLE, client=counting, max_attempts=3)

    with pytest.raises(TransientError, match=r"2 key\(s\) still unprocessed after 3 attempts"):
        store.get_many(VIEW.view, [f"c{i}" for i in range(5)])


def test_throttled_writes_and_reads_are_transient_errors() -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    store = DynamoOnlineStore(TABLE, client=client)
    with Stubber(client) as stub:
        stub.add_client_error("put_item", "ProvisionedThroughputExceededException")
        stub.add_client_error("batch_get_item", "ThrottlingException")

        with pytest.raises(TransientError, match="put_item"):
            store.materialize(VIEW, feature_rows(("c1", 1, 1, "pro")))
        with pytest.raises(TransientError, match="batch_get_item"):
            store.get_many(VIEW.view, ["c1"])
