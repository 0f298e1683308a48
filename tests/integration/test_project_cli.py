"""`flywheel init` then `flywheel test`, as a team starts a project: the scaffold's three kinds of test pass
on a fresh project, and `flywheel test` fails when one of them fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def flywheel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A team's folder with a regression sample: house prices from area, rooms, a garden and a district."""
    folder = tmp_path_factory.mktemp("team")
    rng = np.random.default_rng(5)
    rows = 400
    area = rng.lognormal(4.3, 0.5, rows)
    frame = pd.DataFrame(
        {
            "house_id": [f"h{i}" for i in range(rows)],
            "sold_at": pd.date_range("2026-01-01", periods=rows, freq="h", tz="UTC").astype(str),
            "area_m2": area.round(1),
            "rooms": rng.integers(1, 7, rows),
            "garden": rng.choice(["yes", "no"], rows),
            "district": rng.choice(["old-town", "harbour", "hills"], rows),
            "price": (2500 * area + 8000 * rng.normal(0, 1, rows)).round(0),
        }
    )
    frame.to_csv(folder / "houses.csv", index=False)
    return folder


def test_a_new_project_passes_its_three_kinds_of_test(team: Path) -> None:
    made = flywheel("init", "houses", "--from-csv", "houses.csv", "--target", "price", cwd=team)
    assert made.returncode == 0, made.stderr
    assert "task regression" in made.stdout and "id column 'house_id'" in made.stdout
    root = team / "models" / "houses"
    assert {p.name for p in root.iterdir()} >= {"contract.yaml", "pipeline.py", "sample.csv", "tests"}
    # the team's own transformer and an estimator the built-in menu does not offer
    assert "class SignedLog" in (root / "pipeline.py").read_text()
    assert "BayesianRidge(**params)" in (root / "pipeline.py").read_text()

    tested = flywheel("test", "houses", cwd=team)

    assert tested.returncode == 0, tested.stdout[-4000:] + tested.stderr[-2000:]
    summary = tested.stdout.split("houses:")[-1]
    for kind in ("unit", "component", "integration"):
        assert kind in summary and "FAILED" not in summary and "no tests" not in summary

    again = flywheel("init", "houses", "--from-csv", "houses.csv", cwd=team)
    assert again.returncode == 2 and "exists" in again.stderr


def test_a_failing_test_fails_flywheel_test(team: Path) -> None:
    made = flywheel("init", "broken", "--from-csv", "houses.csv", "--target", "price", cwd=team)
    assert made.returncode == 0, made.stderr
    pipeline = team / "models" / "broken" / "pipeline.py"
    # the feature loses its sign: the scaffold's unit test of the transformer must catch it
    pipeline.write_text(pipeline.read_text().replace("np.sign(values) * np.log1p", "np.log1p"))

    tested = flywheel("test", "broken", "--kind", "unit", cwd=team)

    assert tested.returncode == 1
    assert "FAILED" in tested.stdout.split("broken:")[-1]


def test_a_kind_without_tests_is_a_failure(team: Path) -> None:
    made = flywheel("init", "bare", "--from-csv", "houses.csv", "--target", "price", cwd=team)
    assert made.returncode == 0, made.stderr
    for test in (team / "models" / "bare" / "tests" / "component").glob("*.py"):
        test.unlink()

    tested = flywheel("test", "bare", "--kind", "component", cwd=team)

    assert tested.returncode == 1 and "no tests" in tested.stdout
    assert flywheel("test", "missing", cwd=team).returncode == 2
