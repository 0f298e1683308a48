"""The core loop, as a user meets it: Flywheel's real stack on the local cloud, driven through S3, Lambda
and the schedule, observed through Step Functions' history, the registry, the metadata store and the bucket.

Each class gets its own cloud (a class-scoped fixture), provisioned once: the runs of a class share it and
its production version, and every test compares production before and after its own run.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest
import sklearn
from botocore.exceptions import ClientError

from examples.churn import generate
from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.local import LocalCloud
from shared.data.contract import DataContract, parse_contract
from shared.data.datasets import read_parquet
from shared.errors import TransientError
from shared.featurestore.contracts import put_contract
from shared.hashing import sha256_hex
from shared.metadata import Direction, NodeType, Run, RunReason, RunStatus, Step, StepStatus, file_id
from shared.ml.evaluation import score
from shared.ml.projects import ModelCode
from shared.ml.training import TrainedModel
from shared.ml.training import train as real_train
from shared.pipeline.steps import load_model
from shared.registry import ModelVersion, Stage
from shared.services import Services, services
from tests.fixtures.bad_files import bad_files
from tests.fixtures.services import CHURN_YAML

pytestmark = pytest.mark.integration

MODEL = "churn"
# Under dev's automatic policy: verified on the serving path, promoted, checked through the live route.
PIPELINE_STATES = [
    "HasNewFile",
    # No compute block: each placed step stays on its function (tests/integration/test_fargate_path.py).
    "PlanValidate",
    "ValidateEngine",
    "Validate",
    "PlanTrain",
    "TrainEngine",
    "Train",
    "Evaluate",
    "Gate",
    "Register",
    "Verify",
    "Verified",
    "Policy",
    "Promote",
    "Promoted",
    "PostDeployCheck",
    "Finish",
]
STEP_NAMES = ["validate", "train", "evaluate", "register", "verify", "promote", "post-deploy-check", "finish"]


def churn_csv(rows: int, seed: int) -> bytes:
    text: str = generate(rows, seed).to_csv(index=False)
    return text.encode()


# --- observing the cloud ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """A run after its execution ended, as the metadata store, Step Functions and its history tell it."""

    run: Run
    status: str  # the execution's
    error: str | None
    history: list[dict[str, Any]]
    steps: list[Step]

    def entered(self) -> list[str]:
        """The states the execution entered, in order."""
        return [
            e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e
        ]

    def attempts(self, state: str) -> int:
        """How many times the state's Lambda function was invoked (1 + retries)."""
        current, count = None, 0
        for event in self.history:
            if "stateEnteredEventDetails" in event:
                current = event["stateEnteredEventDetails"]["name"]
            elif event["type"] == "LambdaFunctionScheduled" and current == state:
                count += 1
        return count

    def lambda_errors(self) -> list[str]:
        return [
            e["lambdaFunctionFailedEventDetails"]["error"]
            for e in self.history
            if e["type"] == "LambdaFunctionFailed"
        ]


