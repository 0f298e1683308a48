"""Filling a prediction request's view features from the online store, before the signature checks it.

A model trained with feature views (:attr:`shared.serving.runtime.Signature.views`) accepts rows that carry
the entity key (the model's id column) and leave out some or all of a view's features. For each view,
:func:`fill_from_store` collects the entities of the rows that leave out one of its features and reads them
in **one** batched call (:meth:`~shared.featurestore.online.OnlineStore.get_many`); then, per row:

* a feature the row sends (a value, or ``null`` for "missing") is the row's: **request values override
  stored ones**, and the store is not asked for a row that sends every feature of the view;
* a feature the row leaves out gets the stored value when the entity's latest row is within the view's TTL
  at ``now`` (:func:`~shared.featurestore.online.fresh`, the offline join's rule); a value past the TTL, an
  entity the store does not know, or a row without an entity key leaves it out, and the signature then
  treats it as any absent feature: missing, refused when the feature is required.

:meth:`FilledRequest.explain` rewrites those refusals to say why the store could not help (no key, not in
the store, too old, empty), naming the row and the field. The filled rows are what the model answers and
what the capture records, so monitoring sees the store's features like any other. No pandas here: the
prediction function imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from shared.featurestore.online import OnlineRow, OnlineStore, entity_key, fresh
from shared.serving.runtime import RowProblem, Signature, ViewSpec

__all__ = ["FilledRequest", "Unfilled", "fill_from_store"]

Why = Literal["no_entity", "unknown", "stale", "empty", "no_store"]


@dataclass(frozen=True)
class Unfilled:
    """Why the store did not fill one left-out feature of one row."""

    view: ViewSpec
    why: Why
    entity: str | None = None
    event_time: datetime | None = None

    def sentence(self) -> str:
        """``is missing: ...``, as a request problem says it."""
        view, key = self.view, self.view.entity
        where = f"the feature store (view {view.name!r})"
        if self.why == "no_entity":
            detail = f"the row has no {key} to look it up in {where}"
        elif self.why == "no_store":
            detail = f"this stack has no online feature store to look {key} {self.entity!r} up in"
        elif self.why == "unknown":
            detail = f"{where} has no value for {key} {self.entity!r}"
        elif self.why == "stale":
            stamp = self.event_time.isoformat() if self.event_time else "an unknown time"
            detail = (
                f"{where} holds a value for {key} {self.entity!r} from {stamp}, older than the view's TTL of "
                f"{_days(view.ttl_seconds)}"
            )
        else:
            detail = f"the latest row of {key} {self.entity!r} in {where} has no value for it"
        return f"is missing: not in the request, and {detail}; the feature is required"


@dataclass(frozen=True)
class FilledRequest:
    """The request's rows with the store's values added, and why any left-out view feature stayed out."""

    rows: list[Any]
    unfilled: dict[tuple[int, str], Unfilled] = field(default_factory=dict)
    filled: int = 0  # values that came from the store
    lookups: int = 0  # entities asked for, over every view

    def explain(self, problems: Sequence[RowProblem]) -> list[RowProblem]:
        """``problems`` with each refusal of a left-out view feature saying why the store did not fill it
        (an absent field can only be refused for being missing, so the (row, field) pair is enough)."""
        explained = []
        for problem in problems:
            why = self.unfilled.get((problem.row, problem.field or ""))
            explained.append(replace(problem, problem=why.sentence()) if why is not None else problem)
        return explained


def fill_from_store(
    rows: Sequence[Any], signature: Signature, store: OnlineStore | None, now: datetime
) -> FilledRequest:
    """The rows with the view features they leave out filled from ``store`` as of ``now`` (see the module
    docstring); rows are copied, never changed in place. ``store`` None: nothing can be filled."""
    if not signature.views:
        return FilledRequest(rows=list(rows))
    out: list[Any] = [dict(row) if isinstance(row, Mapping) else row for row in rows]
    unfilled: dict[tuple[int, str], Unfilled] = {}
    filled = lookups = 0
    for view in signature.views:
        wanted = _wanted(view, out, unfilled)
        if not wanted:
            continue
        if store is None:
            for position, key, absent in wanted:
                unfilled.update(((position, name), Unfilled(view, "no_store", key)) for name in absent)
            continue
        keys = list(dict.fromkeys(key for _, key, _ in wanted))
        found = store.get_many(view.name, keys)  # the view's one batched read for this request
        lookups += len(keys)
        filled += _fill(view, wanted, found, now, out, unfilled)
    return FilledRequest(rows=out, unfilled=unfilled, filled=filled, lookups=lookups)


def _wanted(
    view: ViewSpec, rows: list[Any], unfilled: dict[tuple[int, str], Unfilled]
) -> list[tuple[int, str, list[str]]]:
    """``(row, entity key, features it leaves out)`` of each row that leaves out one of the view's features
    and names its entity; a row without a usable key is noted in ``unfilled``."""
    wanted = []
    for position, row in enumerate(rows):
        if not isinstance(row, dict):
            continue  # the signature refuses it
        absent = [name for name in view.features if name not in row]
        if not absent:
            continue
        key = _key(row.get(view.entity))
        if key is None:
            unfilled.update(((position, name), Unfilled(view, "no_entity")) for name in absent)
        else:
            wanted.append((position, key, absent))
    return wanted


def _fill(
    view: ViewSpec,
    wanted: list[tuple[int, str, list[str]]],
    found: Mapping[str, OnlineRow],
    now: datetime,
    rows: list[Any],
    unfilled: dict[tuple[int, str], Unfilled],
) -> int:
    """Put each fresh stored value into its row; note why the others stay out. How many were filled."""
    ttl = timedelta(seconds=view.ttl_seconds)
    filled = 0
    for position, key, absent in wanted:
        stored = found.get(key)
        values = fresh(stored, now, ttl, absent)
        for name in absent:
            value = values[name]
            if value is not None:
                rows[position][name] = value
                filled += 1
            elif stored is None:
                unfilled[(position, name)] = Unfilled(view, "unknown", key)
            else:
                why: Why = "stale" if now - stored.event_time > ttl else "empty"
                unfilled[(position, name)] = Unfilled(view, why, key, stored.event_time)
    return filled


def _key(value: Any) -> str | None:
    """A request's entity value as the store keys it, or None when it cannot name an entity."""
    if value is None or isinstance(value, Mapping | list | tuple):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    key = entity_key(value)
    return key or None


def _days(seconds: float) -> str:
    days = seconds / 86_400
    return f"{days:g} day" + ("" if days == 1 else "s")
