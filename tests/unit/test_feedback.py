"""Feedback data: labelled captures become the same canonical frame an upload does, recorded as a feedback
dataset with lineage to where its rows came from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from examples.churn import generate
from shared.data.contract import DataContract
from shared.data.datasets import read_parquet
from shared.data.streaming import validate_file
from shared.data.validation import ROW_ID_COLUMN
from shared.metadata import DatasetKind, NodeType
from shared.monitoring.feedback import feedback_dataset_id, feedback_frame, write_feedback_dataset
from tests.fixtures.monitoring import request_rows
from tests.fixtures.services import churn_contract, in_memory_services

pytestmark = pytest.mark.unit

CONTRACT = churn_contract()
CAPTURED = datetime(2026, 3, 1, 12, tzinfo=UTC)


def joined(rows: list[dict[str, Any]], labels: list[str], contract: DataContract = CONTRACT) -> pd.DataFrame:
    """Labelled captures as the monitor hands them over: inputs as sent, the label, id and capture time."""
    frame: dict[str, Any] = {
        "request_id": pd.Series([f"req-{i:04d}" for i in range(len(rows))], dtype=object),
        "captured_at": pd.to_datetime([CAPTURED + timedelta(minutes=i) for i in range(len(rows))], utc=True),
    }
    for name in contract.features:
        frame[name] = pd.Series([row.get(name) for row in rows], dtype=object)
    frame[contract.target] = pd.Series(labels)
    return pd.DataFrame(frame)


def test_labelled_captures_become_the_canonical_frame_an_upload_would() -> None:
    demo = generate(50, seed=4)
    feedback = feedback_frame(joined(request_rows(demo), demo["churned"].tolist()), CONTRACT)

    assert feedback.data is not None and feedback.left_out == {} and feedback.notes == []
    uploaded = validate_file(
        demo.to_csv(index=False).encode(), "demo.csv", CONTRACT.model_copy(update={"min_rows": 1})
    )
    assert list(feedback.data.frame.columns) == list(uploaded.frame.columns)
    assert feedback.data.schema == uploaded.schema
    for name in CONTRACT.features:
        pd.testing.assert_series_equal(feedback.data.frame[name], uploaded.frame[name], check_names=False)
    assert feedback.data.frame["customer_id"].tolist()[:2] == ["req-0000", "req-0001"]
    assert feedback.data.frame["event_time"].iloc[1] == pd.Timestamp(CAPTURED + timedelta(minutes=1))
    assert feedback.data.time_range is not None and feedback.data.time_range[0].startswith("2026-03-01T12:00")
    assert feedback.data.profile["rows"] == 50


def test_without_an_id_column_the_request_id_is_the_row_id() -> None:
    contract = CONTRACT.model_copy(update={"id_column": None, "timestamp_column": None})
    demo = generate(5, seed=4)
    feedback = feedback_frame(joined(request_rows(demo), demo["churned"].tolist(), contract), contract)
    assert feedback.data is not None
    assert list(feedback.data.frame.columns) == [ROW_ID_COLUMN, *contract.features, contract.target]
    assert feedback.data.frame[ROW_ID_COLUMN].tolist()[0] == "req-0000"
    assert feedback.data.time_range is None


def test_rows_that_break_todays_contract_are_left_out_and_counted() -> None:
    rows = request_rows(generate(6, seed=4))
    rows[0]["plan"] = "gold"  # not allowed
    rows[1]["tenure_months"] = 9999  # above max
    rows[2]["autopay"] = "sometimes"  # not a boolean
    rows[3]["support_calls"] = None  # not nullable
    feedback = feedback_frame(joined(rows, ["true"] * 6), CONTRACT)
    assert feedback.data is not None and feedback.data.rows == 2
    assert feedback.left_out == {"not_allowed": 1, "above_max": 1, "wrong_type": 1, "null_not_allowed": 1}
    assert "4 labelled capture(s) break today's contract" in feedback.notes[0]


def test_a_small_single_class_set_with_an_empty_nullable_feature_is_still_feedback() -> None:
    rows = request_rows(generate(3, seed=4))
    for row in rows:
        row["region"] = None
    feedback = feedback_frame(joined(rows, ["false"] * 3), CONTRACT)
    assert feedback.data is not None and feedback.data.rows == 3


def test_nothing_to_feed_back_is_none() -> None:
    assert feedback_frame(joined([], []), CONTRACT).data is None


def test_the_dataset_is_recorded_as_feedback_with_its_lineage_and_only_once() -> None:
    svc = in_memory_services()
    demo = generate(20, seed=4)
    data = feedback_frame(joined(request_rows(demo), demo["churned"].tolist()), CONTRACT).data
    assert data is not None
    dataset_id = feedback_dataset_id("churn", ["churn-labels-b", "churn-labels-a"])
    assert dataset_id == feedback_dataset_id("churn", ["churn-labels-a", "churn-labels-b"])
    sources = ["s3://data/captures/churn/2026/03/01/obj-1", "s3://data/labels/churn/a.csv#v1"]

    dataset = write_feedback_dataset(
        svc, "churn", dataset_id, data, evidence_uri="s3://a/reports/r.json", sources=sources
    )
    again = write_feedback_dataset(
        svc, "churn", dataset_id, data, evidence_uri="s3://a/reports/r2.json", sources=sources
    )

    assert again == dataset
    assert dataset.kind is DatasetKind.FEEDBACK and dataset.rows == 20
    assert dataset.uri == f"s3://{svc.settings.data_bucket}/datasets/churn/feedback/{dataset_id}.parquet"
    assert [d.dataset_id for d in svc.metadata.list_datasets("churn")] == [dataset_id]
    read = read_parquet(svc.objects, dataset.uri, dataset.sha256, dataset.version_id)
    pd.testing.assert_frame_equal(read, data.frame)
    upstream = svc.metadata.upstream(NodeType.DATASET, dataset_id)
    assert sorted(e.src.id for e in upstream) == sorted(sources)
