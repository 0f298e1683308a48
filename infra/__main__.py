"""`pulumi up` in this repository: Flywheel's stack for the selected environment (``Pulumi.<stack>.yaml``)."""

import sys
from pathlib import Path

# Pulumi runs this file from infra/; the packages it imports live in the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.program import run

run(Path(__file__).resolve().parents[1])
