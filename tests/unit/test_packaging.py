"""Packaging picks the ONNX flavour only when the converted model agrees with scikit-learn on the holdout."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from threadpoolctl import threadpool_limits

from shared.data.contract import ESTIMATORS, DataContract, Task
from shared.ml.training import build_pipeline, predict_frame, prepare_features, train
from shared.registry import ServingFlavor
from shared.serving import packaging
from shared.serving.packaging import (
    OPSETS,
    PROBABILITY_TOLERANCE,
    VALUE_RTOL,
    package_for_serving,
    serving_signature,
)
from shared.serving.runtime import OnnxRunner, Signature, onnx_session

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with threadpool_limits(limits=1):
        yield


def contract(
    task: Task = Task.CLASSIFICATION, estimator: str = "logistic_regression", **params: Any
) -> DataContract:
    return DataContract.model_validate(
        {
            "model": "tiny",
            "task": task.value,
            "target": "label",
            "id_column": "id",
            "features": {
                "amount": {"type": "numeric", "nullable": True},
                "flag": {"type": "boolean", "nullable": True},
                "colour": {"type": "categorical", "nullable": True, "allowed": ["red", "green", "blue"]},
            },
            "training": {"estimator": estimator, "params": params, "holdout_fraction": 0.3},
        }
    )


def frame(rows: int = 80, *, task: Task = Task.CLASSIFICATION, seed: int = 0) -> pd.DataFrame:
    """A validated frame with missing values in every feature (imputed numerics, the MISSING category)."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(50, 10, rows)
    flag = rng.integers(0, 2, rows).astype(float)
    colour = rng.choice(np.array(["red", "green", "blue"], dtype=object), rows)
    signal = (amount - 50) / 10 + flag + (colour == "red") + rng.normal(0, 0.5, rows)
    label: Any = np.where(signal > 0.8, "yes", "no") if task is Task.CLASSIFICATION else signal * 30 + 100
    amount[::7] = np.nan
    flag[3::11] = np.nan
    colour[2::9] = None
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(rows)],
            "amount": amount,
            "flag": flag,
            "colour": colour,
            "label": label,
        }
    )


ALL_ESTIMATORS = [(task, name) for task, names in ESTIMATORS.items() for name in names]


@pytest.mark.parametrize(
    ("task", "estimator"), ALL_ESTIMATORS, ids=[f"{t.value}-{e}" for t, e in ALL_ESTIMATORS]
)
def test_every_allowlisted_estimator_is_served_as_onnx_with_its_parity_recorded(
    task: Task, estimator: str
) -> None:
    # Given a model of each allowlisted estimator, trained on a tiny frame with missing values
    rules = contract(task, estimator)
    model = train(frame(task=task), rules)

    # When it is packaged for serving
    package = package_for_serving(model.pipeline, model.holdout, rules)

    # Then the ONNX form is chosen, and the parity figures say why
    assert package.flavor is ServingFlavor.ONNX, package.reason
    assert package.onnx
    assert package.reason.startswith(f"ONNX matches scikit-learn on all {len(model.holdout)} holdout rows")
    parity = package.parity
    assert parity["rows"] == len(model.holdout)
    assert parity["opsets"] == OPSETS
    assert parity["onnx_bytes"] == len(package.onnx)
    if task is Task.CLASSIFICATION:
        assert parity["label_mismatches"] == 0
        assert parity["max_probability_difference"] <= PROBABILITY_TOLERANCE
        assert parity["tolerance"] == {"probability_abs": PROBABILITY_TOLERANCE}
    else:
        assert parity["value_mismatches"] == 0
        assert parity["tolerance"]["rtol"] == VALUE_RTOL
        assert parity["tolerance"]["atol"] >= 1e-4
    # And the bytes run as serving runs them, agreeing with predict_frame
    runner = OnnxRunner(
        onnx_session(package.onnx),
        Signature.from_dict(serving_signature(rules, model.classes)),
        model.classes,
    )
    rows = prepare_features(model.holdout, rules).to_dict("records")
    served = runner.predict(rows)
    expected = predict_frame(model.pipeline, model.holdout, rules)
    if task is Task.CLASSIFICATION:
        assert served.predictions == list(expected["prediction"])
    else:
        assert np.allclose(served.predictions, expected["prediction"], rtol=1e-4, atol=1e-2)


def test_a_pipeline_skl2onnx_cannot_convert_falls_back_to_sklearn_with_the_error() -> None:
    # Given a pipeline with a custom FunctionTransformer (skl2onnx converts only the identity)
    rules = contract()
    data = frame()
    pipeline = Pipeline(
        [
            ("preprocess", ColumnTransformer([("numeric", FunctionTransformer(np.abs), ["amount", "flag"])])),
            ("estimator", LogisticRegression()),
        ]
    )
    features = prepare_features(data, rules).fillna({"amount": 0.0, "flag": 0.0})
    pipeline.fit(features, data["label"])

    # When it is packaged
    package = package_for_serving(pipeline, data.fillna({"amount": 0.0, "flag": 0.0}), rules)

    # Then it is served by scikit-learn, and the reason names the error's type and message
    assert package.flavor is ServingFlavor.SKLEARN
    assert package.onnx is None
    assert package.reason.startswith(
        "ONNX conversion failed (RuntimeError: FunctionTransformer is not supported"
    )
    assert package.parity["rows"] == 0


