"""promote: the production alias moves to the new version under the automatic policy, archiving the one it
replaces; at most once per run."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.idempotency import once_per_run
from shared.observability import logger, metrics, tracer
from shared.services import services
from shared.steps import RunState, promote_step

promote = once_per_run(promote_step)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=RunState)
def handler(event: RunState, context: LambdaContext) -> dict[str, Any]:
    return promote(event, services(), context).dump()
