"""The online store: the latest feature values per entity, for serving, and its DynamoDB adapter.

One item per (view, entity) holds the latest feature row and its event time. A write is conditional: it
lands only when the store holds nothing for the entity or something strictly older by
``(event_time, sequence)``, so a late or re-delivered file never replaces a newer value, and two writers
racing for one entity leave the newer row whichever lands first. ``sequence`` breaks ties between rows with
the same event time (:data:`SEQUENCE_COLUMN`, see :mod:`shared.featurestore`): the offline point-in-time
join breaks them the same way, so both stores agree on which row is the latest.

Table (:data:`ONLINE_TABLE_KEYS`: partition key ``pk``, a string; no sort key, no index)::

    pk                   view       entity     event_time             sequence   values
    <view>#<entity>      S          S          N (ns since epoch)     S          S (JSON: feature -> value)

Values travel as one JSON document (numbers and booleans as floats, categories as text, ``null`` when
missing), as the registry and metadata stores do: DynamoDB takes no NaN and wants Decimal for numbers. A view
name never holds ``#``, so ``pk`` splits at its first ``#``. One partition per entity: no hot key.

Reads: :meth:`OnlineStore.get_many` fetches many entities with ``BatchGetItem`` (100 keys a request,
unprocessed keys retried with backoff); :func:`fresh` turns a stored row into the values to serve, missing
past the view's TTL.

This module imports neither pandas, pydantic's models nor the feature view's module (the contract, YAML)
at runtime: the prediction function imports it.
:meth:`OnlineStore.materialize` takes a DataFrame but only calls its methods.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol

from shared.dynamo import LazyClient, dynamodb_errors, string_value
from shared.errors import ConflictError, TransientError
from shared.ml.features import is_missing

if TYPE_CHECKING:  # the view module brings the contract's models and YAML, which serving never needs
    import pandas as pd

    from shared.featurestore.view import FeatureView

ONLINE_TABLE_KEYS: Final = {"partition_key": {"name": "pk", "type": "S"}}
"""The keys of the online table, in the shape of ``infra.spec.Key`` fields: ``pk`` (string) only."""

_INTEGRAL_DECIMAL: Final = re.compile(r"[+-]?\d+\.0*")  # as shared.data.validation reads integral text
BATCH_GET_LIMIT: Final = 100  # BatchGetItem's cap on keys per request
_NS_PER_US: Final = 1000


@dataclass(frozen=True)
class OnlineRow:
    """The latest stored feature row of one entity: values (``None`` when missing) and when they held."""

    values: dict[str, Any]
    event_time: datetime
    sequence: str = ""
    event_time_ns: int = 0


@dataclass(frozen=True)
class MaterializeResult:
    """What a materialisation did: ``entities`` offered (the latest row of each), ``written`` landed,
    ``stale`` skipped because the store already held a newer or the same row for the entity."""

    view: str
    entities: int
    written: int
    stale: int


@dataclass(frozen=True)
class OnlineRecord:
    """One entity's latest row, ready to write."""

    entity: str
    event_time_ns: int
    sequence: str
    values: dict[str, Any]

    @property
    def order(self) -> tuple[int, str]:
        return (self.event_time_ns, self.sequence)


class OnlineStore(Protocol):
    """The latest feature values per (view, entity)."""

    def materialize(self, view: FeatureView, rows: pd.DataFrame) -> MaterializeResult:
        """Write the latest row per entity of ``rows`` (the view's columns, plus ``__sequence__`` if any);
        a stored row that is newer by ``(event_time, sequence)`` is kept."""
        ...

    def get_many(self, view: str, entities: Sequence[str]) -> dict[str, OnlineRow]:
        """The stored row of each entity that has one (absent entities are left out)."""
        ...


# --- what both stores share -------------------------------------------------------------------------------


def online_key(view: str, entity: str) -> str:
    return f"{view}#{entity}"


def entity_key(value: Any) -> str:
    """An entity key as the feature store stores it: text, with integral numbers as ``"12"`` (also from
    ``12.0`` and ``"12.0"``) and booleans as ``"true"``/``"false"``: the rule validation applies to entity
    columns, so a request's ``12`` finds what a file's ``12.0`` stored."""
    if hasattr(value, "item") and not isinstance(value, str):  # a NumPy scalar
        value = value.item()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower()
    if _INTEGRAL_DECIMAL.fullmatch(text):
        return text.split(".", 1)[0]
    return text


