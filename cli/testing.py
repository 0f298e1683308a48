"""What Flywheel gives a model project's own tests: pytest fixtures for the three kinds of test.

A project's ``tests/conftest.py`` imports them (``from cli.testing import *``), which works the same under
``flywheel test MODEL`` and under plain ``pytest models/MODEL/tests``:

- ``flywheel_project`` (unit tests): the project under test — its contract, its code as Flywheel packs it
  (digest and all), its sample, and its modules imported exactly as Train imports them (from the code's own
  digest-named package, so relative imports behave as they will in Lambda).
- ``flywheel_component`` (component test): the pipeline's own steps — Validate, Train, Evaluate, Register —
  run on in-memory services over the project's sample, so every artifact the registry needs is really made
  and stored: the model and its code (loaded back through the sha256 checks), the holdout, the ONNX
  conversion with its parity on the holdout (or the reason it is served by scikit-learn), the signature and
  the reference profile.
- ``flywheel_loop`` (integration test): Flywheel's real stack on the local cloud (moto, in this process, the
  dev stack's settings), the project's contract put and its sample pushed under ``incoming/<model>/``, the
  run waited for — validate → train → evaluate → register → verify → promote → post-deploy check — and the
  HTTP API started, to ask the production version for predictions.

The project is found from the test file's path: the nearest folder above it with a ``contract.yaml``. The
component and the loop are made once per session and project, whichever test asks first.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from shared.data.contract import DataContract, parse_contract
from shared.data.streaming import validate_file
from shared.ml.projects import DEFAULT_PIPELINE, ModelCode, build_estimator, import_code, read_project

__all__ = [
    "SAMPLE_FILE",
    "Component",
    "Loop",
    "Project",
    "find_project",
    "flywheel_code_cache",
    "flywheel_component",
    "flywheel_loop",
    "flywheel_made",
    "flywheel_project",
    "memory_services",
    "memory_settings",
]

CONTRACT_FILE = "contract.yaml"
SAMPLE_FILE = "sample.csv"


def find_project(start: Path) -> Path:
    """The project folder holding ``start``: the nearest folder at or above it with a contract.yaml."""
    for folder in [start, *start.parents] if start.is_dir() else start.parents:
        if (folder / CONTRACT_FILE).is_file():
            return folder
    raise pytest.UsageError(f"{start} is in no model project (no {CONTRACT_FILE} above it)")


@dataclass
class Project:
    """A model project as Flywheel reads it."""

    root: Path

    @cached_property
    def contract(self) -> DataContract:
        return parse_contract((self.root / CONTRACT_FILE).read_text())

    @property
    def model(self) -> str:
        return self.contract.model

    @cached_property
    def code(self) -> ModelCode:
        """The code as Train packs it (its digest is what a version records)."""
        return read_project(self.root, self.model)

    def module(self, name: str = "pipeline") -> ModuleType:
        """The project's module ``name``, imported as Train and predict import it."""
        return import_code(self.code, name)

    def build(self, params: dict[str, Any] | None = None) -> Any:
        """What ``training.pipeline`` builds, with the contract's params or ``params``."""
        reference = self.contract.training.pipeline or DEFAULT_PIPELINE
        chosen = self.contract.training.params if params is None else params
        return build_estimator(self.code, reference, self.contract, chosen)

    @property
    def sample_path(self) -> Path:
        return self.root / SAMPLE_FILE

    def sample_bytes(self) -> bytes:
        if not self.sample_path.is_file():
            raise pytest.UsageError(
                f"{self.root} has no {SAMPLE_FILE}: the component and integration tests train on it "
                "(flywheel init --from-csv writes one)"
            )
        return self.sample_path.read_bytes()

    def sample(self) -> pd.DataFrame:
        """The sample after Validate: typed as the contract says (a bad sample fails here, with why)."""
        return validate_file(self.sample_bytes(), SAMPLE_FILE, self.contract).frame

    def request_rows(self, count: int) -> list[dict[str, Any]]:
        """``count`` rows of the sample as a client sends them in JSON: the features only, typed as the
        contract says (numbers, true/false, text), missing values left out."""
        from shared.data.contract import FeatureType

        rows: list[dict[str, Any]] = []
        for record in self.sample().head(count).to_dict(orient="records"):
            row: dict[str, Any] = {}
            for name, feature in self.contract.features.items():
                value = record.get(name)
                if value is None or pd.isna(value):
                    continue
                if feature.type is FeatureType.BOOLEAN:
                    row[name] = bool(value)
                elif feature.type is FeatureType.NUMERIC:
                    row[name] = float(value)
                else:
                    row[name] = str(value)
            rows.append(row)
        return rows


