"""The monitor's memory, in the metadata store: where each model's reading stopped, when the monitor last
asked for a retraining, and a record of every monitor run.

Two kinds of item, in the metadata table beside the store's own (:mod:`shared.metadata`)::

    pk               sk                         holds
    MONITOR#<model>  STATE                      MonitorState: capture and label cursors, the last retraining
                                                asked for; lease_owner / lease_until while a run works
    MONITOR#<model>  RUN#<time>#<monitor id>    MonitorRecord: one run's window, figures, decision (held back
                                                included), report, feedback dataset and the run it asked for

A monitor run holds its model's lease from :meth:`MonitorLog.acquire` to :meth:`MonitorLog.commit` (or
:meth:`MonitorLog.release` when it fails): two runs for one model — the schedule and a person — never read
the same window twice nor both ask for a retraining. A crashed run's lease expires after its ``ttl`` (the
monitor function's timeout). The commit writes the record and the new state in one transaction, on the
condition that the run still holds the lease.

:class:`DynamoMonitorLog` is the adapter; :class:`InMemoryMonitorLog` the fake for the domain's tests.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from shared.dynamo import LazyClient, dynamodb_errors, string_value
from shared.errors import ConflictError
from shared.metadata import UtcDatetime
from shared.monitoring.window import ObjectCursor

Action = Literal["none", "retrain", "held_back", "insufficient_data"]


class MonitorState(BaseModel):
    """What the next run of a model's monitor starts from."""

    model_config = ConfigDict(frozen=True)

    captures: ObjectCursor = Field(default_factory=ObjectCursor)
    labels: ObjectCursor = Field(default_factory=ObjectCursor)
    last_triggered_at: UtcDatetime | None = None
    last_triggered_run: str | None = None
    last_monitor_id: str | None = None


class MonitorRecord(BaseModel):
    """One monitor run of one model, as ``flywheel report`` lists it."""

    model_config = ConfigDict(frozen=True)

    monitor_id: str
    model: str
    version: int
    requested_by: str
    started_at: UtcDatetime
    ended_at: UtcDatetime
    window_start: UtcDatetime
    window_end: UtcDatetime
    rows: int
    labelled_rows: int
    captures_read: int = 0
    label_sets: list[str] = Field(default_factory=list)
    metric: str
    live_metric: float | None = None
    holdout_metric: float | None = None
    drift_share: float | None = None
    drifted_features: list[str] = Field(default_factory=list)
    action: Action
    reason: Literal["drift", "degradation"] | None = None
    reasons: list[str] = Field(default_factory=list)
    report_uri: str
    html_uri: str
    feedback_dataset: str | None = None
    feedback_rows: int = 0
    run_id: str | None = None  # the run the monitor asked for (retrain), or would have (held back)
    run_started: bool = False
    run_duplicate: bool = False
    notes: list[str] = Field(default_factory=list)


class MonitorLog(Protocol):
    def acquire(self, model: str, owner: str, now: datetime, ttl: timedelta) -> MonitorState:
        """Take the model's lease and return its state; :class:`ConflictError` while another run holds it."""
        ...

    def commit(self, model: str, owner: str, state: MonitorState, record: MonitorRecord) -> None:
        """Record the run and its new state, and give the lease back (:class:`ConflictError` if lost)."""
        ...

    def release(self, model: str, owner: str) -> None:
        """Give the lease back without changing the state (a failed run)."""
        ...

    def state(self, model: str) -> MonitorState: ...

    def history(self, model: str, limit: int = 50) -> list[MonitorRecord]:
        """The model's monitor runs, newest first."""
        ...


def _stamp(at: datetime) -> str:
    # Fixed width, so that string order is time order.
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _busy(model: str, owner: str | None, until: str | None) -> ConflictError:
    return ConflictError(
        f"a monitor run for {model!r} is in progress ({owner or 'unknown'}, lease until {until or '?'}); "
        "try again when it has finished"
    )


