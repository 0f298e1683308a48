"""Demo feature data: the CRM's customer profile (``examples/customer_profile.yaml``) as it changes over time.

:func:`profile_updates` draws several updates per customer of a churn frame (``examples.churn.generate``),
spread from ``before_days`` before the customer's row to ``after_days`` after it, so some updates lie in the
row's future: a join that leaks would hand training those. The profile is mildly related to churn before
the row's time (churners are more often ``consumer`` and worth a little less) and strongly after it (a
customer who left stops spending: their value collapses), which is what a leaking join would learn and
serving could never know. :func:`current_profiles` draws one fresh update per customer at a given time,
what the online store holds for the customers a demo asks about today. The same arguments always give the
same rows.

Run ``python -m examples.profiles --rows 2000 --seed 1 --out profiles.csv`` to write the updates for the
customers of ``python -m examples.churn --rows 2000 --seed 1``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from examples.churn import generate, write

SEGMENTS = ("consumer", "smb", "enterprise")
COLUMNS = ("customer_id", "updated_at", "lifetime_value", "segment")

_SEGMENT_SHARES = {False: np.array([0.45, 0.38, 0.17]), True: np.array([0.65, 0.28, 0.07])}
_SEGMENT_VALUE = {"consumer": 1.0, "smb": 3.0, "enterprise": 9.0}


def _segments(churned: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    picks = [rng.choice(len(SEGMENTS), p=_SEGMENT_SHARES[bool(c)]) for c in churned]
    return np.asarray(SEGMENTS, dtype=object)[picks]


def profile_updates(
    customers: pd.DataFrame,
    seed: int,
    *,
    updates: int = 3,
    before_days: float = 45.0,
    after_days: float = 20.0,
    id_column: str = "customer_id",
    time_column: str = "event_time",
    target: str = "churned",
) -> pd.DataFrame:
    """``updates`` profile rows per customer of ``customers`` (a churn frame), at times uniform within
    ``[row time - before_days, row time + after_days]``, sorted by time; columns :data:`COLUMNS`.

    A customer's segment is drawn once (churners lean to ``consumer``) and moves up one step now and then;
    the value grows with time from a per-customer base (churners' a little lower) and, in updates after a
    churner's row, drops to a fraction of it.
    """
    if updates < 1 or before_days < 0 or after_days < 0:
        raise ValueError("updates must be >= 1, before_days and after_days >= 0")
    rng = np.random.default_rng(seed)
    count = len(customers)
    churned = (customers[target].astype(str) == "true").to_numpy()
    row_times = pd.to_datetime(customers[time_column], utc=True).dt.as_unit("ns")
    base = rng.lognormal(7.0, 0.5, count) * np.where(churned, 0.8, 1.0)
    segment = _segments(churned, rng)

    offsets = rng.uniform(-before_days, after_days, (count, updates))
    offsets.sort(axis=1)
    ids = np.repeat(customers[id_column].astype(str).to_numpy(), updates)
    naive = row_times.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
    at = np.repeat(naive, updates) + pd.to_timedelta(offsets.ravel(), unit="D").to_numpy()
    after = offsets.ravel() > 0
    left = np.repeat(churned, updates) & after
    growth = 1.0 + 0.004 * (offsets.ravel() + before_days)
    value = np.repeat(base * np.array([_SEGMENT_VALUE[s] for s in segment]), updates) * growth
    value = np.where(left, value * rng.uniform(0.05, 0.25, value.size), value)
    upgraded = rng.random(value.size) < 0.08
    segments = np.repeat(segment, updates)
    segments = np.where(upgraded & (segments == "consumer"), "smb", segments)
    frame = pd.DataFrame(
        {
            "customer_id": ids,
            "updated_at": pd.DatetimeIndex(at).tz_localize("UTC").as_unit("ns"),
            "lifetime_value": value.round(2),
            "segment": pd.Series(segments, dtype="str"),
        },
        columns=list(COLUMNS),
    )
    return frame.sort_values(["updated_at", "customer_id"], kind="stable").reset_index(drop=True)


def current_profiles(
    customers: pd.DataFrame,
    at: str | datetime,
    seed: int,
    *,
    id_column: str = "customer_id",
    target: str = "churned",
) -> pd.DataFrame:
    """One update per customer at ``at`` (UTC), drawn like :func:`profile_updates`'s before the row's time:
    what the online store holds for customers asked about at ``at``."""
    rng = np.random.default_rng(seed)
    churned = (customers[target].astype(str) == "true").to_numpy()
    segment = _segments(churned, rng)
    base = rng.lognormal(7.0, 0.5, len(customers)) * np.where(churned, 0.8, 1.0)
    value = base * np.array([_SEGMENT_VALUE[s] for s in segment])
    stamp = pd.Timestamp(at)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return pd.DataFrame(
        {
            "customer_id": customers[id_column].astype(str).to_numpy(),
            "updated_at": pd.Series([stamp] * len(customers), dtype="datetime64[ns, UTC]"),
            "lifetime_value": value.round(2),
            "segment": pd.Series(segment, dtype="str"),
        },
        columns=list(COLUMNS),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.profiles", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5000, help="customers, as examples.churn --rows")
    parser.add_argument("--seed", type=int, default=1, help="as examples.churn --seed")
    parser.add_argument("--out", type=Path, required=True, help="a .csv or .parquet file to write")
    parser.add_argument("--start", default="2026-01-01", help="the churn data's first day (ISO-8601, UTC)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--updates", type=int, default=3, help="updates per customer")
    args = parser.parse_args(argv)
    try:
        customers = generate(rows=args.rows, seed=args.seed, start=args.start, days=args.days)
        frame = profile_updates(customers, args.seed, updates=args.updates)
    except ValueError as exc:
        parser.error(str(exc))
    write(frame, args.out)
    print(f"wrote {len(frame)} profile updates of {len(customers)} customers to {args.out}")


if __name__ == "__main__":
    main()