def memory_settings(models_dir: Path | str = "models", code_version: str = "project-test") -> Any:
    """Settings for Flywheel's services on in-memory stores (names only: nothing is reached)."""
    from shared.settings import Settings

    return Settings(
        environment="test",
        region="us-east-1",
        data_bucket="flywheel-test-data",
        artifacts_bucket="flywheel-test-artifacts",
        registry_table="flywheel-test-registry",
        metadata_table="flywheel-test-metadata",
        idempotency_table="flywheel-test-idempotency",
        capture_stream="flywheel-test-captures",
        state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:flywheel-test-pipeline",
        trigger_function="flywheel-test-trigger",
        code_version=code_version,
        models_dir=str(models_dir),
    )


def memory_services(settings: Any) -> Any:
    """Flywheel's services on empty in-memory buckets, registry, metadata store and workflow, which keep the
    adapters' semantics (versioned buckets, conditional writes, duplicate execution names), and
    experiments."""
    from shared.experiments import InMemoryExperimentStore
    from shared.metadata import InMemoryMetadataStore
    from shared.registry import InMemoryRegistryStore, ModelRegistry
    from shared.services import Services
    from shared.storage import InMemoryObjectStore
    from shared.workflow import InMemoryWorkflow

    return Services(
        settings=settings,
        objects=InMemoryObjectStore(),
        registry=ModelRegistry(InMemoryRegistryStore()),
        metadata=InMemoryMetadataStore(),
        workflow=InMemoryWorkflow(),
        experiments=InMemoryExperimentStore(),
    )


@dataclass
class Component:
    """The project's sample through Validate, Train, Evaluate and Register, on in-memory services."""

    project: Project
    svc: Any  # shared.services.Services
    state: Any  # shared.pipeline.state.RunState after Register
    version: Any = field(init=False)  # shared.registry.ModelVersion

    def __post_init__(self) -> None:
        self.version = self.svc.registry.get_model_version(self.project.model, self.state.require("version"))

    def stored(self, uri: str) -> bytes:
        from shared.storage import ObjectRef

        body: bytes = self.svc.objects.get(ObjectRef.parse(uri)).body
        return body

    def model(self) -> Any:
        """The registered model, loaded back with its own code (both checked against their sha256)."""
        from shared.pipeline.steps import load_model

        return load_model(
            self.svc, self.version.artifact, self.version.code_artifact, model=self.project.model
        )

    def holdout(self) -> pd.DataFrame:
        from shared.data.datasets import read_parquet

        candidate = self.state.require("candidate")
        return read_parquet(self.svc.objects, candidate.holdout_uri, candidate.holdout_sha256)

    def profile(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.stored(self.version.reference_profile_uri))
        return loaded

    def served(self) -> Any:
        """The version as ``predict`` serves it (its flavour, the sha256 checks, the signature)."""
        from shared.serving.runtime import load_served_model

        return load_served_model(self.version, self.svc.objects)

    @property
    def evaluation(self) -> Any:
        return self.state.require("evaluation")


def _component(project: Project) -> Component:
    from shared.featurestore.contracts import put_contract
    from shared.hashing import sha256_hex
    from shared.pipeline.intake import validate_step
    from shared.pipeline.state import RunState
    from shared.pipeline.steps import evaluate_step, register_step, train_step
    from shared.pipeline.trigger import on_new_object
    from shared.storage import ObjectRef

    svc = memory_services(memory_settings(project.root.parent))
    put_contract(svc.objects, svc.settings, (project.root / CONTRACT_FILE).read_text())
    body = project.sample_bytes()
    ref = svc.objects.put(
        ObjectRef(svc.settings.data_bucket, f"incoming/{project.model}/{SAMPLE_FILE}"), body, "text/csv"
    )
    outcome = on_new_object(svc, ref.bucket, ref.key, ref.version_id, sha256_hex(body)[:32])
    state = RunState.model_validate(svc.workflow.started[outcome.run_id])  # type: ignore[attr-defined]
    for step in (validate_step, train_step, evaluate_step, register_step):
        # Through JSON, as Step Functions hands each step the last one's output.
        state = RunState.model_validate(json.loads(json.dumps(step(state, svc).dump())))
    return Component(project, svc, state)


