"""Self-contained HTML pages with charts drawn as inline SVG: the pieces every Flywheel page is built from.

A page made here needs nothing else: no script, no stylesheet, font or image from anywhere (inline CSS,
system fonts, charts as inline SVG), so it opens the same from S3, from an e-mail or offline. Every text
that comes from data passes through :func:`text`, which escapes it; element ids are numbered, never derived
from names. Each chart is an accessible image labelled by its own ``<title>`` and ``<desc>``.

Used by the monitoring report (:mod:`shared.monitoring.report`) and the experiment page
(``flywheel experiment show``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import datetime
from html import escape

__all__ = [
    "BASE_CSS",
    "BLUE",
    "GREEN",
    "GREY",
    "GRID",
    "INK",
    "ORANGE",
    "SKY",
    "VERMILION",
    "Svg",
    "clipped",
    "facts",
    "figure",
    "moment",
    "nice_ticks",
    "number",
    "page",
    "section",
    "text",
]

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
BLUE = "#0072B2"
ORANGE = "#E69F00"
VERMILION = "#D55E00"
SKY = "#56B4E9"
GREEN = "#009E73"
GREY = "#888888"
INK = "#222222"
GRID = "#dddddd"

ABSENT = "n/a"
LABEL_CHARS = 22
BASE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: #222; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 0.3rem; }
.meta { color: #555; margin-top: 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5rem; }
figure { margin: 0; }
figcaption { font-size: 0.85rem; color: #555; max-width: 40rem; }
svg text { font-family: inherit; }
.notes li { color: #555; }
"""


# --- formatting -----------------------------------------------------------------------------------------


def text(value: object) -> str:
    """``value`` as HTML text or attribute content: escaped, quotes included."""
    return escape(str(value), quote=True)


def number(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return ABSENT
    if value == 0:
        return "0"
    if abs(value) < 10**-digits:
        return f"{value:.2g}"
    return f"{value:.{digits}f}"


def moment(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value.utcoffset() is not None else value.isoformat()


def clipped(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


# --- charts ---------------------------------------------------------------------------------------------


class Svg:
    """One accessible chart: ``role="img"`` labelled by its own ``<title>`` and ``<desc>``."""

    def __init__(self, ids: Iterator[int], width: int, height: int, title: str, description: str) -> None:
        number = next(ids)
        self.width, self.height = width, height
        self.parts = [
            f'<svg role="img" aria-labelledby="chart-{number}-title chart-{number}-desc" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
            f'<title id="chart-{number}-title">{text(title)}</title>',
            f'<desc id="chart-{number}-desc">{text(description)}</desc>',
        ]

    def line(
        self, x1: float, y1: float, x2: float, y2: float, colour: str = INK, dashed: bool = False
    ) -> None:
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        self.parts.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}"{dash}/>'
        )

    def text(
        self,
        x: float,
        y: float,
        content: str,
        *,
        anchor: str = "start",
        size: int = 12,
        rotate: bool = False,
        bold: bool = False,
        full: str | None = None,
    ) -> None:
        turn = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
        weight = ' font-weight="600"' if bold else ""
        hover = f"<title>{text(full)}</title>" if full is not None and full != content else ""
        self.parts.append(
            f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{INK}"'
            f"{turn}{weight}>{hover}{text(content)}</text>"
        )

    def rect(self, x: float, y: float, width: float, height: float, colour: str, tip: str) -> None:
        self.parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(width, 0.0):.1f}" height="{max(height, 0.0):.1f}" '
            f'fill="{colour}"><title>{text(tip)}</title></rect>'
        )

    def circle(self, x: float, y: float, colour: str, tip: str, radius: float = 3.5) -> None:
        self.parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:g}" fill="{colour}">'
            f"<title>{text(tip)}</title></circle>"
        )

    def path(self, points: Sequence[tuple[float, float]], colour: str) -> None:
        d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
        self.parts.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"/>')

    def legend(self, x: float, y: float, entries: Sequence[tuple[str, str]]) -> None:
        for name, colour in entries:
            self.parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{colour}"/>')
            self.text(x + 14, y, name)
            x += 24 + 7 * len(name)

    def render(self) -> str:
        return "".join([*self.parts, "</svg>"])


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart) covering ``low`` to ``high``."""
    span = high - low if high > low else abs(high) or 1.0
    raw = span / (most - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    found = [first]
    while found[-1] < high - 1e-9 * step:
        found.append(first + len(found) * step)
    return [round(t, 12) for t in found]


# --- page -----------------------------------------------------------------------------------------------


def section(key: str, heading: str, body: str, css_class: str = "") -> str:
    labelled = f'aria-labelledby="{key}-heading"'
    classes = f' class="{text(css_class)}"' if css_class else ""
    return f'<section{classes} {labelled}><h2 id="{key}-heading">{text(heading)}</h2>{body}</section>'


def figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{text(caption)}</figcaption></figure>"


def facts(rows: Sequence[tuple[str, str]]) -> str:
    """A definition list of (name, value) pairs, both escaped."""
    items = "".join(f"<dt>{text(k)}</dt><dd>{text(v)}</dd>" for k, v in rows)
    return f'<dl class="facts">{items}</dl>'


def page(title: str, heading: str, meta: str, sections: Sequence[str], css: str = "") -> str:
    """The whole document: ``title`` and ``heading`` and ``meta`` are plain text; ``sections`` are HTML."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{text(title)}</title><style>{BASE_CSS}{css}</style></head><body>"
        f'<header><h1>{text(heading)}</h1><p class="meta">{text(meta)}</p></header>'
        f"<main>{''.join(sections)}</main></body></html>\n"
    )
