"""Batch scoring's steps over the stack's adapters: start a job, score one file, finish the job.

- :func:`start_job` fixes the version (the pinned one, or production's now), checks the source prefix and
  starts the scoring state machine with the job as input; the execution's name is the job id, so a
  request file delivered twice starts one job.
- :func:`score_file` is one Distributed Map iteration: it loads the version through the serving runtime
  (:class:`~shared.serving.runtime.ModelCache`: the ONNX flavour where the version has it, the artifact's
  sha256 checked before it is read), scores the file's valid rows, writes their predictions as Parquet,
  captures them for the monitor with source ``batch``, and writes the file's outcome beside them. A file
  that cannot be read is a failed file, never a failed job.
- :func:`finish_job` writes the manifest and records the job in lineage: the version scored the job, the
  source files fed its outputs.
"""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.errors import DataValidationError, InvalidRequestError, NotFoundError
from shared.hashing import sha256_hex
from shared.layout import DataPrefix
from shared.metadata import Artifact, ArtifactKind, NodeType, Relation, file_id, model_version_id
from shared.observability import logger
from shared.scoring.columnar import ValidColumns, capture_lines, request_ids, split_valid_columns
from shared.scoring.job import (
    MAX_LISTED_ROW_FAILURES,
    FileScore,
    OutputFile,
    ScoreItem,
    ScoreJob,
    ScoreManifest,
    ScoreRequest,
    build_manifest,
    item_result_key,
    job_name,
    job_prefix,
    manifest_key,
    output_key,
    read_table,
    source_prefix,
)
from shared.serving.capture import BATCH_SOURCE, CaptureSink, FirehoseCaptureSink
from shared.serving.runtime import ModelCache, ServedModel
from shared.settings import Settings, warm
from shared.storage import ObjectRef

if TYPE_CHECKING:
    import numpy as np
    from aws_lambda_powertools.utilities.parser.models import S3Model

    from shared.services import Services

PRODUCTION_ALIAS = "production"
# Rows per model call (and per batch of captures): bounded memory for any file size, and large enough
# that one call's overhead is nothing next to its rows.
PREDICT_CHUNK_ROWS = 50_000


