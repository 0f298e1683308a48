"""The pipeline's steps on in-memory services: what each one reads, writes, records and hands on.

Each step is called as its Lambda handler calls it, ``step(state, svc)``, with the state passed through JSON
between steps as Step Functions passes it. The contract is the demo's with a logistic regression, so a
whole run takes a fraction of a second; the training window and ``combine`` are tested as pure functions.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from shared.data.contract import DataContract
from shared.data.datasets import read_parquet
from shared.errors import ConflictError, ContractError, DataValidationError, NotFoundError
from shared.hashing import sha256_hex
from shared.metadata import (
    ArtifactKind,
    Dataset,
    Direction,
    NodeType,
    RunReason,
    RunStatus,
    StepStatus,
    TimeRange,
    file_id,
)
from shared.ml.evaluation import score
from shared.ml.training import library_versions, prepare_features, prepare_row
from shared.ml.training_window import combine, training_window
from shared.pipeline.delivery import promote_step
from shared.pipeline.intake import validate_step
from shared.pipeline.runs import finish_step, record_failure
from shared.pipeline.state import RunState, SourceFile
from shared.pipeline.steps import (
    UntrustedChampionError,
    evaluate_step,
    load_model,
    register_step,
    train_step,
)
from shared.pipeline.trigger import RunRequest, on_new_object, on_request
from shared.pipeline.verification import post_deploy_check_step, verify_step
from shared.registry import ServingFlavor, Stage
from shared.services import Services
from shared.serving.runtime import load_served_model
from shared.storage import ObjectRef
from tests.fixtures.services import (
    churn_contract,
    churn_csv,
    in_memory_services,
    put_churn_contract,
    serving_invoker,
    upload,
)

pytestmark = pytest.mark.unit

FAST_TRAINING = {"estimator": "logistic_regression", "params": {"max_iter": 500}, "window": {"files": 20}}


def fast_contract(**changes: Any) -> DataContract:
    return churn_contract(training=FAST_TRAINING, **changes)


@pytest.fixture
def svc() -> Services:
    services = in_memory_services()
    put_churn_contract(services, fast_contract())
    return services


def through_json(state: RunState) -> RunState:
    """What the next state receives: Step Functions passes the payload as JSON."""
    return RunState.model_validate(json.loads(json.dumps(state.dump())))


def new_file(svc: Services, key: str, body: bytes) -> RunState:
    """Upload ``body`` and let the trigger start its run; the state the pipeline starts with."""
    ref = upload(svc, key, body)
    outcome = on_new_object(svc, ref.bucket, ref.key, ref.version_id, sha256_hex(body)[:32])
    started: dict[str, dict[str, Any]] = svc.workflow.started  # type: ignore[attr-defined]
    return RunState.model_validate(started[outcome.run_id])


def run_pipeline(svc: Services, state: RunState) -> RunState:
    """The state machine's path under the automatic policy: Validate when there is a file, Train, Evaluate,
    Register; when the gate passed, Verify, and Promote and PostDeployCheck when verification passed;
    Finish."""
    if state.source is not None:
        state = through_json(validate_step(state, svc))
    state = through_json(train_step(state, svc))
    state = through_json(evaluate_step(state, svc))
    state = through_json(register_step(state, svc))
    if state.require("evaluation").passed:
        state = through_json(verify_step(state, svc, serving_invoker(svc)))
        if state.require("verification")["passed"]:
            state = through_json(promote_step(state, svc))
            state = through_json(
                post_deploy_check_step(state, svc, serving_invoker(svc), sleep=lambda _: None)
            )
    return through_json(finish_step(state, svc))


def production_version(svc: Services) -> int | None:
    try:
        return svc.registry.get_alias("churn", "production").version
    except NotFoundError:
        return None


# --- Validate -----------------------------------------------------------------------------------------------


def test_validate_turns_a_valid_file_into_a_dataset_pinned_to_its_source_version(svc: Services) -> None:
    """Given a valid upload, when Validate runs, then a typed Parquet dataset is stored and recorded with
    its sha256, rows, time range and the exact source version, and lineage links the file to it."""
    body = churn_csv(300, seed=1)
    state = new_file(svc, "incoming/churn/jan.csv", body)
    source = state.require("source")

    validated = validate_step(state, svc)

    dataset = svc.metadata.get_dataset(validated.require("dataset_id"))
    assert dataset.rows == 300
    assert dataset.source_uri == f"s3://{svc.settings.data_bucket}/incoming/churn/jan.csv"
    assert dataset.source_version_id == source.version_id
    assert dataset.uri == f"s3://{svc.settings.data_bucket}/datasets/churn/{dataset.dataset_id}.parquet"
    stored = svc.objects.get(ObjectRef.parse(dataset.uri, dataset.version_id))
    assert sha256_hex(stored.body) == dataset.sha256
    assert dataset.time_range is not None
    assert dataset.time_range.start and dataset.time_range.end
    assert dataset.time_range.start < dataset.time_range.end
    frame = read_parquet(svc.objects, dataset.uri, dataset.sha256, dataset.version_id)
    assert len(frame) == 300 and frame["tenure_months"].dtype == "float64"
    file_node = file_id(source.uri, source.version_id)
    downstream = svc.metadata.lineage(NodeType.FILE, file_node, Direction.DOWNSTREAM, depth=1)
    assert downstream.ids(NodeType.DATASET) == [dataset.dataset_id]
    assert downstream.ids(NodeType.RUN) == [state.run_id]
    (step,) = svc.metadata.list_steps(state.run_id)
    assert (step.name, step.status) == ("validate", StepStatus.SUCCEEDED)
    assert svc.metadata.get_run(state.run_id).status is RunStatus.RUNNING


def test_validating_the_same_object_version_again_reuses_its_dataset(svc: Services) -> None:
    state = new_file(svc, "incoming/churn/jan.csv", churn_csv(300, seed=1))

    first = validate_step(state, svc)
    second = validate_step(state, svc)

    assert first.dataset_id == second.dataset_id
    assert len(svc.metadata.list_datasets("churn")) == 1
    assert len(svc.objects.list(svc.settings.data_bucket, "datasets/")) == 1


def test_a_bad_file_is_quarantined_with_a_report_of_every_problem(svc: Services) -> None:
    """Given a file with an unknown plan and text in a numeric column, when Validate runs, then it raises
    DataValidationError, the file moves to quarantine/churn/ with <name>.error.json listing both problems
    (column, rule, count, examples), and the uploaded version is still in the bucket."""
    frame = pd.read_csv(io.BytesIO(churn_csv(300, seed=2)), dtype=str, keep_default_na=False)
    frame.loc[4, "plan"] = "gold"
    frame.loc[7, "tenure_months"] = "twelve"
    body = frame.to_csv(index=False).encode()
    state = new_file(svc, "incoming/churn/feb.csv", body)
    source = state.require("source")
    bucket = svc.settings.data_bucket

    with pytest.raises(DataValidationError) as raised:
        validate_step(state, svc)

    assert svc.objects.list(bucket, "incoming/") == []
    assert svc.objects.get(ObjectRef(bucket, "quarantine/churn/feb.csv")).body == body
    assert svc.objects.get(source.ref).body == body  # the uploaded version is kept
    report = json.loads(svc.objects.get(ObjectRef(bucket, "quarantine/churn/feb.csv.error.json")).body)
    assert report["model"] == "churn"
    assert report["source"] == source.uri
    assert report["source_version_id"] == source.version_id
    assert report["quarantined_as"] == f"s3://{bucket}/quarantine/churn/feb.csv"
    assert report["quarantined_version_id"]
    assert report["run_id"] == state.run_id
    assert report["error"] == "DataValidationError"
    assert report["summary"] == str(raised.value)
    problems = {p["rule"]: p for p in report["problems"]}
    assert set(problems) == {"not_allowed", "wrong_type"}
    assert problems["not_allowed"]["column"] == "plan"
    assert problems["not_allowed"]["count"] == 1
    assert problems["not_allowed"]["examples"] == ["gold"]
    assert problems["wrong_type"]["column"] == "tenure_months"
    assert problems["wrong_type"]["examples"] == ["twelve"]
    assert all(p["message"] for p in report["problems"])
    (step,) = svc.metadata.list_steps(state.run_id)
    assert step.status is StepStatus.FAILED
    assert step.error is not None and step.error.type == "DataValidationError"
    assert svc.metadata.list_datasets("churn") == []


def test_a_file_for_a_model_without_a_contract_is_quarantined_naming_the_missing_contract(
    svc: Services,
) -> None:
    state = new_file(svc, "incoming/ghost/data.csv", churn_csv(300, seed=1))
    bucket = svc.settings.data_bucket

    with pytest.raises(ContractError, match="no data contract for model 'ghost'"):
        validate_step(state, svc)

    report = json.loads(svc.objects.get(ObjectRef(bucket, "quarantine/ghost/data.csv.error.json")).body)
    assert report["error"] == "ContractError"
    assert "no data contract for model 'ghost'" in report["summary"]
    assert svc.objects.list(bucket, "incoming/") == []


def test_a_source_that_is_gone_fails_validate_without_a_quarantine_report(svc: Services) -> None:
    """A file deleted before its run validated it: nothing to move, so nothing is put in quarantine."""
    state = new_file(svc, "incoming/churn/jan.csv", churn_csv(300, seed=1))
    state = state.model_copy(
        update={"source": SourceFile(bucket=svc.settings.data_bucket, key="incoming/churn/gone.csv")}
    )

    with pytest.raises(NotFoundError):
        validate_step(state, svc)

    assert svc.objects.list(svc.settings.data_bucket, "quarantine/") == []


# --- the whole run ------------------------------------------------------------------------------------------


def test_a_new_file_is_validated_trained_evaluated_registered_and_promoted(svc: Services) -> None:
    """Given the first file for a model, when its run goes through every step, then v1 is production and
    records the data, parameters, metrics, code and libraries that made it, and why it passed."""
    state = new_file(svc, "incoming/churn/jan.csv", churn_csv(600, seed=1))

    done = run_pipeline(svc, state)

    run = svc.metadata.get_run(state.run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert [(s.name, s.status) for s in svc.metadata.list_steps(state.run_id)] == [
        (name, StepStatus.SUCCEEDED)
        for name in (
            "validate",
            "train",
            "evaluate",
            "register",
            "verify",
            "promote",
            "post-deploy-check",
            "finish",
        )
    ]
    assert production_version(svc) == 1
    version = svc.registry.get_model_version_by_alias("churn", "production")
    assert version.stage is Stage.PRODUCTION
    assert version.run_id == state.run_id
    dataset = svc.metadata.get_dataset(done.require("dataset_id"))
    (trained_on,) = version.training_datasets
    assert (trained_on.dataset_id, trained_on.sha256, trained_on.version_id, trained_on.rows) == (
        dataset.dataset_id,
        dataset.sha256,
        dataset.version_id,
        600,
    )
    assert version.params["estimator"] == "logistic_regression"
    assert version.params["max_iter"] == 500
    assert set(version.metrics) == {"accuracy", "f1", "roc_auc", "log_loss"}
    assert version.code_version == "src-unit-test"
    assert version.library_versions == library_versions()
    assert version.gate is not None and version.gate.passed
    assert any("roc_auc" in r and "meets the floor" in r for r in version.gate.reasons)
    assert version.champion_metrics is None
    assert run.outcome["version"] == 1 and run.outcome["promoted"] is True
    assert run.outcome["gate_reasons"] == version.gate.reasons
    assert [(t.from_stage, t.to_stage) for t in reversed(svc.registry.audit_trail("churn"))] == [
        (None, Stage.DEVELOPMENT),
        (Stage.DEVELOPMENT, Stage.PRODUCTION),
    ]
    context = svc.metadata.model_context("churn", 1)
    assert context.runs == [state.run_id]
    assert context.datasets == [dataset.dataset_id]
    source = state.require("source")
    assert context.files == [file_id(source.uri, source.version_id)]


def test_a_candidate_that_passes_replaces_production_judged_on_the_same_holdout(svc: Services) -> None:
    """Given v1 in production, when a second file's candidate passes the gates, then it was compared with v1
    on its own holdout (v1's metrics recorded as the champion's), it becomes production, v1 is archived, and
    the trail has the two entries of that promotion."""
    run_pipeline(svc, new_file(svc, "incoming/churn/jan.csv", churn_csv(600, seed=1)))
    put_churn_contract(
        svc, fast_contract(gates={"min": {"roc_auc": 0.5}, "max_regression": {"roc_auc": 1.0}})
    )
    second = new_file(svc, "incoming/churn/feb.csv", churn_csv(600, seed=2))

    done = run_pipeline(svc, second)

    v1, v2 = svc.registry.search_model_versions("churn")
    candidate, evaluation = done.require("candidate"), done.require("evaluation")
    assert evaluation.passed and evaluation.champion_version == 1
    holdout = read_parquet(svc.objects, candidate.holdout_uri, candidate.holdout_sha256)
    champion_now = score(load_model(svc, v1.artifact), holdout, fast_contract()).metrics
    assert v2.champion_metrics == pytest.approx(champion_now)
    assert len(candidate.datasets) == 2  # the window holds both files
    assert (v1.stage, v2.stage) == (Stage.ARCHIVED, Stage.PRODUCTION)
    assert production_version(svc) == 2
    newest = svc.registry.audit_trail("churn", limit=2)
    assert [(t.version, t.from_stage, t.to_stage) for t in newest] == [
        (2, Stage.DEVELOPMENT, Stage.PRODUCTION),
        (1, Stage.PRODUCTION, Stage.ARCHIVED),
    ]
    assert all(t.run_id == second.run_id for t in newest)
    assert newest[0].alias == "production" and newest[0].previous_version == 1
    assert svc.metadata.get_run(second.run_id).status is RunStatus.SUCCEEDED


def test_a_champion_whose_artifact_is_gone_stops_evaluate_instead_of_waving_the_candidate_through(
    svc: Services,
) -> None:
    """Given v1 in production, when its model.pkl is no longer where the registry says, then Evaluate
    refuses to judge the next candidate (no champion would mean no regression gate): the step fails with
    the version and the cause, and production is untouched."""
    run_pipeline(svc, new_file(svc, "incoming/churn/jan.csv", churn_csv(600, seed=1)))
    champion = svc.registry.get_model_version_by_alias("churn", "production")
    where = ObjectRef.parse(champion.artifact.uri)
    svc.objects.move(where, ObjectRef(where.bucket, f"elsewhere/{where.key}"))
    state = through_json(validate_step(new_file(svc, "incoming/churn/feb.csv", churn_csv(600, seed=2)), svc))
    state = through_json(train_step(state, svc))

    with pytest.raises(UntrustedChampionError) as refused:
        evaluate_step(state, svc)

    assert "production v1 cannot be loaded to judge the candidate (NotFoundError" in str(refused.value)
    (failed,) = [s for s in svc.metadata.list_steps(state.run_id) if s.name == "evaluate"]
    assert failed.status is StepStatus.FAILED
    assert production_version(svc) == 1
    assert len(svc.registry.search_model_versions("churn")) == 1


def test_a_candidate_that_fails_the_gates_is_registered_rejected_and_production_stays(
    svc: Services,
) -> None:
    """Given v1 in production, when the next candidate misses a floor, then it is registered as rejected
    with the reason, the run ends rejected (not failed), and production is untouched."""
    run_pipeline(svc, new_file(svc, "incoming/churn/jan.csv", churn_csv(600, seed=1)))
    put_churn_contract(svc, fast_contract(gates={"min": {"roc_auc": 0.999}}))
    second = new_file(svc, "incoming/churn/feb.csv", churn_csv(600, seed=2))

    done = run_pipeline(svc, second)

    v1, v2 = svc.registry.search_model_versions("churn")
    assert (v1.stage, v2.stage) == (Stage.PRODUCTION, Stage.REJECTED)
    assert production_version(svc) == 1
    assert v2.gate is not None and not v2.gate.passed
    assert v2.gate.reasons == done.require("evaluation").reasons
    assert any("below the floor 0.999" in r for r in v2.gate.reasons)
    run = svc.metadata.get_run(second.run_id)
    assert run.status is RunStatus.REJECTED
    assert run.outcome["promoted"] is False and run.outcome["version"] == 2
    assert "promote" not in [s.name for s in svc.metadata.list_steps(second.run_id)]
    (latest,) = svc.registry.audit_trail("churn", limit=1)
    assert (latest.version, latest.to_stage) == (2, Stage.REJECTED)
    assert "below the floor" in latest.reason


def test_a_manual_run_trains_on_the_datasets_there_are(svc: Services) -> None:
    run_pipeline(svc, new_file(svc, "incoming/churn/jan.csv", churn_csv(600, seed=1)))
    outcome = on_request(svc, RunRequest(model="churn", requested_by="ana"))
    started: dict[str, dict[str, Any]] = svc.workflow.started  # type: ignore[attr-defined]

    done = run_pipeline(svc, RunState.model_validate(started[outcome.run_id]))

    assert done.require("candidate").datasets == [d.dataset_id for d in svc.metadata.list_datasets("churn")]
    assert "validate" not in [s.name for s in svc.metadata.list_steps(outcome.run_id)]
    assert svc.metadata.get_run(outcome.run_id).reason is RunReason.MANUAL


def test_train_without_any_dataset_is_a_data_validation_error(svc: Services) -> None:
    outcome = on_request(svc, RunRequest(model="churn"))
    started: dict[str, dict[str, Any]] = svc.workflow.started  # type: ignore[attr-defined]

    with pytest.raises(DataValidationError, match=r"no validated datasets yet.*incoming/churn/"):
        train_step(RunState.model_validate(started[outcome.run_id]), svc)


def test_re_running_register_promote_and_finish_changes_nothing_twice(svc: Services) -> None:
    """A retried or redelivered step must not register a second version or write a second promotion."""
    state = new_file(svc, "incoming/churn/jan.csv", churn_csv(600, seed=1))
    done = run_pipeline(svc, state)
    trail = svc.registry.audit_trail("churn")

    again = finish_step(promote_step(register_step(done, svc), svc), svc)

    assert again.version == done.version == 1
    assert [v.version for v in svc.registry.search_model_versions("churn")] == [1]
    assert svc.registry.audit_trail("churn") == trail
    assert svc.metadata.get_run(state.run_id).status is RunStatus.SUCCEEDED


def test_promote_refuses_to_replace_a_production_model_the_candidate_was_never_compared_with(
    svc: Services,
) -> None:
    """Given a candidate evaluated when production was v1, when another run promoted v2 meanwhile, then
    Promote fails with ConflictError and production stays where the other run put it."""
    run_pipeline(svc, new_file(svc, "incoming/churn/jan.csv", churn_csv(600, seed=1)))
    put_churn_contract(
        svc, fast_contract(gates={"min": {"roc_auc": 0.5}, "max_regression": {"roc_auc": 1.0}})
    )
    slow = new_file(svc, "incoming/churn/feb.csv", churn_csv(600, seed=2))
    slow = register_step(evaluate_step(train_step(validate_step(slow, svc), svc), svc), svc)
    slow = verify_step(slow, svc, serving_invoker(svc))
    run_pipeline(svc, new_file(svc, "incoming/churn/mar.csv", churn_csv(600, seed=3)))
    assert production_version(svc) == 3

    with pytest.raises(ConflictError):
        promote_step(slow, svc)

    assert production_version(svc) == 3
    assert svc.registry.get_model_version("churn", 2).stage is Stage.DEVELOPMENT


# --- RecordFailure ------------------------------------------------------------------------------------------


def lambda_cause(error_type: str, message: str) -> str:
    """Lambda's error body, which Step Functions puts in the Catch's ``Cause`` as a JSON string."""
    return json.dumps(
        {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": "0f9e8d7c",
            "stackTrace": ['  File "/var/task/shared/steps.py", line 1, in train_step'],
        }
    )


@pytest.mark.parametrize(
    ("caught", "expected_type", "expected_message"),
    [
        pytest.param(
            {"Error": "ValueError", "Cause": lambda_cause("ValueError", "the estimator exploded")},
            "ValueError",
            "the estimator exploded",
            id="lambda-error-body",
        ),
        pytest.param(
            {
                "Error": "Sandbox.Timedout",
                "Cause": lambda_cause(
                    "Sandbox.Timedout", "RequestId: 1 Error: Task timed out after 900.00 seconds"
                ),
            },
            "Sandbox.Timedout",
            "RequestId: 1 Error: Task timed out after 900.00 seconds",
            id="lambda-timeout",
        ),
        pytest.param(
            {"Error": "States.Timeout", "Cause": "The state timed out."},
            "States.Timeout",
            "The state timed out.",
            id="plain-cause",
        ),
        pytest.param({"Error": "States.TaskFailed"}, "States.TaskFailed", "States.TaskFailed", id="no-cause"),
        pytest.param({}, "Unknown", "Unknown", id="nothing-caught"),
    ],
)
def test_record_failure_marks_the_run_failed_with_the_step_type_and_message(
    svc: Services, caught: dict[str, Any], expected_type: str, expected_message: str
) -> None:
    """Given a step that failed and was caught into ``$.error``, when RecordFailure runs, then the run is
    failed with the step, the error type and message read from Lambda's error body when there is one, and
    the step's running attempt (one that never recorded its own end, e.g. a timeout) is marked failed."""
    outcome = on_request(svc, RunRequest(model="churn"))
    svc.metadata.start_step(outcome.run_id, "train")
    state = RunState(
        run_id=outcome.run_id, model="churn", reason=RunReason.MANUAL, failed_step="train", error=caught
    )

    record_failure(through_json(state), svc)

    run = svc.metadata.get_run(outcome.run_id)
    assert run.status is RunStatus.FAILED
    assert run.ended_at is not None
    assert run.error is not None
    assert (run.error.step, run.error.type, run.error.message) == ("train", expected_type, expected_message)
    (step,) = svc.metadata.list_steps(outcome.run_id)
    assert step.status is StepStatus.FAILED
    assert step.error == run.error


