"""The capture window: each run reads what arrived since the last, nothing twice, nothing skipped, within its
bounds; and the captures labels refer to are found however old they are (within the lookback)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.monitoring.window import (
    MARGIN,
    ObjectCursor,
    advance,
    day_prefixes,
    find_captures,
    parse_captures,
    read_capture_window,
    unread,
)
from shared.serving.capture import CaptureRecord
from shared.storage import ObjectRef, StoredObject
from tests.fixtures.monitoring import ClockedObjectStore

pytestmark = pytest.mark.unit

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BUCKET = "data"
MODEL = "churn"


def stored(key: str, at: datetime) -> StoredObject:
    return StoredObject(ObjectRef(BUCKET, key), "etag", 1, at)


def capture_object(store: ClockedObjectStore, ids: list[str], *, version: int = 1, model: str = MODEL) -> str:
    """One Firehose object of captures, dated now by the store's clock; its key."""
    when = store.now
    records = [
        CaptureRecord.of_prediction(
            request_id=rid, model=model, version=version, inputs={"x": 1}, prediction="true", time=when
        )
        for rid in ids
    ]
    key = f"captures/{model}/{when:%Y/%m/%d}/stream-1-{when:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
    store.put(ObjectRef(BUCKET, key), b"".join(r.to_line() for r in records))
    return key


def read(store: ClockedObjectStore, cursor: ObjectCursor, **bounds: float) -> tuple[list[str], ObjectCursor]:
    window, after = read_capture_window(
        store,
        BUCKET,
        MODEL,
        cursor,
        now=store.now,
        window_hours=bounds.get("window_hours", 24),
        max_rows=int(bounds.get("max_rows", 1000)),
    )
    return [row.request_id for row in window.rows], after


# --- the cursor --------------------------------------------------------------------------------------------


def test_the_first_cursor_reads_everything_listed_oldest_first() -> None:
    listing = [stored("b", START + timedelta(seconds=2)), stored("a", START), stored("c", START)]
    assert [o.ref.key for o in unread(listing, ObjectCursor())] == ["a", "c", "b"]


def test_objects_after_the_cursor_are_new_and_those_read_are_not() -> None:
    old, new = stored("a", START), stored("b", START + timedelta(minutes=10))
    cursor = advance(ObjectCursor(), [old], [old], START + timedelta(minutes=1))
    assert unread([old, new], cursor) == [new]


def test_a_late_object_dated_before_the_cursor_is_still_read_once() -> None:
    """An upload that began before the previous listing but became listable after it."""
    read_first = stored("b", START + timedelta(seconds=30))
    listed_at = START + timedelta(seconds=40)
    cursor = advance(ObjectCursor(), [read_first], [read_first], listed_at)
    late = stored("a", START + timedelta(seconds=20))
    assert unread([late, read_first], cursor) == [late]
    cursor = advance(cursor, [late, read_first], [late], listed_at + timedelta(seconds=5))
    assert unread([late, read_first], cursor) == []


def test_the_cursor_forgets_keys_older_than_the_margin() -> None:
    first = stored("a", START)
    cursor = advance(ObjectCursor(), [first], [first], START + timedelta(seconds=1))
    assert cursor.recent == ["a"]
    later = advance(cursor, [first], [], START + MARGIN + timedelta(minutes=1))
    assert later.recent == [] and unread([first], later) == []


# --- reading a window --------------------------------------------------------------------------------------


def test_each_run_reads_only_what_arrived_since_the_last() -> None:
    store = ClockedObjectStore(START)
    capture_object(store, ["r1", "r2"])
    store.advance(seconds=1)
    first, cursor = read(store, ObjectCursor())
    store.advance(seconds=1)
    capture_object(store, ["r3"])
    second, cursor = read(store, cursor)
    third, _ = read(store, cursor)
    assert (first, second, third) == (["r1", "r2"], ["r3"], [])


def test_an_object_written_in_the_same_instant_as_the_last_read_is_not_lost() -> None:
    store = ClockedObjectStore(START)
    capture_object(store, ["r1"])
    first, cursor = read(store, ObjectCursor())
    capture_object(store, ["r2"])  # same LastModified, any key order
    second, _ = read(store, cursor)
    assert (first, second) == (["r1"], ["r2"])


