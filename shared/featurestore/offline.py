"""The offline store (feature history as Parquet) and the point-in-time join that builds training sets.

Layout, in the data bucket::

    features/<view>/date=<YYYY-MM-DD>/<source digest>.parquet

One object per event date (UTC) per source file, named by the first 16 hex digits of the source file's
sha256: a re-delivered file maps to the same keys, and an object that exists already is not written again,
so ingesting a file twice changes nothing. Each object holds the view's canonical columns plus
``__sequence__`` (:data:`SEQUENCE_COLUMN`), the tiebreak between rows of one entity with the same event time:
``<delivered at, UTC, %Y%m%dT%H%M%S.%fZ>-<source digest>``, the source file's delivery (its object's
last-modified time) then its digest, compared as text. **The later delivery wins**; files delivered in the
same instant (S3 keeps seconds) are ordered by digest. The online store compares the same
``(event_time, sequence)``, so both stores agree on the latest row.

:func:`point_in_time_join` gives each label row the feature row of its entity that was the latest at the
label row's own time and no older than the TTL; nothing from later is ever seen.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from shared.data.contract import FeatureType
from shared.data.validation import canonical_text
from shared.errors import NotFoundError
from shared.featurestore.view import SEQUENCE_COLUMN, FeatureView
from shared.layout import DataPrefix
from shared.storage import ObjectRef, ObjectStore, StoredObject

_DATE = "date="
_KEY, _TIME, _POS, _ROW = "__key__", "__time__", "__pos__", "__row__"


@dataclass(frozen=True, eq=False)
class OfflinePartition:
    """One offline object: its key, the rows it holds (as stored), and whether it was there already."""

    ref: ObjectRef
    day: date
    rows: pd.DataFrame
    existed: bool


# --- layout -----------------------------------------------------------------------------------------------


def offline_prefix(view: str) -> str:
    return f"{DataPrefix.FEATURES}{view}/"


def offline_key(view: str, day: date, digest: str) -> str:
    """Where one source file's rows of one event date live."""
    return f"{offline_prefix(view)}{_DATE}{day:%Y-%m-%d}/{digest}.parquet"


def sequence_of(delivered_at: datetime, digest: str) -> str:
    """The tiebreak of a source file's rows: later deliveries sort after earlier ones, then by digest."""
    return f"{delivered_at.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}-{digest}"


def partitions(view: FeatureView, frame: pd.DataFrame, sequence: str) -> dict[date, pd.DataFrame]:
    """A canonical feature frame split by event date (UTC), each part with the ``__sequence__`` column."""
    stamped = frame.assign(**{SEQUENCE_COLUMN: pd.Series(sequence, index=frame.index, dtype="str")})
    days = stamped[view.event_time].dt.tz_convert("UTC").dt.date
    return {day: part.reset_index(drop=True) for day, part in stamped.groupby(days, sort=True, observed=True)}


# --- writing and reading ----------------------------------------------------------------------------------


def write_offline(
    objects: ObjectStore, bucket: str, view: FeatureView, frame: pd.DataFrame, digest: str, sequence: str
) -> list[OfflinePartition]:
    """Append one validated source file to the offline store, one object per event date.

    An object that exists already (the same file delivered again, or a retry) is read back instead of
    written: its rows, with the sequence of the first delivery, are what the online store is given, so the
    two stores keep agreeing."""
    written: list[OfflinePartition] = []
    for day, rows in partitions(view, frame, sequence).items():
        ref = ObjectRef(bucket, offline_key(view.view, day, digest))
        try:
            stored = objects.get(ref)
        except NotFoundError:
            put = objects.put(ref, _to_parquet(rows), "application/vnd.apache.parquet")
            written.append(OfflinePartition(put, day, rows, existed=False))
        else:
            written.append(OfflinePartition(stored.ref, day, _from_parquet(stored.body), existed=True))
    return written


