"""What the monitor has not read yet: capture objects and label sets, found by listing and a cursor.

Each monitor run reads what arrived since the previous run, and only that, so no capture is judged twice
and none is skipped. Objects are found by listing — captures under ``captures/<model>/<yyyy>/<MM>/<dd>/``
(Firehose partitions them by delivery day), accepted label sets under ``labels-accepted/<model>/`` — and
chosen with an :class:`ObjectCursor` that the monitor keeps in its state (:mod:`shared.monitoring.log`):

- ``(last_modified, last_key)``: the newest object read, by S3's ``LastModified`` then key. Every object
  after it is new;
- ``listed_at`` and ``recent``: when the previous run listed, and which keys it read whose ``LastModified``
  falls within :data:`MARGIN` of that listing. S3 dates an object by when its upload began, so an object can
  become listable after a listing that its date precedes (a slow upload, a Firehose flush in progress). An
  object dated within the margin and not in ``recent`` is new too, though older than the cursor.

Objects are read oldest first. A window is bounded twice by the contract's ``monitoring:`` block: objects
older than ``window_hours`` are passed over (counted, and never read later: the cursor moves past them), and
reading stops before an object that would take the window past ``max_window_rows`` — the rest is the next
run's. A record Firehose delivered twice (it delivers at least once) is counted once, by request id.

Captures that labels refer to may be older than any window: :func:`find_captures` looks for given request
ids in the last :data:`LABEL_LOOKBACK_DAYS` of partitions, newest first, and stops when it has found them all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.layout import DataPrefix
from shared.metadata import UtcDatetime
from shared.storage import ObjectRef, ObjectStore, StoredObject

MARGIN = timedelta(minutes=2)
LABEL_LOOKBACK_DAYS = 7


class ObjectCursor(BaseModel):
    """Where the previous run stopped reading a prefix (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    last_modified: UtcDatetime | None = None
    last_key: str = ""
    listed_at: UtcDatetime | None = None
    recent: list[str] = Field(default_factory=list)

    def after(self, obj: StoredObject) -> bool:
        """Whether ``obj`` comes after the newest object read."""
        if self.last_modified is None:
            return True
        return (_utc(obj.last_modified), obj.ref.key) > (self.last_modified, self.last_key)


def as_utc(moment: datetime) -> datetime:
    """A naive time is taken to be UTC (as S3 and capture records mean it); an aware one is converted."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_utc = as_utc


def _order(obj: StoredObject) -> tuple[datetime, str]:
    return _utc(obj.last_modified), obj.ref.key


def unread(
    listing: Iterable[StoredObject], cursor: ObjectCursor, margin: timedelta = MARGIN
) -> list[StoredObject]:
    """The listed objects the cursor has not read, oldest first."""
    recent = set(cursor.recent)
    since = cursor.listed_at - margin if cursor.listed_at is not None else None
    chosen = [
        obj
        for obj in listing
        if obj.ref.key not in recent
        and (cursor.after(obj) or (since is not None and _utc(obj.last_modified) >= since))
    ]
    return sorted(chosen, key=_order)


def advance(
    cursor: ObjectCursor,
    listing: Iterable[StoredObject],
    consumed: Iterable[StoredObject],
    listed_at: datetime,
    margin: timedelta = MARGIN,
) -> ObjectCursor:
    """The cursor after reading (or passing over) ``consumed`` from a listing made at ``listed_at``."""
    consumed = list(consumed)
    newest = max([*consumed], key=_order, default=None)
    last_modified, last_key = cursor.last_modified, cursor.last_key
    if newest is not None and cursor.after(newest):
        last_modified, last_key = _order(newest)
    read = {obj.ref.key for obj in consumed} | set(cursor.recent)
    since = _utc(listed_at) - margin
    recent = sorted(
        obj.ref.key for obj in listing if obj.ref.key in read and _utc(obj.last_modified) >= since
    )
    return ObjectCursor(last_modified=last_modified, last_key=last_key, listed_at=listed_at, recent=recent)


# --- captures -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapturedRow:
    """One capture record, as read from its object (``source`` is the object's URI)."""

    request_id: str
    time: datetime
    model: str
    version: int
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    source: str
    origin: str = "api"  # the record's own ``source``: who asked (client traffic is "api")


def capture_prefix(model: str) -> str:
    return f"{DataPrefix.CAPTURES}{model}/"


def day_prefixes(model: str, start: datetime, end: datetime) -> list[str]:
    """The capture partitions (one per UTC day) from ``start`` to ``end``, oldest first."""
    first, last = _utc(start).date(), _utc(end).date()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [_day_prefix(model, day) for day in days]


def _day_prefix(model: str, day: date) -> str:
    return f"{capture_prefix(model)}{day:%Y/%m/%d}/"


def parse_captures(body: bytes, uri: str) -> tuple[list[CapturedRow], int]:
    """The records of one capture object (JSON lines), and how many lines could not be read as one."""
    rows: list[CapturedRow] = []
    bad = 0
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            rows.append(
                CapturedRow(
                    request_id=str(data["request_id"]),
                    time=_utc(datetime.fromisoformat(str(data["time"]).replace("Z", "+00:00"))),
                    model=str(data.get("model", "")),
                    version=int(data["version"]),
                    inputs=dict(data.get("inputs") or {}),
                    outputs=dict(data.get("outputs") or {}),
                    source=uri,
                    origin=str(data.get("source") or "api"),
                )
            )
        except (ValueError, KeyError, TypeError):
            bad += 1
    return rows, bad


@dataclass
class CaptureWindow:
    """The captures one run reads: the records (each request once), the objects read, and what was left."""

    rows: list[CapturedRow] = field(default_factory=list)
    read: list[StoredObject] = field(default_factory=list)
    skipped_old: list[StoredObject] = field(default_factory=list)
    left_for_later: int = 0
    unreadable_lines: int = 0
    duplicates: int = 0

    @property
    def sources(self) -> list[str]:
        return [obj.ref.uri for obj in self.read]

    def notes(self, window_hours: float, max_rows: int) -> list[str]:
        notes = []
        if self.skipped_old:
            notes.append(
                f"{len(self.skipped_old)} capture object(s) older than the {window_hours:g} h window were "
                "passed over"
            )
        if self.left_for_later:
            notes.append(
                f"the window stopped at {max_rows:,} rows: {self.left_for_later} capture object(s) are left "
                "for the next run"
            )
        if self.unreadable_lines:
            notes.append(f"{self.unreadable_lines} capture line(s) could not be read and were left out")
        if self.duplicates:
            notes.append(f"{self.duplicates} capture(s) delivered more than once were counted once")
        return notes


def list_objects(objects: ObjectStore, bucket: str, prefixes: Sequence[str]) -> list[StoredObject]:
    found: list[StoredObject] = []
    for prefix in prefixes:
        found += objects.list(bucket, prefix)
    return found


def read_capture_window(
    objects: ObjectStore,
    bucket: str,
    model: str,
    cursor: ObjectCursor,
    *,
    now: datetime,
    window_hours: float,
    max_rows: int,
) -> tuple[CaptureWindow, ObjectCursor]:
    """Read the captures that arrived since ``cursor``, within ``window_hours`` of ``now`` and up to about
    ``max_rows`` records; return them and the cursor after them."""
    not_before = _utc(now) - timedelta(hours=window_hours)
    since = min(not_before, cursor.listed_at or not_before) - MARGIN
    listing = list_objects(objects, bucket, day_prefixes(model, since, now))
    window = CaptureWindow()
    seen: set[str] = set()
    candidates = unread(listing, cursor)
    consumed: list[StoredObject] = []
    for index, obj in enumerate(candidates):
        if _utc(obj.last_modified) < not_before:
            window.skipped_old.append(obj)
            consumed.append(obj)
            continue
        if len(window.rows) >= max_rows:
            window.left_for_later = len(candidates) - index
            break
        rows, bad = parse_captures(objects.get(obj.ref).body, obj.ref.uri)
        window.unreadable_lines += bad
        fresh = [row for row in rows if row.request_id not in seen]
        window.duplicates += len(rows) - len(fresh)
        if window.rows and len(window.rows) + len(fresh) > max_rows:
            window.left_for_later = len(candidates) - index
            break
        fresh = fresh[: max_rows - len(window.rows)]
        seen.update(row.request_id for row in fresh)
        window.rows += fresh
        window.read.append(obj)
        consumed.append(obj)
    return window, advance(cursor, listing, consumed, now)


def find_captures(
    objects: ObjectStore,
    bucket: str,
    model: str,
    request_ids: Iterable[str],
    *,
    now: datetime,
    known: Iterable[CapturedRow] = (),
    days: int = LABEL_LOOKBACK_DAYS,
) -> tuple[dict[str, CapturedRow], list[str]]:
    """The captures of ``request_ids``: from ``known`` rows first, then from the capture objects of the last
    ``days`` days, newest first, until every id is found. Returns them by request id, and the URIs of the
    objects read to find them."""
    wanted = set(request_ids)
    found = {row.request_id: row for row in known if row.request_id in wanted}
    read_uris: list[str] = []
    known_sources = {row.source for row in known}
    end = _utc(now)
    for day in reversed(day_prefixes(model, end - timedelta(days=days), end)):
        if len(found) == len(wanted):
            break
        for obj in sorted(objects.list(bucket, day), key=_order, reverse=True):
            if len(found) == len(wanted):
                break
            if obj.ref.uri in known_sources:
                continue
            rows, _ = parse_captures(objects.get(ObjectRef(bucket, obj.ref.key)).body, obj.ref.uri)
            matched = [row for row in rows if row.request_id in wanted and row.request_id not in found]
            if matched:
                read_uris.append(obj.ref.uri)
                found.update((row.request_id, row) for row in matched)
    return found, read_uris
