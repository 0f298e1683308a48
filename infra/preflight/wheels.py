"""Will ``pip install -r requirements.txt`` succeed inside the function image?

The image's Dockerfile installs requirements.txt (with .venv's constraints) on the base image's Python. A
package without a wheel for that platform makes pip build it from source there, or fail (onnxruntime
publishes no source at all). This asks pip itself to resolve the file for the image's platform, binary
wheels only, without installing anything: the same resolver, the same index, the platform of
``infra.image.base_image()``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.image import (
    ARCHITECTURE,
    Architecture,
    LambdaPythonImage,
    base_image,
    image_file,
    manylinux_platforms,
)

# What the image installs: the checkout's files, or the wheel's copies when Flywheel is installed.
REQUIREMENTS = image_file("requirements.txt")
CONSTRAINTS = image_file("constraints.txt")


@dataclass(frozen=True)
class Resolution:
    """What pip made of the requirements for one platform."""

    image: LambdaPythonImage
    ok: bool
    wheels: tuple[str, ...]
    error: str

    def summary(self) -> str:
        where = (
            f"{self.image.uri} ({self.image.operating_system}, glibc {'.'.join(map(str, self.image.glibc))})"
        )
        if self.ok:
            return f"requirements.txt resolves to {len(self.wheels)} binary wheels for {where}"
        return f"requirements.txt does not install on {where}:\n{self.error}"


def pip_arguments(image: LambdaPythonImage, architecture: Architecture = ARCHITECTURE) -> list[str]:
    """pip's options that stand for the image's interpreter and platform."""
    version = image.python.replace(".", "")
    arguments = ["--only-binary=:all:", "--python-version", image.python, "--implementation", "cp"]
    arguments += ["--abi", f"cp{version}"]
    for platform in manylinux_platforms(image.glibc, architecture):
        arguments += ["--platform", platform]
    return arguments


def resolve(
    image: LambdaPythonImage | None = None,
    requirements: Path = REQUIREMENTS,
    constraints: Path | None = CONSTRAINTS,
    index: Sequence[str] = (),
) -> Resolution:
    """Resolve ``requirements`` for ``image`` (the Dockerfile's by default) with pip, installing nothing.
    ``index`` replaces pip's configured index (``--no-index --find-links DIR``)."""
    image = image or base_image()
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed"]
        command += [
            "--disable-pip-version-check",
            "--report",
            str(report),
            "--target",
            str(Path(folder) / "t"),
        ]
        command += [*pip_arguments(image), *index, "-r", str(requirements)]
        if constraints is not None:
            command += ["-c", str(constraints)]
        # This interpreter's own pip, with arguments built here: nothing from outside reaches the command.
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)  # noqa: S603
        if done.returncode != 0:
            # pip's own words name the package and the versions it found.
            lines = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
            return Resolution(image, False, (), "\n".join(lines) or done.stderr.strip())
        installed = json.loads(report.read_text())["install"]
    wheels = tuple(item["download_info"]["url"].rsplit("/", 1)[-1] for item in installed)
    return Resolution(image, True, wheels, "")


def main() -> int:
    resolution = resolve()
    print(resolution.summary())
    return 0 if resolution.ok else 1


if __name__ == "__main__":
    sys.exit(main())
