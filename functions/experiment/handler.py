"""experiment: tell Optuna how the last batch of trials scored and ask the next, or choose the winner."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, tracer
from shared.pipeline.experiment import experiment_step
from shared.pipeline.state import RunState
from shared.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = RunState.model_validate(event)
    return experiment_step(state, services()).dump()
