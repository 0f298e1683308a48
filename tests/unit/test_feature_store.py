"""The feature store: views, feature-source files, the offline store and its point-in-time join, the online
store's rules (on the in-memory store), and ingestion end to end.

:class:`OnlineStoreContract` is what every online store must do; ``tests/integration/
test_feature_store_dynamodb.py`` runs it again on the DynamoDB adapter on moto.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import ContractError, DataValidationError
from shared.featurestore.ingest import ingest_feature_file, source_view
from shared.featurestore.offline import (
    join_view,
    offline_files,
    offline_key,
    point_in_time_join,
    read_offline,
    sequence_of,
)
from shared.featurestore.online import InMemoryOnlineStore, OnlineRow, OnlineStore, entity_key, fresh
from shared.featurestore.sources import validate_feature_file
from shared.featurestore.view import SEQUENCE_COLUMN, parse_feature_view
from shared.metadata import InMemoryMetadataStore, NodeType, Relation, file_id
from shared.storage import InMemoryObjectStore, ObjectRef
from tests.fixtures.feature_store import (
    COLUMNS,
    VIEW_YAML,
    customer_profile,
    reference_point_in_time_join,
    source_csv,
    source_parquet,
)
from tests.unit.test_registry import in_threads

QUARANTINE_PREFIX = "quarantine/_feature-sources/"  # where a refused feature-source file goes

pytestmark = pytest.mark.unit

VIEW = customer_profile()
NAMES = VIEW.feature_names
BUCKET = "data"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def stamp(n: float) -> pd.Timestamp:
    return pd.Timestamp(day(n)).as_unit("ns")


def feature_rows(*rows: tuple[str, float, float, str | None], sequence: str | None = None) -> pd.DataFrame:
    """Canonical feature rows ``(entity, day, tenure, plan)`` (support calls 0, autopay 1)."""
    frame = pd.DataFrame(
        {
            "customer_id": pd.Series([r[0] for r in rows], dtype="str"),
            "updated_at": pd.Series([stamp(r[1]) for r in rows], dtype="datetime64[ns, UTC]"),
            "tenure_months": pd.Series([r[2] for r in rows], dtype="float64"),
            "plan": pd.Series([r[3] for r in rows], dtype="str"),
            "support_calls": pd.Series([0.0] * len(rows), dtype="float64"),
            "autopay": pd.Series([1.0] * len(rows), dtype="float64"),
        }
    )
    if sequence is not None:
        frame[SEQUENCE_COLUMN] = pd.Series([sequence] * len(rows), dtype="str")
    return frame


def label_rows(*rows: tuple[Any, float], index: list[Any] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "ts": pd.Series([stamp(r[1]) for r in rows], dtype="datetime64[ns, UTC]").array,
            "label": list(range(len(rows))),
        },
        index=index,
    )


def join(rows: pd.DataFrame, features: pd.DataFrame, ttl_days: float = 30, **kw: Any) -> pd.DataFrame:
    return point_in_time_join(
        rows, "customer_id", "ts", features, timedelta(days=ttl_days), NAMES, event_time="updated_at", **kw
    )


def tenure(frame: pd.DataFrame) -> list[float | None]:
    return [None if pd.isna(v) else float(v) for v in frame["tenure_months"]]


# --- views ------------------------------------------------------------------------------------------------


def view_problems(text: str) -> list[str]:
    with pytest.raises(ContractError) as refused:
        parse_feature_view(text)
    assert refused.value.problems
    return [str(p) for p in refused.value.problems]


def test_a_view_parses_with_its_features_ttl_and_columns() -> None:
    view = parse_feature_view(VIEW_YAML)

    assert view.view == "customer_profile"
    assert view.ttl == timedelta(days=30)
    assert view.columns == ["customer_id", "updated_at", *NAMES]
    assert view.features["plan"].allowed == ("basic", "plus", "pro")
    assert parse_feature_view(view.to_yaml()) == view


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"view": "Customer Profile"}, "view: use lowercase letters, digits, '-' and '_'"),
        ({"view": "a#b"}, "view: use lowercase letters"),
        ({"entity": "updated_at"}, "entity and event_time name the same column"),
        ({"entity": "plan"}, "entity: 'plan' is also listed as a feature"),
        ({"event_time": "tenure_months"}, "event_time: 'tenure_months' is also listed as a feature"),
        ({"entity": '""'}, "entity: String should have at least 1 character"),
        ({"ttl_days": 0}, "ttl_days: Input should be greater than 0"),
        ({"ttl_days": -3}, "ttl_days: Input should be greater than 0"),
        ({"ttl_days": ".inf"}, "ttl_days: must be a finite number of days"),
        ({"ttl_days": "a month"}, "ttl_days: Input should be a valid number"),
        ({"features": "{}"}, "features: declare at least one feature"),
        (
            {"features": "{__sequence__: {type: numeric}}"},
            "features.__sequence__: '__sequence__' is reserved",
        ),
        ({"features": "{x: {type: numeric, min: 5, max: 1}}"}, "features.x: min (5.0) is greater than max"),
        ({"features": "{x: {type: colour}}"}, "features.x.type: Input should be 'numeric'"),
        (
            {"features": "{x: {type: numeric, typo: 1}}"},
            "features.x.typo: unknown field (expected one of type",
        ),
        ({"owner": "crm"}, "owner: unknown field (expected one of view, entity, event_time"),
        ({"max_file_mb": 0}, "max_file_mb: Input should be greater than 0"),
    ],
)
def test_an_invalid_view_is_refused_naming_the_problem(change: dict[str, Any], expected: str) -> None:
    document = {
        "view": "customer_profile",
        "entity": "customer_id",
        "event_time": "updated_at",
        "ttl_days": 30,
        "features": "{tenure_months: {type: numeric}, plan: {type: categorical}}",
    } | change
    text = "\n".join(f"{k}: {v}" for k, v in document.items())

    problems = view_problems(text)

    assert any(p.startswith(expected) for p in problems), problems


@pytest.mark.parametrize("field", ["view", "entity", "event_time", "ttl_days", "features"])
def test_every_required_field_is_named_when_absent(field: str) -> None:
    text = "\n".join(line for line in VIEW_YAML.splitlines() if not line.startswith(f"{field}:"))
    if field == "features":
        text = "\n".join(line for line in text.splitlines() if not line.startswith("  "))

    assert f"{field}: required" in view_problems(text)


def test_every_problem_of_a_view_is_listed_at_once() -> None:
    problems = view_problems(
        "view: Bad Name\nentity: plan\nevent_time: plan\nttl_days: 0\ncolour: blue\n"
        "features:\n  plan: {type: categorical, min: 1}\n"
    )

    expected = (
        "view: use lowercase",
        "ttl_days: Input should be greater than 0",
        "colour: unknown field",
        "features.plan: min/max apply to numeric features",
        "entity: 'plan' is also listed as a feature",
        "event_time: 'plan' is also listed as a feature",
        "entity and event_time name the same column",
    )
    assert len(problems) == len(expected), problems
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)


@pytest.mark.parametrize("text", ["", "- a list", "view: [unclosed"])
def test_a_view_that_is_not_a_yaml_mapping_is_refused(text: str) -> None:
    assert view_problems(text)


# --- feature-source files ---------------------------------------------------------------------------------


def test_a_feature_file_becomes_the_canonical_frame() -> None:
    body = source_csv(
        ("c1", "2024-01-01", 3, "basic", None, "yes"),
        (12.0, "2024-01-02T10:00:00+02:00", 4, "pro", 2, "FALSE"),
    )

    data = validate_feature_file(body, "profiles.csv", VIEW)

    assert {c: str(t) for c, t in data.frame.dtypes.items()} == {
        "customer_id": "str",
        "updated_at": "datetime64[ns, UTC]",
        "tenure_months": "float64",
        "plan": "str",
        "support_calls": "float64",
        "autopay": "float64",
    }
    assert data.frame["customer_id"].tolist() == ["c1", "12"]  # an integral number is a key like "12"
    assert data.frame["updated_at"].tolist() == [stamp(0), stamp(1) + pd.Timedelta(hours=8)]
    assert (data.rows, data.duplicates_dropped) == (2, 0)
    assert (data.start, data.end) == (day(0), day(1) + timedelta(hours=8))


def test_a_repeated_entity_and_event_time_keeps_the_last_row_in_file_order() -> None:
    body = source_csv(
        ("c1", "2024-01-01", 1, "basic", None, "yes"),
        ("c2", "2024-01-01", 2, "basic", None, "yes"),
        ("c1", "2024-01-01T00:00:00Z", 3, "pro", None, "no"),  # the same instant, written differently
        ("c1", "2024-01-02", 4, "plus", None, "no"),  # the same entity later: a new event, kept
    )

    data = validate_feature_file(body, "profiles.csv", VIEW)

    assert data.duplicates_dropped == 1
    assert list(zip(data.frame["customer_id"], data.frame["tenure_months"], strict=True)) == [
        ("c2", 2.0),
        ("c1", 3.0),
        ("c1", 4.0),
    ]


def test_a_bad_feature_file_is_refused_with_every_problem() -> None:
    body = source_csv(
        (None, "yesterday", -1, "gold", None, "maybe", "x"),
        ("c2", "", 5, "pro", None, "yes", "y"),
        columns=["customer_id", "updated_at", "tenure_months", "plan", "support_calls", "autopay", "extra"],
    )

    with pytest.raises(DataValidationError) as refused:
        validate_feature_file(body, "profiles.csv", VIEW)

    rules = {(p["column"], p["rule"]) for p in refused.value.problems}
    assert rules == {
        ("extra", "unexpected_column"),
        ("customer_id", "null_not_allowed"),
        ("updated_at", "bad_timestamp"),
        ("updated_at", "null_not_allowed"),
        ("tenure_months", "below_min"),
        ("plan", "not_allowed"),
        ("autopay", "wrong_type"),
    }
    message = str(refused.value)
    assert "does not meet the feature view 'customer_profile' (7 problem(s))" in message
    assert "Column 'customer_id' (the entity key) is empty in 1 row(s) (row 1)" in message
    assert "Column 'extra' is not in the feature view" in message


def test_a_feature_file_missing_a_column_or_rows_is_refused() -> None:
    missing = source_csv(
        ("c1", "2024-01-01", 3, "basic", "yes"), columns=[c for c in COLUMNS if c != "support_calls"]
    )
    header_only = source_csv()

    with pytest.raises(DataValidationError) as no_column:
        validate_feature_file(missing, "a.csv", VIEW)
    with pytest.raises(DataValidationError) as no_rows:
        validate_feature_file(header_only, "b.csv", VIEW)

    assert [(p["rule"], p["column"]) for p in no_column.value.problems] == [
        ("missing_column", "support_calls")
    ]
    assert "the feature view 'customer_profile' requires it as a numeric feature" in str(no_column.value)
    assert [p["rule"] for p in no_rows.value.problems] == ["header_only"]


def test_a_parquet_feature_file_is_read_like_a_csv_one() -> None:
    frame = pd.DataFrame(
        {
            "autopay": [True, False],
            "customer_id": [7, 8],
            "updated_at": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "tenure_months": [1, 2],
            "plan": ["basic", "pro"],
            "support_calls": [None, 1.0],
        }
    )

    data = validate_feature_file(source_parquet(frame), "p.parquet", VIEW)

    assert data.frame.columns.tolist() == VIEW.columns
    assert data.frame["customer_id"].tolist() == ["7", "8"]
    assert data.frame["autopay"].tolist() == [1.0, 0.0]


# --- the point-in-time join -------------------------------------------------------------------------------


TIMELINE = feature_rows(
    ("c1", 0, 1, "basic"), ("c1", 10, 10, "plus"), ("c1", 20, 20, "pro"), ("c2", 5, 5, "pro")
)


def test_each_row_sees_only_feature_values_from_at_or_before_its_time() -> None:
    rows = label_rows(("c1", 5), ("c1", 10), ("c1", 15), ("c1", 25), ("c2", 4), ("c2", 6))

    joined = join(rows, TIMELINE)

    assert tenure(joined) == [1.0, 10.0, 10.0, 20.0, None, 5.0]
    assert joined["plan"].tolist()[:4] == ["basic", "plus", "plus", "pro"]
    # a leaking join (each entity's latest value, whatever the time) answers differently
    latest = TIMELINE.sort_values("updated_at").drop_duplicates("customer_id", keep="last")
    leaked = rows.merge(latest, on="customer_id", how="left")
    assert tenure(leaked) != tenure(joined)
    assert tenure(leaked) == [20.0, 20.0, 20.0, 20.0, 5.0, 5.0]


def test_values_older_than_the_ttl_count_as_missing_and_nothing_older_replaces_them() -> None:
    rows = label_rows(("c1", 17), ("c1", 17.00001), ("c1", 19.9), ("c1", 27), ("c1", 27.5))

    joined = join(rows, TIMELINE, ttl_days=7)

    # 7 days after the day-10 value is still within the TTL (inclusive); a moment later it has expired, and
    # the older day-0 value is not used instead
    assert tenure(joined) == [10.0, None, None, 20.0, None]
    assert joined["plan"].isna().tolist() == [False, True, True, False, True]


def test_entities_without_history_and_rows_without_a_key_or_time_get_missing_features() -> None:
    rows = label_rows(("nobody", 15), ("c1", 15), (None, 15))
    rows.loc[1, "ts"] = pd.NaT

    joined = join(rows, TIMELINE)

    assert joined[NAMES].isna().all().all()
    assert joined["plan"].dtype == "str"
    assert joined["tenure_months"].dtype == "float64"


def test_rows_keep_their_order_index_and_columns() -> None:
    rows = label_rows(
        ("c2", 6), ("c1", 25), ("c1", 5), ("nobody", 1), ("c1", 10), index=["e", "b", "b", "a", "z"]
    )

    joined = join(rows, TIMELINE)

    assert joined.index.tolist() == ["e", "b", "b", "a", "z"]
    assert joined.columns.tolist() == ["customer_id", "ts", "label", *NAMES]
    assert joined["label"].tolist() == [0, 1, 2, 3, 4]
    assert tenure(joined) == [5.0, 20.0, 1.0, None, 10.0]
    pd.testing.assert_frame_equal(joined[rows.columns], rows)


def test_the_same_event_time_twice_is_resolved_by_the_sequence_then_by_position() -> None:
    earlier = feature_rows(("c1", 10, 111, "basic"), sequence=sequence_of(day(30), "aaaa"))
    later = feature_rows(("c1", 10, 222, "pro"), sequence=sequence_of(day(31), "0000"))
    rows = label_rows(("c1", 12))

    # the later delivery wins, in whichever order the rows come
    assert tenure(join(rows, pd.concat([later, earlier]))) == [222.0]
    assert tenure(join(rows, pd.concat([earlier, later]))) == [222.0]
    # without a sequence column, the last row given wins
    plain = pd.concat([earlier, later]).drop(columns=SEQUENCE_COLUMN)
    assert tenure(join(rows, plain)) == [222.0]
    assert tenure(join(rows, plain.iloc[::-1])) == [111.0]


def test_entity_keys_are_compared_as_text_and_times_as_utc() -> None:
    features = feature_rows(("12", 10, 7, "pro"))  # day 10 is 2024-01-11T00:00Z
    rows = pd.DataFrame(
        {
            "customer_id": [12.0, 12, "12", 12],
            "ts": [
                "2024-01-11",
                "2024-01-11T03:00:00+02:00",
                "2024-01-10T23:00:00-02:00",
                "2024-01-10T23:59Z",
            ],
        }
    )

    joined = join(rows, features)

    assert tenure(joined) == [7.0, 7.0, 7.0, None]


def test_a_feature_named_like_a_row_column_is_refused() -> None:
    rows = label_rows(("c1", 5)).assign(plan="x")

    with pytest.raises(ValueError, match="plan"):
        join(rows, TIMELINE)


ENTITIES = ["a", "b", "c", "d"]


@st.composite
def timelines(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """Random feature histories with many ties, and label rows that hit them, miss them, or come early."""
    n = draw(st.integers(0, 40))
    entities = draw(st.lists(st.sampled_from(ENTITIES), min_size=n, max_size=n))
    hours = draw(st.lists(st.integers(0, 24 * 12), min_size=n, max_size=n))
    seqs = draw(st.lists(st.sampled_from(["s1", "s2", "s3"]), min_size=n, max_size=n))
    tenure_values = draw(st.lists(st.one_of(st.none(), st.integers(0, 99)), min_size=n, max_size=n))
    plans = draw(st.lists(st.one_of(st.none(), st.sampled_from(["basic", "pro"])), min_size=n, max_size=n))
    features = pd.DataFrame(
        {
            "customer_id": pd.Series(entities, dtype="str"),
            "updated_at": pd.Series([stamp(h / 24) for h in hours], dtype="datetime64[ns, UTC]"),
            "tenure_months": pd.Series([np.nan if v is None else v for v in tenure_values], dtype="float64"),
            "plan": pd.Series(plans, dtype="str"),
            "support_calls": pd.Series(np.arange(n), dtype="float64"),
            "autopay": pd.Series([1.0] * n, dtype="float64"),
            SEQUENCE_COLUMN: pd.Series(seqs, dtype="str"),
        }
    )
    m = draw(st.integers(0, 30))
    row_entities = draw(st.lists(st.sampled_from([*ENTITIES, "zz"]), min_size=m, max_size=m))
    row_hours = draw(st.lists(st.integers(-24, 24 * 14), min_size=m, max_size=m))
    rows = pd.DataFrame(
        {
            "customer_id": row_entities,
            "ts": pd.Series([stamp(h / 24) for h in row_hours], dtype="datetime64[ns, UTC]"),
            "label": range(m),
        },
        index=draw(st.permutations(list(range(m)))),
    )
    ttl = draw(st.sampled_from([1 / 24, 0.5, 1, 3, 30]))
    return features, rows, ttl


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines())
def test_the_vectorised_join_equals_the_per_entity_reference(
    case: tuple[pd.DataFrame, pd.DataFrame, float],
) -> None:
    features, rows, ttl_days = case
    ttl = timedelta(days=ttl_days)

    flywheel = point_in_time_join(rows, "customer_id", "ts", features, ttl, NAMES, event_time="updated_at")
    reference = reference_point_in_time_join(
        rows, "customer_id", "ts", features, ttl, NAMES, event_time="updated_at"
    )

    pd.testing.assert_frame_equal(flywheel, reference)


# --- the online store -------------------------------------------------------------------------------------


class OnlineStoreContract:
    """Behaviour every online store must have. Subclasses provide the ``store`` fixture."""

    def test_materialising_keeps_the_latest_row_of_each_entity(self, store: OnlineStore) -> None:
        result = store.materialize(VIEW, TIMELINE)

        found = store.get_many(VIEW.view, ["c1", "c2", "nobody"])

        assert (result.entities, result.written, result.stale) == (2, 2, 0)
        assert sorted(found) == ["c1", "c2"]
        assert found["c1"].values == {
            "tenure_months": 20.0,
            "plan": "pro",
            "support_calls": 0.0,
            "autopay": 1.0,
        }
        assert found["c1"].event_time == day(20)
        assert found["c2"].event_time == day(5)

    def test_an_older_row_never_overwrites_a_newer_one(self, store: OnlineStore) -> None:
        store.materialize(VIEW, feature_rows(("c1", 20, 20, "pro"), sequence="s"))

        late = store.materialize(
            VIEW, feature_rows(("c1", 10, 10, "basic"), ("c2", 1, 1, "basic"), sequence="z")
        )

        assert (late.written, late.stale) == (1, 1)
        assert store.get_many(VIEW.view, ["c1"])["c1"].values["tenure_months"] == 20.0

    def test_the_same_event_time_is_won_by_the_greater_sequence_and_the_same_row_changes_nothing(
        self, store: OnlineStore
    ) -> None:
        first = sequence_of(day(30), "bbbb")
        store.materialize(VIEW, feature_rows(("c1", 10, 1, "basic"), sequence=first))

        again = store.materialize(VIEW, feature_rows(("c1", 10, 1, "basic"), sequence=first))
        older = store.materialize(
            VIEW, feature_rows(("c1", 10, 2, "plus"), sequence=sequence_of(day(29), "ffff"))
        )
        newer = store.materialize(
            VIEW, feature_rows(("c1", 10, 3, "pro"), sequence=sequence_of(day(31), "0000"))
        )

        assert [r.written for r in (again, older, newer)] == [0, 0, 1]
        row = store.get_many(VIEW.view, ["c1"])["c1"]
        assert (row.values["tenure_months"], row.sequence) == (3.0, sequence_of(day(31), "0000"))

    def test_missing_values_come_back_as_none(self, store: OnlineStore) -> None:
        rows = feature_rows(("c1", 1, 1, None))
        rows.loc[0, "support_calls"] = np.nan

        store.materialize(VIEW, rows)

        values = store.get_many(VIEW.view, ["c1"])["c1"].values
        assert values == {"tenure_months": 1.0, "plan": None, "support_calls": None, "autopay": 1.0}

    def test_many_entities_are_read_in_one_call_whatever_their_number(self, store: OnlineStore) -> None:
        entities = [f"c{i:03d}" for i in range(250)]
        store.materialize(VIEW, feature_rows(*((e, i, i, "pro") for i, e in enumerate(entities))))

        found = store.get_many(VIEW.view, [*entities, "nobody", entities[0]])

        assert sorted(found) == entities
        assert all(found[e].values["tenure_months"] == float(i) for i, e in enumerate(entities))
        assert store.get_many(VIEW.view, []) == {}
        assert store.get_many("another_view", entities[:3]) == {}

    def test_concurrent_materialisations_of_one_entity_keep_the_newest(self, store: OnlineStore) -> None:
        # Given 12 writers, each holding a different version of the same three entities
        def write(i: int) -> int:
            rows = feature_rows(*((e, i, i, "pro") for e in ("c1", "c2", "c3")), sequence=f"s{i:02d}")
            return store.materialize(VIEW, rows).written

        # When they all materialise at once
        written, errors = in_threads(12, write)

        # Then the newest version is stored for every entity, whatever the order the writes landed in
        assert errors == []
        found = store.get_many(VIEW.view, ["c1", "c2", "c3"])
        assert {e: r.values["tenure_months"] for e, r in found.items()} == {
            "c1": 11.0,
            "c2": 11.0,
            "c3": 11.0,
        }
        assert all(r.event_time == day(11) for r in found.values())
        assert 3 <= sum(written) <= 36


class TestInMemoryOnlineStore(OnlineStoreContract):
    @pytest.fixture
    def store(self) -> OnlineStore:
        return InMemoryOnlineStore()


def test_fresh_values_are_missing_past_the_ttl() -> None:
    row = OnlineRow(values={"tenure_months": 3.0, "plan": "pro"}, event_time=day(10))
    names = ["tenure_months", "plan", "support_calls"]

    assert fresh(row, day(17), timedelta(days=7), names) == {
        "tenure_months": 3.0,
        "plan": "pro",
        "support_calls": None,
    }
    assert fresh(row, day(17.001), timedelta(days=7), names) == dict.fromkeys(names)
    assert fresh(None, day(11), timedelta(days=7), names) == dict.fromkeys(names)
    # a row stamped a little after "now" (a producer's clock ahead) is served
    assert fresh(row, day(9.99), timedelta(days=7), names)["plan"] == "pro"


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("c1", "c1"),
        (" c1 ", "c1"),
        (12, "12"),
        (12.0, "12"),
        ("12.0", "12"),
        (np.int64(12), "12"),
        (np.float64(12.0), "12"),
        (12.5, "12.5"),
        (True, "true"),
        ("TRUE", "true"),
        ("-3.00", "-3"),
    ],
)
def test_entity_keys_follow_the_validation_rule(value: Any, key: str) -> None:
    assert entity_key(value) == key


def test_the_online_module_loads_without_pandas() -> None:
    # the prediction function imports it, and serving never loads pandas for an ONNX model
    code = "import sys, shared.featurestore.online; print('pandas' in sys.modules)"
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert answer.stdout.strip() == "False"


# --- the offline store and ingestion ----------------------------------------------------------------------


def deliver(objects: InMemoryObjectStore, name: str, body: bytes) -> ObjectRef:
    return objects.put(ObjectRef(BUCKET, f"feature-sources/customer_profile/{name}"), body)


def ingest(objects: InMemoryObjectStore, online: InMemoryOnlineStore, ref: ObjectRef, at: float) -> Any:
    return ingest_feature_file(objects, online, VIEW, ref, delivered_at=day(at))


FILE_A = source_csv(
    ("c1", "2024-01-11", 10, "plus", None, "yes"),
    ("c2", "2024-01-03", 3, "basic", 1, "no"),
    ("c1", "2024-01-02", 2, "basic", None, "yes"),
)
FILE_B = source_csv(("c1", "2024-01-21", 20, "pro", 4, "yes"), ("c3", "2024-01-21", 7, "pro", 0, "no"))


def test_ingestion_writes_one_offline_object_per_event_date_named_by_the_file() -> None:
    objects, online = InMemoryObjectStore(), InMemoryOnlineStore()

    result = ingest(objects, online, deliver(objects, "a.csv", FILE_A), at=40)

    digest = result.offline[0].rsplit("/", 1)[1].removesuffix(".parquet")
    assert result.status == "ingested"
    assert result.offline == [
        f"s3://data/{offline_key('customer_profile', day(n).date(), digest)}" for n in (1, 2, 10)
    ]
    assert result.offline[0] == f"s3://data/features/customer_profile/date=2024-01-02/{digest}.parquet"
    assert result.materialized is not None
    assert (result.rows, result.materialized.entities, result.materialized.written) == (3, 2, 2)
    stored = read_offline(objects, BUCKET, VIEW)
    assert stored.columns.tolist() == [*VIEW.columns, SEQUENCE_COLUMN]
    assert set(stored[SEQUENCE_COLUMN]) == {sequence_of(day(40), digest)}


def test_lineage_records_which_offline_objects_a_source_file_became() -> None:
    objects, online, metadata = InMemoryObjectStore(), InMemoryOnlineStore(), InMemoryMetadataStore()
    source = deliver(objects, "a.csv", FILE_A)

    result = ingest_feature_file(objects, online, VIEW, source, metadata=metadata)

    events = metadata.downstream(NodeType.FILE, file_id(source.uri, source.version_id))
    derived = sorted(e.dst.id for e in events if e.relation == Relation.DERIVED)
    expected = [
        file_id(uri, objects.head(ObjectRef.parse(uri)).ref.version_id) for uri in sorted(result.offline)
    ]
    assert derived == expected


def test_a_late_file_never_overwrites_newer_online_values_but_joins_offline() -> None:
    objects, online = InMemoryObjectStore(), InMemoryOnlineStore()
    ingest(objects, online, deliver(objects, "b.csv", FILE_B), at=40)

    late = ingest(objects, online, deliver(objects, "a.csv", FILE_A), at=41)

    assert late.materialized is not None
    assert (late.materialized.written, late.materialized.stale) == (1, 1)  # c2 is new; c1 is older
    assert online.get_many(VIEW.view, ["c1"])["c1"].values["tenure_months"] == 20.0
    rows = label_rows(("c1", 5), ("c1", 15), ("c1", 25))
    assert tenure(join_view(objects, BUCKET, VIEW, rows, "ts")) == [2.0, 10.0, 20.0]


def test_re_delivering_a_file_changes_nothing() -> None:
    objects, online = InMemoryObjectStore(), InMemoryOnlineStore()
    first = ingest(objects, online, deliver(objects, "a.csv", FILE_A), at=40)
    versions = {uri: objects.head(ObjectRef.parse(uri)).ref.version_id for uri in first.offline}
    before = online.get_many(VIEW.view, ["c1", "c2"])

    again = ingest(objects, online, deliver(objects, "a.csv", FILE_A), at=45)
    renamed = ingest(objects, online, deliver(objects, "copy-of-a.csv", FILE_A), at=46)

    for result in (again, renamed):
        assert result.offline == first.offline
        assert result.offline_existing == len(first.offline)
        assert result.materialized is not None
        assert (result.materialized.written, result.materialized.stale) == (0, 2)
    assert {uri: objects.head(ObjectRef.parse(uri)).ref.version_id for uri in first.offline} == versions
    assert online.get_many(VIEW.view, ["c1", "c2"]) == before
    assert len(offline_files(objects, BUCKET, VIEW.view)) == 3


def test_a_correction_at_the_same_event_time_wins_and_re_delivering_the_original_does_not_undo_it() -> None:
    objects, online = InMemoryObjectStore(), InMemoryOnlineStore()
    original = source_csv(("c1", "2024-01-11", 10, "plus", None, "yes"))
    correction = source_csv(("c1", "2024-01-11", 11, "pro", None, "yes"))
    ingest(objects, online, deliver(objects, "original.csv", original), at=40)
    ingest(objects, online, deliver(objects, "correction.csv", correction), at=41)

    ingest(objects, online, deliver(objects, "original-again.csv", original), at=42)

    rows = label_rows(("c1", 12))
    assert online.get_many(VIEW.view, ["c1"])["c1"].values["tenure_months"] == 11.0
    assert tenure(join_view(objects, BUCKET, VIEW, rows, "ts")) == [11.0]


def test_a_bad_feature_file_is_quarantined_with_its_reasons_and_stores_nothing() -> None:
    objects, online = InMemoryObjectStore(), InMemoryOnlineStore()
    ref = deliver(objects, "bad.csv", source_csv(("c1", "someday", -4, "basic", None, "yes")))

    result = ingest(objects, online, ref, at=40)

    assert result.status == "quarantined"
    assert result.quarantined_as == f"s3://data/{QUARANTINE_PREFIX}customer_profile/bad.csv"
    report = json.loads(
        objects.get(ObjectRef(BUCKET, f"{QUARANTINE_PREFIX}customer_profile/bad.csv.error.json")).body
    )
    assert {p["rule"] for p in report["problems"]} == {"bad_timestamp", "below_min"}
    assert report["view"] == "customer_profile"
    assert objects.list(BUCKET, "feature-sources/") == []
    assert offline_files(objects, BUCKET, VIEW.view) == []
    assert online.get_many(VIEW.view, ["c1"]) == {}


def test_offline_files_are_listed_by_event_date() -> None:
    objects, online = InMemoryObjectStore(), InMemoryOnlineStore()
    ingest(objects, online, deliver(objects, "a.csv", FILE_A), at=40)
    ingest(objects, online, deliver(objects, "b.csv", FILE_B), at=41)
    objects.put(ObjectRef(BUCKET, "features/customer_profile/notes.txt"), b"not a partition")
    objects.put(ObjectRef(BUCKET, "features/customer_profile_2/date=2024-01-05/x.parquet"), b"another view")

    def days(**bounds: Any) -> list[str]:
        return [o.ref.key.split("/")[2] for o in offline_files(objects, BUCKET, VIEW.view, **bounds)]

    assert days() == ["date=2024-01-02", "date=2024-01-03", "date=2024-01-11", "date=2024-01-21"]
    assert days(since=day(2)) == ["date=2024-01-03", "date=2024-01-11", "date=2024-01-21"]
    assert days(since=day(2).date(), until=day(10) + timedelta(hours=23)) == [
        "date=2024-01-03",
        "date=2024-01-11",
    ]
    assert days(until=datetime(2024, 1, 2, 23, 59)) == ["date=2024-01-02"]
    window = read_offline(objects, BUCKET, VIEW, since=day(2) + timedelta(hours=1), until=day(19))
    assert window["updated_at"].tolist() == [stamp(10)]
    empty = read_offline(objects, BUCKET, VIEW, since=day(100))
    assert empty.empty
    assert empty.columns.tolist() == [*VIEW.columns, SEQUENCE_COLUMN]


def test_the_online_value_is_what_the_offline_join_gives_for_now() -> None:
    # Given files with updates on whole days (so many share an event time across files), some entities
    # updated only long ago, delivered in random order and some of them twice
    rng = np.random.default_rng(7)
    objects, online = InMemoryObjectStore(), InMemoryOnlineStore()

    def random_file() -> bytes:
        rows = []
        for _ in range(int(rng.integers(1, 30))):
            entity = int(rng.integers(0, 25))
            days_ago = int(rng.integers(0, 58 if entity < 20 else 25))  # c20..c24: nothing recent
            plan = str(rng.choice(["basic", "plus", "pro"]))
            rows.append(
                (f"c{entity}", day(days_ago).isoformat(), int(rng.integers(0, 100)), plan, None, "yes")
            )
        return source_csv(*rows)

    bodies = [random_file() for _ in range(12)]
    for i, j in enumerate(rng.integers(0, len(bodies), size=30)):
        ingest(objects, online, deliver(objects, f"f{i}.csv", bodies[j]), at=100 + i)
    entities = [*(f"c{i}" for i in range(25)), "nobody"]

    for now in (day(60), day(75)):
        # When serving asks the online store, and training asks the offline join, about "now"
        served = online.get_many(VIEW.view, entities)
        rows = pd.DataFrame({"customer_id": entities, "ts": [pd.Timestamp(now)] * len(entities)})
        trained = join_view(objects, BUCKET, VIEW, rows, "ts")

        # Then they agree for every entity: fresh, expired or unknown
        online_values = [fresh(served.get(e), now, VIEW.ttl, NAMES) for e in entities]
        offline_values = [
            {n: None if pd.isna(row[n]) else row[n] for n in NAMES} for _, row in trained.iterrows()
        ]
        assert online_values == offline_values
        assert any(v["plan"] is not None for v in online_values)
        assert online_values[-1]["plan"] is None  # "nobody"
    assert all(fresh(served[f"c{i}"], day(60), VIEW.ttl, NAMES)["plan"] is None for i in range(20, 25))


def test_source_keys_name_their_view() -> None:
    assert source_view("feature-sources/customer_profile/2024/05/a.csv") == "customer_profile"
    assert source_view("feature-sources/customer_profile/") is None
    assert source_view("feature-sources/Bad View/a.csv") is None
    assert source_view("incoming/churn/a.csv") is None
