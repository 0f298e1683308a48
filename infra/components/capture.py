"""The capture stream: a Firehose delivery stream writing served predictions into the data bucket as
JSON lines, one folder per model and day."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
from pulumi import Output, ResourceOptions

from infra.capture_config import capture_destination
from infra.components.roles import service_role
from infra.names import physical_name
from infra.policies import delivery_stream_policy
from infra.spec import CaptureStreamSpec


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
        destination = capture_destination(spec)  # first, so a spec Firehose would refuse declares nothing
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
            extended_s3_configuration=destination.to_pulumi(bucket_arn, role.arn),
            server_side_encryption={"enabled": True, "key_type": "AWS_OWNED_CMK"},
            # Firehose checks at creation that its role can write to the bucket.
            opts=ResourceOptions(parent=self, depends_on=[policy]),
        )
        self.name: Output[str] = self.stream.name
        self.register_outputs({"name": self.name, "arn": self.stream.arn})
