"""The wheel carries what the function image is built from beside the packages it copies.

A team that installs Flywheel and deploys from its own repository builds the image from Flywheel's
Dockerfile, ``.dockerignore`` and pinned requirements (``infra.image`` stages them with the team's
projects). Those files live at the repository root, where Docker and `make` read them; rather than keep a
second copy to edit, building the wheel copies them into ``infra/image_files/``. Everything else is in
``pyproject.toml``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# infra.image.IMAGE_FILES: not imported, since building must not need the project's dependencies.
IMAGE_FILES = ("Dockerfile", ".dockerignore", "requirements.txt", "constraints.txt")


class BuildWithImageFiles(build_py):
    """``build_py``, then the root's image files into the built ``infra/image_files/``."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "infra" / "image_files"
        target.mkdir(parents=True, exist_ok=True)
        for name in IMAGE_FILES:
            shutil.copyfile(ROOT / name, target / name)


setup(cmdclass={"build_py": BuildWithImageFiles})
