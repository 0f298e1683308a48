"""features: ingest a feature-source file that landed under feature-sources/<view>/ — validated against its
view (quarantined with every problem when it breaks it), appended to the offline store, its latest values
materialised into the online table (logic in `shared.featurestore`)."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import S3Model
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.featurestore.arrivals import on_feature_files, online_store
from shared.observability import logger, metrics, tracer
from shared.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=S3Model)
def handler(event: S3Model, context: LambdaContext) -> dict[str, Any]:
    svc = services()
    results = on_feature_files(svc, online_store(svc), event)
    return {"files": [result.model_dump(mode="json") for result in results]}
