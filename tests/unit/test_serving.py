"""The serving runtime: request rows are checked against the signature, models load only from bytes the
registry vouches for, both flavours answer as scikit-learn does, and the alias is followed without a
redeploy."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from shared.data.contract import DataContract, Task
from shared.errors import IntegrityError, NotFoundError, TransientError
from shared.hashing import sha256_hex
from shared.ml.training import TrainedModel, model_to_bytes, predict_frame, prepare_row, train
from shared.registry import (
    ArtifactRef,
    InMemoryRegistryStore,
    ModelRegistry,
    ModelVersion,
    NewModelVersion,
    ServingFlavor,
)
from shared.serving import runtime
from shared.serving.packaging import package_for_serving, serving_signature
from shared.serving.runtime import (
    ModelCache,
    Predictions,
    RowProblem,
    ServedModel,
    Signature,
    load_served_model,
)
from shared.storage import InMemoryObjectStore, ObjectRef, ObjectStore

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "artifacts"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with threadpool_limits(limits=1):
        yield


def contract(task: Task = Task.CLASSIFICATION, estimator: str = "logistic_regression") -> DataContract:
    return DataContract.model_validate(
        {
            "model": "tiny",
            "task": task.value,
            "target": "label",
            "id_column": "id",
            "features": {
                "amount": {"type": "numeric", "nullable": True, "min": 0, "max": 100},
                "flag": {"type": "boolean"},
                "colour": {"type": "categorical", "nullable": True, "allowed": ["red", "green", "blue"]},
                "size": {"type": "categorical"},
            },
            "training": {"estimator": estimator, "holdout_fraction": 0.3},
        }
    )


def frame(rows: int = 80, *, task: Task = Task.CLASSIFICATION, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.uniform(20, 80, rows)
    flag = rng.integers(0, 2, rows).astype(float)
    colour = rng.choice(np.array(["red", "green", "blue"], dtype=object), rows)
    size = rng.choice(np.array(["s", "m", "l"], dtype=object), rows)
    signal = (amount - 50) / 10 + flag + (colour == "red") + rng.normal(0, 0.5, rows)
    label: Any = np.where(signal > 0.8, "yes", "no") if task is Task.CLASSIFICATION else signal * 30 + 100
    amount[::7] = np.nan
    colour[2::9] = None
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(rows)],
            "amount": amount,
            "flag": flag,
            "colour": colour,
            "size": size,
            "label": label,
        }
    )


def request_rows(holdout: pd.DataFrame) -> list[dict[str, Any]]:
    """The holdout as a client would send it in JSON: null for missing, booleans as true/false."""
    rows = []
    for record in holdout.to_dict("records"):
        amount = record["amount"]
        rows.append(
            {
                "id": record["id"],
                "amount": None if math.isnan(amount) else float(amount),
                "flag": bool(record["flag"]),
                "colour": record["colour"] if isinstance(record["colour"], str) else None,
                "size": record["size"],
            }
        )
    return rows


@dataclass
class Registered:
    registry: ModelRegistry
    objects: InMemoryObjectStore
    model: TrainedModel
    rules: DataContract
    version: ModelVersion


def register(
    registry: ModelRegistry,
    objects: InMemoryObjectStore,
    rules: DataContract,
    model: TrainedModel,
    *,
    name: str = "tiny",
    run_id: str = "run-1",
) -> ModelVersion:
    """Store the model's artifacts and register a version, as the Train and Register steps do."""
    package = package_for_serving(model.pipeline, model.holdout, rules)
    pickled = model_to_bytes(model.pipeline)
    objects.put(ObjectRef(BUCKET, f"{run_id}/model.pkl"), pickled)
    onnx = None
    if package.onnx is not None:
        objects.put(ObjectRef(BUCKET, f"{run_id}/model.onnx"), package.onnx)
        onnx = ArtifactRef(uri=f"s3://{BUCKET}/{run_id}/model.onnx", sha256=sha256_hex(package.onnx))
    return registry.create_model_version(
        name,
        NewModelVersion(
            artifact=ArtifactRef(uri=f"s3://{BUCKET}/{run_id}/model.pkl", sha256=sha256_hex(pickled)),
            serving_flavor=package.flavor,
            onnx_artifact=onnx,
            flavor_reason=package.reason,
            signature=serving_signature(rules, model.classes),
        ),
        run_id=run_id,
        registered_by="test",
    )


@pytest.fixture(scope="module")
def classifier() -> Registered:
    with threadpool_limits(limits=1):
        rules = contract(estimator="random_forest")
        model = train(frame(), rules)
        registry, objects = ModelRegistry(InMemoryRegistryStore()), InMemoryObjectStore()
        version = register(registry, objects, rules, model)
    assert version.serving_flavor is ServingFlavor.ONNX
    return Registered(registry, objects, model, rules, version)


