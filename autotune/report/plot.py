"""The feasible front as inline SVG, drawn here: quality loss against p95 latency, marker area for peak memory.

Drawn by hand rather than by matplotlib so the page stays small, needs no fonts or files, and every label is
escaped text the page controls. Each point carries a tooltip (``<title>``) with its figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from autotune.budget import Budget
from autotune.report.evidence import STATUS_WORDS, Row, size_text

WIDTH, HEIGHT = 920, 440
LEFT, RIGHT, TOP, BOTTOM = 72, 210, 24, 58
"""The plot area's margins: room for the tick labels, the axis titles and, on the right, the legend."""


def plotted(rows: Sequence[Row]) -> list[Row]:
    """The rows the plot shows: full measurements (not screening runs) with a latency and a quality loss."""
    return [r for r in rows if r.status == STATUS_WORDS["measured"] and r.itl_p95_ms is not None
            and r.quality_loss is not None]


def front_svg(rows: Sequence[Row], budget: Budget) -> str:
    """An SVG element of every fully measured configuration, the feasible front and the chosen one marked."""
    points = plotted(rows)
    if not points:
        return '<p class="empty">No configuration was measured in full, so there is nothing to plot.</p>'
    xs = [r.itl_p95_ms or 0.0 for r in points]
    ys = [r.quality_loss or 0.0 for r in points]
    x_top = max(xs) * 1.15
    if budget.latency_ms <= x_top * 1.5:  # a budget far beyond every point would squash them to the left edge
        x_top = max(x_top, budget.latency_ms * 1.08)
    y_top = max(ys) * 1.15 or 1.0
    quality_budget = budget.max_quality_loss
    if quality_budget is not None and 0 < quality_budget <= y_top * 1.5:
        y_top = max(y_top, quality_budget * 1.08)
    x_ticks, y_ticks = ticks(x_top), ticks(y_top)
    x_top, y_top = x_ticks[-1], y_ticks[-1]
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + inner_w * x / x_top

    def sy(y: float) -> float:
        return TOP + inner_h * (1 - y / y_top)

    unmeasured = sum(r.kl is None for r in points)
    y_title = ("quality loss (mean KL divergence)" if not unmeasured else
               "16 − bits per weight (quality unmeasured)" if unmeasured == len(points) else
               "quality loss (KL; 16 − bits/weight if unmeasured)")
    parts = [f'<svg class="front" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
             f'aria-label="{escape(y_title)} against p95 inter-token latency" xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="{LEFT}" y="{TOP}" width="{inner_w}" height="{inner_h}" class="area"/>']
    for tick in x_ticks:
        parts.append(f'<line x1="{sx(tick):.1f}" y1="{TOP}" x2="{sx(tick):.1f}" y2="{TOP + inner_h}" class="grid"/>'
                     f'<text x="{sx(tick):.1f}" y="{TOP + inner_h + 18}" class="tick" text-anchor="middle">'
                     f'{tick:g}</text>')
    for tick in y_ticks:
        parts.append(f'<line x1="{LEFT}" y1="{sy(tick):.1f}" x2="{LEFT + inner_w}" y2="{sy(tick):.1f}" class="grid"/>'
                     f'<text x="{LEFT - 8}" y="{sy(tick) + 4:.1f}" class="tick" text-anchor="end">{tick:g}</text>')
    parts.append(f'<text x="{LEFT + inner_w / 2}" y="{HEIGHT - 14}" class="axis" text-anchor="middle">'
                 'p95 inter-token latency (ms)</text>')
    parts.append(f'<text transform="translate(16 {TOP + inner_h / 2}) rotate(-90)" class="axis" '
                 f'text-anchor="middle">{escape(y_title)}</text>')
    if budget.latency_ms <= x_top:
        x = sx(budget.latency_ms)
        parts.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + inner_h}" class="budget"/>'
                     f'<text x="{x - 4:.1f}" y="{TOP + 14}" class="budget-label" text-anchor="end">'
                     f'latency budget {budget.latency_ms:g} ms</text>')
    if quality_budget is not None and quality_budget <= y_top:
        y = sy(quality_budget)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + inner_w}" y2="{y:.1f}" class="budget"/>'
                     f'<text x="{LEFT + inner_w - 4}" y="{y - 5:.1f}" class="budget-label" text-anchor="end">'
                     f'quality budget {quality_budget:g}</text>')
    largest = max(max((r.peak_bytes or 0) for r in points), 1)
    # Drawn in order: over budget under feasible under the front, the chosen one on top.
    for row in sorted(points, key=lambda r: (r.chosen, r.on_front, r.feasible)):
        parts.append(_marker(row, sx(row.itl_p95_ms or 0.0), sy(row.quality_loss or 0.0), largest))
    parts.append(_legend(budget))
    parts.append("</svg>")
    return "".join(parts)


