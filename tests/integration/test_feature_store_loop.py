"""The feature store end to end on the local cloud, as a user meets it: Flywheel's real stack in-process, a
view put with ``flywheel features put``, feature files dropped under ``feature-sources/<view>/`` (the S3 event
invokes the features function) out of order, twice and concurrently, a contract that lists the view, a data
file pushed through the whole pipeline, and predictions asked by entity key over HTTP.

The view carries, besides the demo profile's features, ``as_of_s``: each update's own event time (seconds
since :data:`EPOCH`). A training row holding an ``as_of_s`` from after its own time would be a leak, so the
frame Train fits on shows directly that no row saw its future, nor a value older than the TTL.

Serving judges freshness by the wall clock, so the data is laid out relative to now: the churn rows and
their profile history lie 4 months back; some customers also got an update yesterday (fresh online), the
others' latest update is months old (stale online).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from cli import actions
from cli import features as features_cli
from cli.main import main as flywheel
from examples.churn import generate
from examples.profiles import current_profiles, profile_updates
from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.local import LocalCloud
from shared.data.contract import parse_contract
from shared.featurestore.contracts import put_contract
from shared.featurestore.offline import join_view, read_offline
from shared.featurestore.online import DynamoOnlineStore, fresh
from shared.featurestore.view import parse_feature_view
from shared.metadata import Direction, NodeType, model_version_id
from shared.ml.training import TrainedModel
from shared.ml.training import train as real_train
from shared.monitoring.monitor import MonitorOutcome
from shared.registry import PRODUCTION_ALIAS
from shared.services import Services
from shared.serving import api as prediction_api
from shared.storage import ObjectRef
from tests.fixtures.feature_store import reference_point_in_time_join

QUARANTINE_PREFIX = "quarantine/_feature-sources/"  # where a refused feature-source file goes

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODEL = "churn-profile"
VIEW = "customer_profile"
NOW = datetime.now(UTC)
T0 = (NOW - timedelta(days=120)).replace(hour=0, minute=0, second=0, microsecond=0)
EPOCH = T0 - timedelta(days=90)
TTL = timedelta(days=30)
VIEW_FEATURES = ["lifetime_value", "segment", "as_of_s"]
FRESH = 25  # customers 0..24 were updated yesterday
SERVING = {"smoke_rows": 8, "load_requests": 10, "load_concurrency": 2, "max_p99_ms": 5000}


def view_yaml() -> str:
    """The demo's customer_profile view, plus the update's own time as a feature."""
    document = parse_feature_view((EXAMPLES / "customer_profile.yaml").read_text()).model_dump(
        mode="json", exclude_none=True
    )
    document["features"]["as_of_s"] = {"type": "numeric", "min": 0}
    return json.dumps(document)


def contract_text() -> str:
    document = parse_contract((EXAMPLES / "churn-profile.yaml").read_text()).model_dump(
        mode="json", exclude_none=True
    )
    document["training"] = {"estimator": "logistic_regression", "params": {"max_iter": 500}}
    document["gates"] = {"min": {"roc_auc": 0.6}}
    document["monitoring"] = {"min_rows": 10}
    document["serving"] = SERVING
    return json.dumps(document)


def stamped(updates: pd.DataFrame) -> pd.DataFrame:
    """Updates on whole seconds, each carrying its own time as ``as_of_s``."""
    at = updates["updated_at"].dt.floor("s")
    return updates.assign(updated_at=at, as_of_s=(at - pd.Timestamp(EPOCH)).dt.total_seconds())


def csv(frame: pd.DataFrame) -> bytes:
    text: str = frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    return text.encode()


@dataclass
class Store:
    cloud: LocalCloud
    svc: Services
    url: str
    customers: pd.DataFrame
    history: pd.DataFrame  # every update the feature files carry
    current: pd.DataFrame  # yesterday's updates of customers 0..FRESH-1
    trained_on: list[pd.DataFrame] = field(default_factory=list)

    @property
    def bucket(self) -> str:
        return self.svc.settings.data_bucket

    def drop(self, name: str, body: bytes) -> str:
        """A feature file under feature-sources/<view>/; the features function has run when this returns."""
        version: str = self.cloud.client("s3").put_object(
            Bucket=self.bucket, Key=f"feature-sources/{VIEW}/{name}", Body=body
        )["VersionId"]
        return version

    def keys(self, prefix: str) -> list[str]:
        listed = self.cloud.client("s3").list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def online(self) -> dict[str, dict[str, Any]]:
        """The online table as it stands: entity -> item."""
        table = self.svc.settings.features_table
        items = self.cloud.client("dynamodb").scan(TableName=table)["Items"]
        return {i["entity"]["S"]: {k: next(iter(v.values())) for k, v in i.items()} for i in items}

    def predict(self, rows: list[dict[str, Any]]) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{self.url}/models/{MODEL}/predict",
            data=json.dumps({"instances": rows}).encode(),
            method="POST",
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def base_row(self, index: int) -> dict[str, Any]:
        """Customer ``index``'s own features as a client sends them, and its id."""
        record = self.customers.iloc[index]
        charges, region = record["monthly_charges"], record["region"]
        return {
            "customer_id": record["customer_id"],
            "tenure_months": float(record["tenure_months"]),
            "monthly_charges": None if pd.isna(charges) else float(charges),
            "plan": record["plan"],
            "region": None if pd.isna(region) or region == "nan" else region,
            "autopay": record["autopay"] == "true",
            "support_calls": float(record["support_calls"]),
        }


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    config = StackConfig.from_stack_file("dev")
    cloud = LocalCloud(flywheel_stack(config), config)
    customers = generate(500, seed=11, start=T0, days=30)
    history = stamped(profile_updates(customers, seed=11))
    current = stamped(current_profiles(customers.head(FRESH), NOW - timedelta(days=1), seed=12))
    with cloud.in_process():
        from shared.services import services  # after the cloud set the environment

        yield Store(cloud, services(), cloud.start_gateway(), customers, history, current)


