"""Unit tests of the churn project's own feature: charges and support calls per month of tenure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cli.testing import Project
from shared.ml.training import prepare_features


@pytest.fixture
def per_tenure_month(flywheel_project: Project) -> type:
    """The project's transformer, imported as Flywheel imports it (from the code's own package)."""
    return flywheel_project.module("pipeline").PerTenureMonth


def frame(**columns: list[float]) -> pd.DataFrame:
    return pd.DataFrame({name: np.asarray(values, dtype="float64") for name, values in columns.items()})


def test_a_ratio_is_the_figure_over_months_of_tenure_plus_one(per_tenure_month: type) -> None:
    data = frame(tenure_months=[0, 1, 9], support_calls=[2, 4, 10])
    out = per_tenure_month(columns=("support_calls",)).fit(data).transform(data)
    assert out.shape == (3, 1)
    assert list(out[:, 0]) == [2.0, 2.0, 1.0]


def test_a_new_customer_with_many_calls_stands_out_from_a_loyal_one(per_tenure_month: type) -> None:
    data = frame(tenure_months=[1, 120], support_calls=[6, 6])
    ratio = per_tenure_month(columns=("support_calls",)).fit(data).transform(data)[:, 0]
    assert ratio[0] > 50 * ratio[1]


def test_a_missing_figure_stays_missing_for_the_imputer(per_tenure_month: type) -> None:
    data = frame(tenure_months=[3, 3], monthly_charges=[np.nan, 40.0])
    out = per_tenure_month(columns=("monthly_charges",)).fit(data).transform(data)
    assert np.isnan(out[0, 0]) and out[1, 0] == 10.0


def test_its_outputs_are_named_after_their_figures(per_tenure_month: type) -> None:
    transformer = per_tenure_month(columns=("monthly_charges", "support_calls"))
    assert list(transformer.get_feature_names_out()) == [
        "monthly_charges_per_tenure_month",
        "support_calls_per_tenure_month",
    ]


def test_build_gives_adaboost_over_the_contract_features_and_the_ratios(flywheel_project: Project) -> None:
    model = flywheel_project.build({"n_estimators": 5})
    sample = flywheel_project.sample()
    features = prepare_features(sample, flywheel_project.contract)
    model.fit(features, sample["churned"].astype(str))
    assert type(model.steps[-1][1]).__name__ == "AdaBoostClassifier"
    assert len(model.steps[-1][1].estimators_) == 5
    assert set(model.predict(features.head(20))) <= {"false", "true"}
