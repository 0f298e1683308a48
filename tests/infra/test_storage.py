"""Buckets: private, versioned, encrypted, TLS-only; expiring by prefix; uploads invoke functions."""

from __future__ import annotations

import pytest

from infra.spec import BucketSpec, SpecError, StackSpec
from tests.infra.harness import ACCOUNT, Deployment, T, document, run_program

pytestmark = pytest.mark.infra


@pytest.mark.parametrize("bucket", ["data", "artifacts"])
def test_every_bucket_is_versioned_encrypted_private_and_tls_only(
    platform_dev: Deployment, bucket: str
) -> None:
    """Given the platform spec's buckets
    When the program runs for the dev stack
    Then each bucket is named from the project and stack, versioned, encrypted with KMS, closed to the
    public, refuses plain HTTP, and is not emptied by a destroy."""
    deployed = platform_dev.one(T.BUCKET, bucket)
    assert deployed.inputs["bucketPrefix"] == f"plat-dev-{bucket}-"
    assert deployed.inputs["forceDestroy"] is False
    bucket_id, bucket_arn = deployed.id, deployed.outputs["arn"]

    versioning = platform_dev.one(T.VERSIONING, bucket)
    assert versioning.inputs["bucket"] == bucket_id
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"

    encryption = platform_dev.one(T.ENCRYPTION, bucket)
    assert encryption.inputs["bucket"] == bucket_id
    [rule] = encryption.inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert "kmsMasterKeyId" not in rule["applyServerSideEncryptionByDefault"]  # the AWS-managed key
    assert rule["bucketKeyEnabled"] is True

    blocked = platform_dev.one(T.PUBLIC_ACCESS, bucket).inputs
    assert blocked["bucket"] == bucket_id
    for setting in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        assert blocked[setting] is True, setting

    policy = platform_dev.one(T.BUCKET_POLICY, bucket)
    assert policy.inputs["bucket"] == bucket_id
    [deny] = document(policy)["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Principal"] == "*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert sorted(deny["Resource"]) == [bucket_arn, f"{bucket_arn}/*"]


def test_captures_move_to_infrequent_access_then_expire_with_their_old_versions(
    platform_dev: Deployment,
) -> None:
    """Given a lifecycle rule on the data bucket's captures/ prefix (IA after 30 days, gone after 90)
    When the program runs
    Then the data bucket has that rule, old versions expire too, and the artifacts bucket has none."""
    lifecycle = platform_dev.one(T.LIFECYCLE, "data")
    assert lifecycle.inputs["bucket"] == platform_dev.one(T.BUCKET, "data").id
    [rule] = lifecycle.inputs["rules"]
    assert rule["status"] == "Enabled"
    assert rule["filter"] == {"prefix": "captures/"}
    assert rule["transitions"] == [{"days": 30, "storageClass": "STANDARD_IA"}]
    assert rule["expiration"] == {"days": 90}
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] >= 1
    # Noncurrent-version rules only apply once versioning is on.
    assert platform_dev.one(T.VERSIONING, "data").urn in lifecycle.dependencies
    assert platform_dev.all(T.LIFECYCLE) == [lifecycle]


def test_uploads_under_a_notified_prefix_invoke_the_spec_function(platform_dev: Deployment) -> None:
    """Given the data bucket notifies on-upload of objects created under incoming/
    When the program runs
    Then the bucket's one notification configuration targets that function for that prefix, S3 may
    invoke the function for this bucket and account only, and the permission exists first."""
    bucket = platform_dev.one(T.BUCKET, "data")
    function = platform_dev.one(T.FUNCTION, "on-upload")
    notification = platform_dev.one(T.NOTIFICATION, "data")
    assert notification.inputs["bucket"] == bucket.id
    assert notification.inputs["lambdaFunctions"] == [
        {
            "lambdaFunctionArn": function.outputs["arn"],
            "events": ["s3:ObjectCreated:*"],
            "filterPrefix": "incoming/",
        }
    ]
    permission = platform_dev.one(T.PERMISSION, "data-invokes-on-upload")
    assert permission.inputs["action"] == "lambda:InvokeFunction"
    assert permission.inputs["principal"] == "s3.amazonaws.com"
    assert permission.inputs["function"] == "plat-dev-on-upload"
    assert permission.inputs["sourceArn"] == bucket.outputs["arn"]
    assert permission.inputs["sourceAccount"] == ACCOUNT
    assert permission.urn in notification.dependencies
    # The artifacts bucket notifies nobody.
    assert [n.name for n in platform_dev.all(T.NOTIFICATION)] == ["data"]


def test_a_bucket_prefix_longer_than_s3_allows_is_refused_before_anything_deploys() -> None:
    """Given a bucket whose prefix, with project and stack, exceeds S3's 37 characters
    When the program runs
    Then it stops with a SpecError naming the bucket."""
    long_name = "b" * 30
    spec = StackSpec(project="plat", buckets=(BucketSpec(name=long_name),))
    with pytest.raises(SpecError, match=long_name):
        run_program(lambda _config: spec, "staging")
