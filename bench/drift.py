"""What Flywheel's drift computation costs against computing the same statistics directly, column by column.

One seeded dataset (numpy; not timed) of 20 features, half numeric (normal, log-normal, Poisson counts
with many ties, uniform; some with missing values) and half categorical (2 to 40 categories, some
missing); a reference profile built by ``shared.ml.training.reference_profile`` from ``--reference-rows``
training rows (a 5,000-value KS sample, the contract's default); and a current window of ``--rows`` rows
drawn with a mild shift in some features, a missing-rate jump in one, and categories the reference never
saw in others, in object columns holding numbers, text and None, as ``shared.monitoring.drift.capture_frames``
builds them from captures. Then, in the same run:

- **Flywheel**: ``shared.monitoring.drift.compute_drift`` on the window (every statistic of every feature);
- **direct**: a plain loop over the columns with scipy and numpy: ``pd.cut`` into the reference bins and
  PSI written out, ``scipy.stats.ks_2samp`` against the reference sample, ``value_counts`` and
  ``scipy.stats.chisquare`` for categories, the missing rate; the same epsilon rule (1e-4 floor, buckets
  empty on both sides dropped, shares rescaled).

Prints both times (the fastest of ``--repeat`` runs), their ratio, and the largest difference between the
two sides' PSI, KS statistics, chi-square statistics, p-values and missing rates.

    python bench/drift.py                      # 1,000,000 rows x 20 features
    python bench/drift.py --rows 200000 --repeat 5

Goals: Flywheel at most 3 s for 1,000,000 rows x 20 features; values identical to 1e-9.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from shared.data.contract import DataContract
from shared.ml.training import MISSING, reference_profile
from shared.monitoring.drift import EPSILON, compute_drift

GOAL_ROWS, GOAL_SECONDS, GOAL_DIFFERENCE = 1_000_000, 3.0, 1e-9
NUMERIC, CATEGORICAL = 10, 10


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- data -----------------------------------------------------------------------------------------------


def contract() -> DataContract:
    features: dict[str, Any] = {f"n{i}": {"type": "numeric", "nullable": True} for i in range(NUMERIC)}
    features |= {f"c{i}": {"type": "categorical", "nullable": True} for i in range(CATEGORICAL)}
    return DataContract.model_validate(
        {"model": "bench", "task": "classification", "target": "label", "features": features}
    )


def numeric_column(i: int, rows: int, rng: np.random.Generator, *, current: bool) -> np.ndarray:
    shift = 0.15 if current and i % 3 == 0 else 0.0
    match i % 4:
        case 0:
            values = rng.normal(shift, 1.0, rows)
        case 1:
            values = rng.lognormal(3.0 + shift, 0.6, rows).round(2)
        case 2:
            values = rng.poisson(2.0 + 4 * shift, rows).astype("float64")  # ties
        case _:
            values = rng.uniform(0.0, 100.0 + 50 * shift, rows)
    missing = 0.05 if i % 5 == 1 else 0.0
    if current and i == 4:
        missing = 0.35  # a pipeline upstream started dropping this field
    if missing:
        values[rng.random(rows) < missing] = np.nan
    return values


def categorical_column(i: int, rows: int, rng: np.random.Generator, *, current: bool) -> np.ndarray:
    size = 2 + 4 * i
    # The same category weights on both sides (their own seed); only the draws differ.
    weights = np.random.default_rng([7, i]).dirichlet(np.ones(size) * 2.0)
    names = np.array([f"v{i}_{k}" for k in range(size)], dtype=object)
    if current and i % 4 == 1:
        weights = 0.9 * weights + 0.1 * np.roll(weights, 1)
    values = names[rng.choice(size, rows, p=weights)]
    if current and i % 3 == 2:
        unseen = rng.random(rows) < 0.01
        values[unseen] = np.array(["new_a", "new_b"], dtype=object)[rng.integers(0, 2, int(unseen.sum()))]
    if i % 2 == 0:
        values[rng.random(rows) < 0.03] = None
    return values


def frame(rows: int, seed: int, *, current: bool) -> pd.DataFrame:
    columns: dict[str, Any] = {}
    for i in range(NUMERIC):
        columns[f"n{i}"] = numeric_column(i, rows, np.random.default_rng([seed, i]), current=current)
    for i in range(CATEGORICAL):
        values = categorical_column(i, rows, np.random.default_rng([seed, 100 + i]), current=current)
        columns[f"c{i}"] = pd.Series(values, dtype=object)
    return pd.DataFrame(columns)


def captured(typed: pd.DataFrame) -> pd.DataFrame:
    """Object columns with None for a missing value: what capture_frames makes of JSON captures."""
    return typed.astype(object).where(typed.notna(), None)


def holdout_predictions(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    positive = rng.beta(2.0, 5.0, rows)
    labels = np.where(positive >= 0.5, "yes", "no").astype(object)
    return pd.DataFrame({"prediction": labels, "proba_no": 1 - positive, "proba_yes": positive})


# --- the direct computation -----------------------------------------------------------------------------


def psi_direct(reference: np.ndarray, live: np.ndarray) -> float:
    used = (reference > 0) | (live > 0)
    p = np.maximum(reference[used], EPSILON)
    q = np.maximum(live[used], EPSILON)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def direct(live: pd.DataFrame, profile: dict[str, Any]) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    rows = len(live)
    for name, reference in profile["features"].items():
        column = live[name]
        if reference["type"] == "categorical":
            text = column.astype(object).where(column.notna(), MISSING).astype(str)
            counts = text.value_counts()
            frequencies = reference["frequencies"]
            known = list(frequencies) + ([] if MISSING in frequencies else [MISSING])
            live_counts = np.array(
                [counts.get(k, 0) for k in known] + [counts[~counts.index.isin(known)].sum()], dtype="float64"
            )
            ref_shares = np.array([frequencies.get(k, 0.0) for k in known] + [0.0])
            ref_counts = np.rint(ref_shares * profile["rows"])
            used = (ref_counts > 0) | (live_counts > 0)
            chi = stats.chi2_contingency(np.vstack([ref_counts[used], live_counts[used]]), correction=False)
            results[name] = {
                "psi": psi_direct(ref_shares, live_counts / rows),
                "statistic": float(chi.statistic),
                "p_value": float(chi.pvalue),
                "missing_rate": float(counts.get(MISSING, 0)) / rows,
            }
        else:
            values = column.astype("float64").to_numpy()
            present = values[~np.isnan(values)]
            binned = pd.cut(present, np.asarray(reference["edges"]), right=True)
            shares = binned.value_counts().to_numpy(dtype="float64") / present.size
            ks = stats.ks_2samp(present, np.asarray(reference["sample"]))
            results[name] = {
                "psi": psi_direct(np.asarray(reference["shares"]), shares),
                "statistic": float(ks.statistic),
                "p_value": float(ks.pvalue),
                "missing_rate": 1 - present.size / rows,
            }
    return results


# --- the run --------------------------------------------------------------------------------------------


def timed(work: Any, repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=GOAL_ROWS, help="rows in the current window")
    parser.add_argument("--reference-rows", type=int, default=200_000, help="training rows profiled")
    parser.add_argument("--repeat", type=int, default=3, help="keep the fastest of N runs of each side")
    args = parser.parse_args(argv)
    rules = contract()
    say(f"generating {args.reference_rows:,} reference and {args.rows:,} current rows x 20 features")
    reference = frame(args.reference_rows, seed=1, current=False)
    current = captured(frame(args.rows, seed=2, current=True))
    profile = reference_profile(reference, holdout_predictions(10_000, 3), rules)
    say(f"profile: {len(profile['features'])} features, KS sample of {profile['sample_rows']:,} rows")

    flywheel_s, report = timed(lambda: compute_drift(current, None, profile, rules), args.repeat)
    direct_s, expected = timed(lambda: direct(current, profile), args.repeat)

    largest, where = 0.0, ""
    for feature in report.features:
        mine = {
            "psi": feature.psi,
            "statistic": feature.ks_statistic if feature.test == "ks" else feature.chi2_statistic,
            "p_value": feature.p_value,
            "missing_rate": feature.missing_rate_live,
        }
        for key, value in mine.items():
            difference = abs(float(value if value is not None else np.nan) - expected[feature.name][key])
            if not difference <= largest:  # NaN counts as the largest difference
                largest, where = difference, f"{feature.name}.{key}"
    drifted = ", ".join(report.drifted_features) or "none"
    cpus = os.cpu_count()
    shape = f"{args.rows:,} x {len(report.features)} ({NUMERIC} numeric, {CATEGORICAL} categorical)"
    print(f"rows x features:   {shape}")
    print(f"machine:           {cpus} CPU(s), fastest of {args.repeat} run(s) per side")
    print(f"Flywheel:          {flywheel_s:.3f} s  (shared.monitoring.drift.compute_drift)")
    print(f"direct:            {direct_s:.3f} s  (per-column ks_2samp, chi2_contingency, numpy PSI)")
    print(f"ratio:             {flywheel_s / direct_s:.2f}x the direct loop")
    print(f"largest |diff|:    {largest:.3g}" + (f" ({where})" if where else ""))
    print(f"drifted features:  {drifted} (share {report.drift_share:.2f})")
    time_met = flywheel_s <= GOAL_SECONDS or args.rows < GOAL_ROWS
    values_met = largest <= GOAL_DIFFERENCE
    scale = "" if args.rows >= GOAL_ROWS else f" (time goal applies at {GOAL_ROWS:,} rows)"
    print(f"goal time:         at most {GOAL_SECONDS:.0f} s -> {'met' if time_met else 'NOT met'}{scale}")
    print(f"goal values:       identical to {GOAL_DIFFERENCE:g} -> {'met' if values_met else 'NOT met'}")
    return 0 if time_met and values_met else 1


if __name__ == "__main__":
    sys.exit(main())
