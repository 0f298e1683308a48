"""What the feature store's two hot paths cost: the point-in-time join that builds a training set, and the
online lookup the prediction function makes.

**Join.** 1,000,000 label rows against 100,000 entities x 20 feature updates each (2,000,000 feature rows,
four features, event times on whole hours over a year, so about 2% of entities have two updates at one
instant, which the delivery sequence settles; TTL 30 days; 1% of label rows name an unknown entity and some
come before any history or after it has expired). Generated with a fixed seed (not timed).

- **Flywheel**: :func:`shared.featurestore.offline.point_in_time_join` (one ``merge_asof`` by entity,
  backward, tolerance = TTL) on all rows;
- **baseline**: the straightforward reference the tests check Flywheel against
  (``tests/fixtures/feature_store.py``): index every entity's history in a dict of sorted lists, then for
  each row bisect its entity's history and check the TTL. Its per-row loop is run on a random sample of the
  rows (``--sample``, 20,000 by default), against all the feature rows, and extrapolated to all rows: indexing
  (once, best of 2) plus the measured time per row. Flywheel also runs on the same sample, so the two are
  compared on identical work too. The results are compared row by row on the sample (Flywheel's rows from
  the full run).

**Online lookup.** :class:`~shared.featurestore.online.DynamoOnlineStore` on moto (the stack spec does not
declare the table yet, so the table is created from ``ONLINE_TABLE_KEYS``), in process and through moto's
threaded HTTP server as the local cloud's server mode runs it: the latest rows of ``--online-entities``
entities are materialised, then ``get_many`` for 1 and for 100 random entities, ``--lookups`` times each,
median and p95. Baseline: the same entities read one ``GetItem`` at a time (the first 50 lookups).

    python bench/features.py                   # the sizes above
    python bench/features.py --quick           # 100,000 rows x 10,000 entities, a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    os.environ.setdefault(_name, "bench")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from shared.featurestore.offline import point_in_time_join, sequence_of  # noqa: E402
from shared.featurestore.online import DynamoOnlineStore, online_table_definition  # noqa: E402
from shared.featurestore.view import SEQUENCE_COLUMN, parse_feature_view  # noqa: E402
from tests.fixtures.feature_store import FeatureHistory  # noqa: E402

SEED = 11
START = pd.Timestamp("2024-01-01T00:00:00Z")
YEAR_HOURS = 365 * 24
VIEW = parse_feature_view(
    """
view: customer_profile
entity: customer_id
event_time: updated_at
ttl_days: 30
features:
  tenure_months: {type: numeric, min: 0}
  monthly_charges: {type: numeric, nullable: true}
  plan: {type: categorical, allowed: [basic, plus, pro], nullable: true}
  autopay: {type: boolean}
