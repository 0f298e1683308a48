"""compute: place Validate or Train (Lambda or a Fargate task), or read back the state a task wrote."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, tracer
from shared.pipeline.compute import PlanRequest, collect_step, compute_request, plan_step
from shared.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = compute_request(event)
    if isinstance(request, PlanRequest):
        return plan_step(request, services()).dump()
    return collect_step(request, services()).dump()
