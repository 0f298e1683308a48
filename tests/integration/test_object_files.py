"""Objects to and from local files, on the S3 adapter on moto and on the in-memory bucket alike: what
Validate relies on to keep an upload and its dataset on disk rather than in memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from shared.errors import NotFoundError
from shared.storage import CHUNK_BYTES, InMemoryObjectStore, ObjectRef, ObjectStore, S3ObjectStore

pytestmark = pytest.mark.integration

BUCKET = "flywheel-test-data"


@pytest.fixture(params=["s3", "memory"])
def objects(request: pytest.FixtureRequest) -> Iterator[ObjectStore]:
    if request.param == "memory":
        yield InMemoryObjectStore()
        return
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield S3ObjectStore(client)


def test_a_file_put_is_downloaded_byte_for_byte_at_its_version(objects: ObjectStore, tmp_path: Path) -> None:
    """Given a file larger than one download chunk put twice under one key, when the first version is
    downloaded, then the local file holds exactly its bytes and the object's size and version are told."""
    first, second = tmp_path / "first.bin", tmp_path / "second.bin"
    first.write_bytes(bytes(range(256)) * (CHUNK_BYTES // 256 + 3))
    second.write_bytes(b"newer")
    ref = ObjectRef(BUCKET, "incoming/churn/big.csv")

    written = objects.put_file(ref, first)
    objects.put_file(ref, second)
    found = objects.download(written, tmp_path / "back.bin")

    assert (tmp_path / "back.bin").read_bytes() == first.read_bytes()
    assert (found.size, found.ref.version_id, found.body) == (first.stat().st_size, written.version_id, b"")
    assert objects.get(ref).body == b"newer"


def test_downloading_a_missing_object_is_not_found(objects: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        objects.download(ObjectRef(BUCKET, "incoming/churn/gone.csv"), tmp_path / "gone.csv")
