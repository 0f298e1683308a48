"""``flywheel deliver``: a changed model project is a new pipeline implementation, delivered as a run.

For each model project (``<models dir>/<model>/`` holding a ``contract.yaml``) the checkout's code digest
(:func:`shared.ml.projects.read_project`) is compared with the code of the model's production version. When
they differ — or the model has data and no production version yet — the trigger is asked for a run with
reason ``code_change`` naming the digest (and the commit, when known). The run trains the new code on the
data the model already has, and its candidate faces the same gate against production on the same holdout as
any other. Train refuses a digest the stack does not hold, so a run never records code nobody deployed.

The project's contract is delivered with its code: stored when the stack has none for the model (or one that
no longer parses), replaced when it differs — the checkout is the source of truth — and checked completely
either way, as ``contract put`` checks it. A contract change alone starts no run: the digest is the code.

Delivering twice starts nothing twice (a re-run CI job, a push that changed only Flywheel or the docs):

- production runs this code: *unchanged*;
- a run of this code is in flight (a ``code_change`` run for the digest, or the run of a version trained
  from it, e.g. one waiting for approval): *in flight*, and ``--wait`` follows it;
- a run of this code ended succeeded or rejected: *judged* — the gate, verification or a reviewer said no,
  or a person rolled production back since. ``--force`` trains it again. A failed run does not count:
  delivering again retries it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import click

from cli import actions, render
from cli.common import Context, json_option, pass_context, reported
from shared.data.catalog import load_contract
from shared.data.contract import DataContract, parse_contract
from shared.env_names import EnvVar
from shared.errors import ContractError, NotFoundError
from shared.featurestore.contracts import put_contract
from shared.metadata import RunReason, RunStatus, StepStatus
from shared.ml.projects import ModelCode, read_project
from shared.pipeline.state import GIT_COMMIT, CodeChange
from shared.pipeline.trigger import RunRequest
from shared.registry import ModelVersion
from shared.services import Services

CONTRACT_FILE = "contract.yaml"
# How far back a model's runs are searched for one of the same code: a CI job re-run comes within hours.
RUNS_SEARCHED = 200
IN_FLIGHT = frozenset({RunStatus.PENDING, RunStatus.RUNNING})
JUDGED = frozenset({RunStatus.SUCCEEDED, RunStatus.REJECTED})
Progress = Callable[[str], None]


class Action(StrEnum):
    DELIVER = "deliver"  # start a code_change run
    UNCHANGED = "unchanged"
    IN_FLIGHT = "in_flight"
    JUDGED = "judged"
    NO_DATA = "no_data"
    NO_CODE = "no_code"  # the contract names a built-in estimator: there is no code to deliver


# --- the decision: pure ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EarlierRun:
    """A run that trained (or is training) this code: a code_change run for it, or a version's run."""

    run_id: str
    status: RunStatus
    version: int | None = None


@dataclass(frozen=True)
class CodeState:
    """What the decision reads about one model: the checkout's code and what the stack did with code."""

    model: str
    digest: str
    production_version: int | None
    production_digest: str | None  # None: no production version, or one from a built-in estimator
    earlier: tuple[EarlierRun, ...]  # newest first
    has_data: bool


@dataclass(frozen=True)
class Decision:
    action: Action
    detail: str
    run_id: str | None = None  # the run in flight, or the one that judged this code


