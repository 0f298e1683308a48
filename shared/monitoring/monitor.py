"""The monitor: whether each model in production still fits its traffic, said in a report, acted on.

:func:`monitor` answers the schedule (every model with a production version) and a person
(``flywheel monitor MODEL``). One run for one model, :func:`monitor_model`:

1. takes the model's lease and state (:mod:`shared.monitoring.log`): where the previous run stopped reading;
2. reads the captures that arrived since then (:mod:`shared.monitoring.window`), bounded by the policy's
   ``window_hours`` and ``max_window_rows``, and judges the client requests (a record whose ``source`` is
   ``api``) the production version answered; captures a previous version answered, or of requests that are
   not client traffic, are counted in a note: they say nothing of this version's answers to clients;
3. reads the label sets accepted since then (:mod:`shared.monitoring.labels`) and joins them to their captures
   by request id — in the window, else in the last seven days of captures. Labels wait, unread, while fewer
   than ``min_labelled_rows`` of them found their capture, so that small batches add up to a judgement;
   after ``window_hours`` they are used whatever their number;
4. loads the production version's reference profile (its sha256 checked against the artifact record
   training wrote) and computes drift (:func:`shared.monitoring.drift.compute_drift`), live performance on the
   labelled captures of the production version (:func:`shared.monitoring.decision.live_performance`) and the
   decision (:func:`shared.monitoring.decision.decide`), the cooldown counted from the last retraining the
   monitor asked for;
5. writes the labelled captures (every version's) as a feedback dataset (:mod:`shared.monitoring.feedback`),
   so the next training window includes what production saw;
6. writes ``reports/<model>/<time>/report.json`` and ``report.html`` in the artifacts bucket: the
   :class:`~shared.monitoring.decision.MonitorReport` (with the live metric of past runs and the versions that
   served them, for the history chart) plus a ``monitor`` block (the run, what it read, the run it asked for);
7. on ``retrain``, asks the trigger function for a run — reason ``drift`` or ``degradation``, the report as
   evidence, idempotency key ``<model>/<window end>`` (the newest capture judged), so asking twice for the
   same evidence starts one run; on ``held_back`` it asks nothing, and its record says so;
8. emits EMF metrics (PSI per feature, drift share, live metric, rows, the decision), records lineage —
   capture objects and label files → the monitor run (a ``run`` node ``monitor-<model>-<time>``) → its
   report → the run it asked for (``evidence``); capture objects and label files → the feedback dataset —
   and commits its record and the new state (:class:`~shared.monitoring.log.MonitorRecord`).

A run that fails gives its lease back and changes no state: the next run reads the same captures again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, Protocol

import pandas as pd
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from pydantic import BaseModel, ConfigDict, Field

from shared.data.catalog import contract_models, load_contract
from shared.data.contract import DataContract
from shared.errors import FlywheelError, IntegrityError, NotFoundError, TransientError
from shared.hashing import sha256_hex
from shared.invoke import LambdaFunction
from shared.layout import ArtifactPrefix, RunArtifact
from shared.metadata import Artifact, ArtifactKind, NodeType, Relation, RunReason, file_id
from shared.ml.evaluation import Evaluation
from shared.monitoring.decision import MetricPoint, MonitorDecision, MonitorReport, decide, live_performance
from shared.monitoring.drift import DriftReport, capture_frames, compute_drift
from shared.monitoring.feedback import (
    FEEDBACK_ID_COLUMN,
    FEEDBACK_TIME_COLUMN,
    feedback_dataset_id,
    feedback_frame,
    write_feedback_dataset,
)
from shared.monitoring.labels import (
    LABEL_ID_COLUMN,
    PARQUET_SUFFIX,
    LabelSet,
    accepted_prefix,
    parse_label_set,
)
from shared.monitoring.log import DynamoMonitorLog, MonitorLog, MonitorRecord, MonitorState
from shared.monitoring.report import render_html
from shared.monitoring.window import (
    LABEL_LOOKBACK_DAYS,
    CapturedRow,
    CaptureWindow,
    ObjectCursor,
    advance,
    as_utc,
    find_captures,
    read_capture_window,
    unread,
)
from shared.observability import logger, metrics
from shared.pipeline.trigger import RunRequest, TriggerOutcome, execution_name, on_request
from shared.registry import PRODUCTION_ALIAS, ModelVersion
from shared.services import Services
from shared.settings import Settings, warm
from shared.storage import ObjectRef

MONITOR_ACTOR = "monitor"
# How long a run may hold a model's lease: the monitor function's timeout.
LEASE = timedelta(minutes=15)
HISTORY_POINTS = 200
# The capture records' ``source`` of requests from clients (shared.serving.capture); others are not judged.
CLIENT_TRAFFIC = "api"

Action = Literal["none", "retrain", "held_back", "insufficient_data"]


class MonitorRequest(BaseModel):
    """A person asking for one model (``flywheel monitor MODEL``); no model: every model in production."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = None
    requested_by: str = "cli"


