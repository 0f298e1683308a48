"""The point-in-time join against Feast's offline ``get_historical_features`` on the same rows.

The data is ``bench/features.py``'s (label rows at random seconds over a year, 20 updates per entity on
whole hours, TTL 30 days, 1% unknown entities), with one change so that both sides have one right answer:
updates of one entity at the same instant are kept once (Flywheel settles such ties by delivery sequence,
Feast by a created-timestamp column; the two are not the same input). Each label row carries a row id, so
that rows are compared by id whatever order a side returns them in.

Flywheel runs in this process; Feast in its own environment (``bench/anchors/feast_join.py``), timed there
around ``get_historical_features(...).to_df()`` alone — not its interpreter start or ``apply``.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.anchors.common import Timing, ratio, say, timed
from bench.features import SEED, VIEW, feature_history, label_rows
from shared.featurestore.offline import point_in_time_join
from shared.featurestore.view import SEQUENCE_COLUMN

HERE = Path(__file__).resolve().parent
ROW = "row"


def data(rows: int, entities: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(SEED)
    history = feature_history(entities, 20, rng).drop_duplicates(["customer_id", "updated_at"])
    labels = label_rows(rows, entities, rng)
    labels.insert(0, ROW, np.arange(len(labels), dtype="int64"))
    return labels, history


def feast_side(
    python: str, labels: pd.DataFrame, history: pd.DataFrame, folder: Path, repeat: int
) -> tuple[pd.DataFrame, Timing]:
    labels_file, history_file, out = (
        folder / "labels.parquet",
        folder / "history.parquet",
        folder / "out.parquet",
    )
    labels.to_parquet(labels_file, index=False)
    history.drop(columns=[SEQUENCE_COLUMN]).to_parquet(history_file, index=False)
    command = [
        python,
        str(HERE / "feast_join.py"),
        *("--labels", str(labels_file), "--features", str(history_file), "--out", str(out)),
        *("--ttl-days", f"{VIEW.ttl_days:g}", "--repeat", str(repeat)),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"Feast's join failed:\n{finished.stderr[-3000:]}")
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    return pd.read_parquet(out), Timing(tuple(report["seconds"]))


def same_values(flywheel: pd.DataFrame, feast: pd.DataFrame, names: list[str]) -> tuple[int, list[str]]:
    """Rows both returned, and the features whose values differ on them (missing equals missing)."""
    both = flywheel.set_index(ROW).loc[feast[ROW]]
    theirs = feast.set_index(ROW)
    differ = []
    for name in names:
        mine, peer = both[name].astype(object), theirs[name].astype(object)
        equal = (mine.isna() & peer.isna()) | (mine == peer)
        if not bool(equal.all()):
            differ.append(f"{name} ({int((~equal).sum()):,} rows)")
    return len(both), differ


def compare(rows: int, entities: int, peers_python: str, repeat: int) -> list[str]:
    labels, history = data(rows, entities)
    names = list(VIEW.feature_names)
    size = f"{rows:,} label rows x {entities:,} entities ({len(history):,} feature rows)"
    say(f"join: {size}, TTL {VIEW.ttl_days:g} days")
    joined, mine = timed(
        lambda: point_in_time_join(
            labels, "customer_id", "ts", history, VIEW.ttl, names, event_time="updated_at"
        ),
        repeat,
    )
    say(f"join: Flywheel {mine.spread}")
    with tempfile.TemporaryDirectory(prefix="flywheel-anchor-") as folder:
        theirs, peer = feast_side(peers_python, labels, history, Path(folder), repeat)
    say(f"join: Feast {peer.spread}")
    compared, differ = same_values(joined, theirs, names)
    found = joined[names[0]].notna() | joined[names[1]].notna()
    dropped = joined[~joined[ROW].isin(theirs[ROW])]
    known = dropped["customer_id"].isin(history["customer_id"])
    verdict = "identical values" if not differ else "values DIFFER: " + ", ".join(differ)
    return [
        f"point-in-time join, {rows:,} label rows x {entities:,} entities: Flywheel {mine.best:.2f} s, "
        f"Feast {peer.best:.2f} s ({ratio(mine.best, peer.best)})",
        f"  spread: Flywheel {mine.spread}; Feast {peer.spread}",
        f"  rows: Flywheel returned all {len(joined):,} ({int(found.sum()):,} with features); Feast "
        f"{len(theirs):,}: it drops a row whose entity has history but none in the TTL before the row's time "
        f"({int(known.sum()):,} such rows) — Flywheel keeps it, features missing",
        f"  on the {compared:,} rows both returned: {verdict}",
    ]
