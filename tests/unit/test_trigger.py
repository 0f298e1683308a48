"""Every way a run starts goes through one door: deterministic names, duplicates refused, skips recorded.

Runs on in-memory services: the workflow fake refuses a second execution of the same name, as Step
Functions does, so what the trigger does with a duplicate is what it does in AWS.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import ContractError
from shared.metadata import Dataset, NodeType, Relation, Run, RunReason, RunStatus
from shared.pipeline.state import RunState
from shared.pipeline.trigger import (
    RunRequest,
    execution_name,
    on_new_object,
    on_request,
    on_schedule,
    parse_trigger_event,
    start_run,
    trigger,
)
from shared.services import Services
from shared.storage import ObjectRef
from tests.fixtures.services import SETTINGS, churn_contract, in_memory_services, put_churn_contract, upload

pytestmark = pytest.mark.unit

STEP_FUNCTIONS_NAME = re.compile(r"^[A-Za-z0-9-]{1,80}$")
RULE = "arn:aws:events:us-east-1:123456789012:rule/flywheel-test-retrain"
T0 = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)


@pytest.fixture
def svc() -> Services:
    services = in_memory_services()
    put_churn_contract(services)
    return services


def s3_event(key: str, version_id: str | None = "v1", etag: str = "etag-1") -> dict[str, Any]:
    """An S3 ObjectCreated notification as AWS sends it (keys form-encoded, '/' kept)."""
    obj: dict[str, Any] = {"key": key.replace(" ", "+"), "size": 10, "eTag": etag, "sequencer": "0A1B2C"}
    if version_id:
        obj["versionId"] = version_id
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-03-01T10:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:TEST"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": "REQ", "x-amz-id-2": "ID2"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "trigger-0",
                    "bucket": {
                        "name": SETTINGS.data_bucket,
                        "ownerIdentity": {"principalId": "OWNER"},
                        "arn": f"arn:aws:s3:::{SETTINGS.data_bucket}",
                    },
                    "object": obj,
                },
            }
        ]
    }


def scheduled_event(time: datetime) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [RULE],
        "detail": {},
    }


def succeeded_run(svc: Services, run_id: str, started: datetime, trained_on: tuple[str, ...] = ()) -> Run:
    """A run that finished and promoted its candidate, having trained on ``trained_on``."""
    run = Run(
        run_id=run_id,
        model="churn",
        reason=RunReason.NEW_DATA,
        status=RunStatus.SUCCEEDED,
        started_at=started,
        ended_at=started + timedelta(minutes=2),
    )
    assert svc.metadata.start_run(run)
    for dataset_id in trained_on:
        svc.metadata.link(NodeType.DATASET, dataset_id, NodeType.RUN, run_id, Relation.INPUT)
    return run


def dataset(svc: Services, dataset_id: str, created: datetime) -> Dataset:
    return svc.metadata.put_dataset(
        Dataset(
            dataset_id=dataset_id,
            model="churn",
            uri=f"s3://{SETTINGS.data_bucket}/datasets/churn/{dataset_id}.parquet",
            version_id="pv",
            sha256="ab" * 32,
            rows=600,
            source_uri=f"s3://{SETTINGS.data_bucket}/incoming/churn/{dataset_id}.csv",
            source_version_id="sv",
            created_at=created,
        )
    )


# --- execution names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", list(RunReason))
@pytest.mark.parametrize("model", ["churn", "a", "m" * 64, "fraud-v2-eu-west", "with_underscore.and dots"])
def test_execution_names_are_deterministic_and_fit_step_functions_rules(
    reason: RunReason, model: str
) -> None:
    """Given any reason and model name, the name is the same every time, at most 80 characters of
    ``[A-Za-z0-9-]`` (what Step Functions accepts), and still says why and for which model it ran."""
    identity = ("flywheel-test-data", "incoming/churn/a file+é.csv", "v1")

    name = execution_name(reason, model, *identity)

    assert name == execution_name(reason, model, *identity)
    assert STEP_FUNCTIONS_NAME.match(name), name
    assert name.startswith(reason.value.replace("_", "-") + "-")
    assert name != execution_name(reason, model, *identity[:2], "v2")


def test_names_differ_by_object_version_and_by_etag_when_unversioned(svc: Services) -> None:
    """Given the same key uploaded twice, each upload gets its own run; without versions the etag tells
    them apart; the same version always maps to the same run."""
    key = "incoming/churn/batch.csv"
    by_version = [on_new_object(svc, SETTINGS.data_bucket, key, v, "same-etag").run_id for v in ("v1", "v2")]
    by_etag = [on_new_object(svc, SETTINGS.data_bucket, key, None, e).run_id for e in ("e1", "e2")]
    again = on_new_object(svc, SETTINGS.data_bucket, key, "v1", "same-etag")

    assert len(set(by_version + by_etag)) == 4
    assert again.run_id == by_version[0]
    assert again.duplicate


# --- new files --------------------------------------------------------------------------------------------


def test_a_new_file_records_a_new_data_run_and_starts_its_execution(svc: Services) -> None:
    """Given a file under incoming/churn/, when its notification arrives, then a run is recorded with reason
    new_data and the execution is started with a payload that references the exact object version."""
    (outcome,) = trigger(svc, parse_trigger_event(s3_event("incoming/churn/jan batch.csv", "ver-7", "e7")))

    assert outcome.started and not outcome.duplicate and not outcome.skipped
    assert outcome.model == "churn"
    run = svc.metadata.get_run(outcome.run_id)
    assert run.reason is RunReason.NEW_DATA
    assert run.status is RunStatus.PENDING
    assert run.execution_arn == (
        f"arn:aws:states:us-east-1:123456789012:execution:flywheel-test-pipeline:{outcome.run_id}"
    )
    payload = svc.workflow.started[outcome.run_id]  # type: ignore[attr-defined]
    # The key arrives form-encoded ('+' for a space) and is decoded before it is used.
    assert payload["source"] == {
        "bucket": SETTINGS.data_bucket,
        "key": "incoming/churn/jan batch.csv",
        "version_id": "ver-7",
        "etag": "e7",
    }
    assert RunState.model_validate(payload).run_id == outcome.run_id


def test_the_same_s3_event_delivered_twice_starts_one_run(svc: Services) -> None:
    """Given an S3 event that was already handled, when it is delivered again (S3 delivers at least once),
    then no second execution or run appears and the outcome says it was a duplicate."""
    event = s3_event("incoming/churn/batch.csv", "v1")

    (first,) = trigger(svc, parse_trigger_event(event))
    (second,) = trigger(svc, parse_trigger_event(json.loads(json.dumps(event))))

    assert first.started and not first.duplicate
    assert second.run_id == first.run_id
    assert second.duplicate and not second.started
    assert "already started" in second.detail
    assert list(svc.workflow.started) == [first.run_id]  # type: ignore[attr-defined]
    assert [r.run_id for r in svc.metadata.list_runs("churn")] == [first.run_id]


def test_deliveries_of_one_event_at_the_same_instant_start_one_run_and_all_others_say_duplicate(
    svc: Services,
) -> None:
    """Step Functions answers a running execution of the same name and input as a fresh start: eight
    deliveries of one S3 event released together still yield one 'started' and seven duplicates."""
    event = s3_event("incoming/churn/burst.csv", "v1")
    barrier = threading.Barrier(8)
    outcomes: list[Any] = []
    lock = threading.Lock()

    def deliver() -> None:
        barrier.wait()
        (outcome,) = trigger(svc, parse_trigger_event(json.loads(json.dumps(event))))
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len({o.run_id for o in outcomes}) == 1
    assert sorted((o.started, o.duplicate) for o in outcomes) == [(False, True)] * 7 + [(True, False)]
    assert list(svc.workflow.started) == [outcomes[0].run_id]  # type: ignore[attr-defined]
    assert svc.metadata.get_run(outcomes[0].run_id).execution_started_at is not None


def test_a_run_recorded_but_never_started_is_started_by_the_redelivery(svc: Services) -> None:
    """Given a trigger that crashed after recording the run and before starting it, when the event comes
    again, then the execution is started: the run is not lost."""
    state = RunState(run_id="new-data-churn-crashed", model="churn", reason=RunReason.NEW_DATA)
    svc.metadata.start_run(
        Run(run_id=state.run_id, model="churn", reason=RunReason.NEW_DATA, started_at=datetime.now(UTC))
    )

    outcome = start_run(svc, state)

    assert outcome.started
    assert not outcome.duplicate
    assert "recorded earlier" in outcome.detail
    assert state.run_id in svc.workflow.started  # type: ignore[attr-defined]
    assert len(svc.metadata.list_runs("churn")) == 1


def test_a_rejected_run_counts_as_the_last_judged_run_for_the_schedule(svc: Services) -> None:
    """Given the last run trained on every dataset and its candidate was rejected by the gate, when the
    schedule fires, then it skips: retraining the same data would be rejected again."""
    dataset(svc, "churn-old", T0 - timedelta(days=2))
    rejected = Run(
        run_id="new-data-churn-rejected",
        model="churn",
        reason=RunReason.NEW_DATA,
        status=RunStatus.REJECTED,
        started_at=T0 - timedelta(days=1),
        ended_at=T0 - timedelta(days=1) + timedelta(minutes=2),
    )
    assert svc.metadata.start_run(rejected)
    svc.metadata.link(NodeType.DATASET, "churn-old", NodeType.RUN, rejected.run_id, Relation.INPUT)

    (outcome,) = on_schedule(svc, RULE, T0)

    assert outcome.skipped
    assert f"{rejected.run_id} (rejected)" in outcome.detail


def test_a_file_directly_under_incoming_is_quarantined_as_unrouted_with_the_reason(svc: Services) -> None:
    """Given a file that names no model folder, then no run starts, the file moves to quarantine/_unrouted/
    beside an .error.json saying where to put it, and the uploaded version stays in the bucket."""
    body = b"customer_id,churned\nC1,true\n"
    uploaded = upload(svc, "incoming/loose.csv", body)

    (outcome,) = trigger(svc, parse_trigger_event(s3_event(uploaded.key, uploaded.version_id)))

    assert outcome.skipped and not outcome.started and outcome.run_id == ""
    assert "incoming/<model>/" in outcome.detail
    assert svc.metadata.list_runs() == []
    assert svc.workflow.started == {}  # type: ignore[attr-defined]
    bucket = SETTINGS.data_bucket
    assert [o.ref.key for o in svc.objects.list(bucket, "incoming/")] == []
    moved = svc.objects.get(ObjectRef(bucket, "quarantine/_unrouted/loose.csv"))
    assert moved.body == body
    report = json.loads(svc.objects.get(ObjectRef(bucket, "quarantine/_unrouted/loose.csv.error.json")).body)
    assert report["source"] == f"s3://{bucket}/incoming/loose.csv"
    assert report["quarantined_as"] == f"s3://{bucket}/quarantine/_unrouted/loose.csv"
    assert "incoming/<model>/" in report["summary"]
    assert (
        report["kind"] == "data" and report["model"] is None and report["problems"][0]["rule"] == "unrouted"
    )
    assert svc.objects.get(uploaded).body == body  # the original version is still there


# --- people and the monitor --------------------------------------------------------------------------------


def test_a_manual_request_records_a_manual_run_without_a_source_file(svc: Services) -> None:
    """Given a person asking for a run, then a run with reason manual and who asked is recorded, and its
    payload names no source file, so the pipeline skips Validate and trains on the datasets there are."""
    (outcome,) = trigger(svc, parse_trigger_event({"model": "churn", "requested_by": "ana"}))

    run = svc.metadata.get_run(outcome.run_id)
    assert outcome.started and run.reason is RunReason.MANUAL
    assert run.input["requested_by"] == "ana"
    payload = svc.workflow.started[outcome.run_id]  # type: ignore[attr-defined]
    assert "source" not in payload
    assert payload["requested_by"] == "ana"


def test_each_manual_request_is_a_new_run(svc: Services) -> None:
    """A person asking twice means twice: a manual run has a fresh id, never a duplicate."""
    first = on_request(svc, RunRequest(model="churn"))
    second = on_request(svc, RunRequest(model="churn"))

    assert first.run_id != second.run_id
    assert first.started and second.started and not second.duplicate


def test_the_monitor_asking_twice_for_the_same_window_starts_one_run(svc: Services) -> None:
    request = RunRequest(
        model="churn",
        reason=RunReason.DRIFT,
        requested_by="monitor",
        evidence_uri="s3://flywheel-test-artifacts/reports/churn/w1.json",
        idempotency_key="churn:2026-03-01T00:00/2026-03-02T00:00",
    )

    first, second = on_request(svc, request), on_request(svc, request)

    assert first.started and second.duplicate and first.run_id == second.run_id
    run = svc.metadata.get_run(first.run_id)
    assert run.reason is RunReason.DRIFT
    assert run.evidence_uri == request.evidence_uri


def test_a_request_for_a_model_without_a_contract_is_a_clear_contract_error(svc: Services) -> None:
    with pytest.raises(ContractError, match=r"no data contract for model 'ghost'.*contract put"):
        trigger(svc, parse_trigger_event({"model": "ghost", "requested_by": "ana"}))

    assert svc.metadata.list_runs() == []
    assert svc.workflow.started == {}  # type: ignore[attr-defined]


# --- the schedule ------------------------------------------------------------------------------------------


def test_a_schedule_before_any_data_records_a_skipped_run(svc: Services) -> None:
    (outcome,) = trigger(svc, parse_trigger_event(scheduled_event(T0)))

    assert outcome.skipped and not outcome.started
    assert outcome.reason is RunReason.SCHEDULE
    assert outcome.detail == "no data to train on yet"
    run = svc.metadata.get_run(outcome.run_id)
    assert run.status is RunStatus.SKIPPED
    assert run.outcome == {"skipped": "no data to train on yet"}
    assert svc.workflow.started == {}  # type: ignore[attr-defined]


def test_a_schedule_without_new_data_since_the_last_success_records_a_skipped_run_with_the_reason(
    svc: Services,
) -> None:
    """Given a successful run that trained on every dataset there is, when the schedule fires, then nothing
    starts and a skipped run says which run already covered the data."""
    dataset(svc, "churn-old", T0 - timedelta(days=2))
    last = succeeded_run(svc, "new-data-churn-last", T0 - timedelta(days=1), trained_on=("churn-old",))

    (outcome,) = on_schedule(svc, RULE, T0)

    assert outcome.skipped and not outcome.started
    assert (
        outcome.detail == f"no new data since run {last.run_id} (succeeded) at {last.started_at.isoformat()}"
    )
    assert svc.metadata.get_run(outcome.run_id).status is RunStatus.SKIPPED
    assert svc.workflow.started == {}  # type: ignore[attr-defined]


def test_the_dataset_a_successful_run_validated_for_itself_is_not_new_data(svc: Services) -> None:
    """Given a run for a new file, whose Validate recorded the dataset after the run began and which then
    trained on it and succeeded, when the schedule fires, then that dataset is not new: the run is skipped.

    (Comparing creation times alone counted every upload's own dataset as new, so each night retrained
    on data the production model had already seen.)"""
    run_start = T0 - timedelta(hours=5)
    dataset(svc, "churn-own", run_start + timedelta(seconds=3))
    succeeded_run(svc, "new-data-churn-own", run_start, trained_on=("churn-own",))

    (outcome,) = on_schedule(svc, RULE, T0)

    assert outcome.skipped, outcome.detail
    assert svc.workflow.started == {}  # type: ignore[attr-defined]


def test_a_dataset_recorded_after_the_last_success_starts_a_schedule_run(svc: Services) -> None:
    """Given data the last successful run did not train on (a file whose own run failed later, or feedback),
    when the schedule fires, then a schedule run starts and records which datasets are new."""
    dataset(svc, "churn-seen", T0 - timedelta(days=2))
    succeeded_run(svc, "new-data-churn-seen", T0 - timedelta(days=1), trained_on=("churn-seen",))
    dataset(svc, "churn-fresh", T0 - timedelta(hours=1))

    (outcome,) = on_schedule(svc, RULE, T0)

    assert outcome.started and not outcome.skipped
    run = svc.metadata.get_run(outcome.run_id)
    assert run.reason is RunReason.SCHEDULE
    assert run.status is RunStatus.PENDING
    assert run.input["new_data"] == ["churn-fresh"]
    assert "source" not in svc.workflow.started[outcome.run_id]  # type: ignore[attr-defined]


def test_data_that_arrived_while_the_last_success_was_training_is_new(svc: Services) -> None:
    """Given a dataset recorded during the last successful run but not in its training window, then it is
    new: the schedule starts a run for it."""
    run_start = T0 - timedelta(hours=5)
    dataset(svc, "churn-own", run_start + timedelta(seconds=3))
    dataset(svc, "churn-meanwhile", run_start + timedelta(minutes=1))
    succeeded_run(svc, "new-data-churn-own", run_start, trained_on=("churn-own",))

    (outcome,) = on_schedule(svc, RULE, T0)

    assert outcome.started
    assert svc.metadata.get_run(outcome.run_id).input["new_data"] == ["churn-meanwhile"]


def test_the_same_schedule_firing_twice_starts_or_skips_once(svc: Services) -> None:
    """EventBridge delivers at least once: the same firing again is a duplicate, whether it started a run
    or recorded a skip; the next firing is a new decision."""
    (skipped,) = on_schedule(svc, RULE, T0)
    (skipped_again,) = on_schedule(svc, RULE, T0)
    dataset(svc, "churn-new", datetime.now(UTC))
    (started,) = on_schedule(svc, RULE, T0 + timedelta(days=1))
    (started_again,) = on_schedule(svc, RULE, T0 + timedelta(days=1))

    assert skipped.skipped and not skipped.duplicate
    assert skipped_again.skipped and skipped_again.duplicate and skipped_again.run_id == skipped.run_id
    assert started.started and started.run_id != skipped.run_id
    assert started_again.duplicate and not started_again.started
    assert list(svc.workflow.started) == [started.run_id]  # type: ignore[attr-defined]
    assert len(svc.metadata.list_runs("churn")) == 2


def test_a_schedule_decides_for_every_model_with_a_contract(svc: Services) -> None:
    put_churn_contract(svc, churn_contract(model="churn-eu"))
    dataset(svc, "churn-a", T0 - timedelta(hours=1))

    outcomes = {o.model: o for o in on_schedule(svc, RULE, T0)}

    assert set(outcomes) == {"churn", "churn-eu"}
    assert outcomes["churn"].started
    assert outcomes["churn-eu"].skipped and outcomes["churn-eu"].detail == "no data to train on yet"


EVERY = {
    "metric": "roc_auc",
    "trials": 4,
    "every": "30d",
    "space": {"max_depth": {"int": [2, 6]}},
}


def _searched(svc: Services, experiment_id: str, started: datetime) -> None:
    from shared.experiments import Experiment

    svc.experiments.create(
        Experiment(
            experiment_id=experiment_id,
            model="churn",
            run_id=experiment_id,
            metric="roc_auc",
            higher_is_better=True,
            policy=EVERY,
            builder="hist_gradient_boosting",
            started_at=started,
        )
    )


def test_a_scheduled_retrain_searches_again_once_experiment_every_has_passed(svc: Services) -> None:
    """Given a contract whose experiment runs every 30 days and new data, when the schedule fires, then it
    starts an experiment run if the last experiment began over 30 days ago (or there is none), and a plain
    scheduled retrain otherwise (which trains the last winner's parameters)."""
    put_churn_contract(svc, churn_contract(experiment=EVERY))
    dataset(svc, "churn-fresh", T0 - timedelta(hours=1))
    _searched(svc, "experiment-recent", T0 - timedelta(days=10))

    (recent,) = on_schedule(svc, RULE, T0)
    assert svc.metadata.get_run(recent.run_id).reason is RunReason.SCHEDULE

    later = T0 + timedelta(days=25)
    (due,) = on_schedule(svc, RULE, later)
    run = svc.metadata.get_run(due.run_id)
    assert run.reason is RunReason.EXPERIMENT
    assert "over 30d ago" in run.input["experiment_due"]
    assert svc.workflow.started[due.run_id]["experiment"]["experiment_id"] == due.run_id  # type: ignore[attr-defined]


def test_an_experiment_request_for_a_contract_without_a_search_is_a_clear_contract_error(
    svc: Services,
) -> None:
    with pytest.raises(ContractError, match="has no experiment block"):
        on_request(svc, RunRequest(model="churn", reason=RunReason.EXPERIMENT))
