"""The capture stream: a Firehose delivery stream writing served predictions into the data bucket as
JSON lines, one folder per model and day."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
from pulumi import Output, ResourceOptions
from pulumi_aws.kinesis import FirehoseDeliveryStreamExtendedS3ConfigurationArgsDict

from infra.components.roles import service_role
from infra.names import physical_name
from infra.policies import delivery_stream_policy
from infra.spec import CaptureStreamSpec, SpecError

# Firehose refuses dynamic partitioning with a smaller buffer.
MIN_PARTITIONED_BUFFER_MB = 64
DAY = "!{timestamp:yyyy/MM/dd}/"


class CaptureStream(pulumi.ComponentResource):
    """The delivery stream and the role it writes with (under the capture prefixes only)."""

    def __init__(
        self,
        name: str,
        spec: CaptureStreamSpec,
        *,
        bucket_arn: Output[str],
        project: str,
        stack: str,
        opts: ResourceOptions | None = None,
    ) -> None:
        super().__init__("flywheel:capture:CaptureStream", name, None, opts)
        physical = physical_name(project, stack, spec.name)
        role, policy = service_role(
            spec.name,
            physical=physical,
            kind="firehose",
            service="firehose.amazonaws.com",
            policy=bucket_arn.apply(
                lambda arn: json.dumps(delivery_stream_policy(arn, spec.prefix, spec.error_prefix))
            ),
            parent=self,
        )
        self.stream = aws.kinesis.FirehoseDeliveryStream(
            spec.name,
            name=physical,
            destination="extended_s3",
            extended_s3_configuration=_destination(spec, bucket_arn, role.arn),
            server_side_encryption={"enabled": True, "key_type": "AWS_OWNED_CMK"},
            # Firehose checks at creation that its role can write to the bucket.
            opts=ResourceOptions(parent=self, depends_on=[policy]),
        )
        self.name: Output[str] = self.stream.name
        self.register_outputs({"name": self.name, "arn": self.stream.arn})


def _destination(
    spec: CaptureStreamSpec, bucket_arn: Output[str], role_arn: Output[str]
) -> FirehoseDeliveryStreamExtendedS3ConfigurationArgsDict:
    destination: FirehoseDeliveryStreamExtendedS3ConfigurationArgsDict = {
        "bucket_arn": bucket_arn,
        "role_arn": role_arn,
        "prefix": spec.prefix + DAY,
        # With expressions in the prefix, Firehose requires the error type in the error prefix.
        "error_output_prefix": spec.error_prefix + "!{firehose:error-output-type}/" + DAY,
        "buffering_interval": spec.buffer_seconds,
        "buffering_size": spec.buffer_mb,
        # Uncompressed, so a capture file reads as JSON lines in the console and in the local cloud alike.
        "compression_format": "UNCOMPRESSED",
    }
    field = spec.partition_field
    if field is None:
        return destination
    if spec.buffer_mb < MIN_PARTITIONED_BUFFER_MB:
        raise SpecError(
            f"capture stream {spec.name!r}: partitioning by {field!r} needs a buffer of at least "
            f"{MIN_PARTITIONED_BUFFER_MB} MB, not {spec.buffer_mb}"
        )
    destination["prefix"] = f"{spec.prefix}!{{partitionKeyFromQuery:{field}}}/{DAY}"
    destination["dynamic_partitioning_configuration"] = {"enabled": True}
    destination["processing_configuration"] = {
        "enabled": True,
        "processors": [
            {
                "type": "MetadataExtraction",
                "parameters": [
                    {"parameter_name": "JsonParsingEngine", "parameter_value": "JQ-1.6"},
                    {
                        "parameter_name": "MetadataExtractionQuery",
                        "parameter_value": f"{{{field}: .{field}}}",
                    },
                ],
            }
        ],
    }
    return destination
