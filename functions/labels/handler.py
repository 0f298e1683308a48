"""labels: check a label file that landed under labels/<model>/; store its usable rows for the monitor, or
quarantine it with every problem (logic in `shared.monitoring.labels`)."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import S3Model
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.monitoring.labels import on_label_files
from shared.observability import logger, metrics, tracer
from shared.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=S3Model)
def handler(event: S3Model, context: LambdaContext) -> dict[str, Any]:
    outcomes = on_label_files(services(), event)
    return {"labels": [outcome.model_dump(mode="json") for outcome in outcomes]}
