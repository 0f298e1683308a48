"""Ingesting one feature-source file: validate it, append it to the offline store, materialise it online.

A file under ``feature-sources/<view>/`` is checked against its view. A bad file is moved under
``quarantine/_feature-sources/<view>/`` with ``<name>.error.json`` listing every problem (like a data file)
and the result says so: nothing is raised, since a retry would fail the same way. A good file is written to
the offline store (one Parquet object per event date, named by the file's digest) and its latest row per
entity is offered to the online store, whose conditional writes keep any newer row. Re-delivering the same
file finds its offline objects in place and offers the same rows again, which the online store already
holds: nothing changes.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Literal

import pandas as pd
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field

from shared.data.quarantine import FileKind, quarantine, quarantine_ref
from shared.data.validation import source_id_of
from shared.errors import DataValidationError
from shared.featurestore.offline import sequence_of, write_offline
from shared.featurestore.online import MaterializeResult, OnlineStore
from shared.featurestore.sources import validate_feature_file
from shared.featurestore.view import FeatureView
from shared.layout import DataPrefix
from shared.metadata import MetadataStore, NodeType, Relation, file_id
from shared.naming import VIEW_NAME
from shared.observability import logger, metrics
from shared.storage import ObjectRef, ObjectStore


class Materialized(BaseModel):
    model_config = ConfigDict(frozen=True)

    entities: int
    written: int
    stale: int


class IngestResult(BaseModel):
    """What ingesting one feature-source file did (JSON-able, for a handler to return)."""

    model_config = ConfigDict(frozen=True)

    view: str
    source: str
    source_version_id: str | None = None
    status: Literal["ingested", "quarantined"]
    rows: int = 0
    duplicates_dropped: int = 0
    offline: list[str] = Field(default_factory=list)  # the objects holding the file's rows
    offline_existing: int = 0  # of those, how many were there already (a re-delivery)
    materialized: Materialized | None = None
    quarantined_as: str | None = None
    problems: list[dict[str, Any]] = Field(default_factory=list)


def source_view(key: str) -> str | None:
    """The view a key under ``feature-sources/<view>/`` delivers to (None for any other key)."""
    prefix = str(DataPrefix.FEATURE_SOURCES)
    parts = key.removeprefix(prefix).split("/", 1) if key.startswith(prefix) else []
    if len(parts) != 2 or not parts[1] or parts[1].endswith("/"):
        return None
    return parts[0] if re.match(VIEW_NAME, parts[0]) else None


def ingest_feature_file(
    objects: ObjectStore,
    online: OnlineStore,
    view: FeatureView,
    source: ObjectRef,
    *,
    metadata: MetadataStore | None = None,
    delivered_at: datetime | None = None,
) -> IngestResult:
    """Validate, store offline and materialise one feature-source file (see the module docstring).

    ``delivered_at`` (default: the object's last-modified time) orders this file's rows after those of
    files delivered earlier when an entity has two rows with the same event time. With ``metadata``, each
    offline object is linked in lineage as derived from the source object version."""
    stored = objects.get(source)
    ref = stored.ref
    try:
        data = validate_feature_file(stored.body, PurePosixPath(ref.key).name, view)
    except DataValidationError as exc:
        moved = quarantine_feature_file(objects, view.view, ref, exc)
        return IngestResult(
            view=view.view,
            source=ref.uri,
            source_version_id=ref.version_id,
            status="quarantined",
            quarantined_as=moved.uri,
            problems=list(exc.problems),
        )
    digest = source_id_of(stored.body)
    sequence = sequence_of(delivered_at or stored.last_modified, digest)
    parts = write_offline(objects, ref.bucket, view, data.frame, digest, sequence)
    outcome: MaterializeResult = online.materialize(view, pd.concat([p.rows for p in parts]))
    if metadata is not None:
        for part in parts:
            metadata.link(
                NodeType.FILE,
                file_id(ref.uri, ref.version_id),
                NodeType.FILE,
                file_id(part.ref.uri, part.ref.version_id),
                Relation.DERIVED,
            )
    existing = sum(p.existed for p in parts)
    metrics.add_metric(name="FeatureRowsIngested", unit=MetricUnit.Count, value=data.rows)
    metrics.add_metric(name="FeatureValuesMaterialized", unit=MetricUnit.Count, value=outcome.written)
    logger.info(
        "feature file ingested",
        extra={
            "view": view.view,
            "source": ref.uri,
            "rows": data.rows,
            "offline_objects": len(parts),
            "already_stored": existing,
            "written_online": outcome.written,
            "stale": outcome.stale,
        },
    )
    return IngestResult(
        view=view.view,
        source=ref.uri,
        source_version_id=ref.version_id,
        status="ingested",
        rows=data.rows,
        duplicates_dropped=data.duplicates_dropped,
        offline=[p.ref.uri for p in parts],
        offline_existing=existing,
        materialized=Materialized(entities=outcome.entities, written=outcome.written, stale=outcome.stale),
    )


def quarantine_feature_file(
    objects: ObjectStore, view: str | None, source: ObjectRef, error: DataValidationError
) -> ObjectRef:
    """Refuse a feature-source file: moved under ``quarantine/_feature-sources/<view>/`` (``_unrouted``
    for a key that names no view) beside its ``.error.json`` (:mod:`shared.data.quarantine`)."""
    relative = source.key.removeprefix(f"{DataPrefix.FEATURE_SOURCES}{view}/") if view else source.key
    destination = quarantine_ref(FileKind.FEATURE_SOURCE, source.bucket, view, relative)
    refusal = quarantine(objects, source, destination, error, kind=FileKind.FEATURE_SOURCE, view=view)
    return ObjectRef.parse(refusal.quarantined_as, refusal.quarantined_version_id)
