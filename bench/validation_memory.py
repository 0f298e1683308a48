"""How Validate's peak memory grows with the file: batched validation against the whole-frame path.

For each size, one churn CSV is generated (``examples.churn.generate`` and ``write``, into a temporary
folder; not timed), then validated in a fresh Python process per file and per side, so each peak belongs to
one file alone:

- **batched** (what Validate runs): ``shared.data.streaming.validate_path`` on the file on disk, reading
  it in blocks of ``CSV_BLOCK_BYTES`` of text and writing the canonical dataset a row group per batch;
- **whole frame** (what Validate ran before): the file's bytes read at once, ``read_table`` and
  ``validate_frame`` on the whole frame, and the frame written as Parquet (``frame_to_parquet``).

The peak is the child's peak resident memory (Linux's ``VmHWM``, else ``ru_maxrss``), read once
validation is done; the table shows it with what the imports alone took (pandas, Arrow, Flywheel) and the
time. The contract is the demo's, its size cap raised so the largest file is accepted.

    python bench/validation_memory.py                  # 1,000,000 and 4,000,000 rows
    python bench/validation_memory.py --quick          # 100,000 and 400,000 rows, a smoke run
    python bench/validation_memory.py --no-whole       # the batched side only

Goal: validation's peak memory at 4,000,000 rows at most 1.3x that at 1,000,000.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONTRACT = ROOT / "examples" / "churn.yaml"
DEFAULT_ROWS = (1_000_000, 4_000_000)
QUICK_ROWS = (100_000, 400_000)
GOAL_RATIO = 1.3
SIDES = {"batched": "batched (validate_path)", "whole": "whole frame (read_table + validate_frame)"}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def peak_mib() -> float:
    """The process's peak resident memory. Linux's ``VmHWM`` first: ``ru_maxrss`` carries over the
    parent's peak through fork and exec, so a child started by a parent that held a generated frame would
    report that frame too."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the child: one file, one side ------------------------------------------------------------------------


def child(side: str, csv: Path) -> dict[str, Any]:
    from shared.data.contract import parse_contract  # imported here: the imports are measured apart
    from shared.data.datasets import frame_to_parquet
    from shared.data.streaming import validate_path
    from shared.data.validation import read_table, source_id_of, validate_frame

    contract = parse_contract(CONTRACT.read_text())
    contract = contract.model_copy(update={"max_file_mb": 1024.0 * 16})
    imports = peak_mib()
    started = time.perf_counter()
    if side == "batched":
        with tempfile.TemporaryDirectory() as scratch:
            rows = validate_path(csv, csv.name, contract, Path(scratch) / "dataset.parquet").rows
    else:
        body = csv.read_bytes()
        data, problems = validate_frame(
            read_table(body, csv.name, contract), contract, source_id=source_id_of(body)
        )
        assert data is not None and not problems, problems
        rows = data.rows
        frame_to_parquet(data.frame)
    return {
        "rows": rows,
        "seconds": time.perf_counter() - started,
        "imports_mib": imports,
        "peak_mib": peak_mib(),
    }


def measure(side: str, csv: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, __file__, "--child", side, str(csv)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the {side} child failed on {csv.name}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the parent -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", help="sizes to validate (default 1M and 4M)")
    parser.add_argument("--quick", action="store_true", help="100,000 and 400,000 rows, a smoke run")
    parser.add_argument("--no-whole", action="store_true", help="measure the batched side only")
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "CSV"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return 0

    from examples.churn import generate, write

    sizes = tuple(args.rows or (QUICK_ROWS if args.quick else DEFAULT_ROWS))
    sides = ["batched"] if args.no_whole else ["batched", "whole"]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for rows in sizes:
            csv = Path(folder) / f"churn-{rows}.csv"
            say(f"generating {rows:,} churn rows")
            write(generate(rows, seed=1), csv)
            say(f"wrote {csv.name}: {csv.stat().st_size / 2**20:,.0f} MiB")
            for side in sides:
                say(f"validating {rows:,} rows, {side}, in a fresh process")
                results[(side, rows)] = found = measure(side, csv)
                say(f"  peak {found['peak_mib']:,.0f} MiB in {found['seconds']:.1f} s")
            csv.unlink()

    print()
    print(
        f"{'side':<44} {'rows':>10} {'peak MiB':>9} {'imports MiB':>12} {'above imports':>14} {'seconds':>8}"
    )
    for side in sides:
        for rows in sizes:
            r = results[(side, rows)]
            above = r["peak_mib"] - r["imports_mib"]
            print(
                f"{SIDES[side]:<44} {rows:>10,} {r['peak_mib']:>9,.0f} {r['imports_mib']:>12,.0f} "
                f"{above:>14,.0f} {r['seconds']:>8.1f}"
            )
    print()
    small, large = sizes[0], sizes[-1]
    for side in sides:
        ratio = results[(side, large)]["peak_mib"] / results[(side, small)]["peak_mib"]
        print(f"ratio {SIDES[side]}: peak at {large:,} rows is {ratio:.2f}x that at {small:,}")
    if "whole" in sides:
        saved = results[("whole", large)]["peak_mib"] / results[("batched", large)]["peak_mib"]
        print(f"ratio at {large:,} rows: whole frame peaks at {saved:.1f}x the batched peak")
    ratio = results[("batched", large)]["peak_mib"] / results[("batched", small)]["peak_mib"]
    met = "met" if ratio <= GOAL_RATIO else "NOT met"
    print(
        f"goal: validation peak memory at {large:,} rows at most {GOAL_RATIO}x that at {small:,}: "
        f"{met} ({ratio:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
