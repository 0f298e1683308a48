"""The prediction API: routes, request and response models and every error's status, on Powertools' HTTP
resolver with pydantic validation and its generated OpenAPI document.

- ``POST /models/{model}/predict`` — ``{"instances": [...]}``, or MLflow's ``dataframe_split`` /
  ``dataframe_records``; ``?version=N`` or ``?alias=NAME`` (default: the production alias, re-read every
  few seconds so a promotion is served without a redeploy). Answers predictions, class probabilities for a
  classifier, the model and version, and one ``request_id`` per row (to attach labels later).
- ``GET /models/{model}`` — the production version, its signature and metrics.
- ``GET /health``, ``GET /openapi.json``.

Errors, never a 500 for a bad request: body not JSON (or not UTF-8) → 400; a body sent as another media type
than JSON (``application/json``, any ``+json``, in UTF-8) → 415; a body that is not one JSON object, fields
missing, of the wrong type, out of range, outside the allowed categories or unknown, or a
``dataframe_split`` naming a column twice → 422 listing the problems by row and field; a body over the byte
limit, or breaking one of the limits of :mod:`shared.serving.limits` (rows, nesting depth, integer digits,
string length, entries of an object or array) → 413 naming the limit; unknown model or version, or no
production version yet → 404; an artifact whose sha256 does not match the registry → 503 (never loaded; the
details are logged, not shown). An error lists at most ``max_problems_listed`` problems and says how many it
left out, and never echoes a long client value whole. Every status and body is declared in the OpenAPI
document. Every answered row is sent to the capture stream, from a thread
(:class:`~shared.serving.capture.BackgroundCaptureSink`: the request only queues it); a capture failure is
counted (``CaptureFailed``, on the next request, or at shutdown), never returned to the caller.

Captures of clients' requests say ``source: api``, whatever the request carries: only a direct invocation
by Flywheel's own verification can mark its traffic otherwise (:data:`shared.serving.capture.
INTERNAL_SOURCE_FIELD`), so no client can hide its traffic from the monitor.

For a model trained with feature views, the features a row leaves out are filled from the online store by
the row's entity key before it is checked (:mod:`shared.serving.lookup`: one batched read per view,
values past the TTL missing, request values first); the capture records the filled row.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.errors import IntegrityError, NotFoundError, TransientError
from shared.featurestore.online import DynamoOnlineStore, OnlineStore
from shared.lifecycle import on_shutdown
from shared.naming import ALIAS_NAME, MODEL_NAME
from shared.observability import NAMESPACE, logger, metrics
from shared.registry import PRODUCTION_ALIAS, ModelRegistry
from shared.services import Services
from shared.serving.capture import (
    CLIENT_SOURCE,
    INTERNAL_SOURCE_FIELD,
    INTERNAL_SOURCES,
    BackgroundCaptureSink,
    CaptureRecord,
    FirehoseCaptureSink,
)
from shared.serving.limits import LimitBreach, RequestLimits, read_body, shown
from shared.serving.lookup import fill_from_store
from shared.serving.runtime import ModelCache
from shared.settings import Settings, get_settings, warm

API_TITLE = "Flywheel prediction API"
# The charsets a JSON body may declare (JSON is UTF-8: RFC 8259 §8.1).
JSON_CHARSETS = frozenset({"utf-8", "utf8"})


# --- request and response models ---------------------------------------------------------------------------


class DataframeSplit(BaseModel):
    """MLflow's ``dataframe_split``: column names once, then rows as lists."""

    model_config = ConfigDict(extra="forbid")
    columns: list[str]
    data: list[list[Any]]

    @field_validator("columns")
    @classmethod
    def _each_column_once(cls, columns: list[str]) -> list[str]:
        # A repeated name would have its last value win silently: refused instead.
        repeated = [column for column, count in Counter(columns).items() if count > 1]
        if repeated:
            names = ", ".join(repr(shown(c)) for c in repeated)
            raise ValueError(f"each column may be named once; repeated: {names}")
        return columns


