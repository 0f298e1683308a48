"""post-deploy-check: after a promotion, a smoke request through the live route; if production does not
answer well, the previous version is put back and the run fails with why."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, tracer
from shared.pipeline.state import RunState
from shared.pipeline.verification import post_deploy_check_step, predict_invoker
from shared.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = RunState.model_validate(event)
    svc = services()
    return post_deploy_check_step(state, svc, predict_invoker(svc)).dump()
