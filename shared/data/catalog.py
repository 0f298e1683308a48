"""Where a stack keeps its data contracts and validated datasets, and how they are read back.

Contracts live in the data bucket under ``contracts/<model>.yaml``; validated datasets are Parquet under
``datasets/<model>/``, each recorded in the metadata store with its sha256, which is checked on every read.
A contract that lists feature views is read for training and serving as its effective contract
(:func:`load_training_contract`, :mod:`shared.featurestore.contracts`).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pandas as pd

from shared.data.contract import DataContract, parse_contract
from shared.data.validation import ValidatedData
from shared.errors import ContractError, IntegrityError, NotFoundError
from shared.featurestore.catalog import load_views
from shared.featurestore.contracts import TrainingContract, contract_view_problems, training_contract
from shared.hashing import sha256_hex
from shared.layout import DataPrefix
from shared.metadata import Dataset, DatasetKind, MetadataStore, TimeRange
from shared.ml.training import check_training_params
from shared.settings import Settings
from shared.storage import ObjectRef, ObjectStore


def contract_ref(settings: Settings, model: str) -> ObjectRef:
    return ObjectRef(settings.data_bucket, f"{DataPrefix.CONTRACTS}{model}.yaml")


def load_contract(objects: ObjectStore, settings: Settings, model: str) -> DataContract:
    """The model's contract; :class:`ContractError` when there is none (or it no longer parses)."""
    try:
        stored = objects.get(contract_ref(settings, model))
    except NotFoundError as exc:
        raise ContractError(
            f"there is no data contract for model {model!r}; put one with `flywheel contract put FILE`"
        ) from exc
    contract = parse_contract(stored.body)
    if contract.model != model:
        raise ContractError(f"contracts/{model}.yaml declares model {contract.model!r}, not {model!r}")
    return contract


def put_contract(
    objects: ObjectStore, settings: Settings, text: str | bytes
) -> tuple[DataContract, ObjectRef]:
    """Check a contract completely (format, cross-field rules, estimator parameters, the feature views it
    lists: stored, and fitting it) and store it."""
    contract = parse_contract(text)
    check_training_params(contract)
    if contract.feature_views:
        views = load_views(objects, settings.data_bucket, contract.feature_views)
        problems = contract_view_problems(contract, views)
        if problems:
            lines = "\n".join(f"  - {p}" for p in problems)
            raise ContractError(
                f"contract for model {contract.model!r} has {len(problems)} problem(s):\n{lines}",
                problems=problems,
            )
    stored = objects.put(
        contract_ref(settings, contract.model), contract.to_yaml().encode(), "application/yaml"
    )
    return contract, stored


def load_training_contract(objects: ObjectStore, settings: Settings, model: str) -> TrainingContract:
    """The model's contract with the feature views it lists, as Train, Evaluate, Register and Verify read
    it: :attr:`TrainingContract.contract` is the effective contract. :class:`ContractError` when a view is
    gone or no longer fits (a view put again with other features, say)."""
    contract = load_contract(objects, settings, model)
    if not contract.feature_views:
        return TrainingContract(base=contract, contract=contract)
    return training_contract(contract, load_views(objects, settings.data_bucket, contract.feature_views))


def contract_models(objects: ObjectStore, settings: Settings) -> list[str]:
    """Every model that has a contract."""
    prefix = str(DataPrefix.CONTRACTS)
    return sorted(
        o.ref.key.removeprefix(prefix).removesuffix(".yaml")
        for o in objects.list(settings.data_bucket, prefix)
        if o.ref.key.endswith(".yaml")
    )


def frame_to_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def read_parquet(objects: ObjectStore, uri: str, sha256: str, version_id: str | None = None) -> pd.DataFrame:
    """Read a Parquet object after checking its bytes against the recorded sha256."""
    body = objects.get(ObjectRef.parse(uri, version_id)).body
    actual = sha256_hex(body)
    if actual != sha256:
        raise IntegrityError(
            f"{uri} has sha256 {actual[:12]}…, but {sha256[:12]}… was recorded: refusing to read it"
        )
    return pd.read_parquet(io.BytesIO(body))


def training_window(datasets: list[Dataset], contract: DataContract) -> list[Dataset]:
    """The datasets a run trains on: the latest ``files`` of them, or those reaching the last ``days``."""
    window = contract.training.window
    if window.files is not None:
        return datasets[-window.files :]
    ends = [d.time_range.end for d in datasets if d.time_range and d.time_range.end]
    if not ends or window.days is None:
        return datasets
    cutoff = max(ends) - timedelta(days=window.days)
    return [
        d for d in datasets if d.time_range is None or d.time_range.end is None or d.time_range.end >= cutoff
    ]


def combine(frames: list[pd.DataFrame], contract: DataContract, id_column: str) -> pd.DataFrame:
    """One training frame from several datasets, oldest first: a row id seen again keeps its latest row,
    and a ``days`` window drops rows older than the window."""
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.drop_duplicates(subset=[id_column], keep="last").reset_index(drop=True)
    days = contract.training.window.days
    if days is not None and contract.timestamp_column:
        stamps = frame[contract.timestamp_column]
        frame = frame[stamps >= stamps.max() - pd.Timedelta(days=days)].reset_index(drop=True)
    return frame


def store_dataset(
    objects: ObjectStore,
    metadata: MetadataStore,
    settings: Settings,
    dataset_id: str,
    model: str,
    data: ValidatedData,
    *,
    source_uri: str,
    source_version_id: str | None = None,
    kind: DatasetKind = DatasetKind.UPLOAD,
) -> Dataset:
    """Write a validated frame as Parquet under ``datasets/<model>/`` and record the dataset: its sha256
    (checked on every read), rows, schema, time range, profile and where it came from."""
    body = frame_to_parquet(data.frame)
    written = objects.put(
        ObjectRef(settings.data_bucket, f"{DataPrefix.DATASETS}{model}/{dataset_id}.parquet"), body
    )
    time_range = (
        TimeRange(
            start=datetime.fromisoformat(data.time_range[0]), end=datetime.fromisoformat(data.time_range[1])
        )
        if data.time_range
        else None
    )
    return metadata.put_dataset(
        Dataset(
            dataset_id=dataset_id,
            model=model,
            uri=written.uri,
            version_id=written.version_id,
            sha256=sha256_hex(body),
            rows=data.rows,
            schema_=data.schema,
            time_range=time_range,
            profile=data.profile,
            source_uri=source_uri,
            source_version_id=source_version_id,
            kind=kind,
            created_at=datetime.now(UTC),
        )
    )
