"""What ``flywheel runs RUN`` says about a run whose version did not reach production: every reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cli.actions import RunView
from cli.render import run_details
from shared.metadata import Run, RunReason, RunStatus

pytestmark = pytest.mark.unit


def rejected(**outcome: object) -> str:
    run = Run(
        run_id="new-data-churn-1",
        model="churn",
        reason=RunReason.NEW_DATA,
        status=RunStatus.REJECTED,
        started_at=datetime(2026, 3, 1, tzinfo=UTC),
        outcome={"version": 2, "promoted": False, "gate_passed": True, **outcome},
    )
    return run_details(RunView(run=run, steps=[]))


def test_a_version_that_failed_verification_says_why() -> None:
    text = rejected(
        gate_reasons=["roc_auc 0.850 meets the floor 0.700"],
        verification={"passed": False, "reasons": ["p99 latency 812.0 ms is over the gate 500 ms"]},
    )
    assert "v2 registered, not promoted" in text
    assert "  - failed verification: p99 latency 812.0 ms is over the gate 500 ms" in text


def test_a_version_the_policy_refused_says_why() -> None:
    text = rejected(
        verification={"passed": True, "reasons": ["loaded in 4 ms (onnx)"]},
        promotion_refusals=["v2 has passed 0 staging verification(s); the policy requires 2"],
    )
    assert "  - promotion refused: v2 has passed 0 staging verification(s); the policy requires 2" in text
    assert "loaded in 4 ms" not in text  # a passed verification is not a reason it was held back