def decide(state: CodeState, force: bool = False) -> Decision:
    """Whether the checkout's code of one model needs a ``code_change`` run, and why (or why not)."""
    code = f"code {state.digest[:12]}"
    if state.production_digest == state.digest:
        return Decision(Action.UNCHANGED, f"production v{state.production_version} runs {code}; no run")
    running = next((r for r in state.earlier if r.status in IN_FLIGHT), None)
    if running is not None:
        return Decision(
            Action.IN_FLIGHT, f"run {running.run_id} is training {code} already; no new run", running.run_id
        )
    judged = next((r for r in state.earlier if r.status in JUDGED), None)
    if judged is not None and not force:
        made = f"v{judged.version}" if judged.version is not None else "its candidate"
        verdict = (
            f"promoted {made}, and production has moved since (to v{state.production_version})"
            if judged.status is RunStatus.SUCCEEDED
            else f"{made} was rejected"
        )
        return Decision(
            Action.JUDGED,
            f"run {judged.run_id} trained {code} and {verdict}; no run (--force trains it again)",
            judged.run_id,
        )
    if not state.has_data:
        return Decision(
            Action.NO_DATA,
            f"no data yet: the first file under incoming/{state.model}/ trains {code}; no run",
        )
    if state.production_digest is not None:
        against = f"production v{state.production_version} runs code {state.production_digest[:12]}"
    elif state.production_version is not None:
        against = f"production v{state.production_version} has no model code"
    else:
        against = "no production version yet"
    return Decision(Action.DELIVER, f"{code} is new ({against}): a run with reason code_change")


# --- what the stack holds --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """A model project of the checkout: its folder, its contract and its packed code (None: no code)."""

    model: str
    root: Path
    contract: DataContract
    contract_text: str
    code: ModelCode | None


def find_projects(models_dir: Path, models: Sequence[str] = ()) -> list[Project]:
    """The projects under ``models_dir`` (every folder holding a contract.yaml), or the ``models`` named."""
    if not models_dir.is_dir():
        raise NotFoundError(f"there is no models folder {models_dir}")
    names = list(models) or sorted(p.name for p in models_dir.iterdir() if (p / CONTRACT_FILE).is_file())
    projects = []
    for name in names:
        root = models_dir / name
        path = root / CONTRACT_FILE
        if not path.is_file():
            raise NotFoundError(f"{name}: no model project at {root} (it needs {CONTRACT_FILE})")
        text = path.read_text()
        contract = parse_contract(text)
        if contract.model != name:
            raise ContractError(
                f"{path} declares model {contract.model!r}: a project's folder is its model's name",
                problems=[f"model: expected {name!r}, got {contract.model!r}"],
            )
        code = read_project(root, name) if contract.training.pipeline is not None else None
        projects.append(Project(name, root, contract, text, code))
    return projects


def code_state(svc: Services, model: str, digest: str) -> CodeState:
    """What the stack did with code: production's digest, the runs of this code, whether there is data."""
    production = _production(svc, model)
    runs = [
        r
        for r in svc.metadata.list_runs(model, limit=RUNS_SEARCHED)
        if r.reason is RunReason.CODE_CHANGE and (r.input.get("code_change") or {}).get("digest") == digest
    ]
    earlier = {
        r.run_id: (r.started_at, EarlierRun(r.run_id, r.status, r.outcome.get("version"))) for r in runs
    }
    # A version trained from this code by any run (new data after the deploy, say) judged it too.
    for version in svc.registry.search_model_versions(name=model):
        if _digest(version) != digest or version.run_id in earlier:
            continue
        try:
            run = svc.metadata.get_run(version.run_id)
        except NotFoundError:
            continue
        earlier[run.run_id] = (run.started_at, EarlierRun(run.run_id, run.status, version.version))
    newest_first = tuple(e for _, e in sorted(earlier.values(), key=lambda p: p[0], reverse=True))
    return CodeState(
        model=model,
        digest=digest,
        production_version=production.version if production else None,
        production_digest=_digest(production) if production else None,
        earlier=newest_first,
        has_data=bool(svc.metadata.list_datasets(model)),
    )


def _production(svc: Services, model: str) -> ModelVersion | None:
    try:
        return svc.registry.get_model_version_by_alias(model, "production")
    except NotFoundError:
        return None


def _digest(version: ModelVersion) -> str | None:
    return version.code_artifact.sha256 if version.code_artifact else None


