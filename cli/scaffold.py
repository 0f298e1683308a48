"""``flywheel init MODEL``: a model project to start from — a contract inferred from a sample, code, tests.

:func:`infer_contract` reads a sample (every value as text, as Validate reads an upload) and writes a data
contract with every field explained: the target (given, else the last column), an id column (unique values,
named ``id`` or ``*_id``), a timestamp column (every value a date), and one feature per other column —
boolean when every value is true/false, yes/no or 1/0; numeric when every value is a number, with bounds
widened beyond what the sample shows; categorical otherwise, with the values seen as the allowed ones. The
task is classification when the target has few distinct values (or any that is not a number), regression
otherwise. What it guessed it says, in the file and on the terminal, for a person to check.

:func:`scaffold` writes the project: ``contract.yaml``, ``sample.csv`` (at most :data:`SAMPLE_ROWS` rows of
the sample; the component and integration tests train on it), ``pipeline.py`` (a transformer of the
project's own with its ONNX converter, and a linear model) and ``tests/`` with the three kinds of test.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Final

import pandas as pd

from shared.data.contract import DataContract, Task, parse_contract
from shared.data.validation import BOOLEAN_TOKENS, canonical_text
from shared.errors import ContractError

TEMPLATES: Final = Path(__file__).with_name("templates")
# The project's files made from cli/templates/<file name>.tmpl ($model is the model's name).
TEMPLATED: Final = (
    "pipeline.py",
    "tests/conftest.py",
    "tests/unit/test_features.py",
    "tests/component/test_artifacts.py",
    "tests/integration/test_loop.py",
)
SAMPLE_ROWS: Final = 5000
MIN_SAMPLE_ROWS: Final = 50
MAX_CLASSES: Final = 20  # a numeric target with more distinct values than this is a regression
MAX_ALLOWED: Final = 50  # a categorical feature with more distinct values gets no allowed list
_MODEL = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_DATE_NAME = re.compile(r"(time|date|_at$|^ts$|timestamp)")


@dataclass(frozen=True)
class Inferred:
    """A contract's text, the contract it parses to, and what was guessed (for the person to check)."""

    text: str
    contract: DataContract
    notes: tuple[str, ...]


def read_sample(data: bytes, name: str) -> pd.DataFrame:
    """A sample file as text columns (blank = missing), CSV or Parquet by its name."""
    if name.endswith(".parquet"):
        frame = pd.read_parquet(io.BytesIO(data))
        return frame.astype("string").fillna("").astype(str)
    try:
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ContractError(f"{name}: not a readable CSV file ({exc})", problems=[str(exc)]) from exc


