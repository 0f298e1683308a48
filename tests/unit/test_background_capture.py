"""The background capture sink: a request only queues its captures; a thread, the next request or the
environment's shutdown delivers them, and whatever delivery loses is counted for a later request."""

from __future__ import annotations

import threading
import time

import pytest

from shared.serving.capture import BackgroundCaptureSink, CaptureRecord, InMemoryCaptureSink

pytestmark = pytest.mark.unit


def record(index: int) -> CaptureRecord:
    return CaptureRecord.of_prediction(
        request_id=f"req-{index}", model="churn", version=1, inputs={"plan": "pro"}, prediction="true"
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def wait_until(condition: object, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.005)
    return False


def test_send_only_queues_and_the_thread_delivers() -> None:
    """Given a background sink, when records are sent, then send answers at once that it took them all,
    and its thread delivers them, in order."""
    delivered = InMemoryCaptureSink()
    sink = BackgroundCaptureSink(delivered)

    assert sink.send([record(1), record(2)]) == 2

    assert wait_until(lambda: len(delivered.records) == 2)
    assert [r.request_id for r in delivered.records] == ["req-1", "req-2"]
    assert sink.pending == 0
    sink.close()


def test_a_frozen_environment_delivers_on_the_next_request_only_once_the_captures_are_due() -> None:
    """Given a sink whose thread never runs (an environment frozen as it answered), then the next
    request's flush_if_due leaves young captures queued and delivers them once the oldest is max_age_s
    old, or as soon as max_pending are queued."""
    clock = Clock()
    delivered = InMemoryCaptureSink()
    sink = BackgroundCaptureSink(delivered, background=False, max_age_s=1.0, max_pending=3, monotonic=clock)
    sink.send([record(1)])

    sink.flush_if_due()
    assert delivered.records == []

    clock.now += 1.0
    sink.flush_if_due()
    assert [r.request_id for r in delivered.records] == ["req-1"]

    sink.send([record(i) for i in range(2, 5)])
    sink.flush_if_due()
    assert len(delivered.records) == 4


def test_close_delivers_what_is_queued() -> None:
    """Given captures left queued by a frozen environment, when it shuts down, then close delivers them."""
    delivered = InMemoryCaptureSink()
    sink = BackgroundCaptureSink(delivered, background=False)
    sink.send([record(i) for i in range(1201)])

    sink.close()

    assert len(delivered.records) == 1201
    assert sink.pending == 0


def test_what_delivery_loses_is_counted_once_for_a_later_request() -> None:
    """Given a stream that refuses everything, then send still takes the records, and take_failed hands
    the loss over once delivered, then zero."""
    sink = BackgroundCaptureSink(InMemoryCaptureSink(accepting=False), background=False)
    assert sink.send([record(1), record(2)]) == 2

    sink.flush()

    assert sink.take_failed() == 2
    assert sink.take_failed() == 0


def test_a_full_queue_refuses_what_it_has_no_room_for() -> None:
    """Given a queue bounded at three records, when five are sent, then three are taken and the caller
    counts the other two."""
    sink = BackgroundCaptureSink(InMemoryCaptureSink(), background=False, max_queued=3)

    assert sink.send([record(i) for i in range(5)]) == 3


def test_a_record_that_cannot_be_serialised_is_logged_and_counted_never_raised() -> None:
    """Given a record holding a value JSON cannot hold, when the thread delivers it, then it is counted as
    lost and the sink goes on delivering the next ones."""
    delivered = InMemoryCaptureSink()
    sink = BackgroundCaptureSink(delivered, background=False)
    broken = CaptureRecord.of_prediction(
        request_id="broken", model="churn", version=1, inputs={"x": object()}, prediction="true"
    )
    sink.send([broken])
    sink.flush()
    sink.send([record(1)])
    sink.flush()

    assert sink.take_failed() == 1
    assert [r.request_id for r in delivered.records] == ["req-1"]


def test_a_flush_and_the_thread_never_deliver_a_record_twice() -> None:
    """Given the thread and requests' flushes delivering at once, then every record is delivered once."""
    delivered = InMemoryCaptureSink()
    sink = BackgroundCaptureSink(delivered)

    def requests(start: int) -> None:
        for i in range(start, start + 200):
            sink.send([record(i)])
            sink.flush()

    workers = [threading.Thread(target=requests, args=(n * 1000,)) for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    sink.close()

    ids = [r.request_id for r in delivered.records]
    assert len(ids) == len(set(ids)) == 600