class MonitorOutcome(BaseModel):
    """What one model's monitor run found and did (``monitored`` False: why it did not run)."""

    model_config = ConfigDict(frozen=True)

    model: str
    monitored: bool
    monitor_id: str | None = None
    version: int | None = None
    action: Action | None = None
    reason: Literal["drift", "degradation"] | None = None
    reasons: list[str] = Field(default_factory=list)
    rows: int = 0
    labelled_rows: int = 0
    report_uri: str | None = None
    html_uri: str | None = None
    feedback_dataset: str | None = None
    run_id: str | None = None
    run_started: bool = False
    run_duplicate: bool = False
    detail: str = ""
    error: str | None = None


# --- asking for a run -----------------------------------------------------------------------------------


class RunRequester(Protocol):
    def request_run(self, request: RunRequest) -> TriggerOutcome:
        """Ask the trigger for a run; the outcome names it (and says whether it was a duplicate)."""
        ...


class LambdaRunRequester:
    """:class:`RunRequester` that invokes the trigger function, as ``flywheel run`` does."""

    def __init__(self, trigger: LambdaFunction) -> None:
        self.trigger = trigger

    def request_run(self, request: RunRequest) -> TriggerOutcome:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            invoked = self.trigger.invoke(request.model_dump(mode="json"))
        except (BotoCoreError, ClientError) as exc:
            raise TransientError(f"could not invoke the trigger {self.trigger.name}: {exc}") from exc
        answer: dict[str, Any] = invoked.payload if isinstance(invoked.payload, dict) else {}
        if invoked.error:
            error_type = str(answer.get("errorType", "Unknown"))
            message = f"the trigger failed: {error_type}: {answer.get('errorMessage', '')}"
            if error_type in {TransientError.__name__, "Sandbox.Timedout"}:
                raise TransientError(message)
            raise FlywheelError(message)
        return TriggerOutcome.model_validate(answer["runs"][0])


class DirectRunRequester:
    """:class:`RunRequester` calling the trigger's logic in this process (the domain's tests)."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.requests: list[RunRequest] = []

    def request_run(self, request: RunRequest) -> TriggerOutcome:
        self.requests.append(request)
        return on_request(self.svc, request)


@warm
@lru_cache(maxsize=1)
def monitor_adapters(svc: Services) -> tuple[MonitorLog, RunRequester]:
    """The monitor log and the trigger client a deployed monitor function uses."""
    log = DynamoMonitorLog(svc.settings.metadata_table, client=svc.clients.client("dynamodb"))
    return log, LambdaRunRequester(svc.function(svc.settings.trigger_function))


# --- the event ------------------------------------------------------------------------------------------


def parse_monitor_event(event: dict[str, Any]) -> MonitorRequest:
    """The schedule's EventBridge event (every model) or a request naming one model."""
    if event.get("detail-type") == "Scheduled Event":
        return MonitorRequest(model=None, requested_by="schedule")
    return MonitorRequest.model_validate(event)


