"""approval: keeps the waiting run's task token on the version (AwaitApproval), or records a rejection or an
expired wait (Declined)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, tracer
from shared.pipeline.delivery import ApprovalRequest, declined_step, request_approval_step
from shared.pipeline.state import RunState
from shared.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "task_token" in event:
        return request_approval_step(ApprovalRequest.model_validate(event), services())
    return declined_step(RunState.model_validate(event), services()).dump()