def test_record_failure_keeps_the_attempt_a_step_already_marked_failed(svc: Services) -> None:
    """A step that recorded its own failure is not given a second, phantom attempt."""
    state = new_file(svc, "incoming/churn/bad.csv", b"")
    with pytest.raises(DataValidationError):
        validate_step(state, svc)
    caught = {"Error": "DataValidationError", "Cause": lambda_cause("DataValidationError", "empty")}

    record_failure(state.model_copy(update={"failed_step": "validate", "error": caught}), svc)

    (step,) = svc.metadata.list_steps(state.run_id)
    assert step.status is StepStatus.FAILED and step.attempt == 1
    assert svc.metadata.get_run(state.run_id).error.type == "DataValidationError"  # type: ignore[union-attr]


# --- the training window and combine (pure) -----------------------------------------------------------------

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def recorded(dataset_id: str, end_day: int | None) -> Dataset:
    time_range = (
        TimeRange(start=T0 + timedelta(days=end_day - 1), end=T0 + timedelta(days=end_day))
        if end_day is not None
        else None
    )
    return Dataset(
        dataset_id=dataset_id,
        model="churn",
        uri=f"s3://data/datasets/churn/{dataset_id}.parquet",
        sha256="ab" * 32,
        rows=10,
        time_range=time_range,
        source_uri=f"s3://data/incoming/churn/{dataset_id}.csv",
        created_at=T0,
    )


