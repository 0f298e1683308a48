"""A model project through the whole loop on the local cloud: the team's own transformer and an estimator no
built-in offers, trained, gated, registered, verified, promoted and served; then the code changes, the new
version is promoted, and rolling back serves the old version with the old code, in the same process."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from cli.main import main
from shared.ml.projects import read_project
from shared.registry import ServingFlavor, Stage
from tests.fixtures.projects import Project, churn_project
from tests.integration.test_delivery import MODEL

pytestmark = pytest.mark.integration


@pytest.fixture(scope="class")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    with churn_project(tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("code-cache")) as project:
        yield project


class TestAModelProject:
    def test_the_project_code_is_trained_recorded_and_served(self, project: Project) -> None:
        number = project.push("2026-01", seed=1)

        version = project.delivery.version(number)
        code = read_project(project.root, MODEL)
        assert version.stage is Stage.PRODUCTION
        assert version.code_artifact is not None and version.code_artifact.sha256 == code.digest
        assert version.params["estimator"] == "project:pipeline:build"
        assert version.params["n_estimators"] == 40
        # skl2onnx knows nothing of the team's transformer: served by scikit-learn, with the reason
        assert version.serving_flavor is ServingFlavor.SKLEARN
        assert "PerTenureMonth" in version.flavor_reason
        assert project.served_version() == number
        lineage = CliRunner().invoke(
            main, ["lineage", f"{MODEL}:{number}", "--json"], env=project.delivery.cloud.exports()
        )
        assert lineage.exit_code == 0, lineage.output
        assert json.loads(lineage.output)["model_code"]["digest"] == code.digest
        listed = CliRunner().invoke(main, ["models", MODEL], env=project.delivery.cloud.exports())
        assert listed.exit_code == 0, listed.output
        assert code.digest[:12] in listed.output

    def test_after_the_code_changes_a_rollback_serves_the_old_version_with_its_old_code(
        self, project: Project
    ) -> None:
        before = project.delivery.production()
        assert before is not None
        old_digest = project.delivery.version(before).code_artifact
        project.change_code()

        after = project.push("2026-02", seed=2)

        newer = project.delivery.version(after).code_artifact
        assert newer is not None and old_digest is not None and newer.sha256 != old_digest.sha256
        project.served_soon(after)
        rolled = project.delivery.flywheel("rollback", MODEL, "--to", str(before), "--by", "oncall")
        assert rolled.exit_code == 0, rolled.output
        project.served_soon(before)
        assert project.delivery.version(before).stage is Stage.PRODUCTION
