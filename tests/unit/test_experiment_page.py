"""The experiment page is well-formed and self-contained, draws the trials, each parameter and the best
trials side by side, lists the lost trials with their errors, and escapes what it shows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cli.experiment_page import BEST_SHOWN, render_experiment_html
from shared.experiments import Experiment, ExperimentStatus, Trial, TrialStatus
from tests.unit.test_report import parsed

pytestmark = pytest.mark.unit

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>'
SPACE = {
    "learning_rate": {"float": [0.01, 0.3], "log": True},
    "max_depth": {"int": [2, 12]},
    "loss": {"choice": ["log_loss", HOSTILE]},
}


def experiment(best: int | None = 3, value: float | None = 0.91, **changes: Any) -> Experiment:
    fields: dict[str, Any] = {
        "experiment_id": "run-7",
        "model": "churn",
        "run_id": "run-7",
        "status": ExperimentStatus.COMPLETED,
        "metric": "roc_auc",
        "higher_is_better": True,
        "policy": {
            "metric": "roc_auc",
            "trials": 8,
            "parallel": 4,
            "strategy": "tpe",
            "cv": {"folds": 2},
            "trial_timeout_seconds": 60,
            "space": SPACE,
        },
        "builder": "hist_gradient_boosting",
        "datasets": ["churn/ds-1"],
        "started_at": START,
        "ended_at": START + timedelta(minutes=3),
        "best_trial": best,
        "best_value": value,
        "best_params": {"learning_rate": 0.1, "max_depth": 5, "loss": "log_loss"}
        if best is not None
        else None,
        **changes,
    }
    return Experiment(**fields)


def trial(
    number: int, value: float | None, status: TrialStatus = TrialStatus.SUCCEEDED, **extra: Any
) -> Trial:
    folds = (
        [{"roc_auc": value - 0.01, "accuracy": 0.8}, {"roc_auc": value + 0.01, "accuracy": 0.8}]
        if value
        else []
    )
    return Trial(
        experiment_id="run-7",
        number=number,
        params={"learning_rate": 0.01 * (number + 1), "max_depth": 2 + number, "loss": "log_loss"},
        status=status,
        value=value,
        folds=folds,
        seconds=1.5 + number,
        asked_at=START,
        ended_at=START + timedelta(seconds=10),
        run_id="run-7",
        **extra,
    )


def trials() -> list[Trial]:
    values = [0.82, 0.85, 0.88, 0.91, 0.87, 0.86]
    scored = [trial(n, v) for n, v in enumerate(values)]
    failed = trial(
        6, None, TrialStatus.FAILED, error_type="ValueError", error="max_depth too deep\ntraceback…"
    )
    timeout = trial(7, None, TrialStatus.TIMEOUT, error_type="TrialTimeout", error="stopped after 60 s")
    return [*scored, failed, timeout]


def test_the_page_is_well_formed_self_contained_and_draws_every_chart() -> None:
    html = render_experiment_html(experiment(), trials())
    page = parsed(html)
    tags = {tag for tag, _ in page.elements}
    assert "script" not in tags and "link" not in tags and "img" not in tags
    assert not any(a.get("src") or a.get("href") for _, a in page.elements)
    # The metric over trials, then one chart per searched parameter, each with a title.
    assert page.svg_titles == ["roc_auc over trials", *(f"roc_auc by {name}" for name in SPACE)]
    assert "Winner: trial 3, roc_auc 0.9100" in html


def test_the_trial_chart_marks_every_scored_trial_and_every_lost_one() -> None:
    html = render_experiment_html(experiment(), trials())
    progress = html[html.index("roc_auc over trials</title>") : html.index("</svg>")]
    assert progress.count("<circle") == 6  # one per scored trial
    assert re.findall(r"<rect [^>]*><title>trial (\d): (\w+)", progress) == [
        ("6", "failed"),
        ("7", "timeout"),
    ]
    # The winner is drawn larger than the rest.
    assert progress.count('r="5.5"') == 1


def test_the_best_trials_stand_side_by_side_best_first_with_their_folds() -> None:
    html = render_experiment_html(experiment(), trials())
    table = html[html.index('id="best-heading"') :]
    header = re.findall(r"#(\d) · trial (\d)", table)
    assert header[:BEST_SHOWN] == [("1", "3"), ("2", "2"), ("3", "4"), ("4", "5"), ("5", "1")]
    assert "fold 1" in table and "fold 2" in table
    assert "0.9000" in table and "0.9200" in table  # trial 3's folds


def test_lost_trials_are_listed_with_their_first_error_line() -> None:
    html = render_experiment_html(experiment(), trials())
    lost = html[html.index('id="lost-heading"') :]
    assert "Failed or timed out (2)" in lost
    assert "ValueError: max_depth too deep" in lost and "traceback" not in lost
    assert "TrialTimeout: stopped after 60 s" in lost


def test_values_from_the_contract_and_the_trials_are_escaped() -> None:
    hostile = trial(8, 0.5)
    hostile = hostile.model_copy(update={"params": {**hostile.params, "loss": HOSTILE}})
    html = render_experiment_html(experiment(), [*trials(), hostile])
    assert HOSTILE not in html
    assert "&lt;script&gt;" in html
    parsed(html)


def test_an_experiment_without_a_winner_says_why_and_still_renders() -> None:
    failed = experiment(best=None, value=None, status=ExperimentStatus.FAILED, error="no trial was scored")
    lost = [t for t in trials() if t.status is not TrialStatus.SUCCEEDED]
    html = render_experiment_html(failed, lost)
    parsed(html)
    assert "No winner" in html and "no trial was scored" in html
    assert "No trial has been scored." in html
    empty = render_experiment_html(experiment(best=None, value=None, status=ExperimentStatus.RUNNING), [])
    assert "No trial yet" in "".join(parsed(empty).text)
