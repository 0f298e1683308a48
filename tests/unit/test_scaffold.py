"""`flywheel init`: the contract inferred from a sample — each guess, and the samples it refuses."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from cli.scaffold import infer_contract, read_sample
from examples.churn import generate
from shared.data.contract import FeatureType, Task
from shared.data.streaming import validate_file
from shared.errors import ContractError

pytestmark = pytest.mark.unit


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    return read_sample(frame.to_csv(index=False).encode(), "sample.csv")


def test_the_churn_sample_gives_a_contract_that_accepts_it() -> None:
    sample = generate(400, seed=2)
    inferred = infer_contract(as_text(sample), "churn-copy", target="churned")
    contract = inferred.contract
    assert contract.task is Task.CLASSIFICATION
    assert contract.target_values == ("false", "true")
    assert (contract.id_column, contract.timestamp_column) == ("customer_id", "event_time")
    assert contract.features["autopay"].type is FeatureType.BOOLEAN
    assert contract.features["plan"].allowed == ("basic", "plus", "pro")
    assert contract.features["monthly_charges"].nullable
    assert contract.features["tenure_months"].min == 0
    assert contract.features["tenure_months"].max >= sample["tenure_months"].max()
    assert contract.training.pipeline == "pipeline:build"
    # the sample itself passes Validate under the inferred contract
    assert len(validate_file(sample.to_csv(index=False).encode(), "s.csv", contract).frame) == 400
    # every field is explained in the file
    assert inferred.text.count("# features") == 1 and "# target " in inferred.text


def test_a_numeric_target_with_many_values_is_a_regression() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(0, 50, 200), "y": rng.normal(10, 3, 200)})
    inferred = infer_contract(as_text(frame), "price")
    assert inferred.contract.task is Task.REGRESSION
    assert inferred.contract.target_values is None
    assert inferred.contract.features["x"].min is not None and inferred.contract.features["x"].min < 0
    assert any("last column" in note for note in inferred.notes)


def test_many_distinct_texts_accept_any_value_and_say_so() -> None:
    frame = pd.DataFrame({"city": [f"c{i}" for i in range(120)], "label": ["a", "b"] * 60})
    inferred = infer_contract(as_text(frame), "cities")
    assert inferred.contract.features["city"].allowed is None
    assert any("120 distinct values" in note for note in inferred.notes)


@pytest.mark.parametrize(
    ("frame", "model", "target", "expected"),
    [
        (pd.DataFrame({"x": range(10), "y": [0, 1] * 5}), "small", None, "at least 50"),
        (pd.DataFrame({"x": range(60), "y": [0, 1] * 30}), "Bad_Name", None, "model name"),
        (pd.DataFrame({"x": range(60), "y": [0, 1] * 30}), "m", "nope", "--target 'nope'"),
        (pd.DataFrame({"x": range(60), "y": ["a", ""] * 30}), "m", None, "blank in 30"),
    ],
)
def test_a_sample_it_cannot_read_is_refused_with_why(
    frame: pd.DataFrame, model: str, target: str | None, expected: str
) -> None:
    with pytest.raises(ContractError, match=expected):
        infer_contract(as_text(frame), model, target)


def test_an_unreadable_file_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match="not a readable CSV"):
        read_sample(b'a,b\n"1,2\n', "broken.csv")
    assert list(read_sample(io.BytesIO(b"a,b\n1,2\n").getvalue(), "ok.csv").columns) == ["a", "b"]
