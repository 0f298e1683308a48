"""The local stand-in for API Gateway's HTTP API.

It serves the spec's routes on a loopback port, turns each request into an HTTP API payload v2 event,
invokes the route's function through Lambda's ``Invoke`` (so it crosses the same seam as everything else)
and turns the function's proxy response back into HTTP, with API Gateway's own answers where it would give
them: 404 ``Not Found`` for no route, 500 ``Internal Server Error`` when the function fails, 413 for bodies
over API Gateway's 10 MB. Authorization (IAM or JWT) is the cloud's; locally every route is open.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from infra.spec import RouteSpec

MAX_BODY_BYTES = 10 * 1024 * 1024
TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/x-www-form-urlencoded",
    "application/javascript",
)

# (function name, event) -> (errored, payload)
InvokeFunction = Callable[[str, dict[str, Any]], tuple[bool, Any]]


@dataclass(frozen=True)
class _Route:
    spec: RouteSpec
    function_name: str
    pattern: re.Pattern[str]

    @classmethod
    def compile(cls, spec: RouteSpec, function_name: str) -> _Route:
        regex = ""
        for part in re.split(r"(\{[^}]+\})", spec.path):
            if part.startswith("{") and part.endswith("+}"):
                regex += f"(?P<{_group(part[1:-2])}>.+)"
            elif part.startswith("{"):
                regex += f"(?P<{_group(part[1:-1])}>[^/]+)"
            else:
                regex += re.escape(part)
        return cls(spec, function_name, re.compile(f"^{regex}$"))

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.spec.method not in ("ANY", method):
            return None
        found = self.pattern.match(path)
        if not found:
            return None
        names = re.findall(r"\{([^}+]+)\+?\}", self.spec.path)
        return {name: found.group(_group(name)) for name in names}


def _group(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name)


class LocalGateway:
    """Serves ``routes`` on ``host:port`` (port 0 picks a free one) until :meth:`stop`."""

    def __init__(
        self,
        routes: list[tuple[RouteSpec, str]],
        invoke: InvokeFunction,
        account: str,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        # Literal segments win over parameters, as in API Gateway: sort the most specific first.
        compiled = [_Route.compile(spec, fn) for spec, fn in routes]
        self._routes = sorted(compiled, key=lambda r: (r.spec.path.count("{"), r.spec.method == "ANY"))
        self._invoke = invoke
        self._account = account
        self.api_id = "local" + uuid.uuid4().hex[:6]
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The head and the body of a reply are two writes: with Nagle's algorithm on, the body waits for
            # the client's delayed ACK of the head, 40 ms on Linux, on every keep-alive request.
            disable_nagle_algorithm = True

            def do_request(self) -> None:
                gateway._handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_request  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # quiet; functions log for themselves
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-gateway", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalGateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- one request --------------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            self._reply(
                request,
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {},
                json.dumps({"message": "Request Entity Too Large"}),
            )
            return
        raw_body = request.rfile.read(length) if length else b""
        url = urlsplit(request.path)
        for route in self._routes:
            params = route.match(request.command, url.path)
            if params is not None:
                break
        else:
            self._reply(request, HTTPStatus.NOT_FOUND, {}, json.dumps({"message": "Not Found"}))
            return
        event = self._event(request, route, params, url.path, url.query, raw_body)
        errored, payload = self._invoke(route.function_name, event)
        if errored:
            self._reply(
                request,
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {},
                json.dumps({"message": "Internal Server Error"}),
            )
            return
        status, headers, body = _proxy_response(payload)
        self._reply(request, status, headers, body)

    def _event(
        self,
        request: BaseHTTPRequestHandler,
        route: _Route,
        params: dict[str, str],
        path: str,
        query: str,
        raw_body: bytes,
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
        now = datetime.now(UTC)
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.spec.route_key,
            "rawPath": path,
            "rawQueryString": query,
            "headers": headers,
            "requestContext": {
                "accountId": self._account,
                "apiId": self.api_id,
                "domainName": headers.get("host", "localhost"),
                "domainPrefix": self.api_id,
                "http": {
                    "method": request.command,
                    "path": path,
                    "protocol": request.request_version,
                    "sourceIp": request.client_address[0],
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": base64.b32encode(uuid.uuid4().bytes)[:16].decode(),
                "routeKey": route.spec.route_key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(time.time() * 1000),
            },
            "isBase64Encoded": False,
        }
        if cookies:
            event["cookies"] = cookies
        if query:
            joined: dict[str, str] = {}
            for key, value in parse_qsl(query, keep_blank_values=True):
                joined[key] = f"{joined[key]},{value}" if key in joined else value
            event["queryStringParameters"] = joined
        if params:
            event["pathParameters"] = params
        if raw_body:
            content_type = headers.get("content-type", "")
            text = content_type.startswith(TEXT_TYPES) or not content_type
            try:
                event["body"] = raw_body.decode("utf-8") if text else None
            except UnicodeDecodeError:
                event["body"] = None
            if event["body"] is None:
                event["body"] = base64.b64encode(raw_body).decode()
                event["isBase64Encoded"] = True
        return event

    @staticmethod
    def _reply(
        request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: str | bytes
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        request.send_response(status)
        lowered = {k.lower() for k in headers}
        for name, value in headers.items():
            request.send_header(name, value)
        if "content-type" not in lowered:
            request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)


def _proxy_response(payload: Any) -> tuple[int, dict[str, str], bytes]:
    """Interpret a function's answer as API Gateway does for payload v2."""
    if isinstance(payload, dict) and "statusCode" in payload:
        headers = {k: str(v) for k, v in (payload.get("headers") or {}).items()}
        for name, values in (payload.get("multiValueHeaders") or {}).items():
            headers[name] = ",".join(str(v) for v in values)
        for cookie in payload.get("cookies") or []:
            headers.setdefault("Set-Cookie", cookie)
        body = payload.get("body") or ""
        data = base64.b64decode(body) if payload.get("isBase64Encoded") else str(body).encode()
        return int(payload["statusCode"]), headers, data
    # A function that returns plain JSON gets a 200 with that JSON, as API Gateway infers.
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return HTTPStatus.OK, {"Content-Type": "application/json"}, body.encode()