def monitor(
    svc: Services, log: MonitorLog, runs: RunRequester, request: MonitorRequest, now: datetime | None = None
) -> list[MonitorOutcome]:
    """Monitor one model, or every model with a contract (those without a production version are skipped,
    saying so). In a sweep one model's failure is logged, counted and reported, and the others still run;
    asked for one model, its failure is raised."""
    moment = now or datetime.now(UTC)
    if request.model is not None:
        outcome = monitor_model(svc, log, runs, request.model, now=moment, requested_by=request.requested_by)
        metrics.add_metric(name="ModelsMonitored", unit=MetricUnit.Count, value=int(outcome.monitored))
        return [outcome]
    outcomes = []
    for model in contract_models(svc.objects, svc.settings):
        try:
            outcomes.append(
                monitor_model(svc, log, runs, model, now=moment, requested_by=request.requested_by)
            )
        except FlywheelError as exc:
            logger.exception("monitor run failed", extra={"model": model})
            metrics.add_metric(name="MonitorFailed", unit=MetricUnit.Count, value=1)
            outcomes.append(
                MonitorOutcome(model=model, monitored=False, error=f"{type(exc).__name__}: {exc}")
            )
    metrics.add_metric(
        name="ModelsMonitored", unit=MetricUnit.Count, value=sum(o.monitored for o in outcomes)
    )
    return outcomes


# --- one model ------------------------------------------------------------------------------------------


