"""Objects in buckets: the one port the domain uses to read and write files, and its S3 adapter.

Buckets are versioned and nothing is overwritten in place: a write returns the version it created, and a
"move" is a copy plus a delete marker, so the original stays recoverable. Throttling and service errors
become :class:`TransientError` (the pipeline retries them); a missing object is :class:`NotFoundError`.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from shared.aws import AwsClients
from shared.errors import NotFoundError, TransientError
from shared.hashing import sha256_hex

TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "InternalError",
        "InternalServerError",
        "ServiceUnavailable",
        "RequestTimeout",
    }
)


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str
    version_id: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def parse(cls, uri: str, version_id: str | None = None) -> ObjectRef:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
            raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
        return cls(parts.netloc, parts.path.lstrip("/"), version_id)


@dataclass(frozen=True)
class StoredObject:
    ref: ObjectRef
    etag: str
    size: int
    last_modified: datetime
    body: bytes = b""


class ObjectStore(Protocol):
    def get(self, ref: ObjectRef) -> StoredObject: ...

    def head(self, ref: ObjectRef) -> StoredObject: ...

    def put(
        self, ref: ObjectRef, body: bytes, content_type: str = "application/octet-stream"
    ) -> ObjectRef: ...

    def list(self, bucket: str, prefix: str) -> list[StoredObject]: ...

    def move(self, source: ObjectRef, destination: ObjectRef) -> ObjectRef: ...

    def download(self, ref: ObjectRef, path: Path) -> StoredObject:
        """Write an object to a local file in chunks (its body never whole in memory); the object without
        its body."""
        ...

    def put_file(
        self, ref: ObjectRef, path: Path, content_type: str = "application/octet-stream"
    ) -> ObjectRef:
        """:meth:`put` of a local file, streamed from disk."""
        ...


CHUNK_BYTES = 8 * 1024 * 1024  # what a download holds in memory at a time


class S3ObjectStore:
    """:class:`ObjectStore` on Amazon S3 (or moto)."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = AwsClients().client("s3")
        return self._client

    def get(self, ref: ObjectRef) -> StoredObject:
        kwargs = {"Bucket": ref.bucket, "Key": ref.key} | (
            {"VersionId": ref.version_id} if ref.version_id else {}
        )
        response = self._call("get_object", ref, **kwargs)
        body = response["Body"].read()
        return self._stored(ref, response, body)

    def head(self, ref: ObjectRef) -> StoredObject:
        kwargs = {"Bucket": ref.bucket, "Key": ref.key} | (
            {"VersionId": ref.version_id} if ref.version_id else {}
        )
        return self._stored(ref, self._call("head_object", ref, **kwargs))

    def download(self, ref: ObjectRef, path: Path) -> StoredObject:
        kwargs = {"Bucket": ref.bucket, "Key": ref.key} | (
            {"VersionId": ref.version_id} if ref.version_id else {}
        )
        response = self._call("get_object", ref, **kwargs)
        try:
            with path.open("wb") as out:
                for chunk in response["Body"].iter_chunks(CHUNK_BYTES):
                    out.write(chunk)
        except Exception as exc:  # a connection dropped mid-body is as transient as a throttled call
            raise _translate(exc, ref) from exc
        return self._stored(ref, response)

    def put_file(
        self, ref: ObjectRef, path: Path, content_type: str = "application/octet-stream"
    ) -> ObjectRef:
        # One PUT streamed from the file (up to S3's 5 GiB for a single request) returns the version it
        # made, which a managed multipart upload does not.
        with path.open("rb") as body:
            response = self._call(
                "put_object", ref, Bucket=ref.bucket, Key=ref.key, Body=body, ContentType=content_type
            )
        return ObjectRef(ref.bucket, ref.key, response.get("VersionId"))

    def put(self, ref: ObjectRef, body: bytes, content_type: str = "application/octet-stream") -> ObjectRef:
        response = self._call(
            "put_object", ref, Bucket=ref.bucket, Key=ref.key, Body=body, ContentType=content_type
        )
        return ObjectRef(ref.bucket, ref.key, response.get("VersionId"))

    def list(self, bucket: str, prefix: str) -> list[StoredObject]:
        found: list[StoredObject] = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    found.append(
                        StoredObject(
                            ObjectRef(bucket, item["Key"]),
                            item["ETag"].strip('"'),
                            int(item["Size"]),
                            item["LastModified"],
                        )
                    )
        except Exception as exc:
            raise _translate(exc, ObjectRef(bucket, prefix)) from exc
        return found

    def move(self, source: ObjectRef, destination: ObjectRef) -> ObjectRef:
        copy_source = {"Bucket": source.bucket, "Key": source.key} | (
            {"VersionId": source.version_id} if source.version_id else {}
        )
        response = self._call(
            "copy_object", source, Bucket=destination.bucket, Key=destination.key, CopySource=copy_source
        )
        # A delete in a versioned bucket only adds a marker: the source version stays recoverable.
        self._call("delete_object", source, Bucket=source.bucket, Key=source.key)
        return ObjectRef(destination.bucket, destination.key, response.get("VersionId"))

    def _call(self, operation: str, ref: ObjectRef, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(**kwargs)
        except Exception as exc:
            raise _translate(exc, ref) from exc

    @staticmethod
    def _stored(ref: ObjectRef, response: dict[str, Any], body: bytes = b"") -> StoredObject:
        return StoredObject(
            ObjectRef(ref.bucket, ref.key, response.get("VersionId") or ref.version_id),
            str(response.get("ETag", "")).strip('"'),
            int(response.get("ContentLength", len(body))),
            response.get("LastModified") or datetime.now(UTC),
            body,
        )


def _translate(exc: Exception, ref: ObjectRef) -> Exception:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"NoSuchKey", "404", "NoSuchVersion", "NotFound"}:
            return NotFoundError(
                f"no object at {ref.uri}" + (f" (version {ref.version_id})" if ref.version_id else "")
            )
        if (
            code in TRANSIENT_CODES
            or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500
        ):
            return TransientError(f"S3 {code} on {ref.uri}: {exc}")
    return exc


