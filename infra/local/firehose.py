"""What Firehose does with a partitioned S3 destination and moto does not: evaluate the prefix.

moto 5.2.5 writes every ``PutRecord(Batch)`` to an S3 destination as one object under the literal
``Prefix`` plus ``YYYY/MM/DD/HH/``, expressions and all (``captures/!{partitionKeyFromQuery:model}/...``).
Firehose evaluates the prefix instead. For as long as the local cloud runs, :func:`firehose_s3_delivery`
replaces moto's ``FirehoseBackend.put_s3_records`` so that a destination whose prefix has expressions is
delivered the way Firehose delivers it:

- with dynamic partitioning enabled, each record's partition keys come from the ``MetadataExtraction``
  processor's JQ query, for the forms Flywheel uses: ``{key: .field, ...}`` (also ``.a.b`` paths, quoted
  keys and the ``{key}`` shorthand) and a bare path to an object (``.partition``). A string key is used as
  is, a number or a boolean as its JSON text;
- ``!{partitionKeyFromQuery:key}`` becomes the record's key, ``!{timestamp:pattern}`` the arrival time in
  UTC formatted with a Java ``DateTimeFormatter`` pattern (``yyyy/MM/dd/HH``, ``mm``, ``ss``, quoted
  literals), ``!{firehose:random-string}`` a random string; without a custom prefix expression moto's own
  delivery runs, which already matches Firehose's default ``YYYY/MM/DD/HH/``;
- one object per partition per put, named as Firehose names them:
  ``<stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid>``, records concatenated as sent (Firehose adds no
  delimiter);
- a record that is not JSON, or whose key is missing, null, empty or not a scalar, goes under the error
  prefix with ``!{firehose:error-output-type}`` = ``partitioning-failed``, wrapped as Firehose wraps a failed
  record: one JSON line with ``attemptsMade``, ``arrivalTimestamp``, ``errorCode``, ``errorMessage``,
  ``attemptEndingTimestamp`` and the record as base64 ``rawData``.

Buffering is not emulated: objects are written when the put is made (moto's behaviour, and what tests want).
A query or a prefix this module cannot evaluate is an error naming it (the put fails), never a silent
misdelivery. ``tests/integration/test_seam.py`` pins this hook with the Lambda and DynamoDB ones.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import secrets
import string
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.firehose.models import FirehoseBackend
from moto.s3.models import s3_backends

HOOK = "put_s3_records"
PARTITIONING_FAILED = "partitioning-failed"
METADATA_EXTRACTION_FAILED = "DynamicPartitioning.MetadataExtractionFailed"
# Firehose's error prefix when none is configured.
DEFAULT_ERROR_PREFIX = "!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/"

_EXPRESSION = re.compile(r"!\{(?P<namespace>[A-Za-z]+):(?P<value>[^}]*)\}")
_PATH = re.compile(r"^(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")
_KEY = re.compile(r'^(?:"(?P<quoted>[^"\\]+)"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))$')
_RANDOM_ALPHABET = string.ascii_letters + string.digits


class PartitionKeyError(ValueError):
    """A record has no usable value for a partition key (Firehose delivers it under the error prefix)."""


# --- the JQ forms of a MetadataExtractionQuery --------------------------------------------------------------


@dataclass(frozen=True)
class MetadataQuery:
    """A ``MetadataExtractionQuery`` compiled: ``(key, path)`` pairs, or one path to an object."""

    text: str
    entries: tuple[tuple[str, tuple[str, ...]], ...] = ()
    object_path: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> MetadataQuery:
        """Compile ``{key: .field, ...}`` or ``.path``; any other JQ is refused with its text."""
        query = text.strip()
        if _PATH.match(query):
            return cls(text, object_path=_path(query))
        if not (query.startswith("{") and query.endswith("}")):
            raise ValueError(f"unsupported MetadataExtractionQuery {text!r}: expected {{key: .field, ...}}")
        entries: list[tuple[str, tuple[str, ...]]] = []
        for entry in query[1:-1].split(","):
            name, colon, path = entry.partition(":")
            key = _KEY.match(name.strip())
            if key is None or (colon and not _PATH.match(path.strip())):
                raise ValueError(
                    f"unsupported MetadataExtractionQuery {text!r}: {entry.strip()!r} is not 'key: .field'"
                )
            key_name = key.group("quoted") or key.group("bare")
            entries.append((key_name, _path(path.strip()) if colon else (key_name,)))
        return cls(text, entries=tuple(entries))

    def evaluate(self, document: Any) -> dict[str, Any]:
        """The JQ result on ``document``: key → value (``None`` where the field is missing)."""
        if self.object_path is not None:
            found = _lookup(document, self.object_path)
            if not isinstance(found, dict):
                raise PartitionKeyError(f"{self.text!r} did not produce an object")
            return found
        return {key: _lookup(document, path) for key, path in self.entries}


def _path(text: str) -> tuple[str, ...]:
    return tuple(text.split(".")[1:])


def _lookup(document: Any, path: Sequence[str]) -> Any:
    value = document
    for step in path:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise PartitionKeyError(f"cannot index {type(value).__name__} with {step!r}")
        value = value.get(step)
    return value


def partition_keys(record: bytes, query: MetadataQuery) -> dict[str, str]:
    """The record's partition keys as Firehose renders them; :class:`PartitionKeyError` if it cannot."""
    try:
        document = json.loads(record)
    except ValueError as exc:
        raise PartitionKeyError(f"the record is not JSON: {exc}") from exc
    keys: dict[str, str] = {}
    for key, value in query.evaluate(document).items():
        text = _scalar_text(value)
        if not text:
            raise PartitionKeyError(f"partition key {key!r} is missing, empty or not a scalar")
        keys[key] = text
    return keys


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return None


