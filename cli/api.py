"""Talking to a stack's HTTP API: ``flywheel predict`` and the ``curl`` example ``flywheel local`` prints.

The API's base URL is ``FLYWHEEL_API_URL`` for the local cloud (``make local`` prints the export) and the
``api_endpoint`` output of a Pulumi stack. A deployed API authorises with IAM, so requests to it are
signed with SigV4 for ``execute-api`` with the default credential chain; the local gateway checks nothing.
Only the standard library and botocore (already installed) are used.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from cli.stack import LOCAL, StackNotFoundError, pulumi_output
from shared.data.contract import DataContract, FeatureType
from shared.errors import FlywheelError

API_URL_VARIABLE = "FLYWHEEL_API_URL"
REQUEST_FORMATS = ("instances", "dataframe_split", "dataframe_records")
TIMEOUT_S = 30.0
_EXECUTE_API_HOST = re.compile(r"\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class RequestRefusedError(FlywheelError):
    """The API refused the request (4xx); ``problems`` lists what is wrong, by row and field."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        problems = body.get("problems")
        super().__init__(
            str(body.get("message") or f"the API refused the request ({status})"),
            problems=problems if isinstance(problems, list) else [],
        )
        self.status = status
        self.body = body


class ApiUnavailableError(FlywheelError):
    """The API failed (5xx), answered something that is not JSON, or could not be reached."""


# --- the request ----------------------------------------------------------------------------------------


def read_request(argument: str) -> dict[str, Any]:
    """The request body from ``JSON``, ``@file.json`` or ``@-`` (stdin); rows alone become ``instances``.

    A JSON list is taken as the rows, one object as a single row; a body in one of the API's formats
    (``instances``, ``dataframe_split``, ``dataframe_records``) is sent as it is. ``ValueError`` says why
    anything else is refused.
    """
    if argument.startswith("@"):
        source = argument[1:]
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text()
        except OSError as exc:
            raise ValueError(f"cannot read {source}: {exc.strerror or exc}") from exc
    else:
        text = argument
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if isinstance(document, list):
        return {"instances": document}
    if isinstance(document, dict):
        return document if any(k in document for k in REQUEST_FORMATS) else {"instances": [document]}
    raise ValueError("expected a JSON object (one row, or a request body) or a list of rows")


def predict_url(base_url: str, model: str, version: int | None = None, alias: str | None = None) -> str:
    query = {k: v for k, v in (("version", version), ("alias", alias)) if v is not None}
    url = f"{base_url.rstrip('/')}/models/{quote(model, safe='')}/predict"
    return f"{url}?{urlencode(query)}" if query else url


# --- finding and calling the API -------------------------------------------------------------------------


def api_base_url(stack: str) -> str:
    """The stack's API: ``FLYWHEEL_API_URL`` for the local cloud, the ``api_endpoint`` output otherwise."""
    if stack == LOCAL:
        url = os.environ.get(API_URL_VARIABLE)
        if not url:
            raise StackNotFoundError(
                f"the local API is not reachable: start it with `make local` and run the `export` lines it "
                f"prints ({API_URL_VARIABLE} is not set)"
            )
        return url
    url = pulumi_output(stack, "api_endpoint")
    if not isinstance(url, str) or not url:
        raise StackNotFoundError(f"stack {stack!r} has no api_endpoint output: does it deploy the API?")
    return url


def predict(
    stack: str, model: str, body: dict[str, Any], version: int | None = None, alias: str | None = None
) -> dict[str, Any]:
    """POST ``body`` to the model's predict route on ``stack``; the API's answer."""
    url = predict_url(api_base_url(stack), model, version, alias)
    return post_json(url, body, sign_for=None if stack == LOCAL else stack)


def post_json(url: str, body: dict[str, Any], sign_for: str | None = None) -> dict[str, Any]:
    """POST JSON and return the JSON answer; signed with SigV4 when ``sign_for`` names a Pulumi stack.

    A 4xx is :class:`RequestRefusedError` with the API's message and problems; a 5xx, an answer that is
    not JSON or no answer at all is :class:`ApiUnavailableError`.
    """
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if sign_for is not None:
        headers = _signed_headers(url, data, headers, _region(url, sign_for))
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310
    request.add_header("User-Agent", "flywheel-cli")
    try:
        with _opener(url).open(request, timeout=TIMEOUT_S) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        body = _json_object(raw) or {"message": raw.decode(errors="replace").strip()}
        if 400 <= exc.code < 500:
            raise RequestRefusedError(exc.code, body) from exc
        detail = f": {body['message']}" if body.get("message") else ""
        raise ApiUnavailableError(f"the API at {_origin(url)} failed ({exc.code}){detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiUnavailableError(f"cannot reach the API at {_origin(url)}: {reason}") from exc
    answer = _json_object(payload)
    if answer is None:
        raise ApiUnavailableError(f"the API at {_origin(url)} answered something that is not a JSON object")
    return answer


def _signed_headers(url: str, data: bytes, headers: dict[str, str], region: str) -> dict[str, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.session import get_session

    credentials = get_session().get_credentials()
    if credentials is None:
        raise StackNotFoundError(
            "no AWS credentials found: the API authorises with IAM (set AWS_PROFILE or AWS_ACCESS_KEY_ID)"
        )
    request = AWSRequest(method="POST", url=url, data=data, headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
    return dict(request.headers.items())


def _region(url: str, stack: str) -> str:
    match = _EXECUTE_API_HOST.search(urlsplit(url).hostname or "")
    if match:
        return match.group("region")
    from infra.config import StackConfig

    return StackConfig.from_stack_file(stack).region


def _opener(url: str) -> urllib.request.OpenerDirector:
    # A proxy from the environment must not capture requests to the local cloud.
    if urlsplit(url).hostname in _LOOPBACK:
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(payload)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# --- examples -------------------------------------------------------------------------------------------


def example_row(contract: DataContract) -> dict[str, Any]:
    """A row the contract accepts: a value inside every numeric range, the first allowed category."""
    row: dict[str, Any] = {}
    for name, feature in contract.features.items():
        if feature.type is FeatureType.BOOLEAN:
            row[name] = True
        elif feature.type is FeatureType.CATEGORICAL:
            row[name] = feature.allowed[0] if feature.allowed else "example"
        else:
            low = feature.min if feature.min is not None else 0.0
            high = feature.max if feature.max is not None else low + 10
            value = low + (high - low) / 10
            row[name] = int(value) if float(value).is_integer() else round(value, 2)
    return row


def curl_example(contract: DataContract, base_url: str = f"${API_URL_VARIABLE}") -> str:
    """A ``curl`` command asking ``contract``'s model for one prediction."""
    body = json.dumps({"instances": [example_row(contract)]})
    return (
        f"curl -s -X POST {base_url}/models/{contract.model}/predict "
        f"-H 'content-type: application/json' -d '{body}'"
    )
