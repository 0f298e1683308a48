"""The one way a file is refused: moved under ``quarantine/`` with ``<name>.error.json`` beside it.

Every refusal goes through :func:`quarantine` — a data file that breaks its contract (Validate), a label
file (the ``labels`` function), a feature-source file (the ``features`` function), and a file that names
no model or view (the trigger, and both of those) — so the report a user reads always has one schema,
:class:`Refusal` (the README's "Quarantine" section lists its fields). The bucket is versioned: the move
leaves the original version recoverable, and nothing is lost.

Where a refused file goes, by kind (``_unrouted`` when the key names no model or view; no model or view
name starts with ``_``, so these never mix with a model's own)::

    data            quarantine/<model>/<path under incoming/<model>/>
    labels          quarantine/<model>/labels/<path under labels/<model>/>
    feature-source  quarantine/_feature-sources/<view>/<path under feature-sources/<view>/>
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict

from shared.errors import DataValidationError, FlywheelError, NotFoundError
from shared.layout import DataPrefix
from shared.observability import logger, metrics
from shared.storage import ObjectRef, ObjectStore

ERROR_SUFFIX: Final = ".error.json"
UNROUTED: Final = "_unrouted"
FEATURE_SOURCES: Final = "_feature-sources"


class FileKind(StrEnum):
    DATA = "data"
    LABELS = "labels"
    FEATURE_SOURCE = "feature-source"


# Each kind keeps the metric and log line it has always had: dashboards and alarms count them.
_METRIC: Final = {
    FileKind.DATA: "FileQuarantined",
    FileKind.LABELS: "LabelFileQuarantined",
    FileKind.FEATURE_SOURCE: "FeatureFileQuarantined",
}
_LOG: Final = {
    FileKind.DATA: "file quarantined",
    FileKind.LABELS: "label file quarantined",
    FileKind.FEATURE_SOURCE: "feature file quarantined",
}


class Refusal(BaseModel):
    """``<name>.error.json``: what was refused, where it went and every reason."""

    model_config = ConfigDict(frozen=True)

    kind: FileKind
    model: str | None = None  # the model a data or label file is for; None when its key names none
    view: str | None = None  # the view a feature-source file is for
    source: str
    source_version_id: str | None = None
    quarantined_as: str
    quarantined_version_id: str | None = None
    run_id: str | None = None  # the run that refused it (data files)
    at: datetime
    error: str  # the error's class name, as the run records it (DataValidationError, ContractError)
    summary: str  # the error's message: every problem, in sentences
    problems: list[dict[str, Any]]  # each {column, rule, count, examples, message} where the rules give one


def refused(rule: str, message: str) -> DataValidationError:
    """The error for a file refused for one reason that no rulebook holds (its key names no model, say)."""
    return DataValidationError(
        message, problems=[{"column": None, "rule": rule, "count": 0, "examples": [], "message": message}]
    )


def quarantine_ref(kind: FileKind, bucket: str, owner: str | None, relative: str) -> ObjectRef:
    """Where a refused file goes: ``owner`` is the model (data, labels) or view (feature sources) its key
    names, None when it names none; ``relative`` is its path under that model's or view's folder."""
    folder = owner or UNROUTED
    prefix = {
        FileKind.DATA: f"{folder}/",
        FileKind.LABELS: f"{folder}/labels/",
        FileKind.FEATURE_SOURCE: f"{FEATURE_SOURCES}/{folder}/",
    }[kind]
    return ObjectRef(bucket, f"{DataPrefix.QUARANTINE}{prefix}{relative}")


def report_ref(destination: ObjectRef) -> ObjectRef:
    """The ``.error.json`` beside a quarantined file."""
    return ObjectRef(destination.bucket, f"{destination.key}{ERROR_SUFFIX}")


def quarantine(
    objects: ObjectStore,
    source: ObjectRef,
    destination: ObjectRef,
    error: FlywheelError,
    *,
    kind: FileKind,
    model: str | None = None,
    view: str | None = None,
    run_id: str | None = None,
) -> Refusal:
    """Move ``source`` to ``destination`` and write the :class:`Refusal` beside it; returns the refusal."""
    moved = objects.move(source, destination)
    refusal = Refusal(
        kind=kind,
        model=model,
        view=view,
        source=source.uri,
        source_version_id=source.version_id,
        quarantined_as=moved.uri,
        quarantined_version_id=moved.version_id,
        run_id=run_id,
        at=datetime.now(UTC),
        error=type(error).__name__,
        summary=str(error),
        problems=[p if isinstance(p, dict) else {"message": str(p)} for p in error.problems],
    )
    body = json.dumps(refusal.model_dump(mode="json"), indent=2, sort_keys=True, default=str).encode()
    objects.put(report_ref(destination), body, "application/json")
    metrics.add_metric(name=_METRIC[kind], unit=MetricUnit.Count, value=1)
    logger.warning(
        _LOG[kind],
        extra={"source": source.uri, "to": moved.uri, "problems": len(refusal.problems), "view": view},
    )
    return refusal


def read_refusal(objects: ObjectStore, destination: ObjectRef) -> Refusal | None:
    """The refusal written beside ``destination``, if a file was quarantined there."""
    try:
        return Refusal.model_validate_json(objects.get(report_ref(destination)).body)
    except NotFoundError:
        return None
