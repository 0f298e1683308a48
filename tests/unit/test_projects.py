"""Model projects: the team's own code is packed by digest, loaded with the code a model was trained with, and
refused with a clear reason when it cannot build a model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from examples.churn import generate
from shared.data.contract import DataContract, parse_contract
from shared.data.streaming import validate_file
from shared.errors import ContractError, IntegrityError
from shared.hashing import sha256_hex
from shared.ml.evaluation import score
from shared.ml.projects import code_from_archive, read_project
from shared.ml.training import build_pipeline, model_from_bytes, model_to_bytes, predict_frame, train
from tests.fixtures.services import churn_contract

pytestmark = pytest.mark.unit

PROJECT = Path(__file__).resolve().parents[2] / "models" / "churn"


@pytest.fixture(autouse=True)
def code_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("FLYWHEEL_CODE_CACHE", str(cache))
    return cache


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the repository's churn project, free to change."""
    root = tmp_path / "models" / "churn"
    shutil.copytree(PROJECT, root)
    (root / "tests").mkdir(exist_ok=True)
    (root / "tests" / "test_features.py").write_text("def test_nothing() -> None: ...\n")
    return root


@pytest.fixture(scope="module")
def contract() -> DataContract:
    return parse_contract((PROJECT / "contract.yaml").read_text())


@pytest.fixture(scope="module")
def frame(contract: DataContract) -> object:
    return validate_file(generate(1200, 1).to_csv(index=False).encode(), "a.csv", contract).frame


def test_the_digest_is_the_code_and_only_the_code(project: Path) -> None:
    """Copies made at other times and places pack to the same bytes; tests and caches are not the model's
    code; any edit of a module is a new digest."""
    first = read_project(project, "churn")
    os.utime(project / "pipeline.py", (0, 0))
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "pipeline.cpython-312.pyc").write_bytes(b"\0")
    (project / "tests" / "test_features.py").write_text("def test_other() -> None: ...\n")

    assert read_project(project, "churn") == first
    assert first.files == ("pipeline.py",)
    assert first.digest == sha256_hex(first.archive)
    assert first.package == f"flywheel_model_{first.digest[:16]}"
    (project / "features.py").write_text("X = 1\n")
    assert read_project(project, "churn").digest != first.digest


def test_a_model_loads_with_the_code_it_was_trained_with_after_the_code_changed(
    project: Path, contract: DataContract, frame: object
) -> None:
    """Given a model trained with the project's code, when the code changes and a second model is trained,
    then both load in one process, each with its own classes, and the first still answers as it did."""
    before = read_project(project, "churn")
    first = train(frame, contract, before)  # type: ignore[arg-type]
    stored = model_to_bytes(first.pipeline)
    expected = predict_frame(first.pipeline, first.holdout, contract)
    pipeline_py = project / "pipeline.py"
    pipeline_py.write_text(pipeline_py.read_text().replace("+ 1.0", "+ 2.0"))
    after = read_project(project, "churn")
    second = train(frame, contract, after)  # type: ignore[arg-type]

    loaded = model_from_bytes(
        stored, sha256_hex(stored), code_from_archive("churn", before.archive, before.digest)
    )

    assert after.digest != before.digest
    ratio = loaded.named_steps["features"].named_transformers_["per_tenure"].named_steps["ratio"]
    newer = second.pipeline.named_steps["features"].named_transformers_["per_tenure"].named_steps["ratio"]
    assert type(ratio).__module__ == f"{before.package}.pipeline"
    assert type(newer).__module__ == f"{after.package}.pipeline"
    assert predict_frame(loaded, first.holdout, contract).equals(expected)
    assert score(loaded, first.holdout, contract).metrics["roc_auc"] > 0.7


def test_code_whose_bytes_changed_is_never_unpacked(project: Path, code_cache: Path) -> None:
    code = read_project(project, "churn")

    with pytest.raises(IntegrityError, match="does not match the recorded"):
        code_from_archive("churn", code.archive + b"\0", code.digest)

    assert not code_cache.exists()


def test_a_missing_project_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="flywheel init churn"):
        read_project(tmp_path / "models" / "churn", "churn")


@pytest.mark.parametrize(
    ("source", "reference", "message"),
    [
        ("X = 1\n", "pipeline:build", "defines no function build(contract, params)"),
        ("def build(contract, params):\n    return object()\n", "pipeline:build", "which has no ['fit'"),
        ("from features import Ratio\n", "pipeline:build", "import the project's own modules relatively"),
        ("def build(contract, params):\n    return 1\n", "other:build", "the project has no module 'other'"),
        ("def build(contract, params):\n    raise KeyError('depth')\n", "pipeline:build", "failed with"),
    ],
    ids=["no-build", "not-an-estimator", "absolute-import", "no-module", "build-raises"],
)
def test_code_that_cannot_build_a_model_is_a_contract_error_saying_why(
    project: Path, contract: DataContract, frame: object, source: str, reference: str, message: str
) -> None:
    (project / "pipeline.py").write_text(source)
    (project / "features.py").write_text("class Ratio: ...\n")
    wrong = churn_contract(training={"pipeline": reference, "params": {}})

    with pytest.raises(
        ContractError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        train(frame, wrong, read_project(project, "churn"))  # type: ignore[arg-type]


def test_a_contract_names_a_built_in_estimator_or_the_project_code_never_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        churn_contract(training={"pipeline": "pipeline:build", "estimator": "ridge"})
    project = churn_contract(training={"pipeline": "pipeline:build", "params": {"n_estimators": 5}})
    assert project.training.estimator is None and project.training.builder == "project:pipeline:build"
    assert parse_contract(project.to_yaml()) == project
    assert churn_contract().training.builder == "hist_gradient_boosting"
    with pytest.raises(ContractError, match="needs the project code"):
        build_pipeline(project)
