"""Feast's point-in-time join, run in the peers' environment (``.venv-anchors-peers``: Feast needs pandas 2,
Flywheel pins pandas 3, so the two cannot share one interpreter).

``bench/anchors/run.py`` writes the label rows and the feature history as Parquet, then runs this script,
which declares the history as one ``FileSource`` feature view (the TTL and the timestamp field the
Flywheel side uses), applies it to a throwaway local repository (registry file, the default Dask offline
store, no online store needed) and times ``FeatureStore.get_historical_features(...).to_df()`` —
Feast's offline join for training sets. The joined rows go to ``--out``; the seconds (the fastest of
``--repeat``, each repeat's too) to stdout as JSON, so that the parent compares rows and time.

    python bench/anchors/feast_join.py --labels L.parquet --features F.parquet --out O.parquet --ttl-days 30
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path

# Feast reports usage over the network by default; a bench machine may have none, and must not wait for it.
os.environ.setdefault("FEAST_USAGE", "False")

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.repo_config import RegistryConfig, RepoConfig
from feast.types import Float64, String

warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ttl-days", type=float, required=True)
    parser.add_argument("--entity", default="customer_id")
    parser.add_argument("--label-time", default="ts")
    parser.add_argument("--event-time", default="updated_at")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    history = pd.read_parquet(args.features)
    features = [c for c in history.columns if c not in {args.entity, args.event_time}]
    labels = pd.read_parquet(args.labels).rename(columns={args.label_time: "event_timestamp"})
    with tempfile.TemporaryDirectory(prefix="feast-anchor-") as folder:
        config = RepoConfig(
            project="anchor",
            provider="local",
            registry=RegistryConfig(path=str(Path(folder) / "registry.db")),
            offline_store={"type": "dask"},
            online_store={"type": "sqlite", "path": str(Path(folder) / "online.db")},
            entity_key_serialization_version=3,
        )
        store = FeatureStore(config=config)
        entity = Entity(name=args.entity, join_keys=[args.entity], value_type=ValueType.STRING)
        view = FeatureView(
            name="profile",
            entities=[entity],
            ttl=timedelta(days=args.ttl_days),
            schema=[
                Field(name=name, dtype=String if history[name].dtype == object else Float64)
                for name in features
            ],
            source=FileSource(path=str(args.features.resolve()), timestamp_field=args.event_time),
        )
        store.apply([entity, view])
        refs = [f"profile:{name}" for name in features]
        seconds: list[float] = []
        joined = pd.DataFrame()
        for _ in range(args.repeat):
            started = time.perf_counter()
            joined = store.get_historical_features(entity_df=labels, features=refs).to_df()
            seconds.append(time.perf_counter() - started)
    joined.rename(columns={"event_timestamp": args.label_time}).to_parquet(args.out, index=False)
    print(json.dumps({"seconds": seconds, "rows": len(joined)}))


if __name__ == "__main__":
    main()