def _marker(row: Row, x: float, y: float, largest: int) -> str:
    radius = 4 + 9 * math.sqrt(max(row.peak_bytes or 0, 0) / largest)
    kind = "chosen" if row.chosen else "front" if row.on_front else "feasible" if row.feasible else "over"
    loss = f"KL {row.kl.value:.4g}" if row.kl is not None else f"{row.bits_per_weight or 0:.2f} bits per weight"
    number = f"#{row.number} " if row.number is not None else ""
    tip = (f"{number}{row.backend} {row.precision} {row.configuration}: p95 {row.itl_p95_ms or 0:.2f} ms, "
           f"{row.decode_tps or 0:.1f} tok/s, peak {size_text(row.peak_bytes)}, {loss}")
    shape = (_star(x, y, radius + 4) if row.chosen else
             f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}"/>')
    # The precision without its fallback note, so the label stays short: the tooltip and the table have it whole.
    short = f"{row.backend} {row.precision.split(' (', 1)[0]}"
    short = short if len(short) <= 28 else short[:27] + "…"
    label = (f'<text x="{x + radius + 3:.1f}" y="{y - radius:.1f}" class="point-label">{escape(short)}</text>'
             if row.on_front else "")
    return f'<g class="point {kind}" data-trial="{row.number if row.number is not None else ""}"><title>' \
           f'{escape(tip)}</title>{shape}{label}</g>'


def _star(x: float, y: float, radius: float) -> str:
    corners = []
    for index in range(10):
        r = radius if index % 2 == 0 else radius * 0.45
        angle = math.pi / 2 + index * math.pi / 5
        corners.append(f"{x + r * math.cos(angle):.1f},{y - r * math.sin(angle):.1f}")
    return f'<polygon points="{" ".join(corners)}"/>'


def _legend(budget: Budget) -> str:
    x, y = WIDTH - RIGHT + 24, TOP + 14
    entries = [("chosen", "chosen"), ("front", "on the feasible front"), ("feasible", "within budget"),
               ("over", "over budget")]
    parts = [f'<g class="legend"><rect x="{x - 8}" y="{y - 12}" width="{RIGHT - 28}" height="{len(entries) * 18 + 44}"/>']
    for index, (kind, text) in enumerate(entries):
        cy = y + index * 18
        mark = _star(x, cy, 7) if kind == "chosen" else f'<circle cx="{x}" cy="{cy}" r="5"/>'
        parts.append(f'<g class="point {kind}">{mark}</g><text x="{x + 14}" y="{cy + 4}">{text}</text>')
    bottom = y + len(entries) * 18
    parts.append(f'<text x="{x - 2}" y="{bottom + 2}" class="note">marker area: peak memory</text>'
                 f'<text x="{x - 2}" y="{bottom + 18}" class="note">(budget {escape(size_text(budget.memory_bytes))})'
                 '</text></g>')
    return "".join(parts)


def ticks(top: float) -> list[float]:
    """Round tick values from 0 to at least ``top``: steps of 1, 2 or 5 times a power of ten, about five of them."""
    if not math.isfinite(top) or top <= 0:
        return [0.0, 1.0]
    raw = top / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    count = math.ceil(top / step - 1e-9)
    return [round(i * step, 12) for i in range(count + 1)]