# --- prefixes -----------------------------------------------------------------------------------------------


def java_datetime(pattern: str, at: datetime) -> str:
    """Format ``at`` with a Java ``DateTimeFormatter`` pattern (the letters Firehose prefixes use)."""
    fields: dict[str, Callable[[int], str]] = {
        "y": lambda n: f"{at.year % 100:02d}" if n == 2 else f"{at.year:0{n}d}",
        "u": lambda n: f"{at.year % 100:02d}" if n == 2 else f"{at.year:0{n}d}",
        "M": lambda n: f"{at.month:0{n}d}" if n <= 2 else _unsupported("M" * n, pattern),
        "d": lambda n: f"{at.day:0{n}d}",
        "H": lambda n: f"{at.hour:0{n}d}",
        "m": lambda n: f"{at.minute:0{n}d}",
        "s": lambda n: f"{at.second:0{n}d}",
        "S": lambda n: f"{at.microsecond:06d}"[:n].ljust(n, "0"),
    }
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "'":
            end = pattern.find("'", index + 1)
            if end == -1:
                raise ValueError(f"unterminated quote in timestamp pattern {pattern!r}")
            out.append(pattern[index + 1 : end] or "'")
            index = end + 1
            continue
        run = index
        while run < len(pattern) and pattern[run] == char:
            run += 1
        if char in fields:
            out.append(fields[char](run - index))
        elif char.isalpha():
            raise ValueError(f"unsupported letter {char!r} in timestamp pattern {pattern!r}")
        else:
            out.append(pattern[index:run])
        index = run
    return "".join(out)


def _unsupported(letters: str, pattern: str) -> str:
    raise ValueError(f"unsupported field {letters!r} in timestamp pattern {pattern!r}")


def render_prefix(
    template: str, at: datetime, keys: Mapping[str, str] | None = None, error_type: str | None = None
) -> str:
    """Evaluate a Firehose S3 prefix; a key the record lacks is a :class:`PartitionKeyError`."""

    def evaluate(match: re.Match[str]) -> str:
        namespace, value = match.group("namespace"), match.group("value")
        if namespace == "timestamp":
            return java_datetime(value, at)
        if namespace == "partitionKeyFromQuery":
            if keys is None or value not in keys:
                raise PartitionKeyError(f"partition key {value!r} is missing")
            return keys[value]
        if namespace == "firehose" and value == "error-output-type" and error_type is not None:
            return error_type
        if namespace == "firehose" and value == "random-string":
            return "".join(secrets.choice(_RANDOM_ALPHABET) for _ in range(11))
        raise ValueError(f"unsupported expression {match.group(0)!r} in S3 prefix {template!r}")

    return _EXPRESSION.sub(evaluate, template)


