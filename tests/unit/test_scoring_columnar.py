"""Batch scoring a column at a time answers what the row-wise path answers: the same valid rows, prepared to
the same values, the same failures with the same reasons; the same request ids; and capture lines byte for
byte what ``CaptureRecord.to_line()`` writes."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from examples.churn import generate
from shared.scoring.columnar import capture_lines, request_ids, split_valid_columns
from shared.scoring.job import read_rows, read_table, request_id, split_valid_rows
from shared.serving.capture import BATCH_SOURCE, CaptureRecord, InMemoryCaptureSink
from shared.serving.packaging import serving_signature
from shared.serving.runtime import Signature
from tests.fixtures.services import churn_contract

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 8, 12, 30, 1, 123456, tzinfo=UTC)


def churn() -> Signature:
    return Signature.from_dict(serving_signature(churn_contract(), ["false", "true"]))


def strict() -> Signature:
    """Features of every kind, required and nullable, with and without bounds."""
    return Signature.from_dict(
        {
            "task": "regression",
            "id_column": "id",
            "features": {
                "n_free": {"type": "numeric"},
                "n_bounded": {"type": "numeric", "nullable": True, "min": -1.5, "max": 10},
                "flag": {"type": "boolean"},
                "flag_or_none": {"type": "boolean", "nullable": True},
                "colour": {"type": "categorical", "allowed": ["red", "green"]},
                "tag": {"type": "categorical", "nullable": True},
            },
        }
    )


def assert_same_answer(signature: Signature, table: pa.Table) -> None:
    rows = table.to_pylist()
    prepared, positions, failures = split_valid_rows(signature, rows)
    columnar = split_valid_columns(signature, table)
    assert columnar.positions.tolist() == positions
    assert columnar.failures == failures
    assert columnar.rows_total == len(rows)
    for spec in signature.features:
        got = columnar.features[spec.name].tolist()
        want = [row[spec.name] for row in prepared]
        assert [_comparable(v) for v in got] == [_comparable(v) for v in want], spec.name


def _comparable(value: Any) -> Any:
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


NUMBERS = [0, 1, -1, 3, 7, 10, 11, 600, 601, 2**60, -(2**63)]
FLOATS = [0.0, -0.0, 2.5, -1.5, -1.6, 10.0, 10.5, math.nan, math.inf, -math.inf, 1e39, 3e38, 1e-300]
TEXTS = [
    "",
    " ",
    "  x ",
    "red",
    "green",
    "Red",
    "gold",
    "12",
    "1,234",
    "true",
    "YES",
    " no ",
    "0",
    "1",
    "maybe",
    "n\u00e9",
    '"q"',
    "a" * 60,
]
BOOLS = [True, False]
# Each Arrow type a column can have, with the values it may hold (None: a null).
KINDS: dict[str, tuple[pa.DataType, list[Any]]] = {
    "int64": (pa.int64(), NUMBERS),
    "int32": (pa.int32(), [0, 1, 2, -7, 5]),
    "float64": (pa.float64(), FLOATS),
    "float32": (pa.float32(), [0.0, 1.0, 0.1, math.nan, 9.5]),
    "string": (pa.string(), TEXTS),
    "bool": (pa.bool_(), BOOLS),
    "null": (pa.null(), []),
}


@st.composite
def tables(draw: Any, signature: Signature) -> pa.Table:
    count = draw(st.integers(min_value=0, max_value=30))
    columns: dict[str, pa.Array] = {}
    for spec in signature.features:
        if spec.nullable and draw(st.booleans()) and draw(st.booleans()):
            continue  # an absent nullable feature
        kind, pool = KINDS[draw(st.sampled_from(sorted(KINDS)))]
        choices = st.sampled_from([*pool, None]) if pool else st.none()
        columns[spec.name] = pa.array(draw(st.lists(choices, min_size=count, max_size=count)), kind)
    if signature.id_column:
        columns[signature.id_column] = pa.array([f"c-{i}" for i in range(count)], pa.string())
    return pa.table(columns) if columns else pa.table({"id": pa.array([], pa.string())})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_column_check_answers_what_the_row_check_answers(data: st.DataObject) -> None:
    signature = data.draw(st.sampled_from([churn(), strict()]))
    table = data.draw(tables(signature))
    if table.num_rows == 0 and not any(f.name in table.column_names for f in signature.features):
        return
    assert_same_answer(signature, table)


def test_a_file_with_good_and_bad_rows_is_split_alike_both_ways() -> None:
    frame = generate(60, seed=5)
    frame.loc[3, "tenure_months"] = -2
    frame.loc[7, "plan"] = "gold"
    frame.loc[7, "monthly_charges"] = 5000
    frame.loc[11, "plan"] = None
    frame.loc[20, "autopay"] = None
    body = frame.to_csv(index=False).encode()
    table = read_table(body, "x.csv", churn())
    assert table.to_pylist() == read_rows(body, "x.csv", churn())
    assert_same_answer(churn(), table)
    failures = split_valid_columns(churn(), table).failures
    assert [f.row for f in failures] == [3, 7, 11, 20]
    assert failures[1].problems[0].startswith("monthly_charges:")
    assert failures[1].problems[1].startswith("plan:")


def test_a_parquet_file_with_nan_and_words_for_booleans_is_split_alike_both_ways() -> None:
    frame = generate(30, seed=6).drop(columns=["churned"])
    frame["monthly_charges"] = frame["monthly_charges"].astype(float)
    frame.loc[2, "monthly_charges"] = math.nan
    frame["autopay"] = ["yes", "No", "maybe", "TRUE", " 0 ", ""] * 5
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    assert_same_answer(churn(), read_table(buffer.getvalue(), "x.parquet", churn()))


def test_request_ids_are_the_row_wise_ids() -> None:
    positions = np.array([0, 5, 99, 1234567, 12345678], dtype=np.int64)
    ids = request_ids("score-churn-abc", 42, positions).to_pylist()
    assert ids == [request_id("score-churn-abc", 42, int(p)) for p in positions]


def test_capture_lines_are_the_bytes_each_record_writes() -> None:
    inputs = pa.table(
        {
            "customer_id": pa.array(["c-1", 'q"uote', "back\\slash", "new\nline", "caf\u00e9 \u2028", None]),
            "tenure_months": pa.array([0, 12, -(2**62), 600, None, 3], pa.int64()),
            "monthly_charges": pa.array([0.1, 1e-7, 1e16, math.nan, None, 70.0], pa.float64()),
            "autopay": pa.array([True, False, None, True, True, False]),
            "event_time": pa.array(["2026-12-01T10:00:00"] * 6),
            "empty": pa.nulls(6),
            "region": pa.array(["north", None, "south", "", "east", None]),
            "score32": pa.array([0.1, None, 2.5, -0.0, 1e30, math.nan], pa.float32()),
            "count": pa.array([1, None, 3, 4, 5, 6], pa.int32()),
        }
    )
    positions = np.arange(6, dtype=np.int64) * 3
    ids = request_ids("score-churn-1", 2, positions)
    labels = np.array(["false", "true", "true", "false", "true", "false"], dtype=object)
    probabilities = np.array([[0.9, 0.1], [0.25, 0.75], [0.0, 1.0], [1 / 3, 2 / 3], [0.5, 0.5], [1.0, 0.0]])
    probabilities = probabilities.astype(np.float32).astype(np.float64)

    lines = capture_lines(
        request_ids=ids,
        model="churn",
        version=4,
        inputs=inputs,
        predictions=labels,
        probabilities={"false": probabilities[:, 0], "true": probabilities[:, 1]},
        time=NOW,
        source=BATCH_SOURCE,
    )

    expected = [
        CaptureRecord.of_prediction(
            request_id=rid,
            model="churn",
            version=4,
            inputs=row,
            prediction=label,
            probabilities=dict(zip(["false", "true"], probability.tolist(), strict=True)),
            time=NOW,
            source=BATCH_SOURCE,
        ).to_line()
        for rid, row, label, probability in zip(
            ids.to_pylist(), inputs.to_pylist(), labels, probabilities, strict=True
        )
    ]
    assert lines == expected
    assert CaptureRecord.model_validate_json(lines[1]).inputs["customer_id"] == 'q"uote'


def test_capture_lines_of_a_regressor_are_the_bytes_each_record_writes() -> None:
    inputs = pa.table({"x": pa.array([1.5, 2.0]), "tag": pa.array(["a", "b"])})
    values = np.array([3.25, -1e-9])
    ids = request_ids("job", 0, np.array([0, 1]))
    lines = capture_lines(
        request_ids=ids,
        model="m",
        version=1,
        inputs=inputs,
        predictions=values,
        probabilities=None,
        time=NOW,
        source=BATCH_SOURCE,
    )
    expected = [
        CaptureRecord.of_prediction(
            request_id=rid, model="m", version=1, inputs=row, prediction=v, time=NOW, source=BATCH_SOURCE
        ).to_line()
        for rid, row, v in zip(ids.to_pylist(), inputs.to_pylist(), values.tolist(), strict=True)
    ]
    assert lines == expected


def test_the_in_memory_sink_keeps_lines_as_the_stream_would() -> None:
    sink = InMemoryCaptureSink()
    assert sink.send_lines([b"a\n", b"b\n"]) == 2
    assert sink.lines == [b"a\n", b"b\n"]
    assert InMemoryCaptureSink(accepting=False).send_lines([b"a\n"]) == 0


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_a_utc_timestamp_is_written_as_arrow_writes_it(unit: str) -> None:
    import pyarrow.compute as pc

    from shared.scoring.job import _time_text

    rng = np.random.default_rng(7)
    seconds = rng.integers(-2_000_000_000, 4_000_000_000, 200)
    scale = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    values = [*(int(s) * scale + int(rng.integers(0, scale)) for s in seconds), None, 0]
    column = pa.array(values, pa.timestamp(unit, tz="UTC"))
    assert _time_text(column).to_pylist() == pc.cast(column, pa.string()).to_pylist()