def report_stamp(moment: datetime) -> str:
    """The ``<time>`` of ``reports/<model>/<time>/``: ISO 8601 basic, sortable, unique per microsecond."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def report_refs(settings: Settings, model: str, moment: datetime) -> tuple[ObjectRef, ObjectRef]:
    folder = f"{ArtifactPrefix.REPORTS}{model}/{report_stamp(moment)}"
    bucket = settings.artifacts_bucket
    return ObjectRef(bucket, f"{folder}/report.json"), ObjectRef(bucket, f"{folder}/report.html")


def monitor_model(
    svc: Services,
    log: MonitorLog,
    runs: RunRequester,
    model: str,
    *,
    now: datetime,
    requested_by: str = "cli",
) -> MonitorOutcome:
    """One monitor run for ``model`` (the steps in the module docstring)."""
    contract = load_contract(svc.objects, svc.settings, model)
    try:
        version = svc.registry.get_model_version_by_alias(model, PRODUCTION_ALIAS)
    except NotFoundError:
        return MonitorOutcome(model=model, monitored=False, detail="no production version to monitor yet")
    monitor_id = f"monitor-{model}-{report_stamp(now).replace('.', '')}"
    state = log.acquire(model, monitor_id, now, LEASE)
    try:
        return _run(svc, log, runs, contract, version, state, monitor_id, now, requested_by)
    except BaseException:
        log.release(model, monitor_id)
        raise


class _Labelled:
    """The labels this run uses (or leaves waiting), joined to their captures."""

    def __init__(self) -> None:
        self.sets: list[LabelSet] = []
        self.rows: list[tuple[CapturedRow, Any]] = []  # (capture, label)
        self.lookback_sources: list[str] = []
        self.notes: list[str] = []


@dataclass
class _Findings:
    """What one run read and concluded, before it writes anything."""

    window: CaptureWindow
    capture_cursor: ObjectCursor
    labelled: _Labelled
    label_cursor: ObjectCursor
    served: list[CapturedRow]
    labelled_served: list[tuple[CapturedRow, Any]]
    report: MonitorReport

    @property
    def captures_read(self) -> list[str]:
        return [*self.window.sources, *self.labelled.lookback_sources]

    @property
    def label_files(self) -> list[str]:
        return [file_id(s.source_uri, s.source_version_id) for s in self.labelled.sets]

    @property
    def live_value(self) -> float | None:
        live = self.report.live
        return live.metrics.get(self.report.metric) if live is not None else None

    @property
    def idempotency_key(self) -> str:
        return f"{self.report.model}/{self.report.window_end.isoformat()}"

    @property
    def run_id(self) -> str | None:
        """The run a retraining asks for (named as the trigger names it), else None."""
        decision = self.report.decision
        if decision.action != "retrain" or decision.reason is None:
            return None
        return execution_name(RunReason(decision.reason), self.report.model, self.idempotency_key)


def _run(
    svc: Services,
    log: MonitorLog,
    runs: RunRequester,
    contract: DataContract,
    version: ModelVersion,
    state: MonitorState,
    monitor_id: str,
    now: datetime,
    requested_by: str,
) -> MonitorOutcome:
    found = _find(svc, log, contract, version, state, now)
    report, model = found.report, contract.model
    report_ref, html_ref = report_refs(svc.settings, model, now)
    feedback = feedback_frame(_joined_frame(found.labelled.rows, contract), contract)
    if feedback.notes:
        report = report.model_copy(update={"notes": [*report.notes, *feedback.notes]})
    feedback_id = (
        feedback_dataset_id(model, [s.label_set_id for s in found.labelled.sets]) if feedback.data else None
    )
    document = {
        **report.model_dump(mode="json"),
        "monitor": {
            "monitor_id": monitor_id,
            "requested_by": requested_by,
            "captures_read": found.captures_read,
            "label_sets": [s.uri for s in found.labelled.sets],
            "label_files": found.label_files,
            "feedback_dataset": feedback_id,
            "requested_run": found.run_id,
            "idempotency_key": found.idempotency_key if found.run_id else None,
        },
    }
    report_body = json.dumps(document, indent=2, default=str).encode()
    html_body = render_html(report).encode()
    written_report = svc.objects.put(report_ref, report_body, "application/json")
    written_html = svc.objects.put(html_ref, html_body, "text/html; charset=utf-8")

    dataset = None
    if feedback.data is not None and feedback_id is not None:
        sources = [*dict.fromkeys(capture.source for capture, _ in found.labelled.rows), *found.label_files]
        dataset = write_feedback_dataset(
            svc, model, feedback_id, feedback.data, evidence_uri=report_ref.uri, sources=sources
        )
    trigger: TriggerOutcome | None = None
    decision = report.decision
    if found.run_id is not None and decision.reason is not None:
        trigger = runs.request_run(
            RunRequest(
                model=model,
                reason=RunReason(decision.reason),
                requested_by=MONITOR_ACTOR,
                evidence_uri=report_ref.uri,
                idempotency_key=found.idempotency_key,
            )
        )
    _record_lineage(
        svc,
        monitor_id,
        captures_read=found.captures_read,
        label_files=found.label_files,
        reports=[(written_report, report_body), (written_html, html_body)],
        report=report,
        feedback_dataset=dataset.dataset_id if dataset else None,
        run_id=trigger.run_id if trigger is not None and trigger.run_id else None,
    )
    emit_metrics(model, report)
    record = MonitorRecord(
        monitor_id=monitor_id,
        model=model,
        version=version.version,
        requested_by=requested_by,
        started_at=now,
        ended_at=datetime.now(UTC),
        window_start=report.window_start,
        window_end=report.window_end,
        rows=report.rows,
        labelled_rows=report.labelled_rows,
        captures_read=len(found.captures_read),
        label_sets=[s.label_set_id for s in found.labelled.sets],
        metric=report.metric,
        live_metric=found.live_value,
        holdout_metric=report.holdout_metrics.get(report.metric),
        drift_share=report.drift.drift_share if report.drift is not None else None,
        drifted_features=report.drift.drifted_features if report.drift is not None else [],
        action=decision.action,
        reason=decision.reason,
        reasons=decision.reasons,
        report_uri=report_ref.uri,
        html_uri=html_ref.uri,
        feedback_dataset=dataset.dataset_id if dataset else None,
        feedback_rows=dataset.rows if dataset else 0,
        run_id=trigger.run_id if trigger is not None else None,
        run_started=bool(trigger and trigger.started),
        run_duplicate=bool(trigger and trigger.duplicate),
        notes=report.notes,
    )
    triggered = trigger is not None and (trigger.started or trigger.duplicate)
    new_state = MonitorState(
        captures=found.capture_cursor,
        labels=found.label_cursor,
        last_triggered_at=now if triggered else state.last_triggered_at,
        last_triggered_run=record.run_id if triggered else state.last_triggered_run,
        last_monitor_id=monitor_id,
    )
    log.commit(model, monitor_id, new_state, record)
    logger.info(
        "model monitored",
        extra={
            "model": model,
            "version": version.version,
            "action": decision.action,
            "reason": decision.reason,
            "rows": record.rows,
            "labelled_rows": record.labelled_rows,
            "report": report_ref.uri,
            "run_id": record.run_id,
        },
    )
    return MonitorOutcome(
        model=model,
        monitored=True,
        monitor_id=monitor_id,
        version=version.version,
        action=decision.action,
        reason=decision.reason,
        reasons=decision.reasons,
        rows=record.rows,
        labelled_rows=record.labelled_rows,
        report_uri=report_ref.uri,
        html_uri=html_ref.uri,
        feedback_dataset=record.feedback_dataset,
        run_id=record.run_id,
        run_started=record.run_started,
        run_duplicate=record.run_duplicate,
        detail=_detail(decision, trigger),
    )


def _find(
    svc: Services,
    log: MonitorLog,
    contract: DataContract,
    version: ModelVersion,
    state: MonitorState,
    now: datetime,
) -> _Findings:
    """Read the new captures and labels, and judge them: drift, live performance, the decision."""
    model, policy = contract.model, contract.monitoring_policy
    window, capture_cursor = read_capture_window(
        svc.objects,
        svc.settings.data_bucket,
        model,
        state.captures,
        now=now,
        window_hours=policy.window_hours,
        max_rows=policy.max_window_rows,
    )
    notes = window.notes(policy.window_hours, policy.max_window_rows)
    traffic = [row for row in window.rows if row.origin == CLIENT_TRAFFIC]
    if len(traffic) < len(window.rows):
        origins = sorted({row.origin for row in window.rows} - {CLIENT_TRAFFIC})
        notes.append(
            f"{len(window.rows) - len(traffic)} capture(s) of {', '.join(origins)} requests are not client "
            "traffic: not judged"
        )
    served = [row for row in traffic if row.version == version.version]
    if len(served) < len(traffic):
        others = sorted({row.version for row in traffic} - {version.version})
        notes.append(
            f"{len(traffic) - len(served)} capture(s) answered by "
            f"{', '.join(f'v{v}' for v in others)} are not judged against v{version.version}"
        )
    labelled, label_cursor = _labels(svc, contract, state, window.rows, now)
    notes += labelled.notes
    labelled_served = [
        (capture, label) for capture, label in labelled.rows if capture.version == version.version
    ]
    profile, profile_notes = load_profile(svc, version)
    notes += profile_notes
    drift: DriftReport | None = None
    if served:
        inputs, predictions = capture_frames({"inputs": r.inputs, "outputs": r.outputs} for r in served)
        drift = compute_drift(inputs, predictions, profile, contract, policy)
    live: Evaluation | None = None
    if labelled_served:
        live = live_performance(_labelled_frame(labelled_served, contract), contract)
    holdout = {k: float(v) for k, v in version.metrics.items() if isinstance(v, int | float)}
    decision = decide(drift, live, holdout, policy, state.last_triggered_at, now)
    judged = [row.time for row in served] + [capture.time for capture, _ in labelled_served]
    window_end = max(judged, default=now)
    metric = str(policy.metric)
    live_value = live.metrics.get(metric) if live is not None else None
    report = MonitorReport(
        model=model,
        version=version.version,
        window_start=min(judged, default=now - timedelta(hours=policy.window_hours)),
        window_end=window_end,
        rows=len(served),
        labelled_rows=len(labelled_served),
        drift=drift,
        live=live,
        holdout_metrics=holdout,
        metric=metric,
        metric_history=_history(log.history(model, HISTORY_POINTS), window_end, live_value, version.version),
        policy=policy,
        decision=decision,
        generated_at=now,
        notes=notes,
    )
    return _Findings(
        window=window,
        capture_cursor=capture_cursor,
        labelled=labelled,
        label_cursor=label_cursor,
        served=served,
        labelled_served=labelled_served,
        report=report,
    )


def _detail(decision: MonitorDecision, trigger: TriggerOutcome | None) -> str:
    if decision.action == "retrain" and trigger is not None:
        state = "started" if trigger.started else "already started" if trigger.duplicate else "not started"
        return f"{decision.reason} run {trigger.run_id} {state}"
    if decision.action == "held_back":
        return f"{decision.reason} found, retraining held back by the cooldown"
    return decision.action.replace("_", " ")


def _labels(
    svc: Services, contract: DataContract, state: MonitorState, window: Sequence[CapturedRow], now: datetime
) -> tuple[_Labelled, ObjectCursor]:
    """The label sets accepted since the last run, joined to their captures; and the label cursor after
    them (unchanged while they wait for more)."""
    policy = contract.monitoring_policy
    result = _Labelled()
    listing = [
        obj
        for obj in svc.objects.list(svc.settings.data_bucket, accepted_prefix(contract.model))
        if obj.ref.key.endswith(PARQUET_SUFFIX)
    ]
    pending = unread(listing, state.labels)
    if not pending:
        return result, advance(state.labels, listing, [], now)
    sets = [parse_label_set(svc.objects.get(obj.ref).body, obj.ref.uri) for obj in pending]
    frames = [s.frame.assign(_set=index) for index, s in enumerate(sets)]
    labels = pd.concat(frames, ignore_index=True).drop_duplicates(LABEL_ID_COLUMN, keep="last")
    found, lookback = find_captures(
        svc.objects,
        svc.settings.data_bucket,
        contract.model,
        labels[LABEL_ID_COLUMN].astype(str),
        now=now,
        known=window,
    )
    joined = [
        (found[rid], label)
        for rid, label in zip(labels[LABEL_ID_COLUMN].astype(str), labels[contract.target], strict=True)
        if rid in found
    ]
    oldest = min(as_utc(obj.last_modified) for obj in pending)
    stale = now - oldest >= timedelta(hours=policy.window_hours)
    if len(joined) < policy.min_labelled_rows and not stale:
        result.notes.append(
            f"{len(labels)} new label(s) in {len(sets)} file(s) wait for more: {len(joined)} found their "
            f"capture, {policy.min_labelled_rows} needed to judge {policy.metric} (used anyway once the "
            f"oldest has waited {policy.window_hours:g} h)"
        )
        return result, state.labels
    result.sets, result.rows = sets, joined
    result.lookback_sources = lookback
    unmatched = len(labels) - len(joined)
    if unmatched:
        result.notes.append(
            f"{unmatched} label(s) matched no capture of the last {LABEL_LOOKBACK_DAYS} days: left out"
        )
    return result, advance(state.labels, listing, pending, now)


def _labelled_frame(rows: Sequence[tuple[CapturedRow, Any]], contract: DataContract) -> pd.DataFrame:
    """The production version's labelled captures as :func:`live_performance` reads them."""
    _, predictions = capture_frames({"inputs": {}, "outputs": capture.outputs} for capture, _ in rows)
    return predictions.assign(**{contract.target: [label for _, label in rows]})


