"""An execution environment's end: the work a function must finish before Lambda shuts it down.

Lambda freezes an environment between requests and, one day, shuts it down without another request.
Whatever a function left for later (the predict function's queued captures) is lost then, unless the
function hears of the shutdown. Lambda tells the runtime with ``SIGTERM`` only when at least one
extension is registered (AWS's graceful-shutdown guidance: the runtime gets up to 300 ms, 500 ms with an
internal extension, before ``SIGKILL``). So :func:`graceful_shutdown`, called while the handler's module
is imported (Lambda's init phase, the only time an extension may register), registers an internal
extension through the Extensions API — with no events: an internal extension cannot subscribe to
``SHUTDOWN``, and registering is what earns the signal — and installs a ``SIGTERM`` handler that runs the
hooks given to :func:`on_shutdown`, then exits.

Outside Lambda (no ``AWS_LAMBDA_RUNTIME_API``) nothing is registered and no signal handler is installed; the
local runtime ends an environment by calling :func:`shut_down` itself, which is what the handler does.
Only the standard library is imported: this runs in every cold start of the functions that use it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Final

from shared.observability import logger

RUNTIME_API_VARIABLE: Final = "AWS_LAMBDA_RUNTIME_API"
EXTENSIONS_API: Final = "2020-01-01/extension"
EXTENSION_NAME: Final = "flywheel-shutdown"

_hooks: list[Callable[[], None]] = []
_lock = threading.Lock()


def on_shutdown(hook: Callable[[], None]) -> None:
    """Run ``hook`` when the environment shuts down."""
    with _lock:
        _hooks.append(hook)


def shut_down() -> None:
    """Run every shutdown hook once, newest first; a hook that fails is logged and the others still run.
    The environment is over: the hooks are forgotten (the local runtime goes on to start a new one)."""
    with _lock:
        hooks = list(reversed(_hooks))
        _hooks.clear()
    for hook in hooks:
        try:
            hook()
        except Exception:  # one hook's failure must not cost the others their last chance
            logger.exception("a shutdown hook failed", extra={"hook": getattr(hook, "__qualname__", "")})


def graceful_shutdown(environ: dict[str, str] | None = None) -> bool:
    """In Lambda, register the internal extension and the ``SIGTERM`` handler; elsewhere, do nothing.

    Returns whether Lambda will send ``SIGTERM``. Registration failing is logged, never raised: a function
    that cannot hear its shutdown still serves, it only loses what it had not yet delivered."""
    api = (environ if environ is not None else os.environ).get(RUNTIME_API_VARIABLE)
    if not api:
        return False
    try:
        identifier = _register(api)
    except OSError as exc:
        logger.warning("the shutdown extension could not register", extra={"error": str(exc)})
        return False
    import signal  # noqa: PLC0415

    signal.signal(signal.SIGTERM, _on_sigterm)
    # A registered extension must ask for its next event: the call blocks until the environment ends,
    # in a daemon thread that never holds the GIL while it waits.
    threading.Thread(target=_next_event, args=(api, identifier), name=EXTENSION_NAME, daemon=True).start()
    return True


def _register(api: str) -> str:
    import urllib.request  # noqa: PLC0415

    request = urllib.request.Request(
        f"http://{api}/{EXTENSIONS_API}/register",
        data=json.dumps({"events": []}).encode(),
        headers={"Lambda-Extension-Name": EXTENSION_NAME, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
        return str(response.headers["Lambda-Extension-Identifier"])


def _next_event(api: str, identifier: str) -> None:
    import urllib.request  # noqa: PLC0415
    from http.client import HTTPException  # noqa: PLC0415

    request = urllib.request.Request(
        f"http://{api}/{EXTENSIONS_API}/event/next", headers={"Lambda-Extension-Identifier": identifier}
    )
    try:
        with urllib.request.urlopen(request) as response:  # noqa: S310
            response.read()
    except (OSError, HTTPException):
        pass  # the environment is ending; SIGTERM does the work


def _on_sigterm(signum: int, frame: object) -> None:
    shut_down()
    raise SystemExit(0)