def test_labels_that_differ_from_predict_on_some_rows_mean_sklearn(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an ONNX runtime whose probabilities pick the other class on three rows
    rules = contract()
    model = train(frame(), rules)
    original = OnnxRunner.run

    def flipped(self: OnnxRunner, feed: Any) -> np.ndarray:
        out = original(self, feed).copy()
        out[:3] = out[:3, ::-1]
        return out

    monkeypatch.setattr(OnnxRunner, "run", flipped)
    package = package_for_serving(model.pipeline, model.holdout, rules)
    # Then the flavour is sklearn, and the reason counts the rows
    assert package.flavor is ServingFlavor.SKLEARN
    assert f"labels differ on 3 of {len(model.holdout)} holdout rows" in package.reason
    assert package.parity["label_mismatches"] == 3


def test_probabilities_beyond_the_tolerance_mean_sklearn(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = contract()
    model = train(frame(), rules)
    original = OnnxRunner.run
    monkeypatch.setattr(OnnxRunner, "run", lambda self, feed: original(self, feed) + np.float32(3e-4))
    package = package_for_serving(model.pipeline, model.holdout, rules)
    assert package.flavor is ServingFlavor.SKLEARN
    assert "probabilities differ by up to 0.0003 (tolerance 0.0001)" in package.reason
    assert "labels differ" not in package.reason


def test_regression_values_are_judged_relative_to_the_target_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a regressor whose targets are in the hundreds: atol is 1e-4 * max|y|
    rules = contract(Task.REGRESSION, "ridge")
    model = train(frame(task=Task.REGRESSION), rules)
    scale = float(np.abs(model.pipeline.predict(prepare_features(model.holdout, rules))).max())
    original = OnnxRunner.run
    # When ONNX is off by a hundredth (inside 1e-4 * ~150 + 1e-4 * |y|), it is accepted
    monkeypatch.setattr(OnnxRunner, "run", lambda self, feed: original(self, feed) + np.float32(0.01))
    accepted = package_for_serving(model.pipeline, model.holdout, rules)
    assert accepted.flavor is ServingFlavor.ONNX, accepted.reason
    assert accepted.parity["tolerance"]["atol"] == pytest.approx(1e-4 * scale)
    # And off by one it is not
    monkeypatch.setattr(OnnxRunner, "run", lambda self, feed: original(self, feed) + np.float32(1.0))
    refused = package_for_serving(model.pipeline, model.holdout, rules)
    assert refused.flavor is ServingFlavor.SKLEARN
    assert f"values differ on {len(model.holdout)} of {len(model.holdout)} holdout rows" in refused.reason


def test_an_onnx_model_that_returns_nan_is_never_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = contract()
    model = train(frame(), rules)
    monkeypatch.setattr(
        OnnxRunner, "run", lambda self, feed: np.full((len(feed["amount"]), 2), np.nan, np.float32)
    )
    package = package_for_serving(model.pipeline, model.holdout, rules)
    assert package.flavor is ServingFlavor.SKLEARN
    assert package.parity["max_probability_difference"] is None  # JSON-safe: no infinity in the state


@pytest.mark.parametrize(
    ("estimator", "params"),
    [
        ("decision_tree", {}),
        ("random_forest", {"bootstrap": False, "n_estimators": 5, "max_features": None}),
        ("extra_trees", {"n_estimators": 5}),
    ],
)
def test_labels_derived_from_probabilities_match_sklearn_on_exact_ties(
    estimator: str, params: dict[str, Any]
) -> None:
    # Given rows whose class probabilities are exactly 0.5 / 0.5 (identical features, both labels twice)
    rules = contract(estimator=estimator, **params)
    data = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(24)],
            "amount": [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0] * 3,
            "flag": [1.0] * 24,
            "colour": ["red"] * 24,
            "label": ["no", "yes", "no", "yes", "yes", "yes", "yes", "no"] * 3,
        }
    )
    pipeline = build_pipeline(rules)
    pipeline.fit(prepare_features(data, rules), data["label"])
    tied = pipeline.predict_proba(prepare_features(data, rules))[:, 0] == 0.5
    assert tied.sum() == 12

    # When it is packaged and served
    package = package_for_serving(pipeline, data, rules)
    assert package.flavor is ServingFlavor.ONNX, package.reason
    runner = OnnxRunner(
        onnx_session(package.onnx or b""),
        Signature.from_dict(serving_signature(rules, ["no", "yes"])),
        ["no", "yes"],
    )
    served = runner.predict(prepare_features(data, rules).to_dict("records"))

    # Then a tie goes to the first class, as scikit-learn's predict decides
    assert served.predictions == list(pipeline.predict(prepare_features(data, rules)))
    assert {served.predictions[i] for i in np.flatnonzero(tied)} == {"no"}
    assert package.parity["label_mismatches"] == 0


def test_an_empty_holdout_cannot_prove_parity() -> None:
    rules = contract()
    model = train(frame(), rules)
    package = package_for_serving(model.pipeline, model.holdout.iloc[:0], rules)
    assert package.flavor is ServingFlavor.SKLEARN
    assert "holdout is empty" in package.reason


def test_the_module_docstring_states_the_tolerances() -> None:
    # The README quotes them from there.
    doc = packaging.__doc__ or ""
    assert "PROBABILITY_TOLERANCE = 1e-4" in doc
    assert "VALUE_RTOL = 1e-4" in doc
    assert "1e-4 * max(1, max |y|)" in doc
