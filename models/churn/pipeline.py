"""The churn model's own code: a feature the built-in estimators cannot make, and an estimator they lack.

Flywheel calls :func:`build` with the model's contract and ``training.params`` and fits what it returns on
the contract's features, prepared as for any model: numeric and boolean features as float64 (NaN when
missing), categorical features as text. Import this folder's other modules relatively
(``from .features import ...``): the code runs as a package of its own, named by its digest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import AdaBoostClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from shared.data.contract import DataContract, FeatureType


class PerTenureMonth(BaseEstimator, TransformerMixin):
    """Each of ``columns`` divided by the months of tenure (plus one): a new customer with many support calls
    or a high bill churns differently from a long-standing one with the same figures."""

    def __init__(self, tenure: str = "tenure_months", columns: tuple[str, ...] = ()) -> None:
        self.tenure = tenure
        self.columns = columns

    def fit(self, frame: pd.DataFrame, target: Any = None) -> PerTenureMonth:
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        months = frame[self.tenure].to_numpy(dtype="float64") + 1.0
        ratios = [frame[c].to_numpy(dtype="float64") / months for c in self.columns]
        return np.column_stack(ratios) if ratios else np.empty((len(frame), 0))

    def get_feature_names_out(self, names: Any = None) -> np.ndarray:
        return np.asarray([f"{c}_per_tenure_month" for c in self.columns], dtype=object)


def build(contract: DataContract, params: dict[str, Any]) -> Pipeline:
    """The contract's features, two per-tenure ratios, and AdaBoost over shallow trees."""
    numeric = contract.features_of(FeatureType.NUMERIC) + contract.features_of(FeatureType.BOOLEAN)
    categorical = contract.features_of(FeatureType.CATEGORICAL)
    ratios = Pipeline(
        [
            ("ratio", PerTenureMonth(columns=("monthly_charges", "support_calls"))),
            ("impute", SimpleImputer(strategy="median")),
        ]
    )
    features = ColumnTransformer(
        [
            ("per_tenure", ratios, ["tenure_months", "monthly_charges", "support_calls"]),
            ("numeric", SimpleImputer(strategy="median"), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ]
    )
    estimator = AdaBoostClassifier(random_state=contract.training.seed, **params)
    return Pipeline([("features", features), ("estimator", estimator)])
