"""A demo dataset: subscription customers, some of whom churn.

``generate`` draws a realistic, deterministic churn table that ``examples/churn.yaml`` describes. Two knobs
make the monitoring loop demonstrable:

- ``covariate_shift`` (0..1) moves who the customers are: shorter tenure, higher charges, more "basic"
  plans, fewer on autopay, more support calls. The rule linking features to churn is unchanged.
- ``concept_drift`` (0..1) changes the rule itself: the autopay effect and the tenure slope flip and price
  sensitivity fades, so a model trained before the drift ranks customers worse after it.

Run ``python -m examples.churn --rows 5000 --seed 1 --out churn.csv`` to write a file (CSV, or Parquet when
the name ends in ``.parquet``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PLANS = ("basic", "plus", "pro")
REGIONS = ("north", "south", "east", "west")
COLUMNS = (
    "customer_id",
    "event_time",
    "tenure_months",
    "monthly_charges",
    "plan",
    "region",
    "autopay",
    "support_calls",
    "churned",
)

_PLAN_SHARES = np.array([0.45, 0.35, 0.20])
_SHIFTED_PLAN_SHARES = np.array([0.75, 0.18, 0.07])
_PLAN_PRICE = {"basic": 35.0, "plus": 65.0, "pro": 99.0}
_PLAN_EFFECT = {"basic": 0.35, "plus": 0.0, "pro": -0.45}
_REGION_EFFECT = {"north": -0.1, "south": 0.15, "east": 0.0, "west": 0.05}


def _as_utc(start: str | datetime) -> datetime:
    moment = datetime.fromisoformat(start) if isinstance(start, str) else start
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _churn_logit(
    tenure: np.ndarray,
    charges: np.ndarray,
    plan: np.ndarray,
    region: np.ndarray,
    autopay: np.ndarray,
    calls: np.ndarray,
    concept_drift: float,
) -> np.ndarray:
    # Before drift: long tenure and autopay keep customers, price and support calls push them away.
    # Drift interpolates towards the opposite story for tenure and autopay, and price stops mattering.
    tenure_slope = -1.45 * (1 - 2 * concept_drift)
    autopay_effect = -1.6 * (1 - 2 * concept_drift)
    price_slope = 0.03 * (1 - concept_drift)
    plan_effect = np.array([_PLAN_EFFECT[p] for p in plan])
    region_effect = np.array([_REGION_EFFECT.get(r, 0.0) if isinstance(r, str) else 0.0 for r in region])
    # Terms are centred on a typical customer so drift reshuffles who churns more than how many do.
    logit: np.ndarray = (
        -1.5
        + tenure_slope * (np.log1p(tenure) - 3.0)
        + price_slope * (charges - 60.0)
        + plan_effect
        + region_effect
        + autopay_effect * (autopay - 0.5)
        + 0.6 * (calls - 1.5)
    )
    return logit


def generate(
    rows: int,
    seed: int,
    start: str | datetime = "2026-01-01",
    days: int = 30,
    covariate_shift: float = 0.0,
    concept_drift: float = 0.0,
    missing_rate: float = 0.05,
) -> pd.DataFrame:
    """``rows`` customers observed over ``days`` from ``start`` (UTC), sorted by ``event_time``.

    Columns as :data:`COLUMNS`: ids ``C<seed>-<n>`` (unique across seeds), ``autopay`` and ``churned`` as the
    text ``"true"``/``"false"``, ``monthly_charges`` and ``region`` missing at ``missing_rate``. The same
    arguments always give the same table.
    """
    for name, knob in (("covariate_shift", covariate_shift), ("concept_drift", concept_drift)):
        if not 0.0 <= knob <= 1.0:
            raise ValueError(f"{name} must be within 0..1, got {knob}")
    if not 0.0 <= missing_rate < 1.0:
        raise ValueError(f"missing_rate must be within [0, 1), got {missing_rate}")
    if rows < 0 or days < 1:
        raise ValueError("rows must be >= 0 and days >= 1")
    rng = np.random.default_rng(seed)
    shift = covariate_shift

    seconds = np.sort(rng.uniform(0, days * 86_400, rows))
    origin = _as_utc(start)
    event_time = pd.to_datetime([origin + timedelta(seconds=float(s)) for s in seconds], utc=True)
    event_time = event_time.as_unit("ns")

    plan_shares = (1 - shift) * _PLAN_SHARES + shift * _SHIFTED_PLAN_SHARES
    plan = rng.choice(np.array(PLANS, dtype=object), size=rows, p=plan_shares)
    tenure = np.clip(np.round(rng.gamma(1.3, 28.0 * (1 - 0.6 * shift), rows)), 0, 600)
    base_price = np.array([_PLAN_PRICE[p] for p in plan])
    charges = np.clip(
        base_price * rng.normal(1.0 + 0.35 * shift, 0.12, rows) + 10.0 * shift, 5.0, 400.0
    ).round(2)
    region = rng.choice(np.array(REGIONS, dtype=object), size=rows, p=[0.3, 0.25, 0.25, 0.2])
    autopay = (rng.random(rows) < 0.6 - 0.3 * shift).astype(float)
    calls = rng.poisson(1.2 + 1.0 * shift + 0.8 * (plan == "basic"), rows).astype(float)

    logit = _churn_logit(tenure, charges, plan, region, autopay, calls, concept_drift)
    logit = logit + rng.normal(0.0, 0.3, rows)
    churned = rng.random(rows) < 1 / (1 + np.exp(-logit))

    charges_seen = np.where(rng.random(rows) < missing_rate, np.nan, charges)
    region_seen = region.copy()
    region_seen[rng.random(rows) < missing_rate] = None
    width = max(7, len(str(max(rows - 1, 0))))
    return pd.DataFrame(
        {
            "customer_id": [f"C{seed:04d}-{i:0{width}d}" for i in range(rows)],
            "event_time": event_time,
            "tenure_months": tenure,
            "monthly_charges": charges_seen,
            "plan": pd.Series(plan, dtype="str"),
            "region": pd.Series(region_seen, dtype="str"),
            "autopay": np.where(autopay == 1.0, "true", "false"),
            "support_calls": calls,
            "churned": np.where(churned, "true", "false"),
        },
        columns=list(COLUMNS),
    )


def request_rows(frame: pd.DataFrame, *, with_id: bool = True) -> list[dict[str, Any]]:
    """``frame``'s customers as a client sends them to ``predict`` in JSON: null for a missing value,
    booleans as true/false, and the customer id (the contract's id column) unless ``with_id`` is False."""
    rows = []
    for record in frame.to_dict("records"):
        charges, region = record["monthly_charges"], record["region"]
        rows.append(
            {
                **({"customer_id": record["customer_id"]} if with_id else {}),
                "tenure_months": record["tenure_months"],
                "monthly_charges": None if isinstance(charges, float) and math.isnan(charges) else charges,
                "plan": record["plan"],
                "region": region if isinstance(region, str) and region != "nan" else None,
                "autopay": record["autopay"] == "true",
                "support_calls": record["support_calls"],
            }
        )
    return rows


def write(frame: pd.DataFrame, path: Path) -> None:
    """CSV (ISO-8601 timestamps) or Parquet, by the file's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.churn", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="a .csv or .parquet file to write")
    parser.add_argument("--start", default="2026-01-01", help="first day (ISO-8601, UTC)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--covariate-shift", type=float, default=0.0, help="0..1: who the customers are")
    parser.add_argument("--concept-drift", type=float, default=0.0, help="0..1: why they churn")
    parser.add_argument("--missing-rate", type=float, default=0.05)
    args = parser.parse_args(argv)
    try:
        frame = generate(
            rows=args.rows,
            seed=args.seed,
            start=args.start,
            days=args.days,
            covariate_shift=args.covariate_shift,
            concept_drift=args.concept_drift,
            missing_rate=args.missing_rate,
        )
    except ValueError as exc:
        parser.error(str(exc))
    write(frame, args.out)
    rate = (frame["churned"] == "true").mean() if len(frame) else 0.0
    print(f"wrote {len(frame)} rows to {args.out} (churn rate {rate:.1%})")


if __name__ == "__main__":
    main()
