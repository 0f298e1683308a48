"""Training builds the contract's pipeline, splits honestly, guards its artifact and profiles its data."""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from shared.data.contract import ESTIMATORS, DataContract, Task
from shared.errors import ContractError, DataValidationError, IntegrityError
from shared.ml import training
from shared.ml.training import (
    MISSING,
    bin_shares,
    build_pipeline,
    check_training_params,
    library_versions,
    model_from_bytes,
    model_to_bytes,
    predict_frame,
    prepare_features,
    prepare_row,
    reference_profile,
    sha256_hex,
    split_holdout,
    train,
)

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # OpenMP's two threads spin against whatever else the machine runs; one thread keeps fits quick.
    with threadpool_limits(limits=1):
        yield


def contract(
    task: Task = Task.CLASSIFICATION,
    *,
    estimator: str | None = None,
    params: dict[str, Any] | None = None,
    timestamp: bool = True,
    **training_options: Any,
) -> DataContract:
    default = "logistic_regression" if task is Task.CLASSIFICATION else "ridge"
    return DataContract.model_validate(
        {
            "model": "tiny",
            "task": task.value,
            "target": "label",
            "id_column": "id",
            "timestamp_column": "at" if timestamp else None,
            "features": {
                "amount": {"type": "numeric", "nullable": True},
                "flag": {"type": "boolean", "nullable": True},
                "colour": {"type": "categorical", "nullable": True, "allowed": ["red", "green", "blue"]},
            },
            "training": {"estimator": estimator or default, "params": params or {}, **training_options},
        }
    )


