"""The registry and metadata contracts again, on the DynamoDB adapters and the stack's own tables in moto.

moto does not make a DynamoDB request atomic on its own; the local cloud does (infra/local/atomicity.py), as
DynamoDB does. The adapters are unchanged and the concurrency tests still race their read-then-commit loops.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber

from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.local import LocalCloud
from shared.errors import TransientError
from shared.metadata import DynamoMetadataStore, MetadataStore
from shared.registry import (
    DynamoRegistryStore,
    ModelRegistry,
    PutRunLookup,
    RegistryStore,
    TransitionKind,
    WriteConflictError,
)
from tests.unit.test_metadata import MetadataContract
from tests.unit.test_registry import RegistryContract, candidate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    local = LocalCloud(flywheel_stack(StackConfig(environment="dev")))
    with local.in_process():
        yield local


def emptied(cloud: LocalCloud, table: str) -> str:
    """The table's name, after deleting every item a previous test left."""
    name = cloud.names.tables[table]
    dynamodb = cloud.client("dynamodb")
    for page in dynamodb.get_paginator("scan").paginate(TableName=name, ProjectionExpression="pk, sk"):
        for item in page["Items"]:
            dynamodb.delete_item(TableName=name, Key=item)
    return name


class TestDynamoRegistry(RegistryContract):
    @pytest.fixture
    def store(self, cloud: LocalCloud) -> RegistryStore:
        return DynamoRegistryStore(emptied(cloud, "registry"))

    def test_items_follow_the_documented_layout(self, cloud: LocalCloud, registry: ModelRegistry) -> None:
        registry.create_model_version("churn", candidate(), run_id="exec-1", registered_by="pipeline")
        registry.promote("churn", 1, actor="pipeline", reason="first")

        items = cloud.client("dynamodb").scan(TableName=cloud.names.tables["registry"])["Items"]

        keys = sorted((i["pk"]["S"], i["sk"]["S"]) for i in items)
        assert keys == [
            ("MODEL#churn", "ALIAS#production"),
            ("MODEL#churn", "AUDIT#0000000001"),
            ("MODEL#churn", "AUDIT#0000000002"),
            ("MODEL#churn", "MODEL"),
            ("MODEL#churn", "VERSION#0000000001"),
            ("RUN#exec-1", "VERSION#churn"),
        ]
        version = next(i for i in items if i["sk"]["S"].startswith("VERSION#") and "gsi1pk" in i)
        assert (version["gsi1pk"]["S"], version["gsi1sk"]["S"]) == ("STAGE#production", "churn#0000000001")

    def test_a_removed_alias_stays_as_a_tombstone_and_nothing_is_deleted(
        self, cloud: LocalCloud, registry: ModelRegistry
    ) -> None:
        """Given no function's role may delete a registry item
        When an alias is set and removed
        Then no DeleteItem (nor a Delete inside a transaction) is sent: the alias's item remains as a
        tombstone, flagged removed and without a version, beside both audit entries."""
        store = registry.store
        assert isinstance(store, DynamoRegistryStore)
        sent: list[tuple[str, dict[str, Any]]] = []
        client = store.client

        def record(model: Any, params: dict[str, Any], **_: Any) -> None:
            sent.append((model.name, params))

        client.meta.events.register("before-parameter-build.dynamodb.*", record)
        try:
            registry.create_model_version("churn", candidate(), run_id="exec-1", registered_by="pipeline")
            registry.set_alias("churn", "canary", 1, actor="a", reason="try it")
            registry.delete_alias("churn", "canary", actor="a", reason="done")
        finally:
            client.meta.events.unregister("before-parameter-build.dynamodb.*", record)

        assert "DeleteItem" not in {name for name, _ in sent}
        for name, params in sent:
            if name == "TransactWriteItems":
                assert all("Delete" not in entry for entry in params["TransactItems"])
        item = client.get_item(
            TableName=cloud.names.tables["registry"],
            Key={"pk": {"S": "MODEL#churn"}, "sk": {"S": "ALIAS#canary"}},
        )["Item"]
        assert item["removed"] == {"BOOL": True}
        assert "version" not in item
        kinds = [e.kind for e in registry.audit_trail("churn")[:2]]
        assert kinds == [TransitionKind.ALIAS_REMOVED, TransitionKind.ALIAS]


class TestDynamoMetadata(MetadataContract):
    @pytest.fixture
    def store(self, cloud: LocalCloud) -> MetadataStore:
        return DynamoMetadataStore(emptied(cloud, "metadata"))


def test_clients_are_made_on_first_use_not_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    real = botocore.session.Session.create_client

    def recording(self: Any, service: str, *args: Any, **kwargs: Any) -> Any:
        made.append(service)
        return real(self, service, *args, **{**kwargs, "region_name": "us-east-1"})

    # The one factory (shared.aws) makes clients from botocore's session.
    monkeypatch.setattr(botocore.session.Session, "create_client", recording)
    registry, metadata = DynamoRegistryStore("t"), DynamoMetadataStore("t")
    assert made == []
    assert registry.client is registry.client
    assert metadata.client is not None
    assert made == ["dynamodb", "dynamodb"]


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber


@pytest.mark.parametrize(
    "code", ["ProvisionedThroughputExceededException", "ThrottlingException", "InternalServerError"]
)
def test_throttling_and_outages_are_transient(stubbed: tuple[Any, Stubber], code: str) -> None:
    client, stubber = stubbed
    stubber.add_client_error("get_item", service_error_code=code)
    stubber.add_client_error("get_item", service_error_code=code)

    with pytest.raises(TransientError, match=code):
        DynamoRegistryStore("registry", client=client).get_model("churn")
    with pytest.raises(TransientError, match=code):
        DynamoMetadataStore("metadata", client=client).get_run("exec-1")


def test_cancelled_transactions_are_lost_races_or_throttling(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    cases = [
        (["None", "ConditionalCheckFailed"], WriteConflictError),
        (["TransactionConflict", "None"], WriteConflictError),
        (["None", "ThrottlingError"], TransientError),
    ]
    store = DynamoRegistryStore("registry", client=client)
    writes = [PutRunLookup("exec-1", "churn", 1), PutRunLookup("exec-1", "fraud", 1)]

    for reasons, error in cases:
        stubber.add_client_error(
            "transact_write_items",
            service_error_code="TransactionCanceledException",
            modeled_fields={"CancellationReasons": [{"Code": c} for c in reasons]},
        )
        with pytest.raises(error):
            store.commit(writes)
