"""The one seam between moto and Flywheel: an in-process Lambda runtime.

moto runs a function's code by starting a Docker container in ``LambdaFunction._invoke_lambda``. There is no
Docker here, so :class:`LocalRuntime` replaces exactly that method. Everything around it stays moto's own:
``Invoke`` requests, S3 notifications and the Step Functions interpreter all reach the function through it.

The runtime behaves like Lambda's:

- it imports the handler by its dotted path (``functions.trigger.handler.handler``), once per process;
- an execution environment serves one request at a time: concurrent invocations of one handler queue for
  it (Lambda would start more environments; one process cannot hold two copies of a module's state),
  unless the handler's module declares ``SHARES_NO_REQUEST_STATE = True`` (it keeps no request's state at
  module level), which lets concurrent requests run at once as they would in separate environments;
- it passes a context with ``aws_request_id``, ``function_name``, ``memory_limit_in_mb``,
  ``invoked_function_arn`` and ``get_remaining_time_in_millis()`` counting down from the function's timeout;
- it stops waiting when the timeout passes and reports ``Sandbox.Timedout`` as Lambda does (Python cannot
  kill a thread, so the abandoned call runs on in the background and its result is discarded);
- an exception comes back in Lambda's shape (``errorType`` = the class name, ``errorMessage``,
  ``stackTrace``), so Step Functions ``Retry``/``Catch`` match on class names exactly as in AWS;
- :meth:`LocalRuntime.shut_down` ends the environments as Lambda does when it reclaims them: it waits for
  the requests in flight, then does what Lambda's ``SIGTERM`` makes a function do — runs the hooks the
  function gave :mod:`shared.lifecycle` (the predict function delivers its queued captures) — since a
  signal cannot end one environment of a process that holds them all; the next request starts a new
  environment (the warm state is forgotten, as a fresh one would not have it);
- S3 events get the fields AWS sends and moto leaves out (principal ids, request ids, ``versionId``,
  ``sequencer``, keys encoded with ``/`` kept), so Powertools' S3 model parses them.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_plus

from moto.awslambda.models import LambdaFunction

from infra.local.memory import freeze_long_lived

Handler = Callable[[Any, Any], Any]
SEAM = "_invoke_lambda"
# How long a request waits for the function's one execution environment: Lambda's longest timeout.
QUEUE_LIMIT_S = 900.0


@dataclass
class LambdaContext:
    """What Lambda passes as ``context``: the attributes Powertools and handlers read."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float = field(repr=False)
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass
class Invocation:
    """One call the runtime made, kept for tests and the local console."""

    function_name: str
    request_id: str
    event: Any
    error_type: str | None
    duration_ms: float


