"""The monitoring report in a real browser: headless Chromium opens the page from a file, with the network
out of reach, draws every chart with a size, loads nothing and reports no error.

``.ci/run`` installs Debian's ``chromium`` so CI runs these tests; on a machine without Chromium they are
skipped, saying so.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from examples.churn import generate
from shared.data.streaming import validate_file
from shared.ml.training import predict_frame, reference_profile, train
from shared.monitoring.decision import MetricPoint, MonitorReport, decide, live_performance
from shared.monitoring.drift import compute_drift
from shared.monitoring.report import render_html
from tests.fixtures.monitoring import monitoring_contract, request_rows

pytestmark = [pytest.mark.integration, pytest.mark.browser]

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Measures the page once it has been laid out: added to a copy of the report only, never to the report.
PROBE = """<script>
const charts = [...document.querySelectorAll("svg")].map((svg) => {
  const box = svg.getBoundingClientRect();
  return {width: box.width, height: box.height, marks: svg.querySelectorAll("rect, circle, path").length,
          title: (svg.querySelector("title") || {}).textContent || ""};
});
const requested = performance.getEntriesByType("resource").map((entry) => entry.name);
document.body.setAttribute("data-probe", JSON.stringify({charts, requested, errors: window.__errors}));
</script>"""
CATCH_ERRORS = (
    "<script>window.__errors = []; window.addEventListener('error', (e) => "
    "window.__errors.push(String(e.message || (e.target && (e.target.src || e.target.href)) || e.type)), "
    "true);</script>"
)


def chromium() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "Chromium is not installed (none of chromium, chromium-browser, google-chrome is on PATH): "
        "install Debian's chromium (`apt-get install chromium`, as .ci/run does) to run the browser tests"
    )


def browse(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Open ``page`` in headless Chromium with the network out of reach."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        # Any request that would leave the machine fails: no proxy answers there and no name resolves.
        "--proxy-server=http://127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        "--window-size=1280,2400",
        "--virtual-time-budget=5000",
        *extra,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def the_report() -> MonitorReport:
    """A report as the monitor writes one: shifted traffic, labels, a history across two versions."""
    contract = monitoring_contract()
    data = validate_file(generate(1200, seed=1).to_csv(index=False).encode(), "train.csv", contract)
    trained = train(data.frame, contract)
    profile = reference_profile(
        trained.train_frame, predict_frame(trained.pipeline, trained.holdout, contract), contract
    )
    shifted = generate(400, seed=9, covariate_shift=0.8, concept_drift=0.6)
    canonical = validate_file(shifted.to_csv(index=False).encode(), "live.csv", contract).frame
    predictions = predict_frame(trained.pipeline, canonical, contract)
    inputs = pd.DataFrame(request_rows(shifted), dtype=object)
    drift = compute_drift(inputs, predictions, profile, contract)
    live = live_performance(predictions.assign(churned=shifted["churned"].to_numpy()), contract)
    holdout = {"roc_auc": 0.85, "accuracy": 0.8}
    decision = decide(drift, live, holdout, contract.monitoring_policy, None, NOW)
    history = [
        MetricPoint(
            time=NOW - timedelta(hours=6 * (8 - i)), metric=0.85 - 0.03 * i, version=1 if i < 5 else 2
        )
        for i in range(8)
    ]
    return MonitorReport(
        model="churn",
        version=2,
        window_start=NOW - timedelta(hours=6),
        window_end=NOW,
        rows=drift.rows,
        labelled_rows=live.rows,
        drift=drift,
        live=live,
        holdout_metrics=holdout,
        metric="roc_auc",
        metric_history=history,
        policy=contract.monitoring_policy,
        decision=decision,
        generated_at=NOW,
        notes=['a note with <markup> & quotes " that must stay text'],
    )


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MonitorReport]:
    chromium()
    report = the_report()
    page = tmp_path_factory.mktemp("report") / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    return page, report


def expected_charts(report: MonitorReport) -> int:
    drift = report.drift
    assert drift is not None
    predictions = len(drift.prediction.distributions) if drift.prediction else 0
    # PSI per feature, one per drifted feature, the prediction distributions, the live metric over time.
    return 1 + len(drift.drifted_features) + predictions + 1


def test_the_report_opens_and_its_dom_holds_every_chart(
    report_page: tuple[Path, MonitorReport], tmp_path: Path
) -> None:
    page, report = report_page
    opened = browse(page, tmp_path / "profile", "--dump-dom")
    assert opened.returncode == 0, opened.stderr[-2000:]
    dom = opened.stdout
    assert "<title>churn v2: monitoring" in dom
    assert dom.count("<svg") == expected_charts(report)
    assert "Decision: retrain" in dom
    assert "&lt;markup&gt;" in dom and "<markup>" not in dom
    assert not re.search(r"<script|<img|<link|<iframe|https?://(?!www\.w3\.org/2000/svg)", dom)
    console_errors = [line for line in opened.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console_errors == []


def test_every_chart_is_drawn_with_a_size_and_nothing_is_requested(
    report_page: tuple[Path, MonitorReport], tmp_path: Path
) -> None:
    """A copy of the page with a probe script measures what Chromium laid out: each SVG has a width, a height
    and marks drawn in it; the page asked for no resource and raised no error."""
    page, report = report_page
    source = page.read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(
        source.replace("<head>", f"<head>{CATCH_ERRORS}", 1).replace("</body>", f"{PROBE}</body>", 1),
        encoding="utf-8",
    )
    opened = browse(probed, tmp_path / "profile", "--dump-dom")
    assert opened.returncode == 0, opened.stderr[-2000:]
    match = re.search(r'data-probe="([^"]*)"', opened.stdout)
    assert match, "the probe did not run"
    probe: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    assert probe["errors"] == [] and probe["requested"] == []
    charts = probe["charts"]
    assert len(charts) == expected_charts(report)
    for chart in charts:
        assert chart["width"] > 100 and chart["height"] > 100, chart
        assert chart["marks"] > 0, chart
    titles = [c["title"] for c in charts]
    assert titles[0] == "PSI per feature" and titles[-1] == "Live roc_auc over time"


def test_a_screenshot_of_the_report_is_a_picture(
    report_page: tuple[Path, MonitorReport], tmp_path: Path
) -> None:
    page, _ = report_page
    picture = tmp_path / "report.png"
    taken = browse(page, tmp_path / "profile", f"--screenshot={picture}")
    assert taken.returncode == 0, taken.stderr[-2000:]
    body = picture.read_bytes()
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(body) > 50_000  # a page of text and colour, not a blank one


def test_the_experiment_page_draws_every_chart_with_a_size_and_requests_nothing(tmp_path: Path) -> None:
    """The page `flywheel experiment show` writes, measured the same way: the trial chart and one chart per
    searched parameter laid out with a size and marks, nothing requested, no error, the hostile value text."""
    from cli.experiment_page import render_experiment_html
    from tests.unit.test_experiment_page import HOSTILE, SPACE, experiment, trials

    chromium()
    probed = tmp_path / "experiment.html"
    source = render_experiment_html(experiment(), trials())
    probed.write_text(
        source.replace("<head>", f"<head>{CATCH_ERRORS}", 1).replace("</body>", f"{PROBE}</body>", 1),
        encoding="utf-8",
    )
    opened = browse(probed, tmp_path / "profile", "--dump-dom")
    assert opened.returncode == 0, opened.stderr[-2000:]
    match = re.search(r'data-probe="([^"]*)"', opened.stdout)
    assert match, "the probe did not run"
    probe: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    assert probe["errors"] == [] and probe["requested"] == []
    charts = probe["charts"]
    assert [c["title"] for c in charts] == ["roc_auc over trials", *(f"roc_auc by {n}" for n in SPACE)]
    for chart in charts:
        assert chart["width"] > 100 and chart["height"] > 100, chart
        assert chart["marks"] > 0, chart
    assert html.escape(HOSTILE, quote=False) in opened.stdout
