"""The demo generator is deterministic, fits its contract, and its drift knobs do what they say."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from examples.churn import COLUMNS, generate, main
from shared.data.contract import DataContract, FeatureType, parse_contract
from shared.ml.evaluation import score
from shared.ml.training import train

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # OpenMP's two threads spin against whatever else the machine runs; one thread keeps fits quick.
    with threadpool_limits(limits=1):
        yield


CONTRACT_FILE = Path(__file__).resolve().parents[2] / "examples" / "churn.yaml"


@pytest.fixture(scope="module")
def churn_contract() -> DataContract:
    return parse_contract(CONTRACT_FILE.read_text())


def as_validated(frame: pd.DataFrame) -> pd.DataFrame:
    """What validation hands to training: booleans become 1.0/0.0 (the rest already has its types)."""
    validated = frame.copy()
    validated["autopay"] = validated["autopay"].map({"true": 1.0, "false": 0.0}).astype("float64")
    return validated


def test_same_seed_same_table_other_seed_other_ids() -> None:
    first = generate(300, seed=7)
    pd.testing.assert_frame_equal(first, generate(300, seed=7))
    other = generate(300, seed=8)
    assert not first["tenure_months"].equals(other["tenure_months"])
    assert first["customer_id"].is_unique
    assert not set(first["customer_id"]) & set(other["customer_id"])


def test_events_spread_over_the_requested_days() -> None:
    frame = generate(500, seed=1, start="2026-03-01", days=10)
    start = pd.Timestamp(datetime(2026, 3, 1, tzinfo=UTC))
    assert str(frame["event_time"].dtype) == "datetime64[ns, UTC]"
    assert frame["event_time"].min() >= start
    assert frame["event_time"].max() < start + pd.Timedelta(days=10)
    assert frame["event_time"].max() - frame["event_time"].min() > pd.Timedelta(days=8)
    assert frame["event_time"].is_monotonic_increasing


def test_the_output_fits_the_churn_contract(churn_contract: DataContract) -> None:
    frame = generate(2000, seed=3, missing_rate=0.1)
    assert list(frame.columns) == churn_contract.columns == list(COLUMNS)
    assert frame[churn_contract.id_column].is_unique
    assert churn_contract.target_values is not None
    assert set(frame[churn_contract.target]) == set(churn_contract.target_values)
    for name, feature in churn_contract.features.items():
        column = frame[name]
        if not feature.nullable:
            assert not column.isna().any(), name
        present = column.dropna()
        if feature.type is FeatureType.NUMERIC:
            assert pd.api.types.is_float_dtype(column), name
            assert feature.min is None or present.min() >= feature.min, name
            assert feature.max is None or present.max() <= feature.max, name
        elif feature.type is FeatureType.CATEGORICAL:
            assert feature.allowed is not None
            assert set(present) <= set(feature.allowed), name
        else:
            assert set(present) <= {"true", "false"}, name
    for name in ("monthly_charges", "region"):
        assert frame[name].isna().mean() == pytest.approx(0.1, abs=0.03)


def test_covariate_shift_moves_the_features_as_documented() -> None:
    before = generate(3000, seed=4)
    after = generate(3000, seed=4, covariate_shift=1.0)
    assert after["tenure_months"].median() < 0.7 * before["tenure_months"].median()
    assert after["monthly_charges"].mean() > before["monthly_charges"].mean() + 5
    assert (after["plan"] == "basic").mean() > (before["plan"] == "basic").mean() + 0.2
    assert (after["autopay"] == "true").mean() < (before["autopay"] == "true").mean() - 0.2
    assert after["support_calls"].mean() > before["support_calls"].mean()


def test_concept_drift_keeps_the_features_but_breaks_an_old_model(churn_contract: DataContract) -> None:
    # Given a model trained before the drift, with a realistic quality
    model = train(as_validated(generate(2500, seed=5)), churn_contract)
    before = score(model.pipeline, as_validated(generate(1500, seed=6)), churn_contract)
    assert 0.75 < before.metrics["roc_auc"] < 0.9
    # When the rule linking features to churn drifts, the features look the same
    drifted_raw = generate(1500, seed=6, concept_drift=0.8)
    same = generate(1500, seed=6)
    pd.testing.assert_series_equal(drifted_raw["tenure_months"], same["tenure_months"])
    # Then the old model ranks customers clearly worse
    after = score(model.pipeline, as_validated(drifted_raw), churn_contract)
    assert after.metrics["roc_auc"] < before.metrics["roc_auc"] - 0.2


def test_knobs_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="covariate_shift"):
        generate(10, seed=1, covariate_shift=1.5)
    with pytest.raises(ValueError, match="missing_rate"):
        generate(10, seed=1, missing_rate=1.0)


def test_main_writes_a_csv_that_reads_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data" / "churn.csv"
    main(["--rows", "50", "--seed", "2", "--out", str(out), "--concept-drift", "0.5"])
    written = pd.read_csv(out)
    assert list(written.columns) == list(COLUMNS)
    assert len(written) == 50
    assert set(written["autopay"].astype(str).str.lower()) <= {"true", "false"}
    parsed = pd.to_datetime(written["event_time"], utc=True)
    assert not parsed.isna().any()
    assert math.isclose(written["tenure_months"].sum(), generate(50, seed=2)["tenure_months"].sum())
    assert "wrote 50 rows" in capsys.readouterr().out
