"""score-start: start a batch scoring job, for a request file dropped under score-requests/<model>/ (S3)
or a person's request (``flywheel score``, invoked directly); logic in `shared.scoring.run`."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3Model
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, tracer
from shared.scoring.job import ScoreRequest
from shared.scoring.run import on_request_files, start_job
from shared.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" in event:
        outcomes = on_request_files(services(), parse(event=event, model=S3Model))
        return {"jobs": [o if isinstance(o, dict) else o.model_dump(mode="json") for o in outcomes]}
    started = start_job(services(), ScoreRequest.model_validate(event))
    return {"jobs": [started.model_dump(mode="json")]}
