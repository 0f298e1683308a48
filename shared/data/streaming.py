"""Validate an upload in bounded batches and write its canonical dataset as it goes.

A Lambda's memory is fixed when it is deployed, while uploads grow; so Validate reads a file from local
disk (``/tmp``) a batch at a time — CSV in pieces of about :data:`CSV_BLOCK_BYTES` of text cut at row
boundaries, each parsed by Arrow's reader; Parquet :data:`PARQUET_BATCH_ROWS` rows at a time (never more
than a row group) — checks each batch with the rules of :mod:`shared.data.validation` and appends it to
the dataset as one Parquet row group.
What it holds between batches grows with the file by a few bytes a row: an 8-byte hash per id (repeated
ids are a rule about the whole file), a regression target's values (its quantiles need them all), and the
counts of categorical values for the profile.

What a batch cannot tell alone is decided once every batch is read, and worded as the whole file would
have been (:class:`~shared.data.validation.Finding`): a repeated id (a second read of the id column, only
when two id hashes collide, finds which ids repeat and where), a nullable feature empty in every row, a
target with a single class, the row count against ``min_rows``, and an unnamed CSV column that is empty in
every row (dropped) or not (unexpected). The profile is accumulated per batch and equals
:func:`~shared.data.validation.profile_frame` of the whole frame, except that the mean and standard
deviation of a numeric column read in several batches are combined pairwise (Chan et al.), which agrees
with a whole-column computation to rounding (about 1e-12 relative).

A file these pieces cannot read exactly as the whole-file reader does (a one-column CSV, rows
shorter than the header, bad UTF-8, a quote left open, a damaged Parquet file) is read whole instead, with
:func:`~shared.data.validation.validate_frame`: it is refused with the same words, or, for the few valid
ones, accepted as before while its memory grows with it.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from shared.data.contract import DataContract, FeatureType, Task
from shared.data.validation import (
    _MIB,
    MAX_EXAMPLES,
    ROW_ID_COLUMN,
    RULE_ORDER,
    TOP_VALUES,
    ColumnChecks,
    Finding,
    Problem,
    Rulebook,
    ValidatedData,
    _ends_in_open_quote,
    _file_problem,
    _header_fields,
    _iso,
    _not_a_table,
    _number,
    _read_csv,
    _read_parquet,
    _RefusalError,
    _role,
    _short,
    _too_large,
    _value_text,
    all_missing,
    canonical_text,
    clean,
    duplicate_ids,
    header_only_problem,
    presence_problems,
    refuse_unreadable_text,
    rejection,
    single_class,
    single_column_problem,
    sniff,
    validate_frame,
)

CSV_BLOCK_BYTES = 8 * _MIB  # CSV text per batch: about 100,000 rows of a 20-column file
PARQUET_BATCH_ROWS = 131_072
_HEAD_BYTES = 65536
_CHUNK_BYTES = 8 * _MIB
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


@dataclass(frozen=True)
class ValidatedFile:
    """A file that met its contract: its canonical dataset written as Parquet at ``path`` (one row group per
    batch) and what the registry records about it."""

    path: Path
    rows: int
    schema: dict[str, str]
    time_range: tuple[str, str] | None
    profile: dict[str, Any]


class _UnstreamableError(Exception):
    """The streaming reader would not read this file exactly as the whole-file reader does."""


def validate_path(
    source: Path,
    filename: str,
    contract: DataContract,
    destination: Path,
    *,
    block_bytes: int = CSV_BLOCK_BYTES,
    batch_rows: int = PARQUET_BATCH_ROWS,
) -> ValidatedFile:
    """Validate the upload at ``source`` batch by batch and write its canonical dataset to ``destination``.

    The problems, and the dataset, are those :func:`~shared.data.validation.validate_file` gives for the
    same bytes; :class:`DataValidationError` lists every problem at once."""
    rulebook = Rulebook.of_contract(contract)
    with tempfile.TemporaryDirectory(dir=destination.parent) as scratch:
        try:
            text, kind = _prepare(source, filename, rulebook, Path(scratch))
        except _RefusalError as refused:
            raise rejection(filename, rulebook, [refused.problem]) from None
        source_id = _sha256_of(source)[:16]
        try:
            reader = _CsvReader(text, block_bytes) if kind == "csv" else _ParquetReader(text, batch_rows)
            return _Run(contract, rulebook, filename, source_id, reader, destination).result()
        except _UnstreamableError:
            return _validate_whole(text, kind, filename, contract, source_id, destination, batch_rows)


def validate_file(body: bytes, filename: str, contract: DataContract) -> ValidatedData:
    """:func:`validate_path` of an upload held in memory, with the canonical frame it writes read back:
    :class:`DataValidationError` lists every problem (as dicts) at once."""
    with tempfile.TemporaryDirectory() as scratch:
        upload = Path(scratch) / "upload"
        upload.write_bytes(body)
        validated = validate_path(upload, filename, contract, Path(scratch) / "dataset.parquet")
        return ValidatedData(
            frame=pd.read_parquet(validated.path),
            rows=validated.rows,
            schema=validated.schema,
            time_range=validated.time_range,
            profile=validated.profile,
        )


# --- preparing the file -----------------------------------------------------------------------------------


def _prepare(source: Path, filename: str, rulebook: Rulebook, scratch: Path) -> tuple[Path, str]:
    """The refusals of the whole-file reader that need only the file's size and first bytes, and gzip
    inflated to a file: the path of the table's bytes and whether they are CSV or Parquet."""
    head, name = _head(source), filename.lower()
    kind = sniff(source.stat().st_size, head, name, filename, rulebook)
    if kind == "parquet":
        return source, "parquet"
    if kind == "gzip":
        source = _gunzip_to(source, scratch / "inflated.csv", int(rulebook.max_file_mb * _MIB), rulebook)
        head, name = _head(source), name.removesuffix(".gz")
    refuse_unreadable_text(head, name, filename)
    return source, "csv"


