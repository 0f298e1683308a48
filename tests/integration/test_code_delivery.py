"""Delivering a model project's new code on the local cloud, as the deploy workflow does after `pulumi up`:
`flywheel deliver --wait` compares the checkout's code digest with production's, starts a run with reason
code_change that trains the new code on the data the model already has, and its candidate faces the same
gate against production on the same holdout; `runs` and `lineage` say a code change started it. Unchanged
code, or code a run already judged, starts nothing.

One cloud for the class, the tests in order: production from new data, the code unchanged, then changed
(promoted), delivered again (nothing), changed with a gate no candidate meets (rejected, not a failure),
delivered again (judged); and code the stack was not deployed with (a failed run, a failed delivery). On
staging, where a person approves, delivery ends when the candidate waits for one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result

from shared.data.catalog import load_contract
from shared.env_names import EnvVar
from shared.metadata import RunReason, RunStatus
from shared.ml.projects import read_project
from shared.registry import Stage
from shared.storage import ObjectRef
from tests.fixtures.projects import Project, churn_project
from tests.fixtures.services import churn_contract
from tests.integration.test_delivery import MODEL, SERVING

pytestmark = pytest.mark.integration

COMMIT = "5f1c0de5f1c0de5f1c0de5f1c0de5f1c0de5f1c0"
# Gates no candidate meets: the next candidate is rejected, whatever its code.
UNREACHABLE = {"min": {"roc_auc": 0.999}, "max_regression": {"roc_auc": 0.0}}


@pytest.fixture(scope="class")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    # The deployment's commit, as `pulumi up` hands it to every function from the workflow's environment.
    environment = {EnvVar.CODE_COMMIT.value: COMMIT}
    models, cache = tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("code-cache")
    with churn_project(models, cache, environment) as project:
        yield project


def deliver(project: Project, *options: str) -> Result:
    """`flywheel deliver` as the workflow runs it, over the project's models folder."""
    models = str(project.models_dir)
    return project.delivery.flywheel(
        "deliver", "--models-dir", models, "--by", "ci", "--commit", COMMIT, *options
    )


def digest(project: Project) -> str:
    return read_project(project.root, MODEL).digest


