"""trigger: every reason to start a run — a new file (S3), the schedule (EventBridge), a person or the
monitor (direct invocation) — named deterministically so a duplicated event starts nothing twice."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, tracer
from shared.pipeline.trigger import parse_trigger_event, trigger
from shared.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outcomes = trigger(services(), parse_trigger_event(event))
    return {"runs": [outcome.model_dump(mode="json") for outcome in outcomes]}
