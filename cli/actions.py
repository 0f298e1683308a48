"""What the ``flywheel`` commands do, as functions over :class:`Services` (the demo calls them too).

Each returns plain data (pydantic models or dicts) that ``cli/render.py`` prints as a table or as JSON.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cli.uploads import upload
from shared.data.catalog import contract_ref, load_contract
from shared.data.contract import DataContract
from shared.data.quarantine import FileKind, quarantine_ref, read_refusal, report_ref
from shared.errors import FlywheelError, InvalidRequestError, NotFoundError
from shared.experiments import TrialStatus
from shared.featurestore.contracts import put_contract
from shared.layout import DataPrefix
from shared.metadata import Direction, NodeType, Run, RunReason, RunStatus, Step, model_version_id
from shared.pipeline.trigger import RunRequest, TriggerOutcome, execution_name
from shared.registry import ModelVersion
from shared.services import Services

FINAL = {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.REJECTED, RunStatus.SKIPPED}
Progress = Callable[[str], None]


class RunFailedError(FlywheelError):
    """A run the command waited for ended failed; the message has the step and the reason."""


class PushResult(BaseModel):
    model: str
    uri: str
    version_id: str | None
    run_id: str


class RunView(BaseModel):
    run: Run
    steps: list[Step]
    quarantine: dict[str, Any] | None = None


# --- contracts ------------------------------------------------------------------------------------------


def contract_put(svc: Services, path: Path) -> tuple[DataContract, str | None]:
    contract, stored = put_contract(svc.objects, svc.settings, path.read_bytes())
    return contract, stored.version_id


def contract_show(svc: Services, model: str) -> DataContract:
    return load_contract(svc.objects, svc.settings, model)


# --- data and runs ----------------------------------------------------------------------------------------


def push(svc: Services, path: Path, model: str, name: str | None = None) -> PushResult:
    """Upload a data file under ``incoming/<model>/``; the S3 event starts its run."""
    load_contract(svc.objects, svc.settings, model)  # refuse early, with the reason, when there is none
    key = f"{DataPrefix.INCOMING}{model}/{name or path.name}"
    stored = upload(svc, path, key)
    etag = svc.objects.head(stored).etag
    run_id = execution_name(RunReason.NEW_DATA, model, stored.bucket, key, stored.version_id or etag)
    return PushResult(model=model, uri=stored.uri, version_id=stored.version_id, run_id=run_id)


def request_run(
    svc: Services, invoke: Callable[[dict[str, Any]], dict[str, Any]], model: str, by: str
) -> str:
    """Ask the trigger function for a run on the data the model has; returns the run id."""
    return ask_trigger(invoke, RunRequest(model=model, requested_by=by)).run_id


def ask_trigger(invoke: Callable[[dict[str, Any]], dict[str, Any]], request: RunRequest) -> TriggerOutcome:
    """Send ``request`` to the trigger function; a request it refuses is an :class:`InvalidRequestError`."""
    answer = invoke(request.model_dump(mode="json", exclude_none=True))
    if "errorType" in answer:
        message = f"{answer['errorType']}: {answer.get('errorMessage', '')}"
        if answer["errorType"] == InvalidRequestError.__name__:
            raise InvalidRequestError(message)
        raise FlywheelError(message)
    return TriggerOutcome.model_validate(answer["runs"][0])


def wait_for_run(
    svc: Services,
    run_id: str,
    progress: Progress,
    timeout_s: float = 1800.0,
    until: Callable[[RunView], bool] | None = None,
) -> RunView:
    """Follow a run until it ends (or ``until`` says it has gone far enough), reporting each step as it
    starts and ends."""
    deadline = time.monotonic() + timeout_s
    seen: dict[str, str] = {}
    started = time.monotonic()
    trials_seen: tuple[int, int] | None = None
    while True:
        try:
            view = show_run(svc, run_id)
        except NotFoundError:
            view = None  # the trigger has not recorded it yet
        if view is not None:
            for step in view.steps:
                if seen.get(step.name) != step.status.value:
                    seen[step.name] = step.status.value
                    took = f" ({step.duration_s:.1f}s)" if step.duration_s is not None else ""
                    progress(
                        f"  {time.monotonic() - started:6.1f}s  {step.name:<9} {step.status.value}{took}"
                    )
            if view.run.reason is RunReason.EXPERIMENT:
                trials_seen = _trial_progress(svc, run_id, trials_seen, progress, started)
            if view.run.status in FINAL or (until is not None and until(view)):
                return view
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} has not finished after {timeout_s:.0f}s")
        time.sleep(0.2)


def _trial_progress(
    svc: Services, run_id: str, seen: tuple[int, int] | None, progress: Progress, started: float
) -> tuple[int, int] | None:
    """One line each time an experiment's trials are asked or end: how many, and the best so far."""
    try:
        found = svc.experiments.get(run_id)
    except NotFoundError:
        return seen
    trials = svc.experiments.trials(run_id)
    ended = [t for t in trials if t.status.finished]
    now = (len(trials), len(ended))
    if now == seen or not trials:
        return seen
    scored = [t for t in ended if t.status is TrialStatus.SUCCEEDED and t.value is not None]
    pick = max if found.higher_is_better else min
    best = pick(scored, key=lambda t: t.value or 0.0) if scored else None
    lost = len(ended) - len(scored)
    line = f"{len(ended)}/{found.policy.get('trials')} trials ended ({len(trials) - len(ended)} running"
    line += f", {lost} failed or timed out)" if lost else ")"
    if best is not None:
        line += f", best {found.metric} {best.value:.4f} (trial {best.number})"
    progress(f"  {time.monotonic() - started:6.1f}s  {'trials':<9} {line}")
    return now