def latest_records(view: FeatureView, rows: pd.DataFrame) -> list[OnlineRecord]:
    """The latest row of each entity in ``rows`` by ``(event_time, sequence, position)``."""
    required = [view.entity, view.event_time, *view.features]
    absent = [c for c in required if c not in rows.columns]
    if absent:
        raise ValueError(f"rows for view {view.view!r} lack the columns {absent}")
    if len(rows) == 0:
        return []
    from shared.featurestore.view import SEQUENCE_COLUMN  # noqa: PLC0415  (materialising only)

    order = [view.event_time, SEQUENCE_COLUMN] if SEQUENCE_COLUMN in rows.columns else [view.event_time]
    latest = rows.sort_values(order, kind="stable").drop_duplicates([view.entity], keep="last")
    times = latest[view.event_time]
    times = times.dt.tz_convert("UTC") if times.dt.tz is not None else times.dt.tz_localize("UTC")
    stamps = times.dt.as_unit("ns").astype("int64").tolist()
    sequences = (
        latest[SEQUENCE_COLUMN].astype("str").tolist()
        if SEQUENCE_COLUMN in latest.columns
        else [""] * len(latest)
    )
    columns = {name: latest[name].tolist() for name in view.features}
    return [
        OnlineRecord(
            entity=str(entity),
            event_time_ns=int(stamp),
            sequence=str(sequence),
            values={name: _plain(values[i]) for name, values in columns.items()},
        )
        for i, (entity, stamp, sequence) in enumerate(
            zip(latest[view.entity].tolist(), stamps, sequences, strict=True)
        )
    ]


def fresh(row: OnlineRow | None, now: datetime, ttl: timedelta, features: Iterable[str]) -> dict[str, Any]:
    """The values to serve for ``features``: ``None`` for each one when there is no row or the row is older
    than ``ttl`` at ``now`` (the offline join's rule). A row stamped after ``now`` (a producer's clock
    ahead of ours) is served: the online store keeps only the latest row, so there is nothing older to
    fall back to."""
    names = list(features)
    if row is None or now - row.event_time > ttl:
        return dict.fromkeys(names)
    return {name: row.values.get(name) for name in names}


def _plain(value: Any) -> Any:
    """A JSON-able feature value: ``None`` when missing, ``float`` for numbers, text otherwise."""
    if is_missing(value):
        return None
    if isinstance(value, str):
        return value
    if hasattr(value, "item"):  # a NumPy scalar
        value = value.item()
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    return str(value)


def _row(record: OnlineRecord) -> OnlineRow:
    return OnlineRow(
        values=dict(record.values),
        event_time=_from_ns(record.event_time_ns),
        sequence=record.sequence,
        event_time_ns=record.event_time_ns,
    )