@dataclass
class Loop:
    """The project's sample through Flywheel's whole loop on the local cloud, and its HTTP API."""

    project: Project
    cloud: Any  # infra.local.LocalCloud
    svc: Any
    run: Any  # shared.metadata.Run, after its execution ended
    status: str  # the execution's
    url: str

    def production(self) -> Any:
        return self.svc.registry.get_model_version_by_alias(self.project.model, "production")

    def predict(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """POST /models/<model>/predict with ``rows``, as a client would; the parsed answer."""
        request = urllib.request.Request(  # noqa: S310 (the local gateway's http URL)
            f"{self.url}/models/{self.project.model}/predict",
            data=json.dumps({"instances": rows}).encode(),
            method="POST",
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
        return answer


def _loop(project: Project, cache: Path) -> Iterator[Loop]:
    from infra.config import StackConfig
    from infra.flywheel import flywheel_stack
    from infra.local import LocalCloud
    from shared.env_names import EnvVar
    from shared.featurestore.contracts import put_contract
    from shared.services import services

    config = StackConfig.from_stack_file("dev")
    cloud = LocalCloud(flywheel_stack(config), config)
    cloud.environment.update(
        {
            EnvVar.MODELS_DIR.value: str(project.root.parent),
            EnvVar.ALIAS_REFRESH_SECONDS.value: "0.5",
            "FLYWHEEL_CODE_CACHE": str(cache),
        }
    )
    with cloud.in_process():
        svc = services()
        put_contract(svc.objects, svc.settings, (project.root / CONTRACT_FILE).read_text())
        written = cloud.client("s3").put_object(
            Bucket=svc.settings.data_bucket,
            Key=f"incoming/{project.model}/{SAMPLE_FILE}",
            Body=project.sample_bytes(),
        )
        (run,) = [
            r
            for r in svc.metadata.list_runs(project.model, limit=50)
            if r.input.get("source", {}).get("version_id") == written["VersionId"]
        ]
        described = cloud.wait_for_execution(run.execution_arn, timeout_s=600)
        yield Loop(
            project=project,
            cloud=cloud,
            svc=svc,
            run=svc.metadata.get_run(run.run_id),
            status=str(described["status"]),
            url=cloud.start_gateway(),
        )


# --- the fixtures -------------------------------------------------------------------------------------------


class _Made:
    """What this session has built, per project root: made once, shared by every test that asks."""

    def __init__(self) -> None:
        self.stack = ExitStack()
        self.projects: dict[Path, Project] = {}
        self.components: dict[Path, Component] = {}
        self.loops: dict[Path, Loop] = {}


@pytest.fixture(scope="session")
def flywheel_code_cache() -> Iterator[Path]:
    """Where the project's code is unpacked for these tests (not the machine's shared cache)."""
    with tempfile.TemporaryDirectory(prefix="flywheel-code-") as folder:
        before = os.environ.get("FLYWHEEL_CODE_CACHE")
        os.environ["FLYWHEEL_CODE_CACHE"] = folder
        yield Path(folder)
        if before is None:
            os.environ.pop("FLYWHEEL_CODE_CACHE", None)
        else:
            os.environ["FLYWHEEL_CODE_CACHE"] = before


@pytest.fixture(scope="session")
def flywheel_made(flywheel_code_cache: Path) -> Iterator[_Made]:
    made = _Made()
    with made.stack:
        yield made


@pytest.fixture
def flywheel_project(request: pytest.FixtureRequest, flywheel_made: _Made) -> Project:
    """The model project the asking test belongs to."""
    root = find_project(Path(request.node.path))
    return flywheel_made.projects.setdefault(root, Project(root))


@pytest.fixture
def flywheel_component(flywheel_project: Project, flywheel_made: _Made) -> Component:
    """The project's sample through Validate, Train, Evaluate and Register, on in-memory services."""
    root = flywheel_project.root
    if root not in flywheel_made.components:
        flywheel_made.components[root] = _component(flywheel_project)
    return flywheel_made.components[root]


@pytest.fixture
def flywheel_loop(flywheel_project: Project, flywheel_made: _Made, flywheel_code_cache: Path) -> Loop:
    """The project's sample through the whole loop on the local cloud, with its HTTP API up."""
    root = flywheel_project.root
    if root not in flywheel_made.loops:
        flywheel_made.loops[root] = flywheel_made.stack.enter_context(
            contextmanager(_loop)(flywheel_project, flywheel_code_cache)
        )
    return flywheel_made.loops[root]
