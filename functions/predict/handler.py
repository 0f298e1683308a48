"""predict: the prediction API (routes, validation, errors and capture in `shared.serving.api`).

Captures are delivered after the answer, so the environment must hear its shutdown to deliver the last
ones: registering for it happens here, at import, Lambda's init phase (`shared.lifecycle`)."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.lifecycle import graceful_shutdown
from shared.observability import logger, metrics, tracer
from shared.serving.api import answer

graceful_shutdown()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return answer(event, context)
