"""``flywheel predict`` against a fake API on loopback: the request it sends (path, query, body, SigV4 for a
deployed stack), what it prints, and its exit codes."""

from __future__ import annotations

import json
import re
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from click.testing import CliRunner, Result

from cli.api import _region, example_row, read_request
from cli.main import main
from shared.data.contract import FeatureType, parse_contract
from tests.conftest import free_port

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
ROW = {"tenure_months": 12, "monthly_charges": 70.5, "plan": "pro", "region": None, "autopay": True}
ANSWER = {
    "model": "churn",
    "version": 3,
    "predictions": ["true", "false"],
    "probabilities": [{"false": 0.2, "true": 0.8}, {"false": 0.9, "true": 0.1}],
    "request_ids": ["req-a", "req-b"],
}


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeApi:
    url: str = ""
    status: int = 200
    answer: Any = field(default_factory=lambda: ANSWER)
    requests: list[Received] = field(default_factory=list)

    @property
    def last(self) -> Received:
        assert self.requests, "the CLI sent no request"
        return self.requests[-1]


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake.requests.append(Received(self.path, parse_qs(parts.query), headers, body))
            payload = fake.answer if isinstance(fake.answer, bytes) else json.dumps(fake.answer).encode()
            self.send_response(fake.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_port}"
    yield fake
    server.shutdown()
    server.server_close()


def flywheel(*args: str, api_url: str | None = None, stdin: str | None = None) -> Result:
    env = {"FLYWHEEL_API_URL": api_url, "FLYWHEEL_STACK": None}
    return CliRunner().invoke(main, list(args), env=env, input=stdin)


# --- the request --------------------------------------------------------------------------------------------


def test_a_row_is_posted_as_instances_to_the_models_route_unsigned_on_the_local_stack(api: FakeApi) -> None:
    result = flywheel("predict", "churn", json.dumps(ROW), api_url=api.url)

    assert result.exit_code == 0, result.output
    assert urlsplit(api.last.path).path == "/models/churn/predict"
    assert api.last.query == {}
    assert api.last.json() == {"instances": [ROW]}
    assert api.last.headers["content-type"] == "application/json"
    assert "authorization" not in api.last.headers


def test_version_and_alias_go_in_the_query(api: FakeApi) -> None:
    assert flywheel("predict", "churn", "{}", "--version", "2", api_url=api.url).exit_code == 0
    assert api.last.query == {"version": ["2"]}
    assert flywheel("predict", "churn", "{}", "--alias", "staging", api_url=api.url).exit_code == 0
    assert api.last.query == {"alias": ["staging"]}

    both = flywheel("predict", "churn", "{}", "--version", "2", "--alias", "staging", api_url=api.url)
    assert both.exit_code == 2
    assert "not both" in both.output
    assert len(api.requests) == 2


def test_rows_and_request_bodies_come_from_a_file_or_stdin(api: FakeApi, tmp_path: Path) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([ROW, ROW]))
    split = {"dataframe_split": {"columns": ["plan"], "data": [["pro"]]}}

    assert flywheel("predict", "churn", f"@{rows}", api_url=api.url).exit_code == 0
    assert api.last.json() == {"instances": [ROW, ROW]}
    assert flywheel("predict", "churn", "@-", api_url=api.url, stdin=json.dumps(split)).exit_code == 0
    assert api.last.json() == split


@pytest.mark.parametrize("argument", ["{not json", "@/nowhere/rows.json", '"a string"'])
def test_a_request_that_is_not_rows_is_refused_before_anything_is_sent(api: FakeApi, argument: str) -> None:
    result = flywheel("predict", "churn", argument, api_url=api.url)

    assert result.exit_code == 2
    assert "JSON|@FILE" in result.output
    assert api.requests == []


def test_read_request_keeps_the_apis_own_formats() -> None:
    assert read_request('{"instances": []}') == {"instances": []}
    assert read_request('{"dataframe_records": [{"a": 1}]}') == {"dataframe_records": [{"a": 1}]}
    assert read_request('{"a": 1}') == {"instances": [{"a": 1}]}


