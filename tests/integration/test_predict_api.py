"""The predict API as its clients meet it: Flywheel's real stack on the local cloud, a churn model trained
through the pipeline and promoted, requests over HTTP through the gateway (and, for the event shapes and the
property-based tests, straight into the Lambda handler).

What it proves: every answer and every error class with its status and message; a promotion and a rollback
served without a redeploy; a tampered artifact refused and never loaded; captures in ``captures/`` that
carry the request ids returned, and a capture failure that never fails a request; API Gateway HTTP API and
Lambda function URL events both answered; no request body, however odd, gets a 5xx.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate as validate_openapi

import shared.serving.api as prediction_api
from functions.predict.handler import handler
from infra.flywheel import PREDICT_ROUTES
from infra.local.runtime import LambdaContext
from shared.env_names import EnvVar
from shared.hashing import sha256_hex
from shared.registry import ArtifactRef, NewModelVersion
from shared.serving import runtime
from shared.serving.capture import INTERNAL_SOURCE_FIELD, BackgroundCaptureSink
from shared.settings import forget_warm_state
from shared.storage import ObjectRef
from tests.fixtures.services import churn_contract, put_churn_contract
from tests.fixtures.serving import FEATURES, MODEL, ROW, Answer, ServedChurn, request_rows, served_churn

pytestmark = pytest.mark.integration

REFRESH_SECONDS = 1.0
BODY_LIMIT = 200_000  # bytes; the default (6 MB) is Lambda's own payload limit, slow to send in a test
ENVIRONMENT = {
    EnvVar.ALIAS_REFRESH_SECONDS.value: str(REFRESH_SECONDS),
    EnvVar.MAX_REQUEST_BYTES.value: str(BODY_LIMIT),
}
CHALLENGER = "challenger"
IDLE_MODEL = "churn-idle"  # a contract and a registered version, never promoted
TAMPERED_MODEL = "churn-tampered"  # its one version's ONNX object is replaced after registration


@pytest.fixture(scope="module")
def api() -> Iterator[ServedChurn]:
    with served_churn(ENVIRONMENT) as served:
        yield served


def copy_of_v1(api: ServedChurn, run_id: str, *, onnx: ArtifactRef | None = None, model: str = MODEL) -> int:
    """Register a new version with v1's artifacts (or another ONNX artifact): a version a test can tell
    apart by its number, without training again."""
    v1 = api.svc.registry.get_model_version(MODEL, 1)
    spec = NewModelVersion.model_validate(v1.model_dump(include=set(NewModelVersion.model_fields)))
    if onnx is not None:
        spec = spec.model_copy(update={"onnx_artifact": onnx})
    return api.svc.registry.create_model_version(model, spec, run_id=run_id, registered_by="test").version


@pytest.fixture(scope="module")
def challenger(api: ServedChurn) -> int:
    """v2, a copy of v1 behind the ``challenger`` alias, not in production."""
    version = copy_of_v1(api, "manual-challenger")
    api.svc.registry.set_alias(MODEL, CHALLENGER, version, actor="test", reason="a challenger to try")
    return version


def problems(answer: Answer) -> list[tuple[int | None, str | None]]:
    return [(p["row"], p["field"]) for p in answer.body["problems"]]


# --- answers ------------------------------------------------------------------------------------------------


def test_instances_are_answered_with_predictions_probabilities_version_and_request_ids(
    api: ServedChurn,
) -> None:
    """Given churn v1 in production, when a client posts three instances, then it gets 200 with one label
    and one probability per class for each row, the model, version and flavour, and a distinct request id
    per row."""
    rows = request_rows(3)

    answer = api.predict({"instances": rows})

    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "application/json"
    body = answer.body
    assert (body["model"], body["version"], body["flavor"]) == (MODEL, 1, "onnx")
    assert len(body["predictions"]) == len(body["probabilities"]) == len(body["request_ids"]) == 3
    for label, probabilities in zip(body["predictions"], body["probabilities"], strict=True):
        assert set(probabilities) == {"false", "true"}
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert label == max(probabilities, key=probabilities.__getitem__)
    assert len(set(body["request_ids"])) == 3


def test_mlflow_dataframe_split_and_records_answer_exactly_as_instances(api: ServedChurn) -> None:
    rows = request_rows(4, seed=11)
    columns = list(rows[0])
    split = {"dataframe_split": {"columns": columns, "data": [[row[c] for c in columns] for row in rows]}}

    answers = [api.predict(body) for body in ({"instances": rows}, {"dataframe_records": rows}, split)]

    assert [a.status for a in answers] == [200, 200, 200], [a.body for a in answers]
    for answer in answers[1:]:
        assert answer.body["predictions"] == answers[0].body["predictions"]
        assert answer.body["probabilities"] == answers[0].body["probabilities"]


def test_a_pinned_version_and_an_alias_are_served_instead_of_production(
    api: ServedChurn, challenger: int
) -> None:
    assert api.production() == 1

    pinned = api.predict({"instances": [ROW]}, f"?version={challenger}")
    by_alias = api.predict({"instances": [ROW]}, f"?alias={CHALLENGER}")
    default = api.predict({"instances": [ROW]})

    assert (pinned.status, pinned.body["version"]) == (200, challenger)
    assert (by_alias.status, by_alias.body["version"]) == (200, challenger)
    assert (default.status, default.body["version"]) == (200, 1)
    assert pinned.body["probabilities"] == default.body["probabilities"]  # the same artifacts


def test_get_model_describes_the_production_version(api: ServedChurn) -> None:
    answer = api.get(f"/models/{MODEL}")

    assert answer.status == 200, answer.body
    info = answer.body
    assert (info["model"], info["alias"], info["version"]) == (MODEL, "production", 1)
    assert (info["flavor"], info["stage"]) == ("onnx", "production")
    assert list(info["signature"]["features"]) == list(FEATURES)
    assert info["signature"]["classes"] == ["false", "true"]
    assert info["metrics"]["roc_auc"] > 0.7
    assert info["registered_at"].endswith("+00:00")


def test_health_answers_ok(api: ServedChurn) -> None:
    answer = api.get("/health")

    assert (answer.status, answer.body) == (200, {"status": "ok"})


def test_the_openapi_document_is_valid_and_describes_every_route_the_stack_declares(api: ServedChurn) -> None:
    """Given the stack's routes, when /openapi.json is fetched, then it is a valid OpenAPI 3 document with
    each routed operation (the document itself aside), the predict body and every declared answer."""
    answer = api.get("/openapi.json")

    assert answer.status == 200
    document = answer.body
    validate_openapi(document)
    assert document["openapi"].startswith("3.")
    declared = {
        (route.method.lower(), route.path) for route in PREDICT_ROUTES if route.path != "/openapi.json"
    }
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert documented == declared
    predict = document["paths"]["/models/{model}/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictRequest"
    }
    ok = predict["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/PredictResponse"}
    assert set(predict["responses"]) == {"200", "400", "404", "413", "415", "422", "503"}
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for status in ("400", "404", "413", "415", "422", "503"):
        assert predict["responses"][status]["content"]["application/json"]["schema"] == error
    describe = document["paths"]["/models/{model}"]["get"]["responses"]
    assert describe["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ModelInfo"
    }
    assert describe["422"]["content"]["application/json"]["schema"] == error


# --- every error class ----------------------------------------------------------------------------------


def test_a_body_that_is_not_json_is_a_400(api: ServedChurn) -> None:
    answer = api.request("POST", f"/models/{MODEL}/predict", raw=b'{"instances": [{')

    assert answer.status == 400
    assert answer.body == {"message": "the request body is not valid JSON", "problems": []}


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
def test_a_body_sent_as_another_media_type_is_a_415(api: ServedChurn, content_type: str) -> None:
    """curl -d sends a form by default: the client is told to send JSON, not shown a form parsed as one."""
    body = json.dumps({"instances": [ROW]}).encode()

    answer = api.request("POST", f"/models/{MODEL}/predict", raw=body, content_type=content_type)
    charset = api.request(
        "POST", f"/models/{MODEL}/predict", raw=body, content_type="application/json; charset=utf-8"
    )

    assert answer.status == 415
    assert answer.body == {
        "message": f"send the body as JSON with Content-Type: application/json (not {content_type})",
        "problems": [],
    }
    assert charset.status == 200


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"tenure_months": None}, "tenure_months", "null, but the feature is not nullable"),
        ({"tenure_months": "12"}, "tenure_months", "must be a number, got the string '12'"),
        ({"tenure_months": 601}, "tenure_months", "is 601, above the maximum 600"),
        ({"support_calls": -1}, "support_calls", "is -1, below the minimum 0"),
        ({"plan": "gold"}, "plan", "'gold' is not an allowed category (allowed: basic, plus, pro)"),
        ({"plan": 3}, "plan", 'must be a string (a category), got the number 3; send "3"'),
        ({"autopay": "maybe"}, "autopay", "must be true or false"),
        ({"colour": "red"}, "colour", "is not a feature of this model"),
        ({"churned": "true"}, "churned", "is the model's target"),
    ],
    ids=[
        "null-in-non-nullable",
        "numeric-string",
        "above-max",
        "below-min",
        "unknown-category",
        "number-as-category",
        "not-a-boolean",
        "unknown-field",
        "the-target",
    ],
)
def test_each_field_problem_is_a_422_naming_the_row_and_field(
    api: ServedChurn, change: dict[str, Any], field: str, says: str
) -> None:
    answer = api.predict({"instances": [ROW, {**ROW, **change}]})

    assert answer.status == 422, answer.body
    assert answer.body["message"] == "1 problem(s) in the request for churn v1"
    [problem] = answer.body["problems"]
    assert (problem["row"], problem["field"]) == (1, field)
    assert says in problem["problem"]


def test_a_missing_feature_is_a_422_naming_it(api: ServedChurn) -> None:
    row = {k: v for k, v in ROW.items() if k != "plan"}

    answer = api.predict({"dataframe_records": [row]})

    assert answer.status == 422
    assert answer.body["problems"] == [
        {"row": 0, "field": "plan", "problem": "is missing; the feature is required"}
    ]


def test_every_problem_of_every_row_is_listed_at_once(api: ServedChurn) -> None:
    rows = [
        {**ROW, "tenure_months": "x", "plan": "gold"},
        ROW,
        {"monthly_charges": 10.0, "region": None, "extra": 1},
        "not an object",
    ]

    answer = api.predict({"instances": rows[:3]})
    split = api.predict({"dataframe_split": {"columns": ["tenure_months"], "data": [[-5], ["a"]]}})

    assert answer.status == 422
    assert answer.body["message"] == "7 problem(s) in the request for churn v1"
    assert problems(answer) == [
        (0, "tenure_months"),
        (0, "plan"),
        (2, "tenure_months"),
        (2, "plan"),
        (2, "autopay"),
        (2, "support_calls"),
        (2, "extra"),
    ]
    assert split.status == 422
    assert (0, "tenure_months") in problems(split) and (1, "tenure_months") in problems(split)
    assert (1, "plan") in problems(split)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, "send exactly one non-empty of 'instances', 'dataframe_split' or 'dataframe_records'"),
        ({"instances": []}, "send exactly one non-empty"),
        ({"instances": [ROW], "dataframe_records": [ROW]}, "(got instances, dataframe_records)"),
        ({"rows": [ROW]}, "Extra inputs are not permitted"),
        ({"instances": ROW}, "Input should be a valid list"),
        ({"instances": ["a row"]}, "Input should be a valid dictionary"),
        ([{"instances": [ROW]}, "anything"], "the body must be a JSON object, got an array"),
        ([ROW], "the body must be a JSON object, got an array"),
        ("instances", "the body must be a JSON object, got a string"),
        (None, "the body must be a JSON object, got null"),
    ],
    ids=[
        "empty",
        "no-rows",
        "two-formats",
        "unknown-key",
        "object-not-list",
        "string-row",
        "array-of-requests",
        "bare-list",
        "string",
        "null",
    ],
)
def test_a_request_of_the_wrong_shape_is_a_422_saying_why(api: ServedChurn, body: Any, says: str) -> None:
    answer = api.request("POST", f"/models/{MODEL}/predict", raw=json.dumps(body).encode())

    assert answer.status == 422, answer.body
    assert answer.body["message"].endswith("problem(s) in the request")
    assert any(says in p["problem"] for p in answer.body["problems"]), answer.body


@pytest.mark.parametrize("key", ["7", "\u00b9"])  # "¹" isdigit() but int() refuses it: it was a 500
def test_a_key_that_looks_like_a_number_is_named_as_a_field_not_a_row(api: ServedChurn, key: str) -> None:
    answer = api.predict({key: [ROW]})

    assert answer.status == 422, answer.body
    assert answer.body["problems"] == [
        {"row": None, "field": key, "problem": "Extra inputs are not permitted"}
    ]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("?version=1&alias=production", "give either ?version or ?alias, not both"),
        ("?version=0", "greater than or equal to 1"),
        ("?version=two", "valid integer"),
        ("?alias=Bad!", "should match pattern"),
        ("?alias=x" + "y" * 64, "should match pattern"),
    ],
    ids=["version-and-alias", "version-zero", "version-text", "alias-pattern", "alias-too-long"],
)
def test_a_bad_version_or_alias_is_a_422(api: ServedChurn, query: str, says: str) -> None:
    answer = api.predict({"instances": [ROW]}, query)

    assert answer.status == 422, answer.body
    assert says in json.dumps(answer.body), answer.body


def test_a_bad_model_name_is_a_422_naming_the_path_parameter(api: ServedChurn) -> None:
    answer = api.predict({"instances": [ROW]}, model="Churn_Model")

    assert answer.status == 422
    assert answer.body["problems"][0]["field"] == "path.model"


def test_more_rows_than_the_limit_is_a_413(api: ServedChurn) -> None:
    answer = api.predict({"instances": [ROW] * 1001})

    assert answer.status == 413
    assert (
        answer.body["message"] == "the request breaks the rows limit: 1001 rows in one request; at most 1000"
    )


def test_a_body_over_the_byte_limit_is_a_413_before_it_is_read(api: ServedChurn) -> None:
    """The body is not JSON either: it is refused for its size before anything parses it."""
    body = b"{" + b" " * BODY_LIMIT

    answer = api.request("POST", f"/models/{MODEL}/predict", raw=body)

    assert answer.status == 413
    assert answer.body["message"] == f"the request body is {BODY_LIMIT + 1} bytes; at most {BODY_LIMIT}"


def test_unknown_models_versions_and_aliases_are_404s(api: ServedChurn) -> None:
    cases = {
        "/models/nope/predict": "model 'nope' is not registered",
        f"/models/{MODEL}/predict?version=99": "churn v99 does not exist",
        f"/models/{MODEL}/predict?alias=staging": "model 'churn' has no alias 'staging'",
        f"/models/{MODEL}/predict?alias=shadow_v2": "model 'churn' has no alias 'shadow_v2'",
    }
    for path, message in cases.items():
        answer = api.request("POST", path, {"instances": [ROW]})
        assert (answer.status, answer.body) == (404, {"message": message, "problems": []}), path
    described = api.get("/models/nope")
    assert described.status == 404
    assert described.body["message"] == "model 'nope' is not registered"


def test_a_model_with_a_contract_but_no_production_version_is_a_404_saying_so(api: ServedChurn) -> None:
    # Given a contract for another model and a version registered but never promoted
    put_churn_contract(api.svc, churn_contract(model=IDLE_MODEL))
    unregistered = api.predict({"instances": [ROW]}, model=IDLE_MODEL)
    copy_of_v1(api, "manual-idle", model=IDLE_MODEL)

    # When it is asked for its production version
    answer = api.predict({"instances": [ROW]}, model=IDLE_MODEL)
    described = api.get(f"/models/{IDLE_MODEL}")

    # Then 404, saying no version has been promoted (and before registration: not registered)
    assert (unregistered.status, unregistered.body["message"]) == (
        404,
        f"model {IDLE_MODEL!r} is not registered",
    )
    message = f"model {IDLE_MODEL!r} has no production version yet: no version has been promoted"
    assert (answer.status, answer.body["message"]) == (404, message)
    assert (described.status, described.body["message"]) == (404, message)


# --- hostile bodies: every limit, every media type, nothing echoed whole ------------------------------------


def nested(depth: int) -> str:
    """A value ``depth`` arrays deep, as text (json.dumps itself would recurse past Python's limit)."""
    return "[" * depth + "1" + "]" * depth


@pytest.mark.parametrize(
    ("body", "limit", "at", "problem"),
    [
        (
            '{"instances": [{"plan": ' + nested(14) + "}]}",
            "nesting depth",
            (0, "plan"),
            "arrays or objects nested deeper than 16 levels (FLYWHEEL_MAX_JSON_DEPTH)",
        ),
        (
            '{"instances": [{"plan": ' + nested(100_000 // 2) + "}]}",
            "nesting depth",
            (None, None),
            "arrays or objects nested deeper than 16 levels (FLYWHEEL_MAX_JSON_DEPTH)",
        ),
        (
            '{"instances": [{"tenure_months": 1' + "0" * 5000 + "}]}",
            "integer digits",
            (None, None),
            "an integer of 5001 digits; at most 40 (FLYWHEEL_MAX_INTEGER_DIGITS)",
        ),
        (
            json.dumps({"instances": [ROW, {**ROW, "plan": "p" * 5000}]}),
            "string length",
            (1, "plan"),
            "a string of 5000 characters; at most 4096 (FLYWHEEL_MAX_STRING_CHARS)",
        ),
        (
            json.dumps({"instances": [{**ROW, "k" * 4097: 1}]}),
            "string length",
            (0, None),
            "a key of 4097 characters; at most 4096 (FLYWHEEL_MAX_STRING_CHARS)",
        ),
        (
            json.dumps({"instances": [{**ROW, **{f"f{i}": 0 for i in range(1001)}}]}),
            "fields",
            (0, None),
            "an object of 1007 entries; at most 1000 (FLYWHEEL_MAX_FIELDS_PER_OBJECT)",
        ),
        (
            json.dumps({"dataframe_split": {"columns": ["plan"], "data": [[0] * 1001]}}),
            "fields",
            (0, None),
            "an array of 1001 entries; at most 1000 (FLYWHEEL_MAX_FIELDS_PER_OBJECT)",
        ),
        (
            json.dumps({"dataframe_split": {"columns": ["plan"], "data": [["basic"]] * 1001}}),
            "rows",
            (None, None),
            "1001 rows in one request; at most 1000 (FLYWHEEL_MAX_PREDICT_ROWS)",
        ),
    ],
    ids=[
        "depth",
        "depth-past-the-reader",
        "integer-digits",
        "string-length",
        "key-length",
        "fields-of-a-row",
        "entries-of-a-split-row",
        "split-rows",
    ],
)
def test_a_body_past_a_limit_is_a_413_naming_the_limit_and_where(
    api: ServedChurn, body: str, limit: str, at: tuple[int | None, str | None], problem: str
) -> None:
    """Python's reader alone answered the deep body with RecursionError and the long integer with
    ValueError, both 500s; each limit is a setting, and a breach is refused before anything validates it."""
    response = call(body)

    assert response["statusCode"] == 413, response
    answer = json.loads(response["body"])
    assert answer["message"].startswith(f"the request breaks the {limit} limit: ")
    [found] = answer["problems"]
    assert ((found["row"], found["field"]), found["problem"]) == (at, problem)


def test_a_body_within_every_limit_is_still_answered(api: ServedChurn) -> None:
    """The limits leave room for any honest request: 40 digits, 4,096 characters, depth 16 are each judged
    by the model's signature (422 naming the field), not refused as a breach."""
    answers = [
        call(json.dumps({"instances": [{**ROW, "tenure_months": 10**39}]})),
        call(json.dumps({"instances": [{**ROW, "plan": "p" * 4096}]})),
        call('{"instances": [{"plan": ' + nested(13) + "}]}"),  # 16 levels with the body, list and row
    ]

    assert [a["statusCode"] for a in answers] == [422, 422, 422], answers
    plan = json.loads(answers[1]["body"])["problems"]
    assert plan == [
        {
            "row": 0,
            "field": "plan",
            "problem": "'" + "p" * 40 + "... (4096 characters)' is not an allowed category "
            "(allowed: basic, plus, pro)",
        }
    ]


def test_an_error_lists_at_most_a_hundred_problems_and_counts_the_rest(api: ServedChurn) -> None:
    """A request with tens of thousands of bad elements made an error body past Lambda's 6 MB response limit
    (a 500); the answer lists the first hundred problems, says how many it left out, and stays small."""
    wide = {"instances": [{f"x{i}": 0 for i in range(20)} for _ in range(1000)]}
    strings = {"instances": ["not a row"] * 1000}

    answers = {name: call(json.dumps(body)) for name, body in (("wide", wide), ("strings", strings))}

    for name, at_least in (("wide", 20_000), ("strings", 1000)):
        response = answers[name]
        assert response["statusCode"] == 422, name
        assert len(response["body"]) < 20_000, name
        body = json.loads(response["body"])
        found = int(body["message"].split(" ", 1)[0])
        assert found >= at_least
        assert len(body["problems"]) == 100
        assert body["problems_left_out"] == found - 100
        assert body["message"].endswith(f"(the first 100 listed, {found - 100} left out)")
    assert json.loads(answers["wide"]["body"])["problems"][0]["row"] == 0


def test_a_long_unknown_field_name_is_cut_in_the_answer(api: ServedChurn) -> None:
    name = "z" * 3000

    response = call(json.dumps({"instances": [{**ROW, name: 1}]}))

    assert response["statusCode"] == 422
    [problem] = json.loads(response["body"])["problems"]
    assert problem["field"] == "z" * 40 + "... (3000 characters)"
    assert len(response["body"]) < 1000


def test_a_split_naming_a_column_twice_is_a_422(api: ServedChurn) -> None:
    """The last value of a repeated column silently won before."""
    columns = [*ROW, "plan"]
    data = [[*ROW.values(), "gold"]]

    answer = api.predict({"dataframe_split": {"columns": columns, "data": data}})

    assert answer.status == 422, answer.body
    assert answer.body["problems"] == [
        {
            "row": None,
            "field": "dataframe_split.columns",
            "problem": "each column may be named once; repeated: 'plan'",
        }
    ]


@pytest.mark.parametrize(
    "content_type",
    ["application/vnd.api+json", "application/json; charset=UTF-8", "Application/JSON", "application/x+json"],
)
def test_any_json_media_type_is_read_as_json_and_answered_in_flywheel_shape(
    api: ServedChurn, content_type: str
) -> None:
    """Powertools reads only application/json itself: vnd.api+json got its own error shape before."""
    good = json.dumps({"instances": [ROW]}).encode()
    bad = json.dumps({"instances": [{**ROW, "plan": "gold"}]}).encode()

    answered = api.request("POST", f"/models/{MODEL}/predict", raw=good, content_type=content_type)
    refused = api.request("POST", f"/models/{MODEL}/predict", raw=bad, content_type=content_type)

    assert answered.status == 200, answered.body
    assert refused.status == 422
    assert set(refused.body) == {"message", "problems"}
    assert refused.body["problems"][0]["field"] == "plan"


@pytest.mark.parametrize("content_type", ["application/json; charset=latin-1", "application/jsonx"])
def test_json_in_another_charset_or_a_lookalike_type_is_a_415(api: ServedChurn, content_type: str) -> None:
    body = json.dumps({"instances": [ROW]}).encode()

    answer = api.request("POST", f"/models/{MODEL}/predict", raw=body, content_type=content_type)

    assert answer.status == 415
    assert answer.body == {
        "message": f"send the body as JSON with Content-Type: application/json (not {content_type})",
        "problems": [],
    }


def test_no_client_can_mark_its_traffic_as_flywheels_own(api: ServedChurn) -> None:
    """Given a client that names itself as Flywheel's verification — in the old header, or in the field
    Verify sets, sent in the body or the query — its captures still say "api" and the monitor judges them;
    only a direct invocation with the field marks a capture "verify"."""
    forged_header = api.request(
        "POST", f"/models/{MODEL}/predict", {"instances": [ROW]}, headers={"x-flywheel-source": "verify"}
    )
    forged_query = api.predict({"instances": [ROW]}, "?flywheelSource=verify")
    forged_body = api.predict({"instances": [ROW], "flywheelSource": "verify"})
    direct = handler(
        {
            **http_api_event("POST", f"/models/{MODEL}/predict", json.dumps({"instances": [ROW]})),
            INTERNAL_SOURCE_FIELD: "verify",
        },
        context(),
    )

    assert (forged_header.status, forged_query.status, forged_body.status) == (200, 200, 422)
    records = captured(api)
    for answer in (forged_header, forged_query):
        assert records[answer.body["request_ids"][0]]["source"] == "api"
    assert records[json.loads(direct["body"])["request_ids"][0]]["source"] == "verify"


# --- promotion, rollback, integrity -------------------------------------------------------------------------


def test_a_promotion_and_a_rollback_are_served_without_a_redeploy(api: ServedChurn, challenger: int) -> None:
    """Given v1 in production and a warm function that has just read the alias
    When v2 is promoted
    Then requests within the refresh interval are still answered by v1 (asserted when the clock shows the
    request came within it), the first request after the interval by v2; and after a rollback to v1, by
    v1 again after the interval. The warm state is the same object throughout: nothing was redeployed."""
    warm = prediction_api.serving()
    time.sleep(REFRESH_SECONDS)  # the next request reads the alias afresh
    started = time.monotonic()
    before = api.predict({"instances": [ROW]})
    api.svc.registry.promote(MODEL, challenger, actor="test", reason="the challenger wins")
    within = api.predict({"instances": [ROW]})
    within_interval = time.monotonic() - started < REFRESH_SECONDS

    time.sleep(REFRESH_SECONDS)
    promoted = api.predict({"instances": [ROW]})
    described = api.get(f"/models/{MODEL}")

    api.svc.registry.promote(MODEL, 1, actor="test", reason="roll back")
    time.sleep(REFRESH_SECONDS)
    rolled_back = api.predict({"instances": [ROW]})

    assert before.body["version"] == 1
    if within_interval:
        assert within.body["version"] == 1
    assert promoted.body["version"] == challenger
    assert described.body["version"] == challenger
    assert rolled_back.body["version"] == 1
    assert api.production() == 1
    assert prediction_api.serving() is warm


def test_a_tampered_artifact_is_refused_with_a_503_and_never_loaded(
    api: ServedChurn, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Given a fresh version whose ONNX object was overwritten after registration (a new S3 version with
    other bytes), when it is requested pinned, then 503 says it failed the integrity check — the artifact's
    S3 URI and both digests' prefixes go to the log, never to the client — onnxruntime is never given the
    bytes, and churn's production is still served.
    (The version is another model's, so that every version of churn stays servable for the other tests.)"""
    bucket = api.svc.settings.artifacts_bucket
    v1 = api.svc.registry.get_model_version(MODEL, 1)
    assert v1.onnx_artifact is not None
    genuine = api.svc.objects.get(ObjectRef.parse(v1.onnx_artifact.uri)).body
    key = f"models/{TAMPERED_MODEL}/manual/model.onnx"
    api.cloud.client("s3").put_object(Bucket=bucket, Key=key, Body=genuine)
    version = copy_of_v1(
        api,
        "manual-tampered",
        onnx=ArtifactRef(uri=f"s3://{bucket}/{key}", sha256=sha256_hex(genuine)),
        model=TAMPERED_MODEL,
    )
    altered = genuine.replace(b"flywheel.classes", b"flywheel.clas5es")
    api.cloud.client("s3").put_object(Bucket=bucket, Key=key, Body=altered)
    sessions: list[bytes] = []
    real_session = runtime.onnx_session

    def spy(model: bytes) -> Any:
        sessions.append(model)
        return real_session(model)

    monkeypatch.setattr(runtime, "onnx_session", spy)

    answers = [
        api.predict({"instances": [ROW]}, f"?version={version}", model=TAMPERED_MODEL) for _ in range(2)
    ]
    production = api.predict({"instances": [ROW]})

    logged = " ".join(str(getattr(record, "detail", "")) for record in caplog.records)
    for answer in answers:
        assert answer.status == 503
        assert answer.body["message"] == (
            "the model cannot be served: its artifact failed the integrity check "
            f"({TAMPERED_MODEL} is not loaded; the operators are alerted)"
        )
        assert "s3://" not in json.dumps(answer.body) and bucket not in json.dumps(answer.body)
    assert f"{TAMPERED_MODEL} v{version}: the ONNX model at s3://{bucket}/{key}" in logged
    assert sha256_hex(genuine)[:12] in logged and sha256_hex(altered)[:12] in logged
    assert sessions == []
    assert (production.status, production.body["version"]) == (200, 1)


# --- captures ---------------------------------------------------------------------------------------------


def captured(api: ServedChurn, *, delivered: bool = True) -> dict[str, dict[str, Any]]:
    """Every capture record under captures/churn/, by request id; ``delivered``: once the queued captures
    are delivered, as the function's delivery thread does while its environment is thawed."""
    if delivered:
        prediction_api.serving().captures.flush()
    s3 = api.cloud.client("s3")
    bucket = api.svc.settings.data_bucket
    records = {}
    for listed in s3.list_objects_v2(Bucket=bucket, Prefix=f"captures/{MODEL}/").get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=listed["Key"])["Body"].read().decode()
        for line in body.splitlines():
            record = json.loads(line)
            records[record["request_id"]] = {**record, "key": listed["Key"]}
    return records


def test_answered_rows_are_captured_with_the_request_ids_returned(api: ServedChurn) -> None:
    """Given an answered request of three rows, then captures/churn/<yyyy>/<MM>/<dd>/ holds one JSON line
    per row with the request id returned for it, the model and version, the inputs as sent (the id column
    too) and the outputs as answered."""
    rows = request_rows(3, seed=5)

    answer = api.predict({"instances": rows})

    assert answer.status == 200
    records = captured(api)
    day = time.strftime("%Y/%m/%d", time.gmtime())
    for i, request_id in enumerate(answer.body["request_ids"]):
        record = records[request_id]
        assert record["key"].startswith(f"captures/{MODEL}/{day}/")
        assert (record["model"], record["version"], record["source"]) == (MODEL, 1, "api")
        assert record["inputs"] == rows[i]
        assert record["outputs"] == {
            "prediction": answer.body["predictions"][i],
            "probabilities": answer.body["probabilities"][i],
        }


def test_a_capture_failure_never_fails_the_request(
    api: ServedChurn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a capture stream that refuses every record, when requests are answered, then each is a 200
    all the same, nothing of them is captured, and the loss is counted (CaptureFailed) on the request
    after the failed delivery, the invocation whose metrics can still carry it."""

    class Refusing:
        def put_record_batch(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutRecordBatch")

    captures = prediction_api.serving().captures
    monkeypatch.setattr(captures.delivery, "_client", Refusing())

    first = api.predict({"instances": [ROW, ROW]})
    captures.flush()  # the delivery thread's attempt, done
    capsys.readouterr()
    second = api.predict({"instances": [ROW]})

    assert (first.status, second.status) == (200, 200), (first.body, second.body)
    assert not set(first.body["request_ids"]) & set(captured(api))
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"CaptureFailed"' in line]
    assert [m["CaptureFailed"] for m in metrics] == [[2.0]]


@pytest.fixture
def frozen_after_answering(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The predict function's next environment delivers captures only when told to, as one Lambda freezes
    the moment it has answered (its delivery thread never runs)."""
    monkeypatch.setattr(
        prediction_api, "BackgroundCaptureSink", functools.partial(BackgroundCaptureSink, background=False)
    )
    forget_warm_state()
    yield
    forget_warm_state()  # the environments after this test deliver from their thread again


def test_an_environment_shut_down_after_answering_delivers_its_captures(
    api: ServedChurn, frozen_after_answering: None
) -> None:
    """Given an environment frozen as soon as it answered, its captures still queued, when Lambda shuts it
    down (the SIGTERM its shutdown extension earns it), then the captures are delivered through Firehose to
    captures/churn/ before it ends."""
    answer = api.predict({"instances": [ROW]})
    assert answer.status == 200, answer.body
    [request_id] = answer.body["request_ids"]
    assert request_id not in captured(api, delivered=False)

    api.cloud.runtime.shut_down()

    assert (
        captured(api, delivered=False)[request_id]["outputs"]["prediction"] == answer.body["predictions"][0]
    )


def test_captures_a_frozen_environment_left_are_delivered_by_its_next_request(
    api: ServedChurn, frozen_after_answering: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given an environment frozen as soon as it answered, when it is thawed for a request after the
    captures' age limit, then that request delivers them first."""
    answer = api.predict({"instances": [ROW]})
    [request_id] = answer.body["request_ids"]
    captures = prediction_api.serving().captures
    monkeypatch.setattr(captures, "_max_age_s", 0.0)  # the age limit, passed

    assert api.predict({"instances": [ROW]}).status == 200

    assert request_id in captured(api, delivered=False)


# --- the events Lambda receives ---------------------------------------------------------------------------


def context() -> LambdaContext:
    return LambdaContext(
        function_name="flywheel-dev-predict",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:flywheel-dev-predict",
        memory_limit_in_mb=1024,
        aws_request_id="5b6c1f2e-7d3a-4f0e-9c1b-2a8e4d6f0a11",
        log_group_name="/aws/lambda/flywheel-dev-predict",
        log_stream_name="2026/01/01/[$LATEST]5b6c1f2e7d3a4f0e9c1b2a8e4d6f0a11",
        deadline=time.monotonic() + 15,
    )


def query_parameters(query: str) -> dict[str, str]:
    """``queryStringParameters`` as API Gateway and function URLs send them (repeats joined by commas)."""
    joined: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def http_api_event(method: str, path: str, body: str | None = None, query: str = "") -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event for one of the stack's IAM-authorised routes, shaped as
    Powertools' own test event ``apiGatewayProxyV2IamEvent.json``."""
    route = "/models/{model}/predict" if path.endswith("/predict") else "/models/{model}"
    if path in ("/health", "/openapi.json"):
        route = path
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {
            "accept": "application/json",
            "content-type": "application/json",
            "host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "user-agent": "python-requests/2.32",
            "x-amzn-trace-id": "Root=1-67a0b1c2-0123456789abcdef01234567",
            "x-forwarded-for": "192.0.2.10",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "authorizer": {
                "iam": {
                    "accessKey": "ASIAEXAMPLEKEY000000",
                    "accountId": "123456789012",
                    "callerId": "AROAEXAMPLEROLE00000:client",
                    "cognitoIdentity": None,
                    "principalOrgId": None,
                    "userArn": "arn:aws:sts::123456789012:assumed-role/scorer/client",
                    "userId": "AROAEXAMPLEROLE00000:client",
                }
            },
            "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "a1b2c3d4e5",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.10",
                "userAgent": "python-requests/2.32",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": f"{method} {route}",
            "stage": "$default",
            "time": "12/Mar/2026:19:03:58 +0000",
            "timeEpoch": 1773342238000,
        },
        "isBase64Encoded": False,
    }
    if path.startswith("/models/"):
        event["pathParameters"] = {"model": path.split("/")[2]}
    if query:
        event["queryStringParameters"] = query_parameters(query)
    if body is not None:
        event["body"] = body
    return event


def function_url_event(method: str, path: str, body: str | None = None, query: str = "") -> dict[str, Any]:
    """A Lambda function URL event, shaped as Powertools' ``lambdaFunctionUrlEvent.json``: route key
    ``$default``, no path parameters, and a body base64-encoded as function URLs send JSON bodies."""
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {
            "content-type": "application/json",
            "host": "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws",
            "user-agent": "curl/8.5.0",
            "x-amzn-tls-cipher-suite": "ECDHE-RSA-AES128-GCM-SHA256",
            "x-amzn-tls-version": "TLSv1.3",
            "x-amzn-trace-id": "Root=1-67a0b1c2-89abcdef0123456789abcdef",
            "x-forwarded-for": "198.51.100.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefghijklmnopqrstuvwxyz012345",
            "domainName": "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefghijklmnopqrstuvwxyz012345",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7",
                "userAgent": "curl/8.5.0",
            },
            "requestId": "d2f6c9a0-3b7e-4a51-8f0c-6e2d1b9a7c35",
            "routeKey": "$default",
            "stage": "$default",
            "time": "12/Mar/2026:19:03:58 +0000",
            "timeEpoch": 1773342238000,
        },
        "isBase64Encoded": body is not None,
    }
    if query:
        event["queryStringParameters"] = query_parameters(query)
    if body is not None:
        event["body"] = base64.b64encode(body.encode()).decode()
    return event


EVENT_SHAPES = {"http-api": http_api_event, "function-url": function_url_event}


@pytest.mark.parametrize("shape", EVENT_SHAPES)
def test_the_handler_answers_both_event_shapes(api: ServedChurn, shape: str) -> None:
    """Given an HTTP API v2 event (a route key naming the route, path parameters, a text body) or a
    function URL event (route key $default, only the raw path, a base64 body), the handler routes it:
    200 predictions, the pinned version from the query string, GET routes; a body that is not JSON is a
    400 (so is a base64 body that is not UTF-8 text) and a row missing a feature a 422, each as a proxy
    response with a JSON body."""
    make = EVENT_SHAPES[shape]
    good = json.dumps({"instances": [ROW]})
    missing = json.dumps({"instances": [{k: v for k, v in ROW.items() if k != "autopay"}]})

    answers = {
        "predict": handler(make("POST", f"/models/{MODEL}/predict", good), context()),
        "pinned": handler(make("POST", f"/models/{MODEL}/predict", good, "version=1"), context()),
        "describe": handler(make("GET", f"/models/{MODEL}"), context()),
        "health": handler(make("GET", "/health"), context()),
        "not-json": handler(make("POST", f"/models/{MODEL}/predict", "{nope"), context()),
        "missing": handler(make("POST", f"/models/{MODEL}/predict", missing), context()),
    }

    not_text = make("POST", f"/models/{MODEL}/predict", "{}")
    not_text.update(
        body=base64.b64encode(b'{"instances": [{"plan": "\xff"}]}').decode(), isBase64Encoded=True
    )
    answers["not-utf-8"] = handler(not_text, context())

    statuses = {name: answer["statusCode"] for name, answer in answers.items()}
    assert statuses == {
        "predict": 200,
        "pinned": 200,
        "describe": 200,
        "health": 200,
        "not-json": 400,
        "missing": 422,
        "not-utf-8": 400,
    }
    bodies = {name: json.loads(answer["body"]) for name, answer in answers.items()}
    for answer in answers.values():
        assert answer["headers"]["Content-Type"] == "application/json"
        assert answer["isBase64Encoded"] is False
    assert bodies["predict"]["version"] == bodies["pinned"]["version"] == 1
    assert len(bodies["predict"]["request_ids"]) == 1
    assert bodies["describe"]["version"] == 1
    assert bodies["missing"]["problems"] == [
        {"row": 0, "field": "autopay", "problem": "is missing; the feature is required"}
    ]
    assert bodies["not-utf-8"]["message"] == "the request body is not valid JSON (not UTF-8 text)"


# --- no request gets a 5xx ------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()  # NaN and infinities too: Python's JSON reader accepts them
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
ROW_KEYS = st.sampled_from([*FEATURES, "customer_id", "event_time", "churned"]) | st.text(max_size=12)
ROWS = st.lists(st.dictionaries(ROW_KEYS, JSON_VALUES, max_size=8) | JSON_VALUES, min_size=1, max_size=5)
REQUESTS = st.one_of(
    st.fixed_dictionaries({"instances": ROWS}),
    st.fixed_dictionaries({"dataframe_records": ROWS}),
    st.fixed_dictionaries(
        {"dataframe_split": st.fixed_dictionaries({"columns": st.lists(ROW_KEYS, max_size=7), "data": ROWS})}
    ),
    st.dictionaries(st.sampled_from(["instances", "dataframe_records", "dataframe_split"]), ROWS, max_size=3),
)
QUERIES = st.dictionaries(
    st.sampled_from(["version", "alias", "other"]),
    st.integers(-2, 5).map(str)
    | st.sampled_from(["production", CHALLENGER, "nope", "A", ""])
    | st.text(max_size=6),
    max_size=3,
).map(urlencode)
NO_SERVER_ERROR = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def call(body: str, query: str = "", *, model: str = MODEL) -> dict[str, Any]:
    response: dict[str, Any] = handler(
        http_api_event("POST", f"/models/{model}/predict", body, query), context()
    )
    return response


@NO_SERVER_ERROR
@given(body=JSON_VALUES.map(json.dumps) | st.text(max_size=60))
def test_no_body_whatever_it_holds_gets_a_server_error(api: ServedChurn, body: str) -> None:
    response = call(body)

    assert response["statusCode"] < 500, response
    assert response["statusCode"] in (200, 400, 422), response
    json.loads(response["body"])


@NO_SERVER_ERROR
@given(request=REQUESTS, query=QUERIES)
def test_no_rows_whatever_their_keys_and_values_get_a_server_error(
    api: ServedChurn, request: dict[str, Any], query: str
) -> None:
    response = call(json.dumps(request), query)

    assert response["statusCode"] < 500, response
    body = json.loads(response["body"])
    if response["statusCode"] == 200:
        assert len(body["predictions"]) == len(body["request_ids"]) >= 1
    else:
        assert body["message"]


# The classes of hostile input, each drawn past its limit and short of it: nesting, integer digits, string
# and key length, wide objects and arrays, many rows, repeated split columns, any media type, and a client
# naming itself as Flywheel's own traffic.
DEEP = st.integers(1, 4000).map(lambda n: "[" * n + "0" + "]" * n) | st.integers(1, 2000).map(
    lambda n: '{"a":' * n + "0" + "}" * n
)
DIGITS = st.integers(1, 6000).map(lambda n: "-" * (n % 2) + "9" * n)
LONG = st.integers(0, 6000).map(lambda n: json.dumps("s" * n))
WIDE = st.integers(0, 1200).map(lambda n: json.dumps({f"k{i}": i for i in range(n)})) | st.integers(
    0, 1200
).map(lambda n: json.dumps(list(range(n))))
HOSTILE = DEEP | DIGITS | LONG | WIDE | JSON_VALUES.map(json.dumps)
FEATURE = st.sampled_from([*FEATURES, "k" * 5000, "other", None])  # None: the row as it is, answered


@st.composite
def hostile_bodies(draw: st.DrawFn) -> str:
    value = draw(HOSTILE)
    feature = draw(FEATURE)
    fields = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in ROW.items() if k != feature]
    row = "{" + ", ".join(fields if feature is None else [*fields, f"{json.dumps(feature)}: {value}"]) + "}"
    rows = draw(st.integers(1, 1100))
    columns = draw(st.lists(st.sampled_from(list(ROW)), min_size=1, max_size=8))
    shapes = [
        '{"instances": [' + row + "]}",
        '{"dataframe_records": [' + ", ".join([json.dumps(ROW)] * (rows - 1) + [row]) + "]}",
        '{"dataframe_split": {"columns": ' + json.dumps(columns) + ', "data": [[' + value + "]]}}",
        '{"instances": ' + value + "}",
        value,
    ]
    return draw(st.sampled_from(shapes))


JSON_MEDIA_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
        "application/vnd.api+json",
    ]
)
OTHER_MEDIA_TYPES = st.sampled_from(
    [
        "application/problem+json; charset=utf-16",
        "application/json; charset=",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "",
    ]
) | st.text(max_size=40)
MEDIA_TYPES = st.one_of(JSON_MEDIA_TYPES, JSON_MEDIA_TYPES, JSON_MEDIA_TYPES, OTHER_MEDIA_TYPES)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    body=hostile_bodies(),
    media_type=MEDIA_TYPES,
    source=st.sampled_from(["verify", "post-deploy-check", "x"]),
)
def test_no_hostile_body_media_type_or_forged_source_gets_a_server_error(
    api: ServedChurn, body: str, media_type: str, source: str
) -> None:
    """Whatever the class, the answer is a 4xx (or a 200) in Flywheel's shape, a refusal small, and a
    capture of an answered request says it came from a client."""
    event = http_api_event("POST", f"/models/{MODEL}/predict", body)
    event["headers"] = {**event["headers"], "content-type": media_type, "x-flywheel-source": source}

    response = handler(event, context())

    assert response["statusCode"] < 500, response
    answer = json.loads(response["body"])
    if response["statusCode"] == 200:
        records = captured(api)
        assert {records[request_id]["source"] for request_id in answer["request_ids"]} == {"api"}
    else:
        assert len(response["body"]) < 64_000  # a refusal is small, however much was wrong
        assert set(answer) <= {"message", "problems", "problems_left_out"} and answer["message"]
