"""The ``features`` function's work: every feature-source file an S3 event announces, ingested.

A file under ``feature-sources/<view>/`` is checked against the stored view and ingested
(:func:`~shared.featurestore.ingest.ingest_feature_file`: the offline store, then the online table with its
conditional writes, lineage from the source file to the offline objects). A file that names no view, or a
view that is not stored, is quarantined with the reason like a bad file; nothing is raised for it, since a
retry would fail the same way. A transient failure (throttling) is raised, so Lambda's retry of the
asynchronous event tries the file again, which re-ingests it without changing anything twice.
"""

from __future__ import annotations

import threading
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.parser.models import S3Model

from shared.data.quarantine import UNROUTED, refused
from shared.errors import ContractError, NotFoundError
from shared.featurestore.catalog import load_view
from shared.featurestore.ingest import IngestResult, ingest_feature_file, quarantine_feature_file, source_view
from shared.featurestore.online import DynamoOnlineStore, OnlineStore
from shared.layout import DataPrefix
from shared.observability import logger
from shared.services import Services
from shared.storage import ObjectRef


class _OnlineStores:
    """The online table's adapter for the process's current services: made on first use (after any mock),
    kept while the services are (a warm function reuses both), made again for new services."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: tuple[Services, OnlineStore] | None = None

    def __call__(self, svc: Services) -> OnlineStore:
        with self._lock:
            if self._held is None or self._held[0] is not svc:
                self._held = (svc, _dynamo_store(svc))
            return self._held[1]


def _dynamo_store(svc: Services) -> OnlineStore:
    if not svc.settings.features_table:
        raise ContractError("this stack declares no features table for the online store")
    return DynamoOnlineStore(svc.settings.features_table, client=svc.clients.client("dynamodb"))


online_store = _OnlineStores()


def on_feature_files(svc: Services, online: OnlineStore, event: S3Model) -> list[IngestResult]:
    """Ingest every feature-source file of the event (keys arrive URL-encoded, as S3 sends them)."""
    results = []
    for record in event.Records:
        obj = record.s3.object
        if obj is None:
            continue
        source = ObjectRef(record.s3.bucket.name, unquote_plus(obj.key), obj.versionId)
        try:
            results.append(ingest_source(svc, online, source))
        except NotFoundError as exc:
            # The object was removed before its event arrived: there is nothing left to ingest.
            logger.warning("feature file gone before its event", extra={"key": source.key, "error": str(exc)})
    return results


def ingest_source(svc: Services, online: OnlineStore, source: ObjectRef) -> IngestResult:
    """One file: quarantined with the reason when it names no stored view, else ingested into its view."""
    name = source_view(source.key)
    if name is None:
        return _refuse(
            svc,
            None,
            source,
            "no_view",
            f"{source.key} is not under {DataPrefix.FEATURE_SOURCES}<view>/: "
            f"upload it as {DataPrefix.FEATURE_SOURCES}<view>/<file>",
        )
    try:
        view = load_view(svc.objects, source.bucket, name)
    except NotFoundError:
        return _refuse(
            svc,
            name,
            source,
            "no_view",
            f"there is no feature view {name!r}: put it with `flywheel features put FILE`, then upload again",
        )
    except ContractError as exc:
        return _refuse(svc, name, source, "bad_view", f"the stored feature view {name!r} is invalid: {exc}")
    return ingest_feature_file(svc.objects, online, view, source, metadata=svc.metadata)


def _refuse(svc: Services, view: str | None, source: ObjectRef, rule: str, message: str) -> IngestResult:
    error = refused(rule, message)
    moved = quarantine_feature_file(svc.objects, view, source, error)
    return IngestResult(
        view=view or UNROUTED,
        source=source.uri,
        source_version_id=source.version_id,
        status="quarantined",
        quarantined_as=moved.uri,
        problems=list(error.problems),
    )