def _joined_frame(rows: Sequence[tuple[CapturedRow, Any]], contract: DataContract) -> pd.DataFrame:
    """Labelled captures as :func:`shared.monitoring.feedback.feedback_frame` reads them."""
    columns: dict[str, Any] = {
        FEEDBACK_ID_COLUMN: pd.Series([capture.request_id for capture, _ in rows], dtype=object),
        FEEDBACK_TIME_COLUMN: pd.to_datetime([capture.time for capture, _ in rows], utc=True),
    }
    for name in contract.features:
        columns[name] = pd.Series([capture.inputs.get(name) for capture, _ in rows], dtype=object)
    columns[contract.target] = pd.Series([label for _, label in rows])
    return pd.DataFrame(columns)


def _history(
    records: Sequence[MonitorRecord], window_end: datetime, live: float | None, version: int
) -> list[MetricPoint]:
    """The live metric of past runs (oldest first) and of this one, with the version that served each."""
    points = [
        MetricPoint(time=r.window_end, metric=r.live_metric, version=r.version)
        for r in reversed(records)
        if r.live_metric is not None
    ]
    if live is not None:
        points.append(MetricPoint(time=window_end, metric=live, version=version))
    return points


def load_profile(svc: Services, version: ModelVersion) -> tuple[dict[str, Any], list[str]]:
    """The version's reference profile, its bytes checked against the sha256 training recorded for them."""
    uri = version.reference_profile_uri
    if not uri:
        raise FlywheelError(
            f"{version.name} v{version.version} has no reference profile to compare traffic with; "
            "a version trained by the pipeline has one"
        )
    body = svc.objects.get(ObjectRef.parse(uri)).body
    try:
        artifact: Artifact | None = svc.metadata.get_artifact(f"{version.run_id}/{RunArtifact.PROFILE}")
    except NotFoundError:
        artifact = None
    notes = []
    if artifact is not None and artifact.uri == uri:
        actual = sha256_hex(body)
        if actual != artifact.sha256:
            raise IntegrityError(
                f"{uri} has sha256 {actual[:12]}…, but {artifact.sha256[:12]}… was recorded: "
                "refusing to read it"
            )
    else:
        notes.append(
            f"no artifact record vouches for the reference profile {uri}: read without a sha256 check"
        )
    profile: dict[str, Any] = json.loads(body)
    return profile, notes


