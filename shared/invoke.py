"""Invoking another Lambda function and waiting for its answer: the one adapter for it.

The pipeline's Verify and PostDeployCheck send the ``predict`` function HTTP API events, as API Gateway
would; the monitor asks the ``trigger`` function for a run; the CLI asks both. Each goes through
:class:`LambdaFunction`, which says whether the function failed (Lambda's ``FunctionError``) beside the
decoded answer, so every caller decides what a failure means for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    """A function's decoded response; ``error`` is Lambda's ``FunctionError`` (``Unhandled``) or None,
    and then ``payload`` holds its ``errorType`` and ``errorMessage``."""

    payload: Any
    error: str | None = None


class LambdaFunction:
    """One function of the stack, invoked synchronously (``RequestResponse``)."""

    def __init__(self, name: str, client: Any) -> None:
        self.name = name
        self.client = client

    def invoke(self, payload: dict[str, Any]) -> Answer:
        response = self.client.invoke(FunctionName=self.name, Payload=json.dumps(payload).encode())
        return Answer(json.loads(response["Payload"].read() or b"null"), response.get("FunctionError"))