class JobStarted(BaseModel):
    """What starting a job answered: the job, and whether this call started it (False: it was running or
    had run already, e.g. a re-delivered request file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job: ScoreJob
    started: bool
    files: int
    manifest: str


# --- starting -----------------------------------------------------------------------------------------------


def start_job(
    svc: Services,
    request: ScoreRequest,
    *,
    now: datetime | None = None,
    identity: Sequence[str] = (),
    request_uri: str | None = None,
) -> JobStarted:
    """Start scoring ``request.prefix``; ``identity`` (a request file's bucket, key and version) names the
    job deterministically, else a fresh id does. Refuses (:class:`InvalidRequestError`) a prefix outside
    ``score-inputs/`` or with nothing under it, and (:class:`NotFoundError`) an unknown model or version."""
    bucket, prefix = source_prefix(request.prefix, svc.settings.data_bucket)
    version = (
        svc.registry.get_model_version(request.model, request.version).version
        if request.version is not None
        else svc.registry.get_alias(request.model, PRODUCTION_ALIAS).version
        if _has_production(svc, request.model)
        else None
    )
    if version is None:
        raise NotFoundError(
            f"model {request.model!r} has no production version: promote one, or pin one with --version"
        )
    files = [o for o in svc.objects.list(bucket, prefix) if not o.ref.key.endswith("/")]
    if not files:
        raise InvalidRequestError(f"nothing to score under s3://{bucket}/{prefix}")
    job_id = job_name(request.model, *identity) if identity else job_name(request.model, uuid.uuid4().hex)
    job = ScoreJob(
        job_id=job_id,
        model=request.model,
        version=version,
        bucket=bucket,
        prefix=prefix,
        requested_by=request.requested_by,
        requested_at=now or datetime.now(UTC),
        request_uri=request_uri,
    )
    started = svc.scoring.start(job_id, {"job": job.model_dump(mode="json")})
    logger.info(
        "scoring job started" if started else "scoring job already started",
        extra={"job_id": job_id, "model": job.model, "version": version, "files": len(files)},
    )
    manifest = ObjectRef(svc.settings.data_bucket, manifest_key(job.model, job_id)).uri
    return JobStarted(job=job, started=started, files=len(files), manifest=manifest)


def _has_production(svc: Services, model: str) -> bool:
    try:
        svc.registry.get_alias(model, PRODUCTION_ALIAS)
    except NotFoundError:
        svc.registry.get_registered_model(model)  # an unknown model says so
        return False
    return True


def on_request_files(svc: Services, event: S3Model) -> list[JobStarted | dict[str, Any]]:
    """Start a job for each request file (``score-requests/<model>/<name>.json``); a refused request is
    logged and written beside the job outputs as ``scores/<model>/refused/<name>.error.json``."""
    from urllib.parse import unquote_plus  # noqa: PLC0415

    outcomes: list[JobStarted | dict[str, Any]] = []
    for record in event.Records:
        obj = record.s3.object
        if obj is None:
            continue
        ref = ObjectRef(record.s3.bucket.name, unquote_plus(obj.key), obj.versionId)
        try:
            request = _request_in(svc, ref)
            outcomes.append(
                start_job(
                    svc,
                    request,
                    identity=(ref.bucket, ref.key, obj.versionId or obj.eTag or ""),
                    request_uri=ref.uri,
                )
            )
        except (InvalidRequestError, NotFoundError) as exc:
            outcomes.append(_refuse_request(svc, ref, exc))
    return outcomes


def _request_in(svc: Services, ref: ObjectRef) -> ScoreRequest:
    parts = PurePosixPath(ref.key.removeprefix(DataPrefix.SCORE_REQUESTS.value)).parts
    if len(parts) != 2:
        raise InvalidRequestError(
            f"a request file goes under {DataPrefix.SCORE_REQUESTS}<model>/; got {ref.key}"
        )
    try:
        body = json.loads(svc.objects.get(ref).body)
        if not isinstance(body, dict):
            raise InvalidRequestError(f"{ref.uri}: a request is a JSON object")
        return ScoreRequest.model_validate({"requested_by": "request-file", **body, "model": parts[0]})
    except (ValueError, ValidationError) as exc:
        raise InvalidRequestError(f"{ref.uri}: the request is refused: {exc}") from exc


def _refuse_request(svc: Services, ref: ObjectRef, exc: Exception) -> dict[str, Any]:
    model = PurePosixPath(ref.key.removeprefix(DataPrefix.SCORE_REQUESTS.value)).parts[0]
    refusal = {"request": ref.uri, "error": type(exc).__name__, "message": str(exc)}
    where = ObjectRef(
        svc.settings.data_bucket,
        f"{DataPrefix.SCORES}{model}/refused/{PurePosixPath(ref.key).name}.error.json",
    )
    svc.objects.put(where, json.dumps(refusal, indent=2).encode(), "application/json")
    # "message" is the log record's own field: the reason goes under another name.
    logger.warning(
        "scoring request refused",
        extra={"request": ref.uri, "error": type(exc).__name__, "reason": str(exc), "refusal": where.uri},
    )
    return {**refusal, "refusal": where.uri}


# --- scoring one file ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoringRuntime:
    """What a warm score function keeps: loaded models, and the capture stream."""

    models: ModelCache
    captures: CaptureSink


@warm
@lru_cache(maxsize=1)
def _runtime_for(settings: Settings) -> ScoringRuntime:
    from shared.services import Services  # noqa: PLC0415

    svc = Services(settings)  # its clients are made on first use, after any mock
    return ScoringRuntime(ModelCache(svc.registry, svc.objects), FirehoseCaptureSink(settings.capture_stream))


def score_file(svc: Services, item: ScoreItem, runtime: ScoringRuntime | None = None) -> dict[str, Any]:
    """Score one source object; returns ``{"source", "status", "result"}`` (the outcome's URI), small
    enough for the Map's results however large the file. Scoring the same item twice changes nothing:
    the outcome already written is returned, and no row is captured twice."""
    runtime = runtime or _runtime_for(svc.settings)
    result_ref = ObjectRef(svc.settings.data_bucket, item_result_key(item))
    try:
        done = FileScore.model_validate_json(svc.objects.get(result_ref).body)
    except NotFoundError:
        done = _score(svc, item, runtime)
        svc.objects.put(result_ref, done.model_dump_json(indent=2).encode(), "application/json")
    return {"source": done.source, "status": done.status, "result": result_ref.uri}


def _score(svc: Services, item: ScoreItem, runtime: ScoringRuntime) -> FileScore:
    """The file a column at a time (:mod:`shared.scoring.columnar`): the same rows scored and refused, with
    the same reasons, as checking it row by row against the signature, at a fraction of the cost."""
    source = ObjectRef(item.bucket, item.key)
    served = runtime.models.resolve(item.model, version=item.version)
    try:
        table = read_table(svc.objects.get(source).body, item.key, served.signature)
    except DataValidationError as exc:
        logger.warning("file not scored", extra={"source": source.uri, "reason": str(exc)})
        return FileScore(source=source.uri, etag=item.etag, status="failed", error=str(exc))
    valid = split_valid_columns(served.signature, table)
    scored = len(valid.positions)
    ids = request_ids(item.job_id, item.index, valid.positions)
    inputs = table.take(valid.positions) if valid.failures else table
    predictions, probabilities, sent = _predict_and_capture(runtime, served, valid, ids, inputs)
    output = _write_predictions(svc, item, served, ids, valid.positions, inputs, predictions, probabilities)
    logger.info(
        "file scored",
        extra={
            "source": source.uri,
            "rows": valid.rows_total,
            "scored": scored,
            "failed": len(valid.failures),
        },
    )
    return FileScore(
        source=source.uri,
        etag=item.etag,
        status="scored",
        rows_total=valid.rows_total,
        rows_scored=scored,
        rows_failed=len(valid.failures),
        row_failures=valid.failures[:MAX_LISTED_ROW_FAILURES],
        output=output,
        captures_sent=sent,
        flavor=served.flavor,
    )


def _predict_and_capture(
    runtime: ScoringRuntime, served: ServedModel, valid: ValidColumns, ids: Any, inputs: Any
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The valid rows predicted :data:`PREDICT_CHUNK_ROWS` at a time, each chunk's captures written and
    sent as it is answered: ``(predictions, probabilities (n, classes) or None, captures accepted)``."""
    import numpy as np  # noqa: PLC0415

    predictions: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    sent = 0
    classes = served.classes or []
    total = len(valid.positions)
    for start in range(0, total, PREDICT_CHUNK_ROWS):
        stop = min(start + PREDICT_CHUNK_ROWS, total)
        answered = served.predict_columns({n: v[start:stop] for n, v in valid.features.items()})
        predictions.append(answered.predictions)
        if answered.probabilities is not None:
            probabilities.append(answered.probabilities)
        lines = capture_lines(
            request_ids=ids.slice(start, stop - start),
            model=served.name,
            version=served.version,
            inputs=inputs.slice(start, stop - start),
            predictions=answered.predictions,
            probabilities=(
                {label: answered.probabilities[:, i] for i, label in enumerate(classes)}
                if answered.probabilities is not None
                else None
            ),
            time=datetime.now(UTC),
            source=BATCH_SOURCE,
        )
        sent += runtime.captures.send_lines(lines)
    classification = served.signature.task == "classification"
    if not predictions:
        return (
            np.array([], dtype=object if classification else np.float64),
            np.zeros((0, len(classes))) if classification else None,
            0,
        )
    return (
        np.concatenate(predictions),
        np.concatenate(probabilities) if probabilities else None,
        sent,
    )


def _write_predictions(
    svc: Services,
    item: ScoreItem,
    served: ServedModel,
    ids: Any,
    positions: np.ndarray,
    inputs: Any,
    predictions: np.ndarray,
    probabilities: np.ndarray | None,
) -> OutputFile:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    count = len(positions)
    columns: dict[str, Any] = {
        "request_id": ids.cast(pa.string()),
        "row": pa.array(positions, pa.int64()),
    }
    id_column = served.signature.id_column
    if id_column:
        columns[id_column] = (
            inputs.column(id_column).cast(pa.string())
            if id_column in inputs.column_names
            else pa.nulls(count, pa.string())
        )
    classification = served.signature.task == "classification"
    columns["prediction"] = pa.array(predictions, pa.string() if classification else pa.float64())
    for i, label in enumerate(served.classes or []):
        values: Any = probabilities[:, i] if probabilities is not None and count else []
        columns[f"probability_{label}"] = pa.array(values, pa.float64())
    table = pa.table(columns).replace_schema_metadata(
        {"flywheel.job": item.job_id, "flywheel.model": served.name, "flywheel.version": str(served.version)}
    )
    buffer = io.BytesIO()
    # Dictionary pages for the labels only: request ids are all distinct, and probabilities nearly so, so
    # trying to dictionary-encode them costs most of the write for nothing.
    pq.write_table(table, buffer, use_dictionary=["prediction"])
    body = buffer.getvalue()
    ref = svc.objects.put(
        ObjectRef(svc.settings.data_bucket, output_key(item)), body, "application/vnd.apache.parquet"
    )
    return OutputFile(uri=ObjectRef(ref.bucket, ref.key).uri, sha256=sha256_hex(body), rows=count)


# --- finishing ----------------------------------------------------------------------------------------------


def finish_job(
    svc: Services, job: ScoreJob, items: Sequence[Mapping[str, Any]], now: datetime | None = None
) -> ScoreManifest:
    """Write the manifest from the Map's results (each a file's outcome URI, or the error that lost it) and
    record the job in lineage. Idempotent: the same results write the same manifest and the same links."""
    files = [_file_outcome(svc, job, item) for item in items]
    manifest = build_manifest(job, files, now or datetime.now(UTC))
    body = manifest.model_dump_json(indent=2).encode()
    ref = svc.objects.put(
        ObjectRef(svc.settings.data_bucket, manifest_key(job.model, job.job_id)), body, "application/json"
    )
    _record_lineage(
        svc, manifest, ObjectRef(ref.bucket, ref.key).uri, sha256_hex(body), created=manifest.finished_at
    )
    logger.info(
        "scoring job finished",
        extra={
            "job_id": job.job_id,
            "files_scored": manifest.files_scored,
            "files_failed": manifest.files_failed,
            "rows_scored": manifest.rows_scored,
            "rows_failed": manifest.rows_failed,
        },
    )
    return manifest


def _file_outcome(svc: Services, job: ScoreJob, item: Mapping[str, Any]) -> FileScore:
    source = str(item.get("source") or "")
    uri = source if source.startswith("s3://") else ObjectRef(job.bucket, source).uri
    if "result" in item:
        return FileScore.model_validate_json(svc.objects.get(ObjectRef.parse(str(item["result"]))).body)
    error = item.get("error") or {}
    cause = str(error.get("Cause") or "")
    with contextlib.suppress(ValueError, AttributeError):  # Lambda's error shape: say the message
        cause = str(json.loads(cause).get("errorMessage") or cause)
    return FileScore(source=uri, status="failed", error=f"{error.get('Error', 'Error')}: {cause}"[:1000])


def _record_lineage(svc: Services, manifest: ScoreManifest, uri: str, sha256: str, created: datetime) -> None:
    job_artifact = f"scores:{manifest.model}:{manifest.job_id}"
    svc.metadata.put_artifact(
        Artifact(
            artifact_id=job_artifact,
            kind=ArtifactKind.SCORES,
            uri=uri,
            sha256=sha256,
            created_at=created,
            properties={
                "job_id": manifest.job_id,
                "model": manifest.model,
                "version": manifest.version,
                "prefix": manifest.prefix,
                "files_scored": manifest.files_scored,
                "files_failed": manifest.files_failed,
                "rows_scored": manifest.rows_scored,
                "rows_failed": manifest.rows_failed,
            },
        )
    )
    svc.metadata.link(
        NodeType.MODEL_VERSION,
        model_version_id(manifest.model, manifest.version),
        NodeType.ARTIFACT,
        job_artifact,
        "scored",
    )
    for scored in manifest.files:
        if scored.output is None:
            continue
        output_id = f"{job_artifact}:{PurePosixPath(scored.output.uri).name}"
        svc.metadata.put_artifact(
            Artifact(
                artifact_id=output_id,
                kind=ArtifactKind.SCORES,
                uri=scored.output.uri,
                sha256=scored.output.sha256,
                created_at=created,
                properties={"rows": scored.output.rows, "source": scored.source},
            )
        )
        svc.metadata.link(NodeType.ARTIFACT, job_artifact, NodeType.ARTIFACT, output_id, Relation.OUTPUT)
        svc.metadata.link(
            NodeType.FILE, file_id(scored.source, None), NodeType.ARTIFACT, output_id, Relation.DERIVED
        )


# --- reading jobs back --------------------------------------------------------------------------------------


class JobProgress(BaseModel):
    """How far a job is: files with an outcome so far, rows scored and failed in them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    status: str
    files_done: int
    rows_scored: int
    rows_failed: int
    error: str | None = None


def job_progress(svc: Services, model: str, job_id: str) -> JobProgress:
    """The execution's status and the file outcomes written so far."""
    status = svc.scoring.status(job_id)
    items = svc.objects.list(svc.settings.data_bucket, f"{job_prefix(model, job_id)}items/")
    outcomes = [FileScore.model_validate_json(svc.objects.get(o.ref).body) for o in items]
    return JobProgress(
        job_id=job_id,
        status=status.status,
        files_done=len(outcomes),
        rows_scored=sum(o.rows_scored for o in outcomes),
        rows_failed=sum(o.rows_failed for o in outcomes),
        error=" ".join(filter(None, (status.error, status.cause))) or None,
    )


def read_manifest(svc: Services, model: str, job_id: str) -> ScoreManifest:
    ref = ObjectRef(svc.settings.data_bucket, manifest_key(model, job_id))
    return ScoreManifest.model_validate_json(svc.objects.get(ref).body)


def list_jobs(svc: Services, model: str) -> list[ScoreManifest]:
    """The model's finished jobs, newest first."""
    found = [
        ScoreManifest.model_validate_json(svc.objects.get(o.ref).body)
        for o in svc.objects.list(svc.settings.data_bucket, f"{DataPrefix.SCORES}{model}/")
        if o.ref.key.endswith("/manifest.json")
    ]
    return sorted(found, key=lambda m: m.finished_at, reverse=True)