# --- the signature ----------------------------------------------------------------------------------------


def signature() -> Signature:
    return Signature.from_dict(serving_signature(contract(), ["no", "yes"]))


GOOD = {"amount": 12.5, "flag": True, "colour": "red", "size": "m"}


def test_valid_rows_are_prepared_exactly_as_training_prepares_a_row() -> None:
    rows: list[dict[str, Any]] = [
        GOOD,
        {"amount": None, "flag": "FALSE", "colour": None, "size": "s", "id": "c-1"},
        {"amount": 3, "flag": 1, "size": "l"},  # nullable features may be left out
        {"amount": 0, "flag": "yes", "colour": "", "size": "m"},  # an empty category is missing
    ]
    prepared, problems = signature().validate_rows(rows)
    assert problems == []
    for raw, row in zip(rows, prepared, strict=True):
        expected = prepare_row({k: (None if v == "" else v) for k, v in raw.items()}, contract())
        assert [k for k in row if k != "id"] == list(expected)
        for name, value in expected.items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(row[name])
            else:
                assert row[name] == value
    assert prepared[1]["id"] == "c-1"  # the id column passes through
    assert prepared[1]["colour"] == "__missing__"
    assert prepared[0]["flag"] == 1.0 and prepared[1]["flag"] == 0.0


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        ({"flag": True, "size": "m"}, "amount", None),  # nullable: absent is fine
        ({**GOOD, "amount": np.float64(3), "flag": np.bool_(False)}, "amount", None),  # numpy scalars
        ({"amount": 1, "size": "m"}, "flag", "is missing; the feature is required"),
        (
            {**GOOD, "shoe": 9},
            "shoe",
            "is not a feature of this model (its features: amount, flag, colour, size)",
        ),
        ({**GOOD, "label": "yes"}, "label", "is the model's target; a request carries features only"),
        (
            {**GOOD, "amount": "12"},
            "amount",
            "must be a number, got the string '12'; send the number 12 without quotes",
        ),
        ({**GOOD, "amount": "a lot"}, "amount", "must be a number, got the string 'a lot'"),
        ({**GOOD, "amount": True}, "amount", "must be a number, got the boolean true"),
        ({**GOOD, "amount": [1]}, "amount", "must be a number, got an array"),
        ({**GOOD, "amount": float("nan")}, "amount", "must be a finite number, got nan"),
        ({**GOOD, "amount": float("inf")}, "amount", "must be a finite number, got inf"),
        ({**GOOD, "amount": -1}, "amount", "is -1, below the minimum 0"),
        ({**GOOD, "amount": 100.5}, "amount", "is 100.5, above the maximum 100"),
        ({**GOOD, "flag": "maybe"}, "flag", "must be true or false (or 1/0), got the string 'maybe'"),
        ({**GOOD, "flag": 2}, "flag", "must be true or false (or 1/0), got the number 2"),
        ({**GOOD, "flag": None}, "flag", "is null, but the feature is not nullable"),
        (
            {**GOOD, "colour": "purple"},
            "colour",
            "'purple' is not an allowed category (allowed: red, green, blue)",
        ),
        ({**GOOD, "size": 3}, "size", 'must be a string (a category), got the number 3; send "3"'),
        ({**GOOD, "size": {"a": 1}}, "size", "must be a string (a category), got an object"),
        ({**GOOD, "size": None}, "size", "is null, but the feature is not nullable"),
        ({**GOOD, "size": ""}, "size", "is an empty string, but the feature is not nullable"),
    ],
)
def test_each_kind_of_problem_is_named_by_row_and_field(
    row: dict[str, Any], field: str, problem: str | None
) -> None:
    prepared, problems = signature().validate_rows([GOOD, row])
    if problem is None:
        assert problems == [] and len(prepared) == 2
    else:
        assert problems == [RowProblem(1, field, problem)]
        assert prepared == []  # a request is answered whole or refused whole


def test_a_number_beyond_float32_is_refused_even_without_bounds() -> None:
    """Models compute in float32: 1e39 would be infinite there (scikit-learn's trees raise on it)."""
    unbounded = Signature(task="regression", features=(runtime.FeatureSpec("amount", "numeric"),))

    prepared, _ = unbounded.validate_rows([{"amount": 3.4e38}, {"amount": -1e20}])
    _, problems = unbounded.validate_rows([{"amount": 1e39}, {"amount": -(10**300)}])

    assert [row["amount"] for row in prepared] == [3.4e38, -1e20]
    assert problems == [
        RowProblem(0, "amount", "is 1e+39, beyond the range a model computes in (about ±3.4e38)"),
        RowProblem(1, "amount", "is -1e+300, beyond the range a model computes in (about ±3.4e38)"),
    ]