def object_key(prefix: str, stream: str, version: str, at: datetime) -> str:
    """Where Firehose writes one object: the evaluated prefix, then its own name for the object."""
    return f"{prefix}{stream}-{version}-{at:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"


# --- delivery -----------------------------------------------------------------------------------------------


def has_expressions(destination: Mapping[str, Any]) -> bool:
    """Whether Firehose would evaluate this destination's prefix (moto writes such prefixes literally)."""
    enabled = bool(destination.get("DynamicPartitioningConfiguration", {}).get("Enabled"))
    return enabled or bool(_EXPRESSION.search(destination.get("Prefix", "")))


def metadata_query(destination: Mapping[str, Any]) -> MetadataQuery | None:
    processing = destination.get("ProcessingConfiguration") or {}
    if not processing.get("Enabled"):
        return None
    for processor in processing.get("Processors", []):
        if processor.get("Type") == "MetadataExtraction":
            parameters = {p["ParameterName"]: p["ParameterValue"] for p in processor.get("Parameters", [])}
            if "MetadataExtractionQuery" in parameters:
                return MetadataQuery.parse(parameters["MetadataExtractionQuery"])
    return None


def partition_records(
    destination: Mapping[str, Any], records: Sequence[bytes], at: datetime
) -> dict[str, list[bytes]]:
    """Evaluated prefix → the data Firehose writes there for these records, in arrival order."""
    partitioned = bool(destination.get("DynamicPartitioningConfiguration", {}).get("Enabled"))
    query = metadata_query(destination) if partitioned else None
    prefix = destination.get("Prefix", "")
    error_prefix = destination.get("ErrorOutputPrefix") or DEFAULT_ERROR_PREFIX
    groups: dict[str, list[bytes]] = {}
    for data in records:
        try:
            keys = partition_keys(data, query) if query is not None else {}
            target, body = render_prefix(prefix, at, keys), data
        except PartitionKeyError as exc:
            if not partitioned:
                raise
            target = render_prefix(error_prefix, at, error_type=PARTITIONING_FAILED)
            body = _failed_record(data, at, str(exc))
        groups.setdefault(target, []).append(body)
    return groups


def _failed_record(data: bytes, at: datetime, message: str) -> bytes:
    millis = int(at.timestamp() * 1000)
    wrapped = {
        "attemptsMade": 1,
        "arrivalTimestamp": millis,
        "errorCode": METADATA_EXTRACTION_FAILED,
        "errorMessage": message,
        "attemptEndingTimestamp": int(datetime.now(UTC).timestamp() * 1000),
        "rawData": base64.b64encode(data).decode(),
    }
    return json.dumps(wrapped).encode() + b"\n"


@contextmanager
def firehose_s3_delivery() -> Iterator[None]:
    """Deliver to S3 destinations with prefix expressions as Firehose does, for the duration of the block."""
    original = getattr(FirehoseBackend, HOOK, None)
    if original is None:
        raise RuntimeError(f"moto's FirehoseBackend has no {HOOK!r}: re-check infra/local/firehose.py")

    @functools.wraps(original)
    def deliver_like_firehose(
        self: FirehoseBackend,
        delivery_stream_name: str,
        version_id: str,
        s3_destination: dict[str, Any],
        records: list[dict[str, Any]],
    ) -> list[dict[str, str]]:
        if not has_expressions(s3_destination):
            delivered: list[dict[str, str]] = original(
                self, delivery_stream_name, version_id, s3_destination, records
            )
            return delivered
        at = datetime.now(UTC)
        bucket = s3_destination["BucketARN"].split(":")[-1]
        data = [_record_data(record) for record in records]
        for prefix, bodies in partition_records(s3_destination, data, at).items():
            key = object_key(prefix, delivery_stream_name, version_id, at)
            s3_backends[self.account_id][self.partition].put_object(bucket, key, b"".join(bodies))
        return [{"RecordId": str(uuid.uuid4())} for _ in records]

    setattr(FirehoseBackend, HOOK, deliver_like_firehose)
    try:
        yield
    finally:
        setattr(FirehoseBackend, HOOK, original)


def _record_data(record: Mapping[str, Any]) -> bytes:
    data = record["Data"]
    # moto hands the blob over decoded; guard against a version that passes the base64 text instead.
    return data if isinstance(data, bytes) else base64.b64decode(data)
