"""An environment's shutdown: the internal extension that earns the runtime Lambda's SIGTERM, registered
through the Extensions API only in Lambda, and the hooks SIGTERM (or the local runtime) runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shared import lifecycle

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


class ExtensionsApi(BaseHTTPRequestHandler):
    """Lambda's Extensions API as far as registration goes: records what it is sent."""

    registered: list[dict[str, Any]] = []
    polled = threading.Event()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ExtensionsApi.registered.append(
            {"path": self.path, "name": self.headers["Lambda-Extension-Name"], **body}
        )
        self.send_response(200)
        self.send_header("Lambda-Extension-Identifier", "ext-1")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self) -> None:
        assert self.headers["Lambda-Extension-Identifier"] == "ext-1"
        ExtensionsApi.polled.set()  # and never answers: the environment does not end in this test

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def runtime_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ExtensionsApi)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_outside_lambda_nothing_is_registered() -> None:
    assert lifecycle.graceful_shutdown({}) is False
    assert signal.getsignal(signal.SIGTERM) is not lifecycle._on_sigterm


def test_hooks_run_newest_first_once_and_a_failing_one_spares_the_others() -> None:
    ran: list[str] = []

    def failing() -> None:
        ran.append("failing")
        raise RuntimeError("boom")

    lifecycle.on_shutdown(lambda: ran.append("first"))
    lifecycle.on_shutdown(failing)
    lifecycle.on_shutdown(lambda: ran.append("last"))

    lifecycle.shut_down()
    lifecycle.shut_down()

    assert ran == ["last", "failing", "first"]


def test_in_lambda_sigterm_runs_the_hooks_after_the_extension_registered(runtime_api: str) -> None:
    """Given AWS_LAMBDA_RUNTIME_API, when a function process registers and is sent SIGTERM, then it had
    registered an internal extension for no events and polled for its next event, and SIGTERM ran its
    hooks and ended the process cleanly."""
    child = textwrap.dedent(
        """
        import os, sys, time
        from shared import lifecycle
        lifecycle.on_shutdown(lambda: print("delivered", flush=True))
        print("registered" if lifecycle.graceful_shutdown() else "not registered", flush=True)
        time.sleep(30)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), lifecycle.RUNTIME_API_VARIABLE: runtime_api}
    process = subprocess.Popen(
        [sys.executable, "-c", child], env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "registered"
    assert ExtensionsApi.polled.wait(10)

    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=10)

    assert out.strip() == "delivered"
    assert process.returncode == 0
    assert ExtensionsApi.registered[-1] == {
        "path": "/2020-01-01/extension/register",
        "name": lifecycle.EXTENSION_NAME,
        "events": [],
    }


def test_a_registration_that_fails_is_logged_and_serving_goes_on() -> None:
    assert lifecycle.graceful_shutdown({lifecycle.RUNTIME_API_VARIABLE: "127.0.0.1:9"}) is False
