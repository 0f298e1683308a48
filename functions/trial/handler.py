"""trial: score one experiment trial by cross-validation, stopped at its time budget, and record it.

The Map state runs a batch of trials at once. In AWS each runs in its own execution environment; the local
cloud runs them as threads of one process, so this module keeps no per-request state at module level: the
request id goes on the log records of this thread only, and metrics are flushed as each is added.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, tracer
from shared.pipeline.experiment import trial_step
from shared.services import services

# Read by the local runtime: concurrent requests may share this module (see the docstring).
SHARES_NO_REQUEST_STATE = True


@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.thread_safe_append_keys(
        function_request_id=context.aws_request_id,
        experiment=event.get("experiment_id"),
        trial=(event.get("trial") or {}).get("number"),
    )
    try:
        return trial_step(event, services())
    finally:
        logger.thread_safe_clear_keys()
