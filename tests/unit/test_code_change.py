"""A changed model project is a new pipeline implementation: the trigger takes a run with reason code_change
naming the code, Train refuses any other code, and ``flywheel deliver`` decides from the code digest whether
a run is due — without starting one twice.

Runs on in-memory services; the CLI's trigger calls go straight to the trigger's logic, as the Lambda
handler would run it.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cli.actions import RunView
from cli.code_change import (
    Action,
    CodeState,
    Delivered,
    EarlierRun,
    code_state,
    decide,
    deliver_project,
    find_projects,
    verdict,
)
from cli.render import lineage_text, run_details, runs_table
from shared.data.catalog import load_contract
from shared.data.contract import parse_contract
from shared.errors import ContractError, InvalidRequestError
from shared.hashing import sha256_hex
from shared.metadata import Run, RunReason, RunStatus, StepStatus
from shared.ml.projects import read_project
from shared.pipeline.intake import validate_step
from shared.pipeline.state import CodeChange, RunState
from shared.pipeline.steps import CodeMismatchError, train_step
from shared.pipeline.trigger import on_new_object, parse_trigger_event, trigger
from shared.registry import ArtifactRef
from shared.services import Services
from tests.fixtures.services import (
    SETTINGS,
    churn_contract,
    churn_csv,
    in_memory_services,
    put_churn_contract,
    upload,
)
from tests.unit.test_registry import candidate

pytestmark = pytest.mark.unit

PROJECT = Path(__file__).resolve().parents[2] / "models" / "churn"
DIGEST = "a" * 64
OTHER = "b" * 64
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FAST_PROJECT = {"pipeline": "pipeline:build", "params": {"n_estimators": 5, "learning_rate": 0.5}}


@pytest.fixture(autouse=True)
def code_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_CODE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """A models folder holding a copy of the churn project, with a contract that trains in a blink."""
    root = tmp_path / "models"
    shutil.copytree(PROJECT, root / "churn")
    (root / "churn" / "contract.yaml").write_text(churn_contract(training=FAST_PROJECT).to_yaml())
    return root


@pytest.fixture
def svc(models: Path) -> Services:
    return in_memory_services(SETTINGS.model_copy(update={"models_dir": str(models)}))


def invoke_trigger(svc: Services) -> Any:
    """What the CLI's Lambda invoke of the trigger answers: its result, or Lambda's error shape."""

    def invoke(payload: dict[str, Any]) -> dict[str, Any]:
        try:
            outcomes = trigger(svc, parse_trigger_event(json.loads(json.dumps(payload))))
        except Exception as exc:
            return {"errorType": type(exc).__name__, "errorMessage": str(exc)}
        return {"runs": [o.model_dump(mode="json") for o in outcomes]}

    return invoke


def add_dataset(svc: Services, name: str = "jan.csv", rows: int = 300) -> None:
    body = churn_csv(rows, seed=1)
    ref = upload(svc, f"incoming/churn/{name}", body)
    outcome = on_new_object(svc, ref.bucket, ref.key, ref.version_id, sha256_hex(body)[:32])
    validate_step(RunState.model_validate(svc.workflow.started[outcome.run_id]), svc)  # type: ignore[attr-defined]


def code_change_request(digest: str = DIGEST, **changes: Any) -> dict[str, Any]:
    return {
        "model": "churn",
        "reason": "code_change",
        "requested_by": "ci",
        "code_change": {"digest": digest, "commit": COMMIT},
    } | changes


# --- the trigger ------------------------------------------------------------------------------------------


def test_a_code_change_request_records_which_code_started_the_run(svc: Services) -> None:
    """Given a project's contract, when delivery asks for a code_change run, then the run has that reason,
    names the digest and the commit, and the pipeline receives them (no source file: the data there is)."""
    put_churn_contract(svc, churn_contract(training=FAST_PROJECT))

    (outcome,) = trigger(svc, parse_trigger_event(code_change_request()))

    run = svc.metadata.get_run(outcome.run_id)
    assert outcome.started and run.reason is RunReason.CODE_CHANGE
    assert outcome.run_id.startswith("code-change-churn-")
    assert run.input["code_change"] == {"digest": DIGEST, "commit": COMMIT}
    assert run.input["requested_by"] == "ci"
    payload = svc.workflow.started[outcome.run_id]  # type: ignore[attr-defined]
    assert "source" not in payload and payload["code_change"]["digest"] == DIGEST


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"model": "churn", "reason": "because"}, "reason: Input should be"),
        ({"model": "churn", "reason": "new_data"}, "cannot be requested with reason 'new_data'"),
        ({"model": "churn", "reason": "code_change"}, "a code_change run names the code it is for"),
        (
            {"model": "churn", "code_change": {"digest": DIGEST}},
            "a code_change run names the code it is for",
        ),
        (code_change_request(digest="not-a-digest"), "code_change.digest: String should match"),
        (code_change_request() | {"code_change": {"digest": DIGEST, "commit": "HEAD"}}, "commit"),
        ({"model": "churn", "colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_a_malformed_run_request_is_refused_with_every_problem_and_starts_nothing(
    svc: Services, event: dict[str, Any], problem: str
) -> None:
    put_churn_contract(svc, churn_contract(training=FAST_PROJECT))

    with pytest.raises(InvalidRequestError, match="the run request is refused") as refused:
        trigger(svc, parse_trigger_event(event))

    assert any(problem in p for p in refused.value.problems), refused.value.problems
    assert svc.metadata.list_runs() == []


def test_a_code_change_for_a_model_without_model_code_is_a_contract_error(svc: Services) -> None:
    put_churn_contract(svc)  # the demo's contract: a built-in estimator

    with pytest.raises(ContractError, match="needs model code"):
        trigger(svc, parse_trigger_event(code_change_request()))

    assert svc.metadata.list_runs() == []


# --- Train ------------------------------------------------------------------------------------------------


def test_train_refuses_code_other_than_the_code_the_run_was_asked_for(svc: Services, models: Path) -> None:
    """Given a code_change run for a digest the stack does not hold (its image was not deployed with it),
    when Train runs, then it fails saying so and stores nothing; asked for the code it holds, it trains it."""
    put_churn_contract(svc, churn_contract(training=FAST_PROJECT))
    add_dataset(svc)
    held = read_project(models / "churn", "churn").digest

    (wrong,) = trigger(svc, parse_trigger_event(code_change_request(OTHER)))
    state = RunState.model_validate(svc.workflow.started[wrong.run_id])  # type: ignore[attr-defined]
    with pytest.raises(
        CodeMismatchError, match=rf"asked to train churn's code {OTHER[:16]}.*holds code {held[:16]}"
    ):
        train_step(state, svc)
    assert svc.objects.list(svc.settings.artifacts_bucket, f"models/churn/{wrong.run_id}/") == []
    assert svc.metadata.list_steps(wrong.run_id)[-1].status is StepStatus.FAILED

    (right,) = trigger(svc, parse_trigger_event(code_change_request(held)))
    trained = train_step(RunState.model_validate(svc.workflow.started[right.run_id]), svc)  # type: ignore[attr-defined]
    code = trained.require("candidate").code
    assert code is not None and code.sha256 == held


# --- the decision -----------------------------------------------------------------------------------------


def state(**changes: Any) -> CodeState:
    fields: dict[str, Any] = {
        "model": "churn",
        "digest": DIGEST,
        "production_version": 1,
        "production_digest": OTHER,
        "earlier": (),
        "has_data": True,
    }
    return CodeState(**(fields | changes))


@pytest.mark.parametrize(
    ("given", "action", "says"),
    [
        (state(production_digest=DIGEST), Action.UNCHANGED, "production v1 runs code aaaaaaaaaaaa; no run"),
        (state(), Action.DELIVER, "code aaaaaaaaaaaa is new (production v1 runs code bbbbbbbbbbbb)"),
        (state(production_digest=None), Action.DELIVER, "production v1 has no model code"),
        (
            state(production_version=None, production_digest=None),
            Action.DELIVER,
            "no production version yet",
        ),
        (
            state(production_version=None, production_digest=None, has_data=False),
            Action.NO_DATA,
            "the first file under incoming/churn/ trains",
        ),
        (
            state(earlier=(EarlierRun("r2", RunStatus.RUNNING, 2),)),
            Action.IN_FLIGHT,
            "run r2 is training code aaaaaaaaaaaa already",
        ),
        (
            state(earlier=(EarlierRun("r2", RunStatus.REJECTED, 2),)),
            Action.JUDGED,
            "run r2 trained code aaaaaaaaaaaa and v2 was rejected; no run (--force",
        ),
        (
            state(earlier=(EarlierRun("r2", RunStatus.SUCCEEDED, 2),)),
            Action.JUDGED,
            "promoted v2, and production has moved since (to v1)",
        ),
        (state(earlier=(EarlierRun("r2", RunStatus.FAILED),)), Action.DELIVER, "is new"),
        (
            state(earlier=(EarlierRun("r3", RunStatus.PENDING), EarlierRun("r2", RunStatus.REJECTED, 2))),
            Action.IN_FLIGHT,
            "run r3",
        ),
    ],
)
def test_the_code_digest_decides_whether_a_run_is_due(given: CodeState, action: Action, says: str) -> None:
    decision = decide(given)

    assert decision.action is action
    assert says in decision.detail


def test_force_trains_judged_code_again_but_never_code_production_runs() -> None:
    judged = state(earlier=(EarlierRun("r2", RunStatus.REJECTED, 2),))

    assert decide(judged, force=True).action is Action.DELIVER
    assert decide(state(production_digest=DIGEST), force=True).action is Action.UNCHANGED


def test_the_stack_is_read_for_production_s_code_and_every_run_of_this_code(svc: Services) -> None:
    """Production's digest comes from its version; earlier runs of the code are the code_change runs naming
    it and the runs of versions trained from it, newest first; data is any dataset of the model."""
    put_churn_contract(svc, churn_contract(training=FAST_PROJECT))
    code = ArtifactRef(uri="s3://a/models/churn/r/code.zip", sha256=OTHER)
    assert code_state(svc, "churn", DIGEST) == state(
        production_version=None, production_digest=None, has_data=False
    )

    (first,) = trigger(svc, parse_trigger_event({"model": "churn"}))
    version = svc.registry.create_model_version(
        "churn", candidate(code_artifact=code), run_id=first.run_id, registered_by="pipeline"
    )
    svc.registry.promote("churn", version.version, actor="t", reason="t")
    (second,) = trigger(svc, parse_trigger_event(code_change_request()))
    svc.metadata.update_run(second.run_id, status=RunStatus.REJECTED, outcome={"version": 2})
    add_dataset(svc)

    found = code_state(svc, "churn", DIGEST)

    assert (found.production_version, found.production_digest, found.has_data) == (1, OTHER, True)
    assert found.earlier == (EarlierRun(second.run_id, RunStatus.REJECTED, 2),)
    assert code_state(svc, "churn", OTHER).earlier == (EarlierRun(first.run_id, RunStatus.PENDING, 1),)


# --- delivering a project ---------------------------------------------------------------------------------


def deliver(svc: Services, models: Path, **options: Any) -> Any:
    (project,) = find_projects(models)
    lines: list[str] = []
    settings = {"by": "ci", "commit": COMMIT, "force": False, "dry_run": False} | options
    delivered = deliver_project(svc, invoke_trigger(svc), project, progress=lines.append, **settings)
    return delivered, lines


def test_a_new_project_stores_its_contract_and_waits_for_data(svc: Services, models: Path) -> None:
    delivered, lines = deliver(svc, models)

    assert delivered.action is Action.NO_DATA and delivered.contract == "stored"
    assert load_contract(svc.objects, svc.settings, "churn") == parse_contract(
        (models / "churn" / "contract.yaml").read_text()
    )
    assert svc.metadata.list_runs() == []
    assert lines[0].startswith("  contract stored from ")


def test_changed_code_starts_one_code_change_run_on_the_data_there_is(svc: Services, models: Path) -> None:
    """Given a model with data whose production runs other code, delivery starts one run with reason
    code_change naming the checkout's digest and commit; delivering again finds it in flight."""
    put_churn_contract(svc, churn_contract(training=FAST_PROJECT))
    add_dataset(svc)
    digest = read_project(models / "churn", "churn").digest

    delivered, lines = deliver(svc, models)

    assert delivered.action is Action.DELIVER and delivered.contract is None and delivered.run_id
    run = svc.metadata.get_run(delivered.run_id)
    assert run.reason is RunReason.CODE_CHANGE and run.input["code_change"] == {
        "digest": digest,
        "commit": COMMIT,
    }
    assert lines == [
        f"  code {digest[:12]} is new (no production version yet): a run with reason code_change",
        f"  run {run.run_id} started",
    ]

    again, _ = deliver(svc, models)
    assert again.action is Action.IN_FLIGHT and again.run_id == run.run_id
    assert len(svc.metadata.list_runs()) == 2  # the upload's and the delivery's


