"""register: the candidate as a new version — in development when it passed the gate, rejected with the
reasons when not; at most once per run."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, tracer
from shared.pipeline.idempotency import once_per_run
from shared.pipeline.state import RunState
from shared.pipeline.steps import register_step
from shared.services import services

register = once_per_run(register_step)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = RunState.model_validate(event)
    return register(state, services(), context).dump()
