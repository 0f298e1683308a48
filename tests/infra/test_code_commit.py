"""The commit being deployed reaches every function, so each version trained from a model project records it;
it comes from the deploying process (the deploy workflow sets FLYWHEEL_CODE_COMMIT at `pulumi up`) and
never touches the image, whose tag is the hash of the code alone."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infra.flywheel import flywheel_stack
from infra.image import code_version
from tests.infra.harness import Deployment, T, run_program

pytestmark = pytest.mark.infra

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def deployed_with_a_commit(monkeypatch: pytest.MonkeyPatch) -> Deployment:
    monkeypatch.setenv("FLYWHEEL_CODE_COMMIT", COMMIT)
    return run_program(flywheel_stack, "dev")


def environments(deployed: Deployment) -> dict[str, dict[str, str]]:
    return {f.name: f.inputs["environment"]["variables"] for f in deployed.all(T.FUNCTION)}


def test_every_function_is_told_the_commit_being_deployed(
    deployed_with_a_commit: Deployment, flywheel_dev: Deployment
) -> None:
    """Given FLYWHEEL_CODE_COMMIT in the deploying process
    When the program runs
    Then every function receives it, and nothing else of their environment differs."""
    with_commit, without = environments(deployed_with_a_commit), environments(flywheel_dev)

    assert with_commit.keys() == without.keys() and with_commit
    for name, variables in with_commit.items():
        assert variables.pop("FLYWHEEL_CODE_COMMIT") == COMMIT, name
        assert variables == without[name], name
    assert deployed_with_a_commit.outputs["environment"]["FLYWHEEL_CODE_COMMIT"] == COMMIT


def test_without_a_commit_functions_are_told_none(flywheel_dev: Deployment) -> None:
    for name, variables in environments(flywheel_dev).items():
        assert "FLYWHEEL_CODE_COMMIT" not in variables, name


def test_the_commit_never_changes_the_image(
    deployed_with_a_commit: Deployment, flywheel_dev: Deployment
) -> None:
    """A new commit that leaves the code as it was must not rebuild the image or need a new tag in the
    immutable repository: the image's inputs are the same with or without it."""
    [with_commit] = deployed_with_a_commit.all(T.IMAGE)
    [without] = flywheel_dev.all(T.IMAGE)

    assert with_commit.inputs == without.inputs
    assert with_commit.inputs["tags"][0].endswith(f":{code_version()}")
    assert COMMIT not in str(with_commit.inputs)


def test_a_commit_that_is_not_a_git_commit_id_stops_the_program(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_CODE_COMMIT", "main; rm -rf /")

    with pytest.raises(ValidationError, match="codeCommit"):
        run_program(flywheel_stack, "dev")