def test_a_dry_run_changes_nothing(svc: Services, models: Path) -> None:
    put_churn_contract(svc, churn_contract(training=FAST_PROJECT))
    add_dataset(svc)
    put_churn_contract(svc, churn_contract(training={**FAST_PROJECT, "params": {"n_estimators": 7}}))
    before = svc.metadata.list_runs()

    delivered, lines = deliver(svc, models, dry_run=True)

    assert (delivered.action, delivered.contract, delivered.run_id) == (Action.DELIVER, "updated", None)
    assert "(dry run)" in lines[0]
    assert load_contract(svc.objects, svc.settings, "churn").training.params == {"n_estimators": 7}
    assert svc.metadata.list_runs() == before


def test_a_project_folder_must_name_its_model(models: Path) -> None:
    shutil.move(models / "churn", models / "attrition")

    with pytest.raises(ContractError, match="a project's folder is its model's name"):
        find_projects(models)


def test_a_contract_with_a_built_in_estimator_has_no_code_to_deliver(svc: Services, models: Path) -> None:
    (models / "churn" / "contract.yaml").write_text(churn_contract().to_yaml())

    delivered, _ = deliver(svc, models)

    assert delivered.action is Action.NO_CODE and delivered.run_id is None
    assert delivered.contract == "stored"