def sync_contract(svc: Services, project: Project, dry_run: bool) -> str | None:
    """Store the project's contract when the stack has none, or another: ``stored``/``updated``/None."""
    try:
        stored: DataContract | None = load_contract(svc.objects, svc.settings, project.model)
    except ContractError:  # none, or one that no longer parses: the project's replaces it
        stored = None
    if stored == project.contract:
        return None
    if not dry_run:
        put_contract(svc.objects, svc.settings, project.contract_text)
    return "stored" if stored is None else "updated"


# --- delivering --------------------------------------------------------------------------------------------


@dataclass
class Delivered:
    """One model's delivery: what was decided and, with ``--wait``, how its run ended."""

    model: str
    action: Action
    detail: str
    digest: str | None = None
    contract: str | None = None  # "stored" / "updated" when the project's contract was put
    run_id: str | None = None
    status: str | None = None  # the run's status, or "awaiting_approval"
    version: int | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == RunStatus.FAILED.value


def deliver_project(
    svc: Services,
    invoke: Callable[[dict[str, Any]], dict[str, Any]],
    project: Project,
    *,
    by: str,
    commit: str | None,
    force: bool,
    dry_run: bool,
    progress: Progress,
) -> Delivered:
    """Put the project's contract if needed, decide, and start the ``code_change`` run if one is due."""
    contract = sync_contract(svc, project, dry_run)
    if contract:
        progress(f"  contract {contract} from {project.root / CONTRACT_FILE}" + (" (dry run)" * dry_run))
    if project.code is None:
        detail = f"the contract names a built-in estimator ({project.contract.training.builder}); no code"
        return Delivered(project.model, Action.NO_CODE, detail, contract=contract)
    digest = project.code.digest
    decision = decide(code_state(svc, project.model, digest), force)
    progress(f"  {decision.detail}")
    delivered = Delivered(
        project.model, decision.action, decision.detail, digest, contract, run_id=decision.run_id
    )
    if decision.action is not Action.DELIVER or dry_run:
        return delivered
    request = RunRequest(
        model=project.model,
        reason=RunReason.CODE_CHANGE,
        requested_by=by,
        code_change=CodeChange(digest=digest, commit=commit),
    )
    outcome = actions.ask_trigger(invoke, request)
    progress(f"  run {outcome.run_id} started")
    delivered.run_id = outcome.run_id
    return delivered


def awaits_approval(view: actions.RunView) -> bool:
    """The run waits on a person (its candidate is staged): as far as delivery follows it."""
    return bool(view.steps) and (view.steps[-1].name, view.steps[-1].status) == (
        "approval",
        StepStatus.RUNNING,
    )


def follow(svc: Services, delivered: Delivered, progress: Progress, timeout_s: float) -> None:
    """Wait for the delivered run to end or to wait for a person; note how it ended and why."""
    assert delivered.run_id is not None
    view = actions.wait_for_run(svc, delivered.run_id, progress, timeout_s, until=awaits_approval)
    run = view.run
    outcome = run.outcome
    if run.status is RunStatus.FAILED:
        delivered.status = run.status.value
        delivered.reasons = [f"{run.error.step}: {run.error.type}: {run.error.message}"] if run.error else []
        return
    if run.status in IN_FLIGHT:  # waiting for approval: the version is the run's, staged
        delivered.status = "awaiting_approval"
        found = [v for v in svc.registry.search_model_versions(name=run.model) if v.run_id == run.run_id]
        delivered.version = found[-1].version if found else None
        return
    delivered.status = run.status.value
    delivered.version = outcome.get("version")
    if run.status is RunStatus.REJECTED:
        delivered.reasons = _rejection_reasons(outcome)


