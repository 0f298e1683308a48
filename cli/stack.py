"""Finding a stack's resources, so a user never copies resource names by hand.

``local`` (the default) is the local cloud that ``make local`` serves: its names follow the spec's convention
and its endpoint comes from ``AWS_ENDPOINT_URL``. Any other name is a Pulumi stack: its ``environment``
output is exactly what the functions receive, read with ``pulumi stack output``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.local.cloud import ACCOUNT
from infra.names import StackNames
from shared.env_names import EnvVar
from shared.errors import FlywheelError
from shared.settings import Settings

LOCAL = "local"


class StackNotFoundError(FlywheelError):
    """The named stack cannot be reached; the message says what to do."""


def settings_for(stack: str) -> Settings:
    """The settings a function of ``stack`` would see."""
    if stack == LOCAL:
        return _local_settings()
    return _pulumi_settings(stack)


def _local_settings() -> Settings:
    if EnvVar.DATA_BUCKET.value in os.environ:  # inside the local cloud's own process (the demo, tests)
        return Settings()
    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise StackNotFoundError(
            "the local cloud is not reachable: start it with `make local` and run the `export` lines "
            "it prints (AWS_ENDPOINT_URL is not set)"
        )
    config = StackConfig.from_stack_file("dev")
    spec = flywheel_stack(config)
    region = os.environ.get("AWS_DEFAULT_REGION", config.region)
    names = StackNames.for_spec(spec, LOCAL, region, ACCOUNT)
    environment = names.environment(spec, config.environment, extra=config.function_environment())
    return Settings.model_validate({**environment, "AWS_REGION": region})


def _pulumi_settings(stack: str) -> Settings:
    environment = pulumi_output(stack, "environment")
    config = StackConfig.from_stack_file(stack)
    return Settings.model_validate({**environment, "AWS_REGION": config.region})


def pulumi_output(stack: str, name: str) -> Any:
    """One output of a Pulumi stack (``pulumi stack output NAME``), decoded from JSON."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise StackNotFoundError(f"stack {stack!r} is a Pulumi stack, and the pulumi CLI is not on PATH")
    result = subprocess.run(  # noqa: S603  (a fixed executable and arguments, no shell)
        [pulumi, "stack", "output", name, "--json", "--show-secrets", "--stack", stack],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackNotFoundError(
            f"cannot read stack {stack!r}: {result.stderr.strip() or result.stdout.strip()}"
        )
    return json.loads(result.stdout)