class PredictRequest(BaseModel):
    """Exactly one of ``instances``, ``dataframe_split`` or ``dataframe_records``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"instances": [{"feature": "value"}]}]},
    )
    instances: list[dict[str, Any]] | None = None
    dataframe_split: DataframeSplit | None = None
    dataframe_records: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PredictRequest:
        given = [
            name for name in ("instances", "dataframe_split", "dataframe_records") if getattr(self, name)
        ]
        if len(given) != 1:
            raise ValueError(
                "send exactly one non-empty of 'instances', 'dataframe_split' or 'dataframe_records'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    def rows(self) -> list[dict[str, Any]]:
        if self.dataframe_split is not None:
            split = self.dataframe_split
            return [dict(zip(split.columns, row, strict=False)) for row in split.data]
        return list(self.instances or self.dataframe_records or [])


class Problem(BaseModel):
    row: int | None = Field(
        default=None, description="0-based row of the request, when the problem is in one"
    )
    field: str | None = None
    problem: str


class ErrorBody(BaseModel):
    message: str
    problems: list[Problem] = Field(default_factory=list)
    problems_left_out: int = Field(
        default=0, ge=0, description="problems found but not listed (an answer lists the first ones only)"
    )

    @classmethod
    def listing(cls, message: str, problems: list[Problem], at_most: int) -> ErrorBody:
        """At most ``at_most`` problems listed, the rest counted: an answer stays small, however many
        problems a request holds."""
        left_out = max(0, len(problems) - at_most)
        if left_out:
            message += f" (the first {at_most} listed, {left_out} left out)"
        return cls(message=message, problems=problems[:at_most], problems_left_out=left_out)


class PredictResponse(BaseModel):
    model: str
    version: int
    flavor: str
    predictions: list[str | float]
    probabilities: list[dict[str, float]] | None = None
    request_ids: list[str]


class ModelInfo(BaseModel):
    model: str
    alias: str
    version: int
    flavor: str
    stage: str
    registered_at: str
    signature: dict[str, Any]
    metrics: dict[str, Any]


class Health(BaseModel):
    status: str


def _responses(answer: type[BaseModel], *errors: HTTPStatus) -> dict[int, Any]:
    """The route's 200 and error answers for the OpenAPI document (given responses replace Powertools' own,
    its 200 and its 422 included)."""
    described = {HTTPStatus.OK: answer, **dict.fromkeys(errors, ErrorBody)}
    return {
        status.value: {"description": status.phrase, "content": {"application/json": {"model": model}}}
        for status, model in described.items()
    }


# --- what a warm function keeps ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Serving:
    settings: Settings
    registry: ModelRegistry
    models: ModelCache
    captures: BackgroundCaptureSink
    features: OnlineStore | None = None  # the online feature store, when the stack has one


@warm
@lru_cache(maxsize=1)
def _serving_for(settings: Settings) -> _Serving:
    svc = Services(settings)  # its clients are made on the first request, after any mock
    models = ModelCache(svc.registry, svc.objects, refresh_seconds=settings.alias_refresh_seconds)
    features = (
        DynamoOnlineStore(settings.features_table, client=svc.clients.client("dynamodb"))
        if settings.features_table
        else None
    )
    threading.Thread(target=_prepare_first_load, args=(svc,), name="first-load", daemon=True).start()
    # Delivered from a thread, off the request path; its Firehose client is made on the first delivery.
    captures = BackgroundCaptureSink(FirehoseCaptureSink(settings.capture_stream))
    on_shutdown(lambda: _close_captures(captures))
    return _Serving(settings, svc.registry, models, captures, features)


def _prepare_first_load(svc: Services) -> None:
    """The first request's CPU work that does not depend on its answers, done while the request waits on
    the network: the S3 client (made while the registry is read) and onnxruntime's import (while the
    registry is read and the artifact downloaded). The request takes both when it gets there (a client
    under :class:`~shared.aws.AwsClients`' lock, a module under the import lock), so nothing is done twice;
    a failure here is the request's to raise, when it tries the same itself."""
    try:
        svc.clients.client("s3")  # the client svc.objects is made with
        import onnxruntime  # noqa: F401, PLC0415
    except Exception:  # the request meets the same failure and reports it
        logger.debug("preparing the first model load failed; the request will retry it", exc_info=True)


def _close_captures(captures: BackgroundCaptureSink) -> None:
    """The environment is ending: deliver what is queued, and count what is lost now, since no later request
    will (a metric of its own, outside any invocation's flush)."""
    captures.close()
    failed = captures.take_failed()
    if failed:
        with single_metric(name="CaptureFailed", unit=MetricUnit.Count, value=failed, namespace=NAMESPACE):
            pass


def serving() -> _Serving:
    return _serving_for(get_settings())


# --- routes -------------------------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody.listing(message, problems or [], get_settings().max_problems_listed)


def _json_object(text: str) -> Any:
    """The body as the predict route validates it: one JSON object, read within the request limits (a
    breach is a :class:`LimitBreach`, answered 413). Powertools reads a JSON array as the values of a
    repeated form field and validates its first element only, which would answer
    ``[{"instances": [...]}, "anything"]``; any JSON value but an object is refused here instead (422)."""
    value = read_body(text, RequestLimits.of(get_settings()))
    if not isinstance(value, dict):
        kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
        kind = kinds.get(type(value), "null")
        raise RequestValidationError(
            [{"type": "model_type", "loc": ("body",), "msg": f"the body must be a JSON object, got {kind}"}]
        )
    return value


app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=_json_object)