def windowed(**window: int) -> DataContract:
    return churn_contract(training={"window": window})


def test_a_files_window_keeps_the_latest_datasets_oldest_first() -> None:
    datasets = [recorded(f"d{i}", i) for i in range(1, 6)]

    assert [d.dataset_id for d in training_window(datasets, windowed(files=2))] == ["d4", "d5"]
    assert [d.dataset_id for d in training_window(datasets, windowed(files=20))] == [
        "d1",
        "d2",
        "d3",
        "d4",
        "d5",
    ]


def test_a_days_window_keeps_the_datasets_that_reach_into_the_last_days() -> None:
    """Counted back from the newest dataset's end; a dataset without a time range cannot be placed, so it
    is kept rather than silently dropped."""
    datasets = [recorded("d1", 1), recorded("d10", 10), recorded("undated", None), recorded("d20", 20)]

    kept = training_window(datasets, windowed(days=10))

    assert [d.dataset_id for d in kept] == ["d10", "undated", "d20"]


def test_a_days_window_without_any_time_range_keeps_everything() -> None:
    datasets = [recorded("a", None), recorded("b", None)]

    assert training_window(datasets, windowed(days=3)) == datasets


def rows(*records: tuple[str, int, str]) -> pd.DataFrame:
    """(customer id, day, plan) rows with the other columns filled in."""
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in records],
            "event_time": pd.to_datetime([T0 + timedelta(days=r[1]) for r in records], utc=True),
            "plan": [r[2] for r in records],
        }
    )


