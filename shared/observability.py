"""The Powertools logger, tracer and metrics every function uses.

Handlers decorate in Powertools' documented order: ``logger.inject_lambda_context`` outermost, then
``tracer.capture_lambda_handler``, then ``metrics.log_metrics``. The service name and metrics namespace come
from the standard ``POWERTOOLS_*`` variables that `infra/` sets; the defaults keep local runs tidy.
"""

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "flywheel"
NAMESPACE = "Flywheel"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
