"""Component test: the churn project trained on its sample by Flywheel's own steps produces every artifact
the registry needs, and each one is checked."""

from __future__ import annotations

from cli.testing import Component


def test_the_model_is_stored_and_loads_back_with_its_own_code(flywheel_component: Component) -> None:
    version = flywheel_component.version
    assert version.code_artifact is not None
    assert version.code_artifact.sha256 == flywheel_component.project.code.digest
    holdout = flywheel_component.holdout()
    model = flywheel_component.model()  # bytes and code both checked against their sha256
    assert len(model.predict(holdout)) == len(holdout) > 0


def test_the_own_transformer_is_served_by_scikit_learn_and_the_reason_names_it(
    flywheel_component: Component,
) -> None:
    """PerTenureMonth has no ONNX converter: the version is served by scikit-learn, and says why."""
    version = flywheel_component.version
    assert version.serving_flavor.value == "sklearn"
    assert version.onnx_artifact is None
    assert "PerTenureMonth" in version.flavor_reason


def test_the_signature_and_reference_profile_cover_every_feature(flywheel_component: Component) -> None:
    features = set(flywheel_component.project.contract.features)
    assert set(flywheel_component.version.signature["features"]) == features
    assert features <= set(flywheel_component.profile()["features"])


def test_the_served_model_answers_a_client_row(flywheel_component: Component) -> None:
    served = flywheel_component.served()
    predictions, problems = served.validate_and_predict(flywheel_component.project.request_rows(3))
    assert not problems, problems
    assert predictions is not None and len(predictions.predictions) == 3


def test_the_candidate_passes_the_contract_gates(flywheel_component: Component) -> None:
    evaluation = flywheel_component.evaluation
    assert evaluation.passed, evaluation.reasons
    assert evaluation.metrics["roc_auc"] >= 0.70
