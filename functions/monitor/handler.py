"""monitor: drift and live performance of every model in production (the schedule) or of one (a person),
a report, a feedback dataset, and a retraining asked of the trigger past the thresholds
(`shared.monitoring.monitor`)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.monitoring.monitor import monitor, monitor_adapters, parse_monitor_event
from shared.observability import logger, metrics, tracer
from shared.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    svc = services()
    log, runs = monitor_adapters(svc)
    outcomes = monitor(svc, log, runs, parse_monitor_event(event))
    return {"models": [outcome.model_dump(mode="json") for outcome in outcomes]}
