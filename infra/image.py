"""The function image: the Lambda base image it starts from, that image's platform, and its build context.

Every function runs one container image built from the repository's ``Dockerfile``. Three facts about it
decide whether `pulumi up` works, so they live here, read from the files themselves:

- **The platform.** The Dockerfile's ``FROM`` names one of Lambda's Python base images; that image fixes the
  Python version, the glibc the wheels must be built for, and the architecture Lambda runs it on. Lambda's
  Python 3.11 image is Amazon Linux 2 (glibc 2.26), for which numpy 2, scipy, scikit-learn, onnxruntime and
  pyarrow publish no wheels; 3.12 and 3.13 are Amazon Linux 2023 (glibc 2.34).
- **The build context** is what ``.dockerignore`` lets through (an allow-list: the Dockerfile copies exactly
  those files), decided with Docker's own pattern rules (docker-py's ``PatternMatcher``).
- **The image tag** is a digest of exactly that context, computed as pulumi-docker-build computes the
  ``contextHash`` it rebuilds on (``provider/internal/context.go``: the Dockerfile's bytes, then per context
  file its bytes, its slash path and its mode). ECR tags are immutable, so an edit that makes docker-build
  rebuild must also make a new tag, and an edit outside the context must do neither.

The context is this checkout itself when Flywheel runs from one with its own ``models/``. A team that
installs Flywheel as a package and keeps its projects in its own repository (``flywheel:modelsDir``) gets a
context staged at a stable path of its Pulumi project (``.flywheel/image-context/``): Flywheel's image files
(from the checkout or, installed, from ``infra/image_files/``, copied there when the wheel is built),
``shared/`` and ``functions/``, and the team's projects as ``models/``, filtered by the same
``.dockerignore``. The staged files are copies, never symlinks: docker-build hashes a symlink's target
under the link's own mode (``Lrwxrwxrwx``), which the tag here would have to mimic.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# In a checkout the repository; installed, site-packages (where shared/ and functions/ sit beside infra/).
REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERIGNORE = ".dockerignore"
# The files of the context beside the packages: in a checkout at its root, in a wheel under infra/ (setup.py
# copies them there at build time, so there is one copy to edit).
IMAGE_FILES = ("Dockerfile", DOCKERIGNORE, "requirements.txt", "constraints.txt")
PACKAGED_IMAGE_FILES = Path(__file__).resolve().parent / "image_files"
# Flywheel's packages the image copies, found beside infra/ in a checkout and in site-packages alike.
IMAGE_PACKAGES = ("shared", "functions")
MODELS = "models"
CONTRACT_FILE = "contract.yaml"
# Where a team's Pulumi project gets its staged build context: a stable path, so docker-build's
# ``context.location`` input is the same from one `pulumi up` to the next.
STAGED_CONTEXT = Path(".flywheel") / "image-context"

Architecture = Literal["x86_64", "arm64"]


@dataclass(frozen=True)
class LambdaPythonImage:
    """One of AWS Lambda's Python base images and the platform a wheel must fit to run in it."""

    python: str
    operating_system: str
    glibc: tuple[int, int]

    @property
    def uri(self) -> str:
        return f"public.ecr.aws/lambda/python:{self.python}"


# https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html (OS of each runtime) and
# https://docs.aws.amazon.com/linux/al2023/ug/compare-with-al2.html (glibc 2.26 in AL2, 2.34 in AL2023).
LAMBDA_PYTHON_IMAGES = {
    image.python: image
    for image in (
        LambdaPythonImage(python="3.11", operating_system="Amazon Linux 2", glibc=(2, 26)),
        LambdaPythonImage(python="3.12", operating_system="Amazon Linux 2023", glibc=(2, 34)),
        LambdaPythonImage(python="3.13", operating_system="Amazon Linux 2023", glibc=(2, 34)),
    )
}
# Lambda runs x86_64 unless a function says otherwise; the image is built for it on any machine.
ARCHITECTURE: Architecture = "x86_64"
DOCKER_PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
_FROM = re.compile(r"^FROM\s+(?:--platform=\S+\s+)?(?P<image>\S+)", re.MULTILINE | re.IGNORECASE)


class ImageError(ValueError):
    """The image cannot be built as declared: a Dockerfile whose base is no known Lambda platform, or an
    image file missing from both the checkout and the installed package."""


