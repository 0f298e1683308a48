"""Validate: a new file checked against its model's contract, kept as a dataset or refused.

The file the run was started for (``RunState.source``) is read and checked completely
(:mod:`shared.data.validation`); a file that meets the contract becomes a typed Parquet dataset, recorded
with its lineage to the source object version; one that does not is quarantined with every problem
(:mod:`shared.data.quarantine`) and the run fails with :class:`~shared.errors.DataValidationError`. The same
object version always becomes the same dataset, so a re-run finds it and does nothing twice. Imports pandas
and Arrow to read the file, nothing that trains.
"""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath

from aws_lambda_powertools.metrics import MetricUnit

from shared.data.catalog import load_contract
from shared.data.datasets import store_dataset_file
from shared.data.quarantine import FileKind, quarantine, quarantine_ref
from shared.data.streaming import ValidatedFile, validate_path
from shared.errors import FlywheelError, NotFoundError
from shared.hashing import sha256_hex
from shared.layout import DataPrefix
from shared.metadata import NodeType, Relation, file_id
from shared.observability import logger, metrics
from shared.pipeline.runs import recorded_step
from shared.pipeline.state import RunState, SourceFile
from shared.services import Services


def dataset_id_for(model: str, source: SourceFile) -> str:
    """The dataset a source object version becomes: the same version always maps to the same id."""
    return f"{model}-{sha256_hex(f'{source.uri}#{source.version_id or source.etag}'.encode())[:16]}"


def validate_step(state: RunState, svc: Services) -> RunState:
    """Check the new file against the contract: a typed dataset on success, quarantine with reasons else."""
    source: SourceFile = state.require("source")
    with recorded_step(svc, state, "validate"):
        existing = svc.metadata.find_dataset_by_source(state.model, source.uri, source.version_id)
        if existing is not None:
            logger.info("dataset already validated", extra={"dataset_id": existing.dataset_id})
            return state.model_copy(update={"dataset_id": existing.dataset_id})
        dataset_id = dataset_id_for(state.model, source)
        # The upload and the dataset made of it live on local disk (Lambda's /tmp), read and written a
        # batch at a time: memory stays flat however large the file is.
        with tempfile.TemporaryDirectory() as scratch:
            data = _validated(state, svc, source, Path(scratch))
            dataset = store_dataset_file(
                svc.objects,
                svc.metadata,
                svc.settings,
                dataset_id,
                state.model,
                data,
                source_uri=source.uri,
                source_version_id=source.version_id,
            )
        source_node = file_id(source.uri, source.version_id)
        svc.metadata.link(NodeType.FILE, source_node, NodeType.DATASET, dataset.dataset_id, Relation.DERIVED)
        svc.metadata.link(NodeType.FILE, source_node, NodeType.RUN, state.run_id, Relation.INPUT)
        metrics.add_metric(name="DatasetAccepted", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="RowsAccepted", unit=MetricUnit.Count, value=data.rows)
        logger.info(
            "dataset accepted", extra={"dataset_id": dataset_id, "rows": data.rows, "source": source.uri}
        )
        return state.model_copy(update={"dataset_id": dataset.dataset_id})


def _validated(state: RunState, svc: Services, source: SourceFile, scratch: Path) -> ValidatedFile:
    """The source validated on disk, or quarantined with its problems (a file deleted before its run has
    nothing to move)."""
    try:
        contract = load_contract(svc.objects, svc.settings, state.model)
        upload = scratch / "upload"
        svc.objects.download(source.ref, upload)
        return validate_path(upload, PurePosixPath(source.key).name, contract, scratch / "dataset.parquet")
    except FlywheelError as exc:
        if not isinstance(exc, NotFoundError):
            relative = source.key.removeprefix(f"{DataPrefix.INCOMING}{state.model}/")
            destination = quarantine_ref(FileKind.DATA, source.bucket, state.model, relative)
            quarantine(
                svc.objects,
                source.ref,
                destination,
                exc,
                kind=FileKind.DATA,
                model=state.model,
                run_id=state.run_id,
            )
        raise
