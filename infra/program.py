"""The Pulumi program as a function, so that any Pulumi project can run it: this repository's
``infra/__main__.py`` and a team's own repository, whose ``__main__.py`` is ``from infra.program import run;
run()`` with Flywheel installed as a package.

What differs between the two is only where the model projects are (``flywheel:modelsDir``, relative to the
project's directory) and therefore which build context the function image gets (``infra.image``).
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from infra.config import StackConfig
from infra.deploy import deploy
from infra.flywheel import flywheel_stack
from infra.image import image_context


def project_directory() -> Path:
    """The directory holding ``Pulumi.yaml``: Pulumi says so; without the CLI (tests), the working one."""
    root = pulumi.get_root_directory()
    return Path(root) if root else Path.cwd()


def run(project_dir: Path | None = None) -> None:
    """Declare Flywheel's stack for the selected environment (``Pulumi.<stack>.yaml`` of the project in
    ``project_dir``, by default the one Pulumi runs) and export its outputs."""
    config = StackConfig.from_pulumi()
    image = image_context(project_dir or project_directory(), config.models_dir)
    for name, value in deploy(flywheel_stack(config), config, image).exports().items():
        pulumi.export(name, value)
