"""The HTML report is well-formed, self-contained, draws every promised chart and escapes what it shows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from shared.data.contract import DataContract
from shared.ml.evaluation import Evaluation
from shared.ml.training import reference_profile
from shared.monitoring.decision import MetricPoint, MonitorDecision, MonitorReport, decide
from shared.monitoring.drift import compute_drift
from shared.monitoring.report import render_html

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>'
ATTRIBUTE_BREAKER = '"><img src=x onerror=alert(1)>'
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# SVG elements the page writes self-closed (<rect .../>); the parser reports them as start+end.
SELF_CLOSED = {"line", "rect", "circle", "path"}


class Page(HTMLParser):
    """Every element, attribute and problem of a page: unclosed, stray or misnested tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.problems: list[str] = []
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.svg_titles: list[str] = []
        self._in_title_of_svg = False
        self._text: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "title" and self.open and self.open[-1] == "svg":
            self._in_title_of_svg, self._text = True, []
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag not in SELF_CLOSED | VOID:
            self.problems.append(f"<{tag}/> is not an element that may close itself")

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1] if self.open else 'nothing'}")
            return
        self.open.pop()
        if tag == "title" and self._in_title_of_svg:
            self.svg_titles.append("".join(self._text))
            self._in_title_of_svg = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_title_of_svg:
            self._text.append(data)


