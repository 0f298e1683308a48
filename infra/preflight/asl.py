"""The state machine definitions, held to the Amazon States Language by asl-validator.

asl-validator (npm, pinned in ``infra/preflight/asl/package-lock.json``, installed by ``make lint``) checks
a definition against the ASL's JSON schemas, every state's fields, JSONPath and JSONata expressions and
Resource ARNs: what CreateStateMachine would refuse as ``InvalidDefinition``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from infra.preflight.mocks import Registered
from infra.preflight.rules import Finding

VALIDATOR_DIR = Path(__file__).resolve().parent / "asl"
VALIDATOR = VALIDATOR_DIR / "node_modules" / ".bin" / "asl-validator"
SOURCE = "asl-validator"


class AslValidatorMissingError(RuntimeError):
    """asl-validator is not installed: `make lint` installs it with `npm ci`."""


def validate_definition(definition: str, where: str) -> list[Finding]:
    """asl-validator's verdict on one definition (JSON text)."""
    if not VALIDATOR.exists() or shutil.which("node") is None:
        raise AslValidatorMissingError(
            f"{VALIDATOR} (and node) are needed: run `npm ci --prefix {VALIDATOR_DIR}` or `make lint`"
        )
    with tempfile.NamedTemporaryFile("w", suffix=".asl.json") as file:
        file.write(definition)
        file.flush()
        # The pinned validator on a file written here: nothing from outside reaches the command.
        done = subprocess.run(  # noqa: S603
            [str(VALIDATOR), "--json-path", file.name],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    if done.returncode == 0:
        return []
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    problems = [line for line in lines if not line.startswith(("✕", "✓"))] or lines
    return [Finding(where, "definition", problem, SOURCE) for problem in problems]


def validate(resources: Sequence[Registered]) -> list[Finding]:
    """Every state machine of the deployment."""
    found: list[Finding] = []
    for resource in resources:
        if resource.type == "aws:sfn/stateMachine:StateMachine":
            found += validate_definition(resource.inputs["definition"], f"StateMachine {resource.name!r}")
    return found
