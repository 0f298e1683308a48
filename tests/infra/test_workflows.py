"""Delivering Flywheel itself: the GitHub workflows are valid (the same check `make lint` runs) and say the
flow the README documents: pull requests are checked and previewed on dev; develop deploys dev and smoke-tests
it; main deploys staging behind a reviewed environment; prod only by hand, behind its own environment, after
the staging record is checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import ROOT

pytestmark = pytest.mark.infra

WORKFLOWS = ROOT / ".github" / "workflows"
LEVELS = {"none": 0, "read": 1, "write": 2}


def check_jsonschema(*files: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with its vendored GitHub workflow schema: no network needed."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def workflow(name: str) -> dict[str, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    if True in loaded:  # YAML 1.1 reads the key `on` as a boolean
        loaded["on"] = loaded.pop(True)
    return loaded


def test_the_workflow_files_pass_the_github_workflow_schema() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["ci.yml", "deploy.yml"]

    checked = check_jsonschema(*files)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok -- validation done" in checked.stdout


def test_the_schema_check_refuses_a_broken_workflow(tmp_path: Path) -> None:
    """The check is not vacuous: a job without runs-on, a misspelt key and an unknown trigger fail it."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "name: broken\non:\n  pull_requests:\njobs:\n  test:\n    step:\n      - run: make test\n"
    )

    checked = check_jsonschema(broken)

    assert checked.returncode == 1
    assert "broken.yml" in checked.stdout


def granted(permissions: Any) -> dict[str, int]:
    if permissions in (None, {}):
        return {}
    if isinstance(permissions, str):  # read-all / write-all
        level = LEVELS[permissions.removesuffix("-all")]
        return dict.fromkeys(("contents", "id-token", "pull-requests", "actions", "packages"), level)
    return {scope: LEVELS[level] for scope, level in permissions.items()}


def test_a_called_workflow_asks_for_no_more_permissions_than_its_caller_grants() -> None:
    """GitHub refuses a whole run ("the nested job is requesting 'id-token: write', but is only allowed
    'id-token: none'") when a reusable workflow's job asks for more than the calling job grants, whether or
    not that job would run. The schema cannot see this; here every local `uses:` is checked."""
    calls = 0
    for path in sorted(WORKFLOWS.glob("*.yml")):
        caller = workflow(path.name)
        for name, job in caller["jobs"].items():
            uses = job.get("uses", "")
            if not uses.startswith("./.github/workflows/"):
                continue
            calls += 1
            allowed = granted(job.get("permissions", caller.get("permissions")))
            called = workflow(Path(uses).name)
            for called_name, called_job in called["jobs"].items():
                asked = granted(called_job.get("permissions", called.get("permissions")))
                for scope, level in asked.items():
                    assert allowed.get(scope, 0) >= level, (
                        f"{path.name} job {name!r} calls {uses}, whose job {called_name!r} asks for "
                        f"{scope}: {level}, more than the caller grants"
                    )
    assert calls == 1


def test_pull_requests_are_linted_tested_built_and_previewed_on_dev() -> None:
    ci = workflow("ci.yml")
    assert set(ci["on"]) == {"pull_request", "workflow_call"}
    assert [s.get("run") for s in ci["jobs"]["test"]["steps"]][-1] == ".ci/run"  # make lint test
    assert ci["jobs"]["image"]["steps"][-1]["with"]["push"] is False
    preview = ci["jobs"]["preview"]
    assert preview["needs"] == "test"
    [pulumi] = [s for s in preview["steps"] if s.get("uses", "").startswith("pulumi/actions@")]
    assert (pulumi["with"]["command"], pulumi["with"]["stack-name"]) == ("preview", "dev")


def test_develop_deploys_dev_main_deploys_staging_and_prod_is_manual_behind_the_staging_record() -> None:
    deploy = workflow("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["develop", "main"]
    assert set(deploy["on"]["workflow_dispatch"]["inputs"]) == {"environment", "required_staging_successes"}
    jobs = deploy["jobs"]

    def pulumi_up(job: dict[str, Any]) -> str:
        [step] = [s for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions@")]
        assert step["with"]["command"] == "up"
        stack: str = step["with"]["stack-name"]
        return stack

    # Each environment is deployed by one job, after the checks, with the OIDC role (no stored AWS keys)
    for job, stack, environment, branch in (
        ("dev", "dev", "dev", "refs/heads/develop"),
        ("staging", "staging", "staging", "refs/heads/main"),
        ("prod", "prod", "production", None),
    ):
        assert pulumi_up(jobs[job]) == stack
        assert jobs[job]["environment"] == environment
        assert "checks" in jobs[job]["needs"]
        assert jobs[job]["permissions"]["id-token"] == "write"
        assert "aws-secret-access-key" not in str(jobs[job])
        if branch:
            assert jobs[job]["if"] == f"github.event_name == 'push' && github.ref == '{branch}'"
    assert jobs["prod"]["if"].startswith("github.event_name == 'workflow_dispatch'")
    assert "staging-record" in jobs["prod"]["needs"]
    assert jobs["staging-record"]["if"] == "github.event_name == 'workflow_dispatch'"
    assert "exit 1" in jobs["staging-record"]["steps"][0]["run"]
    # dev and staging then run an end-to-end smoke test against what was just deployed
    for job, stack in (("dev", "dev"), ("staging", "staging")):
        assert jobs[job]["steps"][-2]["run"] == f".venv/bin/python -m examples.smoke --stack {stack}"


def test_every_deployment_delivers_the_changed_model_projects_and_records_its_commit() -> None:
    """After `pulumi up` (and the smoke test, where there is one) each deploy job runs `flywheel deliver`
    against the stack it deployed and follows the runs, so a failed run fails the job — and a staging
    record of good deployments counts model runs too. The commit is in the job's environment before
    `pulumi up`, so the functions and the runs both know it."""
    jobs = workflow("deploy.yml")["jobs"]
    for job, stack in (("dev", "dev"), ("staging", "staging"), ("prod", "prod")):
        steps = jobs[job]["steps"]
        runs = [s.get("run", "") for s in steps]
        deliver = steps[-1]["run"]
        assert deliver.startswith(f".venv/bin/flywheel --stack {stack} deliver "), deliver
        assert "--wait" in deliver.split()
        assert "${{" not in deliver  # the actor reaches the shell through env, never pasted into it
        assert {"PULUMI_ACCESS_TOKEN", "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE"} <= set(
            steps[-1]["env"]
        )
        [commit] = [i for i, r in enumerate(runs) if "FLYWHEEL_CODE_COMMIT=" in r]
        [up] = [i for i, s in enumerate(steps) if s.get("uses", "").startswith("pulumi/actions@")]
        assert '"$GITHUB_ENV"' in runs[commit] and "git rev-parse HEAD" in runs[commit]
        assert commit < up < len(steps) - 1


def test_every_pulumi_step_creates_its_stack_when_it_is_missing() -> None:
    """A first deployment finds no stack: `pulumi up`/`preview` must create it (upsert) rather than fail
    with 'no stack named dev found'; and each step can log in to Pulumi Cloud or a self-managed backend."""
    steps = [
        step
        for path in sorted(WORKFLOWS.glob("*.yml"))
        for job in workflow(path.name)["jobs"].values()
        for step in job.get("steps", [])
        if step.get("uses", "").startswith("pulumi/actions@")
    ]
    assert len(steps) == 4
    for step in steps:
        assert step["with"]["upsert"] is True, step
        assert step["with"]["stack-name"] in ("dev", "staging", "prod")
        assert {"PULUMI_ACCESS_TOKEN", "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE"} <= set(step["env"])