def parsed(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    assert page.problems == []
    assert page.open == [], f"unclosed: {page.open}"
    return page


def report(
    feature_names: tuple[str, str, str] = ("tenure", "plan", "autopay"),
    *,
    history: int = 6,
    category: str = "basic",
) -> MonitorReport:
    numeric, categorical, boolean = feature_names
    rules = DataContract.model_validate(
        {
            "model": "churn",
            "task": "classification",
            "target": "churned",
            "features": {
                numeric: {"type": "numeric"},
                categorical: {"type": "categorical"},
                boolean: {"type": "boolean"},
            },
        }
    )
    rng = np.random.default_rng(3)
    train = pd.DataFrame(
        {
            numeric: rng.gamma(1.3, 28, 2000).round(),
            categorical: pd.Series(
                rng.choice([category, "plus", "pro"], 2000, p=[0.45, 0.35, 0.2]), dtype=object
            ),
            boolean: (rng.random(2000) < 0.6).astype(float),
        }
    )
    positive = rng.beta(2, 5, 400)
    holdout = pd.DataFrame(
        {
            "prediction": np.where(positive > 0.5, "true", "false"),
            "proba_false": 1 - positive,
            "proba_true": positive,
        }
    )
    profile = reference_profile(train, holdout, rules)
    live = pd.DataFrame(
        {
            numeric: rng.gamma(1.3, 14, 1500).round(),  # drifted
            categorical: pd.Series(
                rng.choice([category, "plus", "pro", "new"], 1500), dtype=object
            ),  # drifted
            boolean: (rng.random(1500) < 0.6).astype(float),  # steady
        }
    )
    live_positive = rng.beta(3, 4, 1500)
    predictions = pd.DataFrame(
        {
            "prediction": np.where(live_positive > 0.5, "true", "false"),
            "proba_false": 1 - live_positive,
            "proba_true": live_positive,
        }
    )
    drift = compute_drift(live, predictions, profile, rules)
    evaluation = Evaluation(metrics={"roc_auc": 0.71}, rows=512)
    holdout_metrics = {"roc_auc": 0.82}
    decision = decide(drift, evaluation, holdout_metrics, rules.monitoring_policy, None, NOW)
    points = [
        MetricPoint(time=NOW - timedelta(days=history - i), metric=0.82 - 0.02 * i, version=1 if i < 3 else 2)
        for i in range(history)
    ]
    return MonitorReport(
        model="churn",
        version=2,
        window_start=NOW - timedelta(hours=24),
        window_end=NOW,
        rows=drift.rows,
        labelled_rows=evaluation.rows,
        drift=drift,
        live=evaluation,
        holdout_metrics=holdout_metrics,
        metric="roc_auc",
        metric_history=points,
        policy=rules.monitoring_policy,
        decision=decision,
        generated_at=NOW,
    )


def test_the_page_is_well_formed_and_draws_every_promised_chart() -> None:
    shown = report()
    drift = shown.drift
    assert drift is not None and drift.prediction is not None
    assert drift.drifted_features == ["tenure", "plan"]

    page = parsed(render_html(shown))

    # PSI per feature, one per drifted feature, one per prediction distribution, the metric history.
    expected = [
        "PSI per feature",
        "tenure: reference vs live",
        "plan: reference vs live",
        "Predictions: predicted class",
        "Predictions: P(true)",
        "Live roc_auc over time",
    ]
    assert page.svg_titles == expected
    svgs = [attrs for tag, attrs in page.elements if tag == "svg"]
    ids = {attrs.get("id") for _, attrs in page.elements if attrs.get("id")}
    for attrs in svgs:
        assert attrs["role"] == "img"
        assert set((attrs["aria-labelledby"] or "").split()) <= ids
    text = " ".join(page.text)
    assert "Decision: retrain (degradation)" in text
    assert "roc_auc fell from 0.820 (holdout) to 0.710 on 512 labelled rows; at most 0.050 allowed" in text
    assert (
        "population stability index (PSI)" in text and "share of rows" in text and "window end (UTC)" in text
    )
    assert "threshold 0.2" in text
    assert text.count("v1") >= 1 and "v2" in text
    # Every feature is in the table, drifted or not.
    headers = [attrs for tag, attrs in page.elements if tag == "th" and attrs.get("scope") == "row"]
    assert len(headers) == 3


def test_the_page_needs_nothing_from_the_network() -> None:
    html = render_html(report())
    page = parsed(html)

    assert "http://" not in html and "https://" not in html
    assert not [tag for tag, _ in page.elements if tag in {"script", "link", "img", "iframe", "object"}]
    for _, attrs in page.elements:
        for name in ("src", "href", "xlink:href", "srcset"):
            assert name not in attrs
    assert "@import" not in html and "url(" not in html


def test_hostile_names_are_escaped_everywhere() -> None:
    shown = report((HOSTILE, ATTRIBUTE_BREAKER, "ok & <b>bold</b>"), category="</title><script>x()</script>")

    html = render_html(shown)
    page = parsed(html)

    tags = {tag for tag, _ in page.elements}
    assert "script" not in tags and "img" not in tags and "b" not in tags
    text = " ".join(page.text)
    assert HOSTILE in text and ATTRIBUTE_BREAKER in text and "</title><script>x()</script>" in text
    assert "&lt;script&gt;" in html
    # Names never become ids or attributes.
    for _, attrs in page.elements:
        for value in attrs.values():
            assert value is None or "<" not in value


def test_the_page_renders_from_the_json_the_monitor_writes() -> None:
    shown = report()

    assert render_html(shown.model_dump(mode="json")) == render_html(shown)


def test_a_first_window_without_history_or_drift_still_says_what_it_decided() -> None:
    decision = MonitorDecision(
        action="insufficient_data",
        reasons=[
            "120 rows in the window; at least 200 needed to judge drift",
            "0 labelled rows; at least 100 needed to judge roc_auc",
        ],
    )
    shown = report(history=0).model_copy(
        update={"drift": None, "live": None, "decision": decision, "rows": 120}
    )

    page = parsed(render_html(shown))

    assert page.svg_titles == ["Live roc_auc over time"]
    text = " ".join(page.text)
    assert "No labelled window yet" in text
    assert "Decision: insufficient data" in text
    assert "120 rows in the window; at least 200 needed to judge drift" in text


def test_no_drifted_feature_draws_no_distribution_chart_and_says_so() -> None:
    shown = report()
    assert shown.drift is not None
    calm = shown.drift.model_copy(
        update={
            "features": [
                f.model_copy(update={"drifted": False, "reasons": []}) for f in shown.drift.features
            ],
            "drifted_features": [],
            "drift_share": 0.0,
            "prediction": None,
        }
    )

    page = parsed(render_html(shown.model_copy(update={"drift": calm})))

    assert page.svg_titles == ["PSI per feature", "Live roc_auc over time"]
    assert "No feature drifted." in " ".join(page.text)


def test_chart_text_is_short_enough_to_read_and_complete_on_hover() -> None:
    long_name = "a_feature_with_a_very_long_descriptive_name"
    html = render_html(report((long_name, "plan", "autopay")))

    assert re.search(
        r"<title>a_feature_with_a_very_long_descriptive_name</title>a_feature_with_a_very…<", html
    )
