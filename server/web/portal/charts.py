"""Charts of the admin pages, drawn on the server as inline SVG (no script, no style attribute: the portal's
Content-Security-Policy stays strict): stacked bars, one per day, one colour per series."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Mapping, Sequence

WIDTH, HEIGHT = 640, 220
LEFT, BOTTOM, TOP = 36, 28, 10  # room for the count axis, the day labels, the topmost tick
COLOURS = ("#0b5cad", "#1a7f37", "#bf8700", "#8250df", "#cf222e", "#57606a")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str  # shown on hover, read by screen readers


@dataclass
class BarChart:
    """What the template ``admin/_chart.html`` draws, and the numbers for its table."""

    days: list[str]
    series: list[tuple[str, str]]  # (name, colour)
    counts: dict[str, list[int]]  # series name -> count per day
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, int]] = field(default_factory=list)  # (y, value) of the count axis
    labels: list[tuple[float, str]] = field(default_factory=list)  # (x, text) below the bars
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def total(self) -> int:
        return sum(sum(v) for v in self.counts.values())


def last_days(today: date, count: int) -> list[str]:
    """The ``count`` days up to and including ``today``, oldest first, as ``YYYY-MM-DD``."""
    return [(today - timedelta(days=count - 1 - n)).isoformat() for n in range(count)]


def _step(peak: int) -> int:
    """A round tick distance for a count axis up to ``peak`` (about four ticks)."""
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000):
        if peak / step <= 4:
            return step
    return max(1, peak // 4)


def stacked_bars(days: Sequence[str], names: Sequence[str], counts: Mapping[tuple[str, str], int]) -> BarChart:
    """Per day a bar of the series ``names`` stacked, from ``counts`` keyed by (day, name)."""
    chart = BarChart(list(days), [(n, COLOURS[i % len(COLOURS)]) for i, n in enumerate(names)],
                     {n: [counts.get((d, n), 0) for d in days] for n in names})
    peak = max([sum(chart.counts[n][i] for n in names) for i in range(len(days))] + [1])
    step = _step(peak)
    top = -(-peak // step) * step
    plot_h, slot = HEIGHT - BOTTOM - TOP, (WIDTH - LEFT) / max(len(days), 1)
    chart.ticks = [(HEIGHT - BOTTOM - plot_h * v / top, v) for v in range(0, top + 1, step)]
    for i, day in enumerate(days):
        x, base = LEFT + i * slot + slot * 0.15, float(HEIGHT - BOTTOM)
        for name, colour in chart.series:
            value = chart.counts[name][i]
            if value:
                h = plot_h * value / top
                base -= h
                chart.bars.append(Bar(round(x, 1), round(base, 1), round(slot * 0.7, 1), round(h, 1), colour,
                                      f"{day} {name}: {value}"))
        if i % 2 == (len(days) - 1) % 2 or len(days) <= 7:  # every other day, the newest always
            chart.labels.append((round(x + slot * 0.35, 1), day[5:]))
    return chart
