"""The monitoring report as one self-contained HTML page: the decision, its evidence, and the plots.

Owns how a :class:`shared.monitoring.decision.MonitorReport` looks. :func:`render_html` returns a page that
needs nothing else: no script, no stylesheet, font or image from anywhere (inline CSS, system fonts, and
charts drawn here as inline SVG), so it opens the same from S3, from an e-mail or offline. Every text that
comes from data (feature names, categories, notes) is escaped; element ids are numbered, never derived from
names. Each chart carries a ``<title>`` and a ``<desc>`` that say what it shows, and axis labels.

Charts: PSI per feature with the threshold line; reference against live distribution for each drifted
feature; the prediction distributions; the live metric over time with the serving versions marked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from itertools import count
from typing import Any

from shared.charts import (
    ABSENT,
    BLUE,
    GRID,
    INK,
    ORANGE,
    SKY,
    VERMILION,
    Svg,
    clipped,
    figure,
    moment,
    nice_ticks,
    number,
    page,
    section,
    text,
)
from shared.charts import (
    facts as fact_list,
)
from shared.data.contract import METRICS
from shared.monitoring.decision import MetricPoint, MonitorReport
from shared.monitoring.drift import DriftReport, FeatureDrift

__all__ = ["render_html"]

REFERENCE_COLOUR = BLUE
LIVE_COLOUR = ORANGE
DRIFTED_COLOUR = VERMILION
STEADY_COLOUR = SKY
_ABSENT = ABSENT
# What only this page needs, beside the shared page style.
_CSS = """
.decision { border-left: 0.4rem solid #888; background: #f6f6f6; padding: 0.6rem 1rem; }
.decision.retrain { border-color: #D55E00; background: #fdf0e9; }
.decision.held_back { border-color: #E69F00; background: #fdf6e7; }
.decision.none { border-color: #009E73; background: #eaf7f2; }
.decision.insufficient_data { border-color: #888; }
.decision h2 { border: none; margin: 0 0 0.3rem; }
tr.drifted td:first-child { border-left: 0.3rem solid #D55E00; }
"""


def _p_value(value: float | None) -> str:
    if value is None:
        return _ABSENT
    return "< 1e-300" if value == 0 else f"{value:.2g}"


# --- charts ---------------------------------------------------------------------------------------------


def _share_label(value: float, step: float) -> str:
    return f"{value:.0%}" if step >= 0.01 else f"{value:.1%}"


def _distribution_chart(
    ids: Iterator[int],
    title: str,
    description: str,
    bins: Sequence[str],
    reference: Sequence[float],
    live: Sequence[float],
    x_label: str,
) -> str:
    """Grouped bars: the reference's share (blue) and the window's (orange) in each bin."""
    left, right, top, bottom = 56, 16, 50, 92
    width = max(380, min(900, left + right + 52 * len(bins)))
    height = 320
    chart = Svg(ids, width, height, title, description)
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = nice_ticks(0.0, min(1.0, max([*reference, *live, 0.01])))
    scale = ticks[-1]
    chart.text(8, 18, title, bold=True, size=13)
    chart.legend(left, 38, [("reference", REFERENCE_COLOUR), ("live", LIVE_COLOUR)])
    step = ticks[1] - ticks[0] if len(ticks) > 1 else scale
    for tick in ticks:
        y = top + plot_h - tick / scale * plot_h
        chart.line(left, y, left + plot_w, y, GRID)
        chart.text(left - 6, y + 4, _share_label(tick, step), anchor="end", size=11)
    group = plot_w / max(len(bins), 1)
    bar = max(2.0, min(32.0, group * 0.38))
    for i, label in enumerate(bins):
        x = left + i * group + group / 2
        for offset, share, colour, side in (
            (-bar, reference[i], REFERENCE_COLOUR, "reference"),
            (0.0, live[i], LIVE_COLOUR, "live"),
        ):
            h = share / scale * plot_h
            chart.rect(x + offset, top + plot_h - h, bar, h, colour, f"{label}: {side} {share:.1%}")
        chart.parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 12:.1f}" text-anchor="end" font-size="11" fill="{INK}" '
            f'transform="rotate(-40 {x:.1f} {top + plot_h + 12:.1f})">'
            + (f"<title>{text(label)}</title>" if clipped(label) != label else "")
            + f"{text(clipped(label))}</text>"
        )
    chart.line(left, top + plot_h, left + plot_w, top + plot_h)
    chart.text(14, top + plot_h / 2, "share of rows", anchor="middle", rotate=True, size=11)
    chart.text(left + plot_w / 2, height - 6, x_label, anchor="middle", size=11)
    return chart.render()


def _psi_chart(ids: Iterator[int], drift: DriftReport) -> str:
    """Horizontal bars, one per feature, with the PSI threshold as a dashed line. The axis stops at five
    times the threshold, so one huge PSI cannot flatten the rest; a longer bar ends in a cut mark."""
    features = drift.features
    threshold = drift.psi_threshold
    left, right, top, row = 170, 90, 56, 22
    width = 660
    height = top + row * max(len(features), 1) + 48
    description = (
        f"PSI of each of {len(features)} features against the reference; the dashed line is the "
        f"threshold {threshold:g}. "
        + "; ".join(f"{f.name}: {number(f.psi)}{' (drifted)' if f.drifted else ''}" for f in features)
    )
    chart = Svg(ids, width, height, "PSI per feature", description)
    chart.text(8, 18, "PSI per feature", bold=True, size=13)
    chart.legend(left, 38, [("drifted", DRIFTED_COLOUR), ("not drifted", STEADY_COLOUR)])
    plot_w = width - left - right
    largest = max([0.0, *(f.psi for f in features if f.psi is not None)])
    ticks = nice_ticks(0.0, max(threshold * 1.5, min(largest, threshold * 5)))
    highest = ticks[-1]
    plot_bottom = top + row * max(len(features), 1)
    for tick in ticks:
        tx = left + tick / highest * plot_w
        chart.line(tx, top, tx, plot_bottom, GRID)
        chart.text(tx, plot_bottom + 16, f"{tick:g}", anchor="middle", size=11)
    for i, feature in enumerate(features):
        y = top + i * row
        chart.text(left - 8, y + 15, clipped(feature.name), anchor="end", full=feature.name)
        if feature.psi is None:
            chart.text(left + 4, y + 15, "not computed", size=11)
            continue
        colour = DRIFTED_COLOUR if feature.drifted else STEADY_COLOUR
        cut = feature.psi > highest
        length = min(feature.psi, highest) / highest * plot_w
        chart.rect(left, y + 4, length, row - 8, colour, f"{feature.name}: PSI {number(feature.psi)}")
        if cut:
            chart.line(left + length - 6, y + 2, left + length - 2, y + row - 2, "#ffffff")
            chart.line(left + length - 10, y + 2, left + length - 6, y + row - 2, "#ffffff")
        label = number(feature.psi) + (" (axis cut)" if cut else "")
        chart.text(left + length + 4, y + 15, label, size=11)
    x = left + threshold / highest * plot_w
    chart.line(x, top - 4, x, plot_bottom, INK, dashed=True)
    chart.text(x + 4, top - 6, f"threshold {threshold:g}", size=11)
    chart.line(left, plot_bottom, left + plot_w, plot_bottom)
    chart.text(left + plot_w / 2, height - 6, "population stability index (PSI)", anchor="middle", size=11)
    return chart.render()


def _history_chart(
    ids: Iterator[int],
    metric: str,
    points: Sequence[MetricPoint],
    holdout: float | None,
    allowed_drop: float,
    higher_is_better: bool,
) -> str:
    """The live metric of each past window, a line over time, with a dashed mark where the version
    changed; the holdout value and the limit the policy allows as horizontal lines."""
    title = f"Live {metric} over time"
    left, right, top, bottom = 60, 24, 40, 52
    width, height = 720, 300
    ordered = sorted(points, key=lambda p: p.time)
    versions = sorted({p.version for p in ordered})
    description = (
        f"{metric} measured on labelled captures in {len(ordered)} window(s)"
        + (f", served by version(s) {', '.join(f'v{v}' for v in versions)}" if versions else "")
        + (f"; holdout {metric} {holdout:.3f}" if holdout is not None else "")
        + "."
    )
    chart = Svg(ids, width, height, title, description)
    chart.text(8, 18, title, bold=True, size=13)
    plot_w, plot_h = width - left - right, height - top - bottom
    if not ordered:
        chart.text(width / 2, top + plot_h / 2, "No labelled window yet", anchor="middle", size=13)
        return chart.render()
    limit = None
    if holdout is not None:
        limit = holdout - allowed_drop if higher_is_better else holdout + allowed_drop
    values = [p.metric for p in ordered] + [v for v in (holdout, limit) if v is not None]
    pad = (max(values) - min(values)) * 0.05 or max(abs(max(values)) * 0.05, 0.01)
    ticks = nice_ticks(min(values) - pad, max(values) + pad)
    low, high = ticks[0], ticks[-1]
    start, end = ordered[0].time.timestamp(), ordered[-1].time.timestamp()
    span = end - start

    def x_of(moment: datetime) -> float:
        return left + (plot_w / 2 if span == 0 else (moment.timestamp() - start) / span * plot_w)

    def y_of(value: float) -> float:
        return top + plot_h - (value - low) / (high - low) * plot_h

    for value in ticks:
        chart.line(left, y_of(value), left + plot_w, y_of(value), GRID)
        chart.text(left - 6, y_of(value) + 4, f"{value:g}", anchor="end", size=11)
    if holdout is not None and limit is not None:
        chart.line(left, y_of(holdout), left + plot_w, y_of(holdout), REFERENCE_COLOUR, dashed=True)
        chart.text(left + plot_w - 2, y_of(holdout) - 4, f"holdout {holdout:.3f}", anchor="end", size=11)
        chart.line(left, y_of(limit), left + plot_w, y_of(limit), DRIFTED_COLOUR, dashed=True)
        chart.text(left + plot_w - 2, y_of(limit) + 13, f"allowed limit {limit:.3f}", anchor="end", size=11)
    previous = None
    for point in ordered:
        if point.version != previous:
            x = x_of(point.time)
            chart.line(x, top, x, top + plot_h, "#888888", dashed=True)
            chart.text(x + 3, top + 11, f"v{point.version}", size=11, bold=True)
            previous = point.version
    chart.path([(x_of(p.time), y_of(p.metric)) for p in ordered], LIVE_COLOUR)
    for point in ordered:
        tip = f"{moment(point.time)}: {metric} {point.metric:.3f} (v{point.version})"
        chart.circle(x_of(point.time), y_of(point.metric), LIVE_COLOUR, tip)
    chart.line(left, top + plot_h, left + plot_w, top + plot_h)
    first, last = ordered[0].time, ordered[-1].time
    chart.text(left, top + plot_h + 16, first.strftime("%Y-%m-%d %H:%M"), size=11)
    if last != first:
        chart.text(left + plot_w, top + plot_h + 16, last.strftime("%Y-%m-%d %H:%M"), anchor="end", size=11)
    chart.text(left + plot_w / 2, height - 8, "window end (UTC)", anchor="middle", size=11)
    chart.text(14, top + plot_h / 2, metric, anchor="middle", rotate=True, size=11)
    return chart.render()


# --- sections -------------------------------------------------------------------------------------------


def _decision_section(report: MonitorReport) -> str:
    decision = report.decision
    headline = decision.action.replace("_", " ")
    if decision.reason:
        headline += f" ({decision.reason})"
    items = "".join(f"<li>{text(r)}</li>" for r in decision.reasons)
    return (
        f'<section class="decision {text(decision.action)}" aria-labelledby="decision-heading">'
        f'<h2 id="decision-heading">Decision: {text(headline)}</h2><ul>{items}</ul></section>'
    )


def _facts_section(report: MonitorReport) -> str:
    policy = report.policy
    live = report.live.metrics.get(report.metric) if report.live is not None else None
    holdout = report.holdout_metrics.get(report.metric)
    drift = report.drift
    facts = [
        ("Window", f"{moment(report.window_start)} to {moment(report.window_end)}"),
        ("Rows", f"{report.rows:,} (at least {policy.min_rows:,} to judge drift)"),
        (
            "Labelled rows",
            f"{report.labelled_rows:,} (at least {policy.min_labelled_rows:,} to judge performance)",
        ),
        (f"Live {report.metric}", f"{number(live)} against {number(holdout)} on the holdout"),
    ]
    if drift is not None:
        facts.append(
            (
                "Drifted features",
                f"{len(drift.drifted_features)} of {len(drift.features)} "
                f"(share {drift.drift_share:.2f}; retraining at {policy.drift_share:.2f})",
            )
        )
        facts.append(
            (
                "Thresholds",
                f"PSI ≥ {drift.psi_threshold:g}; test p < {drift.p_value_threshold:.2g} "
                f"({policy.ks_p_value:g} / {len(drift.features)} features, Bonferroni); missing rate change "
                f"> {drift.max_missing_rate_change:g}; {report.metric} worse by > {policy.max_metric_drop:g}",
            )
        )
    return section("facts", "Window", fact_list(facts))


def _feature_description(feature: FeatureDrift) -> str:
    shares = "; ".join(
        f"{b}: reference {r:.1%}, live {v:.1%}"
        for b, r, v in zip(feature.bins, feature.reference_shares, feature.live_shares, strict=False)
    )
    return f"Share of rows in each bin of {feature.name}, reference against live. {shares}"


def _drifted_section(ids: Iterator[int], drift: DriftReport) -> str:
    drifted = [f for f in drift.features if f.drifted]
    if not drifted:
        body = "<p>No feature drifted. Every feature's statistics are in the table below.</p>"
    else:
        figures = []
        for feature in drifted:
            unit = (
                "category"
                if feature.kind == "categorical"
                else "value"
                if feature.kind == "boolean"
                else "bin"
            )
            svg = _distribution_chart(
                ids,
                f"{feature.name}: reference vs live",
                _feature_description(feature),
                feature.bins,
                feature.reference_shares,
                feature.live_shares,
                f"{feature.name} ({unit})",
            )
            figures.append(figure(svg, f"{feature.name}: " + "; ".join(feature.reasons)))
        body = f'<div class="charts">{"".join(figures)}</div>'
    return section("drifted", "Drifted features", body)


def _prediction_section(ids: Iterator[int], drift: DriftReport) -> str:
    prediction = drift.prediction
    if prediction is None:
        return ""
    figures = []
    for distribution in prediction.distributions:
        description = (
            f"{distribution.title} on the holdout (reference) and in the window (live); "
            + "; ".join(
                f"{b}: reference {r:.1%}, live {v:.1%}"
                for b, r, v in zip(
                    distribution.bins, distribution.reference_shares, distribution.live_shares, strict=False
                )
            )
        )
        svg = _distribution_chart(
            ids,
            f"Predictions: {distribution.title}",
            description,
            distribution.bins,
            distribution.reference_shares,
            distribution.live_shares,
            distribution.title,
        )
        figures.append(figure(svg, f"{distribution.title}: PSI {number(distribution.psi)}"))
    notes = "".join(f"<li>{text(n)}</li>" for n in [*prediction.reasons, *prediction.notes])
    listed = f'<ul class="notes">{notes}</ul>' if notes else ""
    return section("predictions", "Predictions", f'<div class="charts">{"".join(figures)}</div>{listed}')


def _feature_table(drift: DriftReport) -> str:
    header = (
        "<tr><th scope='col'>Feature</th><th scope='col'>Kind</th><th scope='col'>PSI</th>"
        "<th scope='col'>Test</th><th scope='col'>Statistic</th><th scope='col'>p-value</th>"
        "<th scope='col'>Missing (reference → live)</th><th scope='col'>Drifted</th>"
        "<th scope='col'>Reasons and notes</th></tr>"
    )
    rows = []
    for f in drift.features:
        statistic = f.ks_statistic if f.test == "ks" else f.chi2_statistic
        test = {"ks": "KS", "chi2": "chi-square"}.get(f.test or "", _ABSENT)
        missing = f"{f.missing_rate_reference:.1%} → " + (
            f"{f.missing_rate_live:.1%}" if f.missing_rate_live is not None else _ABSENT
        )
        remarks = "".join(f"<li>{text(r)}</li>" for r in f.reasons) + "".join(
            f'<li class="note">{text(n)}</li>' for n in f.notes
        )
        marked = ' class="drifted"' if f.drifted else ""
        rows.append(
            f"<tr{marked}><th scope='row'>{text(f.name)}</th>"
            f"<td>{text(f.kind)}</td><td class='number'>{number(f.psi)}</td><td>{test}</td>"
            f"<td class='number'>{number(statistic)}</td><td class='number'>{_p_value(f.p_value)}</td>"
            f"<td class='number'>{text(missing)}</td><td>{'yes' if f.drifted else 'no'}</td>"
            f"<td><ul>{remarks}</ul></td></tr>"
        )
    caption = (
        f"<caption>{len(drift.features)} features compared on {drift.rows:,} rows "
        f"(PSI with a {drift.epsilon:g} floor on empty buckets)</caption>"
    )
    return f"<table>{caption}<thead>{header}</thead><tbody>{''.join(rows)}</tbody></table>"


def render_html(report: MonitorReport | Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page (``report`` may be its JSON, as the monitor wrote it)."""
    if not isinstance(report, MonitorReport):
        report = MonitorReport.model_validate(report)
    ids = count(1)
    drift = report.drift
    sections = [_decision_section(report), _facts_section(report)]
    if drift is not None:
        psi = figure(_psi_chart(ids, drift), "Bars at or past the dashed line drifted by PSI alone.")
        sections += [
            section("psi", "Drift per feature", psi),
            _drifted_section(ids, drift),
            _prediction_section(ids, drift),
        ]
    higher = next((m[report.metric] for m in METRICS.values() if report.metric in m), True)
    history = _history_chart(
        ids,
        report.metric,
        report.metric_history,
        report.holdout_metrics.get(report.metric),
        report.policy.max_metric_drop,
        higher,
    )
    versions = "Dashed vertical lines mark where a new version began serving."
    sections.append(section("history", f"Live {report.metric}", figure(history, versions)))
    if drift is not None:
        sections.append(section("table", "Every feature", _feature_table(drift)))
    notes = [
        *report.notes,
        *(drift.notes if drift is not None else []),
        *(report.live.notes if report.live else []),
    ]
    if notes:
        items = "".join(f"<li>{text(n)}</li>" for n in notes)
        sections.append(section("notes", "Notes", f'<ul class="notes">{items}</ul>'))
    window = f"{moment(report.window_start)} to {moment(report.window_end)}"
    title = f"{report.model} v{report.version}: monitoring, {window}"
    return page(
        title,
        f"{report.model} v{report.version}: monitoring report",
        f"Window {window}; generated {moment(report.generated_at)}",
        sections,
        _CSS,
    )
