"""Label files: rows that cannot be used are left out and reported, files that cannot be used are quarantined
with every reason, accepted labels are stored once for the monitor."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from shared.data.contract import DataContract
from shared.errors import DataValidationError
from shared.monitoring.labels import (
    accept_label_file,
    check_labels,
    label_set_id,
    labels_to_parquet,
    parse_label_set,
    validate_labels,
)
from shared.services import Services
from shared.storage import ObjectRef
from tests.fixtures.services import churn_contract, in_memory_services, put_churn_contract

pytestmark = pytest.mark.unit

CONTRACT = churn_contract()


def frame(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def rules(problems: list[dict[str, object]] | list[object]) -> dict[str, int]:
    found: dict[str, int] = {}
    for problem in problems:
        data = problem if isinstance(problem, dict) else problem.model_dump()  # type: ignore[attr-defined]
        found[str(data["rule"])] = int(data["count"])  # type: ignore[call-overload]
    return found


# --- checking --------------------------------------------------------------------------------------------


def test_a_good_file_is_accepted_whole_in_canonical_form() -> None:
    labels = validate_labels(
        b"request_id,churned,time\nr-1,TRUE,2026-03-01T10:00:00Z\nr-2,false,\nr-3,False,2026-03-02\n",
        "labels.csv",
        CONTRACT,
    )
    assert labels.rows == labels.rows_read == 3 and labels.rejected == 0 and labels.problems == []
    assert list(labels.frame.columns) == ["request_id", "churned", "time"]
    assert labels.frame["churned"].tolist() == ["true", "false", "false"]
    assert str(labels.frame["time"].dtype) == "datetime64[ns, UTC]"
    assert labels.frame["time"].isna().tolist() == [False, True, False]


def test_the_time_column_is_optional() -> None:
    labels = validate_labels(b"request_id,churned\nr-1,true\n", "labels.csv", CONTRACT)
    assert labels.frame["time"].isna().all()


@pytest.mark.parametrize(
    ("body", "rule", "count"),
    [
        (b"request_id,churned\n,true\nr-2,false\n", "null_not_allowed", 1),
        (b"request_id,churned\nr-1,true\nr-1,false\nr-2,false\n", "duplicate_id", 2),
        (b"request_id,churned\nr-1,\nr-2,false\n", "missing_target", 1),
        (b"request_id,churned\nr-1,maybe\nr-2,false\n", "invalid_target", 1),
        (b"request_id,churned,time\nr-1,true,yesterday\nr-2,false,2026-03-01\n", "bad_timestamp", 1),
    ],
)
def test_a_bad_row_is_left_out_and_reported_and_the_rest_accepted(body: bytes, rule: str, count: int) -> None:
    labels = validate_labels(body, "labels.csv", CONTRACT)
    assert rules(labels.problems) == {rule: count}
    assert labels.frame["request_id"].tolist() == ["r-2"]
    assert labels.rejected == labels.rows_read - 1
    [problem] = labels.problems
    assert problem.message and problem.column


def test_a_regression_label_must_be_a_finite_number() -> None:
    contract = DataContract.model_validate(
        {"model": "price", "task": "regression", "target": "price", "features": {"x": {"type": "numeric"}}}
    )
    labels = validate_labels(b"request_id,price\nr-1,12.5\nr-2,cheap\nr-3,inf\n", "l.csv", contract)
    assert labels.frame["price"].tolist() == [12.5]
    assert rules(labels.problems) == {"invalid_target": 2}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"id,churned\nr-1,true\n", {"missing_column": 1, "unexpected_column": 1}),
        (b"request_id,label\nr-1,true\n", {"missing_target": 1, "unexpected_column": 1}),
        (b"request_id,churned,notes\nr-1,true,x\n", {"unexpected_column": 1}),
        (b"request_id,churned,churned\nr-1,true,true\n", {"duplicate_column": 1}),
        (b"request_id,churned\n", {"header_only": 1}),
        (b"request_id;churned\nr-1;true\n", {"single_column": 1}),
        (b"", {"empty_file": 1}),
        (
            b"request_id,churned\n,maybe\nr-1,\n",
            {"null_not_allowed": 1, "invalid_target": 1, "missing_target": 1},
        ),
    ],
)
def test_a_file_that_cannot_be_used_is_refused_with_every_problem(
    body: bytes, expected: dict[str, int]
) -> None:
    with pytest.raises(DataValidationError) as refused:
        validate_labels(body, "labels.csv", CONTRACT)
    found = rules(refused.value.problems)
    assert {rule for rule in found if rule != "no_usable_rows"} == set(expected)
    assert "labels.csv" in str(refused.value)


def test_check_labels_takes_a_frame_from_any_reader() -> None:
    labels, problems = check_labels(frame("request_id,churned\nr-1,yes\nr-2,true\n"), CONTRACT)
    assert labels is not None and labels.frame["request_id"].tolist() == ["r-2"]
    assert rules(problems) == {"invalid_target": 1}


def test_a_label_set_keeps_its_source_through_parquet() -> None:
    labels = validate_labels(b"request_id,churned\nr-1,true\n", "labels.csv", CONTRACT)
    body = labels_to_parquet(labels.frame, {"label_set_id": "x-1", "source": "s3://b/labels/churn/a.csv"})
    read = parse_label_set(body, "s3://b/labels-accepted/churn/x-1.parquet")
    assert (read.label_set_id, read.source_uri, read.source_version_id) == (
        "x-1",
        "s3://b/labels/churn/a.csv",
        None,
    )
    pd.testing.assert_frame_equal(read.frame, labels.frame, check_dtype=False)


# --- accepting a file that arrived -----------------------------------------------------------------------


@pytest.fixture
def svc() -> Services:
    services = in_memory_services()
    put_churn_contract(services, CONTRACT)
    return services


def upload(svc: Services, key: str, body: bytes) -> ObjectRef:
    return svc.objects.put(ObjectRef(svc.settings.data_bucket, key), body)


def test_an_accepted_file_is_stored_as_a_label_set_with_its_report(svc: Services) -> None:
    ref = upload(svc, "labels/churn/2026-03.csv", b"request_id,churned\nr-1,true\nr-2,maybe\nr-3,false\n")

    outcome = accept_label_file(svc, ref.bucket, ref.key, ref.version_id)

    assert outcome.accepted and (outcome.rows, outcome.rejected_rows) == (2, 1)
    assert outcome.label_set_id == label_set_id("churn", ref)
    assert outcome.accepted_uri == f"s3://{ref.bucket}/labels-accepted/churn/{outcome.label_set_id}.parquet"
    stored = parse_label_set(
        svc.objects.get(ObjectRef.parse(outcome.accepted_uri)).body, outcome.accepted_uri
    )
    assert stored.frame["request_id"].tolist() == ["r-1", "r-3"]
    assert (stored.source_uri, stored.source_version_id) == (ref.uri, ref.version_id)
    report = json.loads(svc.objects.get(ObjectRef.parse(str(outcome.report_uri))).body)
    assert report["rows"] == 2 and [p["rule"] for p in report["problems"]] == ["invalid_target"]
    assert svc.objects.get(ref).body  # the upload stays where it was


def test_a_redelivered_event_changes_nothing(svc: Services) -> None:
    ref = upload(svc, "labels/churn/2026-03.csv", b"request_id,churned\nr-1,true\n")
    first = accept_label_file(svc, ref.bucket, ref.key, ref.version_id)
    listed = [o.ref.key for o in svc.objects.list(ref.bucket, "labels-accepted/")]

    again = accept_label_file(svc, ref.bucket, ref.key, ref.version_id)

    assert again.duplicate and again.accepted and again.label_set_id == first.label_set_id
    assert [o.ref.key for o in svc.objects.list(ref.bucket, "labels-accepted/")] == listed


def test_a_file_that_cannot_be_used_is_quarantined_beside_its_reasons(svc: Services) -> None:
    body = b"request_id,outcome\nr-1,true\n"
    ref = upload(svc, "labels/churn/bad.csv", body)

    outcome = accept_label_file(svc, ref.bucket, ref.key, ref.version_id)

    assert not outcome.accepted
    assert outcome.quarantined_as == f"s3://{ref.bucket}/quarantine/churn/labels/bad.csv"
    assert svc.objects.get(ObjectRef(ref.bucket, "quarantine/churn/labels/bad.csv")).body == body
    report = json.loads(
        svc.objects.get(ObjectRef(ref.bucket, "quarantine/churn/labels/bad.csv.error.json")).body
    )
    assert (report["source"], report["source_version_id"], report["error"]) == (
        ref.uri,
        ref.version_id,
        "DataValidationError",
    )
    assert {p["rule"] for p in report["problems"]} == {"missing_target", "unexpected_column"}
    assert not svc.objects.list(ref.bucket, "labels/churn/")
    assert svc.objects.get(ref).body == body  # the original version is kept
    again = accept_label_file(svc, ref.bucket, ref.key, ref.version_id)
    assert again.duplicate and not again.accepted


def test_labels_for_a_model_without_a_contract_or_without_a_model_are_quarantined(svc: Services) -> None:
    ref = upload(svc, "labels/nocontract/a.csv", b"request_id,churned\nr-1,true\n")
    outcome = accept_label_file(svc, ref.bucket, ref.key, ref.version_id)
    assert not outcome.accepted and "no data contract for model 'nocontract'" in outcome.detail
    loose = upload(svc, "labels/loose.csv", b"request_id,churned\nr-1,true\n")
    unrouted = accept_label_file(svc, loose.bucket, loose.key, loose.version_id)
    assert unrouted.quarantined_as == f"s3://{loose.bucket}/quarantine/_unrouted/labels/loose.csv"
    assert "labels/<model>/" in unrouted.detail
