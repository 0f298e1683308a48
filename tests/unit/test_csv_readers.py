"""The two CSV readers behind validation read any file Arrow accepts to the same cells.

Arrow's multi-threaded reader takes every upload it can read exactly as the pandas reader would; pandas
reads the rest and words their problems. These tests hold the fast path to that promise on generated
files, including the awkward ones (quotes, blank lines, short or long rows, spaces, a byte-order mark).
"""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.data.validation import _read_csv_arrow, _read_csv_pandas

FIELD = st.text(alphabet=st.sampled_from(list('ab1 ,"\t.-é')), max_size=6)


def quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    width = draw(st.integers(1, 4))
    lines = []
    for index in range(draw(st.integers(1, 6))):
        size = width if index == 0 else draw(st.sampled_from([width, width, width, width - 1, width + 1]))
        fields = [draw(FIELD) for _ in range(max(size, 0))]
        fields = [quoted(f) if draw(st.booleans()) else f for f in fields]
        lines.append(",".join(fields))
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from(["", " ", "\t"])))
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    text = ending.join(lines) + draw(st.sampled_from(["", ending]))
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    return bom + text.encode()


def pandas_cells(body: bytes) -> list[list[str]] | None:
    try:
        frame = _read_csv_pandas(body)
    except Exception:
        return None
    return frame.astype(object).where(frame.notna(), None).to_numpy().tolist()


@settings(max_examples=500, deadline=None)
@given(csv_files())
def test_arrow_reads_what_it_accepts_as_pandas_does(body: bytes) -> None:
    fast = _read_csv_arrow(body)
    if fast is None:
        return
    assert list(fast.columns) == list(range(fast.shape[1]))
    assert fast.astype(object).to_numpy().tolist() == pandas_cells(body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"a,b\n1\n", "a short row, which pandas pads"),
        (b'a,b\n1,"2\n', "a quote left open at the end"),
        (b'a,b\n1,"2\n""3\n', "a quote left open over lines"),
        (b"a\n1\n", "a single column"),
        (b"a,b\n\xff,1\n", "bytes that are not UTF-8"),
        (b"a,b\n1,2,3\n", "a row longer than the header"),
    ],
)
def test_arrow_leaves_to_pandas_what_it_cannot_read_alike(body: bytes, reason: str) -> None:
    assert _read_csv_arrow(body) is None, reason


def test_arrow_reads_a_plain_file() -> None:
    frame = _read_csv_arrow(b'\xef\xbb\xbfid,x\r\n1, a \r\n\r\n2,"b,c"\r\n3,"d\ne"\n')
    assert frame is not None
    assert frame.to_numpy().tolist() == [["id", "x"], ["1", " a "], ["2", "b,c"], ["3", "d\ne"]]
    pd.testing.assert_frame_equal(frame, _read_csv_pandas(b'id,x\n1, a \n2,"b,c"\n3,"d\ne"\n'))
