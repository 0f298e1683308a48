"""Memory in the one process a local cloud runs in: what moto keeps and AWS would not, and what the garbage
collector need not walk.

**Every DynamoDB item and table object moto ever made.**

moto's ``BaseModel`` appends every instance it creates to its class's ``instances_tracked`` list, for the
moto server's dashboard. A DynamoDB item is a new instance on every write, and each ``TransactWriteItems``
deep-copies the tables it touches (to restore them if it fails) — every copy a new, tracked ``Table``
holding all its items. So a local cloud kept every version of everything for as long as it ran: by the end
of ``make demo``, 900 table copies, 400,000 items and 3 million objects, which Python's cyclic garbage
collector walked on each full collection — pauses of up to 0.8 s in the one process the whole cloud shares,
enough to fail a verification's p99 gate at random. While a local cloud runs, moto's DynamoDB models are
not tracked: only the dashboard reads the lists, and Flywheel does not serve it.
``tests/integration/test_seam.py`` pins the hook.

**Long-lived objects.** In AWS each function has a process of its own; here every function's libraries and
moto's service models share one heap, about half a million objects that each full collection walks (0.2-0.3 s
on the development machine) in the middle of whatever request is running. What is alive once the cloud is
provisioned, and after each function's cold start (its imports), is moved out of the collector's reach with
``gc.freeze`` — the standard library's tool for long-lived objects — and given back when the cloud stops.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import moto.dynamodb.models  # noqa: F401  (registers the service's model classes)
from moto.core.model_instances import model_data

SERVICE = "dynamodb"
TRACKED = "instances_tracked"


class _NotKept(list[Any]):
    """A list that accepts what moto appends and keeps none of it."""

    def append(self, instance: Any) -> None:
        del instance


def dynamodb_models() -> list[type]:
    """moto's DynamoDB model classes (items, tables, indexes, streams, restored tables)."""
    models = [m for m in model_data.get(SERVICE, {}).values() if isinstance(m, type)]
    if not models or not all(isinstance(getattr(m, TRACKED, None), list) for m in models):
        raise RuntimeError(
            f"moto's {SERVICE} models have no {TRACKED!r} lists: re-check infra/local/memory.py"
        )
    return models


@contextmanager
def untracked_dynamodb_models() -> Iterator[None]:
    """Stop moto keeping a reference to each DynamoDB object it creates, for the duration of the block."""
    models = dynamodb_models()
    tracked = {model: getattr(model, TRACKED) for model in models}
    for model in models:
        setattr(model, TRACKED, _NotKept())
    try:
        yield
    finally:
        for model, kept in tracked.items():
            setattr(model, TRACKED, kept)


def freeze_long_lived() -> None:
    """Move every object alive now out of the collector's reach until :func:`long_lived_frozen` ends."""
    gc.freeze()


@contextmanager
def long_lived_frozen() -> Iterator[None]:
    """Freeze what is alive now; when the block ends, give every frozen object back to the collector."""
    freeze_long_lived()
    try:
        yield
    finally:
        gc.unfreeze()