# --- what it prints -----------------------------------------------------------------------------------------


def test_predictions_print_as_a_table(api: FakeApi) -> None:
    result = flywheel("predict", "churn", json.dumps([ROW, ROW]), api_url=api.url)

    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "churn v3: 2 prediction(s)"
    assert lines[1].split() == ["ROW", "PREDICTION", "PROBABILITIES", "REQUEST_ID"]
    assert lines[2].split() == ["0", "true", "false=0.200", "true=0.800", "req-a"]
    assert lines[3].split() == ["1", "false", "false=0.900", "true=0.100", "req-b"]


def test_a_regression_answer_has_no_probabilities(api: FakeApi) -> None:
    api.answer = {
        "model": "price",
        "version": 1,
        "predictions": [41.5],
        "probabilities": None,
        "request_ids": ["r"],
    }

    result = flywheel("predict", "price", "{}", api_url=api.url)

    assert result.exit_code == 0
    assert result.stdout.splitlines()[2].split() == ["0", "41.500", "-", "r"]


def test_json_prints_the_answer_as_it_came(api: FakeApi) -> None:
    result = flywheel("predict", "churn", "{}", "--json", api_url=api.url)

    assert result.exit_code == 0
    assert json.loads(result.stdout) == ANSWER


# --- failures -----------------------------------------------------------------------------------------------


REFUSAL = {
    "message": "2 problems in the request",
    "problems": [
        {"row": 0, "field": "plan", "problem": "'gold' is not one of basic, plus, pro"},
        {"row": 1, "field": "tenure_months", "problem": "missing"},
    ],
}


def test_a_refused_request_prints_every_problem_by_row_and_field_and_exits_2(api: FakeApi) -> None:
    api.status, api.answer = 400, REFUSAL

    result = flywheel("predict", "churn", "{}", api_url=api.url)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert "refused the request (400): 2 problems in the request" in result.stderr
    lines = [line.strip().split(maxsplit=2) for line in result.stderr.splitlines()]
    assert ["0", "plan", "'gold' is not one of basic, plus, pro"] in lines
    assert ["1", "tenure_months", "missing"] in lines


def test_a_refusal_with_json_prints_the_apis_body(api: FakeApi) -> None:
    api.status, api.answer = 404, {"message": "no model 'nope'"}

    result = flywheel("predict", "nope", "{}", "--json", api_url=api.url)

    assert result.exit_code == 2
    assert json.loads(result.stdout) == {"message": "no model 'nope'"}


def test_a_refusal_that_is_not_json_is_still_shown(api: FakeApi) -> None:
    api.status, api.answer = 403, b"Forbidden"

    result = flywheel("predict", "churn", "{}", api_url=api.url)

    assert result.exit_code == 2
    assert "(403): Forbidden" in result.stderr


@pytest.mark.parametrize(
    ("status", "answer", "expected"),
    [
        (500, {"message": "Internal Server Error"}, "failed (500): Internal Server Error"),
        (502, b"<html>bad gateway</html>", "failed (502)"),
        (200, b"not json", "not a JSON object"),
    ],
)
def test_a_failing_api_exits_1_with_a_clear_message(
    api: FakeApi, status: int, answer: Any, expected: str
) -> None:
    api.status, api.answer = status, answer

    result = flywheel("predict", "churn", "{}", api_url=api.url)

    assert result.exit_code == 1
    assert expected in result.stderr
    assert "Traceback" not in result.output


def test_an_unreachable_api_exits_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = flywheel("predict", "churn", "{}", api_url=url)

    assert result.exit_code == 1
    assert f"cannot reach the API at {url}" in result.stderr


def test_the_local_stack_without_its_api_url_says_how_to_start_it() -> None:
    result = flywheel("predict", "churn", "{}")

    assert result.exit_code == 1
    assert "make local" in result.stderr
    assert "FLYWHEEL_API_URL" in result.stderr


