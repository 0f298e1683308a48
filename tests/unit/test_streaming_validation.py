"""Validating in batches finds what validating the whole frame finds, however the file is cut into batches.

Every case is checked twice: batch by batch with batches of a few rows (:func:`validate_path` with a tiny
CSV block and Parquet batch), and whole, as :func:`read_table` and :func:`validate_frame` read and check
the file in one frame. The problems must be equal, words and examples included; an accepted file must give
the same canonical frame and profile (means and spreads to rounding).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from shared.data import streaming
from shared.data.contract import DataContract, parse_contract
from shared.data.streaming import validate_path
from shared.data.validation import read_table, source_id_of, validate_frame
from shared.errors import DataValidationError
from tests.fixtures.bad_files import bad_files
from tests.fixtures.contracts import (
    SMALL_CONTRACT_YAML,
    small_contract,
    to_csv_bytes,
    to_parquet_bytes,
    valid_frame,
)

pytestmark = pytest.mark.unit

CONTRACT = small_contract()
BLOCK_BYTES = 2048  # a few dozen rows of the small contract's CSV
BATCH_ROWS = 17
# Files the streaming reader leaves to the whole-file reader, which refuses them.
READ_WHOLE = {
    "wrong_delimiter",
    "tab_delimited",
    "broken_parquet",
    "truncated_parquet",
    "latin1",
    "ragged_row",
}


def whole(body: bytes, filename: str, contract: DataContract) -> Any:
    """What validating the file in one frame gives: its problems as dicts, or the validated data."""
    try:
        frame = read_table(body, filename, contract)
    except DataValidationError as refused:
        return refused.problems
    data, problems = validate_frame(frame, contract, source_id=source_id_of(body))
    return [p.model_dump() for p in problems] if problems else data


def in_batches(tmp_path: Path, body: bytes, filename: str, contract: DataContract) -> Any:
    upload = tmp_path / "upload"
    upload.write_bytes(body)
    try:
        return validate_path(
            upload,
            filename,
            contract,
            tmp_path / "out.parquet",
            block_bytes=BLOCK_BYTES,
            batch_rows=BATCH_ROWS,
        )
    except DataValidationError as refused:
        return refused.problems


@pytest.fixture
def streamed_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail a case that the streaming reader would hand to the whole-file reader."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the file was read whole")

    monkeypatch.setattr(streaming, "_validate_whole", refuse)


def with_cells(frame: pd.DataFrame, cells: dict[tuple[int, str], str]) -> pd.DataFrame:
    changed = frame.copy()
    for (row, column), value in cells.items():
        changed.loc[row, column] = value
    return changed


@pytest.mark.parametrize("case", sorted(bad_files(CONTRACT)))
def test_each_bad_file_gets_the_same_problems_in_batches(tmp_path: Path, case: str) -> None:
    filename, body, _ = bad_files(CONTRACT)[case]

    assert in_batches(tmp_path, body, filename, CONTRACT) == whole(body, filename, CONTRACT)


def test_problems_spread_over_batches_are_merged_into_the_whole_files(
    tmp_path: Path, streamed_only: None
) -> None:
    """Given a file whose broken cells fall in different batches (some rules first broken late, ids repeated
    across batches), when it is validated in batches, then every problem, its count, its first five examples
    and its order are those of the whole file."""
    frame = valid_frame(rows=400, seed=3)
    cells = {(r, "tenure_months"): v for r, v in [(390, "twelve"), (5, "x"), (200, "y"), (201, "x")]}
    cells |= {(r, "tenure_months"): "-4" for r in (7, 150, 151, 152, 153, 154, 399)}
    cells |= {(r, "plan"): "gold" for r in (3, 390)}
    cells |= {(r, "churned"): "" for r in range(300, 310)}
    cells |= {(350, "event_time"): "", (20, "event_time"): "yesterday", (30, "autopay"): "maybe"}
    cells |= {(r, "customer_id"): frame.loc[1, "customer_id"] for r in (260, 398)}
    cells |= {(399, "customer_id"): frame.loc[2, "customer_id"], (12, "customer_id"): ""}
    body = to_csv_bytes(with_cells(frame, cells))

    found = in_batches(tmp_path, body, "spread.csv", CONTRACT)

    assert found == whole(body, "spread.csv", CONTRACT)
    assert [p["rule"] for p in found][:3] == ["null_not_allowed", "duplicate_id", "bad_timestamp"]


@pytest.mark.parametrize(
    ("name", "encode"),
    [
        ("data.csv", to_csv_bytes),
        ("data.csv.gz", lambda frame: gzip.compress(to_csv_bytes(frame))),
        ("data.parquet", to_parquet_bytes),
    ],
)
def test_a_valid_file_gives_the_same_dataset_and_profile_in_batches(
    tmp_path: Path, streamed_only: None, name: str, encode: Any
) -> None:
    body = encode(valid_frame(rows=300, seed=5))

    validated = in_batches(tmp_path, body, name, CONTRACT)
    expected = whole(body, name, CONTRACT)

    assert pq.ParquetFile(validated.path).num_row_groups > 3
    pd.testing.assert_frame_equal(pd.read_parquet(validated.path), expected.frame)
    assert (validated.rows, validated.schema, validated.time_range) == (
        expected.rows,
        expected.schema,
        expected.time_range,
    )
    assert_same_profile(validated.profile, expected.profile)


def assert_same_profile(found: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal, numbers to rounding (means and spreads combined over batches)."""
    if isinstance(expected, dict):
        assert found.keys() == expected.keys()
        for key, value in expected.items():
            assert_same_profile(found[key], value)
    elif isinstance(expected, float):
        assert found == pytest.approx(expected, rel=1e-12)
    else:
        assert found == expected


