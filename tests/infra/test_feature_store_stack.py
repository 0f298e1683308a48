"""The feature store in Flywheel's stack under the mocks: the online table, the features function that
feature-source uploads invoke, its least-privilege role, and who else may touch the views, the offline store
and the online table (the steps that read a contract's effective contract; predict, by entity key).

Expected values are written out here, not read back from the spec under test.
"""

from __future__ import annotations

import pytest

from shared.featurestore.online import ONLINE_TABLE_KEYS
from tests.infra.harness import Deployment, T, document

pytestmark = pytest.mark.infra

STACKS = ["flywheel_dev", "flywheel_prod"]
READS = ("s3:GetObject", "s3:GetObjectVersion")
TABLE_READS = {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"}
TABLE_WRITES = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
# Lineage is appended to, never removed: reads, PutItem and UpdateItem (infra.spec.append_table).
METADATA_WRITES = {
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
}


# --- helpers (as tests/infra/test_flywheel_stack.py reads a deployment) ----------------------------------


def functions(deployed: Deployment) -> set[str]:
    return {f.name for f in deployed.all(T.FUNCTION)}


def grants(deployed: Deployment, function: str) -> set[tuple[str, str]]:
    """Every (action, resource) pair the function's role policy allows."""
    pairs: set[tuple[str, str]] = set()
    for statement in document(deployed.one(T.ROLE_POLICY, function, T.FUNCTIONS))["Statement"]:
        assert statement["Effect"] == "Allow", statement
        resources = statement["Resource"]
        for resource in resources if isinstance(resources, list) else [resources]:
            pairs.update((action, resource) for action in statement["Action"])
    return pairs


def s3_and_tables(deployed: Deployment, function: str) -> set[tuple[str, str]]:
    """A function's grants besides its own logs and X-Ray."""
    return {g for g in grants(deployed, function) if not g[0].startswith(("logs:", "xray:"))}


def arn(deployed: Deployment, type_token: str, name: str) -> str:
    found: str = deployed.one(type_token, name).outputs["arn"]
    return found


# --- the online table ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_the_features_table_has_the_online_stores_keys_and_is_recoverable_and_encrypted(
    request: pytest.FixtureRequest, stack: str
) -> None:
    """Given the online store's documented keys (pk, a string; no sort key, no index)
    When the program runs for dev or prod
    Then the features table has exactly that key, no index and no TTL (a value's age is judged against the
    view's TTL when it is read), pay-per-request billing, point-in-time recovery and encryption, and
    deletion protection in prod only."""
    deployed: Deployment = request.getfixturevalue(stack)
    table = deployed.one(T.TABLE, "features", T.TABLES)
    inputs = table.inputs
    assert ONLINE_TABLE_KEYS == {"partition_key": {"name": "pk", "type": "S"}}
    assert inputs["name"] == f"flywheel-{deployed.stack}-features"
    assert inputs["billingMode"] == "PAY_PER_REQUEST"
    assert inputs["hashKey"] == "pk"
    assert inputs.get("rangeKey") is None
    assert inputs["attributes"] == [{"name": "pk", "type": "S"}]
    assert not inputs.get("globalSecondaryIndexes")
    assert "ttl" not in inputs
    assert inputs["pointInTimeRecovery"]["enabled"] is True
    assert inputs["serverSideEncryption"]["enabled"] is True
    assert inputs["deletionProtectionEnabled"] is (deployed.stack == "prod")
    assert table.protect is (deployed.stack == "prod")


def test_every_function_is_told_the_features_table(flywheel_dev: Deployment) -> None:
    for function in flywheel_dev.all(T.FUNCTION):
        variables = function.inputs["environment"]["variables"]
        assert variables["FLYWHEEL_FEATURES_TABLE"] == "flywheel-dev-features", function.name


# --- the features function -------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_feature_source_uploads_invoke_the_features_function(
    request: pytest.FixtureRequest, stack: str
) -> None:
    """Given feature files are dropped under feature-sources/<view>/
    When the program runs
    Then the data bucket notifies the features function of objects created under feature-sources/ (and
    nothing else of it), S3 may invoke it for that bucket and account only, and the permission exists
    before the notification."""
    deployed: Deployment = request.getfixturevalue(stack)
    data = deployed.one(T.BUCKET, "data")
    notification = deployed.one(T.NOTIFICATION, "data")
    features = arn(deployed, T.FUNCTION, "features")
    assert [n for n in notification.inputs["lambdaFunctions"] if n["lambdaFunctionArn"] == features] == [
        {"lambdaFunctionArn": features, "events": ["s3:ObjectCreated:*"], "filterPrefix": "feature-sources/"}
    ]
    permission = deployed.one(T.PERMISSION, "data-invokes-features", T.NOTIFICATIONS)
    assert permission.inputs["function"] == f"flywheel-{deployed.stack}-features"
    assert (permission.inputs["principal"], permission.inputs["sourceArn"]) == (
        "s3.amazonaws.com",
        data.outputs["arn"],
    )
    assert permission.urn in notification.dependencies