def image_file(name: str) -> Path:
    """One of :data:`IMAGE_FILES`: the checkout's own if Flywheel runs from one, else the wheel's copy."""
    for folder in (REPO_ROOT, PACKAGED_IMAGE_FILES):
        if (folder / name).is_file():
            return folder / name
    raise ImageError(f"{name}: neither in {REPO_ROOT} nor in {PACKAGED_IMAGE_FILES}; reinstall Flywheel")


def is_checkout() -> bool:
    """Flywheel runs from its repository (plain or editable install), not from a built wheel."""
    return all((REPO_ROOT / name).is_file() for name in IMAGE_FILES)


DOCKERFILE = REPO_ROOT / "Dockerfile" if is_checkout() else PACKAGED_IMAGE_FILES / "Dockerfile"


def base_image(dockerfile: Path = DOCKERFILE) -> LambdaPythonImage:
    """The Lambda Python base image the Dockerfile's (last) ``FROM`` names."""
    found = _FROM.findall(dockerfile.read_text())
    if not found:
        raise ImageError(f"{dockerfile}: no FROM line")
    image = found[-1]
    repository, _, tag = image.partition(":")
    if repository != "public.ecr.aws/lambda/python" or tag not in LAMBDA_PYTHON_IMAGES:
        known = ", ".join(i.uri for i in LAMBDA_PYTHON_IMAGES.values())
        raise ImageError(f"{dockerfile}: FROM {image} is not one of Lambda's Python base images ({known})")
    return LAMBDA_PYTHON_IMAGES[tag]