def _head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(_HEAD_BYTES)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _gunzip_to(source: Path, destination: Path, limit: int, rulebook: Rulebook) -> Path:
    """Inflate the first gzip member chunk by chunk, refusing what the whole-file reader refuses."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    total, blank = 0, True
    with source.open("rb") as packed, destination.open("wb") as out:
        while not inflater.eof and (data := packed.read(_CHUNK_BYTES)):
            while data:
                try:
                    text = inflater.decompress(data, limit + 1 - total)
                except zlib.error as exc:
                    raise _RefusalError(_not_a_table(f"The gzip data is corrupt ({exc}).")) from None
                total += len(text)
                blank = blank and not text.strip()
                if total > limit:
                    raise _RefusalError(_too_large(total, rulebook, "decompresses to more than"))
                out.write(text)
                data = b"" if inflater.eof else inflater.unconsumed_tail
    if not inflater.eof:
        raise _RefusalError(_not_a_table("The gzip data is truncated: the file ends before the stream does."))
    if blank:
        raise _RefusalError(
            _file_problem("empty_file", "The gzip file decompresses to nothing; it holds no table.")
        )
    return destination


# --- reading in batches -----------------------------------------------------------------------------------


class _CsvReader:
    """CSV as Arrow's reader parses it with the options of the whole-file Arrow reader (every cell as
    text, the header read as the first row), a piece of the file at a time."""

    drops_empty_unnamed = True

    def __init__(self, path: Path, block_bytes: int) -> None:
        self.path = path
        self.block_bytes = block_bytes
        self.width = len(_header_fields(_head(path)))
        if self.width < 2:  # the whole-file reader leaves a one-field header to pandas
            raise _UnstreamableError

    def names(self) -> list[str]:
        for batch in self._raw(None):
            if len(batch):
                return [str(v).strip() for v in batch.iloc[0]]
        raise _UnstreamableError  # no row at all: pandas words it

    def batches(self, columns: list[int] | None = None) -> Iterator[pd.DataFrame]:
        """Data rows (the header skipped) with their 0-based row number as the index; cells raw."""
        offset, header = 0, True
        for parsed in self._raw(columns):
            batch = parsed
            if header and len(batch):
                batch, header = batch.iloc[1:], False
            if not len(batch):
                continue
            yield batch.set_axis(pd.RangeIndex(offset, offset + len(batch)), axis=0)
            offset += len(batch)

    def _raw(self, columns: list[int] | None) -> Iterator[pd.DataFrame]:
        names = [f"c{i}" for i in range(self.width)]
        wanted = list(range(self.width)) if columns is None else columns
        options = {
            "read_options": pa_csv.ReadOptions(column_names=names),
            "parse_options": pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=True),
            "convert_options": pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                include_columns=[names[i] for i in wanted],
            ),
        }
        for piece in self._pieces():
            try:
                table = pa_csv.read_csv(pa.py_buffer(piece), **options)
            except _ARROW_ERRORS:
                raise _UnstreamableError from None
            if columns is None and table.num_rows:
                # A piece cut inside a quoted value (a stray quote misled the cut) ends in an open quote.
                last = table.column(self.width - 1)[-1].as_py()
                if _ends_in_open_quote(piece, last):
                    raise _UnstreamableError
            yield table.to_pandas().set_axis(wanted, axis=1)

    def _pieces(self) -> Iterator[bytes]:
        """The file in pieces of about ``block_bytes`` cut after a line break outside quotes, each parsed
        alone. Arrow's own streaming reader would parse the same blocks, but it reads the rest of the file
        ahead into memory as fast as the disk allows, so only the batches would be bounded."""
        with self.path.open("rb") as file:
            rest = b""
            while chunk := file.read(self.block_bytes):
                data = rest + chunk
                codes = np.frombuffer(data, dtype=np.uint8)
                # Every piece starts outside quotes, so a quote count's parity tells where a line may end.
                quoted = np.bitwise_xor.accumulate((codes == ord('"')).astype(np.uint8))
                ends = np.flatnonzero((codes == ord("\n")) & (quoted == 0))
                if not len(ends):
                    rest = data
                    continue
                cut = int(ends[-1]) + 1
                yield data[:cut]
                rest = data[cut:]
            if rest:
                yield rest


class _ParquetReader:
    """Parquet a batch at a time; pandas' metadata restores each batch's index, which is dropped, and the
    columns' types, as reading the whole file does."""

    drops_empty_unnamed = False

    def __init__(self, path: Path, batch_rows: int) -> None:
        self.path = path
        self.batch_rows = batch_rows
        try:
            self.file = pq.ParquetFile(path)
            self._names = [str(c).strip() for c in self.file.schema_arrow.empty_table().to_pandas().columns]
        except Exception:  # pyarrow raises several unrelated types for a damaged file
            raise _UnstreamableError from None
        if not self._names:
            raise _UnstreamableError

    def names(self) -> list[str]:
        return self._names

    def batches(self, columns: list[int] | None = None) -> Iterator[pd.DataFrame]:
        offset = 0
        try:
            for batch in self.file.iter_batches(batch_size=self.batch_rows):
                frame = batch.to_pandas()
                frame = frame.set_axis(range(frame.shape[1]), axis=1)
                yield frame.set_axis(pd.RangeIndex(offset, offset + len(frame)), axis=0)
                offset += len(frame)
        except Exception:  # as opening it: a damaged file raises several unrelated types
            raise _UnstreamableError from None


