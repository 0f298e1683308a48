"""The predict API against its own OpenAPI document, with schemathesis: requests generated from the document
(valid ones and, in negative mode, ones that break it) are sent over HTTP through the local gateway to the
real function, and no answer may be a server error, carry a status or a content type the document does not
declare, or a body that does not match the schema declared for its status.

The document is read from ``GET /openapi.json`` on the running API, as a client reads it. Each operation
runs twice: with every parameter generated (mostly unknown models), and with the model fixed to the one in
production so that generated bodies reach the signature and the model, and with a valid body so that the
answers checked include 200s. Examples are bounded per run.

schemathesis's own pytest loader for a schema that only exists at test time
(``schemathesis.pytest.from_fixture``) reads a private attribute pytest 9 no longer has, so each operation's
Hypothesis strategy (``APIOperation.as_strategy``) is driven with ``@given`` here instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from infra.flywheel import PREDICT_ROUTES
from shared.env_names import EnvVar
from tests.fixtures.serving import MODEL, ROW, ServedChurn, served_churn

pytestmark = pytest.mark.integration

EXAMPLES = 40  # per run: 11 runs, a couple of seconds each
# Each property below runs the document's cases through the served API, as slow as the API is.
RUN = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
OPERATIONS = [(r.method, r.path) for r in PREDICT_ROUTES if r.path != "/openapi.json"]


@pytest.fixture(scope="module")
def api() -> Iterator[ServedChurn]:
    with served_churn({EnvVar.MAX_REQUEST_BYTES.value: "200000"}) as served:
        yield served


@pytest.fixture(scope="module")
def api_schema(api: ServedChurn) -> Any:
    document = api.get("/openapi.json")
    assert document.status == 200
    config = schemathesis.Config.from_dict({"base-url": api.url})
    return schemathesis.openapi.from_dict(document.body, config=config)


def test_the_document_lists_exactly_the_routed_operations(api_schema: Any) -> None:
    listed = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert listed == set(OPERATIONS)


def runs() -> list[Any]:
    """(method, path, fixed path parameters, fixed body, mode) for every run, with a readable id."""
    predict, describe = "/models/{model}/predict", "/models/{model}"
    fixed: list[tuple[str, str, dict[str, str] | None, Any]] = [
        ("POST", predict, None, NOT_SET),
        ("POST", predict, {"model": MODEL}, NOT_SET),
        ("POST", predict, {"model": MODEL}, {"instances": [ROW]}),  # answered: 200s are checked too
        ("GET", describe, None, NOT_SET),
        ("GET", describe, {"model": MODEL}, NOT_SET),
        ("GET", "/health", None, NOT_SET),
    ]
    params = []
    for method, path, parameters, body in fixed:
        # /health takes nothing, so nothing can break its schema: positive only.
        modes = [GenerationMode.POSITIVE] if path == "/health" else list(GenerationMode)
        for mode in modes:
            name = f"{method} {path}" + (f" model={MODEL}" if parameters else "")
            name += " valid-body" if body is not NOT_SET else ""
            params.append(pytest.param(method, path, parameters, body, mode, id=f"{name} {mode.value}"))
    return params


@pytest.mark.parametrize(("method", "path", "parameters", "body", "mode"), runs())
def test_no_server_error_and_every_answer_as_documented(
    api: ServedChurn,
    api_schema: Any,
    method: str,
    path: str,
    parameters: dict[str, str] | None,
    body: Any,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=parameters, body=body)
    statuses: set[int] = set()

    @RUN
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        statuses.add(case.call_and_validate(base_url=api.url, checks=CHECKS).status_code)

    check()
    answerable = parameters is not None and (method == "GET" or body is not NOT_SET)
    if mode is GenerationMode.POSITIVE and (answerable or path == "/health"):
        assert 200 in statuses, statuses  # answers, not only refusals, were held to the document


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


# The classes of hostile input the document cannot describe, laid over the document's own cases: values
# nested past the depth limit, integers past the digits limit, strings past the length limit, objects wider
# than the fields limit, a split naming a column twice; sent as any JSON media type, each claiming in the
# old header to be Flywheel's own verification.
HOSTILE_VALUES = st.one_of(
    st.integers(10, 400).map(nested),
    st.integers(30, 4000).map(lambda digits: 10**digits),
    st.integers(4000, 5000).map(lambda length: "s" * length),
    st.integers(990, 1100).map(lambda width: {f"k{i}": i for i in range(width)}),
)
JSON_MEDIA_TYPES = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "application/vnd.api+json"]
)


def hostile(case: Any, value: Any, feature: str, media_type: str, repeat: bool) -> Any:
    body: dict[str, Any] = case.body if isinstance(case.body, dict) else {}
    if repeat:
        body = {"dataframe_split": {"columns": [feature, feature], "data": [[value, value]]}}
    else:
        rows = [r for r in body.get("instances") or [] if isinstance(r, dict)] or [{}]
        body = {"instances": [{**rows[0], feature: value}, *rows[1:]]}
    case.body = body
    case.media_type = media_type
    case.headers = dict(case.headers or {})
    case.headers["x-flywheel-source"] = "verify"
    return case


def test_no_hostile_case_gets_a_server_error_or_an_undocumented_answer(
    api: ServedChurn, api_schema: Any
) -> None:
    operation = api_schema["/models/{model}/predict"]["POST"]
    cases = st.builds(
        hostile,
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters={"model": MODEL}),
        HOSTILE_VALUES,
        st.sampled_from([*ROW, "other"]),
        JSON_MEDIA_TYPES,
        st.booleans(),
    )
    statuses: set[int] = set()

    @RUN
    @given(case=cases)
    def check(case: schemathesis.Case) -> None:
        statuses.add(case.call_and_validate(base_url=api.url, checks=CHECKS).status_code)

    check()
    assert 413 in statuses and 422 in statuses, statuses