# --- a deployed stack ---------------------------------------------------------------------------------------


@pytest.fixture
def pulumi(api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``pulumi`` on PATH that answers ``stack output api_endpoint`` with the fake API and logs its args."""
    calls = tmp_path / "pulumi-calls"
    script = tmp_path / "bin" / "pulumi"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho \'"{api.url}"\'\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token")
    return calls


def test_a_deployed_stack_is_found_through_pulumi_and_asked_with_a_sigv4_signature(
    api: FakeApi, pulumi: Path
) -> None:
    """Given a Pulumi stack whose api_endpoint is the fake API and credentials in the environment, when
    predict runs with --stack dev, then the request is signed for execute-api in the stack's region, and the
    signature verifies over exactly what arrived: method, path, query, headers and body."""
    result = CliRunner().invoke(
        main,
        ["--stack", "dev", "predict", "churn", json.dumps(ROW), "--alias", "staging"],
        env={"FLYWHEEL_API_URL": "http://127.0.0.1:1", "FLYWHEEL_STACK": None},  # ignored for a Pulumi stack
    )

    assert result.exit_code == 0, result.output
    assert pulumi.read_text().split() == [
        "stack",
        "output",
        "api_endpoint",
        "--json",
        "--show-secrets",
        "--stack",
        "dev",
    ]
    received = api.last
    authorization = received.headers["authorization"]
    scope = re.search(r"Credential=AKIDEXAMPLE/(\d{8})/us-east-1/execute-api/aws4_request", authorization)
    assert scope, authorization
    assert received.headers["x-amz-security-token"] == "session-token"
    assert received.headers["x-amz-date"].startswith(scope.group(1))

    signed = re.search(r"SignedHeaders=([^,]+)", authorization)
    assert signed
    names = signed.group(1).split(";")
    assert {"host", "x-amz-date", "content-type"} <= set(names)
    replay = AWSRequest(
        method="POST",
        url=f"{api.url}{received.path}",
        data=received.body,
        headers={name: received.headers[name] for name in names},
    )
    replay.context["timestamp"] = received.headers["x-amz-date"]
    signer = SigV4Auth(
        Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token"),
        "execute-api",
        "us-east-1",
    )
    expected = signer.signature(signer.string_to_sign(replay, signer.canonical_request(replay)), replay)
    assert authorization.endswith(f"Signature={expected}")


def test_the_signing_region_comes_from_the_execute_api_host() -> None:
    assert (
        _region("https://abc123.execute-api.eu-west-2.amazonaws.com/models/x/predict", "dev") == "eu-west-2"
    )
    assert _region("http://127.0.0.1:8787/models/x/predict", "dev") == "us-east-1"  # Pulumi.dev.yaml


def test_without_credentials_a_deployed_stack_is_not_asked(
    api: FakeApi, pulumi: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    result = CliRunner().invoke(
        main, ["--stack", "dev", "predict", "churn", "{}"], env={"FLYWHEEL_STACK": None}
    )

    assert result.exit_code == 1
    assert "no AWS credentials" in result.stderr
    assert api.requests == []


# --- the example flywheel local prints ----------------------------------------------------------------------


def test_the_example_row_is_valid_for_the_demo_contract() -> None:
    contract = parse_contract((ROOT / "examples" / "churn.yaml").read_text())

    row = example_row(contract)

    assert set(row) == set(contract.features)
    for name, feature in contract.features.items():
        value = row[name]
        if feature.type is FeatureType.CATEGORICAL:
            assert feature.allowed is None or value in feature.allowed
        elif feature.type is FeatureType.BOOLEAN:
            assert isinstance(value, bool)
        else:
            assert isinstance(value, int | float) and not isinstance(value, bool)
            assert feature.min is None or value >= feature.min
            assert feature.max is None or value <= feature.max