def offline_files(
    objects: ObjectStore,
    bucket: str,
    view: str,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
) -> list[StoredObject]:
    """The view's offline objects whose event date lies in ``[since, until]`` (dates of UTC times; either
    bound may be left open), by date then key."""
    low, high = _day(since), _day(until)
    found: list[tuple[date, str, StoredObject]] = []
    for stored in objects.list(bucket, offline_prefix(view)):
        day = _partition_day(stored.ref.key, view)
        if day is None or (low is not None and day < low) or (high is not None and day > high):
            continue
        found.append((day, stored.ref.key, stored))
    return [stored for _, _, stored in sorted(found, key=lambda f: (f[0], f[1]))]


def read_offline(
    objects: ObjectStore,
    bucket: str,
    view: FeatureView,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """The view's feature rows with event time in ``[since, until]``: the view's columns and
    ``__sequence__``, in date and key order (an empty frame with those columns when there are none)."""
    return read_offline_with_sources(objects, bucket, view, since, until)[0]


def read_offline_with_sources(
    objects: ObjectStore,
    bucket: str,
    view: FeatureView,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[pd.DataFrame, list[ObjectRef]]:
    """:func:`read_offline`, and the objects it read (each with the version read, for lineage)."""
    frames: list[pd.DataFrame] = []
    read: list[ObjectRef] = []
    for stored in offline_files(objects, bucket, view.view, since, until):
        got = objects.get(stored.ref)
        frames.append(_from_parquet(got.body))
        read.append(got.ref)
    frame = pd.concat(frames, ignore_index=True) if frames else empty_features(view)
    stamps = frame[view.event_time]
    keep = pd.Series(True, index=frame.index)
    if since is not None:
        keep &= stamps >= _timestamp(since)
    if until is not None:
        keep &= stamps <= _timestamp(until)
    return frame[keep].reset_index(drop=True), read


def empty_features(view: FeatureView) -> pd.DataFrame:
    """No feature rows, with the columns and dtypes of stored ones."""
    dtypes = {
        view.entity: "str",
        view.event_time: "datetime64[ns, UTC]",
        **{
            name: "str" if spec.type is FeatureType.CATEGORICAL else "float64"
            for name, spec in view.features.items()
        },
        SEQUENCE_COLUMN: "str",
    }
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()})


def join_view(
    objects: ObjectStore, bucket: str, view: FeatureView, rows: pd.DataFrame, row_time: str
) -> pd.DataFrame:
    """``rows`` with the view's features joined point-in-time, reading only the offline dates that can
    matter: from the earliest row time minus the TTL to the latest row time."""
    return join_view_with_sources(objects, bucket, view, rows, row_time)[0]


def join_view_with_sources(
    objects: ObjectStore, bucket: str, view: FeatureView, rows: pd.DataFrame, row_time: str
) -> tuple[pd.DataFrame, list[ObjectRef]]:
    """:func:`join_view`, and the offline objects it read (with their versions, for lineage)."""
    times = _utc(rows[row_time]).dropna()
    read: list[ObjectRef] = []
    if times.empty:
        features = empty_features(view)
    else:
        since = (times.min() - pd.Timedelta(view.ttl)).to_pydatetime()
        features, read = read_offline_with_sources(objects, bucket, view, since, times.max().to_pydatetime())
    joined = point_in_time_join(
        rows, view.entity, row_time, features, view.ttl, view.feature_names, event_time=view.event_time
    )
    return joined, read


# --- the point-in-time join -------------------------------------------------------------------------------