def test_generated_row_ids_count_rows_across_batches(tmp_path: Path, streamed_only: None) -> None:
    contract = parse_contract(SMALL_CONTRACT_YAML.replace("id_column: customer_id\n", ""))
    frame = valid_frame(rows=200, seed=2).drop(columns=["customer_id"])
    body = to_csv_bytes(frame)

    validated = in_batches(tmp_path, body, "no-ids.csv", contract)

    pd.testing.assert_frame_equal(pd.read_parquet(validated.path), whole(body, "no-ids.csv", contract).frame)


def test_whole_column_rules_see_every_batch(tmp_path: Path, streamed_only: None) -> None:
    """Given a nullable feature whose only value, a second class, and a value in an unnamed column all sit
    in the last batch, then the feature is not all missing, the target has two classes, and the unnamed
    column is unexpected — as in the whole file."""
    frame = valid_frame(rows=300, seed=4)
    frame["churned"] = "false"
    frame["region"] = ""
    last = len(frame) - 1
    frame.loc[last, ["churned", "region"]] = ["true", "north"]
    frame[""] = ""
    frame.loc[last, ""] = "stray"
    body = to_csv_bytes(frame)

    found = in_batches(tmp_path, body, "late.csv", CONTRACT)

    assert found == whole(body, "late.csv", CONTRACT)
    assert [p["rule"] for p in found] == ["unexpected_column"]

    frame.loc[last, ["churned", "region", ""]] = ["false", "", ""]
    body = to_csv_bytes(frame)
    found = in_batches(tmp_path, body, "late.csv", CONTRACT)
    assert found == whole(body, "late.csv", CONTRACT)
    assert [p["rule"] for p in found] == ["all_missing", "invalid_target"]


def test_pieces_are_cut_outside_quoted_values(tmp_path: Path, streamed_only: None) -> None:
    """Given quoted values holding line breaks and commas in many rows, so that pieces of the file would
    often end inside one, when it is validated in batches, then every value is read whole, as in the whole
    file."""
    frame = valid_frame(rows=300, seed=6)
    frame.loc[frame.index % 3 == 0, "region"] = 'far\nnorth, "upper"\n\nside'
    body = to_csv_bytes(frame)

    validated = in_batches(tmp_path, body, "quoted.csv", CONTRACT)

    pd.testing.assert_frame_equal(pd.read_parquet(validated.path), whole(body, "quoted.csv", CONTRACT).frame)
    assert pq.ParquetFile(validated.path).num_row_groups > 3


@pytest.mark.parametrize("cell", [b'pl"us', b'"basic', b'basic"', b'"b""asic'])
def test_a_stray_quote_gives_what_the_whole_file_gives(tmp_path: Path, cell: bytes) -> None:
    """Given a quote where a value does not open or close with one (the cut's parity is then wrong), when
    the file is validated in batches, then the result is the whole file's: the same problems, or the same
    dataset (a piece ending in an open quote sends the file to the whole-file reader)."""
    frame = valid_frame(rows=300, seed=6)
    frame.loc[40, "plan"] = "STRAY"
    body = to_csv_bytes(frame).replace(b"STRAY", cell)

    found, expected = in_batches(tmp_path, body, "stray.csv", CONTRACT), whole(body, "stray.csv", CONTRACT)

    if isinstance(expected, list):
        assert found == expected
    else:
        pd.testing.assert_frame_equal(pd.read_parquet(found.path), expected.frame)