class LocalRuntime:
    """Runs Lambda handlers in this process in place of moto's Docker runner."""

    def __init__(
        self,
        environment: Mapping[str, str] | None = None,
        s3_versions: Callable[[str, str, str], str | None] | None = None,
    ) -> None:
        self._environment = dict(environment or {})
        self._s3_versions = s3_versions
        self._handlers: dict[str, Handler] = {}
        self._import_lock = threading.Lock()
        self._environments: dict[str, threading.Lock] = {}
        self._original: Callable[..., Any] | None = None
        self.invocations: list[Invocation] = []

    # --- installing the seam ----------------------------------------------------------------------------

    @contextmanager
    def installed(self) -> Iterator[LocalRuntime]:
        """Replace moto's Docker runner with this runtime for the duration of the block."""
        original = getattr(LambdaFunction, SEAM, None)
        if original is None:
            raise RuntimeError(
                f"moto's LambdaFunction has no {SEAM!r}: the seam moved; "
                "pin moto or update infra/local/runtime.py"
            )
        runtime = self

        def invoke_in_process(function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
            return runtime.invoke(function, event)

        setattr(LambdaFunction, SEAM, invoke_in_process)
        try:
            yield self
        finally:
            setattr(LambdaFunction, SEAM, original)

    # --- one invocation ---------------------------------------------------------------------------------

    def invoke(self, function: Any, event: Any) -> tuple[str, bool, str]:
        """Run ``function``'s handler on ``event``; return (payload JSON, errored, logs) as moto expects."""
        request_id = str(uuid.uuid4())
        timeout = float(function.timeout)
        started = time.monotonic()
        context = LambdaContext(
            function_name=function.function_name,
            function_version=str(function.version),
            invoked_function_arn=function.function_arn,
            memory_limit_in_mb=int(function.memory_size),
            aws_request_id=request_id,
            log_group_name=f"/aws/lambda/{function.function_name}",
            log_stream_name=f"{time.strftime('%Y/%m/%d')}/[$LATEST]{request_id.replace('-', '')}",
            deadline=started + timeout,
        )
        self._apply_environment(function.environment_vars or {})
        event = self._complete_s3_event(event)
        payload, error_type = self._run(function.handler, event, context, timeout)
        self.invocations.append(
            Invocation(
                function.function_name, request_id, event, error_type, (time.monotonic() - started) * 1000
            )
        )
        return payload, error_type is not None, ""

    def _run(
        self, handler_path: str, event: Any, context: LambdaContext, timeout: float
    ) -> tuple[str, str | None]:
        try:
            handler = self._handler(handler_path)
        except Exception as exc:  # Lambda reports import failures as Runtime.ImportModuleError
            module = handler_path.rsplit(".", 1)[0]
            return self._error(
                "Runtime.ImportModuleError", f"Unable to import module '{module}': {exc}", context, exc
            )

        outcome: Future[Any] = Future()
        started = threading.Event()
        environment = self._environment_lock(handler_path, handler)

        def call() -> None:
            # One invocation at a time per execution environment, as in Lambda: a handler's module state
            # (Powertools' resolver keeps the current route on the app) is never shared by two requests.
            with environment:
                started.set()
                try:
                    outcome.set_result(handler(event, context))
                except BaseException as exc:  # the handler's failure is the function's answer
                    outcome.set_exception(exc)

        threading.Thread(
            target=call, name=f"lambda-{context.function_name}-{context.aws_request_id[:8]}", daemon=True
        ).start()
        # The timeout counts from when the handler starts, as Lambda's does (not while a request queues).
        if not started.wait(timeout=QUEUE_LIMIT_S):
            message = (
                f"RequestId: {context.aws_request_id} Error: no execution environment in {QUEUE_LIMIT_S}s"
            )
            return self._error("Runtime.Unavailable", message, context, None)
        try:
            result = outcome.result(timeout=timeout)
        except TimeoutError:
            message = f"RequestId: {context.aws_request_id} Error: Task timed out after {timeout:.2f} seconds"
            return self._error("Sandbox.Timedout", message, context, None)
        except BaseException as exc:
            return self._error(type(exc).__name__, str(exc), context, exc)
        try:
            return json.dumps(result), None
        except (TypeError, ValueError) as exc:
            return self._error("Runtime.MarshalError", f"Unable to marshal response: {exc}", context, exc)

    def _environment_lock(self, path: str, handler: Handler) -> AbstractContextManager[Any]:
        module = sys.modules.get(getattr(handler, "__module__", ""))
        if getattr(module, "SHARES_NO_REQUEST_STATE", False) is True:
            return nullcontext()
        with self._import_lock:
            return self._environments.setdefault(path, threading.Lock())

    def _handler(self, path: str) -> Handler:
        with self._import_lock:
            if path not in self._handlers:
                module_name, _, attribute = path.rpartition(".")
                module = importlib.import_module(module_name)
                handler = getattr(module, attribute)
                if not callable(handler):
                    raise TypeError(f"{path} is not callable")
                self._handlers[path] = handler
                freeze_long_lived()  # the function's libraries, imported: they live as long as the cloud
            return self._handlers[path]

    def shut_down(self) -> None:
        """End every execution environment as Lambda's shutdown phase does: after the requests in flight,
        the functions' shutdown hooks run (what their ``SIGTERM`` handler runs in Lambda)."""
        from shared.lifecycle import shut_down  # noqa: PLC0415  (the functions' side of the seam)
        from shared.settings import forget_warm_state  # noqa: PLC0415

        with self._import_lock:
            environments = list(self._environments.values())
        for environment in environments:
            with environment:  # the request an environment is serving finishes first
                pass
        shut_down()
        forget_warm_state()

    @staticmethod
    def _error(
        error_type: str, message: str, context: LambdaContext, exc: BaseException | None
    ) -> tuple[str, str]:
        stack = traceback.format_tb(exc.__traceback__) if exc is not None and exc.__traceback__ else []
        body = {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": context.aws_request_id,
            "stackTrace": [line.rstrip() for line in stack],
        }
        return json.dumps(body), error_type

    # --- making moto's side look like AWS's ---------------------------------------------------------------

    def _apply_environment(self, function_environment: Mapping[str, str]) -> None:
        # Every function of a stack gets the same variables (infra/names.py), so one process can hold them.
        wanted = {**function_environment, **self._environment}
        for key, value in wanted.items():
            if os.environ.get(key) != value:
                os.environ[key] = value

    def _complete_s3_event(self, event: Any) -> Any:
        if not (isinstance(event, dict) and isinstance(event.get("Records"), list)):
            return event
        for record in event["Records"]:
            if not (isinstance(record, dict) and record.get("eventSource") == "aws:s3"):
                continue
            s3 = record.setdefault("s3", {})
            bucket, obj = s3.setdefault("bucket", {}), s3.setdefault("object", {})
            key = unquote_plus(obj.get("key", ""))
            # AWS encodes keys as a form value but leaves '/' alone ("incoming/my+file.csv").
            obj["key"] = quote(key, safe="/~").replace("%20", "+")
            obj.setdefault("sequencer", f"{time.time_ns():X}")
            if self._s3_versions is not None and "versionId" not in obj:
                version = self._s3_versions(bucket.get("name", ""), key, obj.get("eTag", ""))
                if version and version != "null":
                    obj["versionId"] = version
            bucket.setdefault("ownerIdentity", {"principalId": "A1LOCALOWNER"})
            record.setdefault("userIdentity", {"principalId": "AWS:LOCALPRINCIPAL"})
            record.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
            record.setdefault(
                "responseElements",
                {"x-amz-request-id": uuid.uuid4().hex[:16].upper(), "x-amz-id-2": uuid.uuid4().hex},
            )
        return event
