"""What one prediction request may hold, and the bounded reading of its body.

A body is read as JSON with every dimension a hostile client could inflate held to a limit, each one a
setting (:class:`shared.settings.Settings`): rows per request, nesting depth, digits of an integer, characters
of a string (keys too) and entries of any object or array inside a row. A breach is a :class:`LimitBreach`
naming the limit, the setting that raises it and where in the body it was found; the API answers it 413
before anything validates or echoes the body.

Python's own reader would fail late and loudly instead: an integer past 4,300 digits raises ``ValueError``,
a few thousand nested brackets ``RecursionError``, and a body of 200,000 bad elements would be validated
element by element into an error larger than Lambda's 6 MB response.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.env_names import EnvVar

if TYPE_CHECKING:
    from shared.settings import Settings

# The lists whose entries are rows: ``instances`` and ``dataframe_records`` (objects), and
# ``dataframe_split.data`` (arrays, in ``columns`` order).
ROW_LISTS = ("instances", "dataframe_records")
SPLIT = "dataframe_split"


class LimitBreach(Exception):  # noqa: N818 - a breach is what the client did, not a failure of ours
    """The body breaks one of the request limits: which (``limit``, its setting ``variable``), what was found
    and where (``row`` and ``field``, as the API's problems name them)."""

    def __init__(
        self, limit: str, variable: str, problem: str, row: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(problem)
        self.limit = limit
        self.variable = variable
        self.problem = problem
        self.row = row
        self.field = field

    @property
    def message(self) -> str:
        return f"the request breaks the {self.limit} limit: {self.problem}"


@dataclass(frozen=True)
class RequestLimits:
    rows: int
    depth: int
    integer_digits: int
    string_chars: int
    fields: int

    @classmethod
    def of(cls, settings: Settings) -> RequestLimits:
        return cls(
            rows=settings.max_rows_per_request,
            depth=settings.max_json_depth,
            integer_digits=settings.max_integer_digits,
            string_chars=settings.max_string_chars,
            fields=settings.max_fields_per_object,
        )


def read_body(text: str, limits: RequestLimits) -> Any:
    """The body's JSON value, read within ``limits``; :class:`LimitBreach` at the first breach, and
    ``json.JSONDecodeError`` (a ``ValueError``) when it is not JSON at all."""

    def integer(digits: str) -> int:
        count = len(digits) - digits.startswith("-")
        if count > limits.integer_digits:
            raise LimitBreach(
                "integer digits",
                EnvVar.MAX_INTEGER_DIGITS,
                f"an integer of {count} digits; at most {limits.integer_digits}",
            )
        return int(digits)

    try:
        value = json.loads(text, parse_int=integer)
    except RecursionError:
        # The reader recurses once per level; so deep a body is past any limit a setting could hold.
        raise _too_deep(limits) from None
    _check(value, limits)
    return value


def _check(body: Any, limits: RequestLimits) -> None:
    """Walk the value once, without recursion, and raise at the first breach (in body order)."""
    rows = _row_lists(body, limits)
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(body, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            if len(value) > limits.string_chars:
                raise _where(_too_long("a string", len(value), limits), path)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > limits.depth:
            raise _where(_too_deep(limits), path)
        if id(value) not in rows and len(value) > limits.fields:
            kind = "an object" if isinstance(value, dict) else "an array"
            problem = f"{kind} of {len(value)} entries; at most {limits.fields}"
            raise _where(LimitBreach("fields", EnvVar.MAX_FIELDS_PER_OBJECT, problem), path)
        if isinstance(value, dict):
            for key, item in reversed(value.items()):  # reversed onto the stack: met in body order
                if len(key) > limits.string_chars:
                    raise _where(_too_long("a key", len(key), limits), path)
                stack.append((item, depth + 1, (*path, key)))
        else:
            stack.extend((value[i], depth + 1, (*path, i)) for i in range(len(value) - 1, -1, -1))


def _row_lists(body: Any, limits: RequestLimits) -> set[int]:
    """The ids of the body's row lists, each held to the rows limit (and so exempt from the fields one)."""
    if not isinstance(body, dict):
        return set()
    candidates = [body.get(name) for name in ROW_LISTS]
    split = body.get(SPLIT)
    if isinstance(split, dict):
        candidates.append(split.get("data"))
    lists = [candidate for candidate in candidates if isinstance(candidate, list)]
    for rows in lists:
        if len(rows) > limits.rows:
            problem = f"{len(rows)} rows in one request; at most {limits.rows}"
            raise LimitBreach("rows", EnvVar.MAX_PREDICT_ROWS, problem)
    return {id(rows) for rows in lists}


def _too_long(what: str, length: int, limits: RequestLimits) -> LimitBreach:
    problem = f"{what} of {length} characters; at most {limits.string_chars}"
    return LimitBreach("string length", EnvVar.MAX_STRING_CHARS, problem)


def _too_deep(limits: RequestLimits) -> LimitBreach:
    problem = f"arrays or objects nested deeper than {limits.depth} levels"
    return LimitBreach("nesting depth", EnvVar.MAX_JSON_DEPTH, problem)


def _where(breach: LimitBreach, path: tuple[str | int, ...]) -> LimitBreach:
    """Name the place as the API's problems do: the first index is the row, and the field is the keys
    within it (or, outside any row, the keys to the place)."""
    first = next((i for i, part in enumerate(path) if isinstance(part, int)), None)
    if first is not None:
        breach.row = int(path[first])
        path = path[first + 1 :]
    keys = [part for part in path if isinstance(part, str)]
    breach.field = shown(".".join(keys)) if keys else None
    return breach


def shown(text: str, at_most: int = 40) -> str:
    """A client's text as an answer may show it: whole when short, otherwise cut, saying its length."""
    if len(text) <= at_most:
        return text
    return f"{text[:at_most]}... ({len(text)} characters)"


__all__ = ["LimitBreach", "RequestLimits", "read_body", "shown"]