def test_one_line_says_how_a_followed_run_ended() -> None:
    ended = Delivered("churn", Action.DELIVER, "", run_id="r", status="awaiting_approval", version=4)
    assert verdict(ended) == "run r staged v4 and waits for approval: `flywheel approve churn:4 --by NAME`"
    ended.status = "rejected"
    assert verdict(ended) == "run r rejected v4 (not a failure: production stays as it is)"
    assert not ended.failed
    ended.status = "failed"
    assert ended.failed and verdict(ended) == "run r FAILED"


def test_a_code_change_names_a_whole_digest_and_a_git_commit() -> None:
    CodeChange(digest=DIGEST, commit=COMMIT[:7])
    with pytest.raises(ValueError, match="commit"):
        CodeChange(digest=DIGEST, commit="main")


# --- what `flywheel runs` and `flywheel lineage` say ----------------------------------------------------


def test_runs_and_lineage_say_a_code_change_started_the_run() -> None:
    code = {"digest": DIGEST, "commit": COMMIT}
    run = Run(
        run_id="code-change-churn-1",
        model="churn",
        reason=RunReason.CODE_CHANGE,
        status=RunStatus.SUCCEEDED,
        input={"code_change": code},
        started_at=datetime(2026, 3, 1, tzinfo=UTC),
    )

    listed = runs_table([run])
    shown = run_details(RunView(run=run, steps=[]))

    assert "code_change" in listed and f"code {DIGEST[:12]}" in listed
    assert f"reason   code_change  (model code {DIGEST[:16]}, commit {COMMIT})" in shown
    view = {
        "model_version": "churn:2",
        "stage": "production",
        "registered_at": run.started_at,
        "run": {"run_id": run.run_id, "reason": "code_change", "status": "succeeded", "code_change": code},
        "code_version": "src-1",
        "params": {},
        "metrics": {},
        "datasets": [],
        "source_files": [],
        "artifact": {"uri": "s3://a/model.pkl", "sha256": "c" * 64},
    }
    text = lineage_text(view)
    assert "(reason: code_change, succeeded)" in text
    assert f"  started by     a code change: model code {DIGEST[:16]}, commit {COMMIT}" in text
