"""score: one Distributed Map iteration of a scoring job: one source file scored with the job's version
through the serving runtime, its predictions written and captured (logic in `shared.scoring.run`)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, tracer
from shared.scoring.job import ScoreItem
from shared.scoring.run import score_file
from shared.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return score_file(services(), ScoreItem.model_validate(event))
