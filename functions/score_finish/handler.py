"""score-finish: write a scoring job's manifest from its files' outcomes and record the job in lineage
(logic in `shared.scoring.run`)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, tracer
from shared.scoring.job import ScoreJob
from shared.scoring.run import finish_job
from shared.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    manifest = finish_job(services(), ScoreJob.model_validate(event["job"]), event.get("items") or [])
    return {
        "job_id": manifest.job_id,
        "files_scored": manifest.files_scored,
        "files_failed": manifest.files_failed,
        "rows_scored": manifest.rows_scored,
        "rows_failed": manifest.rows_failed,
    }
