"""A model project through the whole loop on the local cloud: the team's own transformer and an estimator no
built-in offers, trained, gated, registered, verified, promoted and served; then the code changes, the new
version is promoted, and rolling back serves the old version with the old code, in the same process."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import main
from examples.churn import generate, request_rows
from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.local import LocalCloud
from shared.env_names import EnvVar
from shared.featurestore.contracts import put_contract
from shared.ml.projects import read_project
from shared.registry import ServingFlavor, Stage
from shared.services import services
from tests.fixtures.services import churn_contract
from tests.integration.test_delivery import ENVIRONMENT, GATES, MODEL, SERVING, Delivery

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2] / "models" / "churn"
TRAINING = {"pipeline": "pipeline:build", "params": {"n_estimators": 40, "learning_rate": 0.5}}


@dataclass
class Project:
    delivery: Delivery
    root: Path
    url: str

    def push(self, name: str, seed: int) -> int:
        done = self.delivery.finish(self.delivery.upload(f"incoming/churn/{name}.csv", rows=900, seed=seed))
        assert done.status == "SUCCEEDED", done.steps
        assert done.run.outcome.get("promoted") is True, done.run.outcome
        return done.version

    def served_version(self) -> int:
        rows = request_rows(generate(5, seed=99))
        request = urllib.request.Request(
            f"{self.url}/models/{MODEL}/predict",
            data=json.dumps({"instances": rows}).encode(),
            method="POST",
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
        assert len(answer["predictions"]) == len(rows)
        return int(answer["version"])

    def served_soon(self, version: int) -> None:
        deadline = time.monotonic() + 30
        while self.served_version() != version:
            assert time.monotonic() < deadline, f"v{version} was never served"
            time.sleep(0.2)


@pytest.fixture(scope="class")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    models = tmp_path_factory.mktemp("models")
    root = models / MODEL
    shutil.copytree(PROJECT, root)
    config = StackConfig.from_stack_file("dev")
    cloud = LocalCloud(flywheel_stack(config), config)
    cloud.environment.update(
        {
            **ENVIRONMENT,
            EnvVar.MODELS_DIR.value: str(models),
            "FLYWHEEL_CODE_CACHE": str(tmp_path_factory.mktemp("code-cache")),
        }
    )
    with cloud.in_process():
        delivery = Delivery(cloud, services())
        put_contract(
            delivery.svc.objects,
            delivery.svc.settings,
            churn_contract(training=TRAINING, serving=SERVING, gates=GATES).to_yaml(),
        )
        yield Project(delivery, root, cloud.start_gateway())


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
        pipeline_py = project.root / "pipeline.py"
        pipeline_py.write_text(pipeline_py.read_text().replace("+ 1.0", "+ 2.0"))

        after = project.push("2026-02", seed=2)

        newer = project.delivery.version(after).code_artifact
        assert newer is not None and old_digest is not None and newer.sha256 != old_digest.sha256
        project.served_soon(after)
        rolled = project.delivery.flywheel("rollback", MODEL, "--to", str(before), "--by", "oncall")
        assert rolled.exit_code == 0, rolled.output
        project.served_soon(before)
        assert project.delivery.version(before).stage is Stage.PRODUCTION