def frame(rows: int = 60, *, task: Task = Task.CLASSIFICATION, seed: int = 0) -> pd.DataFrame:
    """A validated frame: floats for numeric and boolean features, text categories, a UTC timestamp."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(50, 10, rows)
    flag = rng.integers(0, 2, rows).astype(float)
    colour = rng.choice(np.array(["red", "green", "blue"], dtype=object), rows)
    signal = (amount - 50) / 10 + flag + rng.normal(0, 0.5, rows)
    label: Any = np.where(signal > 0.5, "yes", "no") if task is Task.CLASSIFICATION else signal * 3 + 1
    amount[::7] = np.nan
    flag[3::11] = np.nan
    colour[2::9] = None
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(rows)],
            "at": pd.date_range("2026-01-01", periods=rows, freq="h", tz="UTC"),
            "amount": amount,
            "flag": flag,
            "colour": pd.Series(colour, dtype="str"),
            "label": label,
        }
    )


# --- pipeline -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "estimator"), [(task, name) for task, names in ESTIMATORS.items() for name in names]
)
def test_every_allowed_estimator_fits_and_predicts_on_a_tiny_frame(task: Task, estimator: str) -> None:
    # Given a contract naming the estimator, When a model is trained
    model = train(frame(task=task), contract(task, estimator=estimator))
    # Then it predicts the holdout, seeded where the estimator takes a seed
    predictions = predict_frame(model.pipeline, model.holdout, contract(task, estimator=estimator))
    assert len(predictions) == len(model.holdout)
    assert model.params.get("random_state", 42) == 42
    if task is Task.CLASSIFICATION:
        assert model.classes == ["no", "yes"]
        assert set(predictions["prediction"]) <= {"no", "yes"}
        assert np.allclose(predictions[["proba_no", "proba_yes"]].sum(axis=1), 1.0)
    else:
        assert model.classes is None
        assert predictions["prediction"].dtype == "float64"


def test_unknown_estimator_is_a_contract_error_naming_it() -> None:
    with pytest.raises(ContractError, match="'xgboost'") as caught:
        build_pipeline(contract(estimator="xgboost"))
    assert "logistic_regression" in str(caught.value)


def test_unknown_parameter_is_named_with_the_valid_ones() -> None:
    bad = contract(estimator="hist_gradient_boosting", params={"max_iter": 10, "n_trees": 5})
    with pytest.raises(ContractError) as caught:
        check_training_params(bad)
    assert caught.value.problems[0].startswith("training.params.n_trees: not a parameter")
    assert "max_iter" in caught.value.problems[0]
    assert len(caught.value.problems) == 1


def test_every_invalid_value_is_reported_at_once() -> None:
    bad = contract(estimator="random_forest", params={"n_estimators": -1, "max_depth": "deep"})
    with pytest.raises(ContractError) as caught:
        build_pipeline(bad)
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "training.params.n_estimators",
        "training.params.max_depth",
    ]
    assert "n_estimators" in problems[0]


def test_parameters_that_conflict_with_each_other_fail_at_fit_as_a_contract_error() -> None:
    # Each value is valid alone; scikit-learn only checks the pair when fitting.
    rules = contract(params={"solver": "newton-cholesky", "l1_ratio": 1.0})
    check_training_params(rules)
    with pytest.raises(ContractError, match="newton-cholesky"):
        train(frame(), rules)


def test_random_state_comes_from_the_seed_not_the_params() -> None:
    with pytest.raises(ContractError, match=r"training\.seed"):
        check_training_params(contract(estimator="random_forest", params={"random_state": 1}))
    pipeline = build_pipeline(contract(estimator="random_forest", seed=7, params={"n_estimators": 5}))
    assert pipeline.named_steps["estimator"].random_state == 7


def test_estimators_without_a_seed_are_built_without_one() -> None:
    pipeline = build_pipeline(contract(Task.REGRESSION, estimator="linear_regression"))
    assert "random_state" not in pipeline.named_steps["estimator"].get_params()


# --- split ----------------------------------------------------------------------------------------------


def test_holdout_by_time_takes_the_latest_rows() -> None:
    data = frame(50).sample(frac=1.0, random_state=3)  # shuffled: order must not matter
    training_part, holdout = split_holdout(data, contract(holdout_fraction=0.2))
    assert len(holdout) == 10
    assert holdout["at"].min() > training_part["at"].max()
    assert set(holdout["id"]) == {f"r{i}" for i in range(40, 50)}


def test_rows_sharing_the_cutoff_timestamp_stay_together() -> None:
    # Given 5 rows on each of two days, shuffled, and a holdout of 30% (3 rows)
    data = frame(10)
    data["at"] = pd.to_datetime(["2026-01-01", "2026-01-02"] * 5, utc=True)
    data["label"] = ["yes", "no", "no", "yes"] * 2 + ["yes", "no"]
    # When split, Then the 3 latest rows bring every row of their timestamp along
    training_part, holdout = split_holdout(data, contract(holdout_fraction=0.3))
    assert list(holdout.index) == [1, 3, 5, 7, 9]
    assert list(training_part.index) == [0, 2, 4, 6, 8]
    # and rows without a timestamp count as the earliest
    data.loc[3, "at"] = pd.NaT
    training_part, holdout = split_holdout(data, contract(holdout_fraction=0.3))
    assert 3 in training_part.index
    assert list(holdout.index) == [1, 5, 7, 9]

    data["at"] = pd.Timestamp("2026-01-01", tz="UTC")
    with pytest.raises(DataValidationError, match="earliest"):
        split_holdout(data, contract(holdout_fraction=0.3))


def test_stratified_split_keeps_class_shares_and_is_seeded() -> None:
    data = frame(80)
    data["label"] = ["yes"] * 20 + ["no"] * 60
    rules = contract(timestamp=False, holdout_fraction=0.25, seed=5)
    training_part, holdout = split_holdout(data, rules)
    assert holdout["label"].value_counts().to_dict() == {"no": 15, "yes": 5}
    assert training_part["label"].value_counts().to_dict() == {"no": 45, "yes": 15}
    again, _ = split_holdout(data, rules)
    assert list(again.index) == list(training_part.index)
    other, _ = split_holdout(data, contract(timestamp=False, holdout_fraction=0.25, seed=6))
    assert list(other.index) != list(training_part.index)


def test_a_split_that_leaves_nothing_to_learn_from_is_refused() -> None:
    with pytest.raises(DataValidationError, match="cannot be split"):
        split_holdout(frame(1), contract())
    one_class_first = frame(20)
    one_class_first["label"] = ["no"] * 16 + ["yes"] * 4
    with pytest.raises(DataValidationError, match="at least two"):
        split_holdout(one_class_first, contract(holdout_fraction=0.2))


def test_train_reports_what_the_registry_records() -> None:
    model = train(frame(60), contract(estimator="random_forest", params={"n_estimators": 10}))
    assert model.train_rows == 48
    assert len(model.holdout) == 12
    assert len(model.train_frame) == 48
    assert model.feature_names == ["amount", "flag", "colour"]
    assert model.params["n_estimators"] == 10
    assert model.fit_seconds >= 0
    json.dumps(model.params)


# --- artifact -------------------------------------------------------------------------------------------


def test_model_bytes_round_trip_when_the_sha256_matches() -> None:
    rules = contract()
    model = train(frame(), rules)
    data = model_to_bytes(model.pipeline)
    loaded = model_from_bytes(data, sha256_hex(data).upper())
    pd.testing.assert_frame_equal(
        predict_frame(loaded, model.holdout, rules), predict_frame(model.pipeline, model.holdout, rules)
    )


def test_a_tampered_byte_raises_integrity_error_before_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    data = model_to_bytes(train(frame(), contract()).pipeline)
    recorded = sha256_hex(data)
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0x01

    def never(*_: Any, **__: Any) -> Any:
        raise AssertionError("unpickled unverified bytes")

    monkeypatch.setattr(training.pickle, "loads", never)
    with pytest.raises(IntegrityError, match="does not match") as caught:
        model_from_bytes(bytes(tampered), recorded)
    assert f"expected sha256 {recorded}" in caught.value.problems


def test_verified_bytes_that_are_not_a_pipeline_are_refused() -> None:
    data = pickle.dumps({"not": "a model"})
    with pytest.raises(IntegrityError, match="not a scikit-learn Pipeline"):
        model_from_bytes(data, sha256_hex(data))


# --- features and rows ----------------------------------------------------------------------------------


def test_prepare_features_replaces_missing_categories_with_the_sentinel() -> None:
    data = frame(20)
    data.loc[0, "colour"] = np.nan
    prepared = prepare_features(data, contract())
    assert list(prepared.columns) == ["amount", "flag", "colour"]
    assert prepared.loc[0, "colour"] == MISSING
    assert prepared.loc[2, "colour"] == MISSING
    assert not prepared["colour"].isna().any()
    assert prepared["amount"].dtype == "float64"
    assert math.isnan(prepared.loc[0, "amount"])


def test_prepare_row_equals_prepare_features_on_the_same_row() -> None:
    rules = contract()
    data = frame(30)
    prepared = prepare_features(data, rules)
    for position in range(len(data)):
        raw = {name: data.iloc[position][name] for name in ("amount", "flag", "colour", "label")}
        row = prepare_row(raw, rules)
        assert list(row) == list(prepared.columns)
        for name, value in row.items():
            expected = prepared.iloc[position][name]
            if isinstance(expected, float) and math.isnan(expected):
                assert math.isnan(value)
            else:
                assert value == expected
                assert type(value) is type(expected) or isinstance(value, float)


def test_prepare_row_reads_json_shaped_values() -> None:
    row = prepare_row({"amount": 3, "flag": "true", "colour": None}, contract())
    assert row == {"amount": 3.0, "flag": 1.0, "colour": MISSING}
    assert math.isnan(prepare_row({}, contract())["amount"])
    with pytest.raises(DataValidationError, match="flag"):
        prepare_row({"flag": "maybe"}, contract())


# --- reference profile ----------------------------------------------------------------------------------


def test_bins_are_right_closed_and_clip_to_the_ends() -> None:
    edges = [-math.inf, 1.0, 2.0, math.inf]
    assert bin_shares([0.5, 1.0, 1.5, 2.0, 9.0, math.nan], edges) == [0.4, 0.4, 0.2]
    assert bin_shares([math.nan], edges) == [0.0, 0.0, 0.0]
    assert bin_shares([-1.0, 0.0, 0.05, 1.0], [0.0, 0.5, 1.0]) == [0.75, 0.25]


def test_profile_structure_and_bins_cover_the_data() -> None:
    rules = contract(reference_sample_rows=100)
    data = frame(300, seed=2)
    model = train(data, rules)
    profile = reference_profile(model.train_frame, predict_frame(model.pipeline, model.holdout, rules), rules)

    assert json.loads(json.dumps(profile)) == profile
    assert profile["format"] == 1
    assert profile["rows"] == len(model.train_frame) == 240
    assert profile["sample_rows"] == 100
    assert list(profile["features"]) == ["amount", "flag", "colour"]

    amount = profile["features"]["amount"]
    values = model.train_frame["amount"].to_numpy()
    assert amount["type"] == "numeric"
    assert amount["edges"][0] == -math.inf
    assert amount["edges"][-1] == math.inf
    assert np.all(np.diff(amount["edges"]) > 0)
    assert len(amount["edges"]) == 11
    assert len(amount["shares"]) == len(amount["edges"]) - 1
    assert sum(amount["shares"]) == pytest.approx(1.0)
    assert amount["shares"] == bin_shares(values, amount["edges"])
    assert all(0.05 < share < 0.15 for share in amount["shares"])  # deciles: about a tenth each
    assert amount["missing_rate"] == pytest.approx(np.isnan(values).mean())
    assert amount["mean"] == pytest.approx(np.nanmean(values))
    assert amount["std"] == pytest.approx(np.nanstd(values))
    assert 0 < len(amount["sample"]) <= 100
    assert set(amount["sample"]) <= set(values[~np.isnan(values)])

    flag = profile["features"]["flag"]
    assert flag["type"] == "boolean"
    assert "sample" not in flag
    assert flag["edges"] == [-math.inf, 0.0, 1.0, math.inf]
    assert sum(flag["shares"]) == pytest.approx(1.0)

    colour = profile["features"]["colour"]
    assert set(colour["frequencies"]) == {"red", "green", "blue", MISSING}
    assert sum(colour["frequencies"].values()) == pytest.approx(1.0)
    assert colour["frequencies"][MISSING] == colour["missing_rate"] > 0

    predictions = profile["predictions"]
    assert predictions["rows"] == 60
    assert predictions["classes"] == ["no", "yes"]
    assert sum(predictions["class_shares"].values()) == pytest.approx(1.0)
    assert predictions["probability"]["kind"] == "positive_class"
    assert predictions["probability"]["positive_class"] == "yes"
    assert predictions["probability"]["edges"] == [round(i / 10, 1) for i in range(11)]
    assert sum(predictions["probability"]["shares"]) == pytest.approx(1.0)


def test_profile_of_a_regression_describes_predicted_values() -> None:
    rules = contract(Task.REGRESSION)
    model = train(frame(100, task=Task.REGRESSION), rules)
    profile = reference_profile(model.train_frame, predict_frame(model.pipeline, model.holdout, rules), rules)
    predictions = profile["predictions"]
    assert predictions["rows"] == 20
    assert predictions["edges"][0] == -math.inf
    assert sum(predictions["shares"]) == pytest.approx(1.0)
    assert isinstance(predictions["mean"], float)


def test_library_versions_name_the_stack() -> None:
    versions = library_versions()
    assert {"scikit-learn", "numpy", "pandas", "python"} <= set(versions)
    assert all(isinstance(v, str) and v for v in versions.values())