def test_combine_keeps_the_latest_row_of_an_id_seen_in_several_datasets() -> None:
    older = rows(("C1", 1, "basic"), ("C2", 1, "basic"))
    newer = rows(("C2", 5, "pro"), ("C3", 5, "plus"))

    combined = combine([older, newer], windowed(files=20), "customer_id")

    assert sorted(zip(combined["customer_id"], combined["plan"], strict=True)) == [
        ("C1", "basic"),
        ("C2", "pro"),
        ("C3", "plus"),
    ]


def test_combine_with_a_days_window_drops_rows_older_than_the_window() -> None:
    frames = [rows(("C1", 0, "basic"), ("C2", 3, "basic")), rows(("C3", 10, "pro"), ("C4", 12, "plus"))]

    combined = combine(frames, windowed(days=9), "customer_id")

    assert list(combined["customer_id"]) == ["C2", "C3", "C4"]
    assert list(combined.index) == [0, 1, 2]


def test_combine_with_a_files_window_keeps_every_row() -> None:
    frames = [rows(("C1", 0, "basic")), rows(("C2", 300, "pro"))]

    assert list(combine(frames, windowed(files=2), "customer_id")["customer_id"]) == ["C1", "C2"]


# --- the serving flavour ------------------------------------------------------------------------------------


