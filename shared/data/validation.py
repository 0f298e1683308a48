"""Enforce a data contract on an uploaded CSV or Parquet file, and turn it into Flywheel's canonical frame.

:func:`read_table` turns bytes into a frame of raw values and :func:`validate_frame` checks that frame
against the contract and collects *every* broken rule as a :class:`Problem`, so a user fixes a file in one
pass. :func:`shared.data.streaming.validate_file` applies the same reading and rules to a file a batch at a
time (what Validate does, so memory stays flat as files grow) and raises
:class:`~shared.errors.DataValidationError` (problems attached as dicts) when anything is wrong. Pure logic:
bytes and DataFrames in, values out, no I/O.

Reading
    * The format comes from the magic bytes first (``PAR1`` is Parquet, ``1f 8b`` is gzip-compressed CSV),
      then from the name: ``.csv``, ``.csv.gz``, ``.txt`` are CSV; ``.parquet``, ``.pq`` are Parquet; a name
      without a suffix is read as CSV; anything else is refused.
    * CSV is UTF-8 (a BOM is fine), comma-separated, with a header row. Every cell is read as text, so types
      come from the contract and are never guessed. Cells and header names are stripped of surrounding
      whitespace, and these cells count as missing: ``MISSING_TOKENS`` (``""``, ``NA``, ``N/A``, ``null``,
      ``NULL``, ``NaN``, ``nan``, ``None``). An unnamed column with no values (a trailing comma on every line)
      is dropped; any other unnamed column is unexpected. Arrow's multi-threaded reader reads every file
      it reads exactly as pandas' reader does; pandas reads the rest and words what is wrong with them.
    * ``contract.max_file_mb`` counts MiB of the upload and, for gzip, of the decompressed text too.

Rules and the canonical frame (what is written to ``datasets/`` as Parquet and what training reads)
    * Columns: exactly ``contract.columns``, in that order. A missing target is ``missing_target``, any other
      absent column ``missing_column``; a column the contract does not name is ``unexpected_column``.
    * Id column: text (``str`` dtype), present and unique in every row. When the contract has no
      ``id_column``, a column ``__row_id__`` (:data:`ROW_ID_COLUMN`) is put first, holding
      ``"<source id>-<0-based row index>"`` where the source id is the first 16 hex digits of the file's
      sha256 (of the frame's content for :func:`validate_frame` without ``source_id``), so the same file
      always gets the same ids. A file that already carries ``__row_id__`` (a canonical frame read back)
      keeps it.
    * Timestamp column: ``datetime64[ns, UTC]``, present in every row. Text must be ISO 8601; a time without
      a zone is UTC, one with an offset is converted to UTC. Numbers are not timestamps.
    * Numeric features: ``float64``; text that is not a finite number is ``wrong_type``; ``min``/``max`` are
      inclusive bounds.
    * Boolean features: ``float64``, 1.0/0.0, NaN when missing. Accepted: real booleans, and true/false,
      yes/no, 1/0 (also 1.0/0.0), in any case.
    * Categorical features: text (``str`` dtype), NaN when missing (no sentinel: training adds its own).
      Values are compared with ``allowed`` as text.
    * Classification target: text (``str`` dtype). Booleans and ``true``/``false`` in any case become
      ``"true"``/``"false"``; integral numbers (``1``, ``1.0``, ``"1.0"``) become ``"1"``. The same rule is
      applied to ``target_values``, to ids and to categorical values, so ``allowed: [1, 2]`` matches a
      Parquet integer column or a CSV written with ``1.0``.
    * Regression target: ``float64``.
    * Nulls: a feature that is not ``nullable`` may have no missing value (``null_not_allowed``); a nullable
      feature with no value at all is ``all_missing``. The id and the timestamp are never nullable.

Problems
    ``rule`` is one of: file level ``empty_file``, ``too_large``, ``not_a_table`` (binary, a spreadsheet, an
    unknown suffix, unreadable Parquet or gzip), ``bad_encoding``, ``malformed_csv``, ``single_column`` (the
    delimiter is not a comma), ``header_only``, ``too_few_rows``; column level ``missing_column``,
    ``unexpected_column``, ``duplicate_column``, ``wrong_type``, ``null_not_allowed``, ``below_min``,
    ``above_max``, ``not_allowed``, ``all_missing``, ``duplicate_id``, ``bad_timestamp``, ``missing_target``,
    ``invalid_target``. ``count`` is the number of rows affected, or 1 for a problem with the file or a
    column as a whole. ``examples`` holds up to five offending values (as text) or row numbers (``"row 3"``:
    data rows count from 1, the header is not a row; ``"line 4"`` for malformed CSV counts file lines). Once
    the file is known to be unreadable, or read as a single column, only that is reported: the rest would be
    noise.

Building blocks
    Label files and feature files are checked with the same reader and rules: a :class:`Rulebook` names
    what a file is checked against in messages and caps its size; :func:`read_upload`, :func:`check_header`
    (the one header check: a single-column header, missing, unexpected and repeated columns, no rows),
    :class:`ColumnChecks` (typing and rules per column), :func:`clean`, :func:`canonical_text` and
    :func:`rejection` are what :func:`~shared.data.streaming.validate_file` is made of.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import re
import warnings
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from pydantic import BaseModel, ConfigDict

from shared.data.contract import DataContract, Feature, FeatureType, Task
from shared.errors import DataValidationError

ROW_ID_COLUMN = "__row_id__"
MISSING_TOKENS = frozenset({"", "NA", "N/A", "null", "NULL", "NaN", "nan", "None"})
BOOLEAN_TOKENS = {"true": 1.0, "yes": 1.0, "1": 1.0, "false": 0.0, "no": 0.0, "0": 0.0}
CSV_SUFFIXES = (".csv", ".csv.gz", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
MAX_EXAMPLES = 5
TOP_VALUES = 20
_MIB = 1024 * 1024
_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "pipes"}
_UTC_MIN = pd.Timestamp.min.tz_localize("UTC")
_UTC_MAX = pd.Timestamp.max.tz_localize("UTC")
_INTEGRAL_DECIMAL = r"[+-]?\d+\.0*"


class Problem(BaseModel):
    """One broken rule, summarised over every row that breaks it."""

    model_config = ConfigDict(frozen=True)

    column: str | None
    rule: str
    count: int
    examples: list[str]
    message: str


@dataclass(frozen=True, eq=False)
class ValidatedData:
    """A file that met its contract, as the canonical typed frame plus what the registry records about it."""

    frame: pd.DataFrame
    rows: int
    schema: dict[str, str]
    time_range: tuple[str, str] | None
    profile: dict[str, Any]


@dataclass(frozen=True)
class Rulebook:
    """What a file is checked against, as messages name it, and the largest file it accepts."""

    owner: str  # "the contract for 'churn'": it requires columns and caps the size
    document: str  # "contract": a column is "not in the contract", or added to "the contract's features"
    title: str  # "the data contract for 'churn'": a rejected file "does not meet" it
    max_file_mb: float
    # What to do about a column it does not expect; by default, remove it or add it as a feature.
    unexpected_remedy: str = ""

    def remedy(self) -> str:
        return self.unexpected_remedy or (
            f"remove it from the file or add it to the {self.document}'s features"
        )

    @classmethod
    def of_contract(cls, contract: DataContract) -> Rulebook:
        return cls(
            owner=f"the contract for '{contract.model}'",
            document="contract",
            title=f"the data contract for '{contract.model}'",
            max_file_mb=contract.max_file_mb,
        )


class _RefusalError(Exception):
    """Raised inside the reader when the file cannot be read as a table at all."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