class TestDeliveringAModelProject:
    def test_code_production_already_runs_starts_no_run(self, project: Project) -> None:
        """Given v1 in production from new data, trained from the project as it is
        When the project is delivered
        Then delivery says the code is unchanged and starts nothing."""
        assert project.push("2026-01", seed=1) == 1
        runs = project.delivery.svc.metadata.list_runs(MODEL)

        delivered = deliver(project, "--wait")

        assert delivered.exit_code == 0, delivered.output
        assert f"churn: code {digest(project)[:12]} (commit {COMMIT[:12]})" in delivered.output
        assert f"production v1 runs code {digest(project)[:12]}; no run" in delivered.output
        assert project.delivery.svc.metadata.list_runs(MODEL) == runs

    def test_changed_code_is_trained_on_the_data_there_is_and_gated_against_production(
        self, project: Project
    ) -> None:
        """Given the project's transformer changed
        When the project is delivered with --wait
        Then one code_change run trains the new code on v1's data (no new dataset, no Validate), Evaluate
        scores production v1 on the candidate's holdout, and the version records the code and the commit."""
        svc = project.delivery.svc
        before = digest(project)
        project.change_code()
        after = digest(project)
        assert after != before
        datasets = svc.metadata.list_datasets(MODEL)

        delivered = deliver(project, "--wait")

        assert delivered.exit_code == 0, delivered.output
        assert f"code {after[:12]} is new (production v1 runs code {before[:12]})" in delivered.output
        [run] = [r for r in svc.metadata.list_runs(MODEL) if r.reason is RunReason.CODE_CHANGE]
        assert f"run {run.run_id} started" in delivered.output
        assert f"run {run.run_id} succeeded: v2 is in production" in delivered.output
        assert run.status is RunStatus.SUCCEEDED and run.input["requested_by"] == "ci"
        assert run.input["code_change"] == {"digest": after, "commit": COMMIT}
        assert "validate" not in {s.name for s in svc.metadata.list_steps(run.run_id)}
        # the data the model had: the same datasets, none added
        assert svc.metadata.list_datasets(MODEL) == datasets
        v1, v2 = project.delivery.version(1), project.delivery.version(2)
        assert [d.dataset_id for d in v2.training_datasets] == [d.dataset_id for d in v1.training_datasets]
        # the same gate, against production, on the candidate's holdout
        assert run.outcome["champion_version"] == 1 and run.outcome["gate_passed"] is True
        evaluation = json.loads(
            svc.objects.get(
                ObjectRef(svc.settings.artifacts_bucket, f"models/churn/{run.run_id}/evaluation.json")
            ).body
        )
        assert evaluation["champion"]["version"] == 1 and evaluation["champion"]["metrics"]
        assert evaluation["holdout_rows"] == evaluation["candidate"]["rows"] == evaluation["champion"]["rows"]
        assert v2.champion_metrics == evaluation["champion"]["metrics"]
        # the version is the new code, from the deployed commit
        assert v2.code_artifact is not None and v2.code_artifact.sha256 == after
        assert v2.code_commit == COMMIT and v2.stage is Stage.PRODUCTION
        project.served_soon(2)

    def test_runs_and_lineage_say_a_code_change_started_it(self, project: Project) -> None:
        flywheel = project.delivery.flywheel
        after = digest(project)
        [run] = [
            r for r in project.delivery.svc.metadata.list_runs(MODEL) if r.reason is RunReason.CODE_CHANGE
        ]

        listed = flywheel("runs", "--model", MODEL)
        shown = flywheel("runs", "show", run.run_id)
        lineage = flywheel("lineage", f"{MODEL}:2")
        as_json = json.loads(flywheel("lineage", f"{MODEL}:2", "--json").output)

        [line] = [row for row in listed.output.splitlines() if row.startswith(run.run_id)]
        assert "code_change" in line and f"code {after[:12]}" in line
        assert f"reason   code_change  (model code {after[:16]}, commit {COMMIT})" in shown.output
        assert "(reason: code_change, succeeded)" in lineage.output
        assert f"started by     a code change: model code {after[:16]}, commit {COMMIT}" in lineage.output
        assert as_json["run"]["reason"] == "code_change"
        assert as_json["run"]["code_change"] == {"digest": after, "commit": COMMIT}
        assert as_json["model_code"] == {
            "digest": after,
            "uri": project.delivery.version(2).code_artifact.uri,  # type: ignore[union-attr]
            "commit": COMMIT,
        }

    def test_delivering_the_same_code_again_starts_nothing(self, project: Project) -> None:
        runs = project.delivery.svc.metadata.list_runs(MODEL)

        delivered = deliver(project, "--wait")

        assert delivered.exit_code == 0, delivered.output
        assert f"production v2 runs code {digest(project)[:12]}; no run" in delivered.output
        assert project.delivery.svc.metadata.list_runs(MODEL) == runs

    def test_a_candidate_the_gate_rejects_is_reported_with_its_reasons_and_is_not_a_failure(
        self, project: Project
    ) -> None:
        """Given new code and, in the project's contract, gates no candidate meets
        When the project is delivered
        Then the contract is updated from the project, the run's candidate is rejected, production stays
        v2, and delivery says why and exits 0."""
        project.change_code("+ 2.0", "+ 3.0")
        contract = churn_contract(
            training={"pipeline": "pipeline:build", "params": {"n_estimators": 40}},
            serving=SERVING,
            gates=UNREACHABLE,
        )
        (project.root / "contract.yaml").write_text(contract.to_yaml())

        delivered = deliver(project, "--wait")

        assert delivered.exit_code == 0, delivered.output
        svc = project.delivery.svc
        assert "contract updated from " in delivered.output
        assert load_contract(svc.objects, svc.settings, MODEL) == contract
        assert "rejected v3 (not a failure: production stays as it is)" in delivered.output
        assert "    - gate: " in delivered.output and "roc_auc" in delivered.output
        assert project.delivery.production() == 2
        assert project.delivery.version(3).stage is Stage.REJECTED

    def test_code_a_run_already_judged_is_not_trained_again_unless_forced(self, project: Project) -> None:
        runs = project.delivery.svc.metadata.list_runs(MODEL)
        [rejected] = [r for r in runs if r.status is RunStatus.REJECTED]

        delivered = deliver(project)
        dry = deliver(project, "--force", "--dry-run")

        assert delivered.exit_code == 0, delivered.output
        assert (
            f"run {rejected.run_id} trained code {digest(project)[:12]} and v3 was rejected"
            in delivered.output
        )
        assert "no run (--force trains it again)" in delivered.output
        assert dry.exit_code == 0 and "a run with reason code_change" in dry.output
        assert project.delivery.svc.metadata.list_runs(MODEL) == runs

    def test_code_the_stack_does_not_hold_fails_the_run_and_the_delivery(
        self, project: Project, tmp_path: Path
    ) -> None:
        """Given a checkout whose code the stack's image does not hold (it was not deployed)
        When that checkout is delivered
        Then Train refuses to train other code, the run fails with why, and delivery exits 1."""
        checkout = tmp_path / "checkout"
        shutil.copytree(project.root, checkout / MODEL)
        pipeline_py = checkout / MODEL / "pipeline.py"
        pipeline_py.write_text(pipeline_py.read_text().replace("+ 3.0", "+ 4.0"))
        undeployed = read_project(checkout / MODEL, MODEL).digest

        delivered = project.delivery.flywheel(
            "deliver", "--models-dir", str(checkout), "--by", "ci", "--commit", COMMIT, "--wait"
        )

        assert delivered.exit_code == 1, delivered.output
        assert " FAILED" in delivered.output
        assert "train: CodeMismatchError: run code-change-churn-" in delivered.output
        assert f"code {undeployed[:16]} (commit {COMMIT})" in delivered.output
        assert f"this stack holds code {digest(project)[:16]}" in delivered.output
        assert project.delivery.production() == 2


