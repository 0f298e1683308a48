"""The capture stream: Firehose into the data bucket, one folder per model and day, as JSON lines."""

from __future__ import annotations

import pytest

from infra.policies import delivery_stream_policy
from infra.spec import BucketSpec, CaptureStreamSpec, SpecError, StackSpec
from tests.infra.harness import Deployment, T, document, run_program

pytestmark = pytest.mark.infra


def test_captures_are_delivered_to_the_data_bucket_partitioned_by_model(platform_dev: Deployment) -> None:
    """Given the platform spec's capture stream into data/captures/, partitioned by the 'model' field
    When the program runs
    Then Firehose writes uncompressed records under captures/<model>/<day>/, extracting the model with
    JQ, errors under captures-errors/, with server-side encryption, as a role of its own."""
    data_arn = platform_dev.one(T.BUCKET, "data").outputs["arn"]
    stream = platform_dev.one(T.STREAM, "captures").inputs
    assert stream["name"] == "plat-dev-captures"
    assert stream["destination"] == "extended_s3"
    assert stream["serverSideEncryption"]["enabled"] is True
    s3 = stream["extendedS3Configuration"]
    assert s3["bucketArn"] == data_arn
    assert s3["prefix"] == "captures/!{partitionKeyFromQuery:model}/!{timestamp:yyyy/MM/dd}/"
    assert s3["errorOutputPrefix"].startswith("captures-errors/")
    assert "!{firehose:error-output-type}" in s3["errorOutputPrefix"]
    assert s3["compressionFormat"] == "UNCOMPRESSED"
    assert s3["dynamicPartitioningConfiguration"]["enabled"] is True
    assert (s3["bufferingSize"], s3["bufferingInterval"]) == (64, 60)
    processing = s3["processingConfiguration"]
    assert processing["enabled"] is True
    [extraction] = processing["processors"]
    assert extraction["type"] == "MetadataExtraction"
    parameters = {p["parameterName"]: p["parameterValue"] for p in extraction["parameters"]}
    assert parameters == {"JsonParsingEngine": "JQ-1.6", "MetadataExtractionQuery": "{model: .model}"}

    role = platform_dev.one(T.ROLE, "captures", T.CAPTURE)
    assert s3["roleArn"] == role.outputs["arn"]
    assert document(role, "assumeRolePolicy")["Statement"][0]["Principal"] == {
        "Service": "firehose.amazonaws.com"
    }
    policy = platform_dev.one(T.ROLE_POLICY, "captures", T.CAPTURE)
    assert document(policy) == delivery_stream_policy(data_arn, "captures/", "captures-errors/")
    # Firehose checks its access to the bucket when the stream is created.
    assert policy.urn in platform_dev.one(T.STREAM, "captures").dependencies


def test_functions_are_told_the_deployed_stream(platform_dev: Deployment) -> None:
    assert platform_dev.outputs["stream_name"] == "plat-dev-captures"
    assert platform_dev.outputs["environment"]["FLYWHEEL_CAPTURE_STREAM"] == "plat-dev-captures"


def _capture_only(capture: CaptureStreamSpec) -> StackSpec:
    return StackSpec(project="plat", buckets=(BucketSpec(name="data"),), capture=capture)


def test_an_unpartitioned_stream_writes_by_day_without_dynamic_partitioning() -> None:
    spec = _capture_only(CaptureStreamSpec(name="captures", bucket="data", partition_field=None))
    s3 = run_program(lambda _config: spec, "dev").one(T.STREAM, "captures").inputs["extendedS3Configuration"]
    assert s3["prefix"] == "captures/!{timestamp:yyyy/MM/dd}/"
    assert "dynamicPartitioningConfiguration" not in s3
    assert "processingConfiguration" not in s3


def test_partitioning_with_a_buffer_firehose_refuses_stops_before_deploying() -> None:
    spec = _capture_only(CaptureStreamSpec(name="captures", bucket="data", buffer_mb=8))
    with pytest.raises(SpecError, match="64 MB"):
        run_program(lambda _config: spec, "dev")
