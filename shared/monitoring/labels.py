"""Labels: the ground truth that arrives after a prediction, joined to its capture by request id.

A label file lands under ``labels/<model>/`` (CSV or Parquet, read as a data file is: the same formats,
size limit and refusals): one row per answered request, with the columns ``request_id`` (as the prediction
API returned it), the contract's target, and optionally ``time`` (when the outcome was observed, ISO 8601;
kept with the label, never used as a feature). The ``labels`` function checks it:

- **file level** — the file is quarantined under ``quarantine/<model>/labels/`` with ``<name>.error.json``
  listing every problem, exactly as a rejected data file is: unreadable, empty or too large; a duplicated,
  missing (``request_id``, the target) or unexpected column; a header without rows; no usable row at all.
  A file under ``labels/`` that names no model goes to ``quarantine/_unrouted/labels/``;
- **row level** — the row is left out and reported, the rest is accepted: an empty request id
  (``null_not_allowed``), a request id given more than once (``duplicate_id``: all its rows, since which
  one is right cannot be told), an empty label (``missing_target``), a label that is not one of the
  contract's ``target_values`` or, for regression, not a finite number (``invalid_target``), a ``time`` that
  is not ISO 8601 (``bad_timestamp``).

Accepted labels are *stored*, not recorded in the metadata store: ``labels-accepted/<model>/<id>.parquet``
holds the accepted rows (``request_id``, the target in the canonical form validation gives it — classes as
text, regression values as float64 — and ``time``), with the source file's URI, S3 version and counts in the
Parquet schema's metadata; ``<id>.report.json`` beside it lists the rows left out, rule by rule. The label set
id comes from the source object's URI and S3 version, so a re-delivered event finds its label set there and
writes nothing twice (nor quarantines twice). The monitor lists ``labels-accepted/<model>/`` for the label
sets it has not read yet (:mod:`shared.monitoring.window`) and joins them to the captures by request id;
lineage then runs from the source label file to the feedback dataset and the monitor run that used it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote_plus

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.models import S3Model
from pydantic import BaseModel, ConfigDict, Field

from shared.data.catalog import load_contract
from shared.data.contract import DataContract, Task
from shared.data.quarantine import FileKind, Refusal, quarantine, quarantine_ref, read_refusal, refused
from shared.data.validation import (
    MAX_EXAMPLES,
    ColumnChecks,
    Problem,
    Rulebook,
    canonical_text,
    check_header,
    clean,
    read_upload,
    rejection,
)
from shared.errors import ContractError, DataValidationError, FlywheelError, NotFoundError
from shared.hashing import sha256_hex
from shared.layout import DataPrefix
from shared.observability import logger, metrics
from shared.services import Services
from shared.storage import ObjectRef

LABEL_ID_COLUMN = "request_id"
LABEL_TIME_COLUMN = "time"
PARQUET_SUFFIX = ".parquet"
REPORT_SUFFIX = ".report.json"
_METADATA_KEY = b"flywheel.labels"


# --- checking a label file (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ValidatedLabels:
    """The usable rows of a label file, and the problems of the rows left out.

    ``frame`` has ``request_id`` (text), the contract's target (canonical) and ``time`` (UTC, NaT when the
    file has no time)."""

    frame: pd.DataFrame
    rows_read: int
    problems: list[Problem]

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def rejected(self) -> int:
        return self.rows_read - self.rows


def label_rulebook(contract: DataContract) -> Rulebook:
    """What a label file is checked against, as messages name it; the contract's size limit."""
    return Rulebook(
        owner=f"the label format for '{contract.model}'",
        document="label format",
        title=f"the label format for '{contract.model}'",
        max_file_mb=contract.max_file_mb,
        unexpected_remedy=(
            f"a label file has '{LABEL_ID_COLUMN}', '{contract.target}' and optionally "
            f"'{LABEL_TIME_COLUMN}'; remove it from the file"
        ),
    )


def label_columns(contract: DataContract) -> list[str]:
    """The columns a label file must have; ``time`` may be added."""
    return [LABEL_ID_COLUMN, contract.target]


def validate_labels(body: bytes, filename: str, contract: DataContract) -> ValidatedLabels:
    """Read and check a label file: its usable rows, or :class:`DataValidationError` listing every problem
    when the file cannot be used at all."""
    rulebook = label_rulebook(contract)
    frame = read_upload(body, filename, rulebook)
    labels, problems = check_labels(frame, contract)
    if labels is None:
        raise rejection(filename, rulebook, problems)
    return labels