@pytest.fixture(scope="class")
def staging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    models, cache = tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("code-cache")
    with churn_project(models, cache, stack="staging") as project:
        yield project


class TestDeliveringToStaging:
    def test_delivery_ends_when_the_candidate_waits_for_a_person(self, staging: Project) -> None:
        """Given staging's policy (a person approves) and v1 approved into production
        When changed code is delivered with --wait
        Then the candidate is staged and delivery exits 0 saying how to approve it; delivering again
        follows the same run instead of starting another; the approval promotes it."""
        first = staging.delivery.upload("incoming/churn/2026-01.csv", rows=900, seed=1)
        staging.delivery.awaiting_approval(first)
        assert staging.delivery.flywheel("approve", f"{MODEL}:1", "--by", "lead").exit_code == 0
        assert staging.delivery.finish(first).run.status is RunStatus.SUCCEEDED
        staging.change_code()

        delivered = deliver(staging, "--wait")
        again = deliver(staging, "--wait")

        assert delivered.exit_code == 0, delivered.output
        [run] = [
            r for r in staging.delivery.svc.metadata.list_runs(MODEL) if r.reason is RunReason.CODE_CHANGE
        ]
        assert (
            f"run {run.run_id} staged v2 and waits for approval: `flywheel approve churn:2 --by NAME`"
            in delivered.output
        )
        assert again.exit_code == 0, again.output
        assert f"run {run.run_id} is training code {digest(staging)[:12]} already; no new run" in again.output
        assert f"run {run.run_id} staged v2 and waits for approval" in again.output
        assert staging.delivery.flywheel("approve", f"{MODEL}:2", "--by", "lead").exit_code == 0
        assert staging.delivery.finish(run).run.status is RunStatus.SUCCEEDED
        assert staging.delivery.production() == 2
