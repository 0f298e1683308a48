"""Feature-source files (``feature-sources/<view>/*.csv|parquet``) checked against their feature view.

The reader and the column rules are the data contract's (:mod:`shared.data.validation`): the same formats,
missing-value tokens, size limit, typing, ranges, allowed values and nullability, and the same
:class:`~shared.data.validation.Problem` rules and messages, every problem reported at once. What differs:

* columns: exactly the view's entity, event time and features (any order); nothing else;
* the entity key is text (integral numbers as ``"1"``, like ids), present in every row, and repeats: one row
  per entity per event;
* the event time follows the timestamp rules (ISO 8601, UTC; a time without a zone is UTC);
* at least one data row; there is no target and no minimum row count, and a nullable feature may be empty
  in every row (an update may carry only some features);
* the same (entity, event time) twice in one file is not an error: the **last row in file order** is kept
  (a file is usually an append log, so its later row is the correction) and the count of dropped rows is
  reported in :attr:`ValidatedFeatures.duplicates_dropped`.

The canonical frame has the view's columns in :attr:`FeatureView.columns` order: the entity as ``str``, the
event time as ``datetime64[ns, UTC]``, features typed as in a validated dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from shared.data.validation import (
    ColumnChecks,
    Problem,
    Rulebook,
    check_header,
    clean,
    read_upload,
    rejection,
)
from shared.featurestore.view import FeatureView


@dataclass(frozen=True, eq=False)
class ValidatedFeatures:
    """A feature-source file that met its view, as the canonical frame."""

    frame: pd.DataFrame
    rows: int
    duplicates_dropped: int
    start: datetime  # the earliest and latest event time in the file
    end: datetime


def rulebook_of(view: FeatureView) -> Rulebook:
    name = f"the feature view '{view.view}'"
    return Rulebook(owner=name, document="feature view", title=name, max_file_mb=view.max_file_mb)


def validate_feature_frame(
    frame: pd.DataFrame, view: FeatureView
) -> tuple[ValidatedFeatures | None, list[Problem]]:
    """Check ``frame`` against ``view``: ``(features, [])`` when it passes, ``(None, problems)`` otherwise."""
    checked, problems = check_header(frame, view.columns, rulebook_of(view), role_of=lambda c: _role(c, view))
    if checked is None:
        return None, problems
    frame = checked
    checks = ColumnChecks(problems, document="feature view", all_missing_allowed=True)
    typed: dict[str, pd.Series] = {}
    for name in (c for c in view.columns if c in frame.columns):
        values = clean(frame[name])
        if name == view.entity:
            typed[name] = checks.keys(name, values, "the entity key")
        elif name == view.event_time:
            typed[name] = checks.timestamps(name, values)
        else:
            typed[name] = checks.feature(name, view.features[name], values)
    if problems:
        return None, problems
    canonical = pd.DataFrame(typed)
    kept = canonical.drop_duplicates([view.entity, view.event_time], keep="last").reset_index(drop=True)
    stamps = kept[view.event_time]
    return (
        ValidatedFeatures(
            frame=kept,
            rows=len(kept),
            duplicates_dropped=len(canonical) - len(kept),
            start=stamps.min().to_pydatetime(),
            end=stamps.max().to_pydatetime(),
        ),
        [],
    )


def validate_feature_file(body: bytes, filename: str, view: FeatureView) -> ValidatedFeatures:
    """Read and validate a feature-source file; :class:`~shared.errors.DataValidationError` lists every
    problem (as dicts) at once."""
    rulebook = rulebook_of(view)
    frame = read_upload(body, filename, rulebook)
    data, problems = validate_feature_frame(frame, view)
    if problems or data is None:
        raise rejection(filename, rulebook, problems)
    return data


def _role(name: str, view: FeatureView) -> str:
    if name == view.entity:
        return "the entity key"
    if name == view.event_time:
        return "the event-time column"
    return f"a {view.features[name].type.value} feature"