def test_objects_older_than_the_window_are_passed_over_for_good() -> None:
    store = ClockedObjectStore(START)
    capture_object(store, ["old"])
    store.advance(hours=30)
    capture_object(store, ["new"])
    window, cursor = read_capture_window(
        store, BUCKET, MODEL, ObjectCursor(), now=store.now, window_hours=24, max_rows=100
    )
    assert [r.request_id for r in window.rows] == ["new"] and len(window.skipped_old) == 1
    assert "older than the 24 h window" in window.notes(24, 100)[0]
    again, _ = read(store, cursor, window_hours=100)
    assert again == []


def test_a_window_stops_at_max_rows_and_the_next_run_continues() -> None:
    store = ClockedObjectStore(START)
    for n in range(3):
        capture_object(store, [f"r{n}a", f"r{n}b"])
        store.advance(seconds=1)
    first, cursor = read(store, ObjectCursor(), max_rows=4)
    second, cursor = read(store, cursor, max_rows=4)
    assert (first, second) == (["r0a", "r0b", "r1a", "r1b"], ["r2a", "r2b"])


def test_a_capture_delivered_twice_is_counted_once_and_bad_lines_are_noted() -> None:
    store = ClockedObjectStore(START)
    capture_object(store, ["r1", "r2"])
    store.advance(seconds=1)
    capture_object(store, ["r2", "r3"])
    key = f"captures/{MODEL}/{START:%Y/%m/%d}/broken"
    store.put(ObjectRef(BUCKET, key), b'{"request_id": "x"}\nnot json\n')
    window, _ = read_capture_window(
        store, BUCKET, MODEL, ObjectCursor(), now=store.now, window_hours=24, max_rows=100
    )
    assert [r.request_id for r in window.rows] == ["r1", "r2", "r3"]
    assert (window.duplicates, window.unreadable_lines) == (1, 2)


def test_a_window_spanning_midnight_lists_both_days() -> None:
    assert day_prefixes(MODEL, datetime(2026, 3, 1, 23, tzinfo=UTC), datetime(2026, 3, 2, 1, tzinfo=UTC)) == [
        "captures/churn/2026/03/01/",
        "captures/churn/2026/03/02/",
    ]


def test_parse_captures_keeps_the_record_fields() -> None:
    record = CaptureRecord.of_prediction(
        request_id="r1",
        model=MODEL,
        version=3,
        inputs={"x": None},
        prediction="no",
        probabilities={"no": 0.9},
    )
    [row], bad = parse_captures(record.to_line(), "s3://data/captures/x")
    assert bad == 0
    assert (row.request_id, row.version, row.inputs, row.origin) == ("r1", 3, {"x": None}, "api")
    assert row.outputs == {"prediction": "no", "probabilities": {"no": 0.9}}
    assert row.source == "s3://data/captures/x" and row.time.tzinfo is not None


# --- the captures labels refer to --------------------------------------------------------------------------


def test_find_captures_looks_back_day_by_day_and_stops_once_all_are_found() -> None:
    store = ClockedObjectStore(START)
    old = capture_object(store, ["a1", "a2"])
    store.advance(days=2)
    capture_object(store, ["b1"])
    store.advance(days=1)
    newest = capture_object(store, ["c1"])

    found, read_from = find_captures(store, BUCKET, MODEL, ["a2", "c1"], now=store.now)
    assert sorted(found) == ["a2", "c1"]
    assert read_from == [f"s3://{BUCKET}/{newest}", f"s3://{BUCKET}/{old}"]

    too_old, _ = find_captures(store, BUCKET, MODEL, ["a1"], now=store.now + timedelta(days=6))
    assert too_old == {}


def test_find_captures_uses_rows_already_read_first() -> None:
    store = ClockedObjectStore(START)
    capture_object(store, ["a1"])
    window, _ = read_capture_window(
        store, BUCKET, MODEL, ObjectCursor(), now=store.now, window_hours=24, max_rows=10
    )
    found, read_from = find_captures(store, BUCKET, MODEL, ["a1"], now=store.now, known=window.rows)
    assert list(found) == ["a1"] and read_from == []
