"""Starting and following pipeline executions: the port, and its Step Functions adapter.

An execution's name is the run id. Step Functions refuses a second execution with the same name
(``ExecutionAlreadyExists``), which is how a duplicated event is recognised: :meth:`Workflow.start` returns
``False`` for it instead of raising.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from shared.aws import AwsClients
from shared.errors import NotFoundError, TransientError

THROTTLED = frozenset(
    {"ThrottlingException", "ServiceUnavailable", "InternalServerError", "ServiceQuotaExceededException"}
)


@dataclass(frozen=True)
class ExecutionStatus:
    name: str
    status: str  # RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    error: str | None = None
    cause: str | None = None


class Workflow(Protocol):
    def start(self, name: str, payload: dict[str, Any]) -> bool:
        """True when the execution runs: started now, or already running with the same input (Step
        Functions answers both alike); False when the name is refused (it ended, or ran with other input)."""
        ...

    def status(self, name: str) -> ExecutionStatus: ...


class StepFunctionsWorkflow:
    """:class:`Workflow` on AWS Step Functions (or moto's interpreter)."""

    def __init__(self, state_machine_arn: str, client: Any = None) -> None:
        self.state_machine_arn = state_machine_arn
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = AwsClients().client("stepfunctions")
        return self._client

    def execution_arn(self, name: str) -> str:
        prefix, _, machine = self.state_machine_arn.partition(":stateMachine:")
        return f"{prefix}:execution:{machine}:{name}"

    def start(self, name: str, payload: dict[str, Any]) -> bool:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            self.client.start_execution(
                stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(payload)
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ExecutionAlreadyExists":
                return False
            if code in THROTTLED:
                raise TransientError(f"Step Functions {code} starting {name}") from exc
            raise
        return True

    def status(self, name: str) -> ExecutionStatus:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            described = self.client.describe_execution(executionArn=self.execution_arn(name))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                raise NotFoundError(f"no execution named {name!r}") from exc
            raise
        return ExecutionStatus(name, described["status"], described.get("error"), described.get("cause"))


class InMemoryWorkflow:
    """Records starts; answers duplicate names like Step Functions does while the execution runs (every
    execution here runs forever). For the domain's unit tests."""

    def __init__(self) -> None:
        self.started: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def start(self, name: str, payload: dict[str, Any]) -> bool:
        # As Step Functions: the same name and input while running answers as a start; else refused.
        with self._lock:
            if name in self.started:
                return self.started[name] == payload
            self.started[name] = payload
            return True

    def status(self, name: str) -> ExecutionStatus:
        if name not in self.started:
            raise NotFoundError(f"no execution named {name!r}")
        return ExecutionStatus(name, "RUNNING")
