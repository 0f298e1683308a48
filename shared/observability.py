"""The Powertools logger, tracer and metrics every function uses.

Handlers decorate in Powertools' documented order: ``logger.inject_lambda_context`` outermost, then
``tracer.capture_lambda_handler``, then ``metrics.log_metrics``. The service name and metrics namespace come
from the standard ``POWERTOOLS_*`` variables that `infra/` sets; the defaults keep local runs tidy.

The tracer is Powertools' :class:`Tracer` only where tracing is on (in Lambda, unless
``POWERTOOLS_TRACE_DISABLED``): making a Tracer imports the X-Ray SDK, about a tenth of a second of every
cold start, even when it then traces nothing. Where tracing is off — the local cloud, tests, benchmarks, a
stack that turns it off — the handler runs undecorated, which is what a disabled Tracer amounts to.
"""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "flywheel"
NAMESPACE = "Flywheel"


class Untraced:
    """A tracer for where tracing is off: ``capture_lambda_handler`` hands the handler back unchanged."""

    def capture_lambda_handler(
        self,
        lambda_handler: Callable[..., Any] | None = None,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> Callable[..., Any]:
        if lambda_handler is None:  # called with options: @tracer.capture_lambda_handler(capture_error=...)
            return self.capture_lambda_handler
        return lambda_handler


def make_tracer() -> Tracer | Untraced:
    """Powertools' Tracer where it would trace; :class:`Untraced` where Powertools would disable it."""
    if Tracer._is_tracer_disabled():  # Powertools' own rule, so the two always agree (a test pins it)
        return Untraced()
    return Tracer(service=SERVICE)


logger = Logger(service=SERVICE)
tracer = make_tracer()
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