def infer_contract(frame: pd.DataFrame, model: str, target: str | None = None) -> Inferred:
    """The data contract ``frame`` suggests, as commented YAML (:class:`ContractError` when it cannot)."""
    problems = _sample_problems(frame, model, target)
    if problems:
        raise ContractError(
            f"cannot infer a contract for {model!r}: {'; '.join(problems)}", problems=problems
        )
    columns = [str(c) for c in frame.columns]
    target = target or columns[-1]
    notes: list[str] = []
    if target == columns[-1]:
        notes.append(f"target {target!r}: the last column (pass --target to choose another)")
    rest = [c for c in columns if c != target]
    id_column = next((c for c in rest if _is_id(frame[c], c)), None)
    rest = [c for c in rest if c != id_column]
    timestamp = next((c for c in rest if _is_timestamp(frame[c], c)), None)
    rest = [c for c in rest if c != timestamp]
    if not rest:
        raise ContractError(f"{model}: the sample has no feature columns", problems=["no features"])
    task, target_values = _task(frame[target])
    notes.append(
        f"task {task.value}: {target!r} has {len(target_values or ())} distinct values"
        if task is Task.CLASSIFICATION
        else f"task regression: {target!r} is numeric with many distinct values"
    )
    feature_lines = [line for name in rest for line in _feature(frame[name], name, notes)]
    lines = [
        f"# The data contract of {model}, inferred by `flywheel init` from a sample of {len(frame)} rows.",
        f"# Check every guess (the notes at each field say what was seen), then `flywheel test {model}`.",
        "",
        "# model            registry name; data files go under incoming/<model>/",
        f"model: {model}",
        "# description      free text shown by `flywheel models`",
        f"description: {_quote(f'{model}, a model project')}",
        "# task             classification or regression",
        f"task: {task.value}",
        "# target           the column to predict",
        f"target: {_quote(target)}",
    ]
    if target_values is not None:
        lines += [
            "# target_values    the target's allowed values, as text (a file with another value is rejected)",
            f"target_values: [{', '.join(_quote(v) for v in target_values)}]",
        ]
    if id_column:
        lines += [
            "# id_column        one id per row; never a feature; joins delayed labels to predictions",
            f"id_column: {_quote(id_column)}",
        ]
        notes.append(f"id column {id_column!r}: every value is unique")
    else:
        lines.append("# id_column        (none found: a column named id or *_id with unique values)")
    if timestamp:
        lines += [
            "# timestamp_column when each row happened: the holdout is the latest rows",
            f"timestamp_column: {_quote(timestamp)}",
        ]
        notes.append(f"timestamp column {timestamp!r}: every value is a date")
    else:
        lines.append("# timestamp_column (none found: the holdout is then a seeded random share of the rows)")
    min_rows = max(MIN_SAMPLE_ROWS // 2, min(100, len(frame) // 2))
    lines += [
        "",
        "# features         every input column: numeric (min/max), categorical (allowed values; an unknown",
        "#                  value is rejected) or boolean; nullable: true allows missing values",
        "features:",
        *feature_lines,
        "",
        "# min_rows         a data file with fewer rows is quarantined",
        f"min_rows: {min_rows}",
        "",
        "# training         the project's own code builds the model: build(contract, params) in",
        "#                  pipeline.py; params are handed to it as they are; holdout_fraction is kept",
        "#                  for evaluation; window = which datasets a run trains on ({files: N} latest",
        "#                  files, or {days: N}); seed for every random choice",
        "training:",
        "  pipeline: pipeline:build",
        "  params:",
        *(["    C: 1.0", "    max_iter: 1000"] if task is Task.CLASSIFICATION else ["    max_iter: 300"]),
        "  holdout_fraction: 0.2",
        "  window:",
        "    files: 10",
        "  seed: 42",
        "",
        "# gates            min: floors a candidate must reach; max_regression: how much worse than",
        "#                  production it may be, on the same holdout",
        "gates:",
        "  max_regression:",
        "    accuracy: 0.02" if task is Task.CLASSIFICATION else "    r2: 0.02",
        "",
        "# serving          what Verify demands on the serving path before any promotion",
        "serving:",
        "  max_p99_ms: 1000",
        "  max_error_rate: 0.0",
        "  load_requests: 40",
        "",
    ]
    text = "\n".join(lines)
    return Inferred(text=text, contract=parse_contract(text), notes=tuple(notes))


def _sample_problems(frame: pd.DataFrame, model: str, target: str | None) -> list[str]:
    problems = []
    if not _MODEL.match(model):
        problems.append(f"model name {model!r}: lowercase letters, digits and '-', starting with a letter")
    if len(frame) < MIN_SAMPLE_ROWS:
        problems.append(f"the sample has {len(frame)} rows; at least {MIN_SAMPLE_ROWS} are needed to train")
    if len(frame.columns) < 2:
        problems.append("the sample needs a target column and at least one feature")
    if target is not None and target not in frame.columns:
        problems.append(f"--target {target!r} is not a column (columns: {[str(c) for c in frame.columns]})")
    elif len(frame.columns):
        chosen = target or str(frame.columns[-1])
        blank = int((frame[chosen].str.strip() == "").sum())
        if blank:
            problems.append(f"the target {chosen!r} is blank in {blank} row(s)")
    return problems


def _present(values: pd.Series) -> pd.Series:
    return values[values.str.strip() != ""]


def _is_id(values: pd.Series, name: str) -> bool:
    named = name.lower() == "id" or name.lower().endswith(("_id", "-id"))
    present = _present(values)
    return named and len(present) == len(values) and present.is_unique


def _is_timestamp(values: pd.Series, name: str) -> bool:
    present = _present(values)
    if present.empty or not _DATE_NAME.search(name.lower()):
        return False
    parsed = pd.to_datetime(present, errors="coerce", utc=True, format="ISO8601")
    return bool(parsed.notna().all())


def _numbers(values: pd.Series) -> pd.Series | None:
    parsed = pd.to_numeric(values, errors="coerce")
    return parsed if parsed.notna().all() else None


def _task(values: pd.Series) -> tuple[Task, list[str] | None]:
    numbers = _numbers(values)
    distinct = sorted(set(canonical_text(values)))
    if numbers is not None and len(distinct) > MAX_CLASSES:
        return Task.REGRESSION, None
    return Task.CLASSIFICATION, distinct


def _feature(values: pd.Series, name: str, notes: list[str]) -> list[str]:
    present = _present(values)
    missing = len(values) - len(present)
    lines = [f"  {_quote(name)}:"]
    lower = set(present.str.strip().str.lower())
    numbers = _numbers(present)
    if present.empty:
        notes.append(f"{name!r}: blank in every row; read as categorical, check it")
        lines.append("    type: categorical")
    elif lower <= set(BOOLEAN_TOKENS):
        lines.append(f"    type: boolean  # every value is one of {sorted(lower)}")
    elif numbers is not None:
        low, high = float(numbers.min()), float(numbers.max())
        span = max(high - low, abs(high), 1.0)
        floor = 0 if low >= 0 else _round(low - span)
        ceiling = _round(high + span)
        lines += [
            "    type: numeric",
            f"    min: {floor}  # the sample's smallest: {_number(low)}",
            f"    max: {ceiling}  # the sample's largest: {_number(high)}; widened, set the real bound",
        ]
    else:
        seen = sorted(set(present.str.strip()))
        if len(seen) <= MAX_ALLOWED:
            lines += [
                "    type: categorical",
                f"    allowed: [{', '.join(_quote(v) for v in seen)}]  # the values seen in the sample",
            ]
        else:
            lines.append(f"    type: categorical  # {len(seen)} distinct values: any value is accepted")
            notes.append(f"{name!r}: {len(seen)} distinct values, no allowed list")
    if missing:
        lines.append(f"    nullable: true  # blank in {missing} of {len(values)} rows")
    return lines


def _round(value: float) -> int | float:
    """Up (or down, below zero) to two significant figures: a bound a person would write."""
    if value == 0:
        return 0
    magnitude = 10 ** (math.floor(math.log10(abs(value))) - 1)
    rounded = (
        math.ceil(value / magnitude) * magnitude if value > 0 else math.floor(value / magnitude) * magnitude
    )
    return int(rounded) if float(rounded).is_integer() else float(rounded)


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _quote(value: str) -> str:
    """A YAML scalar that stays text: quoted unless plainly a word."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", value) and value.lower() not in (
        "true",
        "false",
        "yes",
        "no",
        "on",
        "off",
        "null",
        "y",
        "n",
    ):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# --- the project's files ------------------------------------------------------------------------------------


def scaffold(root: Path, inferred: Inferred, sample: pd.DataFrame) -> list[Path]:
    """Write the project at ``root`` (refused if it exists); the files written."""
    if root.exists():
        raise ContractError(f"{root} exists; choose another model name or remove it", problems=[str(root)])
    values = {"model": inferred.contract.model}
    files = {"contract.yaml": inferred.text} | {
        name: Template((TEMPLATES / f"{Path(name).name}.tmpl").read_text()).substitute(values)
        for name in TEMPLATED
    }
    written = []
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    sample_path = root / "sample.csv"
    sample.head(SAMPLE_ROWS).to_csv(sample_path, index=False)
    written.insert(1, sample_path)
    return written
