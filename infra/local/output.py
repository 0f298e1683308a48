"""Standard output for programs that drive the in-process cloud and print a story or a table."""

from __future__ import annotations

import io
from typing import Any


class WithoutMetrics(io.TextIOBase):
    """A stream that drops Powertools' EMF metric lines and passes everything else through.

    Powertools prints an EMF metric set when one metric reaches 100 values even with metrics disabled,
    and the in-process cloud shares one ``Metrics`` object between functions: wrap ``sys.stdout`` in this
    to keep those lines out of what a person reads.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._dropped_line = False

    def write(self, text: str) -> int:
        # print() writes the line and its newline separately: drop both.
        if text.startswith('{"_aws"') or (self._dropped_line and text == "\n"):
            self._dropped_line = not self._dropped_line
            return len(text)
        self._dropped_line = False
        self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()
