"""Capture records and the capture sink: JSON lines, batching within Firehose's limits, bounded retries of
what Firehose reports failed, and never an exception for a delivery failure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from shared.serving.capture import (
    MAX_BATCH_RECORDS,
    MAX_RECORD_BYTES,
    CaptureRecord,
    FirehoseCaptureSink,
    InMemoryCaptureSink,
)

pytestmark = pytest.mark.unit
STREAM = "flywheel-test-captures"
WHEN = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def record(index: int, **overrides: Any) -> CaptureRecord:
    fields: dict[str, Any] = {
        "request_id": f"req-{index}",
        "time": WHEN,
        "model": "churn",
        "version": 3,
        "inputs": {"tenure_months": index, "plan": "pro"},
        "outputs": {"prediction": "true"},
    }
    return CaptureRecord(**(fields | overrides))


def ok(count: int) -> dict[str, Any]:
    return {
        "FailedPutCount": 0,
        "Encrypted": True,
        "RequestResponses": [{"RecordId": f"r{i}"} for i in range(count)],
    }


def put(records: list[CaptureRecord]) -> dict[str, Any]:
    return {"DeliveryStreamName": STREAM, "Records": [{"Data": r.to_line()} for r in records]}


@pytest.fixture
def firehose() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("firehose", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# --- the record ---------------------------------------------------------------------------------------------


def test_a_record_is_one_json_line_in_utc() -> None:
    line = record(1, time=datetime(2026, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))).to_line()

    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert json.loads(line) == {
        "request_id": "req-1",
        "time": "2026-03-01T12:30:00Z",
        "model": "churn",
        "version": 3,
        "inputs": {"tenure_months": 1, "plan": "pro"},
        "outputs": {"prediction": "true"},
        "source": "api",
    }


def test_a_naive_time_is_taken_as_utc_and_the_default_is_now() -> None:
    assert record(1, time=datetime(2026, 3, 1, 12, 30)).time == WHEN
    fields = record(1).model_dump(exclude={"time"})
    assert CaptureRecord(**fields).time.tzinfo is UTC


def test_a_prediction_record_has_probabilities_only_when_there_are_some() -> None:
    common: dict[str, Any] = {"request_id": "r", "model": "churn", "version": 2, "inputs": {"plan": "pro"}}

    classified = CaptureRecord.of_prediction(
        **common, prediction="true", probabilities={"false": 0.2, "true": 0.8}, source="shadow"
    )
    regressed = CaptureRecord.of_prediction(**common, prediction=41.5)

    assert classified.outputs == {"prediction": "true", "probabilities": {"false": 0.2, "true": 0.8}}
    assert classified.source == "shadow"
    assert regressed.outputs == {"prediction": 41.5}
    assert regressed.source == "api"


def test_a_record_without_a_request_id_or_model_is_refused() -> None:
    with pytest.raises(ValidationError, match="request_id"):
        record(1, request_id="")
    with pytest.raises(ValidationError, match="model"):
        record(1, model="")


# --- the Firehose adapter -----------------------------------------------------------------------------------


def test_the_client_is_made_on_first_use_not_at_construction() -> None:
    assert FirehoseCaptureSink(STREAM)._client is None


def test_records_go_out_in_batches_of_at_most_500(firehose: tuple[Any, Stubber]) -> None:
    """Given 1201 records, when they are sent, then three PutRecordBatch calls carry 500, 500 and 201 of
    them, in order, and all 1201 are accepted."""
    client, stubber = firehose
    records = [record(i) for i in range(1201)]
    for start in range(0, 1201, MAX_BATCH_RECORDS):
        chunk = records[start : start + MAX_BATCH_RECORDS]
        stubber.add_response("put_record_batch", ok(len(chunk)), put(chunk))

    assert FirehoseCaptureSink(STREAM, client).send(records) == 1201


def test_batches_stay_within_4_mib(firehose: tuple[Any, Stubber]) -> None:
    client, stubber = firehose
    big = [record(i, inputs={"blob": "x" * 900 * 1024}) for i in range(5)]  # ~900 KiB each
    stubber.add_response("put_record_batch", ok(4), put(big[:4]))
    stubber.add_response("put_record_batch", ok(1), put(big[4:]))

    assert FirehoseCaptureSink(STREAM, client).send(big) == 5


def test_only_the_records_firehose_reports_failed_are_retried(firehose: tuple[Any, Stubber]) -> None:
    """Given Firehose fails records 1 and 3 of four, when they are sent, then only those two are sent again,
    after a backoff, and all four count as accepted."""
    client, stubber = firehose
    records = [record(i) for i in range(4)]
    failure = {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"}
    stubber.add_response(
        "put_record_batch",
        {
            "FailedPutCount": 2,
            "RequestResponses": [{"RecordId": "a"}, failure, {"RecordId": "c"}, failure],
        },
        put(records),
    )
    stubber.add_response("put_record_batch", ok(2), put([records[1], records[3]]))
    sleeps = Sleeps()

    accepted = FirehoseCaptureSink(STREAM, client, backoff_s=0.01, sleep=sleeps).send(records)

    assert accepted == 4
    assert sleeps == [0.01]


def test_retries_are_bounded_and_count_what_was_accepted(firehose: tuple[Any, Stubber]) -> None:
    client, stubber = firehose
    records = [record(i) for i in range(3)]
    failure = {"ErrorCode": "InternalFailure", "ErrorMessage": "x"}
    stubber.add_response(
        "put_record_batch",
        {"FailedPutCount": 1, "RequestResponses": [{"RecordId": "a"}, {"RecordId": "b"}, failure]},
        put(records),
    )
    for _ in range(2):
        stubber.add_response(
            "put_record_batch", {"FailedPutCount": 1, "RequestResponses": [failure]}, put(records[2:])
        )
    sleeps = Sleeps()

    accepted = FirehoseCaptureSink(STREAM, client, max_attempts=3, backoff_s=0.01, sleep=sleeps).send(records)

    assert accepted == 2
    assert sleeps == [0.01, 0.02]


def test_a_total_failure_returns_zero_without_raising(firehose: tuple[Any, Stubber]) -> None:
    client, stubber = firehose
    records = [record(i) for i in range(2)]
    for _ in range(3):
        stubber.add_client_error(
            "put_record_batch", service_error_code="ServiceUnavailableException", http_status_code=503
        )

    assert FirehoseCaptureSink(STREAM, client, sleep=Sleeps()).send(records) == 0


def test_an_error_that_cannot_pass_is_not_retried(firehose: tuple[Any, Stubber]) -> None:
    client, stubber = firehose
    stubber.add_client_error(
        "put_record_batch", service_error_code="ResourceNotFoundException", http_status_code=400
    )
    sleeps = Sleeps()

    assert FirehoseCaptureSink(STREAM, client, sleep=sleeps).send([record(1)]) == 0
    assert sleeps == []


def test_a_dropped_connection_is_retried() -> None:
    class FlakyClient:
        calls = 0

        def put_record_batch(self, **request: Any) -> dict[str, Any]:
            self.calls += 1
            if self.calls == 1:
                raise EndpointConnectionError(endpoint_url="https://firehose.us-east-1.amazonaws.com")
            return ok(len(request["Records"]))

    client = FlakyClient()

    assert FirehoseCaptureSink(STREAM, client, sleep=Sleeps()).send([record(1), record(2)]) == 2
    assert client.calls == 2


def test_a_record_over_firehoses_limit_is_not_sent(firehose: tuple[Any, Stubber]) -> None:
    client, stubber = firehose
    huge = record(0, inputs={"blob": "x" * MAX_RECORD_BYTES})
    stubber.add_response("put_record_batch", ok(1), put([record(1)]))

    assert FirehoseCaptureSink(STREAM, client).send([huge, record(1)]) == 1


def test_nothing_to_send_makes_no_call(firehose: tuple[Any, Stubber]) -> None:
    client, _ = firehose
    assert FirehoseCaptureSink(STREAM, client).send([]) == 0


def test_a_record_that_cannot_be_serialised_is_a_bug_and_raises(firehose: tuple[Any, Stubber]) -> None:
    client, _ = firehose
    broken = record(1, inputs={"plan": object()})

    with pytest.raises(PydanticSerializationError):
        FirehoseCaptureSink(STREAM, client).send([broken])
    with pytest.raises(PydanticSerializationError):
        InMemoryCaptureSink().send([broken])


# --- the fake -----------------------------------------------------------------------------------------------


def test_the_in_memory_sink_keeps_what_it_accepts() -> None:
    sink = InMemoryCaptureSink()
    assert sink.send([record(1), record(2)]) == 2
    assert [r.request_id for r in sink.records] == ["req-1", "req-2"]

    lost = InMemoryCaptureSink(accepting=False)
    assert lost.send([record(1)]) == 0
    assert lost.records == []