def test_every_problem_of_every_row_is_reported_at_once() -> None:
    rows = [
        {"amount": -5, "flag": "perhaps", "colour": "pink", "size": "m", "extra": 1},
        GOOD,
        ["not", "an", "object"],
        {"amount": "7"},
    ]
    _, problems = signature().validate_rows(rows)
    assert [(p.row, p.field) for p in problems] == [
        (0, "amount"),
        (0, "flag"),
        (0, "colour"),
        (0, "extra"),
        (2, None),
        (3, "amount"),
        (3, "flag"),
        (3, "size"),
    ]
    assert problems[4].problem == "must be an object of feature values, got an array"
    assert problems[0].as_dict() == {"row": 0, "field": "amount", "problem": "is -5, below the minimum 0"}


def test_a_version_without_a_signature_cannot_be_served() -> None:
    with pytest.raises(Exception, match="no usable signature"):
        Signature.from_dict({})


# --- flavours -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "estimator"),
    [
        (Task.CLASSIFICATION, "logistic_regression"),
        (Task.CLASSIFICATION, "random_forest"),
        (Task.CLASSIFICATION, "hist_gradient_boosting"),
        (Task.REGRESSION, "ridge"),
        (Task.REGRESSION, "hist_gradient_boosting"),
    ],
)
def test_onnx_and_sklearn_flavours_answer_as_the_pipeline_does(task: Task, estimator: str) -> None:
    # Given a registered model with both artifacts
    rules = contract(task, estimator)
    model = train(frame(task=task), rules)
    registry, objects = ModelRegistry(InMemoryRegistryStore()), InMemoryObjectStore()
    version = register(registry, objects, rules, model)
    assert version.serving_flavor is ServingFlavor.ONNX, version.flavor_reason
    expected = predict_frame(model.pipeline, model.holdout, rules)

    for flavor in ("onnx", "sklearn"):
        # When each flavour predicts the holdout as a client sends it
        served = load_served_model(version, objects, flavor=flavor)
        predictions, problems = served.validate_and_predict(request_rows(model.holdout))

        # Then it agrees with the scikit-learn pipeline
        assert problems == [] and predictions is not None
        assert served.flavor == flavor
        assert served.load_seconds > 0
        if task is Task.CLASSIFICATION:
            assert predictions.predictions == list(expected["prediction"])
            assert predictions.probabilities is not None
            assert served.classes == ["no", "yes"]
            for got, (_, want) in zip(predictions.probabilities, expected.iterrows(), strict=True):
                assert list(got) == ["no", "yes"]
                assert got["yes"] == pytest.approx(want["proba_yes"], abs=1e-5)
        else:
            assert predictions.probabilities is None
            assert np.allclose(predictions.predictions, expected["prediction"], rtol=1e-4, atol=1e-2)


def test_the_registered_flavour_is_the_default_and_an_empty_batch_is_fine(classifier: Registered) -> None:
    served = load_served_model(classifier.version, classifier.objects)
    assert (served.name, served.version, served.flavor) == ("tiny", 1, "onnx")
    assert served.predict([]) == Predictions([], [])


def test_a_sklearn_flavour_version_is_served_by_the_pipeline() -> None:
    rules = contract()
    model = train(frame(), rules)
    registry, objects = ModelRegistry(InMemoryRegistryStore()), InMemoryObjectStore()
    pickled = model_to_bytes(model.pipeline)
    objects.put(ObjectRef(BUCKET, "m.pkl"), pickled)
    version = registry.create_model_version(
        "plain",
        NewModelVersion(
            artifact=ArtifactRef(uri=f"s3://{BUCKET}/m.pkl", sha256=sha256_hex(pickled)),
            flavor_reason="ONNX conversion failed (RuntimeError: ...)",
            signature=serving_signature(rules, model.classes),
        ),
        run_id="r",
        registered_by="test",
    )
    served = load_served_model(version, objects)
    assert served.flavor == "sklearn"
    predictions, _ = served.validate_and_predict(request_rows(model.holdout))
    assert predictions is not None
    assert predictions.predictions == list(predict_frame(model.pipeline, model.holdout, rules)["prediction"])


