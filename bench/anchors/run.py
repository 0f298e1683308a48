"""Flywheel measured side by side with the tools its users would pick instead, in one run, on the same data.

``make bench-anchors`` creates the environments (``.venv-anchors``: Flywheel's pins plus MLflow, from
``requirements-anchors.txt`` and ``constraints-anchors.txt``; ``.venv-anchors-peers``: Evidently and Feast,
which need pandas 2 where Flywheel pins pandas 3, from ``requirements-anchors-peers.txt`` and
``constraints-anchors-peers.txt``) and runs this script. Three
comparisons, each repeated (``--repeat``, 2 by default) with the spread printed, and the peers' versions:

- **drift** (:mod:`bench.anchors.drift`): 1,000,000 rows x 20 features, Flywheel's ``compute_drift``
  against Evidently's ``DataDriftPreset`` with PSI and with KS, values compared;
- **point-in-time join** (:mod:`bench.anchors.join`): 1,000,000 label rows x 100,000 entities, Flywheel's
  ``point_in_time_join`` against Feast's ``get_historical_features`` on a ``FileSource``, rows compared;
- **serving** (:mod:`bench.anchors.serving`): one model behind ``mlflow models serve`` and behind
  Flywheel's predict handler (the local gateway, and in process), p50, p99 and throughput at 1 and 8
  concurrent clients, and in-process scoring against MLflow's pyfunc.

    .venv-anchors/bin/python bench/anchors/run.py --peers-python .venv-anchors-peers/bin/python
    .venv-anchors/bin/python bench/anchors/run.py --quick --only join
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

from bench.anchors import common  # noqa: E402

PARTS = ("drift", "join", "serving")


def installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions(peers_python: str | None) -> str:
    found = [f"{name} {installed(name)}" for name in ("mlflow", "pandas", "scikit-learn", "onnxruntime")]
    if peers_python:
        peers = [
            f"{name} {common.version_in(peers_python, name)}" for name in ("evidently", "feast", "pandas")
        ]
        found.append(f"beside them {', '.join(peers)}")
    return ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers-python", help="the interpreter of the peers' environment (Evidently, Feast)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each side (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a tenth of each size, a smoke run")
    parser.add_argument("--only", choices=PARTS, action="append", help="run only this part (repeatable)")
    args = parser.parse_args(argv)
    parts = args.only or list(PARTS)
    common.say(f"peers measured: {versions(args.peers_python)}; {os.cpu_count()} CPUs")
    lines: list[str] = []
    if "drift" in parts:
        from bench.anchors import drift

        lines += drift.compare(
            rows=100_000 if args.quick else 1_000_000, peers_python=args.peers_python, repeat=args.repeat
        )
    if {"drift", "join"} & set(parts) and not args.peers_python:
        parser.error("drift and the join compare with Evidently and Feast: give --peers-python")
    if "join" in parts:
        from bench.anchors import join

        scale = 10 if args.quick else 1
        lines += join.compare(
            rows=1_000_000 // scale,
            entities=100_000 // scale,
            peers_python=args.peers_python,
            repeat=args.repeat,
        )
    if "serving" in parts:
        from bench.anchors import serving

        lines += serving.compare(requests=200 if args.quick else 2000, repeat=args.repeat)
    print()
    print(f"Flywheel against its peers ({versions(args.peers_python)}; {os.cpu_count()} CPUs)")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
