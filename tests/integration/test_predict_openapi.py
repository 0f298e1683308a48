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

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        statuses.add(case.call_and_validate(base_url=api.url, checks=CHECKS).status_code)

    check()
    answerable = parameters is not None and (method == "GET" or body is not NOT_SET)
    if mode is GenerationMode.POSITIVE and (answerable or path == "/health"):
        assert 200 in statuses, statuses  # answers, not only refusals, were held to the document
