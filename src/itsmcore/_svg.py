"""Small charts as inline SVG: grouped bars, a line, a histogram. No script, no fonts fetched.

Reports built with them are one self-contained HTML file that renders anywhere, offline,
with no console errors. Every text is escaped; numbers are rounded to what a reader sees.
"""

from __future__ import annotations

import itertools
import math
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["bars", "histogram", "line"]

_W, _H = 720, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 16, 64
_PALETTE = ("#2f6db5", "#e07b39", "#3a9a5b", "#b8413c", "#7d5ba6", "#8c6d31", "#4a9bb0")


def _frame(title: str, body: list[str], legend: Sequence[str] = ()) -> str:
    keys = "".join(
        f'<rect x="{_LEFT + 130 * k}" y="{_H - 16}" width="10" height="10" '
        f'fill="{_PALETTE[k % len(_PALETTE)]}"/>'
        f'<text x="{_LEFT + 130 * k + 14}" y="{_H - 7}" font-size="11">{escape(name)}</text>'
        for k, name in enumerate(legend)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{escape(title)}" class="chart" font-family="sans-serif">'
        f"<title>{escape(title)}</title>{''.join(body)}{keys}</svg>"
    )


def _scale(top: float) -> tuple[float, list[float]]:
    """A round upper bound of the axis and its ticks (at most six)."""
    if top <= 0:
        return 1.0, [0.0, 1.0]
    step = 10.0 ** math.floor(math.log10(top)) / 10
    while top / step > 5:
        for factor in (2, 2.5, 2):  # 1, 2, 5, 10, 20, 50 ... times a power of ten
            step *= factor
            if top / step <= 5:
                break
    count = math.ceil(top / step - 1e-9)
    return count * step, [k * step for k in range(count + 1)]


def _axes(top: float, unit: str) -> tuple[float, list[str]]:
    bound, ticks = _scale(top)
    plot_h = _H - _TOP - _BOTTOM
    out = []
    for tick in ticks:
        y = _TOP + plot_h * (1 - tick / bound)
        out.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#ddd"/><text x="{_LEFT - 6}" y="{y + 4:.1f}" font-size="11" '
            f'text-anchor="end">{tick:g}{escape(unit)}</text>'
        )
    return bound, out


def bars(
    title: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    unit: str = "",
    top: float | None = None,
) -> str:
    """Grouped vertical bars: one group per label, one bar per series (``None``: no bar)."""
    values = [v for vs in series.values() for v in vs if v is not None]
    bound, body = _axes(top if top is not None else max(values, default=0), unit)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / max(len(groups), 1)
    width = slot * 0.8 / max(len(series), 1)
    for g, label in enumerate(groups):
        x0 = _LEFT + g * slot + slot * 0.1
        for s, (name, vs) in enumerate(series.items()):
            value = vs[g]
            if value is None:
                continue
            h = plot_h * value / bound
            body.append(
                f'<rect x="{x0 + s * width:.1f}" y="{_TOP + plot_h - h:.1f}" '
                f'width="{width * 0.92:.1f}" height="{h:.1f}" '
                f'fill="{_PALETTE[s % len(_PALETTE)]}"><title>{escape(name)}, '
                f"{escape(label)}: {value:.1f}{escape(unit)}</title></rect>"
            )
        body.append(
            f'<text x="{x0 + slot * 0.4:.1f}" y="{_H - _BOTTOM + 16}" font-size="11" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    return _frame(title, body, list(series))


def line(title: str, points: Sequence[tuple[str, float]], *, unit: str = "") -> str:
    """One series over labelled x positions (a dozen labels shown at most)."""
    bound, body = _axes(max((v for _, v in points), default=0), unit)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    step = plot_w / max(len(points) - 1, 1)
    coords = [
        (_LEFT + k * step, _TOP + plot_h * (1 - v / bound)) for k, (_, v) in enumerate(points)
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    body.append(f'<polyline points="{path}" fill="none" stroke="{_PALETTE[0]}" stroke-width="2"/>')
    every = max(1, len(points) // 12)
    for k, (label, _) in enumerate(points):
        if k % every == 0:
            body.append(
                f'<text x="{coords[k][0]:.1f}" y="{_H - _BOTTOM + 16}" font-size="11" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    return _frame(title, body)


def histogram(
    title: str, values: Sequence[float], *, edges: Sequence[float], unit: str = ""
) -> str:
    """Counts of ``values`` between consecutive ``edges`` (the last bin takes the rest)."""
    counts = [0] * len(edges)
    for value in values:
        k = sum(value >= e for e in edges) - 1
        counts[max(k, 0)] += 1
    labels = [f"{a:g}-{b:g}{unit}" for a, b in itertools.pairwise(edges)] + [
        f"{edges[-1]:g}{unit}+"
    ]
    return bars(title, labels, {"incidents": [float(c) for c in counts]})
