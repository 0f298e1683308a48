"""A dataset validated on disk is stored as written and read back by the columns a reader asks for."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from shared.data.datasets import read_parquet, store_dataset_file
from shared.data.streaming import validate_path
from shared.hashing import sha256_hex
from shared.storage import ObjectRef
from tests.fixtures.services import churn_contract, churn_csv, in_memory_services

pytestmark = pytest.mark.unit


def test_a_dataset_validated_on_disk_is_stored_with_its_row_groups_and_digest(tmp_path: Path) -> None:
    """Given an upload validated a batch at a time, when it is stored, then the object holds the file as
    written (a row group per batch), the recorded sha256 is of its bytes, and reading it checks out."""
    svc = in_memory_services()
    contract = churn_contract()
    upload = tmp_path / "upload.csv"
    upload.write_bytes(churn_csv(3000, seed=1))
    validated = validate_path(upload, "upload.csv", contract, tmp_path / "out.parquet", block_bytes=64 * 1024)

    dataset = store_dataset_file(
        svc.objects, svc.metadata, svc.settings, "churn-1", "churn", validated, source_uri="s3://b/k.csv"
    )

    body = svc.objects.get(ObjectRef.parse(dataset.uri, dataset.version_id)).body
    assert body == validated.path.read_bytes()
    assert dataset.sha256 == sha256_hex(body)
    assert pq.ParquetFile(validated.path).num_row_groups > 1
    assert (dataset.rows, dataset.profile["rows"]) == (3000, 3000)
    assert len(read_parquet(svc.objects, dataset.uri, dataset.sha256, dataset.version_id)) == 3000


def test_a_reader_gets_only_the_columns_it_asks_for_that_the_dataset_has(tmp_path: Path) -> None:
    """Given a dataset with a column its reader does not need and without one it asks for (kept from an
    older contract), then only the asked-for columns it has are read, in the file's order."""
    svc = in_memory_services()
    body = pd.DataFrame({"id": ["a", "b"], "old": [1.0, 2.0], "y": ["t", "f"]}).to_parquet(index=False)
    ref = svc.objects.put(ObjectRef(svc.settings.data_bucket, "datasets/m/d.parquet"), body)

    frame = read_parquet(svc.objects, ref.uri, sha256_hex(body), ref.version_id, columns=["y", "id", "new"])

    assert list(frame.columns) == ["id", "y"]
