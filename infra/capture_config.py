"""The capture stream's S3 destination, declared once for both clouds.

:func:`capture_destination` turns a :class:`~infra.spec.CaptureStreamSpec` into the Firehose destination:
records are JSON lines, uncompressed, under ``<prefix><model>/<yyyy>/<MM>/<dd>/`` when the stream is
partitioned by a record field (dynamic partitioning, with a ``MetadataExtraction`` processor whose JQ query
reads the field), else under ``<prefix><yyyy>/<MM>/<dd>/``; failures go under
``<error prefix><error type>/<yyyy>/<MM>/<dd>/``. The Pulumi program passes
:meth:`CaptureDestination.to_pulumi` as ``extended_s3_configuration``; the local cloud passes
:meth:`CaptureDestination.to_api` to ``CreateDeliveryStream`` as ``ExtendedS3DestinationConfiguration``
(and :mod:`infra.local.firehose` delivers it the way Firehose does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infra.spec import CaptureStreamSpec, SpecError

if TYPE_CHECKING:
    import pulumi
    from pulumi_aws.kinesis import FirehoseDeliveryStreamExtendedS3ConfigurationArgsDict

# Firehose refuses dynamic partitioning with a smaller buffer.
MIN_PARTITIONED_BUFFER_MB = 64
DAY = "!{timestamp:yyyy/MM/dd}/"
# With expressions in the prefix, Firehose requires the error type in the error prefix.
ERROR_TYPE = "!{firehose:error-output-type}/"
JQ_ENGINE = "JQ-1.6"


@dataclass(frozen=True)
class Processor:
    """One Firehose record processor: its type and its parameters, in order."""

    type: str
    parameters: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CaptureDestination:
    """An extended S3 destination, without the bucket and role (each cloud knows those its own way)."""

    prefix: str
    error_output_prefix: str
    buffering_interval: int
    buffering_size: int
    # Uncompressed, so a capture file reads as JSON lines in the console and in the local cloud alike.
    compression_format: str = "UNCOMPRESSED"
    dynamic_partitioning: bool = False
    processors: tuple[Processor, ...] = ()

    def to_api(self, bucket_arn: str, role_arn: str) -> dict[str, Any]:
        """``ExtendedS3DestinationConfiguration`` of Firehose's ``CreateDeliveryStream`` (boto3)."""
        destination: dict[str, Any] = {
            "RoleARN": role_arn,
            "BucketARN": bucket_arn,
            "Prefix": self.prefix,
            "ErrorOutputPrefix": self.error_output_prefix,
            "BufferingHints": {
                "IntervalInSeconds": self.buffering_interval,
                "SizeInMBs": self.buffering_size,
            },
            "CompressionFormat": self.compression_format,
        }
        if self.dynamic_partitioning:
            destination["DynamicPartitioningConfiguration"] = {"Enabled": True}
        if self.processors:
            destination["ProcessingConfiguration"] = {
                "Enabled": True,
                "Processors": [
                    {
                        "Type": processor.type,
                        "Parameters": [
                            {"ParameterName": name, "ParameterValue": value}
                            for name, value in processor.parameters
                        ],
                    }
                    for processor in self.processors
                ],
            }
        return destination

    def to_pulumi(
        self, bucket_arn: pulumi.Input[str], role_arn: pulumi.Input[str]
    ) -> FirehoseDeliveryStreamExtendedS3ConfigurationArgsDict:
        """``extended_s3_configuration`` of ``pulumi_aws.kinesis.FirehoseDeliveryStream``."""
        destination: FirehoseDeliveryStreamExtendedS3ConfigurationArgsDict = {
            "bucket_arn": bucket_arn,
            "role_arn": role_arn,
            "prefix": self.prefix,
            "error_output_prefix": self.error_output_prefix,
            "buffering_interval": self.buffering_interval,
            "buffering_size": self.buffering_size,
            "compression_format": self.compression_format,
        }
        if self.dynamic_partitioning:
            destination["dynamic_partitioning_configuration"] = {"enabled": True}
        if self.processors:
            destination["processing_configuration"] = {
                "enabled": True,
                "processors": [
                    {
                        "type": processor.type,
                        "parameters": [
                            {"parameter_name": name, "parameter_value": value}
                            for name, value in processor.parameters
                        ],
                    }
                    for processor in self.processors
                ],
            }
        return destination

    @property
    def metadata_query(self) -> str | None:
        """The JQ query of the ``MetadataExtraction`` processor, if there is one."""
        for processor in self.processors:
            if processor.type == "MetadataExtraction":
                return dict(processor.parameters).get("MetadataExtractionQuery")
        return None


def capture_destination(spec: CaptureStreamSpec) -> CaptureDestination:
    """Where and how the capture stream writes; a buffer Firehose would refuse is a :class:`SpecError`."""
    error_prefix = spec.error_prefix + ERROR_TYPE + DAY
    field = spec.partition_field
    if field is None:
        return CaptureDestination(
            prefix=spec.prefix + DAY,
            error_output_prefix=error_prefix,
            buffering_interval=spec.buffer_seconds,
            buffering_size=spec.buffer_mb,
        )
    if spec.buffer_mb < MIN_PARTITIONED_BUFFER_MB:
        raise SpecError(
            f"capture stream {spec.name!r}: partitioning by {field!r} needs a buffer of at least "
            f"{MIN_PARTITIONED_BUFFER_MB} MB, not {spec.buffer_mb}"
        )
    return CaptureDestination(
        prefix=f"{spec.prefix}!{{partitionKeyFromQuery:{field}}}/{DAY}",
        error_output_prefix=error_prefix,
        buffering_interval=spec.buffer_seconds,
        buffering_size=spec.buffer_mb,
        dynamic_partitioning=True,
        processors=(
            Processor(
                type="MetadataExtraction",
                parameters=(
                    ("JsonParsingEngine", JQ_ENGINE),
                    ("MetadataExtractionQuery", f"{{{field}: .{field}}}"),
                ),
            ),
        ),
    )
