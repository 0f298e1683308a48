"""Light functions stay light: a handler imports only what its step uses.

Importing the scientific stack costs a cold start about two seconds and two thousand modules. The functions
that only route or record a run (trigger, approval, finish, record-failure, promote) need none of it, and
those that read files (labels, validate, features) need pandas and Arrow but nothing that trains. Each
import runs in a fresh interpreter, as a cold Lambda instance would; what is asserted is which modules it
loaded, never how long it took (``bench/cold_imports.py`` measures that).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCIENTIFIC = ("pandas", "numpy", "sklearn", "scipy", "pyarrow", "skl2onnx", "onnxruntime")


def loaded_by(module: str) -> set[str]:
    """The top-level packages of SCIENTIFIC that importing ``module`` loads, in a fresh interpreter."""
    probe = (
        f"import sys, json; import {module}; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(SCIENTIFIC)!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("function", ["trigger", "approval", "finish", "record_failure", "promote"])
def test_a_function_that_routes_or_records_a_run_loads_no_scientific_library(function: str) -> None:
    """Given the handler of a function whose step reads and writes only records, when it is imported cold,
    then none of pandas, NumPy, scikit-learn, SciPy, Arrow, skl2onnx or onnxruntime is loaded."""
    assert loaded_by(f"functions.{function}.handler") == set()


@pytest.mark.parametrize("function", ["labels", "validate", "features"])
def test_a_function_that_reads_files_loads_pandas_and_arrow_but_no_ml_library(function: str) -> None:
    """Label, data and feature files are read as tables (pandas, Arrow); nothing in checking them trains,
    tests or converts a model, so scikit-learn, SciPy, skl2onnx and onnxruntime stay out."""
    loaded = loaded_by(f"functions.{function}.handler")
    assert {"pandas", "pyarrow"} <= loaded
    assert loaded.isdisjoint({"sklearn", "scipy", "skl2onnx", "onnxruntime"})


def test_the_probe_sees_a_heavy_import() -> None:
    """The check above can fail: a handler that does need scikit-learn is seen loading it."""
    assert "sklearn" in loaded_by("functions.train.handler")


def tracer_kind(**env: str) -> str:
    """Which tracer shared.observability makes in a fresh interpreter with ``env`` added."""
    unset = {"LAMBDA_TASK_ROOT", "POWERTOOLS_TRACE_DISABLED"}
    environment = {k: v for k, v in os.environ.items() if k not in unset}
    done = subprocess.run(
        [sys.executable, "-c", "from shared.observability import tracer; print(type(tracer).__name__)"],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout.strip().splitlines()[-1]


def test_the_tracer_is_powertools_where_it_traces_and_untraced_where_powertools_would_disable_it() -> None:
    """Given Lambda's environment, the handlers are traced by Powertools' Tracer (X-Ray); outside Lambda or
    with POWERTOOLS_TRACE_DISABLED, where Powertools would disable itself, the X-Ray SDK is never loaded."""
    assert tracer_kind(LAMBDA_TASK_ROOT="/var/task") == "Tracer"
    assert tracer_kind(LAMBDA_TASK_ROOT="/var/task", POWERTOOLS_TRACE_DISABLED="true") == "Untraced"
    assert tracer_kind() == "Untraced"
