"""Line charts as inline SVG text, for the HTML report (no plotting library, no network).

A chart is a few series of (x, y) points on shared axes with "nice" ticks (1, 2, 5 x 10^k),
optional dashed vertical markers (the steps at which modules were rescored) and a legend.
The SVG scales with the page (viewBox), and every label is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

FONT = "font-family='system-ui,-apple-system,Segoe UI,Roboto,sans-serif'"
CHAR_WIDTH = 0.64
"""Width of an average character of FONT, in font sizes: no font metrics in SVG text, so labels
are placed by this estimate (generous, so a label estimated inside stays inside)."""
MARKER_FONT = 10
"""Font size of a marker's label."""


def text_width(text: str, font_size: float) -> float:
    """Estimated width of `text` at `font_size`, in the chart's units."""
    return CHAR_WIDTH * font_size * len(text)


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]
    color: str
    dots: bool = False
    """Draw a dot at each point (sparse series such as validation scores)."""
    dashed: bool = False
    """Draw the line dashed (a second series that may lie on top of the first)."""


@dataclass(frozen=True)
class Marker:
    """A vertical line at `x` with a short label (e.g. "rescored")."""

    x: float
    label: str
    color: str = "#888"


@dataclass(frozen=True)
class ChartStyle:
    width: int = 540
    height: int = 250
    margin_left: int = 52
    margin_right: int = 16
    margin_top: int = 30
    margin_bottom: int = 40
    markers: Sequence[Marker] = field(default_factory=tuple)
    legend: bool = True
    """False where the colours are explained elsewhere (class colours, the page's class legend)."""


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:  # one value: centred, not at an edge
        half = abs(low) / 2 or 1.0
        low, high = low - half, low + half
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def line_chart(
    series: Sequence[Series], *, title: str, x_label: str, y_label: str, y_range: tuple[float, float] | None = None, style: ChartStyle = ChartStyle()
) -> str:
    """The SVG text of a line chart; non-finite points are left out."""
    clean = [(s, [(float(x), float(y)) for x, y in s.points if math.isfinite(x) and math.isfinite(y)]) for s in series]
    xs = [x for _, pts in clean for x, _ in pts] + [m.x for m in style.markers]
    ys = [y for _, pts in clean for _, y in pts]
    width, height = style.width, style.height
    left, right = style.margin_left, width - style.margin_right
    top, bottom = style.margin_top, height - style.margin_bottom
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' role='img' class='chart' {FONT}>",
        f"<title>{escape(title)}</title>",
        f"<text x='{left}' y='18' font-size='13' font-weight='600' fill='#222'>{escape(title)}</text>",
    ]
    if not ys:
        parts.append(f"<text x='{width / 2}' y='{height / 2}' text-anchor='middle' font-size='12' fill='#777'>nothing recorded</text></svg>")
        return "".join(parts)
    x_ticks = nice_ticks(min(xs), max(xs))
    y_ticks = nice_ticks(*(y_range or (min(ys), max(ys))))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def px(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1) * (right - left)

    def py(y: float) -> float:
        return bottom - (y - y0) / ((y1 - y0) or 1) * (bottom - top)

    for tick in y_ticks:
        parts.append(f"<line x1='{left}' x2='{right}' y1='{py(tick):.1f}' y2='{py(tick):.1f}' stroke='#e6e6e6'/>")
        parts.append(f"<text x='{left - 6}' y='{py(tick) + 4:.1f}' text-anchor='end' font-size='11' fill='#555'>{_label(tick)}</text>")
    for tick in x_ticks:
        parts.append(f"<text x='{px(tick):.1f}' y='{bottom + 15}' text-anchor='middle' font-size='11' fill='#555'>{_label(tick)}</text>")
    parts.append(f"<line x1='{left}' x2='{right}' y1='{bottom}' y2='{bottom}' stroke='#999'/>")
    parts.append(f"<line x1='{left}' x2='{left}' y1='{top}' y2='{bottom}' stroke='#999'/>")
    parts.append(f"<text x='{(left + right) / 2}' y='{height - 6}' text-anchor='middle' font-size='11' fill='#555'>{escape(x_label)}</text>")
    parts.append(
        f"<text x='12' y='{(top + bottom) / 2}' text-anchor='middle' font-size='11' fill='#555' "
        f"transform='rotate(-90 12 {(top + bottom) / 2})'>{escape(y_label)}</text>"
    )
    for marker in style.markers:
        x = px(marker.x)
        parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top}' y2='{bottom}' stroke='{marker.color}' stroke-dasharray='4 3'/>")
        # Right of the line, or left of it (anchored at its end) where it would leave the viewBox:
        # the best step is often the last, at the right edge.
        fits_right = x + 3 + text_width(marker.label, MARKER_FONT) <= width
        anchor = f"x='{x + 3:.1f}'" if fits_right else f"x='{x - 3:.1f}' text-anchor='end'"
        parts.append(f"<text {anchor} y='{top + 10}' font-size='{MARKER_FONT}' fill='{marker.color}'>{escape(marker.label)}</text>")
    for s, pts in clean:
        if len(pts) > 1:
            path = " ".join(f"{'M' if i == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for i, (x, y) in enumerate(pts))
            dash = " stroke-dasharray='6 4'" if s.dashed else ""
            parts.append(f"<path d='{path}' fill='none' stroke='{s.color}' stroke-width='1.8'{dash}/>")
        if s.dots or len(pts) == 1:
            parts.extend(f"<circle cx='{px(x):.1f}' cy='{py(y):.1f}' r='3' fill='{s.color}'/>" for x, y in pts)
    legend_x = right
    for s, _ in reversed(clean if style.legend else []):
        legend_x -= round(text_width(s.label, 11)) + 18
        parts.append(f"<rect x='{legend_x}' y='9' width='10' height='10' fill='{s.color}'/>")
        parts.append(f"<text x='{legend_x + 14}' y='18' font-size='11' fill='#333'>{escape(s.label)}</text>")
    parts.append("</svg>")
    return "".join(parts)
