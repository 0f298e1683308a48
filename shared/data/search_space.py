"""The contract's ``experiment:`` block: a hyperparameter search, its budget and how trials are scored.

::

    experiment:
      metric: roc_auc              # a gate metric of the task; its direction is known
      trials: 32                   # the budget: trials asked in all
      parallel: 8                  # trials per batch, run at once by the pipeline's Map state
      strategy: tpe                # tpe | random | grid (Optuna's samplers)
      cv: {folds: 3}               # or validation_fraction: 0.2; never the holdout the gate uses
      trial_timeout_seconds: 600   # a trial still fitting then is stopped and recorded as timed out
      every: 30d                   # optional: a scheduled retrain runs a new experiment this often
      space:
        learning_rate: {float: [0.01, 0.3], log: true}
        max_depth: {int: [2, 12]}
        l2_regularization: {choice: [0.0, 0.1, 1.0]}

Only the shape is checked here (pydantic, with the contract's other problems); whether each name is a
parameter of the estimator, and each bound a valid value of it, is :func:`shared.ml.experiments.
check_experiment`'s to say, since that needs scikit-learn.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Step Functions runs at most 40 iterations of an inline Map at once; the pipeline's fan-out is one.
MAX_PARALLEL = 40
# The trial function's timeout is Lambda's longest (900 s); reading the data comes out of it too.
MAX_TRIAL_SECONDS = 840
_DURATION = re.compile(r"^(?P<count>[1-9][0-9]*)(?P<unit>[hd])$")
Scalar = str | int | float | bool | None


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, serialize_by_alias=True)


class SearchDimension(_Block):
    """One parameter's range: ``{float: [low, high]}`` (``log``, ``step`` optional), ``{int: [low, high]}``
    (``log``, ``step``), or ``{choice: [...]}``."""

    float_range: tuple[float, float] | None = Field(default=None, alias="float")
    int_range: tuple[int, int] | None = Field(default=None, alias="int")
    choice: tuple[Scalar, ...] | None = None
    log: bool = False
    step: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_valid_range(self) -> SearchDimension:
        kinds = [k for k in ("float", "int", "choice") if self.kind_value(k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of float: [low, high], int: [low, high] or choice: [...]")
        if self.choice is not None:
            if not self.choice:
                raise ValueError("choice: list at least one value")
            if len(set(map(repr, self.choice))) != len(self.choice):
                raise ValueError(f"choice: {list(self.choice)} lists a value twice")
            if self.log or self.step is not None:
                raise ValueError("log and step apply to float and int ranges, not to choice")
            return self
        low, high = self.float_range or self.int_range or (0, 0)
        if not low < high:
            raise ValueError(f"the range [{low}, {high}] is empty: low must be below high")
        if self.log and low <= 0:
            raise ValueError(f"log: true needs a positive low bound, got {low}")
        if self.log and self.step is not None:
            raise ValueError("a log range takes no step")
        if self.int_range is not None and self.step is not None and self.step != int(self.step):
            raise ValueError(f"an int range's step must be a whole number, got {self.step}")
        return self

    def kind_value(self, kind: str) -> Any:
        return {"float": self.float_range, "int": self.int_range, "choice": self.choice}[kind]

    @property
    def kind(self) -> Literal["float", "int", "choice"]:
        if self.choice is not None:
            return "choice"
        return "int" if self.int_range is not None else "float"

    @property
    def enumerable(self) -> bool:
        """Whether a grid can list this dimension's values: a choice, an int range, a float range with a
        step."""
        return self.kind != "float" or self.step is not None

    def grid_values(self) -> list[Scalar]:
        """Every value a grid search tries (``enumerable`` dimensions only)."""
        if self.choice is not None:
            return list(self.choice)
        if self.int_range is not None:
            step = int(self.step or 1)
            return list(range(self.int_range[0], self.int_range[1] + 1, step))
        if self.float_range is None or self.step is None:
            raise ValueError("a float range without a step cannot be listed as a grid")
        low, high = self.float_range
        count = int((high - low) / self.step + 1e-9) + 1
        return [round(low + i * self.step, 12) for i in range(count)]

    def bounds(self) -> list[Scalar]:
        """The values worth checking against the estimator: both ends of a range, every choice."""
        if self.choice is not None:
            return list(self.choice)
        return list(self.float_range or self.int_range or ())


class CrossValidation(_Block):
    folds: int = Field(default=3, ge=2, le=10)


class ExperimentPolicy(_Block):
    """A search over ``space`` for the ``metric``'s best value, ``trials`` in all, ``parallel`` at a time."""

    metric: str
    trials: int = Field(default=20, ge=1, le=1000)
    parallel: int = Field(default=4, ge=1, le=MAX_PARALLEL)
    strategy: Literal["tpe", "random", "grid"] = "tpe"
    cv: CrossValidation | None = None
    validation_fraction: float | None = Field(default=None, gt=0.0, lt=0.9)
    trial_timeout_seconds: int = Field(default=600, ge=5, le=MAX_TRIAL_SECONDS)
    every: str | None = None
    space: dict[str, SearchDimension] = Field(min_length=1)

    @field_validator("every")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and not _DURATION.match(value):
            raise ValueError(f"every: write a duration as <n>d or <n>h (e.g. 30d), got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_scoring_and_a_listable_grid(self) -> ExperimentPolicy:
        if self.cv is not None and self.validation_fraction is not None:
            raise ValueError("score trials by cv: {folds: N} or by validation_fraction, not both")
        if self.strategy == "grid":
            unlisted = sorted(name for name, d in self.space.items() if not d.enumerable)
            if unlisted:
                raise ValueError(
                    f"a grid lists every value: give {unlisted} a step, or use choice or an int range"
                )
        return self

    @property
    def folds(self) -> int | None:
        """Cross-validation folds, or None when trials are scored on one validation split."""
        if self.validation_fraction is not None:
            return None
        return (self.cv or CrossValidation()).folds

    @property
    def interval(self) -> timedelta | None:
        match = _DURATION.match(self.every or "")
        if match is None:
            return None
        count = int(match["count"])
        return timedelta(days=count) if match["unit"] == "d" else timedelta(hours=count)

    def grid_size(self) -> int | None:
        if self.strategy != "grid":
            return None
        size = 1
        for dimension in self.space.values():
            size *= len(dimension.grid_values())
        return size

    @property
    def budget(self) -> int:
        """Trials to run: ``trials``, or fewer when a grid has fewer points."""
        size = self.grid_size()
        return min(self.trials, size) if size is not None else self.trials
