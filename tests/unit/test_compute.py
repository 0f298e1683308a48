"""Where a step runs: the contract's compute block, Fargate's sizes and the auto rule (shared.data.compute),
and the record each run keeps of it."""

from __future__ import annotations

import pytest

from shared.data.compute import (
    FARGATE_SIZES,
    Compute,
    Engine,
    estimate,
    fargate_size_problem,
    place,
    rows_in_file,
    smallest_fargate_size,
)
from shared.data.contract import parse_contract
from shared.errors import ContractError, DataValidationError
from tests.fixtures.services import churn_contract


@pytest.mark.parametrize(
    ("cpu", "memory"),
    [
        (256, 512),
        (256, 2048),
        (512, 4096),
        (1024, 8192),
        (2048, 16384),
        (4096, 30720),
        (8192, 61440),
        (16384, 122880),
    ],
)
def test_fargates_documented_combinations_are_accepted(cpu: int, memory: int) -> None:
    assert fargate_size_problem(cpu, memory) == ""
    assert Compute(engine=Engine.FARGATE, cpu=cpu, memory=memory).memory == memory


@pytest.mark.parametrize(
    ("cpu", "memory", "said"),
    [
        (256, 4096, "memory 4096 MiB does not go with cpu 256"),
        (4096, 4096, "use 8192-30720 MiB in steps of 1024 MiB"),
        (8192, 18432, "in steps of 4096 MiB"),  # 18 GiB is not a 4 GiB step
        (3000, 8192, "cpu 3000 is not a Fargate CPU value"),
    ],
)
def test_other_sizes_are_refused_with_the_range_that_would_do(cpu: int, memory: int, said: str) -> None:
    assert said in fargate_size_problem(cpu, memory)


def test_the_contract_takes_a_block_auto_or_nothing() -> None:
    assert churn_contract().compute is None
    assert churn_contract(compute="auto").compute == Compute(engine=Engine.AUTO)
    block = churn_contract(compute={"engine": "fargate", "cpu": 4096, "memory": 30720}).compute
    assert block is not None and (block.engine, block.cpu, block.memory) == (Engine.FARGATE, 4096, 30720)


def test_a_contract_with_an_impossible_size_is_refused_naming_the_field() -> None:
    text = churn_contract().to_yaml() + "compute:\n  engine: fargate\n  cpu: 4096\n  memory: 4096\n"
    with pytest.raises(ContractError) as refused:
        parse_contract(text)
    assert "compute" in str(refused.value)
    assert "8192-30720" in str(refused.value)


@pytest.mark.parametrize(
    "block",
    [
        {"engine": "lambda", "cpu": 256, "memory": 512},
        {"engine": "fargate", "cpu": 256},
        {"steps": ["evaluate"]},
    ],
)
def test_a_block_that_contradicts_itself_is_refused(block: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Compute.model_validate(block)


def test_no_block_or_lambda_keeps_the_function() -> None:
    sized = estimate("train", 10_000_000, 50)
    assert place("train", None, 3008, 900, sized).engine is Engine.LAMBDA
    assert place("train", Compute(), 3008, 900, sized).reason == "compute: lambda: the train function"


def test_fargate_by_contract_is_sized_as_asked_or_by_default() -> None:
    asked = place(
        "validate",
        Compute(engine=Engine.FARGATE, cpu=2048, memory=8192),
        2048,
        300,
        estimate("validate", 1, 1),
    )
    assert (asked.engine, asked.cpu, asked.memory) == (Engine.FARGATE, 2048, 8192)
    default = place("train", Compute(engine=Engine.FARGATE), 3008, 900, estimate("train", 1, 1))
    assert (default.cpu, default.memory) == (4096, 16384)
    only_train = Compute(engine=Engine.FARGATE, steps=("train",))
    assert place("validate", only_train, 2048, 300, estimate("validate", 1, 1)).engine is Engine.LAMBDA


def test_the_estimate_is_rows_times_columns_times_bytes_times_the_steps_copies() -> None:
    sized = estimate("train", 1_000_000, 20)
    assert sized.peak_mib == pytest.approx(300 + 1_000_000 * 20 * 8 * 6 / 2**20)
    assert sized.seconds == pytest.approx(20_000_000 / 200_000)
    assert rows_in_file(8_000, 10, "incoming/m/a.csv") == 100
    assert rows_in_file(2_000, 10, "incoming/m/a.parquet") == 100


def test_auto_keeps_a_step_that_fits_on_its_function() -> None:
    placed = place("train", Compute(engine=Engine.AUTO), 3008, 900, estimate("train", 10_000, 20))
    assert placed.engine is Engine.LAMBDA
    assert placed.reason.startswith("auto: 10000 rows x 20 columns needs ~")
    assert "within the train function's 3008 MiB and 900 s" in placed.reason


def test_auto_sends_a_step_over_the_functions_memory_to_the_smallest_task_that_holds_it() -> None:
    sized = estimate("train", 5_000_000, 40)  # ~9.4 GiB at its peak
    placed = place("train", Compute(engine=Engine.AUTO), 3008, 900, sized)
    assert placed.engine is Engine.FARGATE
    assert "MiB over 80% of the function's 3008 MiB" in placed.reason
    assert placed.memory is not None and placed.memory >= sized.peak_mib * 1.5
    assert placed.cpu is not None and placed.memory in FARGATE_SIZES[placed.cpu]
    assert smallest_fargate_size(placed.memory - 1) == (placed.cpu, placed.memory)


def test_auto_sends_a_step_over_the_functions_timeout_to_a_task() -> None:
    sized = estimate("train", 4_000_000, 40)  # ~7.4 GiB fits 10 GiB, but ~800 s of fitting
    placed = place("train", Compute(engine=Engine.AUTO), 10240, 900, sized)
    assert placed.engine is Engine.FARGATE
    assert "s over 80% of the function's 900 s timeout" in placed.reason


def test_a_step_larger_than_any_task_is_refused() -> None:
    with pytest.raises(DataValidationError, match="more than the largest Fargate task"):
        place("train", Compute(engine=Engine.AUTO), 3008, 900, estimate("train", 500_000_000, 50))