class InMemoryMonitorLog:
    """The monitor log in a dict, for the domain's tests; the same lease rules as DynamoDB's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, MonitorState] = {}
        self._leases: dict[str, tuple[str, datetime]] = {}
        self._records: dict[str, list[MonitorRecord]] = {}

    def acquire(self, model: str, owner: str, now: datetime, ttl: timedelta) -> MonitorState:
        with self._lock:
            held = self._leases.get(model)
            if held is not None and held[1] >= now:
                raise _busy(model, held[0], _stamp(held[1]))
            self._leases[model] = (owner, now + ttl)
            return self._states.get(model, MonitorState())

    def commit(self, model: str, owner: str, state: MonitorState, record: MonitorRecord) -> None:
        with self._lock:
            held = self._leases.get(model)
            if held is None or held[0] != owner:
                raise ConflictError(f"monitor run {owner} lost the lease of {model!r} before committing")
            self._states[model] = MonitorState.model_validate_json(state.model_dump_json())
            self._records.setdefault(model, []).append(
                MonitorRecord.model_validate_json(record.model_dump_json())
            )
            del self._leases[model]

    def release(self, model: str, owner: str) -> None:
        with self._lock:
            held = self._leases.get(model)
            if held is not None and held[0] == owner:
                del self._leases[model]

    def state(self, model: str) -> MonitorState:
        with self._lock:
            return self._states.get(model, MonitorState())

    def history(self, model: str, limit: int = 50) -> list[MonitorRecord]:
        with self._lock:
            records = list(self._records.get(model, []))
        records.sort(key=lambda r: (r.started_at, r.monitor_id), reverse=True)
        return records[:limit]


class _LostLeaseError(Exception):
    """A conditional write on the state item failed: another run holds (or took) the lease."""


class DynamoMonitorLog:
    """:class:`MonitorLog` on the metadata table (layout in the module docstring)."""

    def __init__(self, table_name: str, *, client: Any = None) -> None:
        self.table_name = table_name
        self._client = LazyClient(client)

    @property
    def client(self) -> Any:
        return self._client.get()

    @staticmethod
    def _key(model: str, sk: str) -> dict[str, Any]:
        return {"pk": string_value(f"MONITOR#{model}"), "sk": string_value(sk)}

    def acquire(self, model: str, owner: str, now: datetime, ttl: timedelta) -> MonitorState:
        try:
            with dynamodb_errors("update_item", _LostLeaseError):
                response = self.client.update_item(
                    TableName=self.table_name,
                    Key=self._key(model, "STATE"),
                    UpdateExpression="SET lease_owner = :o, lease_until = :u",
                    ConditionExpression="attribute_not_exists(lease_until) OR lease_until < :now",
                    ExpressionAttributeValues={
                        ":o": string_value(owner),
                        ":u": string_value(_stamp(now + ttl)),
                        ":now": string_value(_stamp(now)),
                    },
                    ReturnValues="ALL_NEW",
                )
        except _LostLeaseError:
            item = self._get(model, "STATE") or {}
            raise _busy(
                model, item.get("lease_owner", {}).get("S"), item.get("lease_until", {}).get("S")
            ) from None
        return _state(response.get("Attributes") or {})

    def commit(self, model: str, owner: str, state: MonitorState, record: MonitorRecord) -> None:
        record_key = self._key(model, f"RUN#{_stamp(record.started_at)}#{record.monitor_id}")
        try:
            with dynamodb_errors("transact_write_items", _LostLeaseError):
                self.client.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": self.table_name,
                                "Item": {**record_key, "doc": string_value(record.model_dump_json())},
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                        {
                            "Update": {
                                "TableName": self.table_name,
                                "Key": self._key(model, "STATE"),
                                "UpdateExpression": "SET doc = :doc REMOVE lease_owner, lease_until",
                                "ConditionExpression": "lease_owner = :o",
                                "ExpressionAttributeValues": {
                                    ":doc": string_value(state.model_dump_json()),
                                    ":o": string_value(owner),
                                },
                            }
                        },
                    ]
                )
        except _LostLeaseError:
            raise ConflictError(
                f"monitor run {owner} lost the lease of {model!r} before committing"
            ) from None

    def release(self, model: str, owner: str) -> None:
        try:
            with dynamodb_errors("update_item", _LostLeaseError):
                self.client.update_item(
                    TableName=self.table_name,
                    Key=self._key(model, "STATE"),
                    UpdateExpression="REMOVE lease_owner, lease_until",
                    ConditionExpression="lease_owner = :o",
                    ExpressionAttributeValues={":o": string_value(owner)},
                )
        except _LostLeaseError:
            pass  # not ours any more: nothing to give back

    def state(self, model: str) -> MonitorState:
        return _state(self._get(model, "STATE") or {})

    def history(self, model: str, limit: int = 50) -> list[MonitorRecord]:
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
            "ExpressionAttributeValues": {":p": string_value(f"MONITOR#{model}"), ":s": string_value("RUN#")},
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        records: list[MonitorRecord] = []
        while len(records) < limit:
            with dynamodb_errors("query", _LostLeaseError):
                response = self.client.query(**request, Limit=limit - len(records))
            records += [MonitorRecord.model_validate_json(i["doc"]["S"]) for i in response.get("Items", [])]
            start = response.get("LastEvaluatedKey")
            if not start:
                break
            request["ExclusiveStartKey"] = start
        return records[:limit]

    def _get(self, model: str, sk: str) -> dict[str, Any] | None:
        with dynamodb_errors("get_item", _LostLeaseError):
            response = self.client.get_item(
                TableName=self.table_name, Key=self._key(model, sk), ConsistentRead=True
            )
        item: dict[str, Any] | None = response.get("Item")
        return item


def _state(item: dict[str, Any]) -> MonitorState:
    doc = item.get("doc", {}).get("S")
    return MonitorState.model_validate_json(doc) if doc else MonitorState()
