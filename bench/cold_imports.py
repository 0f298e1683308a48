"""Cold import of every function's handler, against importing boto3 and pydantic, in the same run.

A Lambda instance's cold start begins by importing its handler module. Each handler is imported here in a
fresh interpreter (``--runs`` times; the median is kept), timing only the import itself, and so is the
baseline: ``import boto3, pydantic`` — what any Python function on this stack's libraries pays before it
does anything. Printed per function: the median time, its ratio to the baseline, how many modules the
import loaded, and which of the heavy libraries (pandas, NumPy, scikit-learn, SciPy, Arrow, skl2onnx,
onnxruntime) were among them.

Flywheel's adapters import boto3 when they make their first client (at the first invocation, after any
mock is active), so a handler's import may not include it while the baseline does. The column
``+boto3`` is the same import followed by ``import boto3`` in the same interpreter: what the cold start
pays once the first client is made.

Tracing is off here, as it is in the local cloud and the tests (Powertools disables it outside Lambda); in
Lambda with active tracing, each handler also imports the X-Ray SDK, measured on its own as the last line.

    python bench/cold_imports.py            # every function, 7 runs each
    python bench/cold_imports.py --runs 15

Goal: trigger, approval, finish, record-failure and promote within 1.5x the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "numpy", "sklearn", "scipy", "pyarrow", "skl2onnx", "onnxruntime")
LIGHT = ("trigger", "approval", "finish", "record_failure", "promote")
GOAL = 1.5
BASELINE = "boto3, pydantic"
XRAY = "aws_xray_sdk.core"

PROBE = """
import json, sys, time
started = time.perf_counter()
import {module}
took = time.perf_counter() - started
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps({{"seconds": took, "modules": len(sys.modules), "heavy": heavy}}))
"""


def functions() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "functions").glob("*/handler.py"))


def cold_import(module: str, runs: int) -> dict[str, object]:
    """The median import time of ``module`` over ``runs`` fresh interpreters, and what it loaded."""
    env = {**os.environ, "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR"}
    env.pop("AWS_LAMBDA_FUNCTION_NAME", None)
    env.pop("LAMBDA_TASK_ROOT", None)
    samples, last = [], {}
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", PROBE.format(module=module, heavy=HEAVY)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        last = json.loads(done.stdout.strip().splitlines()[-1])
        samples.append(float(last["seconds"]))
    return {**last, "seconds": statistics.median(samples)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per import (median kept)")
    args = parser.parse_args(argv)

    # The baseline is measured first and again last and the faster of the two is used, so a machine that
    # gets busier or warms up during the run does not flatter the functions.
    first = cold_import(BASELINE, args.runs)
    rows = {name: cold_import(f"functions.{name}.handler", args.runs) for name in functions()}
    with_sdk = {name: cold_import(f"functions.{name}.handler, boto3", args.runs) for name in LIGHT}
    again = cold_import(BASELINE, args.runs)
    baseline = min(float(first["seconds"]), float(again["seconds"]))
    xray = cold_import(XRAY, args.runs)

    print(f"baseline: python -c 'import {BASELINE}'  {baseline * 1000:.0f} ms, {first['modules']} modules")
    header = ("function", "import", "ratio", "+boto3", "ratio", "modules")
    print("{:<18} {:>9} {:>7} {:>9} {:>7} {:>8}  heavy libraries".format(*header))
    for name, row in rows.items():
        seconds = float(row["seconds"])
        heavy = ", ".join(row["heavy"]) or "-"  # type: ignore[arg-type]
        sdk = float(with_sdk[name]["seconds"]) if name in with_sdk else None
        plus = f"{sdk * 1000:>6.0f} ms {sdk / baseline:>6.2f}x" if sdk is not None else f"{'':>9} {'':>7}"
        alone = f"{seconds * 1000:>6.0f} ms {seconds / baseline:>6.2f}x"
        print(f"{name:<18} {alone} {plus} {row['modules']:>8}  {heavy}")
    for name in LIGHT:
        ratio = float(rows[name]["seconds"]) / baseline
        met = ratio <= GOAL
        print(f"goal {name}: {ratio:.2f}x the baseline (<= {GOAL}x): {'met' if met else 'NOT met'}")
    print(
        f"with active tracing (in Lambda) each handler also imports the X-Ray SDK: "
        f"{float(xray['seconds']) * 1000:.0f} ms on its own"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