def check_labels(frame: pd.DataFrame, contract: DataContract) -> tuple[ValidatedLabels | None, list[Problem]]:
    """``(labels, row problems)`` when some rows are usable; ``(None, problems)`` when the file is not."""
    roles = {
        LABEL_ID_COLUMN: "the request id the prediction API returned (it joins a label to its prediction)",
        contract.target: "the label of each request",
    }
    checked, problems = check_header(
        frame,
        label_columns(contract),
        label_rulebook(contract),
        role_of=roles.__getitem__,
        target=contract.target,
        tolerated=frozenset({LABEL_TIME_COLUMN}),
    )
    if checked is None or problems:
        return None, problems
    frame = checked
    rows = len(frame)
    ids = canonical_text(clean(frame[LABEL_ID_COLUMN]))
    target, target_faults = _target(clean(frame[contract.target]), contract)
    faults: list[tuple[pd.Series, Problem]] = []
    missing_id = ids.isna()
    faults.append(
        _fault(
            missing_id,
            LABEL_ID_COLUMN,
            "null_not_allowed",
            _row_examples(missing_id),
            f"Column '{LABEL_ID_COLUMN}' is empty in {int(missing_id.sum())} row(s); every label needs the "
            "request id the prediction API returned.",
        )
    )
    repeated = ids.duplicated(keep=False) & ~missing_id
    faults.append(
        _fault(
            repeated,
            LABEL_ID_COLUMN,
            "duplicate_id",
            _value_examples(ids[repeated]),
            f"{int(ids[repeated].nunique())} request id(s) are labelled more than once across "
            f"{int(repeated.sum())} rows; which label is right cannot be told, so all of them are left out "
            "(send one label per request id).",
        )
    )
    faults += target_faults
    stamps = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    if LABEL_TIME_COLUMN in frame.columns:
        raw = clean(frame[LABEL_TIME_COLUMN])
        stamps = ColumnChecks([]).timestamps(LABEL_TIME_COLUMN, raw)
        bad_time = raw.notna() & stamps.isna()
        faults.append(
            _fault(
                bad_time,
                LABEL_TIME_COLUMN,
                "bad_timestamp",
                _value_examples(raw[bad_time]),
                f"Column '{LABEL_TIME_COLUMN}' has {int(bad_time.sum())} value(s) that are not ISO 8601 "
                "times such as 2026-05-01T12:00:00Z.",
            )
        )
    found = [(mask, problem) for mask, problem in faults if bool(mask.any())]
    usable = pd.Series(True, index=frame.index)
    for mask, _ in found:
        usable &= ~mask
    row_problems = [problem for _, problem in found]
    if not usable.any():
        nothing = Problem(
            column=None,
            rule="no_usable_rows",
            count=rows,
            examples=[],
            message=f"None of the file's {rows} row(s) can be used (see the other problems).",
        )
        return None, [*row_problems, nothing]
    accepted = pd.DataFrame(
        {
            LABEL_ID_COLUMN: ids[usable].astype("str"),
            contract.target: target[usable],
            LABEL_TIME_COLUMN: stamps[usable],
        }
    ).reset_index(drop=True)
    return ValidatedLabels(frame=accepted, rows_read=rows, problems=row_problems), row_problems


def _target(values: pd.Series, contract: DataContract) -> tuple[pd.Series, list[tuple[pd.Series, Problem]]]:
    """The target in canonical form, and its faults (empty labels, labels that are not valid)."""
    name = contract.target
    missing = values.isna()
    faults = [
        _fault(
            missing,
            name,
            "missing_target",
            _row_examples(missing),
            f"The target column '{name}' is empty in {int(missing.sum())} row(s); a label file carries the "
            "label of every request it lists.",
        )
    ]
    if contract.task is Task.REGRESSION:
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        invalid = ~missing & ~np.isfinite(numbers)
        faults.append(
            _fault(
                invalid,
                name,
                "invalid_target",
                _value_examples(values[invalid]),
                f"The target column '{name}' has {int(invalid.sum())} value(s) that are not finite numbers.",
            )
        )
        return numbers, faults
    labels = canonical_text(values)
    if contract.target_values is not None:
        classes = set(canonical_text(pd.Series(list(contract.target_values), dtype="str")))
        invalid = ~missing & ~labels.isin(classes)
        faults.append(
            _fault(
                invalid,
                name,
                "invalid_target",
                _value_examples(labels[invalid]),
                f"The target column '{name}' has {int(invalid.sum())} value(s) that are not classes of the "
                f"contract; expected one of {', '.join(repr(v) for v in contract.target_values)}.",
            )
        )
    return labels, faults


