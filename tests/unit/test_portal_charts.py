"""The admin charts' geometry (server.web.portal.charts) and the duration percentiles (server.workflows.overview):
pure arithmetic, no server."""

from __future__ import annotations

import pytest

from server.web.portal.charts import BOTTOM, HEIGHT, MAX_BAR, grouped_bars, shown, stacked_bars
from server.workflows.overview import Durations


def test_percentiles_interpolate_between_the_closest_ranks() -> None:
    d = Durations("t", [1.0, 2.0, 3.0, 4.0])
    assert (d.percentile(0), d.percentile(50), d.percentile(90), d.percentile(100)) == pytest.approx((1, 2.5, 3.7, 4))
    assert Durations("t", [7.0]).percentile(90) == 7.0


def test_grouped_bars_stand_side_by_side_to_scale() -> None:
    chart = grouped_bars(["Urlaubsantrag (4)", "B (2)"], ["Median", "p90"],
                         {("Urlaubsantrag (4)", "Median"): 1.8, ("Urlaubsantrag (4)", "p90"): 3.4,
                          ("B (2)", "Median"): 2.0, ("B (2)", "p90"): 0}, "s")
    bars = {(b.category, b.series): b for b in chart.bars}
    median, p90 = bars[("Urlaubsantrag (4)", "Median")], bars[("Urlaubsantrag (4)", "p90")]
    assert p90.x == pytest.approx(median.x + median.width, abs=0.11) and median.width <= MAX_BAR
    assert p90.height / median.height == pytest.approx(3.4 / 1.8, rel=0.01)
    assert median.y + median.height == pytest.approx(HEIGHT - BOTTOM, abs=0.11)  # on the axis
    assert bars[("B (2)", "p90")].height == 0 and median.title == "Urlaubsantrag (4) Median: 1.8 s"
    assert [v for _, v in chart.ticks] == [0, 1, 2, 3, 4]


def test_stacked_bars_pile_the_series_of_a_day() -> None:
    chart = stacked_bars(["2026-12-06", "2026-12-07"], ["pades", "xades"],
                         {("2026-12-07", "pades"): 2, ("2026-12-07", "xades"): 1})
    pades, xades = chart.bars
    assert (pades.series, xades.series) == ("pades", "xades") and pades.x == xades.x
    assert xades.y + xades.height == pytest.approx(pades.y, abs=0.11)  # on top of it
    assert chart.total == 3 and chart.values["pades"] == [0, 2] and pades.title == "2026-12-07 pades: 2"


def test_values_are_written_whole_or_to_one_decimal() -> None:
    assert (shown(3), shown(3.0), shown(2.46)) == ("3", "3", "2.5")
