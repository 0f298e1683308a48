"""Flywheel's typed exceptions.

The class names are API: Step Functions ``Retry`` and ``Catch`` match on the ``errorType`` Lambda reports,
which is the exception's class name. Renaming one changes what the pipeline retries.
"""


from typing import Any


class FlywheelError(Exception):
    """Base of every error Flywheel raises on purpose. ``problems`` lists the details, when there are several."""

    def __init__(self, message: str, *, problems: list[Any] | None = None) -> None:
        super().__init__(message)
        self.problems: list[Any] = list(problems or [])


class TransientError(FlywheelError):
    """A failure that may pass on its own (throttling, a service hiccup): the pipeline retries it."""


class DataValidationError(FlywheelError):
    """The data broke its contract. Never retried: the same file fails the same way."""


class ContractError(FlywheelError):
    """The data contract (or a parameter it names) is invalid. Never retried."""


class NotFoundError(FlywheelError):
    """A model, version, run or object that was asked for does not exist."""


class ConflictError(FlywheelError):
    """A conditional write lost a race (an alias moved, a version was taken)."""


RETRYABLE = (TransientError.__name__,)
NEVER_RETRIED = (DataValidationError.__name__, ContractError.__name__)