@app.post(
    "/models/<model>/predict",
    summary="Predict with a model's production version (or a pinned version or alias)",
    responses=_responses(
        PredictResponse,
        HTTPStatus.BAD_REQUEST,
        HTTPStatus.NOT_FOUND,
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        HTTPStatus.UNPROCESSABLE_ENTITY,
        HTTPStatus.SERVICE_UNAVAILABLE,
    ),
)
def predict(
    model: Annotated[str, Path(pattern=MODEL_NAME)],
    request: PredictRequest,
    version: Annotated[int | None, Query(ge=1)] = None,
    alias: Annotated[str | None, Query(pattern=ALIAS_NAME)] = None,
) -> PredictResponse:
    started = time.perf_counter()
    if version is not None and alias is not None:
        raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "give either ?version or ?alias, not both")
    state = serving()
    _settle_captures(state.captures)
    rows = request.rows()
    limit = state.settings.max_rows_per_request
    if len(rows) > limit:
        raise ApiError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"{len(rows)} rows in one request; at most {limit}"
        )
    served = state.models.resolve(model, alias or PRODUCTION_ALIAS, version=version)
    filled = fill_from_store(rows, served.signature, state.features, datetime.now(UTC))
    if filled.lookups:
        metrics.add_metric(name="FeatureStoreLookups", unit=MetricUnit.Count, value=filled.lookups)
        metrics.add_metric(name="FeatureValuesFromStore", unit=MetricUnit.Count, value=filled.filled)
    rows = filled.rows
    predictions, problems = served.validate_and_predict(rows)
    if problems or predictions is None:
        raise ApiError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            f"{len(problems)} problem(s) in the request for {model} v{served.version}",
            [_shown(Problem(**p.as_dict())) for p in filled.explain(problems)],
        )
    base = uuid.uuid4().hex[:20]
    request_ids = [f"{base}-{i:04d}" for i in range(len(rows))]
    _capture(state, served.name, served.version, rows, predictions, request_ids, _traffic_source())
    metrics.add_metric(
        name="PredictLatency", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
    )
    metrics.add_metric(name="PredictRows", unit=MetricUnit.Count, value=len(rows))
    metrics.add_metric(name="ServedVersion", unit=MetricUnit.NoUnit, value=served.version)
    return PredictResponse(
        model=served.name,
        version=served.version,
        flavor=served.flavor,
        predictions=predictions.predictions,
        probabilities=predictions.probabilities,
        request_ids=request_ids,
    )


def _traffic_source() -> str:
    """Who is asking: a client, unless Flywheel's own verification invoked the function directly with the
    field no HTTP request can carry (the monitor judges clients only)."""
    declared = app.current_event.raw_event.get(INTERNAL_SOURCE_FIELD)
    return declared if isinstance(declared, str) and declared in INTERNAL_SOURCES else CLIENT_SOURCE