# --- public API -------------------------------------------------------------------------------------------


def read_table(body: bytes, filename: str, contract: DataContract) -> pd.DataFrame:
    """Read a CSV or Parquet upload into a frame of raw values (CSV: all text, NaN for missing cells).

    Raises :class:`DataValidationError` with one problem when the file is empty, too large, not a table,
    not UTF-8, malformed CSV, or unreadable Parquet."""
    return read_upload(body, filename, Rulebook.of_contract(contract))


def read_upload(body: bytes, filename: str, rulebook: Rulebook) -> pd.DataFrame:
    """:func:`read_table` for any :class:`Rulebook`: the same formats, limits and refusals."""
    try:
        return _read(body, filename, rulebook)
    except _RefusalError as refused:
        raise rejection(filename, rulebook, [refused.problem]) from None


def validate_frame(
    frame: pd.DataFrame, contract: DataContract, *, source_id: str | None = None
) -> tuple[ValidatedData | None, list[Problem]]:
    """Check ``frame`` against ``contract``: ``(data, [])`` when it passes, ``(None, problems)`` otherwise.

    ``source_id`` prefixes generated row ids when the contract has no id column (see the module docstring);
    without it, a digest of the frame's content is used."""
    checked, problems = check_header(
        frame,
        contract.columns,
        Rulebook.of_contract(contract),
        role_of=lambda name: _role(name, contract),
        target=contract.target,
        tolerated=frozenset({ROW_ID_COLUMN}) if contract.id_column is None else frozenset(),
    )
    if checked is None:
        return None, problems
    frame = checked
    rows = len(frame)

    checks = ColumnChecks(problems)
    typed: dict[str, pd.Series] = {}
    if contract.id_column is None:
        if ROW_ID_COLUMN in frame.columns:
            typed[ROW_ID_COLUMN] = checks.ids(ROW_ID_COLUMN, clean(frame[ROW_ID_COLUMN]))
        else:
            prefix = source_id or _frame_digest(frame)
            typed[ROW_ID_COLUMN] = pd.Series([f"{prefix}-{i}" for i in range(rows)], dtype="str")
    present = [c for c in contract.columns if c in frame.columns]
    for name in present:
        typed[name] = checks.column(name, clean(frame[name]), contract)
    if rows < contract.min_rows:
        problems.append(
            Problem(
                column=None,
                rule="too_few_rows",
                count=1,
                examples=[str(rows)],
                message=f"The file has {rows} data row(s); the contract for '{contract.model}' needs at "
                f"least {contract.min_rows}.",
            )
        )
    if problems:
        return None, problems
    canonical = pd.DataFrame(typed)
    return _validated(canonical, contract), []


