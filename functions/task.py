"""A step as a container task: ``python -m functions.task STEP`` (the ECS task's command override).

The same image and step code as the step's Lambda function; the state comes from and goes to the objects
named by ``FLYWHEEL_TASK_INPUT`` and ``FLYWHEEL_TASK_OUTPUT`` (the task's container overrides). A failed
step exits 1 after logging the error: ECS reports the exit code and Step Functions fails the state.
"""

from __future__ import annotations

import os
import sys

from shared.env_names import EnvVar
from shared.observability import logger
from shared.pipeline.compute import run_step_task
from shared.services import services


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m functions.task STEP", file=sys.stderr)
        return 2
    step = argv[0]
    try:
        run_step_task(
            step, os.environ[EnvVar.TASK_INPUT.value], os.environ[EnvVar.TASK_OUTPUT.value], services()
        )
    except Exception as exc:
        logger.exception("task step failed", extra={"step": step, "error": type(exc).__name__})
        return 1
    logger.info("task step finished", extra={"step": step})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
