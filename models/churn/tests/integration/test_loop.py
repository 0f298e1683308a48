"""Integration test: the churn project through Flywheel's whole loop on the local cloud — its sample pushed,
validated, trained, evaluated, registered, verified on the serving path, promoted — then asked for
predictions over HTTP, as a client would."""

from __future__ import annotations

from cli.testing import Loop


def test_the_sample_becomes_the_production_model_and_answers(flywheel_loop: Loop) -> None:
    assert flywheel_loop.status == "SUCCEEDED", flywheel_loop.run.error
    assert flywheel_loop.run.outcome.get("promoted") is True, flywheel_loop.run.outcome
    production = flywheel_loop.production()
    assert production.code_artifact.sha256 == flywheel_loop.project.code.digest
    assert production.params["estimator"] == "project:pipeline:build"
    answer = flywheel_loop.predict(flywheel_loop.project.request_rows(5))
    assert answer["version"] == production.version
    assert len(answer["predictions"]) == 5
    assert set(answer["predictions"]) <= {"false", "true"}