def _from_ns(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // _NS_PER_US)


# --- in memory --------------------------------------------------------------------------------------------


class InMemoryOnlineStore:
    """:class:`OnlineStore` in a dict, for the domain's unit tests; a lock makes each write atomic."""

    def __init__(self) -> None:
        self._rows: dict[str, OnlineRecord] = {}
        self._lock = threading.Lock()

    def materialize(self, view: FeatureView, rows: pd.DataFrame) -> MaterializeResult:
        records = latest_records(view, rows)
        written = sum(self.put(view.view, record) for record in records)
        return MaterializeResult(view.view, len(records), written, len(records) - written)

    def put(self, view: str, record: OnlineRecord) -> bool:
        """Write one record unless the stored one is newer or the same; True if it was written."""
        key = online_key(view, record.entity)
        with self._lock:
            stored = self._rows.get(key)
            if stored is not None and stored.order >= record.order:
                return False
            self._rows[key] = record
            return True

    def get_many(self, view: str, entities: Sequence[str]) -> dict[str, OnlineRow]:
        with self._lock:
            found = {e: self._rows.get(online_key(view, e)) for e in dict.fromkeys(entities)}
        return {e: _row(r) for e, r in found.items() if r is not None}


# --- DynamoDB ---------------------------------------------------------------------------------------------


class _StaleWriteError(Exception):
    """The store holds a newer (or the same) row: the condition of a write failed."""


_NEWER = "attribute_not_exists(pk) OR #t < :t OR (#t = :t AND #s < :s)"
_PROJECTION = "pk, #t, #s, #v"
_NAMES = {"#t": "event_time", "#s": "sequence", "#v": "values"}


def online_table_definition(table_name: str) -> dict[str, Any]:
    """``CreateTable`` arguments for an on-demand table with :data:`ONLINE_TABLE_KEYS` (tests, the bench)."""
    key = ONLINE_TABLE_KEYS["partition_key"]
    return {
        "TableName": table_name,
        "KeySchema": [{"AttributeName": key["name"], "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": key["name"], "AttributeType": key["type"]}],
        "BillingMode": "PAY_PER_REQUEST",
    }


class DynamoOnlineStore:
    """:class:`OnlineStore` on one DynamoDB table (layout in the module docstring).

    ``workers`` conditional writes run at once while materialising (one ``PutItem`` per entity: a
    condition cannot ride in ``BatchWriteItem``). Reads are eventually consistent unless
    ``consistent_reads``."""

    def __init__(
        self,
        table_name: str,
        client: Any = None,
        *,
        workers: int = 16,
        consistent_reads: bool = False,
        max_attempts: int = 8,
    ) -> None:
        self.table_name = table_name
        self.workers = max(1, workers)
        self.consistent_reads = consistent_reads
        self.max_attempts = max(1, max_attempts)
        self._client = LazyClient(client)

    @property
    def client(self) -> Any:
        return self._client.get()

    def materialize(self, view: FeatureView, rows: pd.DataFrame) -> MaterializeResult:
        records = latest_records(view, rows)
        if len(records) <= 1 or self.workers == 1:
            landed = [self.put(view.view, r) for r in records]
        else:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(records))) as pool:
                landed = list(pool.map(lambda r: self.put(view.view, r), records))
        written = sum(landed)
        return MaterializeResult(view.view, len(records), written, len(records) - written)

    def put(self, view: str, record: OnlineRecord) -> bool:
        """One conditional ``PutItem``; False when the stored row is newer or the same."""
        item = {
            "pk": string_value(online_key(view, record.entity)),
            "view": string_value(view),
            "entity": string_value(record.entity),
            "event_time": {"N": str(record.event_time_ns)},
            "sequence": string_value(record.sequence),
            "values": string_value(json.dumps(record.values, allow_nan=False, separators=(",", ":"))),
        }
        try:
            with dynamodb_errors("put_item", _StaleWriteError):
                self.client.put_item(
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression=_NEWER,
                    ExpressionAttributeNames={"#t": "event_time", "#s": "sequence"},
                    ExpressionAttributeValues={":t": item["event_time"], ":s": item["sequence"]},
                )
        except _StaleWriteError:
            return False
        return True

    def get_many(self, view: str, entities: Sequence[str]) -> dict[str, OnlineRow]:
        wanted = list(dict.fromkeys(entities))  # BatchGetItem refuses a key named twice
        found: dict[str, OnlineRow] = {}
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            chunk = wanted[start : start + BATCH_GET_LIMIT]
            for item in self._batch_get([{"pk": string_value(online_key(view, e))} for e in chunk]):
                entity = item["pk"]["S"].split("#", 1)[1]
                found[entity] = _row_of(item)
        return found

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        request: dict[str, Any] = {
            self.table_name: {
                "Keys": keys,
                "ProjectionExpression": _PROJECTION,
                "ExpressionAttributeNames": _NAMES,
                "ConsistentRead": self.consistent_reads,
            }
        }
        items: list[dict[str, Any]] = []
        for attempt in range(self.max_attempts):
            with dynamodb_errors("batch_get_item", ConflictError):
                response = self.client.batch_get_item(RequestItems=request)
            items.extend(response.get("Responses", {}).get(self.table_name, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return items
            # DynamoDB returns keys unprocessed under throttling: back off (full jitter) and ask again.
            time.sleep(random.uniform(0, min(1.0, 0.025 * 2**attempt)))
        left = len(request.get(self.table_name, {}).get("Keys", []))
        raise TransientError(
            f"DynamoDB batch_get_item: {left} key(s) still unprocessed after {self.max_attempts} attempts"
        )


def _row_of(item: Mapping[str, Any]) -> OnlineRow:
    ns = int(item["event_time"]["N"])
    return OnlineRow(
        values=json.loads(item["values"]["S"]),
        event_time=_from_ns(ns),
        sequence=item.get("sequence", {}).get("S", ""),
        event_time_ns=ns,
    )