def _fault(
    mask: pd.Series, column: str, rule: str, examples: list[str], message: str
) -> tuple[pd.Series, Problem]:
    mask = mask.fillna(False).astype(bool)
    return mask, Problem(column=column, rule=rule, count=int(mask.sum()), examples=examples, message=message)


def _row_examples(mask: pd.Series) -> list[str]:
    return [f"row {int(i) + 1}" for i in mask[mask.fillna(False).astype(bool)].index[:MAX_EXAMPLES]]


def _value_examples(values: pd.Series) -> list[str]:
    return [str(v)[:60] for v in pd.unique(values.astype(object))[:MAX_EXAMPLES]]


# --- the stored label set -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LabelSet:
    """One accepted label file as the monitor reads it back."""

    label_set_id: str
    uri: str
    source_uri: str
    source_version_id: str | None
    frame: pd.DataFrame


def label_set_id(model: str, source: ObjectRef) -> str:
    """The label set a source object version becomes: the same version always maps to the same id."""
    identity = f"{source.uri}#{source.version_id or ''}"
    return f"{model}-labels-{sha256_hex(identity.encode())[:16]}"


def accepted_prefix(model: str) -> str:
    return f"{DataPrefix.LABELS_ACCEPTED}{model}/"


def labels_to_parquet(frame: pd.DataFrame, info: dict[str, Any]) -> bytes:
    """The accepted rows as Parquet, with ``info`` (source, version, counts) in the schema's metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), _METADATA_KEY: json.dumps(info, sort_keys=True).encode()}
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buffer)
    return buffer.getvalue()


def parse_label_set(body: bytes, uri: str) -> LabelSet:
    """An accepted label set from its Parquet bytes (:func:`labels_to_parquet`)."""
    table = pq.read_table(io.BytesIO(body))
    info: dict[str, Any] = json.loads((table.schema.metadata or {}).get(_METADATA_KEY, b"{}"))
    return LabelSet(
        label_set_id=str(info.get("label_set_id") or PurePosixPath(uri).stem),
        uri=uri,
        source_uri=str(info.get("source") or uri),
        source_version_id=info.get("source_version_id"),
        frame=table.to_pandas(),
    )


# --- accepting a file that arrived (I/O) --------------------------------------------------------------------


class LabelOutcome(BaseModel):
    """What became of one label file."""

    model_config = ConfigDict(frozen=True)

    model: str
    source: str
    source_version_id: str | None = None
    accepted: bool
    label_set_id: str | None = None
    accepted_uri: str | None = None
    report_uri: str | None = None
    rows: int = 0
    rejected_rows: int = 0
    problems: list[dict[str, Any]] = Field(default_factory=list)
    quarantined_as: str | None = None
    duplicate: bool = False
    detail: str = ""

    @classmethod
    def refused(
        cls, model: str, refusal: Refusal, *, duplicate: bool = False, detail: str | None = None
    ) -> LabelOutcome:
        """A refused file's outcome, from the refusal written beside it in quarantine."""
        return cls(
            model=model,
            source=refusal.source,
            source_version_id=refusal.source_version_id,
            accepted=False,
            problems=refusal.problems,
            quarantined_as=refusal.quarantined_as,
            duplicate=duplicate,
            detail=refusal.summary if detail is None else detail,
        )


def accepted_refs(bucket: str, model: str, set_id: str) -> tuple[ObjectRef, ObjectRef]:
    """Where a label set's Parquet and its report are written."""
    stem = f"{accepted_prefix(model)}{set_id}"
    return ObjectRef(bucket, f"{stem}{PARQUET_SUFFIX}"), ObjectRef(bucket, f"{stem}{REPORT_SUFFIX}")


