"""Batch scoring on the local cloud: `flywheel score churn s3://.../score-inputs/... --wait` and a request
file dropped under score-requests/churn/ run the scoring state machine as AWS would — a Distributed Map
whose ItemReader lists the prefix, one child per file. Of three files, one cannot be scored (its columns are
not the model's): it is reported as a failed file with the reason, and the other two are scored, a bad row
among them counted and reported, the rest answered exactly as `predict` answers the same rows. Every scored
row is captured with source "batch", and the job is linked to the version in lineage.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest

from examples.churn import generate
from shared.metadata import NodeType, model_version_id
from shared.pipeline.verification import http_event
from shared.scoring.job import ScoreManifest, job_name
from shared.scoring.run import list_jobs, read_manifest
from tests.integration.test_delivery import Delivery, cloud_for

pytestmark = pytest.mark.integration

MODEL = "churn"
PREFIX = "score-inputs/churn/batch-1/"


@pytest.fixture(scope="class")
def dev() -> Iterator[Delivery]:
    yield from cloud_for("dev")


def put(dev: Delivery, key: str, body: bytes) -> dict[str, Any]:
    answer: dict[str, Any] = dev.cloud.client("s3").put_object(
        Bucket=dev.svc.settings.data_bucket, Key=key, Body=body
    )
    return answer


def read(dev: Delivery, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body: bytes = dev.cloud.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def batch_captures(dev: Delivery) -> dict[str, dict[str, Any]]:
    s3, bucket = dev.cloud.client("s3"), dev.svc.settings.data_bucket
    records: dict[str, dict[str, Any]] = {}
    for listed in s3.list_objects_v2(Bucket=bucket, Prefix=f"captures/{MODEL}/").get("Contents", []):
        for line in s3.get_object(Bucket=bucket, Key=listed["Key"])["Body"].read().decode().splitlines():
            record = json.loads(line)
            records[record["request_id"]] = record
    return records


class TestBatchScoring:
    def test_production_exists_first(self, dev: Delivery) -> None:
        done = dev.finish(dev.upload("incoming/churn/first.csv", rows=900, seed=3))
        assert done.status == "SUCCEEDED", done.steps
        assert dev.production() is not None

    def test_a_prefix_is_scored_file_by_file_and_a_bad_file_is_reported(self, dev: Delivery) -> None:
        # Given a labelled CSV with one impossible row, a Parquet file without the target, and a file
        # whose columns are not the model's
        labelled = generate(40, seed=21)
        labelled.loc[5, "tenure_months"] = -3  # below the contract's min: this row fails, the others score
        put(dev, f"{PREFIX}a.csv", labelled.to_csv(index=False).encode())
        unlabelled = generate(25, seed=22).drop(columns=["churned"])
        buffer = io.BytesIO()
        unlabelled.to_parquet(buffer, index=False)
        put(dev, f"{PREFIX}b.parquet", buffer.getvalue())
        wrong = generate(10, seed=23).rename(columns={"plan": "tier"})
        put(dev, f"{PREFIX}c.csv", wrong.to_csv(index=False).encode())
        bucket = dev.svc.settings.data_bucket

        # When a person scores the prefix and waits
        result = dev.flywheel("score", MODEL, f"s3://{bucket}/{PREFIX}", "--wait")

        # Then the job ends with every file accounted for
        assert result.exit_code == 0, result.output
        assert "files 3/3" in result.output
        (manifest,) = list_jobs(dev.svc, MODEL)
        assert manifest.version == dev.production()
        assert (manifest.files_total, manifest.files_scored, manifest.files_failed) == (3, 2, 1)
        assert (manifest.rows_scored, manifest.rows_failed) == (39 + 25, 1)
        by_name = {f.source.rsplit("/", 1)[-1]: f for f in manifest.files}
        assert by_name["c.csv"].status == "failed"
        assert "tier" in (by_name["c.csv"].error or "") and "plan" in (by_name["c.csv"].error or "")
        (failure,) = by_name["a.csv"].row_failures
        assert failure.row == 5 and "tenure_months" in failure.problems[0]

        # And the predictions are what predict answers for the same rows, with their request ids
        a_out = by_name["a.csv"].output
        assert a_out is not None and a_out.uri.endswith(f"scores/{MODEL}/{manifest.job_id}/a.csv.parquet")
        body = read(dev, a_out.uri)
        assert hashlib.sha256(body).hexdigest() == a_out.sha256
        scored = pq.read_table(io.BytesIO(body)).to_pandas()
        assert list(scored["row"]) == [i for i in range(40) if i != 5]
        rows = labelled.drop(index=5).drop(columns=["churned", "event_time"])
        rows["autopay"] = rows["autopay"].astype(str)
        records = json.loads(rows.to_json(orient="records"))
        event = http_event(MODEL, manifest.version, records, source="api")
        errored, answer = dev.cloud.invoke(dev.cloud.names.functions["predict"], event)
        assert not errored and answer["statusCode"] == 200, answer
        online = json.loads(answer["body"])
        assert list(scored["prediction"]) == online["predictions"]
        for label in ("false", "true"):
            got = scored[f"probability_{label}"].tolist()
            want = [p[label] for p in online["probabilities"]]
            assert got == pytest.approx(want, abs=1e-9)
        assert list(scored["customer_id"]) == list(rows["customer_id"].astype(str))

        # And every scored row is captured with source "batch" under its request id
        captures = batch_captures(dev)
        for request_id, prediction in zip(scored["request_id"], scored["prediction"], strict=True):
            assert captures[request_id]["source"] == "batch"
            assert captures[request_id]["outputs"]["prediction"] == prediction
            assert captures[request_id]["version"] == manifest.version
        batch = [r for r in captures.values() if r["source"] == "batch"]
        assert len(batch) == manifest.rows_scored

        # And lineage leads from the version to the job and its outputs, and from a source file to its output
        job_artifact = f"scores:{MODEL}:{manifest.job_id}"
        downstream = dev.svc.metadata.downstream(
            NodeType.MODEL_VERSION, model_version_id(MODEL, manifest.version)
        )
        assert job_artifact in {e.dst.id for e in downstream}
        outputs = {e.dst.id for e in dev.svc.metadata.downstream(NodeType.ARTIFACT, job_artifact)}
        assert outputs == {f"{job_artifact}:a.csv.parquet", f"{job_artifact}:b.parquet.parquet"}
        assert dev.svc.metadata.get_artifact(job_artifact).uri.endswith("/manifest.json")

        # And `flywheel lineage` shows the job beside what made the version
        shown = dev.flywheel("lineage", f"{MODEL}:{manifest.version}")
        assert shown.exit_code == 0, shown.output
        assert f"{manifest.job_id}  64 rows scored, 1 failed, 1 file(s) failed" in shown.output

        # And `flywheel scores` lists the job
        listed = dev.flywheel("scores", MODEL)
        assert manifest.job_id in listed.output and "2/3" in listed.output

    def test_a_request_file_starts_a_job(self, dev: Delivery) -> None:
        bucket = dev.svc.settings.data_bucket
        key = f"score-requests/{MODEL}/nightly.json"
        stored = put(dev, key, json.dumps({"prefix": f"s3://{bucket}/{PREFIX}"}).encode())
        job_id = job_name(MODEL, bucket, key, stored["VersionId"])
        arn = f"{dev.svc.settings.scoring_state_machine_arn}".replace(":stateMachine:", ":execution:")
        described = dev.cloud.wait_for_execution(f"{arn}:{job_id}", timeout_s=120)
        assert described["status"] == "SUCCEEDED", described
        manifest: ScoreManifest = read_manifest(dev.svc, MODEL, job_id)
        assert manifest.request_uri == f"s3://{bucket}/{key}"
        assert manifest.requested_by == "request-file"
        assert (manifest.files_scored, manifest.files_failed) == (2, 1)

    def test_a_prefix_outside_score_inputs_is_refused(self, dev: Delivery) -> None:
        bucket = dev.svc.settings.data_bucket
        result = dev.flywheel("score", MODEL, f"s3://{bucket}/captures/{MODEL}/")
        assert result.exit_code == 2
        assert "score-inputs/" in result.output
