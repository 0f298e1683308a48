"""Drift statistics equal their textbook computations, and a window like the reference never alarms."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from shared.data.contract import DataContract, MonitoringPolicy
from shared.ml.training import MISSING, reference_profile
from shared.monitoring.drift import EPSILON, UNSEEN, capture_frames, compute_drift, population_stability_index
from shared.serving.capture import CaptureRecord

pytestmark = pytest.mark.unit

LENIENT = MonitoringPolicy(psi=0.2, ks_p_value=0.01, max_missing_rate_change=0.2, metric="roc_auc")


def contract(features: dict[str, str] | None = None, *, sample_rows: int = 5000) -> DataContract:
    kinds = features or {"x": "numeric", "count": "numeric", "flag": "boolean", "colour": "categorical"}
    return DataContract.model_validate(
        {
            "model": "tiny",
            "task": "classification",
            "target": "label",
            "features": {name: {"type": kind, "nullable": True} for name, kind in kinds.items()},
            "training": {"reference_sample_rows": sample_rows},
        }
    )


def training_frame(rows: int, seed: int = 1) -> pd.DataFrame:
    """Training-side convention: numerics and booleans float64 (NaN missing), categories text or None."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, rows)
    x[rng.random(rows) < 0.05] = np.nan
    colour = rng.choice(
        np.array(["red", "green", "blue", None], dtype=object), rows, p=[0.5, 0.3, 0.15, 0.05]
    )
    return pd.DataFrame(
        {
            "x": x,
            "count": rng.poisson(2.0, rows).astype("float64"),  # many ties
            "flag": (rng.random(rows) < 0.3).astype("float64"),
            "colour": pd.Series(colour, dtype=object),
        }
    )


