"""One way to refuse a file: every kind of refused file is moved the same way and explained by the same
``.error.json`` schema, whoever refused it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.data.quarantine import Refusal
from shared.featurestore.arrivals import ingest_source
from shared.featurestore.online import InMemoryOnlineStore
from shared.monitoring.labels import accept_label_file
from shared.pipeline.trigger import on_new_object
from shared.services import Services
from shared.storage import ObjectRef
from tests.fixtures.services import SETTINGS, in_memory_services, put_churn_contract, upload

pytestmark = pytest.mark.unit

SCHEMA = set(Refusal.model_fields)


@pytest.fixture
def svc() -> Services:
    services = in_memory_services()
    put_churn_contract(services)
    return services


def error_report(svc: Services, key: str) -> dict[str, object]:
    report: dict[str, object] = json.loads(svc.objects.get(ObjectRef(SETTINGS.data_bucket, key)).body)
    return report


def test_every_refusal_writes_the_same_error_json_schema(svc: Services) -> None:
    """Given a file that names no model (trigger), a label file without its columns (labels), and a
    feature-source file for a view that is not stored (features), when each is refused, then each
    .error.json has exactly the fields of one schema, and its kind, error and problems say why."""
    loose = upload(svc, "incoming/loose.csv", b"a,b\n1,2\n")
    on_new_object(svc, loose.bucket, loose.key, loose.version_id, None)
    labels = upload(svc, "labels/churn/wrong.csv", b"who,what\nr1,true\n")
    accept_label_file(svc, labels.bucket, labels.key, labels.version_id)
    features = upload(svc, "feature-sources/ghost/a.csv", b"customer_id,updated_at\nC1,2026-01-01\n")
    ingest_source(svc, InMemoryOnlineStore(), features)

    reports = {
        "data": error_report(svc, "quarantine/_unrouted/loose.csv.error.json"),
        "labels": error_report(svc, "quarantine/churn/labels/wrong.csv.error.json"),
        "feature-source": error_report(svc, "quarantine/_feature-sources/ghost/a.csv.error.json"),
    }

    for kind, report in reports.items():
        assert set(report) == SCHEMA, kind
        assert report["kind"] == kind
        assert report["error"] == "DataValidationError"
        assert report["problems"], kind
        assert Refusal.model_validate(report).source_version_id is not None
    assert reports["labels"]["model"] == "churn"
    assert reports["feature-source"]["view"] == "ghost"
    assert {p["rule"] for p in reports["labels"]["problems"]} >= {"missing_column"}  # type: ignore[union-attr]


def test_the_readme_documents_every_field_of_the_schema() -> None:
    """The README's quarantine section names each field a user reads in an .error.json."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### The `.error.json` of a refused file", 1)[1].split("\n## ", 1)[0]
    assert [f for f in SCHEMA if f"`{f}`" not in section] == []
