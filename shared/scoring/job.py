"""A scoring job's records and the pure rules behind them: no AWS, no model loading.

- :class:`ScoreRequest` is what a person (``flywheel score``) or a request file under
  ``score-requests/<model>/`` asks; :class:`ScoreJob` is the execution's input once the version is fixed;
  :class:`ScoreItem` is one Distributed Map iteration (one source object).
- :func:`read_rows` turns a CSV or Parquet object into request rows the serving signature checks, refusing
  a file whose columns cannot fit the model (:class:`~shared.errors.DataValidationError`, a failed file).
- :func:`split_valid_rows` checks every row and keeps the valid ones: a batch file is scored row by row, so a
  bad row is counted and reported with its reasons instead of refusing the file, as ``predict`` would.
- :func:`build_manifest` sums the files' outcomes into the job's manifest.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import DataValidationError, InvalidRequestError
from shared.hashing import sha256_hex
from shared.layout import DataPrefix
from shared.naming import MODEL_NAME

if TYPE_CHECKING:
    from shared.serving.runtime import Signature

# What a job's files may be, by suffix; anything else under the prefix is a failed file, with the reason.
READABLE_SUFFIXES = (".csv", ".parquet")
# How many row failures a file's outcome lists (all are counted); the manifest stays small.
MAX_LISTED_ROW_FAILURES = 100
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9-]")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScoreRequest(_Record):
    """Score every object under ``prefix`` (``s3://<data bucket>/score-inputs/...``) with ``version`` of
    ``model``, or with its production version when no version is given."""

    request: Literal["score"] = "score"
    model: str = Field(pattern=MODEL_NAME)
    prefix: str
    version: int | None = Field(default=None, ge=1)
    requested_by: str = "cli"


class ScoreJob(_Record):
    """A started job: the execution's input. The version is fixed when the job starts, so a promotion
    during the job never mixes two versions in one job's outputs."""

    job_id: str
    model: str
    version: int
    bucket: str
    prefix: str
    requested_by: str
    requested_at: datetime
    request_uri: str | None = None  # the request file, for a job a dropped file started


class ScoreItem(_Record):
    """One source object of a job, as the Distributed Map hands it to the score function."""

    job_id: str
    model: str
    version: int
    bucket: str
    prefix: str
    key: str
    etag: str = ""
    index: int = Field(ge=0)


class RowFailure(_Record):
    row: int  # 0-based position in the source file
    problems: list[str]


class OutputFile(_Record):
    uri: str
    sha256: str
    rows: int


class FileScore(_Record):
    """What scoring one source object came to: its predictions file, or why it has none."""

    source: str
    etag: str = ""
    status: Literal["scored", "failed"]
    rows_total: int = 0
    rows_scored: int = 0
    rows_failed: int = 0
    row_failures: list[RowFailure] = Field(default_factory=list)
    error: str | None = None
    output: OutputFile | None = None
    captures_sent: int = 0
    flavor: str | None = None  # the serving flavour that scored it (onnx or sklearn)


class ScoreManifest(_Record):
    """``scores/<model>/<job>/manifest.json``: the version scored, every file's outcome and the totals."""

    job_id: str
    model: str
    version: int
    flavor: str | None = None
    prefix: str
    requested_by: str
    requested_at: datetime
    finished_at: datetime
    request_uri: str | None = None
    files_total: int
    files_scored: int
    files_failed: int
    rows_scored: int
    rows_failed: int
    files: list[FileScore]
    outputs: list[OutputFile]


# --- names and places ---------------------------------------------------------------------------------------


def job_name(model: str, *identity: str) -> str:
    """``score-<model>-<digest>``: the job id and execution name (at most 80 of ``[A-Za-z0-9-]``); the
    same identity (a request file's bucket, key and version) always names the same job."""
    digest = sha256_hex("\x1f".join(identity).encode())[:20]
    return f"{_NAME_UNSAFE.sub('-', f'score-{model}')[:58]}-{digest}"


def job_prefix(model: str, job_id: str) -> str:
    return f"{DataPrefix.SCORES}{model}/{job_id}/"


def manifest_key(model: str, job_id: str) -> str:
    return f"{job_prefix(model, job_id)}manifest.json"


def relative_name(prefix: str, key: str) -> str:
    """The object's name below the job's prefix, ``/`` kept out so every output sits in the job's folder."""
    return key.removeprefix(prefix).strip("/").replace("/", "_") or PurePosixPath(key).name


def output_key(item: ScoreItem) -> str:
    return f"{job_prefix(item.model, item.job_id)}{relative_name(item.prefix, item.key)}.parquet"


def item_result_key(item: ScoreItem) -> str:
    return f"{job_prefix(item.model, item.job_id)}items/{relative_name(item.prefix, item.key)}.json"


def request_id(job_id: str, index: int, row: int) -> str:
    """A scored row's id: the job, the file's place in the listing, the row's place in the file."""
    return f"{job_id}-{index:05d}-{row:07d}"


def source_prefix(uri: str, data_bucket: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of a job's source; it must lie under ``score-inputs/`` in the data bucket,
    the one place the score function may read (its least-privilege grant)."""
    if not uri.startswith("s3://"):
        raise InvalidRequestError(f"the prefix must be an s3:// URI, got {uri!r}")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if bucket != data_bucket or not prefix.startswith(DataPrefix.SCORE_INPUTS.value):
        raise InvalidRequestError(
            f"batch scoring reads s3://{data_bucket}/{DataPrefix.SCORE_INPUTS}... only; got {uri!r}",
            problems=[f"copy the files under s3://{data_bucket}/{DataPrefix.SCORE_INPUTS}<folder>/"],
        )
    return bucket, prefix


# --- reading and checking rows ------------------------------------------------------------------------------


def read_rows(body: bytes, name: str, signature: Signature) -> list[dict[str, Any]]:
    """The file's rows as request rows (:func:`read_table`'s rows, one dict each)."""
    rows: list[dict[str, Any]] = read_table(body, name, signature).to_pylist()
    return rows


def read_table(body: bytes, name: str, signature: Signature) -> Any:
    """The file as an Arrow table of request columns. Categorical features are read as text (a CSV's ``3``
    is the category ``"3"``, as in training); the target column, if the file has it, is left out. A file
    that cannot be parsed, or whose columns cannot fit the model, is a :class:`DataValidationError`."""
    import pyarrow as pa  # noqa: PLC0415  (the score function pays for pyarrow; predict does not)

    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in READABLE_SUFFIXES:
        raise DataValidationError(
            f"{name}: not a CSV or Parquet file", problems=[f"suffix {suffix or '(none)'}"]
        )
    text_columns = {f.name: pa.string() for f in signature.features if f.type == "categorical"}
    if signature.id_column:
        text_columns[signature.id_column] = pa.string()
    try:
        if suffix == ".csv":
            from pyarrow import csv  # noqa: PLC0415

            table = csv.read_csv(
                io.BytesIO(body), convert_options=csv.ConvertOptions(column_types=text_columns)
            )
        else:
            import pyarrow.parquet as pq  # noqa: PLC0415

            table = pq.read_table(io.BytesIO(body))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataValidationError(f"{name}: cannot be read: {exc}", problems=[str(exc)[:300]]) from exc
    problems = column_problems(table.column_names, signature)
    if problems:
        raise DataValidationError(f"{name}: {'; '.join(problems)}", problems=problems)
    if signature.target and signature.target in table.column_names:
        table = table.drop_columns([signature.target])
    table = _times_as_text(table)
    for column, kind in text_columns.items():
        if column in table.column_names and not pa.types.is_string(table.schema.field(column).type):
            table = table.set_column(
                table.column_names.index(column), column, table.column(column).cast(kind)
            )
    return table


def _times_as_text(table: Any) -> Any:
    """Date and time columns (the timestamp column, passed through) as ISO text, as a JSON request carries
    them: a capture serialises text in a fraction of the time a pandas Timestamp takes."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) or pa.types.is_date(field.type):
            text = pc.replace_substring(_time_text(table.column(index)), " ", "T")
            table = table.set_column(index, field.name, text)
    return table


def _time_text(column: Any) -> Any:
    """Arrow's text of a date or time column. A UTC timestamp is written as its naive twin and a ``Z``,
    exactly what Arrow writes for it, without looking every value up in the time zone database (which
    takes most of a file's reading time)."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    kind = column.type
    if pa.types.is_timestamp(kind) and kind.tz == "UTC":
        naive = pc.cast(column, pa.timestamp(kind.unit))
        return pc.binary_join_element_wise(pc.cast(naive, pa.string()), "Z", "")
    return pc.cast(column, pa.string())


def column_problems(columns: Sequence[str], signature: Signature) -> list[str]:
    """Why these columns cannot be scored: features the model needs that are absent (and may not be
    missing), and columns the model does not know. Empty when the file fits."""
    known = {
        *signature.feature_names,
        *signature.passthrough,
        *((signature.target,) if signature.target else ()),
    }
    problems = []
    absent = [f.name for f in signature.features if f.name not in columns and not f.nullable]
    if absent:
        problems.append(f"missing feature column(s) {absent}")
    unknown = [c for c in columns if c not in known]
    if unknown:
        problems.append(f"column(s) {unknown} are not features of the model")
    return problems


def split_valid_rows(
    signature: Signature, rows: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[int], list[RowFailure]]:
    """``(prepared, positions, failures)``: the valid rows prepared as ``predict`` prepares them, their
    positions in ``rows``, and each invalid row with every problem it has."""
    prepared, problems = signature.validate_rows(rows)
    if not problems:
        return prepared, list(range(len(rows))), []
    by_row: dict[int, list[str]] = defaultdict(list)
    for problem in problems:
        by_row[problem.row].append(
            f"{problem.field}: {problem.problem}" if problem.field else problem.problem
        )
    positions = [i for i in range(len(rows)) if i not in by_row]
    valid, _ = signature.validate_rows([rows[i] for i in positions])
    failures = [RowFailure(row=row, problems=found) for row, found in sorted(by_row.items())]
    return valid, positions, failures


# --- the manifest -------------------------------------------------------------------------------------------


def build_manifest(job: ScoreJob, files: Sequence[FileScore], finished_at: datetime) -> ScoreManifest:
    """The job's manifest: every file (in source order), the outputs with their sha256, and the totals."""
    ordered = sorted(files, key=lambda f: f.source)
    outputs = [f.output for f in ordered if f.output is not None]
    flavor = next((f.flavor for f in ordered if f.flavor), None)
    return ScoreManifest(
        job_id=job.job_id,
        model=job.model,
        version=job.version,
        flavor=flavor,
        prefix=f"s3://{job.bucket}/{job.prefix}",
        requested_by=job.requested_by,
        requested_at=job.requested_at,
        finished_at=finished_at,
        request_uri=job.request_uri,
        files_total=len(ordered),
        files_scored=sum(1 for f in ordered if f.status == "scored"),
        files_failed=sum(1 for f in ordered if f.status == "failed"),
        rows_scored=sum(f.rows_scored for f in ordered),
        rows_failed=sum(f.rows_failed for f in ordered),
        files=list(ordered),
        outputs=outputs,
    )