"""
)
TABLE = "bench-features"
BASELINE_LOOKUPS = 50  # the one-GetItem-at-a-time baseline is slow; its median over 50 is steady enough


def say(message: str) -> None:
    print(message, flush=True)


def timed[T](work: Callable[[], T], repeat: int = 1) -> tuple[T, float]:
    """The result of ``work`` and the fastest of ``repeat`` runs, in seconds."""
    best, result = float("inf"), None
    for _ in range(repeat):
        began = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - began)
    return result, best  # type: ignore[return-value]


# --- data -------------------------------------------------------------------------------------------------


def feature_history(entities: int, updates: int, rng: np.random.Generator) -> pd.DataFrame:
    ids = np.array([f"c{i:07d}" for i in range(entities)], dtype=object)
    n = entities * updates
    hours = rng.integers(0, YEAR_HOURS, size=n)
    files = [
        sequence_of((START + pd.Timedelta(days=400 + k)).to_pydatetime(), f"{k:016x}") for k in range(50)
    ]
    plans = np.array(["basic", "plus", "pro"], dtype=object)[rng.integers(0, 3, size=n)]
    plans[rng.random(n) < 0.02] = None
    charges = np.round(rng.uniform(10, 150, size=n), 2)
    charges[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "customer_id": pd.Series(ids[np.repeat(np.arange(entities), updates)], dtype="str"),
            "updated_at": (START + pd.to_timedelta(hours, unit="h")).as_unit("ns"),
            "tenure_months": rng.integers(0, 121, size=n).astype("float64"),
            "monthly_charges": charges,
            "plan": pd.Series(plans, dtype="str"),
            "autopay": (rng.random(n) < 0.6).astype("float64"),
            SEQUENCE_COLUMN: pd.Series(
                np.array(files, dtype=object)[rng.integers(0, 50, size=n)], dtype="str"
            ),
        }
    )


def label_rows(rows: int, entities: int, rng: np.random.Generator) -> pd.DataFrame:
    ids = np.array([f"c{i:07d}" for i in range(entities)] + ["unknown"], dtype=object)
    picks = rng.integers(0, entities, size=rows)
    picks[rng.random(rows) < 0.01] = entities
    seconds = rng.integers(-10 * 86400, 375 * 86400, size=rows)
    return pd.DataFrame(
        {
            "customer_id": pd.Series(ids[picks], dtype="str"),
            "ts": (START + pd.to_timedelta(seconds, unit="s")).as_unit("ns"),
            "churned": rng.random(rows) < 0.3,
        }
    )


# --- the join ---------------------------------------------------------------------------------------------


def join_with(implementation: Callable[..., pd.DataFrame], rows: pd.DataFrame, features: pd.DataFrame) -> Any:
    return implementation(
        rows, "customer_id", "ts", features, VIEW.ttl, VIEW.feature_names, event_time="updated_at"
    )


def bench_join(rows: int, entities: int, updates: int, sample: int, repeat: int) -> None:
    rng = np.random.default_rng(SEED)
    features = feature_history(entities, updates, rng)
    labels = label_rows(rows, entities, rng)
    ties = int(features.duplicated(["customer_id", "updated_at"]).sum())
    say(
        f"Point-in-time join: {rows:,} label rows x {entities:,} entities x {updates} updates "
        f"({len(features):,} feature rows, {len(VIEW.features)} features, {ties:,} same-instant updates, "
        f"TTL {VIEW.ttl_days:g} days)"
    )
    full, flywheel_s = timed(lambda: join_with(point_in_time_join, labels, features), repeat)
    found = int(full["tenure_months"].notna().sum())
    say(
        f"  Flywheel (merge_asof), all {rows:,} rows: {flywheel_s:8.2f} s  "
        f"({rows / flywheel_s / 1e6:.2f} M rows/s; {found:,} rows got features, {rows - found:,} missing)"
    )

    picked = labels.sample(n=min(sample, rows), random_state=SEED)
    _, on_sample_s = timed(lambda: join_with(point_in_time_join, picked, features), repeat)
    history, indexing_s = timed(
        lambda: FeatureHistory(features, "customer_id", VIEW.feature_names, event_time="updated_at"), 2
    )
    reference, lookup_s = timed(lambda: history.join(picked, "customer_id", "ts", VIEW.ttl), repeat)
    reference_s = indexing_s + lookup_s
    per_row_s = lookup_s / len(picked)
    say(f"  On a random sample of {len(picked):,} rows, against all {len(features):,} feature rows:")
    say(f"    Flywheel:  {on_sample_s:8.2f} s")
    say(
        f"    reference: {reference_s:8.2f} s  (indexing the feature rows {indexing_s:.2f} s, "
        f"then {per_row_s * 1e6:.1f} us per row)"
    )
    say(f"    ratio reference / Flywheel on the sample: {reference_s / on_sample_s:.1f}x")
    extrapolated = indexing_s + per_row_s * rows
    say(
        f"  Reference extrapolated to all {rows:,} rows: {extrapolated:.1f} s "
        f"(indexing + {rows:,} x per-row) = {extrapolated / flywheel_s:.1f}x Flywheel's {flywheel_s:.2f} s"
    )
    try:
        pd.testing.assert_frame_equal(full.loc[picked.index], reference)
        verdict = "yes"
    except AssertionError as difference:
        verdict = f"NO: {str(difference).splitlines()[0]}"
    sampled_found = int(reference["tenure_months"].notna().sum())
    say(
        f"  Results equal on the sample (Flywheel's full-run rows vs the reference): {verdict} "
        f"({sampled_found:,} rows with features, {len(picked) - sampled_found:,} without)"
    )


# --- the online lookup ------------------------------------------------------------------------------------


@contextlib.contextmanager
def local_dynamodb(mode: str) -> Iterator[Any]:
    import boto3
    from moto import mock_aws
    from moto.server import ThreadedMotoServer

    if mode == "in-process":
        with mock_aws():
            client = boto3.client("dynamodb", region_name="us-east-1")
            client.create_table(**online_table_definition(TABLE))
            yield client
        return
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{port}")
        client.create_table(**online_table_definition(TABLE))
        yield client
    finally:
        server.stop()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_online(entities: int, lookups: int) -> None:
    rng = np.random.default_rng(SEED)
    history = feature_history(entities, 3, rng)
    names = sorted(set(history["customer_id"]))
    chooser = random.Random(SEED)
    say(
        f"Online lookup: DynamoOnlineStore on moto, {entities:,} entities materialised, "
        f"{lookups} lookups per size (median / p95)"
    )
    for mode in ("in-process", "server"):
        with local_dynamodb(mode) as client:
            store = DynamoOnlineStore(TABLE, client=client)
            result, load_s = timed(lambda: store.materialize(VIEW, history))  # noqa: B023 (called at once)
            again, reload_s = timed(lambda: store.materialize(VIEW, history))  # noqa: B023
            say(
                f"  [{mode}] materialise {len(history):,} rows: {result.written:,} entities written in "
                f"{load_s:.1f} s; again: {again.stale:,} kept as stale in {reload_s:.1f} s"
            )
            for size in (1, 100):
                batched: list[float] = []
                single: list[float] = []
                for i in range(lookups):
                    wanted = chooser.sample(names, size)
                    began = time.perf_counter()
                    found = store.get_many(VIEW.view, wanted)
                    batched.append(time.perf_counter() - began)
                    assert len(found) == size
                    if i >= BASELINE_LOOKUPS:
                        continue
                    began = time.perf_counter()
                    for entity in wanted:
                        client.get_item(TableName=TABLE, Key={"pk": {"S": f"{VIEW.view}#{entity}"}})
                    single.append(time.perf_counter() - began)
                median, p95 = statistics.median(batched), percentile(batched, 0.95)
                say(
                    f"  [{mode}] {size:>3} entit{'y' if size == 1 else 'ies'}: get_many (BatchGetItem) "
                    f"{median * 1e3:7.2f} ms median / {p95 * 1e3:7.2f} ms p95   "
                    f"vs {size} x GetItem {statistics.median(single) * 1e3:7.2f} ms median "
                    f"({statistics.median(single) / median:.1f}x)"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="keep the fastest of N runs of Flywheel's join")
    parser.add_argument("--online-entities", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.entities, args.sample, args.repeat = 100_000, 10_000, 5_000, 1
        args.online_entities, args.lookups = 1_000, 50
    bench_join(args.rows, args.entities, args.updates, args.sample, args.repeat)
    bench_online(args.online_entities, args.lookups)


if __name__ == "__main__":
    main()
