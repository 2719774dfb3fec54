"""Charts of the admin pages, drawn on the server as inline SVG (no script, no style attribute: the portal's
Content-Security-Policy stays strict): one slot per category (a day, a template) on the x axis, one colour
per series, the series' bars stacked (counts per day) or side by side (durations per template)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from math import ceil
from typing import Mapping, Sequence

WIDTH, HEIGHT = 640, 220
LEFT, BOTTOM, TOP = 36, 28, 14  # room for the value axis, the category labels, the topmost tick and the unit
MAX_BAR = 48  # the widest bar of a grouped chart
COLOURS = ("#0b5cad", "#1a7f37", "#bf8700", "#8250df", "#cf222e", "#57606a")


def shown(value: float) -> str:
    """A value as the chart writes it: whole numbers as such, others to one decimal."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    category: str
    series: str
    value: float
    title: str  # shown on hover, read by screen readers


@dataclass
class BarChart:
    """What the template ``admin/_chart.html`` draws, and the numbers for its table."""

    categories: list[str]  # along the x axis, in order
    series: list[tuple[str, str]]  # (name, colour)
    values: dict[str, list[float]]  # series name -> value per category
    unit: str = ""  # of the values (written above the value axis), "" for counts
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, int]] = field(default_factory=list)  # (y, value) of the value axis
    labels: list[tuple[float, str]] = field(default_factory=list)  # (x, text) below the bars
    width: int = WIDTH
    height: int = HEIGHT
    shown = staticmethod(shown)

    @property
    def total(self) -> float:
        return sum(sum(v) for v in self.values.values())


def last_days(today: date, count: int) -> list[str]:
    """The ``count`` days up to and including ``today``, oldest first, as ``YYYY-MM-DD``."""
    return [(today - timedelta(days=count - 1 - n)).isoformat() for n in range(count)]


def _step(peak: float) -> int:
    """A round tick distance for a value axis up to ``peak`` (about four ticks)."""
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000):
        if peak / step <= 4:
            return step
    return max(1, int(peak // 4))


def _chart(categories: Sequence[str], names: Sequence[str], values: Mapping[tuple[str, str], float], stacked: bool,
           unit: str) -> tuple[BarChart, float, float]:
    """The chart with its value axis; the pixels per unit of value and the width of a category's slot."""
    chart = BarChart(list(categories), [(n, COLOURS[i % len(COLOURS)]) for i, n in enumerate(names)],
                     {n: [values.get((c, n), 0) for c in categories] for n in names}, unit)
    per = [[chart.values[n][i] for n in names] for i in range(len(categories))]
    peak = max([sum(v) if stacked else max(v, default=0) for v in per] + [1])
    step = _step(peak)
    top = ceil(peak / step) * step
    plot_h = HEIGHT - BOTTOM - TOP
    chart.ticks = [(round(HEIGHT - BOTTOM - plot_h * v / top, 1), v) for v in range(0, top + 1, step)]
    return chart, plot_h / top, (WIDTH - LEFT) / max(len(categories), 1)


def _bar(chart: BarChart, x: float, y: float, width: float, height: float, colour: str, category: str, series: str,
         value: float) -> None:
    unit = f" {chart.unit}" if chart.unit else ""
    chart.bars.append(Bar(round(x, 1), round(y, 1), round(width, 1), round(height, 1), colour, category, series,
                          value, f"{category} {series}: {shown(value)}{unit}"))


def stacked_bars(days: Sequence[str], names: Sequence[str], counts: Mapping[tuple[str, str], int]) -> BarChart:
    """Per day a bar of the series ``names`` stacked, from ``counts`` keyed by (day, name)."""
    chart, scale, slot = _chart(days, names, counts, stacked=True, unit="")
    for i, day in enumerate(days):
        x, base = LEFT + i * slot + slot * 0.15, float(HEIGHT - BOTTOM)
        for name, colour in chart.series:
            value = chart.values[name][i]
            if value:
                base -= scale * value
                _bar(chart, x, base, slot * 0.7, scale * value, colour, day, name, value)
        if i % 2 == (len(days) - 1) % 2 or len(days) <= 7:  # every other day, the newest always
            chart.labels.append((round(x + slot * 0.35, 1), day[5:]))
    return chart


def grouped_bars(categories: Sequence[str], names: Sequence[str], values: Mapping[tuple[str, str], float],
                 unit: str) -> BarChart:
    """Per category the series ``names`` side by side, from ``values`` keyed by (category, name), in ``unit``."""
    chart, scale, slot = _chart(categories, names, values, stacked=False, unit=unit)
    width = min(slot * 0.7 / max(len(names), 1), MAX_BAR)
    room = max(4, int(slot / 6.5))  # characters of a label under its slot
    for i, category in enumerate(categories):
        x = LEFT + i * slot + (slot - width * len(names)) / 2
        for j, (name, colour) in enumerate(chart.series):
            value = chart.values[name][i]
            _bar(chart, x + j * width, HEIGHT - BOTTOM - scale * value, width, scale * value, colour, category, name,
                 value)
        chart.labels.append((round(LEFT + (i + 0.5) * slot, 1),
                             category if len(category) <= room else category[:room - 1] + "…"))
    return chart