def source_id_of(body: bytes) -> str:
    """The prefix of generated row ids: the first 16 hex digits of the file's sha256."""
    return hashlib.sha256(body).hexdigest()[:16]


# --- reading ----------------------------------------------------------------------------------------------


def _read(body: bytes, filename: str, rulebook: Rulebook) -> pd.DataFrame:
    name = filename.lower()
    kind = sniff(len(body), body, name, filename, rulebook)
    if kind == "parquet":
        return _read_parquet(body)
    if kind == "gzip":
        body = _gunzip(body, int(rulebook.max_file_mb * _MIB), rulebook)
        name = name.removesuffix(".gz")
    refuse_unreadable_text(body, name, filename)
    return _read_csv(body)


def sniff(
    size: int, head: bytes, name: str, filename: str, rulebook: Rulebook
) -> Literal["parquet", "gzip", "csv"]:
    """What a file of ``size`` bytes starting with ``head`` is, from those alone, or the refusal: empty,
    too large, named Parquet but not Parquet, named gzip but not gzip. ``name`` is ``filename`` lowered.
    Both readers (bytes here, a file on disk in :mod:`shared.data.streaming`) refuse alike through it."""
    if not size or (size <= 4096 and not head.strip()):
        what = "is empty (0 bytes)" if not size else "holds only blank space"
        raise _RefusalError(
            _file_problem(
                "empty_file", f"The file {what}; upload a CSV or Parquet file with a header and rows."
            )
        )
    if size > int(rulebook.max_file_mb * _MIB):
        raise _RefusalError(_too_large(size, rulebook, "is"))
    if head[:4] == b"PAR1":
        return "parquet"
    if name.endswith(PARQUET_SUFFIXES):
        raise _RefusalError(
            _not_a_table(
                f"The file '{filename}' is named like a Parquet file but is not one (no PAR1 header)."
            )
        )
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if name.endswith(".gz"):
        raise _RefusalError(
            _not_a_table(f"The file '{filename}' is named like a gzip file but is not gzip-compressed.")
        )
    return "csv"


def refuse_unreadable_text(head: bytes, name: str, filename: str) -> None:
    """Refuse text that is another format (a spreadsheet, JSON, …) or a name with a suffix Flywheel does not
    read; ``name`` is the lowered name without a ``.gz`` the file was inflated from."""
    hint = _foreign_format(head)
    if hint:
        raise _RefusalError(_not_a_table(f"The file {hint}; export the data as a CSV or Parquet file."))
    suffix = _suffix(name)
    if suffix and not name.endswith(CSV_SUFFIXES):
        raise _RefusalError(
            _not_a_table(
                f"The file '{filename}' has the suffix '{suffix}'; Flywheel reads CSV "
                f"({', '.join(CSV_SUFFIXES)}) and Parquet ({', '.join(PARQUET_SUFFIXES)}) files."
            )
        )


