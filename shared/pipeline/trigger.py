"""Every way a run starts, through one door.

A new file, a schedule, the monitor and a person all end in :func:`start_run`, which names the execution
deterministically from what caused it, records the run with its reason, and starts the pipeline. The name
is the run id: a duplicated S3 event or schedule tick finds it taken and starts nothing twice. Step Functions
refuses the name once the execution ended (``ExecutionAlreadyExists``) but answers a *running* one as if it
had started it, so the delivery that started the run is the one whose claim on the run record won; every
other delivery, in flight or late, answers ``duplicate: true``.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, S3Model
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.data.catalog import contract_models, load_contract
from shared.data.quarantine import FileKind, quarantine, quarantine_ref, refused
from shared.errors import ContractError, InvalidRequestError
from shared.hashing import sha256_hex
from shared.layout import DataPrefix
from shared.metadata import NodeType, Run, RunReason, RunStatus
from shared.observability import logger, metrics
from shared.pipeline.state import CodeChange, ExperimentState, RunState, SourceFile
from shared.services import Services

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9-]")
# New files and the schedule come through doors of their own, each naming its runs from its event.
REQUESTABLE = frozenset(
    {RunReason.MANUAL, RunReason.DRIFT, RunReason.DEGRADATION, RunReason.CODE_CHANGE, RunReason.EXPERIMENT}
)


class RunRequest(BaseModel):
    """A run asked for by a person (``flywheel run``), by the monitor (drift, degradation) or by delivery
    (``flywheel deliver``: a model project's code changed, and ``code_change`` names the new code)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: str = Field(default="run", pattern="^run$")
    model: str
    reason: RunReason = RunReason.MANUAL
    requested_by: str = "cli"
    evidence_uri: str | None = None
    # The monitor names its window so that asking twice for the same evidence starts one run.
    idempotency_key: str | None = None
    code_change: CodeChange | None = None

    @model_validator(mode="after")
    def _reason_fits(self) -> RunRequest:
        if self.reason not in REQUESTABLE:
            allowed = ", ".join(sorted(r.value for r in REQUESTABLE))
            raise ValueError(
                f"a run cannot be requested with reason {self.reason.value!r} (one of {allowed})"
            )
        if (self.reason is RunReason.CODE_CHANGE) != (self.code_change is not None):
            raise ValueError(
                "a code_change run names the code it is for (code_change: {digest, commit}), "
                "and no other run does"
            )
        return self


class TriggerOutcome(BaseModel):
    run_id: str
    model: str
    reason: RunReason
    started: bool
    duplicate: bool = False
    skipped: bool = False
    detail: str = ""


def execution_name(reason: RunReason, model: str, *identity: str) -> str:
    """``<reason>-<model>-<digest>``: at most 80 characters of ``[A-Za-z0-9-]``, as Step Functions wants."""
    digest = sha256_hex("\x1f".join(identity).encode())[:20]
    prefix = _NAME_UNSAFE.sub("-", f"{reason.value.replace('_', '-')}-{model}")[:58]
    return f"{prefix}-{digest}"


def start_run(svc: Services, state: RunState, input_detail: dict[str, Any] | None = None) -> TriggerOutcome:
    """Record the run and start its execution; a second call with the same run id starts nothing."""
    run = Run(
        run_id=state.run_id,
        model=state.model,
        reason=state.reason,
        input={**state.dump(), **(input_detail or {})},
        started_at=datetime.now(UTC),
        execution_arn=_execution_arn(svc, state.run_id),
        evidence_uri=state.evidence_uri,
    )
    recorded = svc.metadata.start_run(run)
    # Start even when the run was recorded before: a crash between the two must not lose the run. Step
    # Functions answers a running execution of the same name and input as if it had just started it, so
    # whether this delivery started the run is decided by the claim, not by the answer.
    running = svc.workflow.start(state.run_id, state.dump())
    started = running and svc.metadata.claim_start(state.run_id, datetime.now(UTC))
    duplicate = not started
    metrics.add_metric(name="RunDuplicate" if duplicate else "RunStarted", unit=MetricUnit.Count, value=1)
    logger.info(
        "run requested",
        extra={
            "run_id": state.run_id,
            "model": state.model,
            "reason": state.reason.value,
            "duplicate": duplicate,
        },
    )
    return TriggerOutcome(
        run_id=state.run_id,
        model=state.model,
        reason=state.reason,
        started=started,
        duplicate=duplicate,
        detail="already started by an earlier delivery of the same event"
        if duplicate
        else ("started" if recorded else "started (recorded earlier, but its execution had not started)"),
    )


def _execution_arn(svc: Services, name: str) -> str:
    prefix, _, machine = svc.settings.state_machine_arn.partition(":stateMachine:")
    return f"{prefix}:execution:{machine}:{name}"


def on_new_object(
    svc: Services, bucket: str, key: str, version_id: str | None, etag: str | None
) -> TriggerOutcome:
    """A file landed under ``incoming/<model>/``: start a run that validates and trains on it."""
    relative = key.removeprefix(str(DataPrefix.INCOMING))
    model, _, name = relative.partition("/")
    source = SourceFile(bucket=bucket, key=key, version_id=version_id, etag=etag)
    if not model or not name:
        return _refuse_unroutable(svc, source)
    run_id = execution_name(RunReason.NEW_DATA, model, bucket, key, version_id or etag or "")
    return start_run(svc, RunState(run_id=run_id, model=model, reason=RunReason.NEW_DATA, source=source))


def _refuse_unroutable(svc: Services, source: SourceFile) -> TriggerOutcome:
    """A file directly under ``incoming/`` names no model: keep it, beside the reason, in quarantine."""
    reason = f"{source.key} is not under incoming/<model>/: upload it as incoming/<model>/<file>"
    destination = quarantine_ref(FileKind.DATA, source.bucket, None, PurePosixPath(source.key).name)
    quarantine(svc.objects, source.ref, destination, refused("unrouted", reason), kind=FileKind.DATA)
    return TriggerOutcome(
        run_id="", model="", reason=RunReason.NEW_DATA, started=False, skipped=True, detail=reason
    )


def on_request(svc: Services, request: RunRequest) -> TriggerOutcome:
    """A person, the monitor or delivery asked for a run on the data the model already has."""
    contract = load_contract(svc.objects, svc.settings, request.model)  # a ContractError when there is none
    if request.code_change is not None and contract.training.pipeline is None:
        raise ContractError(
            f"a code_change run needs model code, and the contract for {request.model!r} names a built-in "
            f"estimator ({contract.training.builder}); store the project's contract (training.pipeline)",
            problems=["training.pipeline is not set"],
        )
    if request.reason is RunReason.EXPERIMENT and contract.experiment is None:
        raise ContractError(
            f"an experiment needs a search: the contract for {request.model!r} has no experiment block "
            "(metric, trials, parallel, space); add one and put the contract again",
            problems=["experiment: missing"],
        )
    identity = request.idempotency_key or uuid.uuid4().hex
    run_id = execution_name(request.reason, request.model, identity)
    state = RunState(
        run_id=run_id,
        model=request.model,
        reason=request.reason,
        requested_by=request.requested_by,
        evidence_uri=request.evidence_uri,
        code_change=request.code_change,
        experiment=ExperimentState(experiment_id=run_id) if request.reason is RunReason.EXPERIMENT else None,
    )
    return start_run(svc, state, {"requested_by": request.requested_by})


def on_schedule(svc: Services, rule: str, time: datetime) -> list[TriggerOutcome]:
    """The retraining schedule fired: a run for each model with data newer than its last successful run,
    and a recorded skip (with the reason) for the others."""
    outcomes = []
    for model in contract_models(svc.objects, svc.settings):
        run_id = execution_name(RunReason.SCHEDULE, model, rule, time.isoformat())
        news = _new_data_since_last_success(svc, model)
        if news:
            due = _experiment_due(svc, model, time)
            reason = RunReason.EXPERIMENT if due else RunReason.SCHEDULE
            run_id = execution_name(reason, model, rule, time.isoformat())
            state = RunState(
                run_id=run_id,
                model=model,
                reason=reason,
                requested_by="schedule",
                experiment=ExperimentState(experiment_id=run_id) if due else None,
            )
            outcomes.append(
                start_run(svc, state, {"new_data": news, **({"experiment_due": due} if due else {})})
            )
            continue
        last = _last_completed(svc, model)
        detail = (
            f"no new data since run {last.run_id} ({last.status.value}) at {last.started_at.isoformat()}"
            if last
            else "no data to train on yet"
        )
        skipped = Run(
            run_id=run_id,
            model=model,
            reason=RunReason.SCHEDULE,
            status=RunStatus.SKIPPED,
            input={"rule": rule, "time": time.isoformat()},
            started_at=datetime.now(UTC),
            ended_at=datetime.now(UTC),
            outcome={"skipped": detail},
        )
        recorded = svc.metadata.start_run(skipped)
        metrics.add_metric(name="RunSkipped", unit=MetricUnit.Count, value=1)
        logger.info("scheduled run skipped", extra={"model": model, "detail": detail})
        outcomes.append(
            TriggerOutcome(
                run_id=run_id,
                model=model,
                reason=RunReason.SCHEDULE,
                started=False,
                skipped=True,
                duplicate=not recorded,
                detail=detail,
            )
        )
    return outcomes


def _experiment_due(svc: Services, model: str, now: datetime) -> str:
    """Why a scheduled retrain should search again (``experiment.every`` has passed since the model's
    last experiment began, or it has none), or "" when it trains the last winner's parameters."""
    try:
        contract = load_contract(svc.objects, svc.settings, model)
    except ContractError:
        return ""
    policy = contract.experiment
    interval = policy.interval if policy else None
    if policy is None or interval is None:
        return ""
    last = next(iter(svc.experiments.recent(model, limit=1)), None)
    if last is None:
        return f"no experiment yet (experiment.every: {policy.every})"
    if now - last.started_at >= interval:
        began = last.started_at.isoformat()
        return f"the last experiment, {last.experiment_id}, began {began}: over {policy.every} ago"
    return ""


def _last_completed(svc: Services, model: str) -> Run | None:
    """The latest run that trained and was judged: promoted (succeeded) or rejected by the gate. Retraining
    a rejected candidate's data on a schedule would only be rejected again."""
    runs = [
        r
        for status in (RunStatus.SUCCEEDED, RunStatus.REJECTED)
        if (r := svc.metadata.last_run(model, status))
    ]
    return max(runs, key=lambda r: r.started_at, default=None)


def _new_data_since_last_success(svc: Services, model: str) -> list[str]:
    """Datasets (uploads and feedback) recorded after the model's last successful run began that it did
    not train on.

    A run for a new file records that file's dataset after it begins, so the start time alone would count
    it; the datasets it trained on are its lineage inputs. Files still waiting under ``incoming/`` are not
    counted: each has a run of its own.
    """
    last = _last_completed(svc, model)
    if last is None:
        return [d.dataset_id for d in svc.metadata.list_datasets(model)]
    trained_on = {
        e.src.id for e in svc.metadata.upstream(NodeType.RUN, last.run_id) if e.src.type is NodeType.DATASET
    }
    return [
        d.dataset_id
        for d in svc.metadata.list_datasets(model)
        if d.created_at > last.started_at and d.dataset_id not in trained_on
    ]


TriggerEvent = S3Model | EventBridgeModel | RunRequest


def parse_trigger_event(event: dict[str, Any]) -> TriggerEvent:
    """Which of the three doors the event came through, parsed with Powertools' models or ours."""
    if "Records" in event:
        return parse(event=event, model=S3Model)
    if event.get("detail-type") == "Scheduled Event":
        return parse(event=event, model=EventBridgeModel)
    try:
        return RunRequest.model_validate(event)
    except ValidationError as exc:
        problems = [_problem(error) for error in exc.errors()]
        raise InvalidRequestError(
            f"the run request is refused: {'; '.join(problems)}", problems=problems
        ) from exc


def _problem(error: Any) -> str:
    where = ".".join(map(str, error["loc"])) or "request"
    return f"{where}: {str(error['msg']).removeprefix('Value error, ')}"


def trigger(svc: Services, event: TriggerEvent) -> list[TriggerOutcome]:
    """Start (or recognise as duplicate, or skip with a reason) the runs the event asks for."""
    if isinstance(event, S3Model):
        return [
            on_new_object(svc, record.s3.bucket.name, unquote_plus(obj.key), obj.versionId, obj.eTag)
            for record in event.Records
            if (obj := record.s3.object) is not None
        ]
    if isinstance(event, EventBridgeModel):
        return on_schedule(svc, event.resources[0], event.time)
    return [on_request(svc, event)]
