"""Prediction captures: what the serving path was asked and answered, sent to the capture stream.

A :class:`CaptureRecord` is one answered row. Its JSON line is what lands under
``captures/<model>/<yyyy>/<MM>/<dd>/`` for the monitor to read and for labels to join on ``request_id``.
The domain sends records through the :class:`CaptureSink` port; :class:`FirehoseCaptureSink` is its
Firehose adapter, :class:`BackgroundCaptureSink` the one the predict function uses (it queues records
and delivers them through the Firehose adapter from a thread, off the request path) and
:class:`InMemoryCaptureSink` the fake for unit tests.

A capture is evidence for monitoring, never a reason to fail a prediction: ``send`` does not raise when
delivery fails, it returns how many records were accepted and the caller counts the rest
(``CaptureFailed``). A record that cannot be serialised is a bug in the caller and does raise (in the
background sink, its thread logs it and counts the batch as lost).
"""

from __future__ import annotations

import threading
import time as clock
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.aws import AwsClients
from shared.observability import logger

# PutRecordBatch's limits: records per call, bytes per call, bytes per record (before base64).
MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_RECORD_BYTES = 1000 * 1024
TRANSIENT_CODES = frozenset(
    {
        "ServiceUnavailableException",
        "ThrottlingException",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "RequestTimeout",
    }
)


# Who sent an answered request: "api" for every client. Flywheel's own requests (Verify, PostDeployCheck)
# invoke the predict function directly with INTERNAL_SOURCE_FIELD at the top of the event, a field API
# Gateway and function URLs never pass through: no client can have its traffic taken for Flywheel's and
# hidden from the monitor, whatever it sends.
CLIENT_SOURCE = "api"
INTERNAL_SOURCE_FIELD = "flywheelSource"
INTERNAL_SOURCES = frozenset({"verify", "post-deploy-check"})
# Rows a batch scoring job scored (shared.scoring): captured like any answer, under their own source, so
# the monitor can tell a job's files from client traffic.
BATCH_SOURCE = "batch"


class CaptureRecord(BaseModel):
    """One answered row: the request it came in, the version that answered, the inputs and outputs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str = Field(min_length=1)
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    model: str = Field(min_length=1)
    version: int
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    source: str = CLIENT_SOURCE

    @field_validator("time")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        # A naive time is taken to be UTC already; an aware one is converted.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @classmethod
    def of_prediction(
        cls,
        *,
        request_id: str,
        model: str,
        version: int,
        inputs: Mapping[str, Any],
        prediction: Any,
        probabilities: Mapping[str, float] | None = None,
        time: datetime | None = None,
        source: str = CLIENT_SOURCE,
    ) -> CaptureRecord:
        """One prediction's record: ``outputs`` holds ``prediction`` and, if given, ``probabilities``."""
        outputs: dict[str, Any] = {"prediction": prediction}
        if probabilities is not None:
            outputs["probabilities"] = dict(probabilities)
        return cls(
            request_id=request_id,
            time=time or datetime.now(UTC),
            model=model,
            version=version,
            inputs=dict(inputs),
            outputs=outputs,
            source=source,
        )

    def to_line(self) -> bytes:
        """The record as one JSON line ending in a newline (Firehose concatenates records as sent)."""
        return self.model_dump_json().encode() + b"\n"


class CaptureSink(Protocol):
    def send(self, records: Sequence[CaptureRecord]) -> int:
        """Send ``records``; return how many were accepted. Never raises for a delivery failure."""
        ...

    def send_lines(self, lines: Sequence[bytes]) -> int:
        """Send records already written as their :meth:`CaptureRecord.to_line` (batch scoring writes a
        file's lines a column at a time); return how many were accepted."""
        ...


