"""`pulumi up`: Flywheel's stack for the selected environment (``Pulumi.<stack>.yaml``)."""

import sys
from pathlib import Path

# Pulumi runs this file from infra/; the packages it imports live in the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pulumi

from infra.config import StackConfig
from infra.deploy import deploy
from infra.flywheel import flywheel_stack

config = StackConfig.from_pulumi()
for name, value in deploy(flywheel_stack(config), config).exports().items():
    pulumi.export(name, value)