@dataclass
class Flywheel:
    cloud: LocalCloud
    svc: Services

    @property
    def bucket(self) -> str:
        return self.svc.settings.data_bucket

    @property
    def trigger_function(self) -> str:
        return self.cloud.names.functions["trigger"]

    def put(self, key: str, body: bytes) -> str:
        """Upload as a user would; S3 notifies the trigger before this returns. The object's version."""
        version: str = self.cloud.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body)["VersionId"]
        return version

    def get(self, key: str, version_id: str | None = None) -> bytes:
        extra = {"VersionId": version_id} if version_id else {}
        body: bytes = self.cloud.client("s3").get_object(Bucket=self.bucket, Key=key, **extra)["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        try:
            self.cloud.client("s3").head_object(Bucket=self.bucket, Key=key)
        except ClientError:
            return False
        return True

    def runs(self, model: str | None = MODEL) -> list[Run]:
        return self.svc.metadata.list_runs(model, limit=500)

    def run_for(self, key: str, version_id: str, model: str = MODEL) -> Run:
        (run,) = [
            r
            for r in self.runs(model)
            if r.input.get("source", {}).get("key") == key
            and r.input["source"].get("version_id") == version_id
        ]
        return run

    def finish(self, run: Run) -> Finished:
        assert run.execution_arn
        described = self.cloud.wait_for_execution(run.execution_arn, timeout_s=120)
        return Finished(
            run=self.svc.metadata.get_run(run.run_id),
            status=described["status"],
            error=described.get("error"),
            history=self.cloud.history(run.execution_arn),
            steps=self.svc.metadata.list_steps(run.run_id),
        )

    def delivered(self, file_version: str) -> dict[str, Any]:
        """The S3 event that notified the trigger of an object version (as S3 sent it)."""
        (event,) = [
            i.event
            for i in self.cloud.runtime.invocations
            if i.function_name == self.trigger_function
            and any(r["s3"]["object"].get("versionId") == file_version for r in i.event.get("Records", []))
        ]
        found: dict[str, Any] = event
        return found

    def trigger(self, event: dict[str, Any]) -> tuple[bool, Any]:
        """Invoke the trigger function through Lambda's API, as the CLI, the monitor or S3 do."""
        return self.cloud.invoke(self.trigger_function, event)

    def production(self) -> int | None:
        aliases = {a.alias: a.version for a in self.svc.registry.list_aliases(MODEL)}
        return aliases.get("production")

    def version(self, number: int) -> ModelVersion:
        return self.svc.registry.get_model_version(MODEL, number)

    def executions(self) -> list[str]:
        sfn = self.cloud.client("stepfunctions")
        found = sfn.list_executions(stateMachineArn=self.cloud.names.state_machine_arn(), maxResults=1000)
        return [e["name"] for e in found["executions"]]

    def quarantine_report(self, key: str) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(self.get(f"{key}.error.json"))
        return report


@pytest.fixture(scope="class")
def flywheel() -> Iterator[Flywheel]:
    config = StackConfig.from_stack_file("dev")
    cloud = LocalCloud(flywheel_stack(config), config)
    with cloud.in_process():
        svc = services()
        put_contract(svc.objects, svc.settings, CHURN_YAML)
        yield Flywheel(cloud, svc)


@pytest.fixture(scope="class")
def first(flywheel: Flywheel) -> tuple[Finished, str, str]:
    """The model's first file, through the whole loop: (the finished run, its key, its S3 version)."""
    key = "incoming/churn/2026-01.csv"
    version = flywheel.put(key, churn_csv(1000, seed=1))
    return flywheel.finish(flywheel.run_for(key, version)), key, version


@pytest.fixture(scope="class")
def second(flywheel: Flywheel, first: tuple[Finished, str, str]) -> Finished:
    """A second file, judged against the first's model in production."""
    key = "incoming/churn/2026-02.csv"
    version = flywheel.put(key, churn_csv(1000, seed=2))
    return flywheel.finish(flywheel.run_for(key, version))


@pytest.fixture
def train_behaving(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[int], None]], list[int]]:
    """Replace the training function the Train step calls (handlers run in this process): ``before(n)`` runs
    before the n-th call and may raise. Returns the list of call numbers."""

    def install(before: Callable[[int], None]) -> list[int]:
        calls: list[int] = []

        def train(frame: pd.DataFrame, contract: DataContract, code: ModelCode | None = None) -> TrainedModel:
            calls.append(len(calls) + 1)
            before(calls[-1])
            return real_train(frame, contract, code)

        monkeypatch.setattr("shared.pipeline.steps.train", train)
        return calls

    return install


# --- the corpus of bad files, made for the churn contract ------------------------------------------------

