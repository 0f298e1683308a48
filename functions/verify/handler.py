"""verify: prove a version on the serving path (load, smoke through the predict function, bounded load
test) — in the pipeline after Register, or on demand (`flywheel verify MODEL:VERSION`)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, tracer
from shared.pipeline.state import RunState
from shared.pipeline.verification import VerifyRequest, predict_invoker, verify_on_request, verify_step
from shared.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    svc = services()
    if "run_id" in event:
        return verify_step(RunState.model_validate(event), svc, predict_invoker(svc)).dump()
    return verify_on_request(VerifyRequest.model_validate(event), svc, predict_invoker(svc)).model_dump(
        mode="json"
    )
