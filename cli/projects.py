"""``flywheel init | test``: start a model project, and run its three kinds of test.

Neither talks to a stack: a project is files (``<models dir>/<model>/``), and its tests bring their own local
cloud (``cli.testing``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import click

from cli.common import reported
from shared.env_names import EnvVar
from shared.errors import ContractError

KINDS = ("unit", "component", "integration")
_WHAT = {
    "unit": "the feature and model code, alone",
    "component": "the sample through Validate, Train, Evaluate and Register; every artifact checked",
    "integration": "the sample through the whole loop on the local cloud, to a prediction",
}


def _models_dir(value: Path | None) -> Path:
    return value or Path(os.environ.get(EnvVar.MODELS_DIR.value) or "models")


models_dir_option = click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Where model projects live [default: ${EnvVar.MODELS_DIR.value} or ./models].",
)


@click.command()
@click.argument("model")
@click.option(
    "--from-csv",
    "sample",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A sample of the data (CSV or Parquet): the contract is inferred from it, and tests train on it.",
)
@click.option("--target", default=None, help="The column to predict [default: the sample's last column].")
@models_dir_option
@reported
def init(model: str, sample: Path | None, target: str | None, models_dir: Path | None) -> None:
    """Start a model project: contract (inferred from a sample), pipeline.py, and tests of three kinds.

    Without --from-csv the sample is the demo's churn data (target 'churned'), to have a project that
    trains and passes its tests at once; give your own sample to start from your data.
    """
    from cli.scaffold import infer_contract, read_sample, scaffold

    if sample is None:
        from examples.churn import generate

        data, name = generate(600, seed=7).to_csv(index=False).encode(), "churn-demo.csv"
        target = target or "churned"
        click.echo("no --from-csv: starting from the demo's churn data (600 rows, target 'churned')")
    else:
        data, name = sample.read_bytes(), sample.name
    frame = read_sample(data, name)
    inferred = infer_contract(frame, model, target)
    root = _models_dir(models_dir) / model
    written = scaffold(root, inferred, frame)
    click.echo(f"model project {model!r} written to {root}/")
    for path in written:
        click.echo(f"  {path.relative_to(root)}")
    click.echo("\nInferred (check each in contract.yaml):")
    for note in inferred.notes:
        click.echo(f"  - {note}")
    click.echo("\nNext:")
    click.echo(f"  flywheel test {model}                          # unit, component, integration")
    click.echo(f"  flywheel contract put {root}/contract.yaml")
    click.echo(f"  flywheel push {root}/sample.csv --model {model} --wait")


@dataclass(frozen=True)
class KindResult:
    kind: str
    exit_code: int
    tests: int
    failed: int
    skipped: int
    seconds: float

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and self.tests > 0

    def line(self) -> str:
        if self.tests == 0:
            verdict = click.style("no tests", fg="red")
        elif self.passed:
            verdict = click.style("passed", fg="green")
        else:
            verdict = click.style("FAILED", fg="red")
        counts = f"{self.tests} test(s), {self.failed} failed, {self.skipped} skipped"
        return f"  {self.kind:<12} {verdict:<8}  {counts}, {self.seconds:.1f} s"


@click.command("test")
@click.argument("model")
@click.option(
    "--kind",
    "kinds",
    type=click.Choice(KINDS),
    multiple=True,
    help="Run only these kinds (repeatable) [default: all three].",
)
@click.option("-k", "keyword", default=None, help="Only tests matching this pytest -k expression.")
@models_dir_option
@reported
def test_project(model: str, kinds: tuple[str, ...], keyword: str | None, models_dir: Path | None) -> None:
    """Run a model project's tests: unit, then component, then integration (tests/<kind>/).

    Each kind runs in a pytest session of its own; a kind with no tests counts as a failure. Exits 1 if
    any kind failed.
    """
    root = _models_dir(models_dir) / model
    if not (root / "contract.yaml").is_file():
        raise ContractError(
            f"no model project {model!r} at {root} (no contract.yaml); `flywheel init {model}` starts one",
            problems=[str(root)],
        )
    results = []
    for kind in kinds or KINDS:
        click.echo(click.style(f"\n== {model}: {kind} tests — {_WHAT[kind]}", bold=True))
        results.append(_run_kind(root, kind, keyword))
    click.echo(click.style(f"\n{model}:", bold=True))
    for result in results:
        click.echo(result.line())
    if not all(r.passed for r in results):
        sys.exit(1)


def _run_kind(root: Path, kind: str, keyword: str | None) -> KindResult:
    folder = root / "tests" / kind
    started = time.monotonic()
    if not folder.is_dir():
        click.secho(f"{folder} is missing: every project has {kind} tests", fg="red")
        return KindResult(kind, 5, 0, 0, 0, 0.0)
    with tempfile.TemporaryDirectory(prefix="flywheel-test-") as scratch:
        report = Path(scratch) / "junit.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(folder),
            "-q",
            "-p",
            "no:cacheprovider",
            # Two projects' test_features.py must not collide: each module is imported by its path.
            "--import-mode=importlib",
            # The project's tests/conftest.py (Flywheel's fixtures) is read wherever the project lives.
            f"--confcutdir={root}",
            f"--junitxml={report}",
            *(["-k", keyword] if keyword else []),
        ]
        code = subprocess.run(command, check=False).returncode  # noqa: S603 (this interpreter's pytest)
        tests, failed, skipped = _counts(report)
    return KindResult(kind, code, tests, failed, skipped, time.monotonic() - started)


def _counts(report: Path) -> tuple[int, int, int]:
    if not report.is_file():
        return 0, 0, 0
    suite = ET.parse(report).getroot()  # noqa: S314
    suites = [suite] if suite.tag == "testsuite" else list(suite)
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return total, failed, skipped


COMMANDS = [init, test_project]
