"""The process one trial runs in: ``python -m shared.ml.trial_process REQUEST RESULT``.

Reads ``(function, args)`` pickled in ``REQUEST``, calls it, and writes ``(status, value, error type,
error)`` pickled to ``RESULT``; :func:`shared.ml.experiments.run_with_budget` starts it, waits at most the
trial's budget and kills it after. No result file means the process died (out of memory, killed).
"""

from __future__ import annotations

import pickle
import sys
import traceback
from pathlib import Path
from typing import Any


def main(request: str, result: str) -> int:
    function, args = pickle.loads(Path(request).read_bytes())  # noqa: S301 (written by our own parent)
    outcome: tuple[str, Any, str | None, str | None]
    try:
        outcome = ("succeeded", function(*args), None, None)
    except Exception as exc:  # the parent records any failure with its type
        outcome = ("failed", None, type(exc).__name__, f"{exc}\n{traceback.format_exc(limit=8)}")
    Path(result).write_bytes(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
