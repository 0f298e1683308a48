"""``flywheel diff`` on the local cloud: three versions of churn go through the whole loop — the project's
code (v1), the same project with a line of its transformer changed and another n_estimators (v2), then a
built-in estimator (v3) — and the diff of two of them says what a person deciding between them needs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shared.registry import ModelVersion
from tests.fixtures.projects import TRAINING, Project, churn_project
from tests.integration.test_delivery import MODEL

pytestmark = pytest.mark.integration

CHANGED = {**TRAINING, "params": {"n_estimators": 60, "learning_rate": 0.5}}
BUILT_IN = {"estimator": "logistic_regression", "params": {"max_iter": 500}}


@dataclass
class Versions:
    project: Project
    first: ModelVersion  # the project's code
    second: ModelVersion  # its code changed, and n_estimators
    built_in: ModelVersion  # no model code

    def diff(self, *args: str) -> Any:
        return self.project.delivery.flywheel("diff", *args)


@pytest.fixture(scope="class")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Versions]:
    with churn_project(tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("code-cache")) as project:
        first = project.push("2026-01", seed=1)
        project.change_code("+ 1.0", "+ 2.0")
        project.put_contract(CHANGED)
        second = project.push("2026-02", seed=2)
        project.put_contract(BUILT_IN)
        built_in = project.push("2026-03", seed=3)
        version = project.delivery.version
        yield Versions(project, version(first), version(second), version(built_in))


class TestDiff:
    def test_the_changed_file_and_parameter_and_both_models_on_one_holdout(self, versions: Versions) -> None:
        """Given v1 and v2 of a project whose pipeline.py changed by one line and whose n_estimators went
        from 40 to 60, when a person asks for their diff, then it names the file, the parameter, and scores
        both versions on v2's holdout."""
        a, b = versions.first, versions.second

        shown = versions.diff(f"{MODEL}:{a.version}", f"{MODEL}:{b.version}")

        assert shown.exit_code == 0, shown.output
        text = shown.output
        assert "modified  pipeline.py  +1 -1" in text
        assert "n_estimators" in text and "40" in text and "60" in text
        assert f"metrics on one holdout: v{b.version}'s" in text and b.run_id in text
        assert "--show-code prints the diff" in text
        roc_line = next(line for line in text.splitlines() if line.strip().startswith("roc_auc"))
        assert f"{b.champion_metrics['roc_auc']:.4f}" in roc_line  # v1 as Evaluate scored it on this holdout
        assert f"{b.metrics['roc_auc']:.4f}" in roc_line

    def test_show_code_prints_the_changed_lines(self, versions: Versions) -> None:
        shown = versions.diff(
            f"{MODEL}:{versions.first.version}", f"{MODEL}:{versions.second.version}", "--show-code"
        )

        assert shown.exit_code == 0, shown.output
        lines = [line.strip() for line in shown.output.splitlines()]
        assert "--- a/pipeline.py" in lines and "+++ b/pipeline.py" in lines
        assert any(line.startswith("-") and "+ 1.0" in line for line in lines)
        assert any(line.startswith("+") and "+ 2.0" in line for line in lines)

    def test_json_has_every_aspect_and_the_holdout_it_scored_on(self, versions: Versions) -> None:
        a, b = versions.first, versions.second

        shown = versions.diff(f"{MODEL}:{a.version}", f"{MODEL}:{b.version}", "--json")

        assert shown.exit_code == 0, shown.output
        view = json.loads(shown.output)
        assert (view["a"]["version"], view["b"]["version"]) == (a.version, b.version)
        code = view["code"]
        assert a.code_artifact and b.code_artifact
        assert (code["a"]["digest"], code["b"]["digest"], code["same"]) == (
            a.code_artifact.sha256,
            b.code_artifact.sha256,
            False,
        )
        assert code["files"] == [
            {"path": "pipeline.py", "change": "modified", "lines_added": 1, "lines_removed": 1}
        ]
        assert code["diff_lines_cut"] == 0 and any("+ 2.0" in line for line in code["diff"])
        assert view["params"]["changed"] == [{"key": "n_estimators", "a": 40, "b": 60}]
        assert view["params"]["added"] == [] and view["params"]["removed"] == []
        new_datasets = {d.dataset_id for d in b.training_datasets} - {
            d.dataset_id for d in a.training_datasets
        }
        assert new_datasets and {d["dataset_id"] for d in view["datasets"]["only_b"]} == new_datasets
        metrics = view["metrics"]
        assert metrics["holdout"]["run_id"] == b.run_id and metrics["holdout"]["version"] == b.version
        assert metrics["holdout"]["uri"].endswith(f"/{b.run_id}/holdout.parquet")
        # On v2's holdout, v2 scores what it recorded and v1 what Evaluate measured of it as the champion.
        assert metrics["b"]["metrics"] == pytest.approx(b.metrics)
        assert metrics["a"]["metrics"] == pytest.approx(b.champion_metrics)
        assert metrics["recorded"] == {"a": a.metrics, "b": b.metrics}
        assert (
            view["flavour"]["a"]["flavor"] == "sklearn" and "PerTenureMonth" in view["flavour"]["a"]["reason"]
        )
        figures = {f["figure"]: f for f in view["serving"]}
        p99 = figures["p99_ms"]
        assert p99["a"] == a.runtime_metrics["p99_ms"] and p99["b"] == b.runtime_metrics["p99_ms"]
        assert p99["difference"] == pytest.approx(p99["b"] - p99["a"])

    def test_a_built_in_estimator_has_no_model_code(self, versions: Versions) -> None:
        """Given v3 from a built-in estimator, its diff with the project's v2 says it has no code, lists no
        files, and still compares parameters and scores both on v3's holdout."""
        a, b = versions.second, versions.built_in

        shown = versions.diff(f"{MODEL}:{a.version}", f"{MODEL}:{b.version}")
        as_json = json.loads(versions.diff(f"{MODEL}:{a.version}", f"{MODEL}:{b.version}", "--json").output)

        assert shown.exit_code == 0, shown.output
        assert f"v{b.version} none (built-in estimator)" in shown.output
        assert "pipeline.py" not in shown.output
        assert as_json["code"]["b"] is None and as_json["code"]["files"] == []
        assert {"key": "estimator", "a": "project:pipeline:build", "b": "logistic_regression"} in as_json[
            "params"
        ]["changed"]
        assert {"key": "max_iter", "a": None, "b": 500} in as_json["params"]["added"]
        assert {c["key"] for c in as_json["params"]["removed"]} == {"learning_rate", "n_estimators"}
        assert as_json["metrics"]["holdout"]["run_id"] == b.run_id
        assert as_json["metrics"]["a"]["metrics"] == pytest.approx(b.champion_metrics)
        assert as_json["metrics"]["b"]["metrics"] == pytest.approx(b.metrics)

    @pytest.mark.parametrize(
        ("first", "second", "says"),
        [
            (f"{MODEL}:1", f"{MODEL}:99", "99"),
            (f"{MODEL}:1", "fraud:2", "two versions of one model"),
            (MODEL, f"{MODEL}:2", "expected MODEL:VERSION"),
        ],
    )
    def test_a_bad_reference_exits_2_saying_why(
        self, versions: Versions, first: str, second: str, says: str
    ) -> None:
        shown = versions.diff(first, second)

        assert shown.exit_code == 2, shown.output
        assert says in shown.output