_Reader = _CsvReader | _ParquetReader


# --- one pass over the batches ----------------------------------------------------------------------------


class _Run:
    """Checks every batch, merges what each finds, keeps what the whole-file rules need, and writes the
    canonical batches while nothing is wrong."""

    def __init__(
        self,
        contract: DataContract,
        rulebook: Rulebook,
        filename: str,
        source_id: str,
        reader: _Reader,
        destination: Path,
    ) -> None:
        self.contract = contract
        self.rulebook = rulebook
        self.filename = filename
        self.source_id = source_id
        self.reader = reader
        self.destination = destination
        self.names = reader.names()
        self.first: dict[str, int] = {}  # a column named twice is checked where it first appears
        for i, name in enumerate(self.names):
            self.first.setdefault(name, i)
        self.present = [c for c in contract.columns if c in self.first]
        self.generated_ids = contract.id_column is None and ROW_ID_COLUMN not in self.first
        self.id_column = contract.id_column or (None if self.generated_ids else ROW_ID_COLUMN)
        order = ([] if contract.id_column else [ROW_ID_COLUMN]) + self.present
        self.position = {name: i for i, name in enumerate(order)}
        self.findings: dict[tuple[str, str], Finding] = {}
        self.rows = 0
        self.id_hashes: list[np.ndarray] = []
        self.valued: set[str] = set()  # nullable features seen with a value
        self.classes: list[str] = []  # the first two classes of a classification target
        self.labelled = 0
        self.unnamed_with_values: set[int] = set()
        self.profile = _Profile(contract)
        self.writer: pq.ParquetWriter | None = None
        self.schema: dict[str, str] = {}

    def result(self) -> ValidatedFile:
        try:
            for batch in self.reader.batches():
                self._check(batch)
        finally:
            if self.writer is not None:
                self.writer.close()
        problems = self._problems()
        if problems:
            raise rejection(self.filename, self.rulebook, problems)
        return ValidatedFile(
            path=self.destination,
            rows=self.rows,
            schema=self.schema,
            time_range=self.profile.time_range(),
            profile=self.profile.result(self.rows),
        )

    def _check(self, raw: pd.DataFrame) -> None:
        if not len(raw):
            return
        contract = self.contract
        self._note_unnamed(raw)
        checks = ColumnChecks([], whole_column=False)
        typed: dict[str, pd.Series] = {}
        cleaned: dict[str, pd.Series] = {}
        if contract.id_column is None:
            typed[ROW_ID_COLUMN] = self._row_ids(raw, checks)
        for name in self.present:
            values = cleaned[name] = clean(raw[self.first[name]])
            typed[name] = checks.column(name, values, contract)
        for finding in checks.findings:
            known = self.findings.get(finding.key)
            self.findings[finding.key] = finding if known is None else known.merged(finding)
        self._remember(typed, cleaned)
        self.rows += len(raw)
        if not self.findings:
            self._write(pd.DataFrame(typed))

    def _note_unnamed(self, raw: pd.DataFrame) -> None:
        if self.reader.drops_empty_unnamed:
            for i, name in enumerate(self.names):
                if not name and i not in self.unnamed_with_values and clean(raw[i]).notna().any():
                    self.unnamed_with_values.add(i)

    def _row_ids(self, raw: pd.DataFrame, checks: ColumnChecks) -> pd.Series:
        """The file's own ``__row_id__`` checked, or ids made from the file's digest and the row number."""
        if not self.generated_ids:
            return checks.ids(ROW_ID_COLUMN, clean(raw[self.first[ROW_ID_COLUMN]]))
        ids = [f"{self.source_id}-{i}" for i in range(self.rows, self.rows + len(raw))]
        return pd.Series(ids, index=raw.index, dtype="str")

    def _remember(self, typed: dict[str, pd.Series], cleaned: dict[str, pd.Series]) -> None:
        """What the whole-file rules need from this batch."""
        if self.id_column is not None and self.id_column in typed:
            ids = typed[self.id_column]
            self.id_hashes.append(_hashes(ids[ids.notna()]))
        for name in self.present:
            feature = self.contract.features.get(name)
            if feature is not None and feature.nullable and cleaned[name].notna().any():
                self.valued.add(name)
        target = self.contract.target
        if target in typed and self.contract.task is Task.CLASSIFICATION:
            present = cleaned[target].notna()
            self.labelled += int(present.sum())
            for label in typed[target][present].unique():
                if len(self.classes) >= 2:
                    break
                if label not in self.classes:
                    self.classes.append(str(label))

    def _write(self, frame: pd.DataFrame) -> None:
        if self.writer is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self.writer = pq.ParquetWriter(self.destination, table.schema)
            self.schema = {str(c): str(frame[c].dtype) for c in frame.columns}
        else:
            table = pa.Table.from_pandas(frame, schema=self.writer.schema, preserve_index=False)
        self.writer.write_table(table, row_group_size=max(len(table), 1))
        self.profile.add(frame)

    def _problems(self) -> list[Problem]:
        contract = self.contract
        kept = [
            name
            for i, name in enumerate(self.names)
            if name or not self.reader.drops_empty_unnamed or i in self.unnamed_with_values
        ]
        single = single_column_problem(kept)
        if single is not None:
            return [single]
        header = presence_problems(
            kept,
            contract.columns,
            self.rulebook,
            role_of=lambda name: _role(name, contract),
            target=contract.target,
            tolerated=frozenset({ROW_ID_COLUMN}) if contract.id_column is None else frozenset(),
        )
        if self.rows == 0:
            return [*header, header_only_problem()]
        findings = list(self.findings.values()) + self._whole_column_findings()
        findings.sort(key=lambda f: (self.position[f.column], RULE_ORDER.index(f.kind or f.rule)))
        problems = header + [f.problem() for f in findings]
        if self.rows < contract.min_rows:
            problems.append(
                Problem(
                    column=None,
                    rule="too_few_rows",
                    count=1,
                    examples=[str(self.rows)],
                    message=f"The file has {self.rows} data row(s); the contract for '{contract.model}' "
                    f"needs at least {contract.min_rows}.",
                )
            )
        return problems

    def _whole_column_findings(self) -> list[Finding]:
        found: list[Finding] = []
        if self.id_column is not None:
            repeated = self._repeated_ids(self.id_column)
            if repeated is not None:
                found.append(repeated)
        for name in self.present:
            feature = self.contract.features.get(name)
            if feature is not None and feature.nullable and name not in self.valued:
                found.append(Finding(name, "all_missing", self.rows, [], all_missing(name)))
        if self.contract.target in self.first and len(self.classes) == 1:
            target = self.contract.target
            found.append(
                Finding(
                    target,
                    "invalid_target",
                    self.labelled,
                    self.classes,
                    single_class(target),
                    "single_class",
                )
            )
        return found

    def _repeated_ids(self, name: str) -> Finding | None:
        """Repeated ids: when two of the ids' hashes are equal, a second read of the id column counts the
        ids that hash alike, which tells the repeated ones (equal hashes of unequal ids are let go)."""
        if not self.id_hashes:
            return None
        hashes = np.concatenate(self.id_hashes)
        self.id_hashes = []  # the pieces go before the sort, which works in place: one copy at most
        hashes.sort()
        suspects = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
        if not len(suspects):
            return None
        seen: Counter[str] = Counter()
        column = self.first[name]
        for raw in self.reader.batches([column]):
            ids = canonical_text(clean(raw[column]))
            ids = ids[ids.notna()]
            seen.update(ids[np.isin(_hashes(ids), suspects)].tolist())
        repeated = {value: times for value, times in seen.items() if times > 1}
        if not repeated:
            return None
        examples = [_short(_value_text(v)) for v in list(repeated)[:MAX_EXAMPLES]]
        return Finding(
            name, "duplicate_id", sum(repeated.values()), examples, duplicate_ids(name, len(repeated))
        )


