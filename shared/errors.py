"""Flywheel's typed exceptions.

The class names are API: Step Functions ``Retry`` and ``Catch`` match on the ``errorType`` Lambda reports,
which is the exception's class name. Renaming one changes what the pipeline retries.
"""

from typing import Any


class FlywheelError(Exception):
    """Base of every error Flywheel raises on purpose; ``problems`` holds the details, if several."""

    def __init__(self, message: str, *, problems: list[Any] | None = None) -> None:
        super().__init__(message)
        self.problems: list[Any] = list(problems or [])


class TransientError(FlywheelError):
    """A failure that may pass on its own (throttling, a service hiccup): the pipeline retries it."""


class DataValidationError(FlywheelError):
    """The data broke its contract. Never retried: the same file fails the same way."""


class ContractError(FlywheelError):
    """The data contract (or a parameter it names) is invalid. Never retried."""


class InvalidRequestError(FlywheelError):
    """A request to a function (a run asked for by a person, the CLI or the monitor) is malformed; every
    problem is listed. Never retried: the same request is refused the same way."""


class NotFoundError(FlywheelError):
    """A model, version, run or object that was asked for does not exist."""


class ConflictError(FlywheelError):
    """A conditional write lost a race (an alias moved, a version was taken)."""


class IntegrityError(FlywheelError):
    """Bytes do not match the sha256 recorded for them: a model artifact was altered or mixed up.
    Never deserialised, never retried."""


RETRYABLE = (TransientError.__name__,)
NEVER_RETRIED = (DataValidationError.__name__, ContractError.__name__, IntegrityError.__name__)
