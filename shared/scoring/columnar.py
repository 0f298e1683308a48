"""A batch file a column at a time: the same rules as the row-wise path, without a Python object per row.

The row-wise path (:func:`shared.scoring.job.read_rows` then :func:`~shared.scoring.job.split_valid_rows`)
turns every row into a dict and checks it with :meth:`Signature.validate_rows`; a file of 25,000 rows spends
most of its time there, not in the model. Here the file stays an Arrow table:

- :func:`split_valid_columns` checks each feature column against the signature and answers exactly what the
  row-wise check answers: the same valid rows, prepared to the same values, and each bad row with the same
  problems in the same order. Numeric columns are checked with numpy; any other column (text, booleans, an
  unusual Parquet type) is checked once per *distinct* value with the signature's own rule, and the answer
  is spread back over the rows. Only the bad rows have their messages written, by the same rule.
- :func:`request_ids` builds a file's request ids in Arrow (what :func:`~shared.scoring.job.request_id`
  gives one by one).
- :func:`capture_lines` writes the capture stream's JSON lines for a chunk of scored rows, byte for byte
  what :meth:`CaptureRecord.to_line() <shared.serving.capture.CaptureRecord.to_line>` writes for each
  (pydantic's own serializer per column, the line assembled by Arrow), with no record object per row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.ml.features import CATEGORICAL, MISSING, NUMERIC
from shared.scoring.job import RowFailure

if TYPE_CHECKING:
    import pyarrow as pa

    from shared.serving.runtime import FeatureSpec, Signature

__all__ = ["ValidColumns", "capture_lines", "request_ids", "split_valid_columns"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class ValidColumns:
    """The valid rows of a file as columns: ``features`` (numeric and boolean as float64, NaN when missing;
    categorical as an object array of ``str``, :data:`MISSING` when missing), ``positions`` in the file,
    and every bad row with its problems (row order, problems in feature order)."""

    features: dict[str, np.ndarray]
    positions: np.ndarray
    failures: list[RowFailure]
    rows_total: int


def split_valid_columns(signature: Signature, table: pa.Table) -> ValidColumns:
    """What :func:`~shared.scoring.job.split_valid_rows` answers for ``table.to_pylist()``, by column."""
    count = table.num_rows
    prepared: dict[str, np.ndarray] = {}
    problems: dict[str, dict[int, str]] = {}
    bad_any = np.zeros(count, dtype=bool)
    for spec in signature.features:
        if spec.name in table.column_names:
            values, bad = _check_column(signature, spec, table.column(spec.name))
        else:
            values, bad = _constant(signature, spec, count, present=False)
        if bad.any():
            problems[spec.name] = _messages(signature, spec, table, values, bad)
            bad_any |= bad
        prepared[spec.name] = values
    if not bad_any.any():
        return ValidColumns(prepared, np.arange(count, dtype=np.int64), [], count)
    positions = np.flatnonzero(~bad_any).astype(np.int64)
    failures = [
        RowFailure(
            row=int(row),
            problems=[f"{name}: {found[int(row)]}" for name, found in problems.items() if int(row) in found],
        )
        for row in np.flatnonzero(bad_any)
    ]
    return ValidColumns({n: v[positions] for n, v in prepared.items()}, positions, failures, count)


def _check_column(signature: Signature, spec: FeatureSpec, column: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(prepared values, bad)`` for a column present in the file; ``bad`` may flag a row the rule then
    finds valid (its messages step re-checks), never the other way round."""
    import pyarrow as pa  # noqa: PLC0415

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = array.type
    if spec.type == NUMERIC and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        return _numeric_column(spec, array)
    return _by_distinct_value(signature, spec, array)


def _numeric_column(spec: FeatureSpec, array: Any) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa  # noqa: PLC0415

    nulls = np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    # Unsafe: an integer beyond 2**53 rounds to the nearest float, as Python's float() rounds it.
    floats = array.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    values = np.array(floats, dtype=np.float64, copy=True)
    with np.errstate(invalid="ignore"):
        bad = ~nulls & (~np.isfinite(values) | (np.abs(values) > _FLOAT32_MAX))
        if spec.min is not None:
            bad |= values < spec.min
        if spec.max is not None:
            bad |= values > spec.max
    if not spec.nullable:
        bad |= nulls
    values[nulls] = math.nan
    return values, bad


