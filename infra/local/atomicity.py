"""What DynamoDB guarantees and moto does not: each request, transactions included, is atomic.

moto 5.2.5 checks a ``TransactWriteItems``'s conditions and then writes without a lock, and on failure
restores a copy of the whole table taken before it started, wiping what other threads wrote meanwhile. Two
pipeline runs registering at once could then share a version number. The local cloud serialises moto's
DynamoDB requests for as long as it runs; the code under test keeps its own read-then-conditional-write
loops, which still race each other. ``tests/integration/test_seam.py`` pins this hook with the Lambda one.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.dynamodb.responses import DynamoHandler

HOOK = "call_action"
_lock = threading.RLock()


@contextmanager
def atomic_dynamodb_requests() -> Iterator[None]:
    """Serialise moto's DynamoDB requests for the duration of the block."""
    original = getattr(DynamoHandler, HOOK, None)
    if original is None:
        raise RuntimeError(f"moto's DynamoHandler has no {HOOK!r}: re-check infra/local/atomicity.py")

    @functools.wraps(original)
    def one_at_a_time(self: DynamoHandler) -> Any:
        with _lock:
            return original(self)

    setattr(DynamoHandler, HOOK, one_at_a_time)
    try:
        yield
    finally:
        setattr(DynamoHandler, HOOK, original)
