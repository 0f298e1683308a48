"""Batch scoring's pure rules: which rows of a file are scored, how a file is read, where outputs go, what
the manifest sums up. The job end to end runs on the local cloud (tests/integration/test_batch_scoring.py)."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime

import pandas as pd
import pytest

from examples.churn import generate
from shared.errors import DataValidationError, InvalidRequestError
from shared.metadata import NodeType, file_id
from shared.scoring.job import (
    FileScore,
    OutputFile,
    ScoreItem,
    ScoreJob,
    build_manifest,
    column_problems,
    item_result_key,
    job_name,
    output_key,
    read_rows,
    request_id,
    source_prefix,
    split_valid_rows,
)
from shared.scoring.run import finish_job, read_manifest
from shared.serving.packaging import serving_signature
from shared.serving.runtime import Signature
from shared.storage import ObjectRef
from tests.fixtures.services import churn_contract, in_memory_services

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 8, 12, tzinfo=UTC)


def signature() -> Signature:
    return Signature.from_dict(serving_signature(churn_contract(), ["false", "true"]))


def csv_rows(frame: pd.DataFrame) -> list[dict[str, object]]:
    return read_rows(frame.to_csv(index=False).encode(), "x.csv", signature())


# --- rows ---------------------------------------------------------------------------------------------------


def test_valid_rows_are_kept_in_order_and_each_bad_row_is_reported_with_every_problem() -> None:
    rows = csv_rows(generate(6, seed=1).drop(columns=["churned"]))
    rows[1]["tenure_months"] = -1
    rows[1]["plan"] = "gold"
    rows[4]["support_calls"] = "many"

    prepared, positions, failures = split_valid_rows(signature(), rows)

    assert positions == [0, 2, 3, 5]
    assert len(prepared) == 4
    assert [f.row for f in failures] == [1, 4]
    assert len(failures[0].problems) == 2
    assert failures[0].problems[0].startswith("tenure_months:")
    assert any(p.startswith("plan:") for p in failures[0].problems)
    assert failures[1].problems[0].startswith("support_calls:")


def test_a_file_of_valid_rows_is_prepared_as_predict_prepares_a_request() -> None:
    rows = csv_rows(generate(5, seed=2).drop(columns=["churned"]))
    prepared, positions, failures = split_valid_rows(signature(), rows)
    expected, problems = signature().validate_rows(rows)
    assert (prepared, positions, failures, problems) == (expected, [0, 1, 2, 3, 4], [], [])


# --- reading a file -----------------------------------------------------------------------------------------


def test_csv_and_parquet_read_alike_and_the_target_column_is_left_out() -> None:
    frame = generate(8, seed=3)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    from_csv = csv_rows(frame)
    from_parquet = read_rows(buffer.getvalue(), "x.parquet", signature())
    assert "churned" not in from_csv[0] and "churned" not in from_parquet[0]
    assert [r["customer_id"] for r in from_csv] == [r["customer_id"] for r in from_parquet]
    # Categorical features are text, as in training, whatever a CSV reader would guess.
    assert all(isinstance(r["plan"], str) for r in from_csv)
    assert signature().validate_rows(from_csv)[1] == []


def test_a_file_whose_columns_cannot_fit_the_model_is_refused_naming_them() -> None:
    frame = generate(4, seed=4).rename(columns={"plan": "tier"})
    with pytest.raises(DataValidationError) as refused:
        csv_rows(frame)
    assert "['plan']" in str(refused.value) and "['tier']" in str(refused.value)


def test_an_absent_nullable_feature_is_not_a_column_problem() -> None:
    columns = [f for f in signature().feature_names if f != "region"]
    assert column_problems(columns, signature()) == []


@pytest.mark.parametrize(
    ("body", "name", "reason"),
    [
        (b"\x00\x01 not parquet", "broken.parquet", "cannot be read"),
        (b"a,b\n1,2\n", "notes.txt", "not a CSV or Parquet file"),
        (b"tenure_months,plan\n1,basic,3,4\n", "ragged.csv", "cannot be read"),
    ],
)
def test_a_file_that_cannot_be_read_is_a_data_validation_error(body: bytes, name: str, reason: str) -> None:
    with pytest.raises(DataValidationError, match=reason):
        read_rows(body, name, signature())


# --- names and places ---------------------------------------------------------------------------------------


def test_a_job_is_named_by_its_identity_as_step_functions_allows() -> None:
    name = job_name("churn", "bucket", "score-requests/churn/a.json", "v1")
    assert name == job_name("churn", "bucket", "score-requests/churn/a.json", "v1")
    assert name != job_name("churn", "bucket", "score-requests/churn/a.json", "v2")
    assert re.fullmatch(r"score-churn-[0-9a-f]{20}", name)
    assert len(job_name("m" * 63, "x")) <= 80


def test_outputs_sit_in_the_job_folder_whatever_the_source_nesting() -> None:
    item = ScoreItem(
        job_id="score-churn-1",
        model="churn",
        version=3,
        bucket="data",
        prefix="score-inputs/churn/day/",
        key="score-inputs/churn/day/east/a.csv",
        index=7,
    )
    assert output_key(item) == "scores/churn/score-churn-1/east_a.csv.parquet"
    assert item_result_key(item) == "scores/churn/score-churn-1/items/east_a.csv.json"
    assert request_id(item.job_id, item.index, 12) == "score-churn-1-00007-0000012"


@pytest.mark.parametrize(
    "uri",
    ["s3://other/score-inputs/churn/", "s3://data/captures/churn/", "data/score-inputs/x/", "s3://data/"],
)
def test_a_source_outside_score_inputs_of_the_data_bucket_is_refused(uri: str) -> None:
    with pytest.raises(InvalidRequestError, match="score-inputs/"):
        source_prefix(uri, "data")


def test_a_source_under_score_inputs_is_its_bucket_and_prefix() -> None:
    assert source_prefix("s3://data/score-inputs/churn/day/", "data") == ("data", "score-inputs/churn/day/")


# --- the manifest -------------------------------------------------------------------------------------------


def test_the_manifest_sums_the_files_and_lists_the_outputs_in_source_order() -> None:
    job = ScoreJob(
        job_id="score-churn-1",
        model="churn",
        version=3,
        bucket="data",
        prefix="score-inputs/churn/day/",
        requested_by="cli",
        requested_at=NOW,
    )
    b_out = OutputFile(uri="s3://data/scores/churn/score-churn-1/b.csv.parquet", sha256="b" * 64, rows=5)
    a_out = OutputFile(uri="s3://data/scores/churn/score-churn-1/a.csv.parquet", sha256="a" * 64, rows=9)
    files = [
        FileScore(source="s3://data/score-inputs/churn/day/c.csv", status="failed", error="columns"),
        FileScore(
            source="s3://data/score-inputs/churn/day/b.csv",
            status="scored",
            rows_total=5,
            rows_scored=5,
            output=b_out,
        ),
        FileScore(
            source="s3://data/score-inputs/churn/day/a.csv",
            status="scored",
            rows_total=10,
            rows_scored=9,
            rows_failed=1,
            output=a_out,
            flavor="onnx",
        ),
    ]

    manifest = build_manifest(job, files, NOW)

    assert (manifest.files_total, manifest.files_scored, manifest.files_failed) == (3, 2, 1)
    assert (manifest.rows_scored, manifest.rows_failed) == (14, 1)
    assert [f.source.rsplit("/", 1)[-1] for f in manifest.files] == ["a.csv", "b.csv", "c.csv"]
    assert manifest.outputs == [a_out, b_out]
    assert manifest.prefix == "s3://data/score-inputs/churn/day/"
    assert (manifest.version, manifest.flavor) == (3, "onnx")


# --- finishing a job ----------------------------------------------------------------------------------------


def test_finishing_writes_the_manifest_with_a_lost_file_and_links_the_outputs_to_the_version() -> None:
    """Given one file scored and one whose function crashed (the Map's Catch passed its error on)
    When the job finishes
    Then the manifest has both, the crash reported by its message, and lineage leads from the version to
    the job, from the job to the predictions file, and from the source file to it."""
    svc = in_memory_services()
    bucket = svc.settings.data_bucket
    job = ScoreJob(
        job_id="score-churn-9",
        model="churn",
        version=2,
        bucket=bucket,
        prefix="score-inputs/churn/day/",
        requested_by="cli",
        requested_at=NOW,
    )
    output = OutputFile(
        uri=f"s3://{bucket}/scores/churn/score-churn-9/a.csv.parquet", sha256="a" * 64, rows=3
    )
    scored = FileScore(
        source=f"s3://{bucket}/score-inputs/churn/day/a.csv",
        status="scored",
        rows_total=3,
        rows_scored=3,
        output=output,
        flavor="onnx",
    )
    result = svc.objects.put(
        ObjectRef(bucket, "scores/churn/score-churn-9/items/a.csv.json"), scored.model_dump_json().encode()
    )
    crash = {"errorMessage": "out of memory", "errorType": "Runtime.ExitError"}
    items = [
        {"source": scored.source, "status": "scored", "result": ObjectRef(result.bucket, result.key).uri},
        {
            "source": "score-inputs/churn/day/b.csv",
            "status": "failed",
            "error": {"Error": "Runtime.ExitError", "Cause": json.dumps(crash)},
        },
    ]

    manifest = finish_job(svc, job, items, now=NOW)

    stored = read_manifest(svc, "churn", "score-churn-9")
    assert stored == manifest
    assert (manifest.files_scored, manifest.files_failed, manifest.rows_scored) == (1, 1, 3)
    assert manifest.flavor == "onnx"
    lost = manifest.files[1]
    assert lost.source == f"s3://{bucket}/score-inputs/churn/day/b.csv"
    assert lost.error == "Runtime.ExitError: out of memory"
    job_artifact = "scores:churn:score-churn-9"
    assert {e.dst.id for e in svc.metadata.downstream(NodeType.MODEL_VERSION, "churn:2")} == {job_artifact}
    output_id = f"{job_artifact}:a.csv.parquet"
    assert {e.dst.id for e in svc.metadata.downstream(NodeType.ARTIFACT, job_artifact)} == {output_id}
    assert svc.metadata.get_artifact(output_id).sha256 == "a" * 64
    assert svc.metadata.downstream(NodeType.FILE, file_id(scored.source, None))[0].dst.id == output_id
    # Finishing again changes nothing: the same manifest, the same links.
    assert finish_job(svc, job, items, now=NOW) == manifest
    assert len(svc.metadata.downstream(NodeType.ARTIFACT, job_artifact)) == 1


# --- request files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"prefix": "s3://elsewhere/score-inputs/churn/"}', "score-inputs/"),
        (b'{"prefix": "s3://x/y/", "colour": "red"}', "colour"),
        (b"not json", "refused"),
    ],
)
def test_a_refused_request_file_is_written_beside_the_outputs_with_its_reason(
    body: bytes, reason: str
) -> None:
    from aws_lambda_powertools.utilities.parser import parse
    from aws_lambda_powertools.utilities.parser.models import S3Model

    from shared.scoring.run import on_request_files
    from tests.unit.test_trigger import s3_event

    svc = in_memory_services()
    key = "score-requests/churn/nightly.json"
    stored = svc.objects.put(ObjectRef(svc.settings.data_bucket, key), body)

    (outcome,) = on_request_files(svc, parse(event=s3_event(key, stored.version_id), model=S3Model))

    assert isinstance(outcome, dict) and outcome["error"] == "InvalidRequestError"
    assert reason in outcome["message"]
    refusal = ObjectRef.parse(outcome["refusal"])
    assert refusal.key == "scores/churn/refused/nightly.json.error.json"
    assert json.loads(svc.objects.get(refusal).body)["message"] == outcome["message"]