def manylinux_platforms(glibc: tuple[int, int], architecture: Architecture = ARCHITECTURE) -> list[str]:
    """Every wheel platform tag that runs on ``glibc`` (PEP 600, with the legacy aliases of PEP 513/571/599),
    newest first: what ``pip --platform`` must be given, since it does not widen one tag to older ones."""
    arch = {"x86_64": "x86_64", "arm64": "aarch64"}[architecture]
    major, newest = glibc
    oldest = 17 if arch == "aarch64" else 5
    tags = [f"manylinux_{major}_{minor}_{arch}" for minor in range(newest, oldest - 1, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    for minor, alias in legacy.items():
        if minor <= newest and (arch == "x86_64" or alias == "manylinux2014"):
            tags.append(f"{alias}_{arch}")
    return tags


def ignore_patterns(root: Path = REPO_ROOT) -> list[str]:
    """``.dockerignore``'s patterns, as Docker reads them (comments and blank lines dropped)."""
    path = root / DOCKERIGNORE
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def context_files(root: Path = REPO_ROOT) -> list[str]:
    """The files Docker sends as the build context: slash paths relative to ``root``, in walk order."""
    # docker-py is the Docker SDK's own implementation of .dockerignore; only deploy-time code needs it.
    from docker.utils.build import PatternMatcher  # noqa: PLC0415

    matcher = PatternMatcher(ignore_patterns(root))
    included = (Path(p) for p in matcher.walk(str(root)))
    files = [p for p in included if (root / p).is_file() and not (root / p).is_symlink()]
    # fsutil walks each directory in lexical order of its entries: sort by path components, not text.
    return [p.as_posix() for p in sorted(files, key=lambda p: p.parts)]


def context_hash(root: Path = REPO_ROOT) -> str:
    """pulumi-docker-build's ``contextHash`` of the context at ``root`` with its ``Dockerfile``."""
    digest = hashlib.sha256()
    dockerfile = root / "Dockerfile"
    if dockerfile.is_file():
        digest.update(dockerfile.read_bytes())
    for relative in context_files(root):
        path = root / relative
        digest.update(path.read_bytes())
        digest.update(relative.encode())
        # Go's FileMode.String() and stat.filemode() agree for regular files: "-rw-r--r--".
        digest.update(stat.filemode(path.stat().st_mode).encode())
    return digest.hexdigest()


def code_version(root: Path = REPO_ROOT) -> str:
    """The image tag in AWS and the code version in the registry: the build context's hash."""
    return f"src-{context_hash(root)[:32]}"


# -- where the context is: this checkout, or a directory staged from Flywheel and a team's projects ------


class ModelsDirError(ValueError):
    """``flywheel:modelsDir`` names no folder of model projects."""


@dataclass(frozen=True)
class ImageContext:
    """The directory docker-build is given as its context, and the tag its contents hash to."""

    location: Path

    @property
    def dockerfile(self) -> Path:
        return self.location / "Dockerfile"

    @property
    def tag(self) -> str:
        return code_version(self.location)


def checkout_context() -> ImageContext:
    """This checkout as the context, its own ``models/`` in it: Flywheel's own stack."""
    return ImageContext(location=REPO_ROOT)


def models_path(project_dir: Path, models_dir: str | None) -> Path:
    """The folder of model projects a stack deploys: ``modelsDir`` relative to the Pulumi project's
    directory, else this checkout's ``models/``; refused unless it holds at least one project."""
    setting = f"flywheel:modelsDir {models_dir!r}" if models_dir else f"the default {REPO_ROOT / MODELS}"
    path = (project_dir / models_dir).resolve() if models_dir else REPO_ROOT / MODELS
    if not path.is_dir():
        hint = "" if models_dir else " (Flywheel is installed as a package: set flywheel:modelsDir)"
        raise ModelsDirError(f"{setting}: {path} is not a directory{hint}")
    if not any((child / CONTRACT_FILE).is_file() for child in path.iterdir() if child.is_dir()):
        raise ModelsDirError(
            f"{setting}: {path} holds no model project (a folder with a {CONTRACT_FILE}); "
            "`flywheel init MODEL` starts one"
        )
    return path


def image_context(project_dir: Path, models_dir: str | None) -> ImageContext:
    """The context for a stack whose Pulumi project is ``project_dir``: this checkout when it holds the
    projects (the tag stays what it always was), else a context staged under the project."""
    models = models_path(project_dir, models_dir)
    if is_checkout() and models == (REPO_ROOT / MODELS).resolve():
        return checkout_context()
    return ImageContext(location=stage_context(models, project_dir / STAGED_CONTEXT))


def _walk_files(root: Path, skip: Path) -> Iterator[Path]:
    """Files under ``root`` (symlinked files included, symlinked folders not entered), ``skip`` left out."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if (Path(folder) / d).resolve() != skip)
        for name in sorted(files):
            if (Path(folder) / name).is_file():
                yield Path(folder) / name


def staged_sources(models: Path, destination: Path) -> dict[str, Path]:
    """What the staged context holds, by slash path: Flywheel's image files and packages and the team's
    projects under ``models/``, less what ``.dockerignore`` keeps out of Docker's context."""
    from docker.utils.build import PatternMatcher  # noqa: PLC0415

    skip = destination.resolve()
    sources = {name: image_file(name) for name in IMAGE_FILES}
    for folder, root in [*((p, REPO_ROOT / p) for p in IMAGE_PACKAGES), (MODELS, models)]:
        sources |= {(Path(folder) / f.relative_to(root)).as_posix(): f for f in _walk_files(root, skip)}
    matcher = PatternMatcher(ignore_patterns(sources[DOCKERIGNORE].parent))
    return {relative: source for relative, source in sources.items() if not matcher.matches(relative)}


def stage_context(models: Path, destination: Path) -> Path:
    """Make ``destination`` hold exactly :func:`staged_sources` (copies, with their modes), leaving files
    already equal untouched and removing any other: staging twice is staging once."""
    wanted = staged_sources(models, destination)
    destination.mkdir(parents=True, exist_ok=True)
    for relative, source in wanted.items():
        target = destination / relative
        if target.is_symlink() or (target.exists() and not target.is_file()):
            _remove(target)
        if not (_same_file(source, target)):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        os.chmod(target, stat.S_IMODE(source.stat().st_mode))  # noqa: PTH101 (the mode, not the path)
    for folder, dirs, files in os.walk(destination, topdown=False):
        for name in [*files, *dirs]:
            path = Path(folder) / name
            relative = path.relative_to(destination).as_posix()
            if name in files and relative not in wanted:
                path.unlink()
            elif name in dirs and (path.is_symlink() or not any(path.iterdir())):
                _remove(path)
    return destination


def _same_file(source: Path, target: Path) -> bool:
    return (
        target.is_file()
        and source.stat().st_size == target.stat().st_size
        and source.read_bytes() == target.read_bytes()
    )


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path)
