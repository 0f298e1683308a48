"""The closed loop on the local cloud: traffic through the predict route, late labels through labels/, the
monitor function deciding, and the pipeline retraining with the monitor's report as its evidence.

One cloud for the module; each scenario has a model of its own (the same demo contract under another name,
trained with logistic regression, judged on windows of 100 rows with a 24 h cooldown), so one scenario's
cooldown never holds back another's retraining.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from cli import monitoring as monitoring_cli
from cli.main import main as flywheel
from examples.churn import generate
from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.local import LocalCloud
from shared.featurestore.contracts import put_contract
from shared.metadata import DatasetKind, Direction, NodeType, Run, RunReason, RunStatus, file_id
from shared.monitoring.log import DynamoMonitorLog
from shared.monitoring.monitor import MonitorOutcome
from shared.registry import PRODUCTION_ALIAS
from shared.services import Services
from shared.serving import api as prediction_api
from tests.fixtures.monitoring import label_csv, monitoring_contract, request_rows
from tests.fixtures.serving import predict_rows

pytestmark = pytest.mark.integration

# Verification on the serving path, kept small: these tests are about monitoring.
SERVING = {"smoke_rows": 8, "load_requests": 10, "load_concurrency": 2}


@dataclass
class Loop:
    cloud: LocalCloud
    svc: Services
    url: str

    def deploy(self, model: str, seed: int = 1) -> None:
        """Put ``model``'s contract and push its first file: v1 goes to production."""
        contract = monitoring_contract(model)
        document = {**contract.model_dump(mode="json", exclude_none=True), "serving": SERVING}
        put_contract(self.svc.objects, self.svc.settings, json.dumps(document))
        body = generate(1000, seed).to_csv(index=False).encode()
        self.cloud.client("s3").put_object(
            Bucket=self.svc.settings.data_bucket, Key=f"incoming/{model}/2026-01.csv", Body=body
        )
        [run] = self.runs(model)
        self.finish(run)
        assert self.svc.registry.get_alias(model, PRODUCTION_ALIAS).version == 1
        # Verification's smoke and load requests went through the predict route and were captured: a first
        # monitor run reads them (too few to judge), so each test's window holds its own traffic only.
        baseline = self.monitor(model)
        assert baseline.action == "insufficient_data", baseline

    def predict(self, model: str, frame: pd.DataFrame) -> list[str]:
        """Ask the predict route for every row (100 per request), as a client would; the request ids."""
        return predict_rows(self.url, model, request_rows(frame))

    def put(self, key: str, body: bytes) -> str:
        version: str = self.cloud.client("s3").put_object(
            Bucket=self.svc.settings.data_bucket, Key=key, Body=body
        )["VersionId"]
        return version

    def exists(self, bucket: str, key: str) -> bool:
        listed = self.cloud.client("s3").list_objects_v2(Bucket=bucket, Prefix=key)
        return any(o["Key"] == key for o in listed.get("Contents", []))

    def get(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        body: bytes = self.cloud.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def monitor(self, model: str) -> MonitorOutcome:
        """Invoke the monitor function through Lambda's API, as ``flywheel monitor`` does, once the predict
        function's queued captures are delivered (its thread does so moments after each answer)."""
        prediction_api.serving().captures.flush()
        errored, answer = self.cloud.invoke(self.cloud.names.functions["monitor"], {"model": model})
        assert not errored, answer
        return MonitorOutcome.model_validate(answer["models"][0])

    def runs(self, model: str) -> list[Run]:
        return self.svc.metadata.list_runs(model, limit=100)

    def finish(self, run: Run) -> Run:
        assert run.execution_arn
        described = self.cloud.wait_for_execution(run.execution_arn, timeout_s=120)
        assert described["status"] == "SUCCEEDED", described
        return self.svc.metadata.get_run(run.run_id)

    def log(self) -> DynamoMonitorLog:
        return DynamoMonitorLog(self.svc.settings.metadata_table, client=self.cloud.client("dynamodb"))


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    config = StackConfig.from_stack_file("dev")
    cloud = LocalCloud(flywheel_stack(config), config)
    with cloud.in_process():
        from shared.services import services  # after the cloud set the environment

        yield Loop(cloud, services(), cloud.start_gateway())


# --- no drift -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def steady(loop: Loop) -> tuple[str, MonitorOutcome]:
    model = "churn-steady"
    loop.deploy(model)
    loop.predict(model, generate(300, seed=21))
    return model, loop.monitor(model)


def test_traffic_like_the_training_data_starts_no_run_and_says_so_in_a_report(
    loop: Loop, steady: tuple[str, MonitorOutcome]
) -> None:
    """Given v1 in production, when 300 requests like its training data arrive and the monitor runs, then
    it decides 'none', starts no run, and writes report.json and report.html under reports/<model>/."""
    model, outcome = steady
    assert outcome.monitored and outcome.version == 1
    assert (outcome.action, outcome.reason, outcome.run_id) == ("none", None, None)
    assert outcome.rows == 300
    assert [r.reason for r in loop.runs(model)] == [RunReason.NEW_DATA]
    assert outcome.report_uri and outcome.html_uri
    folder = outcome.report_uri.removesuffix("report.json")
    assert folder.startswith(f"s3://{loop.svc.settings.artifacts_bucket}/reports/{model}/")
    assert outcome.html_uri == f"{folder}report.html"
    report = json.loads(loop.get(outcome.report_uri))
    assert report["decision"]["action"] == "none" and report["rows"] == 300
    assert report["drift"]["drift_share"] < 0.5
    # The predict function's background sink delivers the three requests' captures in one to three puts,
    # as its thread happens to find them queued; each put is one capture object.
    assert 1 <= len(report["monitor"]["captures_read"]) <= 3
    html = loop.get(outcome.html_uri).decode()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "Decision: none" in html
    record = loop.log().history(model)[0]
    assert (record.action, record.rows, record.report_uri) == ("none", 300, outcome.report_uri)


def test_the_next_run_reads_only_what_arrived_since(loop: Loop, steady: tuple[str, MonitorOutcome]) -> None:
    """Captures already judged are not read again: with nothing new, the next window is empty; new traffic
    is read alone."""
    model, _ = steady
    empty = loop.monitor(model)
    assert (empty.action, empty.rows) == ("insufficient_data", 0)
    loop.predict(model, generate(150, seed=22))
    fresh = loop.monitor(model)
    assert fresh.rows == 150 and fresh.action == "none"
    assert [r.rows for r in loop.log().history(model)][:3] == [150, 0, 300]


def test_flywheel_labels_push_refuses_a_file_it_cannot_use(
    loop: Loop, steady: tuple[str, MonitorOutcome], tmp_path: Path
) -> None:
    model, _ = steady
    path = tmp_path / "empty-ids.csv"
    path.write_text("request_id,churned\n,true\n")
    pushed = CliRunner().invoke(flywheel, ["labels", "push", str(path), "--model", model, "--wait"])
    assert pushed.exit_code == 2, pushed.output
    assert f"quarantined as s3://{loop.svc.settings.data_bucket}/quarantine/{model}/labels/empty-ids.csv" in (
        pushed.output
    )
    assert "null_not_allowed" in pushed.output and "no_usable_rows" in pushed.output


def test_a_label_file_that_cannot_be_used_is_quarantined_with_its_reasons(
    loop: Loop, steady: tuple[str, MonitorOutcome]
) -> None:
    model, _ = steady
    body = b"request_id,churned,notes\nabc-0001,maybe,x\n"
    version = loop.put(f"labels/{model}/bad.csv", body)
    data = loop.svc.settings.data_bucket
    report = json.loads(loop.get(f"s3://{data}/quarantine/{model}/labels/bad.csv.error.json"))
    assert report["source_version_id"] == version and report["error"] == "DataValidationError"
    assert {p["rule"] for p in report["problems"]} == {"unexpected_column"}
    assert loop.get(f"s3://{data}/quarantine/{model}/labels/bad.csv") == body
    assert not loop.exists(data, f"labels/{model}/bad.csv")
    accepted = loop.cloud.client("s3").list_objects_v2(Bucket=data, Prefix=f"labels-accepted/{model}/")
    assert not accepted.get("Contents")


def test_flywheel_monitor_and_report_on_the_command_line(
    loop: Loop, steady: tuple[str, MonitorOutcome], tmp_path: Path
) -> None:
    """``flywheel monitor MODEL`` runs the monitor function; ``flywheel report MODEL --out DIR`` says where
    the latest report is, lists the recent runs and writes both files."""
    model, _ = steady
    runner = CliRunner()
    ran = runner.invoke(flywheel, ["monitor", model, "--json"])
    assert ran.exit_code == 0, ran.output
    answer = _printed_json(ran.output)
    assert answer["model"] == model and answer["action"] == "insufficient_data"
    shown = runner.invoke(flywheel, ["report", model, "--out", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert answer["html_uri"] in shown.output and "insufficient data" in shown.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json"]
    assert json.loads((tmp_path / "report.json").read_text())["model"] == model
    missing = runner.invoke(flywheel, ["report", "no-such-model"])
    assert missing.exit_code == 1 and "no monitor report yet" in missing.output


def _printed_json(output: str) -> Any:
    """The JSON document a command printed last (in-process, the functions' EMF lines share stdout)."""
    lines = output.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


# --- covariate shift, then the cooldown -------------------------------------------------------------------


SHIFT = "churn-shift"


@pytest.fixture(scope="module")
def drifted(loop: Loop) -> MonitorOutcome:
    """A model whose traffic moved (covariate shift, the rule linking features to churn unchanged)."""
    loop.deploy(SHIFT)
    loop.predict(SHIFT, generate(300, seed=41, covariate_shift=1.0))
    return loop.monitor(SHIFT)


class TestCovariateShift:
    MODEL = SHIFT

    def test_a_covariate_shift_starts_a_drift_run_with_the_report_as_its_evidence(
        self, loop: Loop, drifted: MonitorOutcome
    ) -> None:
        assert (drifted.action, drifted.reason) == ("retrain", "drift")
        assert drifted.run_id and drifted.run_started
        run = loop.svc.metadata.get_run(drifted.run_id)
        assert run.reason is RunReason.DRIFT
        assert run.evidence_uri == drifted.report_uri
        assert run.input["requested_by"] == "monitor"
        report = json.loads(loop.get(drifted.report_uri))
        assert report["monitor"]["requested_run"] == run.run_id
        assert report["drift"]["drift_share"] >= 0.5
        evidence = loop.svc.metadata.upstream(NodeType.RUN, run.run_id)
        assert [(e.src.id, e.relation) for e in evidence if e.relation == "evidence"] == [
            (f"{drifted.monitor_id}/report.json", "evidence")
        ]
        finished = loop.finish(run)
        assert finished.status in {RunStatus.SUCCEEDED, RunStatus.REJECTED}

    def test_a_second_crossing_inside_the_cooldown_is_held_back_and_recorded(
        self, loop: Loop, drifted: MonitorOutcome
    ) -> None:
        runs_before = len(loop.runs(self.MODEL))
        loop.predict(self.MODEL, generate(300, seed=42, covariate_shift=1.0))

        held = loop.monitor(self.MODEL)

        assert (held.action, held.reason, held.run_id) == ("held_back", "drift", None)
        assert held.reasons[0].startswith("held back: last retraining triggered")
        assert len(loop.runs(self.MODEL)) == runs_before
        latest = loop.log().history(self.MODEL, 1)[0]
        assert (latest.action, latest.reason, latest.report_uri) == ("held_back", "drift", held.report_uri)
        assert loop.log().state(self.MODEL).last_triggered_run == drifted.run_id
        assert json.loads(loop.get(held.report_uri))["decision"]["action"] == "held_back"
        view = monitoring_cli.reports(loop.svc, self.MODEL, log=loop.log())
        assert "held back (drift)" in monitoring_cli.report_text(view)


# --- concept drift with labels ----------------------------------------------------------------------------


CONCEPT = "churn-concept"


@pytest.fixture(scope="module")
def degraded(loop: Loop, tmp_path_factory: pytest.TempPathFactory) -> tuple[MonitorOutcome, str, str]:
    """A model whose world changed (concept drift): its traffic, then the labels for it (``flywheel labels
    push --wait``), then ``flywheel monitor --wait``, which follows the run it started to its end.
    The outcome, the label file's key and its S3 version."""
    loop.deploy(CONCEPT)
    frame = generate(300, seed=51, concept_drift=1.0)
    ids = loop.predict(CONCEPT, frame)
    path = tmp_path_factory.mktemp("labels") / "2026-02-labels.csv"
    path.write_bytes(label_csv(frame, ids))
    runner = CliRunner()
    pushed = runner.invoke(flywheel, ["labels", "push", str(path), "--model", CONCEPT, "--wait"])
    assert pushed.exit_code == 0, pushed.output
    assert "300 label(s) accepted for churn-concept" in pushed.output
    key = f"labels/{CONCEPT}/{path.name}"
    version = loop.cloud.client("s3").head_object(Bucket=loop.svc.settings.data_bucket, Key=key)["VersionId"]
    ran = runner.invoke(flywheel, ["monitor", CONCEPT, "--wait", "--json"])
    assert ran.exit_code == 0, ran.output
    answer = _printed_json(ran.output)
    assert answer["run"]["run"]["status"] in {"succeeded", "rejected"}
    return MonitorOutcome.model_validate(answer["monitor"]), key, version


class TestConceptDrift:
    MODEL = CONCEPT

    def test_concept_drift_with_labels_starts_a_degradation_run(
        self, loop: Loop, degraded: tuple[MonitorOutcome, str, str]
    ) -> None:
        outcome, _, _ = degraded
        assert (outcome.action, outcome.reason) == ("retrain", "degradation")
        assert outcome.labelled_rows == 300
        assert "fell from" in outcome.reasons[0]
        run = loop.svc.metadata.get_run(str(outcome.run_id))
        assert run.reason is RunReason.DEGRADATION and run.evidence_uri == outcome.report_uri
        record = loop.log().history(self.MODEL)[0]
        assert record.live_metric is not None and record.holdout_metric is not None
        assert record.live_metric < record.holdout_metric - 0.05

    def test_feedback_rows_appear_in_the_next_training_windows_lineage(
        self, loop: Loop, degraded: tuple[MonitorOutcome, str, str]
    ) -> None:
        """The labelled captures became a feedback dataset, derived from the label file and the capture
        objects; the run the monitor started trained on it."""
        outcome, key, version = degraded
        data = loop.svc.settings.data_bucket
        [feedback] = loop.svc.metadata.list_datasets(self.MODEL, DatasetKind.FEEDBACK)
        assert feedback.dataset_id == outcome.feedback_dataset and feedback.rows == 300
        sources = {e.src.id for e in loop.svc.metadata.upstream(NodeType.DATASET, feedback.dataset_id)}
        label_file = file_id(f"s3://{data}/{key}", version)
        assert label_file in sources
        assert {s for s in sources if s.startswith(f"s3://{data}/captures/{self.MODEL}/")}
        run = loop.finish(loop.svc.metadata.get_run(str(outcome.run_id)))  # ended: monitor --wait followed it
        trained_on = {
            e.src.id
            for e in loop.svc.metadata.upstream(NodeType.RUN, run.run_id)
            if e.src.type is NodeType.DATASET
        }
        assert feedback.dataset_id in trained_on
        upstream = loop.svc.metadata.lineage(NodeType.RUN, run.run_id, Direction.UPSTREAM, depth=3)
        assert label_file in upstream.ids(NodeType.FILE)
        assert outcome.monitor_id in upstream.ids(NodeType.RUN)


# --- the schedule ---------------------------------------------------------------------------------------


def test_the_schedule_monitors_every_model_in_production(
    loop: Loop, steady: tuple[str, MonitorOutcome]
) -> None:
    """The monitor schedule (rate(1 hour) by default) invokes the monitor with EventBridge's event; it
    monitors each model with a production version, recorded as asked by the schedule."""
    model, _ = steady
    before = len(loop.log().history(model))
    fired = loop.cloud.scheduler.tick(loop.cloud.scheduler.next_due("monitor"))
    # Other schedules fall due too when their time comes on the way (the daily retrain, 03:00 UTC by default).
    assert "monitor" in [f.schedule for f in fired]
    history = loop.log().history(model)
    assert len(history) == before + 1 and history[0].requested_by == "schedule"