def _capture(
    state: _Serving,
    model: str,
    version: int,
    rows: list[dict[str, Any]],
    predictions: Any,
    request_ids: list[str],
    source: str,
) -> None:
    probabilities = predictions.probabilities or [None] * len(rows)
    records = [
        CaptureRecord.of_prediction(
            request_id=request_id,
            model=model,
            version=version,
            inputs=row,
            prediction=prediction,
            probabilities=probability,
            source=source,
        )
        for request_id, row, prediction, probability in zip(
            request_ids, rows, predictions.predictions, probabilities, strict=True
        )
    ]
    accepted = state.captures.send(records)  # queued: delivery happens off the request path
    if accepted < len(records):
        metrics.add_metric(name="CaptureFailed", unit=MetricUnit.Count, value=len(records) - accepted)


def _settle_captures(captures: BackgroundCaptureSink) -> None:
    """Before a request: deliver what a frozen environment left queued too long, and count as
    ``CaptureFailed`` what earlier deliveries lost (this invocation's metrics carry it)."""
    captures.flush_if_due()
    failed = captures.take_failed()
    if failed:
        metrics.add_metric(name="CaptureFailed", unit=MetricUnit.Count, value=failed)


@app.get(
    "/models/<model>",
    summary="A model's production version: signature and metrics",
    responses=_responses(
        ModelInfo, HTTPStatus.NOT_FOUND, HTTPStatus.UNPROCESSABLE_ENTITY, HTTPStatus.SERVICE_UNAVAILABLE
    ),
)
def describe(
    model: Annotated[str, Path(pattern=MODEL_NAME)],
    alias: Annotated[str, Query(pattern=ALIAS_NAME)] = PRODUCTION_ALIAS,
) -> ModelInfo:
    state = serving()
    number = state.models.alias_version(model, alias)
    version = state.registry.get_model_version(model, number)
    return ModelInfo(
        model=model,
        alias=alias,
        version=number,
        flavor=str(version.serving_flavor),
        stage=str(version.stage),
        registered_at=version.created_at.isoformat(),
        signature=version.signature,
        metrics=version.metrics,
    )


@app.get("/health", summary="Liveness")
def health() -> Health:
    return Health(status="ok")


@app.get("/openapi.json", summary="This API's OpenAPI document", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(
        status_code=HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=app.get_openapi_json_schema(title=API_TITLE, version="1"),
    )


# --- errors -----------------------------------------------------------------------------------------------


def _error(status: HTTPStatus, body: ErrorBody, headers: dict[str, str] | None = None) -> Response[str]:
    metrics.add_metric(name=f"PredictErrors{status.value}", unit=MetricUnit.Count, value=1)
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        # {"message", "problems"}, and the count left out only when some were.
        body=body.model_dump_json(exclude=None if body.problems_left_out else {"problems_left_out"}),
        headers=headers,
    )


def _api_error(error: ApiError) -> Response[str]:
    return _error(error.status, error.body)


def _invalid_request(error: RequestValidationError) -> Response[str]:
    errors = error.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return _error(HTTPStatus.BAD_REQUEST, ErrorBody(message="the request body is not valid JSON"))
    problems = [_problem(e) for e in errors]
    return _error(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        ErrorBody.listing(
            f"{len(problems)} problem(s) in the request", problems, get_settings().max_problems_listed
        ),
    )


def _problem(error: dict[str, Any]) -> Problem:
    # A list index is an int in the location; a key the client sent stays a string, even "7" or "¹".
    location = [part for part in error.get("loc", ()) if part not in ("body", "request")]
    row = next((part for part in location if isinstance(part, int)), None)
    field = ".".join(str(part) for part in location if not isinstance(part, int)) or None
    return _shown(
        Problem(
            row=row,
            field=field,
            problem=str(error.get("msg", error.get("type", "invalid"))).removeprefix("Value error, "),
        )
    )


def _shown(problem: Problem) -> Problem:
    """A problem as an answer shows it: a field name or text built from a client's value cut short."""
    field = shown(problem.field) if problem.field is not None else None
    return Problem(row=problem.row, field=field, problem=shown(problem.problem, 1000))


def _over_a_limit(breach: LimitBreach) -> Response[str]:
    return _error(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        ErrorBody(
            message=breach.message,
            problems=[
                Problem(row=breach.row, field=breach.field, problem=f"{breach.problem} ({breach.variable})")
            ],
        ),
    )


def _not_json(error: RequestUnsupportedContentType) -> Response[str]:
    # answer() refuses other media types first; this keeps any that reach Powertools in Flywheel's shape.
    return _error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, ErrorBody(message=_SEND_JSON))


