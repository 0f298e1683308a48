"""train: fit the contract's pipeline on the training window and store the model, holdout and profile."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, tracer
from shared.pipeline.state import RunState
from shared.pipeline.steps import train_step
from shared.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = RunState.model_validate(event)
    return train_step(state, services()).dump()
