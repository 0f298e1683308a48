"""Where a step runs: the contract's ``compute`` block, Fargate's sizes and the ``auto`` rule.

A step that outgrows its Lambda function (memory, or 15 minutes) runs the same image and the same step
code as an ECS Fargate task. The contract says so outright (``compute: {engine: fargate, cpu, memory}``),
asks Flywheel to judge (``compute: auto``), or says nothing (Lambda). Pure: no I/O, no AWS; the pipeline's
plan step (:mod:`shared.pipeline.compute`) feeds it the run's dataset metadata.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from shared.errors import DataValidationError


class Engine(StrEnum):
    LAMBDA = "lambda"
    FARGATE = "fargate"
    AUTO = "auto"  # the contract's word only: the plan turns it into one of the other two


# Fargate's task sizes (Linux): per CPU value, the memory values (MiB) a task may have, from the ECS
# documentation's table "Task CPU and memory" (8 and 16 vCPU need platform version 1.4.0, the default).
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: (1024, 2048, 3072, 4096),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}
DEFAULT_FARGATE_CPU = 4096
DEFAULT_FARGATE_MEMORY = 16384


def fargate_size_problem(cpu: int, memory: int) -> str:
    """Why ``cpu``/``memory`` is not a Fargate task size ("" when it is one)."""
    if cpu not in FARGATE_SIZES:
        return f"cpu {cpu} is not a Fargate CPU value; use one of {sorted(FARGATE_SIZES)}"
    allowed = FARGATE_SIZES[cpu]
    if memory not in allowed:
        step = allowed[1] - allowed[0] if len(allowed) > 1 else 0
        return (
            f"memory {memory} MiB does not go with cpu {cpu} on Fargate: use {allowed[0]}-{allowed[-1]} MiB "
            f"in steps of {step} MiB"
        )
    return ""


def smallest_fargate_size(memory_mib: float) -> tuple[int, int] | None:
    """The smallest Fargate size (cpu, memory) with at least ``memory_mib``; None past the largest."""
    sizes = sorted((m, c) for c, ms in FARGATE_SIZES.items() for m in ms)
    return next(((c, m) for m, c in sizes if m >= memory_mib), None)


class Compute(BaseModel):
    """The contract's ``compute`` block. ``compute: auto`` is short for ``{engine: auto}``.

    ``steps`` are the steps it places (Validate and Train can run as tasks). With ``fargate``, ``cpu`` and
    ``memory`` (MiB) size the task and must be one of Fargate's combinations; with ``auto`` they are chosen
    from the estimate unless given.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    engine: Engine = Engine.LAMBDA
    cpu: int | None = None
    memory: int | None = None
    steps: tuple[str, ...] = ("validate", "train")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"engine": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fargate_size(self) -> Compute:
        unknown = sorted(set(self.steps) - set(TASK_STEPS))
        if unknown:
            raise ValueError(f"steps {unknown} cannot run as tasks; use some of {list(TASK_STEPS)}")
        if (self.cpu is None) != (self.memory is None):
            raise ValueError("give both cpu and memory, or neither")
        if self.engine is Engine.LAMBDA and self.cpu is not None:
            raise ValueError("cpu and memory size a Fargate task; engine lambda takes neither")
        if self.cpu is not None and self.memory is not None:
            problem = fargate_size_problem(self.cpu, self.memory)
            if problem:
                raise ValueError(problem)
        return self


TASK_STEPS = ("validate", "train")


# --- the auto rule ------------------------------------------------------------------------------------------

