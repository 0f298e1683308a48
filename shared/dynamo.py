"""What the DynamoDB adapters share: how DynamoDB's failures map onto Flywheel's, and attribute values
(:func:`string_value`, :func:`number_value`).

Throttling and outages are :class:`TransientError` (the pipeline retries them); a failed condition or a
transaction cancelled by one is a lost race, which each store turns into its own answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

from shared.aws import AwsClients
from shared.errors import TransientError

TRANSIENT_CODES: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)
TRANSIENT_REASONS: Final = frozenset(
    {"ThrottlingError", "ProvisionedThroughputExceeded", "InternalServerError"}
)
LOST_RACE_REASONS: Final = frozenset({"ConditionalCheckFailed", "TransactionConflict"})


@contextmanager
def dynamodb_errors(operation: str, lost_race: Callable[[str], Exception]) -> Iterator[None]:
    """Raise :class:`TransientError` for throttling and outages and ``lost_race(detail)`` for a failed
    condition; anything else propagates as it is."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError  # noqa: PLC0415

    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in TRANSIENT_CODES:
            raise TransientError(f"DynamoDB {operation}: {code}") from error
        if code == "ConditionalCheckFailedException":
            raise lost_race(f"DynamoDB {operation}: condition failed") from error
        if code == "TransactionCanceledException":
            reasons = {r.get("Code", "None") for r in error.response.get("CancellationReasons", [])}
            if reasons & TRANSIENT_REASONS:
                raise TransientError(f"DynamoDB {operation}: {sorted(reasons)}") from error
            if reasons & LOST_RACE_REASONS or not reasons:
                raise lost_race(f"DynamoDB {operation}: {sorted(reasons)}") from error
        raise
    except (ConnectionError, HTTPClientError) as error:
        raise TransientError(f"DynamoDB {operation}: {error}") from error


def string_value(value: str) -> dict[str, str]:
    """A DynamoDB string attribute value (``{"S": ...}``), for keys and conditions."""
    return {"S": value}


def number_value(value: int) -> dict[str, str]:
    """A DynamoDB number attribute value (``{"N": ...}``; DynamoDB sends numbers as text)."""
    return {"N": str(value)}


class LazyClient:
    """A DynamoDB client made on first use, so moto (tests, the local cloud) is active before it exists."""

    def __init__(self, client: Any = None) -> None:
        self._client = client
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = AwsClients().client("dynamodb")
            return self._client