class FirehoseCaptureSink:
    """:class:`CaptureSink` on an Amazon Data Firehose delivery stream (or moto's).

    Records go out in ``PutRecordBatch`` calls of at most 500 records and 4 MiB. Records Firehose reports
    as failed, and calls that fail transiently (throttling, an outage, a dropped connection), are retried
    up to ``max_attempts`` in all with exponential backoff; whatever is still not accepted is logged and
    left out of the count. A record over Firehose's 1000 KiB limit is never sent.
    """

    def __init__(
        self,
        stream_name: str,
        client: Any = None,
        *,
        max_attempts: int = 3,
        backoff_s: float = 0.05,
        sleep: Callable[[float], None] = clock.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.stream_name = stream_name
        self._client = client
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._sleep = sleep

    @property
    def client(self) -> Any:
        if self._client is None:
            # Short timeouts and few SDK retries: this runs beside a prediction, and send() retries itself.
            self._client = AwsClients().client(
                "firehose",
                connect_timeout=2,
                read_timeout=5,
                retries={"mode": "standard", "max_attempts": 2},
            )
        return self._client

    def send(self, records: Sequence[CaptureRecord]) -> int:
        # A record that cannot be serialised raises here.
        return self.send_lines([record.to_line() for record in records])

    def send_lines(self, lines: Sequence[bytes]) -> int:
        sendable = [line for line in lines if len(line) <= MAX_RECORD_BYTES]
        if len(sendable) < len(lines):
            logger.warning(
                "captures over the record size limit dropped",
                extra={
                    "stream": self.stream_name,
                    "dropped": len(lines) - len(sendable),
                    "limit_bytes": MAX_RECORD_BYTES,
                },
            )
        return sum(self._put(batch) for batch in _batches(sendable))

    def _put(self, batch: list[bytes]) -> int:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        pending, accepted = batch, 0
        errors: set[str] = set()
        for attempt in range(self._max_attempts):
            if attempt:
                self._sleep(self._backoff_s * 2 ** (attempt - 1))
            try:
                response = self.client.put_record_batch(
                    DeliveryStreamName=self.stream_name, Records=[{"Data": data} for data in pending]
                )
            except (BotoCoreError, ClientError) as exc:
                errors.add(_error_code(exc))
                if not _transient(exc):
                    break
                continue
            results = response.get("RequestResponses") or []
            if response.get("FailedPutCount", 0) == 0 and len(results) == len(pending):
                return accepted + len(pending)
            failed = [data for data, result in zip(pending, results, strict=False) if result.get("ErrorCode")]
            failed += pending[len(results) :]  # records the answer does not mention were not accepted
            errors.update(str(r["ErrorCode"]) for r in results if r.get("ErrorCode"))
            accepted += len(pending) - len(failed)
            pending = failed
            if not pending:
                break
        if pending:
            logger.warning(
                "captures not delivered",
                extra={
                    "stream": self.stream_name,
                    "failed": len(pending),
                    "accepted": accepted,
                    "errors": sorted(errors),
                },
            )
        return accepted


def _batches(lines: Sequence[bytes]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    size = 0
    for line in lines:
        if batch and (len(batch) == MAX_BATCH_RECORDS or size + len(line) > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(line)
        size += len(line)
    if batch:
        yield batch


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


def _transient(exc: Exception) -> bool:
    from botocore.exceptions import ConnectionError as NetworkError  # noqa: PLC0415
    from botocore.exceptions import HTTPClientError  # noqa: PLC0415

    if isinstance(exc, NetworkError | HTTPClientError):
        return True
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return _error_code(exc) in TRANSIENT_CODES or status >= 500


class InMemoryCaptureSink:
    """A capture stream in a list, for the domain's unit tests; ``accepting=False`` loses everything."""

    def __init__(self, *, accepting: bool = True) -> None:
        self.records: list[CaptureRecord] = []
        self.lines: list[bytes] = []  # what send_lines was given, as the stream would hold it
        self.accepting = accepting
        self._lock = threading.Lock()

    def send_lines(self, lines: Sequence[bytes]) -> int:
        if not self.accepting:
            return 0
        with self._lock:
            self.lines.extend(lines)
        return len(lines)

    def send(self, records: Sequence[CaptureRecord]) -> int:
        for record in records:
            record.to_line()  # serialise as the real sink does, so an unserialisable record fails here too
        if not self.accepting:
            return 0
        with self._lock:
            self.records.extend(records)
        return len(records)


class BackgroundCaptureSink:
    """:class:`CaptureSink` that keeps delivery off the request path: ``send`` only queues the records,
    and a daemon thread hands them to ``delivery`` (a :class:`FirehoseCaptureSink`) in batches.

    Lambda freezes an environment once it has answered, thread and all, so three things deliver:

    - the thread, while the environment is thawed (during a request and the moments after it);
    - :meth:`flush_if_due`, which the next request calls first: records the thread has not delivered by
      the time ``max_pending`` are queued or the oldest is ``max_age_s`` old are delivered there;
    - :meth:`close`, a shutdown hook (:mod:`shared.lifecycle`), which delivers what is left before the
      environment ends.

    A record delivery loses, or one the queue had no room for (over ``max_queued``), is counted;
    :meth:`take_failed` hands the count to the next request, which reports it as ``CaptureFailed``
    (Powertools' metrics belong to an invocation, so a thread never adds one itself). Records are
    serialised by the thread: the request pays for a ``deque.extend`` and a wake-up. ``background=False``
    starts no thread: delivery happens only in the three calls above, as in an environment frozen the
    moment it answers. Woken, the thread waits ``linger_s`` before delivering, to batch the next requests'
    captures with the first's.
    """

    def __init__(
        self,
        delivery: CaptureSink,
        *,
        max_pending: int = MAX_BATCH_RECORDS,
        max_age_s: float = 1.0,
        max_queued: int = 20 * MAX_BATCH_RECORDS,
        background: bool = True,
        linger_s: float = 0.005,
        monotonic: Callable[[], float] = clock.monotonic,
    ) -> None:
        self.delivery = delivery
        self._max_pending = max_pending
        self._max_age_s = max_age_s
        self._max_queued = max_queued
        self._clock = monotonic
        self._queue: deque[tuple[float, CaptureRecord]] = deque()
        self._wake = threading.Condition(threading.Lock())
        self._delivering = threading.Lock()  # one delivery at a time: the thread's or a flush's
        self._failed = 0
        self._background = background
        self._linger_s = linger_s
        self._closed = False
        self._thread: threading.Thread | None = None

    def send(self, records: Sequence[CaptureRecord]) -> int:
        now = self._clock()
        with self._wake:
            idle = not self._queue  # the thread waits only on an empty queue: else it is busy already
            room = max(0, self._max_queued - len(self._queue))
            taken = records if len(records) <= room else records[:room]
            self._queue.extend((now, record) for record in taken)
            if self._background and self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="capture-delivery", daemon=True)
                self._thread.start()
            elif idle:
                # Waking the thread costs the request a thread switch: only when it is waiting.
                self._wake.notify()
        return len(taken)

    @property
    def pending(self) -> int:
        """Records queued and not yet handed to delivery."""
        return len(self._queue)

    def flush_if_due(self) -> None:
        """Deliver now, in the caller's thread, if the thread has left too many records or too old ones."""
        if not self._queue:  # the common case, read without the lock
            return
        with self._wake:
            due = bool(self._queue) and (
                len(self._queue) >= self._max_pending or self._clock() - self._queue[0][0] >= self._max_age_s
            )
        if due:
            self.flush()

    def flush(self) -> None:
        """Deliver everything queued now, in the caller's thread."""
        while self._deliver_batch():
            pass

    def take_failed(self) -> int:
        """Records lost since the last call (refused by delivery, or with no room in the queue)."""
        with self._wake:
            failed, self._failed = self._failed, 0
        return failed

    def close(self) -> None:
        """Deliver what is queued and stop the thread: the environment is ending."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self.flush()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed and not self._queue:
                    return
            if not self._closed:
                # Woken by one request's captures: wait for the next few requests' too, so a busy stream
                # costs one wake-up and one PutRecordBatch per linger, not per request.
                clock.sleep(self._linger_s)
            while self._deliver_batch():
                pass

    def _deliver_batch(self) -> bool:
        """Hand up to one batch of queued records to delivery; False when nothing was queued."""
        with self._delivering:
            with self._wake:
                count = min(len(self._queue), MAX_BATCH_RECORDS)
                batch = [self._queue.popleft()[1] for _ in range(count)]
            if not batch:
                return False
            try:
                accepted = self.delivery.send(batch)
            except Exception:  # a record that cannot be serialised: a bug, logged, never a request's failure
                logger.exception("captures could not be delivered", extra={"records": len(batch)})
                accepted = 0
            if accepted < len(batch):
                with self._wake:
                    self._failed += len(batch) - accepted
            return True