CORPUS_FRAME = pd.read_csv(io.BytesIO(churn_csv(400, seed=11)), dtype=str, keep_default_na=False)
CORPUS = bad_files(parse_contract(CHURN_YAML), CORPUS_FRAME)
# case: (column, count, one of the examples) of the one problem each file must be rejected for
EXPECTED: dict[str, tuple[str | None, int, str | None]] = {
    "empty": (None, 1, None),
    "blank_lines": (None, 1, None),
    "header_only": (None, 1, None),
    "wrong_delimiter": (None, 1, None),
    "tab_delimited": (None, 1, None),
    "missing_target": ("churned", 1, None),
    "empty_target": ("churned", 1, "row 4"),
    "invalid_target": ("churned", 1, "maybe"),
    "missing_column": ("plan", 1, None),
    "unexpected_column": ("notes", 1, "notes"),
    "unknown_category": ("plan", 1, "gold"),
    "null_in_required": ("plan", 1, "row 11"),
    "text_in_numeric": ("tenure_months", 1, "twelve"),
    "out_of_range": ("tenure_months", 1, "-3"),
    "above_max": ("tenure_months", 1, "601"),
    "all_null_feature": ("monthly_charges", len(CORPUS_FRAME), None),
    "duplicate_ids": ("customer_id", 2, CORPUS_FRAME.loc[4, "customer_id"]),
    "too_few_rows": (None, 1, "199"),
    "bad_timestamp": ("event_time", 1, "yesterday"),
    "binary_garbage": (None, 1, None),
    "excel_workbook": (None, 1, None),
    "broken_parquet": (None, 1, None),
    "truncated_parquet": (None, 1, None),
    "latin1": (None, 1, None),
    "ragged_row": (None, 1, "line 4"),
    "unknown_format": (None, 1, None),
    "corrupt_gzip": (None, 1, None),
}


def test_the_corpus_holds_every_case_the_loop_must_refuse() -> None:
    named = {
        "empty",
        "header_only",
        "wrong_delimiter",
        "missing_target",
        "unknown_category",
        "text_in_numeric",
        "all_null_feature",
        "duplicate_ids",
        "too_few_rows",
        "binary_garbage",
    }
    assert named <= set(CORPUS) == set(EXPECTED)


# --- the loop ----------------------------------------------------------------------------------------------