def _record_lineage(
    svc: Services,
    monitor_id: str,
    *,
    captures_read: Sequence[str],
    label_files: Sequence[str],
    reports: Sequence[tuple[ObjectRef, bytes]],
    report: MonitorReport,
    feedback_dataset: str | None,
    run_id: str | None,
) -> None:
    link = svc.metadata.link
    for source in dict.fromkeys([*captures_read, *label_files]):
        link(NodeType.FILE, source, NodeType.RUN, monitor_id, Relation.INPUT)
    for ref, body in reports:
        artifact_id = f"{monitor_id}/{ref.key.rsplit('/', 1)[-1]}"
        svc.metadata.put_artifact(
            Artifact(
                artifact_id=artifact_id,
                kind=ArtifactKind.REPORT,
                uri=ref.uri,
                sha256=sha256_hex(body),
                created_at=report.generated_at,
                properties={
                    "model": report.model,
                    "version": report.version,
                    "action": report.decision.action,
                    "reason": report.decision.reason,
                    "version_id": ref.version_id,
                },
            )
        )
        link(NodeType.RUN, monitor_id, NodeType.ARTIFACT, artifact_id, Relation.OUTPUT)
    if feedback_dataset is not None:
        link(NodeType.RUN, monitor_id, NodeType.DATASET, feedback_dataset, Relation.OUTPUT)
    if run_id is not None:
        link(NodeType.ARTIFACT, f"{monitor_id}/report.json", NodeType.RUN, run_id, "evidence")


