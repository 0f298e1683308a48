"""Drift on 1,000,000 rows x 20 features: Flywheel's ``compute_drift`` against Evidently's data-drift preset.

The data is ``bench/drift.py``'s (ten numeric features: normal, log-normal, Poisson counts, uniform, some
missing; ten categorical with 2 to 40 categories, unseen ones in the current window), with 50,000 reference
rows of which Flywheel's profile keeps every value for KS (``reference_sample_rows``), so that both sides
test the current window against the same reference.

Flywheel computes every statistic in one call: PSI for every feature, KS for numeric and chi-square for
categorical features, with p-values. Evidently is run twice (the preset takes one method per column type):
PSI for all columns, and KS + chi-square. Its time is the sum of the two, the same statistics.

What is compared, column by column:

- **KS p-values** (Evidently's drift score for ``ks``): both run ``scipy.stats.ks_2samp`` on the present
  values, so they should agree to rounding;
- **chi-square p-values**: both test current counts against the reference's shares, but Flywheel counts
  a missing value as a category of its own and pools categories the reference never saw; Evidently drops
  missing values;
- **PSI**: a different quantity by definition — Flywheel bins numeric features at the reference's deciles
  (the profile stores them, so monitoring never rereads training data), Evidently at Sturges' equal-width
  bins of reference and current together — so the values are printed side by side, and whether the two
  flag the same features at 0.1 and 0.2.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.anchors.common import Timing, ratio, say, timed
from bench.drift import CATEGORICAL, NUMERIC, captured, contract, frame, holdout_predictions
from shared.ml.training import reference_profile
from shared.monitoring.drift import compute_drift

HERE = Path(__file__).resolve().parent
REFERENCE_ROWS = 50_000


def evidently_side(
    python: str, reference: pd.DataFrame, current: pd.DataFrame, folder: Path, repeat: int
) -> dict[str, object]:
    reference_file, current_file = folder / "reference.parquet", folder / "current.parquet"
    # Categories as text (a column mixes numbers and text), missing as null.
    text = {f"c{i}": "str" for i in range(CATEGORICAL)}
    reference.astype(text).to_parquet(reference_file, index=False)
    current.astype(text).to_parquet(current_file, index=False)
    command = [
        python,
        str(HERE / "evidently_drift.py"),
        *("--reference", str(reference_file), "--current", str(current_file)),
        *("--numeric", ",".join(f"n{i}" for i in range(NUMERIC))),
        *("--categorical", ",".join(f"c{i}" for i in range(CATEGORICAL))),
        *("--repeat", str(repeat)),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"Evidently's report failed:\n{finished.stderr[-3000:]}")
    result: dict[str, object] = json.loads(finished.stdout.strip().splitlines()[-1])
    return result


def largest(pairs: list[tuple[str, float, float]]) -> str:
    if not pairs:
        return "-"
    name, mine, theirs = max(pairs, key=lambda p: abs(p[1] - p[2]) if np.isfinite(p[1] - p[2]) else np.inf)
    return f"{abs(mine - theirs):.2g} ({name}: {mine:.4g} vs {theirs:.4g})"


def compare(rows: int, peers_python: str, repeat: int) -> list[str]:
    rules = contract()
    rules = rules.model_copy(
        update={"training": rules.training.model_copy(update={"reference_sample_rows": REFERENCE_ROWS})}
    )
    say(f"drift: generating {REFERENCE_ROWS:,} reference and {rows:,} current rows x 20 features")
    reference = frame(REFERENCE_ROWS, seed=1, current=False)
    current_typed = frame(rows, seed=2, current=True)
    current = captured(current_typed)
    profile = reference_profile(reference, holdout_predictions(10_000, 3), rules)
    report, mine = timed(lambda: compute_drift(current, None, profile, rules), repeat)
    say(f"drift: Flywheel {mine.spread}")
    with tempfile.TemporaryDirectory(prefix="flywheel-anchor-") as folder:
        found = evidently_side(peers_python, reference, current_typed, Path(folder), repeat)
    seconds: dict[str, list[float]] = found["seconds"]  # type: ignore[assignment]
    values: dict[str, dict[str, float]] = found["values"]  # type: ignore[assignment]
    psi_t, tests_t = Timing(tuple(seconds["psi"])), Timing(tuple(seconds["tests"]))
    theirs = Timing(tuple(a + b for a, b in zip(seconds["psi"], seconds["tests"], strict=True)))
    say(f"drift: Evidently PSI {psi_t.spread}; KS + chi-square {tests_t.spread}")

    ks, chi2, psi = [], [], []
    flagged = {0.1: [0, 0], 0.2: [0, 0]}
    agree = dict.fromkeys(flagged, 0)
    for feature in report.features:
        p_value = float(feature.p_value) if feature.p_value is not None else np.nan
        peer_p = values["tests"].get(feature.name, np.nan)
        (ks if feature.test == "ks" else chi2).append((feature.name, p_value, peer_p))
        mine_psi = float(feature.psi) if feature.psi is not None else np.nan
        peer_psi = values["psi"].get(feature.name, np.nan)
        psi.append((feature.name, mine_psi, peer_psi))
        for threshold, counts in flagged.items():
            counts[0] += mine_psi > threshold
            counts[1] += peer_psi > threshold
            agree[threshold] += (mine_psi > threshold) == (peer_psi > threshold)
    features = len(report.features)
    return [
        f"drift, {rows:,} rows x {features} features: Flywheel {mine.best:.2f} s (PSI, KS, chi-square in one "
        f"call), Evidently {theirs.best:.2f} s (PSI {psi_t.best:.2f} + KS/chi-square {tests_t.best:.2f}) "
        f"({ratio(mine.best, theirs.best)})",
        f"  spread: Flywheel {mine.spread}; Evidently {theirs.spread}",
        f"  KS p-values, {len(ks)} numeric features: largest difference {largest(ks)}",
        f"  chi-square p-values, {len(chi2)} categorical features: largest difference {largest(chi2)} "
        "(Flywheel counts missing as a category and pools unseen ones)",
        f"  PSI (deciles of the reference vs Sturges bins of both): largest difference {largest(psi)}; "
        f"features over 0.1: Flywheel {flagged[0.1][0]}, Evidently {flagged[0.1][1]} (same verdict on "
        f"{agree[0.1]}/{features}); over 0.2: {flagged[0.2][0]} and {flagged[0.2][1]} "
        f"({agree[0.2]}/{features})",
    ]