def accept_label_file(svc: Services, bucket: str, key: str, version_id: str | None) -> LabelOutcome:
    """Check a file that landed under ``labels/``; store its usable rows, or quarantine it with reasons.

    Idempotent: a second delivery of the same object version finds the label set (or the quarantine
    report) it made and changes nothing."""
    relative = key.removeprefix(str(DataPrefix.LABELS))
    model, _, name = relative.partition("/")
    source = ObjectRef(bucket, key, version_id)
    if not model or not name:
        detail = f"{key} is not under labels/<model>/: upload it as labels/<model>/<file>"
        return _quarantine(svc, source, "", PurePosixPath(key).name, refused("unrouted", detail))
    set_id = label_set_id(model, source)
    parquet, report = accepted_refs(bucket, model, set_id)
    earlier = _earlier_outcome(svc, model, source, name, set_id, parquet, report)
    if earlier is not None:
        return earlier
    try:
        contract = load_contract(svc.objects, svc.settings, model)
        labels = validate_labels(svc.objects.get(source).body, PurePosixPath(key).name, contract)
    except (DataValidationError, ContractError) as exc:
        return _quarantine(svc, source, model, name, exc)
    problems = [p.model_dump() for p in labels.problems]
    info = {
        "label_set_id": set_id,
        "model": model,
        "source": source.uri,
        "source_version_id": version_id,
        "rows": labels.rows,
        "rejected_rows": labels.rejected,
        "accepted_at": datetime.now(UTC).isoformat(),
    }
    written_report = svc.objects.put(
        report, json.dumps({**info, "problems": problems}, indent=2).encode(), "application/json"
    )
    # The Parquet last: its presence is what says the file was accepted, to the monitor and to a redelivery.
    written = svc.objects.put(parquet, labels_to_parquet(labels.frame, info))
    metrics.add_metric(name="LabelsAccepted", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="LabelRowsAccepted", unit=MetricUnit.Count, value=labels.rows)
    if labels.rejected:
        metrics.add_metric(name="LabelRowsRejected", unit=MetricUnit.Count, value=labels.rejected)
    logger.info(
        "labels accepted",
        extra={
            "source": source.uri,
            "label_set_id": set_id,
            "rows": labels.rows,
            "rejected": labels.rejected,
        },
    )
    return LabelOutcome(
        model=model,
        source=source.uri,
        source_version_id=version_id,
        accepted=True,
        label_set_id=set_id,
        accepted_uri=written.uri,
        report_uri=written_report.uri,
        rows=labels.rows,
        rejected_rows=labels.rejected,
        problems=problems,
        detail=f"{labels.rows} label(s) accepted"
        + (f", {labels.rejected} row(s) left out" if labels.rejected else ""),
    )


def _earlier_outcome(
    svc: Services,
    model: str,
    source: ObjectRef,
    name: str,
    set_id: str,
    parquet: ObjectRef,
    report: ObjectRef,
) -> LabelOutcome | None:
    """What an earlier delivery of the same object version did, if anything."""
    try:
        svc.objects.head(parquet)
    except NotFoundError:
        pass
    else:
        return LabelOutcome(
            model=model,
            source=source.uri,
            source_version_id=source.version_id,
            accepted=True,
            label_set_id=set_id,
            accepted_uri=parquet.uri,
            report_uri=report.uri,
            duplicate=True,
            detail="already accepted by an earlier delivery of the same event",
        )
    earlier = read_refusal(svc.objects, quarantine_ref(FileKind.LABELS, source.bucket, model or None, name))
    if earlier is None or earlier.source != source.uri or earlier.source_version_id != source.version_id:
        return None
    detail = "already quarantined by an earlier delivery of the same event"
    return LabelOutcome.refused(model, earlier, duplicate=True, detail=detail)


def _quarantine(
    svc: Services, source: ObjectRef, model: str, name: str, error: FlywheelError
) -> LabelOutcome:
    """Refuse the file: moved under ``quarantine/<model>/labels/`` beside its ``.error.json``."""
    refusal = quarantine(
        svc.objects,
        source,
        quarantine_ref(FileKind.LABELS, source.bucket, model or None, name),
        error,
        kind=FileKind.LABELS,
        model=model or None,
    )
    return LabelOutcome.refused(model, refusal)


def on_label_files(svc: Services, event: S3Model) -> list[LabelOutcome]:
    """Every label file an S3 event announces (keys arrive URL-encoded, as S3 sends them)."""
    outcomes = []
    for record in event.Records:
        obj = record.s3.object
        if obj is None:
            continue
        try:
            outcomes.append(
                accept_label_file(svc, record.s3.bucket.name, unquote_plus(obj.key), obj.versionId)
            )
        except FlywheelError as exc:
            if isinstance(exc, NotFoundError):
                # The object was removed before its event arrived: there is nothing left to check.
                logger.warning("label file gone before its event", extra={"key": obj.key, "error": str(exc)})
                continue
            raise
    return outcomes