class TestTheLoop:
    def test_a_file_under_incoming_becomes_the_production_model(
        self, flywheel: Flywheel, first: tuple[Finished, str, str]
    ) -> None:
        """Given a contract and no model yet, when a valid file lands under incoming/churn/, then one run
        goes through every step in order and succeeds, and v1 is production."""
        done, _, _ = first

        assert done.status == "SUCCEEDED"
        assert done.entered() == PIPELINE_STATES
        assert done.run.status is RunStatus.SUCCEEDED
        assert done.run.reason is RunReason.NEW_DATA
        assert done.run.ended_at is not None and done.run.error is None
        assert [(s.name, s.status, s.attempt) for s in done.steps] == [
            (name, StepStatus.SUCCEEDED, 1) for name in STEP_NAMES
        ]
        assert done.run.outcome["version"] == 1 and done.run.outcome["promoted"] is True
        assert done.run.outcome["policy"] == "auto"
        assert done.run.outcome["verification"]["passed"] is True
        assert flywheel.production() == 1
        assert flywheel.version(1).stage is Stage.PRODUCTION
        verification = flywheel.version(1).runtime_metrics["verification"]
        assert verification["passed"] is True and verification["smoke_mismatches"] == 0
        assert verification["reasons"] == done.run.outcome["verification"]["reasons"]

    def test_the_version_records_the_data_parameters_metrics_code_and_why_it_passed(
        self, flywheel: Flywheel, first: tuple[Finished, str, str]
    ) -> None:
        done, _, _ = first
        version = flywheel.version(1)
        s3 = flywheel.cloud.client("s3")

        (dataset,) = version.training_datasets
        recorded = flywheel.svc.metadata.get_dataset(dataset.dataset_id)
        assert (
            dataset.uri
            == recorded.uri
            == f"s3://{flywheel.bucket}/datasets/churn/{dataset.dataset_id}.parquet"
        )
        key = dataset.uri.removeprefix(f"s3://{flywheel.bucket}/")
        assert (
            dataset.version_id
            and dataset.version_id == s3.head_object(Bucket=flywheel.bucket, Key=key)["VersionId"]
        )
        assert dataset.sha256 == sha256_hex(flywheel.get(key, dataset.version_id))
        assert dataset.rows == 1000
        assert dataset.time_range is not None
        assert dataset.time_range.start and dataset.time_range.end
        assert dataset.time_range.start < dataset.time_range.end
        assert version.params["estimator"] == "hist_gradient_boosting"
        assert version.params["max_iter"] == 200  # from the contract
        assert set(version.metrics) == {"accuracy", "f1", "roc_auc", "log_loss"}
        assert version.metrics == done.run.outcome["metrics"]
        assert version.code_version == flywheel.svc.settings.code_version
        assert version.code_version.startswith("src-")
        assert version.library_versions["scikit-learn"] == sklearn.__version__
        assert {"numpy", "pandas", "python"} <= set(version.library_versions)
        assert version.gate is not None and version.gate.passed
        assert version.gate.reasons == done.run.outcome["gate_reasons"]
        assert any("roc_auc" in r and "meets the floor 0.700" in r for r in version.gate.reasons)
        artifact_key = version.artifact.uri.removeprefix(f"s3://{flywheel.svc.settings.artifacts_bucket}/")
        stored = s3.get_object(Bucket=flywheel.svc.settings.artifacts_bucket, Key=artifact_key)["Body"].read()
        assert sha256_hex(stored) == version.artifact.sha256
        trail = list(reversed(flywheel.svc.registry.audit_trail(MODEL)))[:2]
        assert [(t.version, t.from_stage, t.to_stage) for t in trail] == [
            (1, None, Stage.DEVELOPMENT),
            (1, Stage.DEVELOPMENT, Stage.PRODUCTION),
        ]

    def test_lineage_leads_from_the_version_to_its_run_data_and_file_and_back(
        self, flywheel: Flywheel, first: tuple[Finished, str, str]
    ) -> None:
        """From the model version: the run, the datasets, the source file pinned to its S3 version; from the
        file: the model versions it fed."""
        done, key, file_version = first
        version = flywheel.version(1)
        source = file_id(f"s3://{flywheel.bucket}/{key}", file_version)

        context = flywheel.svc.metadata.model_context(MODEL, 1)

        assert context.runs == [done.run.run_id] == [version.run_id]
        assert context.datasets == [d.dataset_id for d in version.training_datasets]
        assert context.files == [source]
        assert f"{done.run.run_id}/model.pkl" in context.artifacts
        assert done.run.input["source"]["key"] == key
        assert done.run.input["source"]["version_id"] == file_version
        dataset = flywheel.svc.metadata.get_dataset(context.datasets[0])
        assert (dataset.source_uri, dataset.source_version_id) == (
            f"s3://{flywheel.bucket}/{key}",
            file_version,
        )
        fed = flywheel.svc.metadata.lineage(NodeType.FILE, source, Direction.DOWNSTREAM)
        assert "churn:1" in fed.ids(NodeType.MODEL_VERSION)

    def test_a_second_file_is_judged_against_production_on_the_same_holdout(
        self, flywheel: Flywheel, first: tuple[Finished, str, str], second: Finished
    ) -> None:
        """Given v1 in production, when a second file arrives, then v2 is trained on both files, scored with
        v1 on v2's own holdout (v1's scores recorded as the champion's), and promoted or rejected as its
        gate reasons say: promoted archives v1 with two audit entries; rejected leaves production alone."""
        _, first_key, first_version = first
        v1, v2 = flywheel.version(1), flywheel.version(2)

        assert second.status == "SUCCEEDED"
        assert v2.run_id == second.run.run_id
        assert len(v2.training_datasets) == 2
        holdout_artifact = flywheel.svc.metadata.get_artifact(f"{v2.run_id}/holdout.parquet")
        holdout = read_parquet(flywheel.svc.objects, holdout_artifact.uri, holdout_artifact.sha256)
        contract = parse_contract(CHURN_YAML)
        assert v2.champion_metrics == pytest.approx(
            score(load_model(flywheel.svc, v1.artifact), holdout, contract).metrics
        )
        assert v2.metrics == pytest.approx(
            score(load_model(flywheel.svc, v2.artifact), holdout, contract).metrics
        )
        assert second.run.outcome["champion_version"] == 1
        assert v2.gate is not None and v2.gate.reasons
        assert any("production v1" in r for r in v2.gate.reasons)
        fed = flywheel.svc.metadata.lineage(
            NodeType.FILE, file_id(f"s3://{flywheel.bucket}/{first_key}", first_version), Direction.DOWNSTREAM
        )
        assert {"churn:1", "churn:2"} <= set(fed.ids(NodeType.MODEL_VERSION))
        if v2.gate.passed:
            assert second.entered()[-4:] == ["Promote", "Promoted", "PostDeployCheck", "Finish"]
            assert second.run.status is RunStatus.SUCCEEDED
            assert flywheel.production() == 2
            assert (v1.stage, v2.stage) == (Stage.ARCHIVED, Stage.PRODUCTION)
            newest = flywheel.svc.registry.audit_trail(MODEL, limit=2)
            assert [(t.version, t.from_stage, t.to_stage) for t in newest] == [
                (2, Stage.DEVELOPMENT, Stage.PRODUCTION),
                (1, Stage.PRODUCTION, Stage.ARCHIVED),
            ]
            assert all(t.run_id == v2.run_id for t in newest)
        else:
            assert "Promote" not in second.entered()
            assert second.run.status is RunStatus.REJECTED
            assert flywheel.production() == 1
            assert (v1.stage, v2.stage) == (Stage.PRODUCTION, Stage.REJECTED)
            (latest,) = flywheel.svc.registry.audit_trail(MODEL, limit=1)
            assert (latest.version, latest.to_stage) == (2, Stage.REJECTED)
            assert all(r in latest.reason for r in v2.gate.reasons)

    def test_the_same_s3_event_delivered_twice_starts_one_run(
        self, flywheel: Flywheel, first: tuple[Finished, str, str]
    ) -> None:
        """Given a file whose notification started a run, when S3 delivers the identical event again, then
        the trigger answers 'duplicate': one execution and one run for that object version."""
        key = "incoming/churn/2026-03.csv"
        before = flywheel.executions()
        file_version = flywheel.put(key, churn_csv(600, seed=3))
        delivered = flywheel.delivered(file_version)
        run = flywheel.run_for(key, file_version)
        flywheel.finish(run)

        errored, answer = flywheel.trigger(json.loads(json.dumps(delivered)))

        assert not errored
        (outcome,) = answer["runs"]
        assert outcome["run_id"] == run.run_id
        assert outcome["duplicate"] is True and outcome["started"] is False
        after = flywheel.executions()
        assert len(after) == len(before) + 1
        assert after.count(run.run_id) == 1
        assert [r.run_id for r in flywheel.runs() if r.input.get("source", {}).get("key") == key] == [
            run.run_id
        ]

    def test_the_same_s3_event_redelivered_while_its_run_is_in_flight_answers_duplicate(
        self, flywheel: Flywheel, first: tuple[Finished, str, str]
    ) -> None:
        """Given a file whose run is still running, when S3 delivers its event again, twice at once, then
        Step Functions answers each start as if it were new (same name, same input), yet the trigger says
        'duplicate' both times: one execution, one run, one 'started'."""
        key = "incoming/churn/2026-04.csv"
        before = flywheel.executions()
        file_version = flywheel.put(key, churn_csv(600, seed=4))
        delivered = flywheel.delivered(file_version)
        run = flywheel.run_for(key, file_version)
        sfn = flywheel.cloud.client("stepfunctions")
        assert sfn.describe_execution(executionArn=run.execution_arn)["status"] == "RUNNING"

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: flywheel.trigger(json.loads(json.dumps(delivered))), range(2)))

        for errored, answer in answers:
            assert not errored
            (outcome,) = answer["runs"]
            assert outcome["run_id"] == run.run_id
            assert (outcome["started"], outcome["duplicate"]) == (False, True), outcome
        assert flywheel.finish(run).status == "SUCCEEDED"
        after = flywheel.executions()
        assert len(after) == len(before) + 1 and after.count(run.run_id) == 1

    @pytest.mark.parametrize("case", sorted(CORPUS))
    def test_a_bad_file_is_quarantined_with_its_rule_and_never_retried(
        self, flywheel: Flywheel, first: tuple[Finished, str, str], case: str
    ) -> None:
        """Given production in place, when a file breaking one rule lands, then it moves to quarantine/churn/
        beside <name>.error.json naming that rule (column, count, examples), the run fails at validate with
        DataValidationError after one attempt (never retried), the upload's version is kept, and production
        is untouched."""
        filename, body, rule = CORPUS[case]
        column, count, example = EXPECTED[case]
        name = f"{case.replace('_', '-')}-{filename}"
        key = f"incoming/churn/{name}"
        production = flywheel.production()
        assert production is not None
        versions_before = len(flywheel.svc.registry.search_model_versions(MODEL))

        file_version = flywheel.put(key, body)
        done = flywheel.finish(flywheel.run_for(key, file_version))

        assert done.status == "FAILED" and done.error == "PipelineFailed"
        assert done.run.status is RunStatus.FAILED
        assert done.run.error is not None
        assert (done.run.error.step, done.run.error.type) == ("validate", "DataValidationError")
        assert name in done.run.error.message
        assert done.attempts("Validate") == 1
        assert done.lambda_errors() == ["DataValidationError"]
        assert "Train" not in done.entered()
        assert [(s.name, s.status) for s in done.steps] == [("validate", StepStatus.FAILED)]
        report = flywheel.quarantine_report(f"quarantine/churn/{name}")
        assert report["error"] == "DataValidationError"
        assert (report["source"], report["source_version_id"]) == (
            f"s3://{flywheel.bucket}/{key}",
            file_version,
        )
        assert report["run_id"] == done.run.run_id
        (problem,) = report["problems"]
        assert (problem["rule"], problem["column"], problem["count"]) == (rule, column, count)
        assert example is None or example in problem["examples"]
        assert problem["message"]
        assert flywheel.get(f"quarantine/churn/{name}") == body
        assert not flywheel.exists(key)
        assert flywheel.get(key, file_version) == body
        assert flywheel.production() == production
        assert len(flywheel.svc.registry.search_model_versions(MODEL)) == versions_before

    def test_a_file_for_a_model_without_a_contract_is_quarantined_naming_the_missing_contract(
        self, flywheel: Flywheel
    ) -> None:
        key = "incoming/nocontract/data.csv"
        body = churn_csv(300, seed=4)

        file_version = flywheel.put(key, body)
        done = flywheel.finish(flywheel.run_for(key, file_version, model="nocontract"))

        assert done.status == "FAILED"
        assert done.run.error is not None
        assert (done.run.error.step, done.run.error.type) == ("validate", "ContractError")
        assert done.attempts("Validate") == 1  # a ContractError is never retried either
        report = flywheel.quarantine_report("quarantine/nocontract/data.csv")
        assert report["error"] == "ContractError"
        assert "no data contract for model 'nocontract'" in report["summary"]
        assert flywheel.get("quarantine/nocontract/data.csv") == body
        assert not flywheel.exists(key) and flywheel.get(key, file_version) == body

    def test_a_file_directly_under_incoming_is_quarantined_as_unrouted(self, flywheel: Flywheel) -> None:
        """A file that names no model starts no run: it goes to quarantine/_unrouted/ with the reason."""
        runs_before = len(flywheel.runs(None))
        executions_before = len(flywheel.executions())
        body = churn_csv(300, seed=5)

        file_version = flywheel.put("incoming/loose.csv", body)

        assert len(flywheel.runs(None)) == runs_before
        assert len(flywheel.executions()) == executions_before
        report = flywheel.quarantine_report("quarantine/_unrouted/loose.csv")
        assert report["source"] == f"s3://{flywheel.bucket}/incoming/loose.csv"
        assert "incoming/<model>/" in report["summary"]
        assert (
            report["kind"] == "data"
            and report["model"] is None
            and report["problems"][0]["rule"] == "unrouted"
        )
        assert flywheel.get("quarantine/_unrouted/loose.csv") == body
        assert not flywheel.exists("incoming/loose.csv")
        assert flywheel.get("incoming/loose.csv", file_version) == body

    def test_a_transient_training_failure_is_retried_and_the_run_succeeds(
        self,
        flywheel: Flywheel,
        first: tuple[Finished, str, str],
        train_behaving: Callable[[Callable[[int], None]], list[int]],
    ) -> None:
        def throttled_once(call: int) -> None:
            if call == 1:
                raise TransientError("S3 SlowDown reading the training window")

        calls = train_behaving(throttled_once)
        errored, answer = flywheel.trigger({"model": MODEL, "requested_by": "test"})
        assert not errored
        (outcome,) = answer["runs"]

        done = flywheel.finish(flywheel.svc.metadata.get_run(outcome["run_id"]))

        assert done.status == "SUCCEEDED"
        assert calls == [1, 2]
        assert done.attempts("Train") == 2
        assert done.lambda_errors() == ["TransientError"]
        train_attempts = [(s.attempt, s.status) for s in done.steps if s.name == "train"]
        assert train_attempts == [(1, StepStatus.FAILED), (2, StepStatus.SUCCEEDED)]
        assert done.run.status in {RunStatus.SUCCEEDED, RunStatus.REJECTED}
        assert done.run.error is None
        assert (done.run.status is RunStatus.SUCCEEDED) == done.run.outcome["gate_passed"]

    def test_a_training_failure_that_is_not_transient_fails_the_run_once_and_keeps_production(
        self,
        flywheel: Flywheel,
        first: tuple[Finished, str, str],
        train_behaving: Callable[[Callable[[int], None]], list[int]],
    ) -> None:
        def broken(call: int) -> None:
            raise ValueError("Input contains NaN after preprocessing")

        calls = train_behaving(broken)
        production = flywheel.production()
        versions_before = len(flywheel.svc.registry.search_model_versions(MODEL))
        errored, answer = flywheel.trigger({"model": MODEL, "requested_by": "test"})
        assert not errored

        done = flywheel.finish(flywheel.svc.metadata.get_run(answer["runs"][0]["run_id"]))

        assert done.status == "FAILED" and done.error == "PipelineFailed"
        assert calls == [1]
        assert done.attempts("Train") == 1
        assert done.lambda_errors() == ["ValueError"]
        assert done.entered()[-3:] == ["TrainFailed", "RecordFailure", "Failed"]
        assert done.run.status is RunStatus.FAILED
        assert done.run.error is not None
        assert (done.run.error.step, done.run.error.type, done.run.error.message) == (
            "train",
            "ValueError",
            "Input contains NaN after preprocessing",
        )
        assert [(s.name, s.status) for s in done.steps] == [("train", StepStatus.FAILED)]
        assert flywheel.production() == production
        assert len(flywheel.svc.registry.search_model_versions(MODEL)) == versions_before

    def test_a_manual_request_trains_on_the_existing_datasets(
        self, flywheel: Flywheel, first: tuple[Finished, str, str]
    ) -> None:
        """Given validated datasets, when a person asks for a run, then it skips Validate, trains on the
        datasets there are, and is recorded with reason manual and who asked."""
        datasets = [d.dataset_id for d in flywheel.svc.metadata.list_datasets(MODEL)]
        production = flywheel.production()

        errored, answer = flywheel.trigger({"model": MODEL, "requested_by": "test"})

        assert not errored
        (outcome,) = answer["runs"]
        assert outcome["started"] and outcome["reason"] == "manual"
        done = flywheel.finish(flywheel.svc.metadata.get_run(outcome["run_id"]))
        assert done.status == "SUCCEEDED"
        assert done.run.reason is RunReason.MANUAL
        assert done.run.input["requested_by"] == "test"
        assert "Validate" not in done.entered() and done.entered()[:4] == [
            "HasNewFile",
            "PlanTrain",
            "TrainEngine",
            "Train",
        ]
        assert [s.name for s in done.steps][:3] == ["train", "evaluate", "register"]
        inputs = flywheel.svc.metadata.upstream(NodeType.RUN, done.run.run_id)
        assert sorted(e.src.id for e in inputs if e.src.type is NodeType.DATASET) == sorted(datasets)
        assert not [e for e in inputs if e.src.type is NodeType.FILE]
        version = flywheel.version(done.run.outcome["version"])
        assert version.tags["reason"] == "manual"
        if done.run.outcome["promoted"]:
            assert flywheel.production() == version.version
        else:
            assert flywheel.production() == production and version.stage is Stage.REJECTED

    def test_a_manual_request_for_a_model_without_a_contract_is_a_clear_contract_error(
        self, flywheel: Flywheel
    ) -> None:
        errored, answer = flywheel.trigger({"model": "no-such-model", "requested_by": "test"})

        assert errored
        assert answer["errorType"] == "ContractError"
        assert "there is no data contract for model 'no-such-model'" in answer["errorMessage"]
        assert flywheel.runs("no-such-model") == []