@pytest.mark.parametrize("flavor", ["onnx", "sklearn"])
def test_tampered_bytes_are_refused_before_they_are_deserialised(
    classifier: Registered, flavor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an artifact whose bytes changed after registration
    objects = InMemoryObjectStore()
    artifact = classifier.version.onnx_artifact if flavor == "onnx" else classifier.version.artifact
    assert artifact is not None
    ref = ObjectRef.parse(artifact.uri)
    objects.put(ref, classifier.objects.get(ref).body + b"\x00")

    # And deserialisers that must not run
    def forbidden(*_: Any) -> Any:
        raise AssertionError("deserialised unverified bytes")

    monkeypatch.setattr(runtime, "onnx_session", forbidden)
    monkeypatch.setattr("shared.ml.training.model_from_bytes", forbidden)

    # When it is loaded, Then IntegrityError names the model, the version and both digests
    with pytest.raises(IntegrityError) as caught:
        load_served_model(classifier.version, objects, flavor=flavor)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith("tiny v1: the ")
    assert artifact.sha256[:12] in message
    assert sha256_hex(objects.get(ref).body)[:12] in message
    assert "not loaded" in message


def test_served_models_predict_concurrently(classifier: Registered) -> None:
    served = load_served_model(classifier.version, classifier.objects)
    prepared, _ = served.signature.validate_rows(request_rows(classifier.model.holdout))
    expected = served.predict(prepared)
    results: list[Predictions] = []

    def work() -> None:
        for _ in range(20):
            results.append(served.predict(prepared))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 80 and all(r == expected for r in results)


# --- the cache ------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class CountingLoader:
    """Stands in for load_served_model: counts loads, optionally slowly."""

    calls: list[tuple[str, int]]
    delay: float = 0.0

    def __call__(self, version: ModelVersion, objects: ObjectStore) -> ServedModel:
        self.calls.append((version.name, version.version))
        time.sleep(self.delay)
        return ServedModel(
            name=version.name,
            version=version.version,
            flavor="onnx",
            signature=Signature.from_dict(version.signature),
            classes=None,
            load_seconds=self.delay,
            runner=None,  # type: ignore[arg-type]
        )


def registry_with_versions(count: int) -> ModelRegistry:
    registry = ModelRegistry(InMemoryRegistryStore())
    for number in range(1, count + 1):
        registry.create_model_version(
            "churn",
            NewModelVersion(
                artifact=ArtifactRef(uri=f"s3://{BUCKET}/v{number}.pkl", sha256="0" * 64),
                signature=serving_signature(contract(), ["no", "yes"]),
            ),
            run_id=f"run-{number}",
            registered_by="test",
        )
    return registry


def promote(registry: ModelRegistry, version: int) -> None:
    registry.promote("churn", version, actor="test", reason="test")


def test_a_promotion_is_served_after_the_refresh_interval_and_not_before() -> None:
    # Given v1 in production, served through the cache
    registry = registry_with_versions(2)
    promote(registry, 1)
    clock, loader = FakeClock(), CountingLoader([])
    cache = ModelCache(registry, InMemoryObjectStore(), refresh_seconds=5, clock=clock, loader=loader)
    assert cache.resolve("churn").version == 1

    # When v2 is promoted
    promote(registry, 2)
    # Then v1 answers until the interval has passed
    clock.now += 4.9
    assert cache.resolve("churn").version == 1
    clock.now += 0.2
    assert cache.resolve("churn").version == 2
    # And a rollback is followed the same way, from the cache (v1 is not loaded twice)
    promote(registry, 1)
    clock.now += 5
    assert cache.resolve("churn").version == 1
    assert loader.calls == [("churn", 1), ("churn", 2)]


def test_a_pinned_version_bypasses_the_alias() -> None:
    registry = registry_with_versions(3)
    promote(registry, 3)
    loader = CountingLoader([])
    cache = ModelCache(registry, InMemoryObjectStore(), clock=FakeClock(), loader=loader)
    assert cache.resolve("churn", version=1).version == 1
    assert cache.resolve("churn").version == 3
    registry.set_alias("churn", "staging", 2, actor="test", reason="test")
    assert cache.resolve("churn", "staging").version == 2


def test_unknown_models_versions_and_aliases_are_not_found_with_clear_messages() -> None:
    registry = registry_with_versions(1)
    cache = ModelCache(registry, InMemoryObjectStore(), clock=FakeClock(), loader=CountingLoader([]))
    with pytest.raises(NotFoundError, match="model 'nope' is not registered"):
        cache.resolve("nope")
    with pytest.raises(NotFoundError, match="model 'churn' has no production version yet"):
        cache.resolve("churn")
    with pytest.raises(NotFoundError, match="model 'churn' has no alias 'staging'"):
        cache.resolve("churn", "staging")
    with pytest.raises(NotFoundError, match="churn v9 does not exist"):
        cache.resolve("churn", version=9)


def test_concurrent_requests_load_a_version_once() -> None:
    registry = registry_with_versions(1)
    promote(registry, 1)
    loader = CountingLoader([], delay=0.05)
    cache = ModelCache(registry, InMemoryObjectStore(), loader=loader)
    versions: list[int] = []
    threads = [
        threading.Thread(target=lambda: versions.append(cache.resolve("churn").version)) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert versions == [1] * 8
    assert loader.calls == [("churn", 1)]


def test_a_registry_hiccup_keeps_the_known_version_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = registry_with_versions(1)
    promote(registry, 1)
    clock = FakeClock()
    cache = ModelCache(registry, InMemoryObjectStore(), clock=clock, loader=CountingLoader([]))
    assert cache.resolve("churn").version == 1

    def throttled(*_: Any) -> Any:
        raise TransientError("throttled")

    monkeypatch.setattr(registry, "get_alias", throttled)
    clock.now += 10
    assert cache.resolve("churn").version == 1
    fresh = ModelCache(registry, InMemoryObjectStore(), clock=clock, loader=CountingLoader([]))
    with pytest.raises(TransientError):
        fresh.resolve("churn")


def test_the_cache_loads_real_models_through_the_registry(classifier: Registered) -> None:
    promote_registry = classifier.registry
    promote_registry.promote("tiny", 1, actor="test", reason="test")
    cache = ModelCache(promote_registry, classifier.objects)
    served = cache.resolve("tiny")
    assert served.flavor == "onnx" and served.version == 1
    assert cache.resolve("tiny") is served


# --- the import budget ------------------------------------------------------------------------------------


def test_serving_an_onnx_model_imports_neither_pandas_nor_scikit_learn(
    classifier: Registered, tmp_path: Path
) -> None:
    # Given an ONNX model and its registry record on disk
    assert classifier.version.onnx_artifact is not None
    (tmp_path / "model.onnx").write_bytes(
        classifier.objects.get(ObjectRef.parse(classifier.version.onnx_artifact.uri)).body
    )
    (tmp_path / "version.json").write_text(classifier.version.model_dump_json())
    row = request_rows(classifier.model.holdout)[0]
    script = f"""
import json, sys
from pathlib import Path
import shared.serving.runtime
from shared.registry import ModelVersion
from shared.storage import InMemoryObjectStore, ObjectRef
version = ModelVersion.model_validate_json(Path({str(tmp_path / "version.json")!r}).read_text())
objects = InMemoryObjectStore()
objects.put(ObjectRef.parse(version.onnx_artifact.uri), Path({str(tmp_path / "model.onnx")!r}).read_bytes())
served = shared.serving.runtime.load_served_model(version, objects)
predictions, problems = served.validate_and_predict([json.loads({json.dumps(json.dumps(row))})])
assert not problems and predictions.predictions[0] in ("no", "yes"), (problems, predictions)
assert "onnxruntime" in sys.modules
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'sklearn'))))
"""
    # When a fresh interpreter imports serving, loads the model and predicts
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    # Then neither pandas nor scikit-learn was imported
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize(
    ("task", "estimator"), [(Task.CLASSIFICATION, "random_forest"), (Task.REGRESSION, "ridge")]
)
def test_a_batch_given_as_columns_is_answered_as_the_same_rows_are(task: Task, estimator: str) -> None:
    """Batch scoring feeds the model whole columns; the answer is the rows' answer, value for value."""
    rules = contract(task, estimator)
    model = train(frame(task=task), rules)
    registry, objects = ModelRegistry(InMemoryRegistryStore()), InMemoryObjectStore()
    version = register(registry, objects, rules, model)
    for flavor in ("onnx", "sklearn"):
        served = load_served_model(version, objects, flavor=flavor)
        prepared, problems = served.signature.validate_rows(request_rows(model.holdout))
        assert problems == []
        columns = {
            f.name: np.array(
                [row[f.name] for row in prepared], dtype=object if f.type == "categorical" else float
            )
            for f in served.signature.features
        }
        by_rows = served.predict(prepared)
        by_columns = served.predict_columns(columns)
        assert by_columns.predictions.tolist() == by_rows.predictions
        if by_rows.probabilities is None:
            assert by_columns.probabilities is None
        else:
            assert by_columns.probabilities is not None
            classes = served.classes or []
            as_dicts = [dict(zip(classes, row, strict=True)) for row in by_columns.probabilities.tolist()]
            assert as_dicts == by_rows.probabilities
