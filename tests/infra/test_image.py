"""The function image: built on a platform its wheels exist for, from a context that is exactly what its tag
hashes. Two of a first deployment's failures lived here: the Python 3.11 base image (Amazon Linux 2, whose
glibc 2.26 the pinned scientific stack has no wheels for), and a tag that hashed fewer files than
docker-build rebuilds on, so an edit to the README rebuilt the image under a tag ECR already held."""

from __future__ import annotations

import re
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from docker.utils.build import exclude_paths

from infra.image import LAMBDA_PYTHON_IMAGES, base_image, code_version, context_files, manylinux_platforms
from infra.preflight.wheels import resolve
from tests.infra.harness import Deployment, T

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]


def test_the_image_is_amazon_linux_2023_and_everything_runs_its_python() -> None:
    """Given the Dockerfile's base image
    Then it is one of Lambda's Amazon Linux 2023 images, and .venv, the Makefile, ruff, mypy and the
    GitHub workflows all use its Python minor version: what is tested is what runs."""
    image = base_image()
    assert image.operating_system == "Amazon Linux 2023"
    assert image.glibc >= (2, 34)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == image.python
    assert re.search(r"^PYTHON_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)[1] == image.python  # type: ignore[index]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'python_version = "{image.python}"' in pyproject
    assert f'target-version = "py{image.python.replace(".", "")}"' in pyproject
    for workflow in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        versions = re.findall(r'python-version: "([\d.]+)"', workflow.read_text())
        assert versions and set(versions) == {image.python}, workflow.name


def test_wheel_platforms_widen_to_every_older_glibc() -> None:
    tags = manylinux_platforms((2, 34), "x86_64")
    assert tags[0] == "manylinux_2_34_x86_64"
    assert {
        "manylinux_2_28_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
        "manylinux1_x86_64",
    } <= set(tags)
    assert "manylinux_2_35_x86_64" not in tags
    assert manylinux_platforms((2, 26), "arm64")[-1] == "manylinux2014_aarch64"


def fake_wheel(folder: Path, python: str, platform: str) -> None:
    """A minimal wheel of ``fakepkg`` for one interpreter and platform."""
    tag = f"cp{python.replace('.', '')}"
    name = f"fakepkg-1.0-{tag}-{tag}-{platform}.whl"
    with zipfile.ZipFile(folder / name, "w") as wheel:
        wheel.writestr("fakepkg/__init__.py", "")
        wheel.writestr(
            "fakepkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n"
        )
        wheel.writestr(
            "fakepkg-1.0.dist-info/WHEEL",
            f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}-{tag}-{platform}\n",
        )
        wheel.writestr("fakepkg-1.0.dist-info/RECORD", "")


def test_the_wheel_check_refuses_a_package_built_for_a_newer_glibc_than_the_image(tmp_path: Path) -> None:
    """Given a package published only for glibc 2.28 (as numpy 2 and scikit-learn are)
    When the requirements are resolved for Lambda's images with pip, binary wheels only
    Then they resolve for Python 3.12's image (glibc 2.34) and not for 3.11's (Amazon Linux 2, glibc 2.26),
    and pip's refusal names the package."""
    for python in ("3.11", "3.12"):
        fake_wheel(tmp_path, python, "manylinux_2_28_x86_64")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("fakepkg==1.0\n")
    local = ("--no-index", "--find-links", str(tmp_path))

    on_2023 = resolve(LAMBDA_PYTHON_IMAGES["3.12"], requirements, None, local)
    on_2 = resolve(LAMBDA_PYTHON_IMAGES["3.11"], requirements, None, local)

    assert on_2023.ok and on_2023.wheels == ("fakepkg-1.0-cp312-cp312-manylinux_2_28_x86_64.whl",)
    assert not on_2.ok
    assert "fakepkg" in on_2.error
    assert "Amazon Linux 2," in on_2.summary()


# -- the build context and the tag ---------------------------------------------------------------------

TREE = {
    "README.md": "# Flywheel\n",
    "Makefile": "test:\n\tpytest\n",
    ".github/workflows/ci.yml": "name: ci\n",
    "tests/test_x.py": "def test(): ...\n",
    "infra/__main__.py": "print()\n",
    "requirements.txt": "pydantic\n",
    "constraints.txt": "pydantic==2\n",
    "shared/logic.py": "X = 1\n",
    "shared/sub/deep.py": "Y = 1\n",
    "functions/trigger/handler.py": "def handler(e, c): ...\n",
    "models/churn/pipeline.py": "def build(contract, params): ...\n",
    "models/churn/tests/test_features.py": "def test(): ...\n",
    "models/churn/sample.csv": "a,b\n1,2\n",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A checkout with the repository's own Dockerfile and .dockerignore and a file in every room."""
    for name in ("Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    for relative, text in TREE.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    (tmp_path / "shared" / "__pycache__").mkdir()
    (tmp_path / "shared" / "__pycache__" / "logic.cpython-312.pyc").write_bytes(b"\0")
    return tmp_path


def docker_context(root: Path) -> set[str]:
    """The files Docker's own SDK puts in the build context (docker-py's ``exclude_paths``)."""
    patterns = [line for line in (root / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    return {p for p in exclude_paths(str(root), patterns) if (root / p).is_file()}


def test_the_context_is_exactly_what_the_dockerfile_copies(tree: Path) -> None:
    assert set(context_files(tree)) == docker_context(tree)
    assert set(context_files(tree)) == {
        ".dockerignore",
        "Dockerfile",
        "requirements.txt",
        "constraints.txt",
        "shared/logic.py",
        "shared/sub/deep.py",
        "functions/trigger/handler.py",
        "models/churn/pipeline.py",  # a project's code ships; its tests and sample data do not
    }
    copied = re.findall(r"^COPY (.+) \$\{LAMBDA_TASK_ROOT\}", (ROOT / "Dockerfile").read_text(), re.M)
    sources = {part.rstrip("/") for line in copied for part in line.split()}
    assert sources == {"requirements.txt", "constraints.txt", "shared", "functions", "models"}


@pytest.mark.parametrize("relative", [*TREE, "Dockerfile", ".dockerignore"])
def test_an_edit_changes_the_tag_exactly_when_it_changes_the_context(tree: Path, relative: str) -> None:
    """Given a file anywhere in the checkout
    When it is edited
    Then the image tag moves if and only if Docker would send the file in the build context (so
    docker-build rebuilds exactly when a new tag is there to push to the immutable repository)."""
    before = code_version(tree)
    with (tree / relative).open("a") as file:
        file.write("\n# edited\n")
    assert (code_version(tree) != before) == (relative in docker_context(tree) or relative == "Dockerfile")


def test_a_mode_change_moves_the_tag_as_it_moves_docker_builds_hash(tree: Path) -> None:
    before = code_version(tree)
    (tree / "shared" / "logic.py").chmod(0o755)
    assert code_version(tree) != before


def test_the_pushed_tag_is_the_hash_docker_build_rebuilds_on(flywheel_dev: Deployment) -> None:
    """The program tags the image with the build context's hash as docker-build reports it
    (``contextHash``): the two cannot disagree about whether the image changed."""
    [image] = flywheel_dev.all(T.IMAGE)
    [tag] = image.inputs["tags"]
    assert tag.rsplit(":", 1)[1] == f"src-{image.outputs['contextHash'][:32]}" == code_version()
    assert re.fullmatch(r"src-[0-9a-f]{32}", code_version())
    assert yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["main"] == "infra/"