# --- views and feature files -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def view_put(store: Store, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`flywheel features put` of a broken view, then of the test's view; `features show --json`."""
    folder = tmp_path_factory.mktemp("views")
    (folder / "broken.yaml").write_text("view: Bad View\nentity: customer_id\nttl_days: -1\nfeatures: {}\n")
    (folder / "profile.yaml").write_text(view_yaml())
    runner = CliRunner()
    refused = runner.invoke(flywheel, ["features", "put", str(folder / "broken.yaml")])
    put = runner.invoke(flywheel, ["features", "put", str(folder / "profile.yaml")])
    assert put.exit_code == 0, put.output
    shown = runner.invoke(flywheel, ["features", "show", VIEW, "--json"])
    return {"refused": refused, "shown": shown}


def test_a_view_is_refused_with_every_problem_then_stored_and_shown(
    view_put: dict[str, Any], store: Store
) -> None:
    refused, shown = view_put["refused"], view_put["shown"]
    assert refused.exit_code == 2, refused.output
    for problem in ("view:", "event_time: required", "ttl_days:", "features: declare at least one feature"):
        assert problem in refused.output, refused.output
    assert store.keys("feature-views/") == [f"feature-views/{VIEW}.yaml"]
    assert shown.exit_code == 0, shown.output
    feature = json.loads(shown.output)["view"]["features"]["as_of_s"]
    assert (feature["type"], feature["min"]) == ("numeric", 0.0)