def _suffix(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return "." + base.rsplit(".", 1)[-1] if "." in base.strip(".") else ""


def _foreign_format(body: bytes) -> str | None:
    if body[:4] == b"PK\x03\x04":
        return "is a zip archive (an Excel .xlsx workbook is one)"
    if body[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        return "is an old Excel (.xls) workbook"
    if b"\x00" in body[:65536]:
        return "is binary data, not a table (it contains NUL bytes)"
    return None


def _gunzip(body: bytes, limit: int, rulebook: Rulebook) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        text = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _RefusalError(_not_a_table(f"The gzip data is corrupt ({exc}).")) from None
    if len(text) > limit:
        raise _RefusalError(_too_large(len(text), rulebook, "decompresses to more than"))
    if not inflater.eof:
        raise _RefusalError(_not_a_table("The gzip data is truncated: the file ends before the stream does."))
    if not text.strip():
        raise _RefusalError(
            _file_problem("empty_file", "The gzip file decompresses to nothing; it holds no table.")
        )
    return text


def _read_csv(body: bytes) -> pd.DataFrame:
    raw = _read_csv_arrow(body)
    if raw is None:
        raw = _read_csv_pandas(body)
    columns = [str(v).strip() for v in raw.iloc[0]]
    cells = {i: clean(raw.iloc[1:, i].reset_index(drop=True)) for i in range(len(columns))}
    # A trailing comma on every line (common in spreadsheet exports) makes an unnamed, empty column: it
    # carries nothing, so it is dropped; an unnamed column that holds values is reported as unexpected.
    keep = [i for i in cells if columns[i] or cells[i].notna().any()]
    return pd.DataFrame({i: cells[i] for i in keep}).set_axis([columns[i] for i in keep], axis=1)


def _read_csv_arrow(body: bytes) -> pd.DataFrame | None:
    """Every cell as text, header read as a row, parsed by Arrow's multi-threaded reader — or None where
    Arrow would not read the file exactly as :func:`_read_csv_pandas` does, which then reads it (and words
    its problems: bad encoding, ragged lines, open quotes).

    Arrow refuses what the pandas reader would refuse, and also rows shorter than the header (pandas pads
    them); a one-field header is left to pandas, whose blank-line rule differs for a single column, and so
    is a file that may end inside a quoted value. ``tests/unit/test_csv_readers.py`` holds the two readers
    to the same cells."""
    width = len(_header_fields(body))
    if width < 2:
        return None
    names = [f"c{i}" for i in range(width)]
    try:
        table = pa_csv.read_csv(
            io.BytesIO(body),
            read_options=pa_csv.ReadOptions(column_names=names),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=True),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if table.num_rows == 0:
        return None
    if _ends_in_open_quote(body, table.column(width - 1)[-1].as_py()):
        return None
    frame = table.to_pandas()
    return frame.set_axis(range(width), axis=1)


def _ends_in_open_quote(body: bytes, last_cell: str) -> bool:
    """Whether the file may end inside a quoted value, which Arrow runs to the end of the file and pandas
    refuses. Such a value can only be the last cell, and then the file ends with that cell's text (quotes
    doubled) right after an opening quote. A closed value seldom looks so (``a,""``), and then pandas
    merely reads the file."""
    text = last_cell.replace('"', '""').encode()
    start = len(body) - len(text)
    return body.endswith(text) and body[start - 1 : start] == b'"'


def _read_csv_pandas(body: bytes) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            raw = pd.read_csv(
                io.BytesIO(body),
                header=None,  # read the header as a row: no guessed index, no renamed duplicate names
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                encoding="utf-8-sig",
                on_bad_lines="error",
                skip_blank_lines=True,
            )
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start : exc.start + 1].hex() if isinstance(exc.object, bytes) else "?"
        raise _RefusalError(
            _file_problem(
                "bad_encoding",
                f"The file is not UTF-8 text (byte 0x{byte} cannot be decoded); save it as UTF-8 CSV.",
            )
        ) from None
    except pd.errors.EmptyDataError:
        raise _RefusalError(
            _file_problem("empty_file", "The file holds no rows, not even a header.")
        ) from None
    except pd.errors.ParserError as exc:
        single = single_column_problem(_header_fields(body))
        raise _RefusalError(single or _malformed(str(exc))) from None
    return raw


def _header_fields(body: bytes) -> list[str]:
    text = body[:65536].decode("utf-8-sig", errors="replace")
    for line in text.splitlines():
        if line.strip():
            return [field.strip() for field in next(csv.reader([line]))]
    return []


def _malformed(detail: str) -> Problem:
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", detail)
    quote = re.search(r"EOF inside string starting at row (\d+)", detail)
    if fields:
        expected, line, saw = fields.groups()
        message = (
            f"Line {line} has {saw} fields but the header has {expected}; quote values that contain commas."
        )
        examples = [f"line {line}"]
    elif quote:
        line = str(int(quote.group(1)) + 1)
        message = f"A quote opened on line {line} is never closed; every quoted value needs a closing quote."
        examples = [f"line {line}"]
    else:
        message, examples = f"The file is not well-formed CSV ({detail.strip()}).", []
    return Problem(column=None, rule="malformed_csv", count=1, examples=examples, message=message)


def _read_parquet(body: bytes) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(io.BytesIO(body))
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise _RefusalError(
            _not_a_table(f"The Parquet file cannot be read ({type(exc).__name__}: {exc}).")
        ) from None
    if frame.shape[1] == 0:
        raise _RefusalError(_not_a_table("The Parquet file has no columns."))
    return frame.reset_index(drop=True)


# --- checking ---------------------------------------------------------------------------------------------


def check_header(
    frame: pd.DataFrame,
    expected: list[str],
    rulebook: Rulebook,
    *,
    role_of: Callable[[str], str],
    target: str | None = None,
    tolerated: frozenset[str] = frozenset(),
) -> tuple[pd.DataFrame | None, list[Problem]]:
    """The check every kind of file (data, labels, feature sources) starts with: its header.

    Returns the frame named by its stripped header (a repeated column keeps its first occurrence) with the
    header's problems (:func:`presence_problems`), or ``(None, problems)`` when no row can be checked at
    all: the header was read as one column (another delimiter), or there are no rows below it."""
    names = [str(c).strip() for c in frame.columns]
    single = single_column_problem(names)
    if single is not None:
        return None, [single]
    problems = presence_problems(
        names, expected, rulebook, role_of=role_of, target=target, tolerated=tolerated
    )
    frame = frame.set_axis(names, axis=1).reset_index(drop=True)
    frame = frame.loc[:, ~frame.columns.duplicated()]
    if len(frame) == 0:
        return None, [*problems, header_only_problem()]
    return frame, problems


def presence_problems(
    names: list[str],
    expected: list[str],
    rulebook: Rulebook,
    *,
    role_of: Callable[[str], str],
    target: str | None = None,
    tolerated: frozenset[str] = frozenset(),
) -> list[Problem]:
    """Columns named twice, missing (``missing_target`` for ``target``) or not expected (``tolerated`` ones
    aside). ``role_of(column)`` says what a missing column is for, e.g. "the id column"."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    for name, times in seen.items():
        if times > 1:
            problems.append(
                Problem(
                    column=name,
                    rule="duplicate_column",
                    count=1,
                    examples=[name],
                    message=f"Column '{name}' appears {times} times in the header; each column must appear "
                    "once (only the first is checked).",
                )
            )
    missing = [c for c in expected if c not in seen]
    for name in missing:
        if name == target:
            problems.append(
                Problem(
                    column=name,
                    rule="missing_target",
                    count=1,
                    examples=[],
                    message=f"The target column '{name}' is missing; {rulebook.owner} requires it as "
                    f"{role_of(name)}.",
                )
            )
        else:
            problems.append(
                Problem(
                    column=name,
                    rule="missing_column",
                    count=1,
                    examples=[],
                    message=f"Column '{name}' is missing; {rulebook.owner} requires it as {role_of(name)}.",
                )
            )
    for name in seen:
        if name in expected or name in tolerated:
            continue
        close = difflib.get_close_matches(name, missing, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        what = (
            f"Column '{name}' is" if name else f"A column without a name (column {names.index(name) + 1}) is"
        )
        problems.append(
            Problem(
                column=name,
                rule="unexpected_column",
                count=1,
                examples=[name],
                message=f"{what} not in the {rulebook.document}{hint}; {rulebook.remedy()}.",
            )
        )
    return problems


def _role(name: str, contract: DataContract) -> str:
    if name == contract.target:
        return "the value to learn, in every row of a training file"
    if name == contract.id_column:
        return "the id column"
    if name == contract.timestamp_column:
        return "the timestamp column"
    return f"a {contract.features[name].type.value} feature"


def header_only_problem() -> Problem:
    return Problem(
        column=None,
        rule="header_only",
        count=1,
        examples=[],
        message="The file has a header but no data rows; add rows below the header.",
    )


def single_column_problem(names: list[str]) -> Problem | None:
    """``single_column`` when the header was read as one column that holds another delimiter."""
    if len(names) != 1:
        return None
    found = [d for d in _DELIMITERS if d in names[0]]
    if not found:
        return None
    return Problem(
        column=None,
        rule="single_column",
        count=1,
        examples=[_short(names[0])],
        message=f"The header was read as one column ('{_short(names[0])}'): the file seems to separate "
        f"columns with {_DELIMITERS[found[0]]}, but they must be separated by commas.",
    )


Render = Callable[[int, list[str]], str]
"""Words a problem from the rows it covers and its examples, so a summary merged over batches reads as
one found in the whole file."""

# Within a column the rules are checked (and reported) in this order; merging batches keeps it.
RULE_ORDER = (
    "missing_target",
    "wrong_type",
    "bad_timestamp",
    "not_allowed",
    "invalid_target",
    "below_min",
    "above_max",
    "null_not_allowed",
    "duplicate_id",
    "all_missing",
    "single_class",
)


@dataclass(frozen=True)
class Finding:
    """A broken rule before it is worded: merged over batches (counts added, examples kept in row order up
    to :data:`MAX_EXAMPLES`), then rendered as the :class:`Problem` the whole file would have given."""

    column: str
    rule: str
    count: int
    examples: list[str]
    render: Render
    kind: str = ""  # the place in RULE_ORDER, when it differs from the rule (a target with one class)

    @property
    def key(self) -> tuple[str, str]:
        return self.column, self.kind or self.rule

    def merged(self, other: Finding) -> Finding:
        examples = list(dict.fromkeys([*self.examples, *other.examples]))[:MAX_EXAMPLES]
        return Finding(self.column, self.rule, self.count + other.count, examples, self.render, self.kind)

    def problem(self) -> Problem:
        return Problem(
            column=self.column,
            rule=self.rule,
            count=self.count,
            examples=self.examples,
            message=self.render(self.count, self.examples),
        )


class ColumnChecks:
    """Typing and rule checks per column; each method returns the canonical column and records problems.

    ``document`` is what the rules come from, as messages name it. ``all_missing_allowed`` accepts a
    nullable feature that is empty in every row (a feature file may update only some features); a training
    file may not have one. With ``whole_column=False`` the checks see one batch of a file: the rules about
    a column as a whole (repeated ids, a feature empty everywhere, a single class) are left to the caller,
    who sees every batch (:mod:`shared.data.streaming`), and :attr:`findings` are merged over batches."""

    def __init__(
        self,
        problems: list[Problem],
        *,
        document: str = "contract",
        all_missing_allowed: bool = False,
        whole_column: bool = True,
    ) -> None:
        self.problems = problems
        self.document = document
        self.all_missing_allowed = all_missing_allowed
        self.whole_column = whole_column
        self.findings: list[Finding] = []

    def add(
        self, column: str, rule: str, mask: pd.Series, examples: list[str], render: Render, kind: str = ""
    ) -> None:
        finding = Finding(column, rule, int(mask.sum()), examples, render, kind)
        self.findings.append(finding)
        self.problems.append(finding.problem())

    def column(self, name: str, values: pd.Series, contract: DataContract) -> pd.Series:
        """The column ``name`` checked by its role in ``contract``: id, timestamp, target or feature."""
        if name == contract.id_column:
            return self.ids(name, values)
        if name == contract.timestamp_column:
            return self.timestamps(name, values)
        if name == contract.target:
            return self.target(name, values, contract)
        return self.feature(name, contract.features[name], values)

    def ids(self, name: str, values: pd.Series) -> pd.Series:
        text = canonical_text(values)
        missing = text.isna()
        if missing.any():
            self.add(
                name,
                "null_not_allowed",
                missing,
                _rows(missing),
                lambda n, rows: (
                    f"Column '{name}' (the id column) is empty in {n} row(s) "
                    f"({_where_of(n, rows)}); every row needs an id."
                ),
            )
        if not self.whole_column:
            return text
        repeated = text.duplicated(keep=False) & ~missing
        if repeated.any():
            distinct = text[repeated].nunique()
            self.add(name, "duplicate_id", repeated, _values(text[repeated]), duplicate_ids(name, distinct))
        return text

    def keys(self, name: str, values: pd.Series, role: str) -> pd.Series:
        """A key column that may repeat (an entity key): canonical text, present in every row."""
        text = canonical_text(values)
        missing = text.isna()
        if missing.any():
            self.add(
                name,
                "null_not_allowed",
                missing,
                _rows(missing),
                lambda n, rows: (
                    f"Column '{name}' ({role}) is empty in {n} row(s) ({_where_of(n, rows)}); "
                    "every row needs one."
                ),
            )
        return text

    def timestamps(self, name: str, values: pd.Series) -> pd.Series:
        missing = values.isna()
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            stamps = values.dt.tz_convert("UTC")
        elif pd.api.types.is_datetime64_dtype(values.dtype):
            stamps = values.dt.tz_localize("UTC")
        elif pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
            stamps = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
        else:
            stamps = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
        out_of_range = stamps.notna() & ((stamps < _UTC_MIN) | (stamps > _UTC_MAX))
        stamps = stamps.mask(out_of_range).dt.as_unit("ns")
        bad = ~missing & stamps.isna()
        if bad.any():
            self.add(
                name,
                "bad_timestamp",
                bad,
                _values(values[bad]),
                lambda n, examples: (
                    f"Column '{name}' has {n} value(s) that are not valid dates/times (e.g. "
                    f"{_list(examples)}); expected ISO 8601 such as 2024-05-01T12:00:00Z between the years "
                    "1678 and 2261 (a time without a zone is read as UTC)."
                ),
            )
        if missing.any():
            self.add(
                name,
                "null_not_allowed",
                missing,
                _rows(missing),
                lambda n, rows: (
                    f"Column '{name}' (the timestamp column) is empty in {n} row(s) "
                    f"({_where_of(n, rows)}); every row needs a timestamp."
                ),
            )
        return stamps

    def feature(self, name: str, feature: Feature, values: pd.Series) -> pd.Series:
        missing = values.isna()
        if feature.type is FeatureType.NUMERIC:
            typed = self._numbers(name, feature, values, missing)
        elif feature.type is FeatureType.BOOLEAN:
            typed = self._booleans(name, values, missing)
        else:
            typed = self._categories(name, feature, values, missing)
        if not feature.nullable and missing.any():
            document = self.document
            self.add(
                name,
                "null_not_allowed",
                missing,
                _rows(missing),
                lambda n, rows: (
                    f"Column '{name}' is empty in {n} row(s) ({_where_of(n, rows)}); the "
                    f"{document} does not allow missing values in it (mark it nullable: true to allow them)."
                ),
            )
        elif self.whole_column and feature.nullable and missing.all() and not self.all_missing_allowed:
            self.add(name, "all_missing", missing, [], all_missing(name))
        return typed

    def _numbers(self, name: str, feature: Feature, values: pd.Series, missing: pd.Series) -> pd.Series:
        numbers = _as_float(values)
        bad = ~missing & ~np.isfinite(numbers)
        if bad.any():
            self.add(
                name,
                "wrong_type",
                bad,
                _values(values[bad]),
                lambda n, examples: (
                    f"Column '{name}' has {n} value(s) that are not numbers (e.g. {_list(examples)}); "
                    "it is a numeric feature and expects finite numbers such as 12 or 3.5."
                ),
            )
        numbers = numbers.mask(bad)
        low, high = feature.min, feature.max
        if low is not None:
            below = numbers < low
            if below.any():
                self.add(
                    name,
                    "below_min",
                    below,
                    _values(values[below]),
                    lambda n, examples: (
                        f"Column '{name}' has {n} value(s) below its minimum {low:g} "
                        f"(e.g. {_list(examples)})."
                    ),
                )
        if high is not None:
            above = numbers > high
            if above.any():
                self.add(
                    name,
                    "above_max",
                    above,
                    _values(values[above]),
                    lambda n, examples: (
                        f"Column '{name}' has {n} value(s) above its maximum {high:g} "
                        f"(e.g. {_list(examples)})."
                    ),
                )
        return numbers

    def _booleans(self, name: str, values: pd.Series, missing: pd.Series) -> pd.Series:
        flags = canonical_text(values).str.lower().map(BOOLEAN_TOKENS).astype("float64")
        bad = ~missing & flags.isna()
        if bad.any():
            self.add(
                name,
                "wrong_type",
                bad,
                _values(values[bad]),
                lambda n, examples: (
                    f"Column '{name}' has {n} value(s) that are not booleans (e.g. "
                    f"{_list(examples)}); expected true/false, yes/no or 1/0."
                ),
            )
        return flags

    def _categories(self, name: str, feature: Feature, values: pd.Series, missing: pd.Series) -> pd.Series:
        text = canonical_text(values)
        if feature.allowed is not None:
            allowed = list(feature.allowed)
            bad = ~missing & ~text.isin(_canonical_set(allowed))
            if bad.any():
                self.add(
                    name,
                    "not_allowed",
                    bad,
                    _values(text[bad]),
                    lambda n, examples: (
                        f"Column '{name}' has {n} value(s) outside its allowed values (e.g. "
                        f"{_list(examples)}); expected one of {_list(allowed)}."
                    ),
                )
        return text

    def target(self, name: str, values: pd.Series, contract: DataContract) -> pd.Series:
        missing = values.isna()
        if missing.any():
            self.add(
                name,
                "missing_target",
                missing,
                _rows(missing),
                lambda n, rows: (
                    f"The target column '{name}' is empty in {n} row(s) ({_where_of(n, rows)}); "
                    "every training row needs the value to learn."
                ),
            )
        if contract.task is Task.REGRESSION:
            numbers = _as_float(values)
            bad = ~missing & ~np.isfinite(numbers)
            if bad.any():
                self.add(
                    name,
                    "invalid_target",
                    bad,
                    _values(values[bad]),
                    lambda n, examples: (
                        f"The target column '{name}' has {n} value(s) that are not numbers "
                        f"(e.g. {_list(examples)}); a regression target must be a finite number."
                    ),
                )
            return numbers.mask(bad)
        labels = canonical_text(values)
        if contract.target_values is not None:
            classes = list(contract.target_values)
            bad = ~missing & ~labels.isin(_canonical_set(classes))
            if bad.any():
                self.add(
                    name,
                    "invalid_target",
                    bad,
                    _values(labels[bad]),
                    lambda n, examples: (
                        f"The target column '{name}' has {n} value(s) that are not classes "
                        f"of the contract (e.g. {_list(examples)}); expected one of {_list(classes)}."
                    ),
                )
        if not self.whole_column:
            return labels
        present = labels[~missing].unique()
        if 0 < len(present) < 2:
            self.add(name, "invalid_target", ~missing, [str(present[0])], single_class(name), "single_class")
        return labels


def duplicate_ids(name: str, distinct: int) -> Render:
    """How repeated ids are worded: ``distinct`` ids repeated over ``n`` rows."""
    return lambda n, ids: (
        f"Column '{name}' repeats {distinct} id(s) across {n} rows (e.g. {_list(ids)}); each "
        "row needs a unique id."
    )


def all_missing(name: str) -> Render:
    """How a nullable feature with no value in any row is worded."""
    return lambda n, _: (
        f"Column '{name}' is empty in all {n} rows; it is nullable, but a feature needs at "
        "least one value (check the export)."
    )


def single_class(name: str) -> Render:
    """How a classification target with one class is worded (the class is the one example)."""
    return lambda _, classes: (
        f"The target column '{name}' holds a single class ('{classes[0]}'); a classifier "
        "needs at least two classes to learn from."
    )


# --- values -----------------------------------------------------------------------------------------------


def clean(values: pd.Series) -> pd.Series:
    """Strip text and turn the missing tokens into NaN. Typed NumPy columns pass through; any other column
    (categorical, nullable or Arrow-backed) becomes ``str`` or ``object`` with NaN for missing, so the
    checks see one representation whatever produced the frame."""
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind != "O"):
        return values
    if isinstance(dtype, pd.StringDtype) or (
        isinstance(dtype, pd.ArrowDtype) and pd.api.types.is_string_dtype(dtype)
    ):
        text = values.astype("str").str.strip()
    else:
        text = values.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
    return text.mask(text.isin(MISSING_TOKENS) | text.isna())


def _as_float(values: pd.Series) -> pd.Series:
    """Numbers as float64, NaN where a value is missing or not a number."""
    if isinstance(values.dtype, pd.StringDtype):
        # Arrow parses a column of text in C, several times faster than to_numeric (which goes through
        # Python objects). It refuses the whole column if one value is not a number; the slow path below
        # then finds which. Where both accept a value, they read the same number.
        try:
            parsed = pc.cast(pa.array(values.array), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
        else:
            return pd.Series(parsed.to_numpy(zero_copy_only=False), index=values.index, dtype="float64")
    return pd.to_numeric(values, errors="coerce").astype("float64")


def canonical_text(values: pd.Series) -> pd.Series:
    """Values as text: booleans and true/false in any case → "true"/"false", integral numbers → "1"."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.map({True: "true", False: "false"}).astype("str")
    if isinstance(values.dtype, pd.StringDtype):
        text = values
    else:
        text = values.map(_value_text, na_action="ignore").astype("str")
    lower = text.str.lower()
    text = text.mask(lower.isin(("true", "false")), lower)
    integral = text.str.fullmatch(_INTEGRAL_DECIMAL).fillna(False).astype(bool)
    if integral.any():
        text = text.mask(integral, text.str.replace(r"\.0*$", "", regex=True))
    return text.astype("str")


def _canonical_set(values: Iterable[str]) -> set[str]:
    return {str(v) for v in canonical_text(pd.Series(list(values), dtype="str"))}


def _value_text(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, pd.Timestamp):
        return str(value.isoformat())
    return str(value).strip()


def _frame_digest(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame.astype("str"), index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


# --- the result -------------------------------------------------------------------------------------------


def _validated(frame: pd.DataFrame, contract: DataContract) -> ValidatedData:
    time_range = None
    if contract.timestamp_column:
        stamps = frame[contract.timestamp_column]
        time_range = (_iso(stamps.min()), _iso(stamps.max()))
    return ValidatedData(
        frame=frame,
        rows=len(frame),
        schema={str(c): str(frame[c].dtype) for c in frame.columns},
        time_range=time_range,
        profile=profile_frame(frame, contract),
    )


def profile_frame(frame: pd.DataFrame, contract: DataContract) -> dict[str, Any]:
    """A JSON-able summary of a canonical frame: per column its nulls and numbers or top values, and the
    target's distribution."""
    columns: dict[str, dict[str, Any]] = {}
    for name in frame.columns:
        values = frame[name]
        entry: dict[str, Any] = {"nulls": int(values.isna().sum())}
        if name in (contract.id_column, ROW_ID_COLUMN):
            entry |= {"role": "id", "distinct": int(values.nunique())}
        elif name == contract.timestamp_column:
            entry |= {"role": "timestamp", "min": _iso(values.min()), "max": _iso(values.max())}
        elif name == contract.target:
            entry |= {"role": "target", **_summary(values, contract.task is Task.REGRESSION)}
        else:
            kind = contract.features[name].type
            entry |= {"role": "feature", "type": kind.value}
            if kind is FeatureType.BOOLEAN:
                entry |= {"true": int((values == 1.0).sum()), "false": int((values == 0.0).sum())}
                entry["true_fraction"] = _number(values.mean())
            else:
                entry |= _summary(values, kind is FeatureType.NUMERIC)
        columns[str(name)] = entry
    target = frame[contract.target]
    if contract.task is Task.REGRESSION:
        distribution: dict[str, Any] = {
            "task": "regression",
            **_summary(target, numeric=True),
            "quantiles": {f"p{q}": _number(target.quantile(q / 100)) for q in (5, 25, 50, 75, 95)},
        }
    else:
        counts = target.value_counts()
        distribution = {
            "task": "classification",
            "classes": {
                str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
            },
        }
    return {"rows": len(frame), "columns": columns, "target": distribution}


def _summary(values: pd.Series, numeric: bool) -> dict[str, Any]:
    if numeric:
        return {
            "min": _number(values.min()),
            "max": _number(values.max()),
            "mean": _number(values.mean()),
            "std": _number(values.std()),
        }
    counts = values.value_counts()
    top = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:TOP_VALUES]
    return {"distinct": len(counts), "top": {str(k): int(v) for k, v in top}}


def _number(value: Any) -> float | None:
    if value is None or pd.isna(value):
        return None
    number = float(value)
    return number if np.isfinite(number) else None


def _iso(stamp: Any) -> str:
    return str(pd.Timestamp(stamp).tz_convert("UTC").isoformat()).replace("+00:00", "Z")


# --- problems and messages --------------------------------------------------------------------------------


def _file_problem(rule: str, message: str) -> Problem:
    return Problem(column=None, rule=rule, count=1, examples=[], message=message)


def _not_a_table(message: str) -> Problem:
    return _file_problem("not_a_table", message)


def _too_large(size: int, rulebook: Rulebook, verb: str) -> Problem:
    return Problem(
        column=None,
        rule="too_large",
        count=1,
        examples=[f"{size / _MIB:.1f} MiB"],
        message=f"The file {verb} {size / _MIB:.1f} MiB; {rulebook.owner} accepts at most "
        f"{rulebook.max_file_mb:g} MiB (split it into several files).",
    )


def rejection(filename: str, rulebook: Rulebook, problems: list[Problem]) -> DataValidationError:
    """The error that refuses a file: every problem in the message and, as dicts, in ``problems``."""
    lines = "\n".join(f"  - {p.message}" for p in problems)
    message = f"'{filename}' does not meet {rulebook.title} ({len(problems)} problem(s)):\n{lines}"
    return DataValidationError(message, problems=[p.model_dump() for p in problems])


def _rows(mask: pd.Series) -> list[str]:
    return [f"row {int(i) + 1}" for i in mask[mask].index[:MAX_EXAMPLES]]


def _values(values: pd.Series) -> list[str]:
    return [_short(_value_text(v)) for v in pd.unique(values)[:MAX_EXAMPLES]]


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _list(items: list[str]) -> str:
    return ", ".join(f"'{item}'" for item in items)


def _where_of(count: int, rows: list[str]) -> str:
    return ", ".join(rows) + (", …" if count > len(rows) else "")