def test_train_stores_the_onnx_model_and_register_records_the_flavour_and_its_parity(svc: Services) -> None:
    """Given a model that converts, when its run goes through the pipeline, then the version is served as
    ONNX from an artifact whose sha256 the registry holds, with the parity figures as tags, and it answers
    as the pickled pipeline does."""
    state = new_file(svc, "incoming/churn/jan.csv", churn_csv(600, seed=1))

    done = run_pipeline(svc, state)

    candidate = done.require("candidate")
    version = svc.registry.get_model_version("churn", 1)
    assert version.serving_flavor is ServingFlavor.ONNX
    assert version.onnx_artifact == candidate.onnx
    assert version.onnx_artifact is not None and version.onnx_artifact.uri.endswith("/model.onnx")
    stored = svc.objects.get(ObjectRef.parse(version.onnx_artifact.uri)).body
    assert sha256_hex(stored) == version.onnx_artifact.sha256
    assert version.flavor_reason.startswith(
        f"ONNX matches scikit-learn on all {candidate.holdout_rows} holdout"
    )
    assert version.tags["parity_rows"] == str(candidate.holdout_rows)
    assert version.tags["parity_label_mismatches"] == "0"
    assert float(version.tags["parity_max_probability_difference"]) <= 1e-4
    assert json.loads(version.tags["parity_tolerance"]) == {"probability_abs": 1e-4}
    assert svc.metadata.get_artifact(f"{state.run_id}/model.onnx").kind is ArtifactKind.ONNX
    holdout = read_parquet(svc.objects, candidate.holdout_uri, candidate.holdout_sha256)
    served = load_served_model(version, svc.objects)
    rows = holdout[list(version.signature["features"])].astype(object)
    prepared = [prepare_row(r, fast_contract()) for r in rows.to_dict("records")]
    expected = load_model(svc, version.artifact).predict(prepare_features(holdout, fast_contract()))
    assert served.predict(prepared).predictions == [str(label) for label in expected]


def test_a_model_that_does_not_convert_is_registered_for_sklearn_with_the_reason(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_converter(*_: Any) -> bytes:
        raise NotImplementedError("no converter for this estimator")

    monkeypatch.setattr("shared.serving.packaging._convert", no_converter)
    state = new_file(svc, "incoming/churn/jan.csv", churn_csv(600, seed=1))

    run_pipeline(svc, state)

    version = svc.registry.get_model_version("churn", 1)
    assert version.serving_flavor is ServingFlavor.SKLEARN
    assert version.onnx_artifact is None
    assert (
        version.flavor_reason
        == "ONNX conversion failed (NotImplementedError: no converter for this estimator)"
    )
    assert version.tags["parity_rows"] == "0"
    assert load_served_model(version, svc.objects).flavor == "sklearn"
