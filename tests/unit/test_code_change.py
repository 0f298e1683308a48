"""A changed model project is a new pipeline implementation: the trigger takes a run with reason code_change
naming the code, Train refuses any other code, and ``flywheel deliver`` decides from the code digest whether
a run is due — without starting one twice.

Runs on in-memory services; the CLI's trigger calls go straight to the trigger's logic, as the Lambda
handler would run it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from shared.errors import ContractError, InvalidRequestError
from shared.hashing import sha256_hex
from shared.metadata import RunReason, StepStatus
from shared.ml.projects import read_project
from shared.pipeline.intake import validate_step
from shared.pipeline.state import CodeChange, RunState
from shared.pipeline.steps import CodeMismatchError, train_step
from shared.pipeline.trigger import on_new_object, parse_trigger_event, trigger
from shared.services import Services
from tests.fixtures.services import (
    SETTINGS,
    churn_contract,
    churn_csv,
    in_memory_services,
    put_churn_contract,
    upload,
)

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


def test_a_code_change_names_a_whole_digest_and_a_git_commit() -> None:
    CodeChange(digest=DIGEST, commit=COMMIT[:7])
    with pytest.raises(ValueError, match="commit"):
        CodeChange(digest=DIGEST, commit="main")