# Bytes a cell takes in a DataFrame (float64, int64, or an object pointer), and how many copies of the data a
# step holds at its peak: Validate parses, types and checks (the raw frame, the typed one, the masks);
# Train combines the window, splits it, transforms it and fits (the frame, the split, the encoded matrix and
# the estimator's own).
BYTES_PER_CELL = 8
PEAK_COPIES = {"validate": 4.0, "train": 6.0}
# Python with pandas, scikit-learn and pyarrow imported, before any data.
BASELINE_MIB = 300.0
# Cells a step gets through per second on one Lambda vCPU-equivalent (a conservative rate: gradient
# boosting is slower than a linear model, and the rule must not send a big fit to a function that times out).
CELLS_PER_SECOND = {"validate": 2_000_000.0, "train": 200_000.0}
# The share of the function's memory and timeout an estimate may use and still run there.
HEADROOM = 0.8
# A task is sized with this much room over its estimate.
TASK_MARGIN = 1.5
# Text bytes a CSV cell takes on average (digits, separator); Parquet is compressed about four times more.
FILE_BYTES_PER_CELL = {"csv": 8.0, "parquet": 2.0}


@dataclass(frozen=True)
class Estimate:
    rows: int
    columns: int
    peak_mib: float
    seconds: float


def estimate(step: str, rows: int, columns: int) -> Estimate:
    """Peak memory = rows x columns x bytes per cell x the step's copies (+ the interpreter's baseline);
    duration = cells / the step's rate."""
    cells = rows * columns
    peak = BASELINE_MIB + cells * BYTES_PER_CELL * PEAK_COPIES[step] / 2**20
    return Estimate(rows, columns, peak, cells / CELLS_PER_SECOND[step])


def rows_in_file(size_bytes: int, columns: int, key: str) -> int:
    """Rows a data file holds, estimated from its size (Validate runs before anything has counted them)."""
    kind = "parquet" if key.endswith(".parquet") else "csv"
    return math.ceil(size_bytes / (max(columns, 1) * FILE_BYTES_PER_CELL[kind]))


@dataclass(frozen=True)
class Placement:
    """Where a step runs and why; ``cpu``/``memory`` size a Fargate task."""

    engine: Engine
    reason: str
    cpu: int | None = None
    memory: int | None = None


def place(
    step: str, compute: Compute | None, function_memory_mb: int, function_timeout_s: int, sized: Estimate
) -> Placement:
    """The engine for ``step`` under the contract's block and the run's estimate (see the README's limits)."""
    if compute is None or step not in compute.steps or compute.engine is Engine.LAMBDA:
        why = "no compute block" if compute is None else f"compute: {compute.engine.value}"
        return Placement(Engine.LAMBDA, f"{why}: the {step} function")
    if compute.engine is Engine.FARGATE:
        cpu, memory = compute.cpu or DEFAULT_FARGATE_CPU, compute.memory or DEFAULT_FARGATE_MEMORY
        return Placement(
            Engine.FARGATE, f"the contract asks for fargate ({cpu} cpu, {memory} MiB)", cpu, memory
        )
    memory_limit, time_limit = HEADROOM * function_memory_mb, HEADROOM * function_timeout_s
    figures = f"{sized.rows} rows x {sized.columns} columns"
    if sized.peak_mib <= memory_limit and sized.seconds <= time_limit:
        return Placement(
            Engine.LAMBDA,
            f"auto: {figures} needs ~{sized.peak_mib:.0f} MiB and ~{sized.seconds:.0f} s, within the "
            f"{step} function's {function_memory_mb} MiB and {function_timeout_s} s",
        )
    over = (
        f"~{sized.peak_mib:.0f} MiB over {HEADROOM:.0%} of the function's {function_memory_mb} MiB"
        if sized.peak_mib > memory_limit
        else f"~{sized.seconds:.0f} s over {HEADROOM:.0%} of the function's {function_timeout_s} s timeout"
    )
    if compute.cpu is not None and compute.memory is not None:
        cpu, memory = compute.cpu, compute.memory
    else:
        size = smallest_fargate_size(sized.peak_mib * TASK_MARGIN)
        if size is None:
            raise DataValidationError(
                f"{figures} needs ~{sized.peak_mib:.0f} MiB, more than the largest Fargate task"
            )
        cpu, memory = size
    return Placement(Engine.FARGATE, f"auto: {figures} needs {over}", cpu, memory)