_DELETE_MARKER = "delete-marker"


class InMemoryObjectStore:
    """A versioned bucket in a dict, for the domain's unit tests."""

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], list[StoredObject]] = {}
        self._lock = threading.Lock()

    def get(self, ref: ObjectRef) -> StoredObject:
        with self._lock:
            versions = list(self._versions.get((ref.bucket, ref.key), []))
        if ref.version_id:
            versions = [v for v in versions if v.ref.version_id == ref.version_id]
        if not versions or versions[-1].etag == _DELETE_MARKER:
            raise NotFoundError(f"no object at {ref.uri}")
        return versions[-1]

    def head(self, ref: ObjectRef) -> StoredObject:
        found = self.get(ref)
        return StoredObject(found.ref, found.etag, found.size, found.last_modified)

    def download(self, ref: ObjectRef, path: Path) -> StoredObject:
        found = self.get(ref)
        path.write_bytes(found.body)
        return StoredObject(found.ref, found.etag, found.size, found.last_modified)

    def put_file(
        self, ref: ObjectRef, path: Path, content_type: str = "application/octet-stream"
    ) -> ObjectRef:
        return self.put(ref, path.read_bytes(), content_type)

    def put(self, ref: ObjectRef, body: bytes, content_type: str = "application/octet-stream") -> ObjectRef:
        stored = ObjectRef(ref.bucket, ref.key, uuid.uuid4().hex)
        with self._lock:
            self._versions.setdefault((ref.bucket, ref.key), []).append(
                StoredObject(stored, sha256_hex(body)[:32], len(body), datetime.now(UTC), body)
            )
        return stored

    def list(self, bucket: str, prefix: str) -> list[StoredObject]:
        with self._lock:
            latest = [
                versions[-1]
                for (b, key), versions in sorted(self._versions.items())
                if b == bucket and key.startswith(prefix) and versions[-1].etag != _DELETE_MARKER
            ]
        return [StoredObject(o.ref, o.etag, o.size, o.last_modified) for o in latest]

    def move(self, source: ObjectRef, destination: ObjectRef) -> ObjectRef:
        moved = self.put(destination, self.get(source).body)
        with self._lock:
            marker = StoredObject(
                ObjectRef(source.bucket, source.key, uuid.uuid4().hex), _DELETE_MARKER, 0, datetime.now(UTC)
            )
            self._versions.setdefault((source.bucket, source.key), []).append(marker)
        return moved
