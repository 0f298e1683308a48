"""A champion that cannot be trusted never lowers the bar: the whole loop on the local cloud (``dev``: auto).

Evaluate judges a candidate against the production model on the same holdout. When production's artifact was
replaced (or lost), the candidate has no bar to clear that anyone can vouch for: the run fails at Evaluate,
saying which version and what to do, and production stays as it was. When production loads but cannot read
today's holdout (the contract dropped a feature it used), the gate cannot compare the two: the candidate is
held for a person, whatever the environment's policy.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from shared.metadata import RunStatus, StepStatus
from shared.pipeline.delivery import STAGING_ALIAS
from shared.registry import Stage
from shared.storage import ObjectRef
from tests.fixtures.services import churn_contract
from tests.integration.test_delivery import MODEL, Delivery, cloud_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="class")
def dev() -> Iterator[Delivery]:
    yield from cloud_for("dev")


@pytest.fixture(scope="class")
def production(dev: Delivery) -> int:
    """v1 in production, from the model's first file."""
    run = dev.upload("incoming/churn/2026-01.csv")
    assert dev.finish(run).status == "SUCCEEDED"
    number = dev.production()
    assert number is not None
    return number


def _features() -> dict[str, Any]:
    features: dict[str, Any] = churn_contract().model_dump(mode="json", exclude_none=True)["features"]
    return features


class TestAChampionThatCannotBeTrusted:
    def test_a_replaced_production_artifact_fails_the_run_and_production_stays(
        self, dev: Delivery, production: int
    ) -> None:
        """Given v1 in production, when its model.pkl is overwritten (a valid pickle, not the registered
        bytes), then the next run fails at Evaluate naming v1 and the remedy, registers nothing, and v1
        stays in production; with the bytes restored, the next run is judged against v1 again."""
        champion = dev.version(production)
        where = ObjectRef.parse(champion.artifact.uri)
        registered = dev.svc.objects.get(where).body
        versions_before = len(dev.svc.registry.search_model_versions(MODEL))
        dev.svc.objects.put(where, pickle.dumps({"a": "model that lowers the bar"}))
        try:
            done = dev.finish(dev.start())
        finally:
            dev.svc.objects.put(where, registered)

        assert done.status == "FAILED"
        assert done.entered()[-3:] == ["EvaluateFailed", "RecordFailure", "Failed"]
        assert done.run.status is RunStatus.FAILED and done.run.error is not None
        assert (done.run.error.step, done.run.error.type) == ("evaluate", "UntrustedChampionError")
        message = done.run.error.message
        assert f"production v{production} cannot be loaded to judge the candidate" in message
        assert "IntegrityError" in message and "production stays as it is" in message
        assert f"flywheel rollback {MODEL}" in message
        assert ("evaluate", StepStatus.FAILED) in [(s.name, s.status) for s in done.steps]
        assert dev.production() == production
        assert dev.version(production).stage is Stage.PRODUCTION
        assert len(dev.svc.registry.search_model_versions(MODEL)) == versions_before

        again = dev.finish(dev.start())

        assert again.status == "SUCCEEDED"
        assert again.run.outcome["champion_version"] == production

    def test_a_champion_that_cannot_read_the_holdout_holds_the_candidate_for_a_person(
        self, dev: Delivery, production: int
    ) -> None:
        """Given a version in production, when the contract drops a feature it reads, then it cannot score
        the new holdout: the candidate is verified and waits in staging for a person although dev's policy
        is auto, the staging entry says why, and production moves only when someone approves."""
        champion = dev.production()
        features = _features()
        dev.put_contract(features={name: f for name, f in features.items() if name != "support_calls"})
        try:
            run = dev.start()
            waiting = dev.awaiting_approval(run)

            assert dev.production() == champion
            assert (waiting.stage, dev.alias(STAGING_ALIAS)) == (Stage.STAGING, waiting.version)
            assert waiting.gate is not None and waiting.gate.passed
            assert any(
                f"production v{champion} could not score this holdout" in r for r in waiting.gate.reasons
            )
            (staged,) = [
                t for t in dev.trail(limit=5) if t.version == waiting.version and t.to_stage is Stage.STAGING
            ]
            assert staged.reason.startswith("verified; waiting for approval (held for a person: ")
            assert "the regression gate could not compare them" in staged.reason

            approved = dev.flywheel(
                "approve", f"{MODEL}:{waiting.version}", "--by", "alice", "--comment", "ok"
            )

            assert approved.exit_code == 0, approved.output
            done = dev.finish(run)
            assert done.status == "SUCCEEDED" and done.run.status is RunStatus.SUCCEEDED
            assert dev.production() == waiting.version
        finally:
            dev.put_contract()