# --- the schedule ------------------------------------------------------------------------------------------


class TestTheRetrainSchedule:
    def test_without_new_data_since_the_last_success_the_schedule_records_a_skipped_run(
        self, flywheel: Flywheel, first: tuple[Finished, str, str]
    ) -> None:
        """Given a successful run on the only file there is, when the retrain schedule fires, then nothing
        starts and a skipped run records why."""
        done, _, _ = first
        executions = flywheel.executions()
        due = flywheel.cloud.scheduler.next_due("retrain")

        fired = flywheel.cloud.scheduler.tick(due)

        # The hourly monitor schedule fires too on the way to 03:00; it starts no run on this traffic.
        assert [f.schedule for f in fired if f.schedule != "monitor"] == ["retrain"]
        newest = flywheel.runs()[0]
        assert newest.reason is RunReason.SCHEDULE
        assert newest.status is RunStatus.SKIPPED
        assert newest.outcome["skipped"].startswith(f"no new data since run {done.run.run_id} (succeeded)")
        assert flywheel.executions() == executions

    def test_with_a_dataset_newer_than_the_last_success_the_schedule_starts_a_run(
        self,
        flywheel: Flywheel,
        first: tuple[Finished, str, str],
        train_behaving: Callable[[Callable[[int], None]], list[int]],
    ) -> None:
        """Given a file validated after the last success whose own run then failed in training, when the
        schedule fires, then a schedule run starts on the datasets there are and names the new one."""

        def broken(call: int) -> None:
            raise ValueError("out of memory")

        train_behaving(broken)
        key = "incoming/churn/late.csv"
        file_version = flywheel.put(key, churn_csv(600, seed=6))
        failed = flywheel.finish(flywheel.run_for(key, file_version))
        assert failed.run.status is RunStatus.FAILED
        new_dataset = flywheel.svc.metadata.find_dataset_by_source(
            MODEL, f"s3://{flywheel.bucket}/{key}", file_version
        )
        assert new_dataset is not None
        train_behaving(lambda call: None)  # training works again

        flywheel.cloud.scheduler.tick(flywheel.cloud.scheduler.next_due("retrain"))

        newest = flywheel.runs()[0]
        assert newest.reason is RunReason.SCHEDULE
        assert newest.input["new_data"] == [new_dataset.dataset_id]
        done = flywheel.finish(newest)
        assert done.status == "SUCCEEDED"
        assert "Validate" not in done.entered()
        assert done.run.status in {RunStatus.SUCCEEDED, RunStatus.REJECTED}
        version = flywheel.version(done.run.outcome["version"])
        assert new_dataset.dataset_id in [d.dataset_id for d in version.training_datasets]
