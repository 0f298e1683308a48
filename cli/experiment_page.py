"""One experiment as a self-contained HTML page: the metric over trials, each parameter against the metric,
and the best trials side by side (written by ``flywheel experiment show``).

Built from :mod:`shared.charts` like the monitoring report: inline CSS and SVG only, every text from data
escaped, each chart an image labelled by its title and description. Trials that failed or ran out of time
are drawn on the axis of the trial chart and listed with their errors; they never move a scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from itertools import count
from statistics import pstdev
from typing import Any

from shared.charts import (
    BLUE,
    GREY,
    GRID,
    ORANGE,
    VERMILION,
    Svg,
    facts,
    figure,
    moment,
    nice_ticks,
    number,
    page,
    section,
    text,
)
from shared.data.search_space import ExperimentPolicy, SearchDimension
from shared.experiments import Experiment, Trial, TrialStatus

__all__ = ["BEST_SHOWN", "render_experiment_html"]

BEST_SHOWN = 5  # trials in the side-by-side table
_CSS = """
.winner { border-left: 0.4rem solid #009E73; background: #eaf7f2; padding: 0.6rem 1rem; }
.winner.none { border-color: #D55E00; background: #fdf0e9; }
.winner h2 { border: none; margin: 0 0 0.3rem; }
td.best, th.best { background: #eaf7f2; }
"""


def _scored(trials: Sequence[Trial]) -> list[Trial]:
    return [t for t in trials if t.status is TrialStatus.SUCCEEDED and t.value is not None]


def _value(trial: Trial) -> float:
    return trial.value if trial.value is not None else math.nan


def _ranked(experiment: Experiment, trials: Sequence[Trial]) -> list[Trial]:
    sign = -1.0 if experiment.higher_is_better else 1.0
    return sorted(_scored(trials), key=lambda t: (sign * _value(t), t.number))


def _metric_scale(values: Sequence[float]) -> list[float]:
    pad = (max(values) - min(values)) * 0.08 or max(abs(max(values)) * 0.05, 0.01)
    return nice_ticks(min(values) - pad, max(values) + pad)


def _tip(experiment: Experiment, trial: Trial) -> str:
    params = ", ".join(f"{k}={_shown(v)}" for k, v in trial.params.items())
    outcome = (
        f"{experiment.metric} {number(trial.value, 4)}"
        if trial.status is TrialStatus.SUCCEEDED
        else f"{trial.status.value}: {trial.error_type or ''}"
    )
    return f"trial {trial.number}: {outcome} ({params})"


def _shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _progress_chart(ids: Iterator[int], experiment: Experiment, trials: Sequence[Trial]) -> str:
    """Each trial's metric in the order asked, the best so far as a line, the lost trials on the axis."""
    metric, title = experiment.metric, f"{experiment.metric} over trials"
    left, right, top, bottom = 64, 24, 48, 56
    width, height = 720, 320
    scored = _scored(trials)
    lost = [t for t in trials if t.status in {TrialStatus.FAILED, TrialStatus.TIMEOUT}]
    description = (
        f"{metric} of {len(scored)} scored trial(s) in the order they were asked"
        + (f"; best {number(experiment.best_value, 4)} at trial {experiment.best_trial}" if scored else "")
        + (f"; {len(lost)} trial(s) failed or timed out, marked on the axis" if lost else "")
        + "."
    )
    chart = Svg(ids, width, height, title, description)
    chart.text(8, 18, title, bold=True, size=13)
    chart.legend(left, 38, [("trial", BLUE), ("best so far", ORANGE), ("failed or timed out", VERMILION)])
    plot_w, plot_h = width - left - right, height - top - bottom
    if not trials:
        chart.text(width / 2, top + plot_h / 2, "No trial yet", anchor="middle", size=13)
        return chart.render()
    last = max(t.number for t in trials)
    values = [_value(t) for t in scored] or [0.0, 1.0]
    scale = _metric_scale(values)
    low, high = scale[0], scale[-1]

    def x_of(n: int) -> float:
        return left + (plot_w / 2 if last == 0 else n / last * plot_w)

    def y_of(v: float) -> float:
        return top + plot_h - (v - low) / (high - low) * plot_h

    for tick in scale:
        chart.line(left, y_of(tick), left + plot_w, y_of(tick), GRID)
        chart.text(left - 6, y_of(tick) + 4, f"{tick:g}", anchor="end", size=11)
    better = max if experiment.higher_is_better else min
    running: list[tuple[float, float]] = []
    best_so_far: float | None = None
    for trial in sorted(scored, key=lambda t: t.number):
        best_so_far = _value(trial) if best_so_far is None else better(best_so_far, _value(trial))
        if running:
            running.append((x_of(trial.number), running[-1][1]))
        running.append((x_of(trial.number), y_of(best_so_far)))
    if running:
        running.append((x_of(last), running[-1][1]))
        chart.path(running, ORANGE)
    for trial in scored:
        winner = trial.number == experiment.best_trial
        chart.circle(
            x_of(trial.number),
            y_of(_value(trial)),
            VERMILION if winner else BLUE,
            _tip(experiment, trial) + (" (best)" if winner else ""),
            radius=5.5 if winner else 3.5,
        )
    axis = top + plot_h
    for trial in lost:
        x = x_of(trial.number)
        chart.rect(x - 3, axis - 3, 6, 6, VERMILION, _tip(experiment, trial))
    chart.line(left, axis, left + plot_w, axis)
    for n in sorted({0, last, *(round(t) for t in nice_ticks(0, last or 1) if 0 <= t <= last)}):
        chart.text(x_of(n), axis + 16, str(n), anchor="middle", size=11)
    chart.text(left + plot_w / 2, height - 10, "trial (in the order asked)", anchor="middle", size=11)
    chart.text(14, top + plot_h / 2, metric, anchor="middle", rotate=True, size=11)
    return chart.render()


def _positions(
    name: str, dimension: SearchDimension | None, trials: Sequence[Trial]
) -> tuple[Callable[[Any], float] | None, list[tuple[float, str]], str]:
    """A parameter's axis: value -> position in [0, 1] (None when the values cannot be placed), its tick
    labels, and how the axis reads."""
    values = [t.params[name] for t in trials if name in t.params]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if (dimension is not None and dimension.kind == "choice") or not numeric:
        choices = list(dimension.choice or ()) if dimension is not None and dimension.choice else []
        for v in values:
            if v not in choices:
                choices.append(v)
        if not choices:
            return None, [], ""
        slot = {repr(c): (i + 0.5) / len(choices) for i, c in enumerate(choices)}
        return (lambda v: slot[repr(v)]), [(slot[repr(c)], _shown(c)) for c in choices], "choice"
    if dimension is not None and (dimension.float_range or dimension.int_range):
        low, high = (float(b) for b in (dimension.float_range or dimension.int_range or (0, 1)))
    elif values:
        low, high = float(min(values)), float(max(values))
    else:
        return None, [], ""
    if high <= low:
        high = low + 1.0
    if dimension is not None and dimension.log and low > 0:
        lo, hi = math.log10(low), math.log10(high)
        marks = [10.0**e for e in range(math.ceil(lo), math.floor(hi) + 1)] or [low, high]
        return (
            (lambda v: (math.log10(v) - lo) / (hi - lo)),
            [((math.log10(m) - lo) / (hi - lo), f"{m:g}") for m in marks if low <= m <= high],
            "log scale",
        )
    marks = [m for m in nice_ticks(low, high, 5) if low <= m <= high]
    return (
        (lambda v: (float(v) - low) / (high - low)),
        [((m - low) / (high - low), f"{m:g}") for m in marks],
        "",
    )


def _parameter_chart(
    ids: Iterator[int],
    experiment: Experiment,
    name: str,
    dimension: SearchDimension | None,
    trials: Sequence[Trial],
) -> str:
    """One parameter against the metric: a point per scored trial, the winner larger and vermilion."""
    metric = experiment.metric
    scored = [t for t in _scored(trials) if name in t.params]
    left, right, top, bottom = 58, 16, 34, 48
    width, height = 340, 250
    place, marks, reads = _positions(name, dimension, scored)
    description = f"{metric} against {name} for {len(scored)} scored trial(s)" + (
        "; " + "; ".join(f"{name}={_shown(t.params[name])}: {number(t.value, 4)}" for t in scored[:40])
        if scored
        else ""
    )
    title = f"{metric} by {name}"
    chart = Svg(ids, width, height, title, description)
    chart.text(8, 18, title, bold=True, size=13)
    plot_w, plot_h = width - left - right, height - top - bottom
    if not scored or place is None:
        chart.text(width / 2, top + plot_h / 2, "No scored trial", anchor="middle", size=13)
        return chart.render()
    scale = _metric_scale([_value(t) for t in scored])
    low, high = scale[0], scale[-1]

    def y_of(v: float) -> float:
        return top + plot_h - (v - low) / (high - low) * plot_h

    for tick in scale:
        chart.line(left, y_of(tick), left + plot_w, y_of(tick), GRID)
        chart.text(left - 6, y_of(tick) + 4, f"{tick:g}", anchor="end", size=11)
    axis = top + plot_h
    chart.line(left, axis, left + plot_w, axis)
    for position, label in marks:
        chart.line(left + position * plot_w, axis, left + position * plot_w, axis + 4, GREY)
        chart.text(left + position * plot_w, axis + 16, label, anchor="middle", size=11)
    for trial in sorted(scored, key=lambda t: t.number == experiment.best_trial):
        winner = trial.number == experiment.best_trial
        x = left + min(max(place(trial.params[name]), 0.0), 1.0) * plot_w
        chart.circle(
            x,
            y_of(_value(trial)),
            VERMILION if winner else BLUE,
            _tip(experiment, trial),
            radius=5.5 if winner else 3.5,
        )
    axis_label = f"{name} ({reads})" if reads else name
    chart.text(left + plot_w / 2, height - 8, axis_label, anchor="middle", size=11)
    chart.text(14, top + plot_h / 2, metric, anchor="middle", rotate=True, size=11)
    return chart.render()


def _winner_section(experiment: Experiment, trials: Sequence[Trial]) -> str:
    if experiment.best_trial is None:
        reason = experiment.error or "no trial has been scored yet"
        return (
            '<section class="winner none" aria-labelledby="winner-heading">'
            f'<h2 id="winner-heading">No winner</h2><p>{text(reason)}</p></section>'
        )
    params = ", ".join(f"{k} = {_shown(v)}" for k, v in (experiment.best_params or {}).items())
    scored = len(_scored(trials))
    return (
        '<section class="winner" aria-labelledby="winner-heading">'
        f'<h2 id="winner-heading">Winner: trial {experiment.best_trial}, {text(experiment.metric)} '
        f"{text(number(experiment.best_value, 4))}</h2>"
        f"<p>{text(params)}</p><p>Best of {scored} scored trial(s); "
        "its parameters are refit on the whole training window and judged on the holdout against "
        "production, as any candidate.</p></section>"
    )


def _facts_section(experiment: Experiment, trials: Sequence[Trial]) -> str:
    policy = experiment.policy
    validation = (
        f"{policy['cv']['folds']}-fold cross-validation"
        if isinstance(policy.get("cv"), dict)
        else f"validation fraction {policy.get('validation_fraction')}"
    )
    statuses = ", ".join(
        f"{sum(t.status is s for t in trials)} {s.value}"
        for s in TrialStatus
        if any(t.status is s for t in trials)
    )
    seconds = [t.seconds for t in trials if t.seconds is not None]
    ended = moment(experiment.ended_at) if experiment.ended_at else "still running"
    rows = [
        ("Model", experiment.model),
        ("Status", experiment.status.value),
        ("Run", experiment.run_id),
        ("Builder", experiment.builder),
        ("Code digest", experiment.code_digest or "none (a built-in estimator)"),
        (
            "Search",
            f"{policy.get('strategy')}, {policy.get('trials')} trial(s), {policy.get('parallel')} at a time; "
            f"{experiment.metric} ({'higher' if experiment.higher_is_better else 'lower'} is better)",
        ),
        ("Scored by", f"{validation} on the training window; the holdout is never read"),
        ("Trial budget", f"{policy.get('trial_timeout_seconds')} s each"),
        ("Trials", statuses or "none yet"),
        ("Trial time", f"{sum(seconds):.1f} s in all, longest {max(seconds):.1f} s" if seconds else "-"),
        ("Datasets", ", ".join(experiment.datasets) or "-"),
        ("Started", moment(experiment.started_at)),
        ("Ended", ended),
    ]
    if experiment.base_params:
        rows.insert(4, ("Fixed parameters", ", ".join(f"{k}={v}" for k, v in experiment.base_params.items())))
    return section("facts", "Experiment", facts(rows))


def _best_table(experiment: Experiment, trials: Sequence[Trial]) -> str:
    """The best trials as columns: the metric, its spread and each fold, every parameter, the time."""
    best = _ranked(experiment, trials)[:BEST_SHOWN]
    if not best:
        return "<p>No trial has been scored.</p>"
    names = list(dict.fromkeys(k for t in best for k in t.params))
    folds = max(len(t.folds) for t in best)

    def cells(values: Sequence[str]) -> str:
        return "".join(
            f"<td class='number{' best' if i == 0 and best[0].number == experiment.best_trial else ''}'>"
            f"{text(v)}</td>"
            for i, v in enumerate(values)
        )

    header = "<tr><th scope='col'></th>" + "".join(
        f"<th scope='col'{' class=best' if t.number == experiment.best_trial else ''}>"
        f"#{rank} · trial {t.number}</th>"
        for rank, t in enumerate(best, start=1)
    )
    metric = experiment.metric
    per_fold = [[f.get(metric) for f in t.folds] for t in best]
    rows = [
        f"<tr><th scope='row'>{text(metric)} (mean of folds)</th>"
        + cells([number(t.value, 4) for t in best])
        + "</tr>",
        "<tr><th scope='row'>spread across folds (sd)</th>"
        + cells(
            [
                number(pstdev(v), 4) if len(v) > 1 else "-"
                for v in ([x for x in f if x is not None] for f in per_fold)
            ]
        )
        + "</tr>",
    ]
    for i in range(folds):
        rows.append(
            f"<tr><th scope='row'>fold {i + 1}</th>"
            + cells([number(f[i], 4) if i < len(f) and f[i] is not None else "-" for f in per_fold])
            + "</tr>"
        )
    for name in names:
        rows.append(
            f"<tr><th scope='row'>{text(name)}</th>"
            + cells([_shown(t.params[name]) if name in t.params else "-" for t in best])
            + "</tr>"
        )
    rows.append(
        "<tr><th scope='row'>seconds</th>"
        + cells([f"{t.seconds:.1f}" if t.seconds is not None else "-" for t in best])
        + "</tr>"
    )
    caption = f"<caption>The {len(best)} best of {len(_scored(trials))} scored trial(s), best first</caption>"
    return f"<table>{caption}<thead>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _first_line(error: str | None) -> str:
    lines = (error or "").strip().splitlines()
    return lines[0][:300] if lines else ""


def _lost_table(trials: Sequence[Trial]) -> str:
    lost = [t for t in trials if t.status in {TrialStatus.FAILED, TrialStatus.TIMEOUT}]
    if not lost:
        return ""
    rows = "".join(
        f"<tr><td class='number'>{t.number}</td><td>{text(t.status.value)}</td>"
        f"<td>{text(', '.join(f'{k}={_shown(v)}' for k, v in t.params.items()))}</td>"
        f"<td>{text(t.error_type or '')}: {text(_first_line(t.error))}</td></tr>"
        for t in lost
    )
    header = (
        "<tr><th scope='col'>trial</th><th scope='col'>status</th><th scope='col'>parameters</th>"
        "<th scope='col'>error</th></tr>"
    )
    table = f"<table><thead>{header}</thead><tbody>{rows}</tbody></table>"
    note = "<p>A lost trial is recorded and left out; the experiment goes on with the others.</p>"
    return section("lost", f"Failed or timed out ({len(lost)})", note + table)


def _dimensions(experiment: Experiment) -> dict[str, SearchDimension | None]:
    """The searched parameters, in the contract's order, with their ranges when the policy still reads."""
    try:
        return dict(ExperimentPolicy.model_validate(experiment.policy).space)
    except ValueError:
        space = experiment.policy.get("space")
        return dict.fromkeys(space if isinstance(space, dict) else [], None)


def render_experiment_html(experiment: Experiment, trials: Sequence[Trial]) -> str:
    """The experiment's page: the winner, the facts, the charts, the best trials side by side, the losses."""
    ids = count(1)
    trials = sorted(trials, key=lambda t: t.number)
    dims = _dimensions(experiment)
    for name in (k for t in trials for k in t.params):
        dims.setdefault(name, None)
    progress = figure(
        _progress_chart(ids, experiment, trials),
        "Points are trials; the line is the best value found so far; the large vermilion point won.",
    )
    parameters = "".join(
        figure(_parameter_chart(ids, experiment, name, dim, trials), f"{name} against {experiment.metric}")
        for name, dim in dims.items()
    )
    sections = [
        _winner_section(experiment, trials),
        _facts_section(experiment, trials),
        section("progress", f"{experiment.metric} over trials", progress),
        section("parameters", "Each parameter against the metric", f'<div class="charts">{parameters}</div>'),
        section("best", "The best trials side by side", _best_table(experiment, trials)),
        _lost_table(trials),
    ]
    return page(
        f"{experiment.model}: experiment {experiment.experiment_id}",
        f"{experiment.model}: experiment {experiment.experiment_id}",
        f"Started {moment(experiment.started_at)}; {experiment.status.value}",
        sections,
        _CSS,
    )
