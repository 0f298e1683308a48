"""Buckets, and the functions their uploads invoke.

Every bucket is versioned, encrypted with the AWS-managed KMS key, closed to the public and refuses
requests that do not arrive over TLS; its lifecycle rules come from the spec. Notifications are a separate
component because they need the functions, whose policies in turn need the buckets' (generated) names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws
from pulumi import Output, ResourceOptions
from pulumi_aws.s3 import (
    BucketLifecycleConfigurationRuleArgsDict,
    BucketNotificationLambdaFunctionArgsDict,
)

from infra.config import StackConfig
from infra.names import physical_name
from infra.policies import tls_only_bucket_policy
from infra.spec import BucketSpec, LifecycleRule, SpecError

# S3 appends a 26-character suffix to a bucket prefix and refuses prefixes longer than this.
MAX_BUCKET_PREFIX = 37
# How long an overwritten or expired object's previous version survives: a week to undo a mistake.
NONCURRENT_VERSION_DAYS = 7
ABORT_INCOMPLETE_UPLOADS_DAYS = 7


class Buckets(pulumi.ComponentResource):
    """The stack's buckets. ``names``/``arns`` are by logical name; names are generated from a prefix."""

    def __init__(
        self,
        name: str,
        buckets: Sequence[BucketSpec],
        *,
        project: str,
        stack: str,
        config: StackConfig,
        opts: ResourceOptions | None = None,
    ) -> None:
        super().__init__("flywheel:storage:Buckets", name, None, opts)
        self.buckets: dict[str, aws.s3.Bucket] = {
            spec.name: self._bucket(spec, physical_name(project, stack, spec.name) + "-", config)
            for spec in buckets
        }
        self.names: dict[str, Output[str]] = {n: b.bucket for n, b in self.buckets.items()}
        self.arns: dict[str, Output[str]] = {n: b.arn for n, b in self.buckets.items()}
        self.register_outputs({"names": self.names, "arns": self.arns})

    def _bucket(self, spec: BucketSpec, prefix: str, config: StackConfig) -> aws.s3.Bucket:
        if len(prefix) > MAX_BUCKET_PREFIX:
            raise SpecError(
                f"bucket {spec.name!r}: the name prefix {prefix!r} is longer than the "
                f"{MAX_BUCKET_PREFIX} characters S3 allows; shorten the bucket's or the stack's name"
            )
        child = ResourceOptions(parent=self)
        # Data outlives a mistaken `pulumi destroy` where the stack says so.
        kept = ResourceOptions(parent=self, protect=config.protect, retain_on_delete=config.protect)
        bucket = aws.s3.Bucket(spec.name, bucket_prefix=prefix, force_destroy=False, opts=kept)
        versioning = aws.s3.BucketVersioning(
            spec.name,
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            spec.name,
            bucket=bucket.id,
            rules=[
                {
                    # No key id: the AWS-managed key (aws/s3); bucket keys cut the KMS requests.
                    "apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"},
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            spec.name,
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketPolicy(
            spec.name,
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(tls_only_bucket_policy(arn))),
            # S3 rejects concurrent changes to one bucket's access settings.
            opts=ResourceOptions(parent=self, depends_on=[public_access]),
        )
        if spec.lifecycle:
            aws.s3.BucketLifecycleConfiguration(
                spec.name,
                bucket=bucket.id,
                rules=[_lifecycle_rule(rule) for rule in spec.lifecycle],
                # Rules on noncurrent versions need versioning configured first.
                opts=ResourceOptions(parent=self, depends_on=[versioning]),
            )
        return bucket


def _lifecycle_rule(rule: LifecycleRule) -> BucketLifecycleConfigurationRuleArgsDict:
    document: BucketLifecycleConfigurationRuleArgsDict = {
        "id": f"prefix-{rule.prefix}",
        "status": "Enabled",
        "filter": {"prefix": rule.prefix},
        "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_INCOMPLETE_UPLOADS_DAYS},
    }
    if rule.infrequent_access_days is not None:
        document["transitions"] = [{"days": rule.infrequent_access_days, "storage_class": "STANDARD_IA"}]
    if rule.expire_days is not None:
        document["expiration"] = {"days": rule.expire_days}
        # In a versioned bucket expiry only adds a delete marker; the data goes with the old version.
        document["noncurrent_version_expiration"] = {"noncurrent_days": NONCURRENT_VERSION_DAYS}
    return document


class BucketNotifications(pulumi.ComponentResource):
    """Object-created events under a spec's prefixes invoke its functions (one configuration per bucket,
    as S3 keeps exactly one)."""

    def __init__(
        self,
        name: str,
        buckets: Sequence[BucketSpec],
        *,
        deployed: Mapping[str, aws.s3.Bucket],
        functions: Mapping[str, aws.lambda_.Function],
        account: Output[str],
        opts: ResourceOptions | None = None,
    ) -> None:
        super().__init__("flywheel:storage:BucketNotifications", name, None, opts)
        self.notifications: dict[str, aws.s3.BucketNotification] = {}
        for spec in buckets:
            if not spec.notifications:
                continue
            bucket = deployed[spec.name]
            permissions = [
                aws.lambda_.Permission(
                    f"{spec.name}-invokes-{function}",
                    action="lambda:InvokeFunction",
                    function=functions[function].name,
                    principal="s3.amazonaws.com",
                    source_arn=bucket.arn,
                    source_account=account,
                    opts=ResourceOptions(parent=self),
                )
                for function in sorted({n.function for n in spec.notifications})
            ]
            targets: list[BucketNotificationLambdaFunctionArgsDict] = [
                {
                    "lambda_function_arn": functions[note.function].arn,
                    "events": ["s3:ObjectCreated:*"],
                    "filter_prefix": note.prefix,
                    "filter_suffix": note.suffix or None,
                }
                for note in spec.notifications
            ]
            # S3 checks it may invoke each function when the configuration is written.
            self.notifications[spec.name] = aws.s3.BucketNotification(
                spec.name,
                bucket=bucket.id,
                lambda_functions=targets,
                opts=ResourceOptions(parent=self, depends_on=permissions),
            )
        self.register_outputs({"buckets": sorted(self.notifications)})
