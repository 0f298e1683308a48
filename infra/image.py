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
"""

from __future__ import annotations

import hashlib
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = ".dockerignore"

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
    """The Dockerfile starts from an image this module cannot place on a known Lambda platform."""


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
