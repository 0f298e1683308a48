"""Validated datasets: Parquet under ``datasets/<model>/``, recorded with the sha256 checked on every read.

Validate writes an upload's typed frame here, the monitor writes feedback the same way in the model's
``feedback/`` folder (so IAM can tell the two writers apart), and Train, Evaluate and Verify read them (and
the holdouts) back through the recorded URI, only after their bytes match the recorded digest.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from shared.data.streaming import ValidatedFile
from shared.data.validation import ValidatedData
from shared.errors import IntegrityError
from shared.hashing import sha256_hex
from shared.layout import FEEDBACK_DATASETS, DataPrefix
from shared.metadata import Dataset, DatasetKind, MetadataStore, TimeRange
from shared.settings import Settings
from shared.storage import ObjectRef, ObjectStore


def frame_to_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def read_parquet(
    objects: ObjectStore,
    uri: str,
    sha256: str,
    version_id: str | None = None,
    *,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read a Parquet object after checking its bytes against the recorded sha256: only ``columns`` (those
    the object has, in its order) when given, so a reader decodes no column it does not use."""
    body = objects.get(ObjectRef.parse(uri, version_id)).body
    actual = sha256_hex(body)
    if actual != sha256:
        raise IntegrityError(
            f"{uri} has sha256 {actual[:12]}…, but {sha256[:12]}… was recorded: refusing to read it"
        )
    if columns is not None:
        # A dataset kept from an older contract may lack a column: it is read without it, as before.
        wanted = set(columns)
        columns = [c for c in pq.read_schema(io.BytesIO(body)).names if c in wanted]
    return pd.read_parquet(io.BytesIO(body), columns=columns)


def dataset_key(model: str, dataset_id: str, kind: DatasetKind) -> str:
    """Where a dataset of this kind is written. Readers never build it: they use the recorded URI, so
    datasets written before feedback had its own folder stay readable where they are."""
    folder = FEEDBACK_DATASETS if kind is DatasetKind.FEEDBACK else ""
    return f"{DataPrefix.DATASETS}{model}/{folder}{dataset_id}.parquet"


def store_dataset(
    objects: ObjectStore,
    metadata: MetadataStore,
    settings: Settings,
    dataset_id: str,
    model: str,
    data: ValidatedData,
    *,
    source_uri: str,
    source_version_id: str | None = None,
    kind: DatasetKind = DatasetKind.UPLOAD,
) -> Dataset:
    """Write a validated frame as Parquet under ``datasets/<model>/`` (feedback in its ``feedback/``
    folder) and record the dataset: its sha256 (checked on every read), rows, schema, time range, profile
    and where it came from."""
    body = frame_to_parquet(data.frame)
    written = objects.put(ObjectRef(settings.data_bucket, dataset_key(model, dataset_id, kind)), body)
    return _record(
        metadata, dataset_id, model, data, written, sha256_hex(body), source_uri, source_version_id, kind
    )


def store_dataset_file(
    objects: ObjectStore,
    metadata: MetadataStore,
    settings: Settings,
    dataset_id: str,
    model: str,
    data: ValidatedFile,
    *,
    source_uri: str,
    source_version_id: str | None = None,
) -> Dataset:
    """:func:`store_dataset` of an upload validated on disk: its Parquet file is uploaded as written (a row
    group per batch) and hashed in chunks, so neither the frame nor the file is ever whole in memory."""
    written = objects.put_file(
        ObjectRef(settings.data_bucket, dataset_key(model, dataset_id, DatasetKind.UPLOAD)), data.path
    )
    return _record(
        metadata,
        dataset_id,
        model,
        data,
        written,
        _sha256_of(data.path),
        source_uri,
        source_version_id,
        DatasetKind.UPLOAD,
    )


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _record(
    metadata: MetadataStore,
    dataset_id: str,
    model: str,
    data: ValidatedData | ValidatedFile,
    written: ObjectRef,
    sha256: str,
    source_uri: str,
    source_version_id: str | None,
    kind: DatasetKind,
) -> Dataset:
    time_range = (
        TimeRange(
            start=datetime.fromisoformat(data.time_range[0]), end=datetime.fromisoformat(data.time_range[1])
        )
        if data.time_range
        else None
    )
    return metadata.put_dataset(
        Dataset(
            dataset_id=dataset_id,
            model=model,
            uri=written.uri,
            version_id=written.version_id,
            sha256=sha256,
            rows=data.rows,
            schema_=data.schema,
            time_range=time_range,
            profile=data.profile,
            source_uri=source_uri,
            source_version_id=source_version_id,
            kind=kind,
            created_at=datetime.now(UTC),
        )
    )