def _by_distinct_value(signature: Signature, spec: FeatureSpec, array: Any) -> tuple[np.ndarray, np.ndarray]:
    """The signature's rule once per distinct value (equal values are equal bits, so equal in Python too),
    spread back over the rows by the dictionary's indices."""
    import pyarrow as pa  # noqa: PLC0415

    try:
        encoded = array.dictionary_encode()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return _by_value(signature, spec, array.to_pylist())
    distinct = encoded.dictionary.to_pylist()
    indices = np.asarray(encoded.indices.fill_null(len(distinct)).to_numpy(zero_copy_only=False))
    checked = [_prepare(signature, spec, value, True) for value in [*distinct, None]]
    text = spec.type == CATEGORICAL
    table_values = np.array(
        [v if p is None else (MISSING if text else math.nan) for v, p in checked],
        dtype=object if text else np.float64,
    )
    table_bad = np.array([p is not None for _, p in checked], dtype=bool)
    return table_values[indices], table_bad[indices]


def _by_value(signature: Signature, spec: FeatureSpec, values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    checked = [_prepare(signature, spec, value, True) for value in values]
    text = spec.type == CATEGORICAL
    prepared = np.array(
        [v if p is None else (MISSING if text else math.nan) for v, p in checked],
        dtype=object if text else np.float64,
    )
    return prepared, np.array([p is not None for _, p in checked], dtype=bool)


def _constant(
    signature: Signature, spec: FeatureSpec, count: int, *, present: bool
) -> tuple[np.ndarray, np.ndarray]:
    value, problem = _prepare(signature, spec, None, present)
    text = spec.type == CATEGORICAL
    fill = (MISSING if text else math.nan) if problem is not None else value
    values = np.full(count, fill, dtype=object if text else np.float64)
    return values, np.full(count, problem is not None, dtype=bool)


def _messages(
    signature: Signature, spec: FeatureSpec, table: Any, values: np.ndarray, bad: np.ndarray
) -> dict[int, str]:
    """The flagged rows' problems, by the signature's own rule; a flagged row the rule accepts is unflagged
    and takes the value it prepares."""
    present = spec.name in table.column_names
    column = table.column(spec.name) if present else None
    found: dict[int, str] = {}
    for row in np.flatnonzero(bad):
        value = column[int(row)].as_py() if column is not None else None
        prepared, problem = _prepare(signature, spec, value, present)
        if problem is None:
            bad[row] = False
            values[row] = prepared
        else:
            found[int(row)] = problem
    return found


def _prepare(signature: Signature, spec: FeatureSpec, value: Any, present: bool) -> tuple[Any, str | None]:
    return signature._prepare(spec, value, present)


# --- request ids --------------------------------------------------------------------------------------------


def request_ids(job_id: str, index: int, positions: np.ndarray) -> pa.Array:
    """``request_id(job_id, index, row)`` for every row in ``positions``, as an Arrow string array."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    rows = pc.utf8_lpad(pc.cast(pa.array(positions, pa.int64()), pa.string()), width=7, padding="0")
    return pc.binary_join_element_wise(f"{job_id}-{index:05d}-", rows, "")


# --- captures -----------------------------------------------------------------------------------------------


def capture_lines(
    *,
    request_ids: pa.Array,
    model: str,
    version: int,
    inputs: pa.Table,
    predictions: Sequence[Any] | np.ndarray,
    probabilities: Mapping[str, np.ndarray] | None,
    time: datetime,
    source: str,
) -> list[bytes]:
    """The capture line of each scored row: what ``CaptureRecord.of_prediction(request_id=..., model=model,
    version=version, inputs=<the row of inputs>, prediction=..., probabilities={label: p, ...}, time=time,
    source=source).to_line()`` writes, for every row at once. ``inputs`` holds the scored rows in order,
    with the file's columns as a row dict would have them."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415
    from pydantic_core import to_json  # noqa: PLC0415

    count = len(request_ids)
    if count == 0:
        return []

    def literal(value: Any) -> str:
        return to_json(value, inf_nan_mode="null").decode()

    pieces: list[Any] = ['{"request_id":', *_string_pieces(request_ids)]
    pieces.append(
        f',"time":{literal(time)},"model":{literal(model)},"version":{literal(version)},"inputs":{{'
    )
    for position, name in enumerate(inputs.column_names):
        pieces.append(("," if position else "") + f"{literal(name)}:")
        pieces.extend(_pieces(inputs.column(position)))
    pieces.append('},"outputs":{"prediction":')
    labels = np.asarray(predictions, dtype=object)
    if len(labels) and all(isinstance(label, str) for label in set(labels.tolist())):
        pieces.extend(_string_pieces(pa.array(labels, pa.string())))
    else:
        pieces.append(_value_fragments(labels.tolist()))
    if probabilities is not None:
        pieces.append(',"probabilities":{')
        for position, (label, column) in enumerate(probabilities.items()):
            pieces.append(("," if position else "") + f"{literal(label)}:")
            pieces.append(_number_fragments(np.asarray(column, dtype=np.float64).tolist()))
        pieces.append("}")
    pieces.append(f'}},"source":{literal(source)}}}\n')
    merged: list[Any] = []
    for piece in pieces:  # neighbouring literals as one: fewer arguments to the join
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    arrays = [p if isinstance(p, pa.Array) else pa.scalar(p, pa.string()) for p in merged]
    lines = pc.binary_join_element_wise(*arrays, "")
    encoded: list[bytes] = lines.cast(pa.binary()).to_pylist()
    return encoded


def _pieces(column: Any) -> list[Any]:
    """Each value of an Arrow column as pydantic writes it in a JSON document (literals around the column
    where they are the same for every row)."""
    import pyarrow as pa  # noqa: PLC0415

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return _string_pieces(array)
    return [_fragments(array)]


def _fragments(array: Any) -> Any:
    import pyarrow as pa  # noqa: PLC0415

    kind = array.type
    if pa.types.is_floating(kind):
        # A null and a NaN are both written null, so NaN stands in for nulls and numpy lists the values.
        floats = array.cast(pa.float64()).to_numpy(zero_copy_only=False)  # a null is NaN there
        return _number_fragments(floats.tolist())
    if (pa.types.is_integer(kind) or pa.types.is_boolean(kind)) and array.null_count == 0:
        return _number_fragments(array.to_numpy(zero_copy_only=False).tolist())
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return _number_fragments(array.to_pylist())  # Python int, bool or None, nothing else
    if pa.types.is_null(kind):
        return pa.array(["null"] * len(array), pa.string())
    return _value_fragments(array.to_pylist())


def _needs_escape(data: np.ndarray) -> bool:
    """Whether serde (pydantic's JSON writer) would escape anything in ``data``: a quote, a backslash or a
    control character."""
    return bool((data < 0x20).any() or (data == ord('"')).any() or (data == ord("\\")).any())


def _string_pieces(array: Any) -> list[Any]:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    array = array.cast(pa.string())
    data = array.buffers()[2]
    # The whole data buffer at once: bytes outside the array's slice can only send it the slow way.
    if data is not None and _needs_escape(np.frombuffer(data, dtype=np.uint8)):
        return [_value_fragments(array.to_pylist())]
    if array.null_count == 0:
        return ['"', array, '"']  # the quotes go into the literals around it
    return [pc.fill_null(pc.binary_join_element_wise('"', array, '"', ""), "null")]


def _number_fragments(values: list[Any]) -> Any:
    """pydantic's JSON of numbers, booleans and nulls, in one call: no comma can occur inside one, so the
    document's commas are where the values end."""
    import pyarrow as pa  # noqa: PLC0415
    from pydantic_core import to_json  # noqa: PLC0415

    if not values:
        return pa.array([], pa.string())
    document = np.frombuffer(to_json(values, inf_nan_mode="null")[1:-1], dtype=np.uint8)
    commas = document == ord(",")
    ends = np.flatnonzero(commas) - np.arange(len(values) - 1)  # each value's end, the commas taken out
    offsets = np.concatenate([[0], ends, [len(document) - (len(values) - 1)]]).astype(np.int32)
    data = document[~commas]
    return pa.StringArray.from_buffers(len(values), pa.py_buffer(offsets), pa.py_buffer(data.tobytes()))


def _value_fragments(values: list[Any]) -> Any:
    """pydantic's JSON of each value, one by one (text that needs escaping, unusual types)."""
    import pyarrow as pa  # noqa: PLC0415
    from pydantic_core import to_json  # noqa: PLC0415

    parts = [to_json(v, inf_nan_mode="null") for v in values]
    return pa.array(parts, pa.binary()).cast(pa.string())