def _rejection_reasons(outcome: dict[str, Any]) -> list[str]:
    if outcome.get("gate_passed") is False:
        return [f"gate: {r}" for r in outcome.get("gate_reasons", [])]
    verification = outcome.get("verification") or {}
    if verification and not verification.get("passed"):
        return [f"verification: {r}" for r in verification.get("reasons", [])]
    approval = outcome.get("approval") or {}
    refusals = [f"promotion refused: {r}" for r in outcome.get("promotion_refusals", [])]
    return refusals or ([f"declined: {approval}"] if approval else ["not promoted"])


def verdict(delivered: Delivered) -> str:
    """One line on how a followed run ended."""
    run = f"run {delivered.run_id}"
    version = f"v{delivered.version}" if delivered.version is not None else "its candidate"
    match delivered.status:
        case RunStatus.SUCCEEDED.value:
            return f"{run} succeeded: {version} is in production"
        case RunStatus.REJECTED.value:
            return f"{run} rejected {version} (not a failure: production stays as it is)"
        case "awaiting_approval":
            reference = f"{delivered.model}:{delivered.version}" if delivered.version else "MODEL:VERSION"
            return f"{run} staged {version} and waits for approval: `flywheel approve {reference} --by NAME`"
        case _:
            return f"{run} FAILED"


# --- the command -------------------------------------------------------------------------------------------


def _git_commit(value: str | None) -> str | None:
    if value and not re.fullmatch(GIT_COMMIT, value):
        raise click.BadParameter(f"{value!r} is not a git commit id (7 to 64 lowercase hex digits)")
    return value or None


@click.command()
@click.option(
    "--model", "models", multiple=True, help="Deliver this project only (repeatable; default: every one)."
)
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="models",
    show_default=True,
    help="Where the projects are (models/<model>/contract.yaml).",
)
@click.option("--by", default="cli", show_default=True, help="Who delivers (recorded on each run).")
@click.option(
    "--commit",
    envvar=EnvVar.CODE_COMMIT.value,
    default=None,
    callback=lambda _ctx, _param, value: _git_commit(value),
    help=f"The git commit of the checkout (recorded on each run; default ${EnvVar.CODE_COMMIT.value}).",
)
@click.option("--wait", is_flag=True, help="Follow the runs; exit non-zero if one fails.")
@click.option("--timeout", "timeout_s", default=1800.0, show_default=True, help="Seconds --wait waits.")
@click.option("--force", is_flag=True, help="Train code again that a run already judged.")
@click.option("--dry-run", is_flag=True, help="Say what would be delivered; change nothing.")
@json_option
@pass_context
@reported
def deliver(
    ctx: Context,
    models: tuple[str, ...],
    models_dir: Path,
    by: str,
    commit: str | None,
    wait: bool,
    timeout_s: float,
    force: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Start a run with reason code_change for each model project whose code production does not run.

    A rejected candidate is reported with the gate's reasons and is not a failure; a failed run is.
    """
    progress: Progress = (lambda _line: None) if as_json else click.echo
    projects = find_projects(models_dir, models)
    if not projects:
        progress(f"no model projects under {models_dir}")
    results = []
    for project in projects:
        code = f"code {project.code.digest[:12]}" if project.code else "no model code"
        progress(f"{project.model}: {code}" + (f" (commit {commit[:12]})" if commit and project.code else ""))
        results.append(
            deliver_project(
                ctx.services,
                ctx.invoke_trigger,
                project,
                by=by,
                commit=commit,
                force=force,
                dry_run=dry_run,
                progress=progress,
            )
        )
    if wait:
        for delivered in results:
            if delivered.run_id is None or delivered.action not in (Action.DELIVER, Action.IN_FLIGHT):
                continue
            progress(f"{delivered.model}: following run {delivered.run_id}")
            follow(ctx.services, delivered, progress, timeout_s)
            progress(f"  {verdict(delivered)}")
            for reason in delivered.reasons:
                progress(f"    - {reason}")
    if as_json:
        click.echo(render.as_json([vars(d) | {"failed": d.failed} for d in results]))
    if any(d.failed for d in results):
        sys.exit(1)


COMMANDS = (deliver,)