def _hashes(values: pd.Series) -> np.ndarray:
    hashed: np.ndarray = pd.util.hash_pandas_object(values, index=False).to_numpy()
    return hashed


# --- the profile, accumulated -----------------------------------------------------------------------------


@dataclass
class _Moments:
    """Count, extremes, mean and spread of a numeric column, combined batch by batch."""

    n: int = 0
    low: float = math.inf
    high: float = -math.inf
    mean: float = 0.0
    m2: float = 0.0
    std: float | None = None  # pandas' own, while a single batch has contributed
    batches: int = 0

    def add(self, values: pd.Series) -> None:
        present = values.dropna()
        count = len(present)
        if not count:
            return
        mean, var = float(present.mean()), float(present.var())
        m2 = var * (count - 1) if count > 1 else 0.0
        self.low, self.high = min(self.low, float(present.min())), max(self.high, float(present.max()))
        if self.n == 0:
            self.mean, self.m2, self.std = mean, m2, float(present.std())
        else:
            delta, total = mean - self.mean, self.n + count
            self.mean += delta * count / total
            self.m2 += m2 + delta * delta * self.n * count / total
            self.std = None
        self.n += count
        self.batches += 1

    def summary(self) -> dict[str, Any]:
        if not self.n:
            return {"min": None, "max": None, "mean": None, "std": None}
        std = self.std if self.batches == 1 else (math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else None)
        return {
            "min": _number(self.low),
            "max": _number(self.high),
            "mean": _number(self.mean),
            "std": _number(std),
        }