@pytest.mark.parametrize("stack", STACKS)
def test_the_features_function_holds_exactly_what_ingestion_needs(
    request: pytest.FixtureRequest, stack: str
) -> None:
    """Given the features function validates a feature file against its view, moves a bad one to
    quarantine, writes the offline store and materialises the online table with a conditional write
    When the program runs for dev or prod
    Then, besides its logs and X-Ray, it may read the views; list the data bucket (a missing offline object
    is then a 404, not a 403); read and delete (the move) under feature-sources/ only; read and put under
    features/; put under quarantine/_feature-sources/ only; PutItem on the features table and nothing else
    there; and record lineage in the metadata table. Nothing on the artifacts bucket, the registry, the
    idempotency table, another function, the state machine or the capture stream."""
    deployed: Deployment = request.getfixturevalue(stack)
    data = arn(deployed, T.BUCKET, "data")
    features, metadata = arn(deployed, T.TABLE, "features"), arn(deployed, T.TABLE, "metadata")
    assert s3_and_tables(deployed, "features") == {
        *((a, f"{data}/feature-views/*") for a in READS),
        ("s3:ListBucket", data),
        ("s3:ListBucketVersions", data),
        *((a, f"{data}/feature-sources/*") for a in (*READS, "s3:DeleteObject")),
        *((a, f"{data}/features/*") for a in (*READS, "s3:PutObject")),
        ("s3:PutObject", f"{data}/quarantine/_feature-sources/*"),
        ("dynamodb:PutItem", features),
        *((a, metadata) for a in METADATA_WRITES),
    }


def test_only_the_features_function_writes_the_online_table_and_only_predict_reads_it(
    flywheel_dev: Deployment,
) -> None:
    """The online table is written by ingestion alone (conditional PutItem: nothing may overwrite a newer
    value another way) and read by predict alone, with one BatchGetItem per view and request."""
    table = arn(flywheel_dev, T.TABLE, "features")
    on_table = {
        name: {action for action, resource in grants(flywheel_dev, name) if resource.startswith(table)}
        for name in functions(flywheel_dev)
    }
    assert {name: actions for name, actions in on_table.items() if actions} == {
        "features": {"dynamodb:PutItem"},
        "predict": {"dynamodb:BatchGetItem"},
    }
    assert not on_table["features"] & TABLE_READS
    assert not on_table["predict"] & TABLE_WRITES


def test_the_views_are_read_by_the_steps_that_need_the_effective_contract_and_written_by_none(
    flywheel_dev: Deployment,
) -> None:
    """Given the views are put by a person (`flywheel features put`, their own credentials)
    When the program runs
    Then Train, Evaluate, Register, Verify, Experiment and Trial (which build a contract's effective
    contract), Compute (which sizes Train by it) and the features function may read feature-views/;
    nobody else may, and no function may write there."""
    views = f"{arn(flywheel_dev, T.BUCKET, 'data')}/feature-views/*"
    on_views = {
        name: {action for action, resource in grants(flywheel_dev, name) if resource == views}
        for name in functions(flywheel_dev)
    }
    assert {name for name, actions in on_views.items() if actions} == {
        "train",
        "experiment",
        "trial",
        "evaluate",
        "register",
        "verify",
        "compute",
        "features",
    }
    assert all(actions <= set(READS) for actions in on_views.values())


def test_only_train_reads_the_offline_store_besides_ingestion(flywheel_dev: Deployment) -> None:
    """The offline store (features/) is written by the features function and read by Train and by an
    experiment's trials (which train on the same rows) for the point-in-time join; no other function has
    anything there, and the artifacts bucket is not involved."""
    offline = f"{arn(flywheel_dev, T.BUCKET, 'data')}/features/*"
    on_offline = {
        name: {action for action, resource in grants(flywheel_dev, name) if resource == offline}
        for name in functions(flywheel_dev)
    }
    assert {name: actions for name, actions in on_offline.items() if actions} == {
        "train": set(READS),
        "trial": set(READS),
        "features": {*READS, "s3:PutObject"},
    }
    artifacts = arn(flywheel_dev, T.BUCKET, "artifacts")
    assert not [g for g in grants(flywheel_dev, "features") if g[1].startswith(artifacts)]