def holdout_predictions(rows: int, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    positive = rng.beta(2, 5, rows)
    labels = np.where(positive >= 0.5, "yes", "no").astype(object)
    return pd.DataFrame({"prediction": labels, "proba_no": 1 - positive, "proba_yes": positive})


def profile_of(frame: pd.DataFrame, rules: DataContract) -> dict[str, Any]:
    return reference_profile(frame, holdout_predictions(500), rules)


def feature(report: Any, name: str) -> Any:
    return next(f for f in report.features if f.name == name)


# --- plain computations, written out independently -----------------------------------------------------


def plain_psi(reference: list[float] | np.ndarray, live: list[float] | np.ndarray) -> float:
    reference, live = np.asarray(reference, dtype=float), np.asarray(live, dtype=float)
    keep = (reference > 0) | (live > 0)
    p = np.maximum(reference[keep], 1e-4)
    q = np.maximum(live[keep], 1e-4)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def plain_live_shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    present = values[~np.isnan(values)]
    binned = pd.cut(present, np.asarray(edges), right=True)
    return binned.value_counts().to_numpy(dtype=float) / present.size


def plain_category_test(profile: dict[str, Any], name: str, column: pd.Series) -> tuple[float, float, float]:
    """(PSI, chi-square statistic, p-value) of a categorical column: reference categories, the missing
    sentinel, and one bucket for everything unseen; the test on the 2 x k table of counts."""
    frequencies = profile["features"][name]["frequencies"]
    text = column.astype(object).where(column.notna(), MISSING).astype(str)
    counts = text.value_counts()
    known = list(frequencies) + ([] if MISSING in frequencies else [MISSING])
    live = np.array(
        [counts.get(k, 0) for k in known] + [counts[~counts.index.isin(known)].sum()], dtype=float
    )
    reference_shares = np.array([frequencies.get(k, 0.0) for k in known] + [0.0])
    reference_counts = np.rint(reference_shares * profile["rows"])
    keep = (reference_counts > 0) | (live > 0)
    test = stats.chi2_contingency(np.vstack([reference_counts[keep], live[keep]]), correction=False)
    return plain_psi(reference_shares, live / len(column)), float(test.statistic), float(test.pvalue)


# --- PSI ------------------------------------------------------------------------------------------------


def test_psi_is_the_textbook_formula_with_the_epsilon_rule() -> None:
    reference = [0.5, 0.3, 0.2, 0.0]
    live = [0.4, 0.4, 0.0, 0.2]  # an empty live bin, and a bin the reference never filled
    expected = plain_psi(reference, live)

    assert population_stability_index(reference, live) == pytest.approx(expected, abs=1e-12)
    assert EPSILON == 1e-4
    assert population_stability_index(reference, reference) == 0.0
    # A bucket empty on both sides changes nothing.
    assert population_stability_index([*reference, 0.0], [*live, 0.0]) == pytest.approx(expected, abs=1e-15)


def test_numeric_psi_and_ks_match_scipy_on_the_same_data() -> None:
    rules = contract()
    train = training_frame(4000)
    profile = profile_of(train, rules)
    live = training_frame(3000, seed=9)
    live["x"] = live["x"] + 0.3

    report = compute_drift(live, None, profile, rules, LENIENT)

    for name in ("x", "count"):
        reference = profile["features"][name]
        values = live[name].to_numpy(dtype=float)
        present = values[~np.isnan(values)]
        expected_psi = plain_psi(reference["shares"], plain_live_shares(values, reference["edges"]))
        ks = stats.ks_2samp(present, np.asarray(reference["sample"]))
        drift = feature(report, name)
        assert drift.test == "ks"
        assert drift.psi == pytest.approx(expected_psi, abs=1e-12)
        assert drift.ks_statistic == pytest.approx(ks.statistic, abs=1e-12)
        assert drift.p_value == pytest.approx(ks.pvalue, rel=1e-9, abs=1e-300)
        assert drift.missing_rate_live == pytest.approx(1 - present.size / len(live))
    assert feature(report, "x").drifted
    assert not feature(report, "count").drifted


@pytest.mark.parametrize("rows", [12_000, 60_000])
def test_ks_above_scipys_exact_range_equals_scipy(rows: int) -> None:
    # Above 10,000 values scipy switches to the asymptotic p-value, and Flywheel stops sorting the window.
    rules = contract({"count": "numeric", "x": "numeric"})
    train = training_frame(8000)[["count", "x"]]
    profile = profile_of(train, rules)
    rng = np.random.default_rng(3)
    live = pd.DataFrame(
        {
            "count": rng.poisson(2.1, rows).astype(float),  # ties with the sample's values
            "x": np.concatenate([rng.normal(0.02, 1, rows - 5), [-9.0, 9.0, np.nan, 0.0, 0.0]]),
        }
    )

    report = compute_drift(live, None, profile, rules, LENIENT)

    for name in ("count", "x"):
        values = live[name].to_numpy(dtype=float)
        ks = stats.ks_2samp(values[~np.isnan(values)], np.asarray(profile["features"][name]["sample"]))
        drift = feature(report, name)
        assert drift.ks_statistic == ks.statistic
        assert drift.p_value == pytest.approx(ks.pvalue, rel=1e-12, abs=1e-300)


def test_an_empty_reference_bin_costs_a_finite_psi() -> None:
    rules = contract({"x": "numeric"})
    # The profile's last bin (above 10) holds nothing; the live window puts a fifth of its values there.
    profile = {
        "format": 1,
        "task": "classification",
        "rows": 1000,
        "features": {
            "x": {
                "type": "numeric",
                "missing_rate": 0.0,
                "mean": 5.0,
                "std": 2.0,
                "edges": [-math.inf, 2.0, 5.0, 10.0, math.inf],
                "shares": [0.25, 0.5, 0.25, 0.0],
                "sample": [1.0, 3.0, 4.0, 6.0, 7.0, 9.0],
            }
        },
    }
    live = pd.DataFrame({"x": [1.0] * 20 + [4.0] * 40 + [8.0] * 20 + [50.0] * 20})

    drift = feature(compute_drift(live, None, profile, rules, LENIENT), "x")

    expected = plain_psi([0.25, 0.5, 0.25, 0.0], [0.2, 0.4, 0.2, 0.2])
    assert drift.psi == pytest.approx(expected, abs=1e-12)
    assert math.isfinite(drift.psi) and drift.drifted
    assert drift.live_shares == [0.2, 0.4, 0.2, 0.2]
    assert drift.bins == ["≤ 2", "(2, 5]", "(5, 10]", "> 10"]


# --- categories -----------------------------------------------------------------------------------------


def test_categorical_psi_and_chi_square_count_unseen_and_missing_categories() -> None:
    rules = contract()
    profile = profile_of(training_frame(4000), rules)
    rng = np.random.default_rng(5)
    colour = rng.choice(
        np.array(["red", "green", "blue", None, "purple", "teal"], dtype=object),
        2500,
        p=[0.45, 0.3, 0.1, 0.05, 0.07, 0.03],
    )
    live = training_frame(2500, seed=6).assign(colour=pd.Series(colour, dtype=object))

    drift = feature(compute_drift(live, None, profile, rules, LENIENT), "colour")

    psi, statistic, p_value = plain_category_test(profile, "colour", live["colour"])
    assert drift.test == "chi2"
    assert drift.psi == pytest.approx(psi, abs=1e-12)
    assert drift.chi2_statistic == pytest.approx(statistic, rel=1e-12)
    assert drift.p_value == pytest.approx(p_value, rel=1e-9, abs=1e-300)
    assert drift.drifted
    assert "(unseen)" in drift.bins
    assert drift.live_shares[drift.bins.index("(unseen)")] == pytest.approx(
        float(np.isin(colour, ["purple", "teal"]).mean())
    )
    assert any("unseen categories: 'purple'" in note for note in drift.notes)
    assert drift.missing_rate_live == pytest.approx(float(pd.isna(colour).mean()))


def test_categories_are_compared_as_text_whatever_type_the_capture_holds() -> None:
    rules = contract({"size": "categorical"})
    train = pd.DataFrame({"size": pd.Series(["1", "2", "2", "3"] * 100, dtype=object)})
    profile = profile_of(train, rules)
    live = pd.DataFrame({"size": pd.Series([1, 2, 2, 3] * 100, dtype=object)})  # JSON numbers

    drift = feature(compute_drift(live, None, profile, rules, LENIENT), "size")

    assert drift.psi == 0.0
    assert drift.p_value == pytest.approx(1.0)
    assert not drift.drifted and UNSEEN not in drift.bins


def test_a_boolean_is_two_bins_with_the_reference_share_of_true() -> None:
    rules = contract({"flag": "boolean"})
    train = pd.DataFrame({"flag": np.r_[np.ones(950), np.zeros(50)]})  # 95% true: one decile bin holds both
    profile = profile_of(train, rules)
    live = pd.DataFrame({"flag": pd.Series([True] * 250 + [False] * 250 + [None] * 10, dtype=object)})

    drift = feature(compute_drift(live, None, profile, rules, LENIENT), "flag")

    test = stats.chi2_contingency(np.array([[50, 950], [250, 250]]), correction=False)
    assert drift.bins == ["false", "true"]
    assert drift.reference_shares == pytest.approx([0.05, 0.95])
    assert drift.live_shares == [0.5, 0.5]
    assert drift.test == "chi2"
    assert drift.chi2_statistic == pytest.approx(test.statistic, rel=1e-12)
    assert drift.p_value == pytest.approx(test.pvalue, rel=1e-9, abs=1e-300)
    assert drift.psi == pytest.approx(plain_psi([0.05, 0.95], [0.5, 0.5]), abs=1e-12)
    assert drift.drifted


def test_boolean_words_are_read_as_serving_reads_them() -> None:
    rules = contract({"flag": "boolean"})
    profile = profile_of(pd.DataFrame({"flag": np.r_[np.ones(60), np.zeros(40)]}), rules)
    live = pd.DataFrame({"flag": pd.Series(["yes"] * 60 + ["FALSE"] * 40 + ["maybe"], dtype=object)})

    drift = feature(compute_drift(live, None, profile, rules, LENIENT), "flag")

    assert drift.live_shares == pytest.approx([0.4, 0.6])
    assert any("1 value(s) could not be read as boolean" in note for note in drift.notes)


# --- edge cases: constant features, missing values, empty windows ---------------------------------------


def test_a_constant_feature_is_noted_and_never_a_false_alarm() -> None:
    rules = contract({"level": "numeric", "kind": "categorical"})
    train = pd.DataFrame({"level": np.full(500, 3.0), "kind": pd.Series(["a"] * 500, dtype=object)})
    profile = profile_of(train, rules)
    same = pd.DataFrame({"level": np.full(300, 3.0), "kind": pd.Series(["a"] * 300, dtype=object)})

    report = compute_drift(same, None, profile, rules, LENIENT)

    level, kind = feature(report, "level"), feature(report, "kind")
    assert (level.psi, level.ks_statistic, level.p_value) == (0.0, 0.0, 1.0)
    assert any("the reference is constant (3)" in note for note in level.notes)
    assert kind.psi == 0.0 and kind.test is None
    assert any("one category on both sides" in note for note in kind.notes)
    assert report.drifted_features == []

    moved = pd.DataFrame({"level": np.full(300, 7.0), "kind": pd.Series(["b"] * 300, dtype=object)})
    report = compute_drift(moved, None, profile, rules, LENIENT)
    assert report.drifted_features == ["level", "kind"]


def test_an_all_missing_window_reports_the_missing_rate_and_nothing_it_cannot_compute() -> None:
    rules = contract()
    profile = profile_of(training_frame(2000), rules)
    live = pd.DataFrame({name: pd.Series([None] * 400, dtype=object) for name in rules.features})

    report = compute_drift(live, None, profile, rules, LENIENT)

    x = feature(report, "x")
    assert (x.psi, x.p_value, x.test) == (None, None, None)
    assert x.missing_rate_live == 1.0
    before = profile["features"]["x"]["missing_rate"]
    assert x.reasons == [f"missing rate {before:.2f} → 1.00 (change {1 - before:.2f} > 0.20)"]
    assert any("no live value is present" in note for note in x.notes)
    colour = feature(report, "colour")
    assert colour.missing_rate_live == 1.0 and colour.drifted  # every row in the missing bucket


def test_an_empty_window_compares_nothing_and_alarms_nothing() -> None:
    rules = contract()
    profile = profile_of(training_frame(2000), rules)
    empty = training_frame(10).iloc[:0]

    report = compute_drift(empty, holdout_predictions(0), profile, rules, LENIENT)

    assert report.rows == 0 and report.drift_share == 0.0 and report.drifted_features == []
    assert all(f.psi is None and f.p_value is None and not f.drifted for f in report.features)
    assert all("the window has no rows" in f.notes for f in report.features)
    assert "the window is empty: nothing is compared" in report.notes
    assert report.prediction is not None and report.prediction.psi is None and not report.prediction.drifted


def test_a_feature_absent_from_every_live_row_is_reported() -> None:
    rules = contract()
    profile = profile_of(training_frame(2000), rules)
    live = training_frame(500, seed=4).drop(columns=["count"])

    report = compute_drift(live, None, profile, rules, LENIENT)

    count = feature(report, "count")
    assert report.absent_features == ["count"]
    assert count.notes[0].startswith("absent from every live row")
    assert count.missing_rate_live == 1.0 and count.drifted


def test_the_test_threshold_is_bonferroni_corrected_for_the_number_of_features() -> None:
    rules = contract()
    profile = profile_of(training_frame(3000), rules)
    live = training_frame(800, seed=12)
    live["x"] = live["x"] + 0.12
    p_value = feature(compute_drift(live, None, profile, rules, LENIENT), "x").p_value
    assert p_value is not None

    # alpha above p, but alpha / 4 features below it: not drifted by the test.
    loose = MonitoringPolicy(psi=10.0, ks_p_value=min(p_value * 3.9, 0.99), metric="roc_auc")
    report = compute_drift(live, None, profile, rules, loose)
    assert report.p_value_threshold == pytest.approx(loose.ks_p_value / 4)
    assert not feature(report, "x").drifted
    strict = MonitoringPolicy(psi=10.0, ks_p_value=min(p_value * 4.1, 0.99), metric="roc_auc")
    assert feature(compute_drift(live, None, profile, rules, strict), "x").reasons[0].startswith("KS p")


# --- predictions ----------------------------------------------------------------------------------------


def test_prediction_drift_compares_class_shares_and_the_probability_histogram() -> None:
    rules = contract()
    profile = profile_of(training_frame(1000), rules)
    rng = np.random.default_rng(8)
    positive = rng.beta(4, 3, 1500)  # far more confident "yes" than the holdout
    labels = np.where(positive >= 0.5, "yes", "no").astype(object)
    live_predictions = pd.DataFrame({"prediction": labels, "proba_no": 1 - positive, "proba_yes": positive})

    prediction = compute_drift(training_frame(1500), live_predictions, profile, rules, LENIENT).prediction

    assert prediction is not None
    reference = profile["predictions"]
    classes, histogram = prediction.distributions
    expected_classes = plain_psi(
        [reference["class_shares"]["no"], reference["class_shares"]["yes"], 0.0],
        [float((labels == "no").mean()), float((labels == "yes").mean()), 0.0],
    )
    expected_histogram = plain_psi(
        reference["probability"]["shares"], plain_live_shares(positive, reference["probability"]["edges"])
    )
    assert classes.title == "predicted class" and histogram.title == "P(yes)"
    assert classes.psi == pytest.approx(expected_classes, abs=1e-12)
    assert histogram.psi == pytest.approx(expected_histogram, abs=1e-12)
    assert prediction.psi == max(classes.psi, histogram.psi)
    assert prediction.drifted


def test_regression_prediction_drift_uses_the_prediction_bins() -> None:
    rules = DataContract.model_validate(
        {"model": "r", "task": "regression", "target": "y", "features": {"x": {"type": "numeric"}}}
    )
    rng = np.random.default_rng(2)
    train = pd.DataFrame({"x": rng.normal(0, 1, 800)})
    profile = reference_profile(train, pd.DataFrame({"prediction": rng.normal(10, 2, 400)}), rules)
    live_values = rng.normal(11, 2, 900)

    prediction = compute_drift(train, pd.DataFrame({"prediction": live_values}), profile, rules).prediction

    assert prediction is not None
    block = profile["predictions"]
    expected = plain_psi(block["shares"], plain_live_shares(live_values, block["edges"]))
    assert prediction.psi == pytest.approx(expected, abs=1e-12)


def test_capture_frames_turn_records_into_the_frames_compute_drift_reads() -> None:
    records = [
        CaptureRecord.of_prediction(
            request_id=f"r{i}",
            model="tiny",
            version=1,
            inputs={"x": 0.5 * i, "count": None, "flag": True, "colour": "red"},
            prediction="yes",
            probabilities={"no": 0.25, "yes": 0.75},
            time=datetime(2026, 1, 1, tzinfo=UTC),
        )
        for i in range(3)
    ]

    inputs, predictions = capture_frames([records[0], records[1].model_dump(mode="json"), records[2]])

    assert list(inputs["x"]) == [0.0, 0.5, 1.0]
    assert inputs["count"].isna().all()
    assert list(predictions.columns) == ["prediction", "proba_no", "proba_yes"]
    assert predictions["proba_yes"].tolist() == [0.75] * 3


def test_captured_categories_keep_the_text_serving_compared() -> None:
    rules = contract({"size": "categorical", "x": "numeric"})
    train = pd.DataFrame({"size": pd.Series(["1", "2", None] * 100, dtype=object), "x": np.arange(300.0)})
    profile = profile_of(train, rules)
    rows = [{"size": [1, 2, None][i % 3], "x": float(i)} for i in range(300)]
    inputs, _ = capture_frames({"inputs": row, "outputs": {"prediction": "no"}} for row in rows)

    report = compute_drift(inputs, None, profile, rules, LENIENT)

    assert feature(report, "size").psi == 0.0  # 1 next to None is still "1", not "1.0"
    assert feature(report, "x").psi == 0.0 and feature(report, "x").p_value == 1.0


# --- properties: a window like the reference never alarms -----------------------------------------------


@st.composite
def populations(draw: st.DrawFn) -> tuple[pd.DataFrame, int]:
    """A training frame of mixed features (ties, constants, rare categories, missing values) and a seed."""
    seed = draw(st.integers(0, 2**32 - 1))
    rows = draw(st.integers(150, 1500))
    rng = np.random.default_rng(seed)
    scale = draw(st.floats(0.0, 100.0))
    digits = draw(st.integers(0, 3))
    x = np.round(rng.normal(draw(st.floats(-1e3, 1e3)), scale, rows), digits)
    x[rng.random(rows) < draw(st.floats(0.0, 0.5))] = np.nan
    if np.isnan(x).all():
        x[0] = 1.0
    categories = draw(st.integers(1, 8))
    weights = np.asarray(draw(st.lists(st.floats(0.01, 1.0), min_size=categories, max_size=categories)))
    names = np.array([f"c{i}" for i in range(categories)] + [None], dtype=object)
    missing = draw(st.floats(0.0, 0.3))
    shares = np.r_[weights / weights.sum() * (1 - missing), missing]
    frame = pd.DataFrame(
        {
            "x": x,
            "count": rng.poisson(draw(st.floats(0.0, 5.0)), rows).astype("float64"),
            "flag": (rng.random(rows) < draw(st.floats(0.0, 1.0))).astype("float64"),
            "colour": pd.Series(names[rng.choice(categories + 1, rows, p=shares)], dtype=object),
        }
    )
    return frame, seed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(populations(), st.integers(1, 12))
def test_a_window_equal_to_the_reference_never_drifts(
    population: tuple[pd.DataFrame, int], copies: int
) -> None:
    frame, seed = population
    rules = contract(sample_rows=100_000)  # the KS sample is every training row
    profile = profile_of(frame, rules)
    shuffled = np.random.default_rng(seed).permutation(len(frame) * copies) % len(frame)
    live = frame.iloc[shuffled].reset_index(drop=True)

    report = compute_drift(live, None, profile, rules, LENIENT)

    assert report.drifted_features == [] and report.drift_share == 0.0
    for drift in report.features:
        assert drift.psi is not None and drift.psi <= 1e-12
        assert drift.p_value is None or drift.p_value >= 1 - 1e-9
        assert drift.missing_rate_change == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(populations(), st.integers(1000, 6000))
def test_a_window_drawn_from_the_reference_never_drifts_by_psi_or_missing_rate(
    population: tuple[pd.DataFrame, int], rows: int
) -> None:
    frame, seed = population
    rules = contract()
    profile = profile_of(frame, rules)
    live = frame.sample(rows, replace=True, random_state=seed % 2**32).reset_index(drop=True)

    report = compute_drift(live, None, profile, rules, LENIENT)

    for drift in report.features:
        assert drift.psi is not None and drift.psi < LENIENT.psi, drift
        assert drift.missing_rate_change is not None and abs(drift.missing_rate_change) <= 0.2


def test_the_tests_false_alarm_rate_on_undrifted_windows_is_bounded_by_alpha() -> None:
    # Bonferroni: with alpha 0.01 over 4 features, at most about 1% of undrifted windows may see any
    # feature flagged by its test. Independent draws of the training population, a fixed seed.
    rules = contract()
    profile = profile_of(training_frame(20_000, seed=100), rules)
    flagged = 0
    windows = 300
    for seed in range(windows):
        report = compute_drift(training_frame(1000, seed=1000 + seed), None, profile, rules, LENIENT)
        flagged += bool(report.drifted_features)
        assert all(f.psi is not None and f.psi < LENIENT.psi for f in report.features)
    assert flagged / windows <= 0.02