def emit_metrics(model: str, report: MonitorReport) -> None:
    """EMF metrics of one run: per feature PSI; drift share, live metric, rows; the decision as a count."""
    model_only = {"model": model}

    def emit(name: str, unit: MetricUnit, value: float, dimensions: dict[str, str] = model_only) -> None:
        if is_metrics_disabled():  # single_metric prints even when metrics are disabled; Metrics does not
            return
        with single_metric(
            name=name, unit=unit, value=value, namespace=metrics.namespace, default_dimensions=dimensions
        ):
            pass

    drift = report.drift
    if drift is not None:
        for feature in drift.features:
            if feature.psi is not None:
                emit("FeaturePSI", MetricUnit.NoUnit, feature.psi, {"model": model, "feature": feature.name})
        emit("DriftShare", MetricUnit.NoUnit, drift.drift_share)
        if drift.prediction is not None and drift.prediction.psi is not None:
            emit("PredictionPSI", MetricUnit.NoUnit, drift.prediction.psi)
    live = report.live.metrics.get(report.metric) if report.live is not None else None
    if live is not None:
        emit("LiveMetric", MetricUnit.NoUnit, live, {"model": model, "metric": report.metric})
    emit("WindowRows", MetricUnit.Count, report.rows)
    emit("LabelledRows", MetricUnit.Count, report.labelled_rows)
    decision = report.decision
    emit(DECISION_METRICS[decision.action], MetricUnit.Count, 1)
    if decision.reason == "drift":
        emit("DriftDetected", MetricUnit.Count, 1)
    elif decision.reason == "degradation":
        emit("DegradationDetected", MetricUnit.Count, 1)


DECISION_METRICS: dict[str, str] = {
    "none": "NoRetrainNeeded",
    "retrain": "RetrainRequested",
    "held_back": "RetrainHeldBack",
    "insufficient_data": "InsufficientMonitoringData",
}
