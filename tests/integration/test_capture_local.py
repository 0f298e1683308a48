"""Captures on the local cloud land where they land in AWS: ``captures/<model>/<yyyy>/<MM>/<dd>/`` in the data
bucket, one JSON line per record, and a record Firehose cannot partition under the error prefix."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from infra.capture_config import capture_destination
from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.local import LocalCloud
from infra.local.cloud import ACCOUNT
from shared.serving.capture import CaptureRecord, FirehoseCaptureSink
from shared.settings import get_settings
from tests.conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["in-process", "server"])
def cloud(request: pytest.FixtureRequest) -> Iterator[LocalCloud]:
    config = StackConfig.from_stack_file("dev")
    local = LocalCloud(flywheel_stack(config), config)
    if request.param == "in-process":
        with local.in_process():
            yield local
    else:
        with local.serving(port=free_port(), run_scheduler=False):
            yield local


def objects(cloud: LocalCloud, prefix: str) -> dict[str, bytes]:
    s3 = cloud.client("s3")
    bucket = get_settings().data_bucket
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def captured(model: str, index: int) -> CaptureRecord:
    return CaptureRecord.of_prediction(
        request_id=f"{model}-{index}",
        model=model,
        version=1,
        inputs={"tenure_months": index, "plan": "pro"},
        prediction="true",
        probabilities={"false": 0.3, "true": 0.7},
    )


def test_the_stream_is_declared_as_the_pulumi_program_declares_it(cloud: LocalCloud) -> None:
    assert cloud.spec.capture is not None
    expected = capture_destination(cloud.spec.capture).to_api(
        cloud.names.bucket_arn("data"), f"arn:aws:iam::{ACCOUNT}:role/{get_settings().capture_stream}-role"
    )

    described = cloud.client("firehose").describe_delivery_stream(
        DeliveryStreamName=get_settings().capture_stream
    )["DeliveryStreamDescription"]

    [destination] = described["Destinations"]
    assert destination["ExtendedS3DestinationDescription"] == expected


def test_captures_land_under_their_model_and_day_as_json_lines(cloud: LocalCloud) -> None:
    """Given Flywheel's stack on the local cloud, when the sink sends captures of two models in one batch,
    then each model's records land in one object under captures/<model>/<yyyy>/<MM>/<dd>/, as JSON lines
    that read back to the records sent."""
    sent = [captured("churn", i) for i in range(3)] + [captured("fraud", i) for i in range(2)]
    day = datetime.now(UTC).strftime("%Y/%m/%d")

    accepted = FirehoseCaptureSink(get_settings().capture_stream).send(sent)

    assert accepted == 5
    for model, count in (("churn", 3), ("fraud", 2)):
        [(key, body)] = objects(cloud, f"captures/{model}/").items()
        assert key.startswith(f"captures/{model}/{day}/{get_settings().capture_stream}-1-")
        lines = body.decode().splitlines(keepends=True)
        assert all(line.endswith("\n") for line in lines)
        read = [CaptureRecord.model_validate_json(line) for line in lines]
        assert [r.request_id for r in read] == [f"{model}-{i}" for i in range(count)]
        assert read == [r for r in sent if r.model == model]


def test_a_record_without_a_model_lands_under_the_error_prefix(cloud: LocalCloud) -> None:
    """Given a record with no 'model' field, when it is sent, then Firehose accepts it and writes it under
    captures-errors/partitioning-failed/<day>/, wrapped with the error and the record as raw data."""
    line: dict[str, Any] = json.loads(captured("churn", 99).to_line())
    del line["model"]
    raw = json.dumps(line).encode() + b"\n"
    firehose = cloud.client("firehose")

    response = firehose.put_record_batch(
        DeliveryStreamName=get_settings().capture_stream, Records=[{"Data": raw}]
    )

    assert response["FailedPutCount"] == 0
    day = datetime.now(UTC).strftime("%Y/%m/%d")
    [(key, body)] = objects(cloud, "captures-errors/").items()
    assert key.startswith(f"captures-errors/partitioning-failed/{day}/")
    wrapped = json.loads(body)
    assert wrapped["errorCode"] == "DynamicPartitioning.MetadataExtractionFailed"
    assert base64.b64decode(wrapped["rawData"]) == raw
    assert not any("churn-99" in body.decode() for body in objects(cloud, "captures/").values())
