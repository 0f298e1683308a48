"""The local cloud's Firehose: the capture destination both clouds declare, and how its prefix evaluates."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime

import pytest

from infra.capture_config import capture_destination
from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.local.firehose import (
    MetadataQuery,
    PartitionKeyError,
    java_datetime,
    object_key,
    partition_keys,
    partition_records,
    render_prefix,
)
from infra.spec import CaptureStreamSpec, SpecError

pytestmark = pytest.mark.unit
AT = datetime(2026, 3, 1, 7, 5, 9, 123456, tzinfo=UTC)


def test_both_clouds_get_the_same_destination() -> None:
    """Given Flywheel's capture stream, when it is rendered for boto3 and for Pulumi, then both say the same:
    partitioned by model and day, errors by type and day, JQ extraction of the model, 64 MB / 60 s."""
    spec = flywheel_stack(StackConfig.from_stack_file("dev")).capture
    assert spec is not None
    destination = capture_destination(spec)

    api = destination.to_api("arn:aws:s3:::data", "arn:aws:iam::1:role/r")
    pulumi = destination.to_pulumi("arn:aws:s3:::data", "arn:aws:iam::1:role/r")

    assert (
        api["Prefix"]
        == pulumi["prefix"]
        == "captures/!{partitionKeyFromQuery:model}/!{timestamp:yyyy/MM/dd}/"
    )
    assert api["ErrorOutputPrefix"] == pulumi["error_output_prefix"]
    assert (
        api["ErrorOutputPrefix"] == "captures-errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/"
    )
    assert api["DynamicPartitioningConfiguration"] == {"Enabled": True}
    assert pulumi["dynamic_partitioning_configuration"] == {"enabled": True}
    assert api["BufferingHints"] == {"IntervalInSeconds": 60, "SizeInMBs": 64}
    assert (pulumi["buffering_interval"], pulumi["buffering_size"]) == (60, 64)
    assert api["CompressionFormat"] == pulumi["compression_format"] == "UNCOMPRESSED"
    [processor] = api["ProcessingConfiguration"]["Processors"]
    assert processor["Type"] == "MetadataExtraction"
    assert {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]} == {
        "JsonParsingEngine": "JQ-1.6",
        "MetadataExtractionQuery": "{model: .model}",
    }
    assert destination.metadata_query == "{model: .model}"


def test_an_unpartitioned_stream_writes_by_day_and_a_small_partitioned_buffer_is_refused() -> None:
    plain = capture_destination(CaptureStreamSpec(name="c", bucket="data", partition_field=None, buffer_mb=8))
    assert plain.to_api("b", "r")["Prefix"] == "captures/!{timestamp:yyyy/MM/dd}/"
    assert "DynamicPartitioningConfiguration" not in plain.to_api("b", "r")
    with pytest.raises(SpecError, match="64 MB"):
        capture_destination(CaptureStreamSpec(name="c", bucket="data", buffer_mb=8))


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("yyyy/MM/dd", "2026/03/01"),
        ("yyyy/MM/dd/HH", "2026/03/01/07"),
        ("yy-M-d H:mm:ss", "26-3-1 7:05:09"),
        ("'year='yyyy'/month='MM", "year=2026/month=03"),
        ("HH'h'''", "07h'"),
        ("ss.SSS", "09.123"),
    ],
)
def test_timestamps_follow_java_patterns(pattern: str, expected: str) -> None:
    assert java_datetime(pattern, AT) == expected


@pytest.mark.parametrize("pattern", ["MMM", "EEE", "yyyy'unterminated"])
def test_a_timestamp_pattern_it_cannot_render_is_an_error(pattern: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        java_datetime(pattern, AT)


def test_a_prefix_evaluates_keys_time_and_error_type() -> None:
    prefix = "captures/!{partitionKeyFromQuery:model}/!{timestamp:yyyy/MM/dd}/"
    assert render_prefix(prefix, AT, {"model": "churn"}) == "captures/churn/2026/03/01/"
    assert (
        render_prefix("errors/!{firehose:error-output-type}/!{timestamp:yyyy}/", AT, error_type="x")
        == "errors/x/2026/"
    )
    assert len(render_prefix("r/!{firehose:random-string}/", AT)) == len("r//") + 11
    with pytest.raises(PartitionKeyError, match="'model'"):
        render_prefix(prefix, AT, {})
    with pytest.raises(ValueError, match="partitionKeyFromLambda"):
        render_prefix("!{partitionKeyFromLambda:model}/", AT, {"model": "churn"})


def test_objects_are_named_as_firehose_names_them() -> None:
    key = object_key("captures/churn/2026/03/01/", "flywheel-local-captures", "1", AT)
    assert re.fullmatch(
        r"captures/churn/2026/03/01/flywheel-local-captures-1-2026-03-01-07-05-09-[0-9a-f-]{36}", key
    )


@pytest.mark.parametrize(
    ("query", "document", "keys"),
    [
        ("{model: .model}", {"model": "churn", "x": 1}, {"model": "churn"}),
        (
            '{ "model" : .model , day: .when.day }',
            {"model": "a", "when": {"day": 3}},
            {"model": "a", "day": "3"},
        ),
        ("{model}", {"model": "b"}, {"model": "b"}),
        (".partition", {"partition": {"model": "c", "live": True}}, {"model": "c", "live": "true"}),
    ],
)
def test_the_jq_forms_flywheel_uses(query: str, document: object, keys: dict[str, str]) -> None:
    assert partition_keys(json.dumps(document).encode() + b"\n", MetadataQuery.parse(query)) == keys


@pytest.mark.parametrize(
    "record",
    [b'{"version": 1}\n', b'{"model": null}', b'{"model": ""}', b'{"model": {"a": 1}}', b"not json"],
)
def test_a_record_without_a_usable_key_cannot_be_partitioned(record: bytes) -> None:
    with pytest.raises(PartitionKeyError):
        partition_keys(record, MetadataQuery.parse("{model: .model}"))


@pytest.mark.parametrize("query", [".model | ascii_downcase", "{model: .model | tostring}", "[.model]"])
def test_jq_it_cannot_evaluate_is_refused_by_name(query: str) -> None:
    with pytest.raises(ValueError, match="unsupported MetadataExtractionQuery"):
        MetadataQuery.parse(query)


def test_records_are_grouped_by_partition_and_failures_wrapped_under_the_error_prefix() -> None:
    """Given records for two models and one without a model, when they are partitioned, then each model's
    records go to its own prefix as sent, and the bad one to partitioning-failed/, wrapped with its data."""
    spec = flywheel_stack(StackConfig.from_stack_file("dev")).capture
    assert spec is not None
    destination = capture_destination(spec).to_api("arn:aws:s3:::data", "role")
    records = [
        b'{"model":"churn","n":1}\n',
        b'{"model":"fraud","n":2}\n',
        b'{"n":3}\n',
        b'{"model":"churn"}\n',
    ]

    groups = partition_records(destination, records, AT)

    errors = "captures-errors/partitioning-failed/2026/03/01/"
    assert set(groups) == {"captures/churn/2026/03/01/", "captures/fraud/2026/03/01/", errors}
    assert groups["captures/churn/2026/03/01/"] == [records[0], records[3]]
    assert groups["captures/fraud/2026/03/01/"] == [records[1]]
    [failed] = groups[errors]
    wrapped = json.loads(failed)
    assert failed.endswith(b"\n")
    assert base64.b64decode(wrapped["rawData"]) == records[2]
    assert wrapped["errorCode"] == "DynamicPartitioning.MetadataExtractionFailed"
    assert wrapped["arrivalTimestamp"] == int(AT.timestamp() * 1000)
