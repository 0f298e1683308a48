"""promote: under the environment's policy, the verified version moves to staging (to wait for approval) or
to production, archiving the one it replaces; each move at most once per run."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, tracer
from shared.pipeline.delivery import promote_step
from shared.pipeline.idempotency import once_per_run
from shared.pipeline.state import RunState
from shared.services import services

# The same run promotes twice under the approval policy: before the approval (staging) and after it.
promote = once_per_run(promote_step, key="[run_id, version, approval]")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = RunState.model_validate(event)
    return promote(state, services(), context).dump()
