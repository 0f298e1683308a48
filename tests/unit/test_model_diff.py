"""``flywheel diff``'s pure parts: which files of a model's code changed between two versions (and their
diff, bounded), how parameters and serving figures compare, and references it refuses before any AWS call."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.diff import (
    CodeComparison,
    Comparison,
    DatasetsComparison,
    Flavour,
    KeyChanges,
    MetricsComparison,
    ValueChange,
    VersionCode,
    VersionSummary,
    comparison_text,
    key_changes,
    serving_figures,
)
from cli.main import main
from shared.ml.projects import ModelCode, changed_files, code_from_archive, read_project

pytestmark = pytest.mark.unit

PROJECT = Path(__file__).resolve().parents[2] / "models" / "churn"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "before"
    shutil.copytree(PROJECT, root)
    (root / "helpers.py").write_text("def unused() -> int:\n    return 1\n")
    return root


def edited(project: Path, tmp_path: Path) -> ModelCode:
    """The project with pipeline.py's ratio changed, helpers.py gone and features.py new."""
    root = tmp_path / "after"
    shutil.copytree(project, root)
    pipeline = root / "pipeline.py"
    pipeline.write_text(pipeline.read_text().replace("+ 1.0", "+ 2.0"))
    (root / "helpers.py").unlink()
    (root / "features.py").write_text("TENURE = 'tenure_months'\nRATIO = 2.0\n")
    return read_project(root, "churn")


def test_same_code_has_no_changed_files(project: Path) -> None:
    code = read_project(project, "churn")

    changes = changed_files(code, read_project(project, "churn"))

    assert changes.files == () and changes.diff == () and changes.lines_cut == 0


def test_files_added_removed_and_modified_are_named_with_their_diff(project: Path, tmp_path: Path) -> None:
    """Given stored archives of two versions (read back as the CLI reads them from S3), the changed files are
    named by kind, with the lines each gained and lost, and the diff shows the edited line both ways."""
    old = read_project(project, "churn")
    new = edited(project, tmp_path)
    stored_old = code_from_archive("churn", old.archive, old.digest)
    stored_new = code_from_archive("churn", new.archive, new.digest)

    changes = changed_files(stored_old, stored_new)

    assert changes.paths("added") == ["features.py"]
    assert changes.paths("removed") == ["helpers.py"]
    assert changes.paths("modified") == ["pipeline.py"]
    counts = {f.path: (f.lines_added, f.lines_removed) for f in changes.files}
    assert counts == {"features.py": (2, 0), "helpers.py": (0, 2), "pipeline.py": (1, 1)}
    assert "--- a/pipeline.py" in changes.diff and "+++ b/pipeline.py" in changes.diff
    removed = [line for line in changes.diff if line.startswith("-") and "+ 1.0" in line]
    added = [line for line in changes.diff if line.startswith("+") and "+ 2.0" in line]
    assert len(removed) == 1 and len(added) == 1
    assert "+++ /dev/null" in changes.diff  # helpers.py removed
    assert changes.lines_cut == 0


def test_the_diff_is_cut_and_says_how_many_lines_were_cut(project: Path, tmp_path: Path) -> None:
    old, new = read_project(project, "churn"), edited(project, tmp_path)
    whole = changed_files(old, new)

    cut = changed_files(old, new, max_lines=4)

    assert cut.diff == whole.diff[:4]
    assert cut.lines_cut == len(whole.diff) - 4 > 0
    assert cut.files == whole.files  # the file list is never cut


def test_parameter_changes_are_changed_added_and_removed_keys() -> None:
    a = {"estimator": "project:pipeline:build", "n_estimators": 40, "learning_rate": 0.5}
    b = {"estimator": "logistic_regression", "learning_rate": 0.5, "max_iter": 500}

    changes = key_changes(a, b)

    assert [(c.key, c.a, c.b) for c in changes.changed] == [
        ("estimator", "project:pipeline:build", "logistic_regression")
    ]
    assert [(c.key, c.b) for c in changes.added] == [("max_iter", 500)]
    assert [(c.key, c.a) for c in changes.removed] == [("n_estimators", 40)]


def test_serving_figures_are_side_by_side_with_the_difference_when_both_have_one() -> None:
    a = {"p50_ms": 2.0, "p99_ms": 9.5, "load_seconds": 0.25, "error_rate": 0.0, "verification": {}}
    b = {"p50_ms": 3.5, "p95_ms": 5.0, "p99_ms": 7.0, "error_rate": 0.0}

    figures = {f.figure: (f.a, f.b, f.difference) for f in serving_figures(a, b)}

    assert figures == {
        "p50_ms": (2.0, 3.5, 1.5),
        "p95_ms": (None, 5.0, None),
        "p99_ms": (9.5, 7.0, -2.5),
        "load_seconds": (0.25, None, None),
        "error_rate": (0.0, 0.0, 0.0),
    }


@pytest.mark.parametrize(
    ("first", "second", "says"),
    [
        ("churn", "churn:2", "expected MODEL:VERSION"),
        ("churn:1", "churn:two", "expected MODEL:VERSION"),
        ("churn:1", "fraud:2", "two versions of one model"),
    ],
)
def test_a_bad_reference_is_a_usage_error_before_any_stack_is_asked(
    first: str, second: str, says: str
) -> None:
    result = CliRunner().invoke(main, ["--stack", "nowhere", "diff", first, second])

    assert result.exit_code == 2, result.output
    assert says in result.output


def comparison(code: CodeComparison) -> Comparison:
    """Two versions alike in all but ``code``."""
    side = {"stage": "production", "run_id": "run-1", "registered_at": datetime(2026, 1, 1, tzinfo=UTC)}
    return Comparison(
        model="churn",
        a=VersionSummary(version=1, **side),
        b=VersionSummary(version=2, **side),
        code=code,
        params=KeyChanges(),
        datasets=DatasetsComparison(
            both=["churn-1"], only_a=[], only_b=[], source_files_only_a=[], source_files_only_b=[]
        ),
        metrics=MetricsComparison(recorded={"a": {}, "b": {}}, holdout=None, a=None, b=None),
        flavour={"a": Flavour(flavor="onnx"), "b": Flavour(flavor="onnx")},
        serving=serving_figures({}, {}),
    )


def test_the_text_names_a_change_of_flywheel_code_and_says_when_the_model_code_is_the_same() -> None:
    code = VersionCode(digest="ab" * 32, uri="s3://artifacts/models/churn/run-1/code.zip")

    text = comparison_text(
        comparison(
            CodeComparison(
                a=code,
                b=code,
                same=True,
                code_version=ValueChange(key="code_version", a="src-1", b="src-2"),
                code_commit=ValueChange(key="code_commit"),
            )
        )
    )

    assert "code_version  src-1 -> src-2" in text
    assert "code_commit" not in text  # neither has one: nothing to say
    assert "the same code" in text
    assert "parameters\n  the same" in text


def test_the_text_says_a_built_in_estimator_has_no_model_code() -> None:
    text = comparison_text(
        comparison(
            CodeComparison(
                a=None,
                b=None,
                same=True,
                code_version=ValueChange(key="code_version", a="src-1", b="src-1"),
                code_commit=ValueChange(key="code_commit"),
            )
        )
    )

    assert "v1 none (built-in estimator)" in text and "v2 none (built-in estimator)" in text
    assert "the same code" not in text and "code_version" not in text