def _not_found(error: NotFoundError) -> Response[str]:
    return _error(HTTPStatus.NOT_FOUND, ErrorBody(message=str(error)))


def _tampered(error: IntegrityError) -> Response[str]:
    # Where the artifact lives and its digests are for the operators (the log), not for clients.
    logger.error("model artifact failed its integrity check", extra={"detail": str(error)})
    metrics.add_metric(name="ModelIntegrityFailure", unit=MetricUnit.Count, value=1)
    model = (app.current_event.path_parameters or {}).get("model", "")
    return _error(
        HTTPStatus.SERVICE_UNAVAILABLE,
        ErrorBody(
            message=f"the model cannot be served: its artifact failed the integrity check ({shown(model)} "
            "is not loaded; the operators are alerted)"
        ),
    )


def _busy(error: TransientError) -> Response[str]:
    logger.warning("registry or storage unavailable", extra={"detail": str(error)})
    return _error(
        HTTPStatus.SERVICE_UNAVAILABLE,
        ErrorBody(message="temporarily unavailable, retry shortly"),
        {"Retry-After": "1"},
    )


# Registered by call: Powertools' decorator is untyped, and the handlers stay typed this way.
for _kind, _handle in (
    (ApiError, _api_error),
    (RequestValidationError, _invalid_request),
    (LimitBreach, _over_a_limit),
    (RequestUnsupportedContentType, _not_json),
    (NotFoundError, _not_found),
    (IntegrityError, _tampered),
    (TransientError, _busy),
):
    app.exception_handler(_kind)(_handle)


def answer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Resolve an HTTP API (payload v2) or function URL event.

    The body is checked before Powertools reads it: over ``max_request_bytes`` it is refused unread (413);
    for a POST, a media type other than JSON is a 415 (Powertools would parse a form, or answer in its own
    shape), and a base64 body (function URLs send JSON that way) is decoded here once, a 400 if it is not
    UTF-8 text (Powertools' decoding would raise, a 500).
    """
    body = event.get("body") or ""
    encoded = bool(event.get("isBase64Encoded")) and bool(body)
    size = _decoded_size(body) if encoded else (len(body) if body.isascii() else len(body.encode()))
    limit = get_settings().max_request_bytes
    if size > limit:
        return _proxy(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the request body is {size} bytes; at most {limit}"
        )
    if not body or ((event.get("requestContext") or {}).get("http") or {}).get("method") != "POST":
        return app.resolve(event, context)
    media_type = _content_type(event)
    if media_type and not _is_json(media_type):
        return _proxy(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"{_SEND_JSON} (not {shown(media_type)})")
    # Powertools parses only application/json itself: any JSON media type is handed over as that.
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    event = {**event, "headers": {**headers, "content-type": content_types.APPLICATION_JSON}}
    if encoded:
        try:
            text = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return _proxy(HTTPStatus.BAD_REQUEST, "the request body is not valid JSON (not UTF-8 text)")
        event = {**event, "body": text, "isBase64Encoded": False}
    return app.resolve(event, context)


def _proxy(status: HTTPStatus, message: str) -> dict[str, Any]:
    response = _error(status, ErrorBody(message=message))
    return {
        "statusCode": response.status_code,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": response.body,
        "isBase64Encoded": False,
    }


def _decoded_size(encoded: str) -> int:
    return len(encoded) // 4 * 3 - encoded[-2:].count("=")


def _content_type(event: dict[str, Any]) -> str:
    for name, value in (event.get("headers") or {}).items():
        if name.lower() == "content-type":
            return str(value).strip()
    return ""


_SEND_JSON = "send the body as JSON with Content-Type: application/json"


def _is_json(content_type: str) -> bool:
    """``application/json`` or any ``+json`` type (RFC 6839), in UTF-8 if it names a charset."""
    media_type, *parameters = (part.strip().lower() for part in content_type.split(";"))
    if media_type != content_types.APPLICATION_JSON and not media_type.endswith("+json"):
        return False
    charsets = [
        p.partition("=")[2].strip().strip('"') for p in parameters if p.partition("=")[0].strip() == "charset"
    ]
    return all(charset in JSON_CHARSETS for charset in charsets)


__all__ = ["answer", "app"]
