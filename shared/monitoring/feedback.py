"""Feedback data: what production was asked, with the ground truth that arrived for it, as training data.

The monitor joins captures with their labels by request id (:mod:`shared.monitoring.monitor`);
:func:`feedback_frame` turns those rows into the contract's canonical frame — the very columns and types
validation writes for an upload (:mod:`shared.data.validation`), so training reads both alike:

- the id column (the contract's ``id_column``, else ``__row_id__``) holds the request id, unique across all
  captures, so a row never replaces an uploaded one when the training window drops repeated ids;
- the timestamp column (if the contract has one) holds the capture time: when production saw the row, which
  puts feedback last in a time-ordered holdout and inside a ``{days: N}`` window;
- the features hold the inputs as they were sent (typed by the contract's rules); the target holds the label.

A row whose inputs break today's contract (possible when the contract changed after the row was answered) is
left out and counted, rule by rule; the rest are kept. Unlike an uploaded file, a feedback set has no
minimum size, may hold one class only and may leave a nullable feature empty: it joins a training window,
it is never trained on alone.

:func:`write_feedback_dataset` stores the frame as Parquet under ``datasets/<model>/feedback/`` (the one
folder of the data bucket's datasets the monitor may write) and records it as a
:class:`~shared.metadata.Dataset` of kind ``feedback``, with lineage from every capture object and label file
it came from, so the next training window's lineage reaches them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from shared.data.contract import DataContract, Feature, FeatureType
from shared.data.datasets import store_dataset
from shared.data.validation import (
    ROW_ID_COLUMN,
    ColumnChecks,
    ValidatedData,
    canonical_text,
    clean,
    profile_frame,
)
from shared.errors import NotFoundError
from shared.hashing import sha256_hex
from shared.metadata import Dataset, DatasetKind, NodeType, Relation
from shared.services import Services

FEEDBACK_ID_COLUMN = "request_id"
FEEDBACK_TIME_COLUMN = "captured_at"


@dataclass(frozen=True, eq=False)
class FeedbackData:
    """The canonical feedback frame (None when no row is usable) and what was left out, by rule."""

    data: ValidatedData | None
    rows_in: int
    left_out: dict[str, int] = field(default_factory=dict)

    @property
    def notes(self) -> list[str]:
        if not self.left_out:
            return []
        detail = ", ".join(f"{count} {rule}" for rule, count in sorted(self.left_out.items()))
        return [
            f"{sum(self.left_out.values())} labelled capture(s) break today's contract ({detail}): left out"
        ]


def feedback_frame(joined: pd.DataFrame, contract: DataContract) -> FeedbackData:
    """The contract's canonical frame from labelled captures.

    ``joined`` has ``request_id``, ``captured_at`` (UTC), one column per feature (the inputs as sent; an
    absent feature is missing) and the target (the label, canonical as :mod:`shared.monitoring.labels` stores
    it).
    """
    rows = len(joined)
    if rows == 0:
        return FeedbackData(data=None, rows_in=0)
    frame = joined.reset_index(drop=True)
    checks = ColumnChecks([], all_missing_allowed=True)
    typed: dict[str, pd.Series] = {}
    faults: dict[str, pd.Series] = {}
    id_column = contract.id_column or ROW_ID_COLUMN
    if contract.id_column is None:
        typed[ROW_ID_COLUMN] = canonical_text(clean(frame[FEEDBACK_ID_COLUMN]))
    for name in contract.columns:
        if name == contract.id_column:
            typed[name] = canonical_text(clean(frame[FEEDBACK_ID_COLUMN]))
        elif name == contract.timestamp_column:
            typed[name] = checks.timestamps(name, clean(frame[FEEDBACK_TIME_COLUMN]))
        elif name == contract.target:
            typed[name] = frame[name].reset_index(drop=True)
        else:
            feature = contract.features[name]
            raw = clean(frame[name]) if name in frame.columns else pd.Series([None] * rows, dtype=object)
            typed[name] = checks.feature(name, feature, raw)
            _feature_faults(name, feature, raw, typed[name], faults)
    _add(faults, "missing_id", typed[id_column].isna())
    _add(faults, "missing_target", typed[contract.target].isna())
    if contract.timestamp_column:
        _add(faults, "bad_timestamp", typed[contract.timestamp_column].isna())
    bad = pd.Series(False, index=frame.index)
    for mask in faults.values():
        bad |= mask
    left_out = {rule: int(mask.sum()) for rule, mask in faults.items() if mask.any()}
    canonical = pd.DataFrame(typed)[
        [*([ROW_ID_COLUMN] if contract.id_column is None else []), *contract.columns]
    ]
    canonical = canonical.loc[~bad].reset_index(drop=True)
    if canonical.empty:
        return FeedbackData(data=None, rows_in=rows, left_out=left_out)
    return FeedbackData(data=_validated(canonical, contract), rows_in=rows, left_out=left_out)


def _add(faults: dict[str, pd.Series], rule: str, mask: pd.Series) -> None:
    mask = mask.fillna(False).astype(bool)
    faults[rule] = faults[rule] | mask if rule in faults else mask


def _feature_faults(
    name: str, feature: Feature, raw: pd.Series, typed: pd.Series, faults: dict[str, pd.Series]
) -> None:
    present = raw.notna()
    if not feature.nullable:
        _add(faults, "null_not_allowed", ~present)
    if feature.type is FeatureType.CATEGORICAL:
        if feature.allowed is not None:
            allowed = set(canonical_text(pd.Series(list(feature.allowed), dtype="str")))
            _add(faults, "not_allowed", present & ~typed.isin(allowed))
        return
    _add(faults, "wrong_type", present & typed.isna())
    if feature.type is FeatureType.NUMERIC:
        if feature.min is not None:
            _add(faults, "below_min", typed < feature.min)
        if feature.max is not None:
            _add(faults, "above_max", typed > feature.max)


def _validated(frame: pd.DataFrame, contract: DataContract) -> ValidatedData:
    time_range = None
    if contract.timestamp_column:
        stamps = frame[contract.timestamp_column]
        time_range = (_iso(stamps.min()), _iso(stamps.max()))
    return ValidatedData(
        frame=frame,
        rows=len(frame),
        schema={str(c): str(frame[c].dtype) for c in frame.columns},
        time_range=time_range,
        profile=profile_frame(frame, contract),
    )


def _iso(stamp: object) -> str:
    return str(pd.Timestamp(stamp).tz_convert("UTC").isoformat())


def feedback_dataset_id(model: str, label_sets: Iterable[str]) -> str:
    """The feedback dataset made from these label sets: the same sets always make the same id, so a monitor
    run retried after a crash records its feedback once."""
    digest = sha256_hex("\x1f".join(sorted(label_sets)).encode())[:16]
    return f"{model}-feedback-{digest}"


def write_feedback_dataset(
    svc: Services,
    model: str,
    dataset_id: str,
    data: ValidatedData,
    *,
    evidence_uri: str,
    sources: Iterable[str],
) -> Dataset:
    """Store the feedback frame under ``datasets/<model>/feedback/`` and record it (kind ``feedback``) with
    lineage from ``sources`` (capture objects and label files, as lineage file ids). ``evidence_uri`` — the
    monitor report that made it — is its recorded source. A dataset recorded before is returned as it is."""
    try:
        existing: Dataset | None = svc.metadata.get_dataset(dataset_id)
    except NotFoundError:
        existing = None
    if existing is None:
        existing = store_dataset(
            svc.objects,
            svc.metadata,
            svc.settings,
            dataset_id,
            model,
            data,
            source_uri=evidence_uri,
            kind=DatasetKind.FEEDBACK,
        )
    for source in dict.fromkeys(sources):
        svc.metadata.link(NodeType.FILE, source, NodeType.DATASET, existing.dataset_id, Relation.DERIVED)
    return existing