@dataclass
class _ColumnTally:
    nulls: int = 0
    moments: _Moments = field(default_factory=_Moments)
    counts: Counter[str] = field(default_factory=Counter)
    first: Any = None
    last: Any = None
    true: int = 0
    false: int = 0


class _Profile:
    """:func:`~shared.data.validation.profile_frame`, summed over the canonical batches."""

    def __init__(self, contract: DataContract) -> None:
        self.contract = contract
        self.columns: dict[str, _ColumnTally] = {}
        self.targets: list[np.ndarray] = []  # a regression target's values, for its quantiles

    def add(self, frame: pd.DataFrame) -> None:
        for name in frame.columns:
            values = frame[name]
            tally = self.columns.setdefault(str(name), _ColumnTally())
            tally.nulls += int(values.isna().sum())
            role = self._role(str(name))
            if role == "timestamp":
                low, high = values.min(), values.max()
                tally.first = low if tally.first is None or low < tally.first else tally.first
                tally.last = high if tally.last is None or high > tally.last else tally.last
            elif role == FeatureType.NUMERIC.value:
                tally.moments.add(values)
            elif role == FeatureType.BOOLEAN.value:
                tally.true += int((values == 1.0).sum())
                tally.false += int((values == 0.0).sum())
            elif role != "id":
                tally.counts.update(values.value_counts().to_dict())
        if self.contract.task is Task.REGRESSION:
            self.targets.append(frame[self.contract.target].to_numpy(dtype="float64"))

    def _role(self, name: str) -> str:
        contract = self.contract
        if name in (contract.id_column, ROW_ID_COLUMN):
            return "id"
        if name == contract.timestamp_column:
            return "timestamp"
        if name == contract.target:
            return FeatureType.NUMERIC.value if contract.task is Task.REGRESSION else "classes"
        return contract.features[name].type.value

    def time_range(self) -> tuple[str, str] | None:
        stamp = self.contract.timestamp_column
        tally = self.columns.get(stamp) if stamp else None
        return (_iso(tally.first), _iso(tally.last)) if tally is not None else None

    def result(self, rows: int) -> dict[str, Any]:
        contract = self.contract
        columns: dict[str, dict[str, Any]] = {}
        for name, tally in self.columns.items():
            entry: dict[str, Any] = {"nulls": tally.nulls}
            role = self._role(name)
            if role == "id":
                entry |= {"role": "id", "distinct": rows - tally.nulls}  # accepted ids are unique
            elif role == "timestamp":
                entry |= {"role": "timestamp", "min": _iso(tally.first), "max": _iso(tally.last)}
            elif name == contract.target:
                entry |= {"role": "target", **self._summary(name, tally)}
            else:
                kind = contract.features[name].type
                entry |= {"role": "feature", "type": kind.value}
                if kind is FeatureType.BOOLEAN:
                    flags = tally.true + tally.false
                    entry |= {"true": tally.true, "false": tally.false}
                    entry["true_fraction"] = _number(tally.true / flags) if flags else None
                else:
                    entry |= self._summary(name, tally)
            columns[name] = entry
        target = self.columns[contract.target]
        if contract.task is Task.REGRESSION:
            values = pd.Series(np.concatenate(self.targets) if self.targets else [], dtype="float64")
            distribution: dict[str, Any] = {
                "task": "regression",
                **target.moments.summary(),
                "quantiles": {f"p{q}": _number(values.quantile(q / 100)) for q in (5, 25, 50, 75, 95)},
            }
        else:
            distribution = {
                "task": "classification",
                "classes": {str(k): int(v) for k, v in _by_count(target.counts)},
            }
        return {"rows": rows, "columns": columns, "target": distribution}

    def _summary(self, name: str, tally: _ColumnTally) -> dict[str, Any]:
        if self._role(name) == FeatureType.NUMERIC.value:
            return tally.moments.summary()
        top = _by_count(tally.counts)[:TOP_VALUES]
        return {"distinct": len(tally.counts), "top": {str(k): int(v) for k, v in top}}


def _by_count(counts: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))


# --- files the streaming reader leaves to the whole-file reader -------------------------------------------


def _validate_whole(
    text: Path,
    kind: str,
    filename: str,
    contract: DataContract,
    source_id: str,
    destination: Path,
    batch_rows: int,
) -> ValidatedFile:
    rulebook = Rulebook.of_contract(contract)
    body = text.read_bytes()
    try:
        frame = _read_csv(body) if kind == "csv" else _read_parquet(body)
    except _RefusalError as refused:
        raise rejection(filename, rulebook, [refused.problem]) from None
    del body
    data, problems = validate_frame(frame, contract, source_id=source_id)
    if problems or data is None:
        raise rejection(filename, rulebook, problems)
    pq.write_table(
        pa.Table.from_pandas(data.frame, preserve_index=False), destination, row_group_size=batch_rows
    )
    return ValidatedFile(
        path=destination,
        rows=data.rows,
        schema=data.schema,
        time_range=data.time_range,
        profile=data.profile,
    )