def show_run(svc: Services, run_id: str) -> RunView:
    run = svc.metadata.get_run(run_id)
    steps = svc.metadata.list_steps(run_id)
    return RunView(run=run, steps=steps, quarantine=_quarantine_report(svc, run))


def _quarantine_report(svc: Services, run: Run) -> dict[str, Any] | None:
    if run.status is not RunStatus.FAILED or not run.error or run.error.step != "validate":
        return None
    source = run.input.get("source") or {}
    relative = str(source.get("key", "")).removeprefix(f"{DataPrefix.INCOMING}{run.model}/")
    if not relative:
        return None
    destination = quarantine_ref(FileKind.DATA, svc.settings.data_bucket, run.model, relative)
    refusal = read_refusal(svc.objects, destination)
    if refusal is None:
        return None
    return {**refusal.model_dump(mode="json"), "report_uri": report_ref(destination).uri}


def list_runs(svc: Services, model: str | None, limit: int) -> list[Run]:
    return svc.metadata.list_runs(model, limit=limit)


# --- models and lineage -------------------------------------------------------------------------------------


def models(svc: Services, model: str) -> dict[str, Any]:
    versions = sorted(svc.registry.search_model_versions(name=model), key=lambda v: v.version)
    if not versions:
        raise NotFoundError(f"model {model!r} has no registered versions yet")
    aliases = {a.alias: a.version for a in svc.registry.list_aliases(model)}
    return {"model": model, "aliases": aliases, "versions": versions}


def lineage(svc: Services, reference: str) -> dict[str, Any]:
    """What made ``MODEL:VERSION``: datasets (versions, sha256), source files, the run and its trigger,
    parameters, code version and metrics."""
    name, _, number = reference.partition(":")
    if not name or not number.isdigit():
        raise FlywheelError(f"expected MODEL:VERSION (e.g. churn:2), got {reference!r}")
    version: ModelVersion = svc.registry.get_model_version(name, int(number))
    run = svc.metadata.get_run(version.run_id)
    return {
        "model_version": version.ref,
        "stage": version.stage.value,
        "registered_at": version.created_at,
        "run": {
            "run_id": run.run_id,
            "reason": run.reason.value,
            "status": run.status.value,
            "started_at": run.started_at,
            "evidence_uri": run.evidence_uri,
            "requested_by": run.input.get("requested_by"),
            # A code_change run names the code that started it: a change of code, not of data.
            "code_change": run.input.get("code_change"),
        },
        **trained_on(svc, version),
        "params": version.params,
        "metrics": version.metrics,
        "champion_metrics": version.champion_metrics,
        "gate": version.gate.model_dump() if version.gate else None,
        "code_version": version.code_version,
        "model_code": {
            "digest": version.code_artifact.sha256,
            "uri": version.code_artifact.uri,
            "commit": version.code_commit,
        }
        if version.code_artifact
        else None,
        "experiment": _experiment_of(svc, version),
        "library_versions": version.library_versions,
        "artifact": version.artifact.model_dump(),
        "audit": [
            t.model_dump(mode="json") for t in svc.registry.audit_trail(name) if t.version == version.version
        ],
        "scoring_jobs": _scoring_jobs(svc, version),
    }


def _scoring_jobs(svc: Services, version: ModelVersion) -> list[dict[str, Any]]:
    """The batch scoring jobs the version ran (downstream of it in lineage), with their manifests."""
    found = []
    for event in svc.metadata.downstream(
        NodeType.MODEL_VERSION, model_version_id(version.name, version.version)
    ):
        if event.relation != "scored" or event.dst.type is not NodeType.ARTIFACT:
            continue
        artifact = svc.metadata.get_artifact(event.dst.id)
        found.append(
            {"job_id": artifact.properties.get("job_id"), "manifest": artifact.uri, **artifact.properties}
        )
    return found


def _experiment_of(svc: Services, version: ModelVersion) -> dict[str, Any] | None:
    """The experiment whose winning trial chose the version's parameters, with its search in brief."""
    ref = version.experiment
    if ref is None:
        return None
    view: dict[str, Any] = ref.model_dump(mode="json")
    try:
        experiment = svc.experiments.get(ref.experiment_id)
    except NotFoundError:
        return {**view, "note": "the experiment's record is gone"}
    trials = svc.experiments.trials(ref.experiment_id)
    statuses = sorted({t.status.value for t in trials})
    view.update(
        run_id=experiment.run_id,
        strategy=experiment.policy.get("strategy"),
        trials={s: sum(t.status.value == s for t in trials) for s in statuses},
        started_at=experiment.started_at.isoformat(),
    )
    return view


def trained_on(svc: Services, version: ModelVersion) -> dict[str, Any]:
    """The data a version was trained on: its datasets (S3 versions, sha256, rows, time range), the source
    files upstream of it in lineage, and the runs that made them."""
    graph = svc.metadata.lineage(
        NodeType.MODEL_VERSION, model_version_id(version.name, version.version), Direction.UPSTREAM, 6
    )
    return {
        "datasets": [d.model_dump(mode="json") for d in version.training_datasets],
        "source_files": graph.ids(NodeType.FILE),
        "upstream_runs": graph.ids(NodeType.RUN),
    }


def contract_uri(svc: Services, model: str) -> str:
    return contract_ref(svc.settings, model).uri


def now() -> datetime:
    return datetime.now(UTC)
