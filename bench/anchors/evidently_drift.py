"""Evidently's data-drift preset, run in the peers' environment (``.venv-anchors-peers``: Evidently 0.7 and
Feast need pandas 2, Flywheel pins pandas 3, so they cannot share one interpreter).

``bench/anchors/drift.py`` writes the reference and current frames as Parquet and runs this script, which
times ``Report([DataDriftPreset(method="psi")]).run(...)`` (PSI for every column) and
``Report([DataDriftPreset(num_method="ks", cat_method="chisquare")]).run(...)`` (KS for numeric columns,
chi-square for categorical ones: the tests Flywheel runs), ``--repeat`` times each, and prints one JSON line:
each report's seconds and each column's value (PSI, or the test's p-value, Evidently's drift score).

    python bench/anchors/evidently_drift.py --reference R.parquet --current C.parquet --numeric n0,n1 \
        --categorical c0,c1 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

warnings.filterwarnings("ignore")
REPORTS: dict[str, dict[str, str]] = {
    "psi": {"method": "psi"},
    "tests": {"num_method": "ks", "cat_method": "chisquare"},
}


def values(snapshot: Any) -> dict[str, float]:
    found: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        column = (metric.get("config") or {}).get("column")
        if column is not None and isinstance(metric.get("value"), int | float):
            found[column] = float(metric["value"])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", required=True)
    parser.add_argument("--current", required=True)
    parser.add_argument("--numeric", required=True)
    parser.add_argument("--categorical", required=True)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    definition = DataDefinition(
        numerical_columns=args.numeric.split(","), categorical_columns=args.categorical.split(",")
    )
    reference = Dataset.from_pandas(pd.read_parquet(args.reference), data_definition=definition)
    current = Dataset.from_pandas(pd.read_parquet(args.current), data_definition=definition)
    seconds: dict[str, list[float]] = {}
    found: dict[str, dict[str, float]] = {}
    for name, options in REPORTS.items():
        seconds[name] = []
        for _ in range(args.repeat):
            report = Report([DataDriftPreset(**options)])
            started = time.perf_counter()
            snapshot = report.run(current_data=current, reference_data=reference)
            seconds[name].append(time.perf_counter() - started)
        found[name] = values(snapshot)
    print(json.dumps({"seconds": seconds, "values": found}))


if __name__ == "__main__":
    main()
