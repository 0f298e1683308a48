"""A team deploys Flywheel from its own repository: its projects in its own ``models/``, its own
``Pulumi.yaml`` and ``Pulumi.<stack>.yaml`` naming them (``flywheel:modelsDir``), and a ``__main__.py`` that
calls ``infra.program.run``. The function image must then ship the team's code, be built from a context
whose hash is the tag, and be rebuilt for an edit of the team's code only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from infra import program
from infra.image import (
    IMAGE_FILES,
    REPO_ROOT,
    STAGED_CONTEXT,
    ModelsDirError,
    code_version,
    context_files,
    image_context,
    stage_context,
)
from infra.preflight.mocks import Registered, run
from tests.infra.harness import T

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]

PULUMI_YAML = {"name": "acme-ml", "runtime": {"name": "python"}, "main": "."}
STACK_CONFIG = {"config": {"aws:region": "eu-west-1", "flywheel:modelsDir": "models"}}


@pytest.fixture
def team(tmp_path: Path) -> Path:
    """A team's repository: the churn project (code, contract, sample data, tests) in its own models/,
    beside a README, and the Pulumi project files the README tells a team to write."""
    repo = tmp_path / "acme-ml"
    shutil.copytree(
        ROOT / "models" / "churn", repo / "models" / "churn", ignore=shutil.ignore_patterns("__pycache__")
    )
    (repo / "README.md").write_text("# Acme's models\n")
    (repo / "Pulumi.yaml").write_text(yaml.safe_dump(PULUMI_YAML))
    (repo / "Pulumi.dev.yaml").write_text(yaml.safe_dump(STACK_CONFIG))
    (repo / "__main__.py").write_text("from infra.program import run\n\nrun()\n")
    return repo


def deploy_team(repo: Path, stack: str = "dev") -> list[Registered]:
    """The team's program under the provider mocks, reading the team's own stack file."""
    return run(lambda: program.run(repo), stack, root=repo)


def the_image(resources: list[Registered]) -> Registered:
    [image] = [r for r in resources if r.type == T.IMAGE]
    return image


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_the_image_is_built_from_a_context_staged_in_the_team_project(team: Path) -> None:
    """Given a team repository whose stack sets flywheel:modelsDir: models
    When its program runs
    Then docker-build gets a context staged at <project>/.flywheel/image-context holding Flywheel's image
    files and packages and the team's project code and contract, without its tests or sample data; the
    staged directory is exactly what Docker sends, and the tag is its hash as docker-build computes it."""
    resources = deploy_team(team)

    image = the_image(resources)
    staged = team / STAGED_CONTEXT
    assert Path(image.inputs["context"]["location"]) == staged
    assert Path(image.inputs["dockerfile"]["location"]) == staged / "Dockerfile"
    staged_files = files_under(staged)
    assert {"models/churn/pipeline.py", "models/churn/contract.yaml"} <= staged_files
    assert not any(f.startswith("models/churn/tests/") or f.endswith(".csv") for f in staged_files)
    assert set(context_files(staged)) == staged_files
    # Flywheel's part is exactly what this checkout's own context holds.
    flywheel_part = {f for f in staged_files if not f.startswith("models/")}
    assert flywheel_part == {f for f in context_files(REPO_ROOT) if not f.startswith("models/")}
    [tag] = image.inputs["tags"]
    assert tag.rsplit(":", 1)[1] == f"src-{image.outputs['contextHash'][:32]}" == code_version(staged)
    # Every function is told the same code version; the stack is configured from the team's file.
    functions = [r for r in resources if r.type == T.FUNCTION]
    assert functions
    assert {f.inputs["environment"]["variables"]["FLYWHEEL_CODE_VERSION"] for f in functions} == {
        code_version(staged)
    }
    assert all(f.outputs["arn"].startswith("arn:aws:lambda:eu-west-1:") for f in functions)


def edit(relative: str) -> Callable[[Path], None]:
    def apply(repo: Path) -> None:
        with (repo / relative).open("a") as file:
            file.write("\n# edited\n")

    return apply


@pytest.mark.parametrize(
    ("change", "moves"),
    [
        (edit("models/churn/pipeline.py"), True),
        (edit("models/churn/contract.yaml"), True),
        (edit("models/churn/tests/test_features.py"), False),
        (edit("models/churn/sample.csv"), False),
        (edit("README.md"), False),
    ],
    ids=["pipeline", "contract", "tests", "sample-data", "readme"],
)
def test_the_tag_follows_the_team_code_and_nothing_else(
    team: Path, change: Callable[[Path], None], moves: bool
) -> None:
    """Given a deployed team repository
    When one of its files is edited and the program runs again
    Then the image tag (and so the rebuild) moves exactly when the edit is to what the image ships."""
    before = the_image(deploy_team(team)).inputs["tags"]
    change(team)
    after = the_image(deploy_team(team)).inputs["tags"]
    assert (after != before) == moves


def test_restaging_removes_what_the_team_removed_and_is_otherwise_a_no_op(team: Path) -> None:
    models = team / "models"
    staged = stage_context(models, team / STAGED_CONTEXT)
    tag = code_version(staged)
    (staged / "models" / "stale.py").write_text("X = 1\n")
    (staged / "models" / "gone").mkdir()
    assert stage_context(models, staged) == staged
    assert code_version(staged) == tag
    assert not (staged / "models" / "stale.py").exists() and not (staged / "models" / "gone").exists()

    (models / "churn" / "helpers.py").write_text("Y = 2\n")
    stage_context(models, staged)
    assert (staged / "models" / "churn" / "helpers.py").is_file()
    (models / "churn" / "helpers.py").unlink()
    stage_context(models, staged)
    assert not (staged / "models" / "churn" / "helpers.py").exists()
    assert code_version(staged) == tag


def test_a_symlinked_file_is_staged_as_a_regular_copy(team: Path) -> None:
    """docker-build hashes a symlink's target under the link's mode, which context_hash does not: the
    staged context holds copies only."""
    shared = team / "common.py"
    shared.write_text("Z = 3\n")
    (team / "models" / "churn" / "common.py").symlink_to(shared)
    staged = stage_context(team / "models", team / STAGED_CONTEXT)
    copy = staged / "models" / "churn" / "common.py"
    assert copy.is_file() and not copy.is_symlink() and copy.read_text() == "Z = 3\n"
    assert "models/churn/common.py" in context_files(staged)


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda repo: shutil.rmtree(repo / "models"), "is not a directory"),
        (lambda repo: shutil.rmtree(repo / "models" / "churn"), "holds no model project"),
        (lambda repo: (repo / "models" / "churn" / "contract.yaml").unlink(), "holds no model project"),
    ],
    ids=["missing", "empty", "no-contract"],
)
def test_a_models_dir_without_projects_is_refused_by_name(
    team: Path, prepare: Callable[[Path], None], message: str
) -> None:
    prepare(team)
    with pytest.raises(ModelsDirError, match=rf"flywheel:modelsDir 'models': .*{message}"):
        deploy_team(team)
    assert not (team / STAGED_CONTEXT).exists()


def test_this_checkout_keeps_building_from_its_own_root() -> None:
    """Flywheel's own stack, with or without modelsDir naming this checkout's models/, is built from the
    repository root as before (its tag does not move)."""
    assert image_context(REPO_ROOT, None).location == REPO_ROOT
    assert image_context(REPO_ROOT, "models").location == REPO_ROOT
    assert not (REPO_ROOT / STAGED_CONTEXT).exists()


# -- Flywheel as a package ----------------------------------------------------------------------------

SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", *IMAGE_FILES)
PACKAGES = ("shared", "functions", "infra", "cli", "examples")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Flywheel's wheel, built offline from a copy of the source (so the checkout gets no build/)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in SOURCES:
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "node_modules")
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, source],
        check=True,
        capture_output=True,
    )
    [built] = out.glob("flywheel-*.whl")
    return built


def test_the_wheel_carries_what_the_image_is_built_from(wheel: Path) -> None:
    """Given Flywheel built as a wheel
    Then it holds the Dockerfile, .dockerignore and pinned requirements (copies of the root's, made at
    build time), shared/, functions/ and the templates `flywheel init` writes."""
    names = set(zipfile.ZipFile(wheel).namelist())
    with zipfile.ZipFile(wheel) as archive:
        for name in IMAGE_FILES:
            assert archive.read(f"infra/image_files/{name}") == (ROOT / name).read_bytes(), name
    assert {"shared/__init__.py", "functions/train/handler.py", "infra/program.py"} <= names
    assert {f"cli/templates/{p.name}" for p in (ROOT / "cli" / "templates").glob("*.tmpl")} <= names
    assert not any(n.startswith(("models/", "tests/")) for n in names)


def test_installed_flywheel_stages_the_same_context_as_a_checkout(
    wheel: Path, team: Path, tmp_path: Path
) -> None:
    """Given Flywheel installed from its wheel (no checkout on the path) and a team repository
    When the team's image context is worked out
    Then it is staged under the team's project from the packaged image files, with the same files and
    the same tag as a checkout stages for the same projects: the tag does not depend on how Flywheel
    was installed."""
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    script = (
        "import json; from pathlib import Path; from infra import image; "
        "c = image.image_context(Path.cwd(), 'models'); "
        "print(json.dumps({'checkout': image.is_checkout(), 'location': str(c.location), 'tag': c.tag, "
        "'dockerfile': str(image.image_file('Dockerfile'))}))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", script], cwd=team, env=env, capture_output=True, check=True)
    installed = json.loads(done.stdout)

    assert installed["checkout"] is False
    assert Path(installed["dockerfile"]) == site / "infra" / "image_files" / "Dockerfile"
    assert Path(installed["location"]) == team / STAGED_CONTEXT
    from_installed = files_under(team / STAGED_CONTEXT)
    from_checkout = stage_context(team / "models", tmp_path / "from-checkout")
    assert files_under(from_checkout) == from_installed
    assert code_version(from_checkout) == installed["tag"]

    # Installed, there is no models/ of Flywheel's own to fall back on: the stack must name the team's.
    unset = "from pathlib import Path; from infra import image; image.image_context(Path.cwd(), None)"
    refused = subprocess.run(
        [sys.executable, "-c", unset], check=False, cwd=team, env=env, capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "ModelsDirError" in refused.stderr and "set flywheel:modelsDir" in refused.stderr