def point_in_time_join(
    rows: pd.DataFrame,
    entity: str,
    row_time: str,
    features: pd.DataFrame,
    ttl: timedelta,
    feature_names: Sequence[str],
    *,
    event_time: str = "event_time",
    tiebreak: str | None = SEQUENCE_COLUMN,
) -> pd.DataFrame:
    """``rows`` with ``feature_names`` added: for each row, the values of the feature row of its entity
    with the latest event time at or before the row's time, if that is no more than ``ttl`` before it.

    * Otherwise (no history yet, or only older than the TTL) the features are missing (NaN): an expired
      value is not replaced by anything older. A row with no entity or no time gets missing features.
    * A feature row is taken whole: a missing value in the latest row stays missing.
    * Feature rows of one entity with the same event time: the one with the greatest ``tiebreak`` value
      wins (the later delivery, see the module docstring); without a ``tiebreak`` column, the last one in
      ``features``.
    * Entity keys are compared as canonical text (``12``, ``12.0`` and ``"12"`` are one entity); times
      as UTC (a time without a zone is UTC).

    The row order, index and columns of ``rows`` are kept; the features come after them, typed as in
    ``features`` (an integer column becomes float, to hold NaN). Vectorised: one ``merge_asof`` by entity,
    backward, with the TTL as its tolerance.
    """
    names = list(feature_names)
    clash = [n for n in names if n in rows.columns]
    if clash:
        raise ValueError(f"the rows already have columns named like features: {clash}")
    # One code per entity across rows and features (-1: no entity), and times as ns since the epoch, so the
    # sorting, de-duplicating and matching below handle integers; feature values are taken once, at the end.
    codes, _ = pd.factorize(pd.concat([_keys(rows[entity]), _keys(features[entity])], ignore_index=True))
    row_keys, feature_keys = codes[: len(rows)], codes[len(rows) :]
    row_ns, row_nat = _ns(rows[row_time])
    feature_ns, feature_nat = _ns(features[event_time])

    # The right side: per (entity, event time) the row with the greatest tiebreak, else the last one, in
    # event-time order. lexsort is stable and sorts by its last key first.
    if tiebreak is not None and tiebreak in features.columns:
        ties, _ = pd.factorize(features[tiebreak].astype("str"), sort=True)
    else:
        ties = np.zeros(len(features), dtype=np.int64)
    usable = np.flatnonzero((feature_keys >= 0) & ~feature_nat)
    order = usable[np.lexsort((ties[usable], feature_keys[usable], feature_ns[usable]))]
    keys, times = feature_keys[order], feature_ns[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (keys[1:] != keys[:-1]) | (times[1:] != times[:-1])
    chosen = order[last]
    right = pd.DataFrame({_TIME: feature_ns[chosen], _KEY: feature_keys[chosen], _ROW: chosen})

    present = np.flatnonzero((row_keys >= 0) & ~row_nat)
    ordered = present[np.argsort(row_ns[present], kind="stable")]
    left = pd.DataFrame({_TIME: row_ns[ordered], _KEY: row_keys[ordered], _POS: ordered})
    merged = pd.merge_asof(
        left,
        right,
        on=_TIME,
        by=_KEY,
        direction="backward",
        allow_exact_matches=True,
        tolerance=int(pd.Timedelta(ttl).value),
    )
    matched = merged[_ROW].notna().to_numpy()
    source = np.full(len(rows), -1, dtype=np.int64)  # the feature row each label row takes, -1 for none
    source[merged[_POS].to_numpy()[matched]] = merged[_ROW].to_numpy()[matched].astype(np.int64)
    joined = rows.copy()
    for name in names:
        joined[name] = features[name].array.take(source, allow_fill=True)
    return joined


def _keys(values: pd.Series) -> pd.Series:
    return canonical_text(values)


def _ns(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Times as int64 ns since the epoch (UTC), and where they are missing."""
    stamps = _utc(values)
    return stamps.array.asi8.copy(), stamps.isna().to_numpy()


def _utc(values: pd.Series) -> pd.Series:
    """Times as ``datetime64[ns, UTC]`` (a time without a zone is UTC; text must be ISO 8601)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        stamps = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        stamps = values.dt.tz_localize("UTC")
    else:
        stamps = pd.to_datetime(values, utc=True, format="ISO8601")
    return stamps.dt.as_unit("ns")


def _timestamp(at: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(at)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _day(bound: date | datetime | None) -> date | None:
    if bound is None:
        return None
    if isinstance(bound, datetime):
        return (bound if bound.tzinfo else bound.replace(tzinfo=UTC)).astimezone(UTC).date()
    return bound


def _partition_day(key: str, view: str) -> date | None:
    part = key.removeprefix(offline_prefix(view)).split("/", 1)[0]
    if not part.startswith(_DATE) or not key.endswith(".parquet"):
        return None
    try:
        return date.fromisoformat(part.removeprefix(_DATE))
    except ValueError:
        return None


def _to_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _from_parquet(body: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(body))