def test_a_contract_naming_a_view_nobody_put_is_refused_with_the_reason(
    view_put: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    document = json.loads(contract_text())
    path = tmp_path / "ghost.json"
    path.write_text(json.dumps({**document, "model": "churn-ghost", "feature_views": ["ghost"]}))

    refused = CliRunner().invoke(flywheel, ["contract", "put", str(path)])

    assert refused.exit_code == 2, refused.output
    assert "there is no feature view 'ghost'" in refused.output
    assert store.keys("contracts/churn-ghost") == []


def test_a_contract_of_nested_anchors_is_refused_with_exit_2_and_nothing_stored(
    view_put: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    """A kilobyte of YAML whose anchors would expand to 9**9 values: refused before it is built, with the
    bound named, and no contract stored."""
    lines = ["model: churn-laughs", 'l0: &l0 ["lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")

    refused = CliRunner().invoke(flywheel, ["contract", "put", str(path)])

    assert refused.exit_code == 2, refused.output
    assert "more than" in refused.output and "values" in refused.output, refused.output
    assert "Traceback" not in refused.output and "MemoryError" not in refused.output
    assert store.keys("contracts/churn-laughs") == []


@pytest.fixture(scope="module")
def ingested(store: Store, view_put: dict[str, Any]) -> dict[str, Any]:
    """The history in three files by time, delivered latest first; yesterday's updates; a bad file."""
    history = store.history
    early = history[history["updated_at"] < pd.Timestamp(T0)]
    middle = history[
        (history["updated_at"] >= pd.Timestamp(T0))
        & (history["updated_at"] < pd.Timestamp(T0 + timedelta(days=15)))
    ]
    late = history[history["updated_at"] >= pd.Timestamp(T0 + timedelta(days=15))]
    assert len(early) + len(middle) + len(late) == len(history)
    for name, frame in (("late.csv", late), ("early.csv", early), ("middle.csv", middle)):
        store.drop(name, csv(frame))
    offline = store.keys(f"features/{VIEW}/")
    online = store.online()
    store.drop("current.csv", csv(store.current))
    bad = history.head(3).assign(lifetime_value=[-1.0, 5.0, 5.0], segment=["consumer", "gold", "smb"])
    store.drop("bad.csv", csv(bad))
    return {"offline": offline, "online": online, "middle": csv(middle)}


def test_out_of_order_files_keep_each_entitys_newest_values_online(
    store: Store, ingested: dict[str, Any]
) -> None:
    """Given the history delivered latest file first
    Then the online table holds, per customer, the values of the update with the latest event time (the
    older files that arrived after it changed nothing), and the offline store holds every update."""
    latest = store.history.sort_values("updated_at").groupby("customer_id").tail(1).set_index("customer_id")
    online = ingested["online"]
    assert set(online) == set(latest.index)
    for customer, item in online.items():
        values = json.loads(item["values"])
        assert values["as_of_s"] == latest.loc[customer, "as_of_s"], customer
        assert values["segment"] == latest.loc[customer, "segment"], customer
    stored = read_offline(store.svc.objects, store.bucket, parse_feature_view(view_yaml()))
    assert len(stored) == len(store.history) + len(store.current)  # and yesterday's updates


def test_a_bad_feature_file_is_quarantined_with_its_reasons(store: Store, ingested: dict[str, Any]) -> None:
    report = json.loads(
        store.cloud.client("s3")
        .get_object(Bucket=store.bucket, Key=f"{QUARANTINE_PREFIX}{VIEW}/bad.csv.error.json")["Body"]
        .read()
    )
    assert {p["rule"] for p in report["problems"]} == {"below_min", "not_allowed"}
    assert f"feature-sources/{VIEW}/bad.csv" not in store.keys("feature-sources/")


def test_re_delivering_a_feature_file_changes_nothing(store: Store, ingested: dict[str, Any]) -> None:
    """Given the middle file delivered again under its own name and under another
    Then no offline object is added or rewritten, and the online table is what it was."""
    before_versions = {
        key: store.cloud.client("s3").head_object(Bucket=store.bucket, Key=key)["VersionId"]
        for key in store.keys(f"features/{VIEW}/")
    }
    online = store.online()

    store.drop("middle.csv", ingested["middle"])
    store.drop("middle-again.csv", ingested["middle"])

    after_versions = {
        key: store.cloud.client("s3").head_object(Bucket=store.bucket, Key=key)["VersionId"]
        for key in store.keys(f"features/{VIEW}/")
    }
    assert after_versions == before_versions
    assert store.online() == online


def test_concurrent_deliveries_for_one_entity_keep_the_newest_value(
    store: Store, ingested: dict[str, Any]
) -> None:
    """Given two files updating one customer, delivered at the same moment from two threads, five times
    with the newer one first or second
    Then the online value is always the newer update's."""
    customer = store.customers.iloc[FRESH]["customer_id"]  # not updated yesterday
    for attempt in range(5):
        # each attempt later than the last, so only this attempt's newer update can be the newest
        older = NOW - timedelta(days=3) + timedelta(minutes=attempt)
        newer = NOW - timedelta(days=2) + timedelta(minutes=attempt)
        files = [
            (f"race-{attempt}-old.csv", older, 100.0 + attempt),
            (f"race-{attempt}-new.csv", newer, 200.0 + attempt),
        ]
        if attempt % 2:
            files.reverse()
        start = threading.Barrier(2)

        def deliver(name: str, at: datetime, value: float, start: threading.Barrier = start) -> None:
            frame = stamped(
                pd.DataFrame(
                    {
                        "customer_id": [customer],
                        "updated_at": pd.to_datetime([at], utc=True),
                        "lifetime_value": [value],
                        "segment": ["smb"],
                    }
                )
            )
            start.wait()
            store.drop(name, csv(frame))

        threads = [threading.Thread(target=deliver, args=f) for f in files]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert json.loads(store.online()[customer]["values"])["lifetime_value"] == 200.0 + attempt


def test_the_online_values_are_what_the_offline_join_gives_for_now(
    store: Store, ingested: dict[str, Any]
) -> None:
    """Given every delivery so far (out of order, repeated, racing)
    When serving asks the online table and training asks the offline join about every customer, now
    Then both give the same values: fresh ones for yesterday's customers, missing for the stale and the
    unknown."""
    view = parse_feature_view(view_yaml())
    entities = [*store.customers["customer_id"], "nobody"]
    online = DynamoOnlineStore(store.svc.settings.features_table or "", client=store.cloud.client("dynamodb"))
    now = datetime.now(UTC)

    served = online.get_many(VIEW, entities)
    rows = pd.DataFrame({"customer_id": entities, "ts": pd.to_datetime([now] * len(entities), utc=True)})
    joined = join_view(store.svc.objects, store.bucket, view, rows, "ts")

    from_online = [fresh(served.get(e), now, view.ttl, VIEW_FEATURES) for e in entities]
    from_offline = [
        {n: None if pd.isna(row[n]) else row[n] for n in VIEW_FEATURES} for _, row in joined.iterrows()
    ]
    assert from_online == from_offline
    assert sum(v["segment"] is not None for v in from_online) >= FRESH
    assert from_online[FRESH + 1]["segment"] is None and from_online[-1]["segment"] is None


# --- training ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(store: Store, ingested: dict[str, Any]) -> Iterator[int]:
    """The contract put (its view is there) and January's rows pushed through the pipeline: v1 in
    production. The frame Train fits on is kept, to inspect."""
    monkeypatch = pytest.MonkeyPatch()

    def spy(frame: pd.DataFrame, contract: Any, code: Any = None) -> TrainedModel:
        store.trained_on.append(frame.copy())
        return real_train(frame, contract, code)

    monkeypatch.setattr("shared.pipeline.steps.train", spy)
    try:
        put_contract(store.svc.objects, store.svc.settings, contract_text())
        store.cloud.client("s3").put_object(
            Bucket=store.bucket,
            Key=f"incoming/{MODEL}/jan.csv",
            Body=store.customers.to_csv(index=False).encode(),
        )
        [run] = store.svc.metadata.list_runs(MODEL)
        assert run.execution_arn
        finished = store.cloud.wait_for_execution(run.execution_arn, timeout_s=120)
        assert finished["status"] == "SUCCEEDED", store.svc.metadata.get_run(run.run_id)
        assert store.svc.registry.get_alias(MODEL, PRODUCTION_ALIAS).version == 1
        yield 1
    finally:
        monkeypatch.undo()


def test_no_training_row_saw_a_feature_value_from_its_future_or_older_than_the_ttl(
    store: Store, trained: int
) -> None:
    """Given each update carries its own time (as_of_s)
    When Train joined the view to January's rows
    Then every row's value is from at or before the row's time and within 30 days of it; the values are
    exactly the straightforward per-entity join's over every update; and the data would have caught a leak:
    many rows have a later update a leaking join would have used."""
    [frame] = store.trained_on
    row_time = frame["event_time"]
    value_time = pd.to_datetime(EPOCH) + pd.to_timedelta(frame["as_of_s"], unit="s")
    seen = frame["as_of_s"].notna()
    assert seen.sum() > len(frame) / 2
    assert (value_time[seen] <= row_time[seen]).all()
    assert (row_time[seen] - value_time[seen] <= TTL).all()

    updates = pd.concat([store.history, store.current], ignore_index=True)
    expected = reference_point_in_time_join(
        frame[["customer_id", "event_time"]],
        "customer_id",
        "event_time",
        updates,
        TTL,
        VIEW_FEATURES,
        event_time="updated_at",
    )
    pd.testing.assert_series_equal(frame["as_of_s"], expected["as_of_s"], check_names=False)
    pd.testing.assert_series_equal(frame["lifetime_value"], expected["lifetime_value"], check_names=False)
    assert frame["segment"].fillna("-").tolist() == expected["segment"].astype(object).fillna("-").tolist()

    latest = updates.sort_values("updated_at").groupby("customer_id")["as_of_s"].last()
    leaking = frame["customer_id"].map(latest)
    assert (leaking != frame["as_of_s"]).sum() > len(frame) / 4
    assert (~seen).sum() > 0  # rows whose history starts later, or ended more than 30 days before


def test_the_version_records_its_views_and_lineage_reaches_the_offline_and_source_files(
    store: Store, trained: int
) -> None:
    version = store.svc.registry.get_model_version(MODEL, trained)
    assert version.tags["feature_views"] == VIEW
    assert version.signature["feature_views"] == {
        VIEW: {"entity": "customer_id", "ttl_days": 30.0, "features": VIEW_FEATURES}
    }

    graph = store.svc.metadata.lineage(
        NodeType.MODEL_VERSION, model_version_id(MODEL, trained), Direction.UPSTREAM, 6
    )
    files = graph.ids(NodeType.FILE)
    offline = {f.split("#")[0] for f in files if f"/features/{VIEW}/" in f}
    sources = {f.split("#")[0].rsplit("/", 1)[1] for f in files if f"/feature-sources/{VIEW}/" in f}
    assert offline and offline <= {f"s3://{store.bucket}/{key}" for key in store.keys(f"features/{VIEW}/")}
    assert {"early.csv", "middle.csv", "late.csv"} <= sources
    assert "current.csv" not in sources  # yesterday's updates are months after every row: never read
    assert set(graph.ids(NodeType.FILE)) >= set(
        actions.lineage(store.svc, f"{MODEL}:{trained}")["source_files"]
    )


# --- serving ----------------------------------------------------------------------------------------------


def stored_values(store: Store, index: int) -> dict[str, Any]:
    row = store.current.iloc[index]
    return {
        "lifetime_value": float(row["lifetime_value"]),
        "segment": row["segment"],
        "as_of_s": float(row["as_of_s"]),
    }


def test_a_prediction_from_the_entity_key_alone_equals_one_from_the_full_row(
    store: Store, trained: int
) -> None:
    """Given customers updated yesterday
    When a client sends their own features and customer_id, but none of the profile's
    Then the answer is the one the full row, profile values written out, gets; and the capture records the
    filled-in row."""
    keyed = [store.base_row(i) for i in range(3)]
    full = [{**store.base_row(i), **stored_values(store, i)} for i in range(3)]

    status, by_key = store.predict(keyed)
    full_status, by_row = store.predict(full)

    assert (status, full_status) == (200, 200), by_key
    assert by_key["predictions"] == by_row["predictions"]
    assert by_key["probabilities"] == by_row["probabilities"]
    prediction_api.serving().captures.flush()  # what the delivery thread does moments after the answers
    captured = [
        json.loads(line)
        for key in store.keys(f"captures/{MODEL}/")
        for line in store.cloud.client("s3")
        .get_object(Bucket=store.bucket, Key=key)["Body"]
        .read()
        .splitlines()
    ]
    inputs = {c["request_id"]: c["inputs"] for c in captured}
    assert inputs[by_key["request_ids"][0]] == full[0]


def test_request_values_override_the_stored_ones(store: Store, trained: int) -> None:
    override = {"segment": "enterprise"}

    status, partial = store.predict([{**store.base_row(1), **override}])
    _, explicit = store.predict([{**store.base_row(1), **stored_values(store, 1), **override}])

    assert status == 200
    assert partial["probabilities"] == explicit["probabilities"]


def test_stale_and_unknown_entities_are_refused_naming_the_row_and_the_field(
    store: Store, trained: int
) -> None:
    """Given a customer whose latest update is months old, and one the store never heard of
    Then each row is refused: its profile features are neither in the request nor fresh in the store. The
    same stale customer with the values written out is answered."""
    stale = store.base_row(FRESH + 1)
    unknown = {**store.base_row(0), "customer_id": "nobody"}

    status, refused = store.predict([store.base_row(0), stale, unknown])
    given_status, _ = store.predict([{**stale, "lifetime_value": 10.0, "segment": "smb", "as_of_s": 1.0}])

    assert status == 422
    problems = {(p["row"], p["field"]): p["problem"] for p in refused["problems"]}
    assert set(problems) == {(row, name) for row in (1, 2) for name in VIEW_FEATURES}
    assert "not in the request" in problems[(1, "lifetime_value")]
    assert "older than the view's TTL of 30 days" in problems[(1, "lifetime_value")]
    assert stale["customer_id"] in problems[(1, "segment")]
    assert "has no value for customer_id 'nobody'" in problems[(2, "as_of_s")]
    assert given_status == 200


# --- monitoring --------------------------------------------------------------------------------------------


def test_features_from_the_store_are_profiled_and_monitored_like_any_other(
    store: Store, trained: int
) -> None:
    """Given client traffic by entity key
    When the monitor judges the window
    Then the profile features are in the version's reference profile and in the drift report."""
    status, _ = store.predict([store.base_row(i) for i in range(FRESH)])
    assert status == 200
    version = store.svc.registry.get_model_version(MODEL, trained)
    assert version.reference_profile_uri
    profile = json.loads(store.svc.objects.get(_ref(version.reference_profile_uri)).body)
    assert set(VIEW_FEATURES) <= set(profile["features"])

    errored, answer = store.cloud.invoke(store.cloud.names.functions["monitor"], {"model": MODEL})
    assert not errored, answer
    outcome = MonitorOutcome.model_validate(answer["models"][0])
    report = json.loads(store.svc.objects.get(_ref(outcome.report_uri or "")).body)
    judged = {f["name"]: f for f in report["drift"]["features"]}
    assert set(VIEW_FEATURES) <= set(judged)
    assert VIEW_FEATURES[0] not in report["drift"]["absent_features"]


def _ref(uri: str) -> ObjectRef:
    return ObjectRef.parse(uri)


def test_flywheel_features_push_waits_for_the_ingestion(
    store: Store, ingested: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "today.csv"
    path.write_bytes(csv(store.current.head(2).assign(lifetime_value=[1.0, 2.0])))

    pushed = features_cli.push(store.svc, path, VIEW)
    arrival = features_cli.wait_for_features(store.svc, pushed, timeout_s=10)

    assert arrival.status == "ingested" and arrival.offline
    assert all(pushed.digest in uri for uri in arrival.offline)
