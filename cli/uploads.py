"""Pushing a file that a function of the stack picks up, and waiting for its verdict.

A data file, a label file and a feature-source file all go the same way: the CLI uploads it into the data
bucket, the bucket's notification invokes a function, and that function either accepts the file (each
kind leaves its own mark: a run, a label set, offline objects) or refuses it, which always leaves the one
:class:`~shared.data.quarantine.Refusal` beside the quarantined file. ``--wait`` polls for either; the
command's end is :func:`cli.common.report_push`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from shared.data.quarantine import Refusal, read_refusal
from shared.errors import NotFoundError
from shared.services import Services
from shared.storage import ObjectRef


def upload(svc: Services, path: Path, key: str) -> ObjectRef:
    """Put a local file under ``key`` in the data bucket; the reference carries the version S3 gave it."""
    if not path.is_file():
        raise NotFoundError(f"no such file: {path}")
    return svc.objects.put(ObjectRef(svc.settings.data_bucket, key), path.read_bytes())


def wait_for_verdict[T](
    svc: Services,
    source: ObjectRef,
    quarantined_at: ObjectRef,
    accepted: Callable[[], T | None],
    refused: Callable[[Refusal], T],
    unfinished: str,
    timeout_s: float = 120.0,
) -> T:
    """Poll until ``accepted()`` answers, or the refusal of this very version of ``source`` is found beside
    ``quarantined_at``; :class:`TimeoutError` saying ``unfinished`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = accepted()
        if done is not None:
            return done
        refusal = read_refusal(svc.objects, quarantined_at)
        if refusal is not None and refusal.source_version_id == source.version_id:
            return refused(refusal)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{unfinished} within {timeout_s:.0f}s")
        time.sleep(0.2)
