"""docs/performance.md: every benchmark and every ratio of its result, goals judged by their bound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS
from bench.performance import DOC, Figure, draw, figures, load_results, render


@pytest.mark.parametrize(("value", "goal", "met"), [
    (0.7, ">= 0.7", True), (0.69, ">= 0.7", False), (800.0, ">= 800 (2 cores)", True),
    (1.2, "<= 1.15", False), (19.9, "<= 20 for 1,000,000 objects", True), (1.0, "close to 1", None),
    (None, ">= 1", None), (5.0, None, None),
])
def test_a_goal_is_judged_by_its_bound(value: float | None, goal: str | None, met: bool | None) -> None:
    assert Figure("bench_x", "f", value, goal).met is met


def test_goals_on_measured_figures_are_reported_beside_the_ratios() -> None:
    doc = {"ratios": {"a_vs_b": 0.5}, "measured": {"total_seconds": 30.0}, "baseline": {"b": 2.0},
           "goals": {"a_vs_b": ">= 0.6", "total_seconds": "<= 20"}}
    assert [(f.name, f.met) for f in figures("bench_x", doc)] == [("a_vs_b", False), ("total_seconds", False)]


def test_the_report_names_every_benchmark_and_a_missing_result(tmp_path: Path) -> None:
    (tmp_path / "pki.json").write_text(json.dumps({
        "when": "2026-12-07T00:00:00+00:00", "machine": {"cpus": 2}, "measured": {"tsa_per_s": 100.0},
        "baseline": {"hsm_per_s": 150.0}, "ratios": {"tsa_vs_raw_hsm": 0.667}, "goals": {"tsa_vs_raw_hsm": ">= 0.6"},
        "notes": "how it ran"}))
    results = load_results(tmp_path)
    text = render(results, draw(results, tmp_path / "chart.png"))
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")
    assert "| pki | `tsa_vs_raw_hsm` | 0.667 | >= 0.6 | met |" in text
    assert "| `hsm_per_s` | 150 |" in text and "Goals met: 1 of 1." in text
    for module in BENCHMARKS:
        assert f"## {module.removeprefix('bench_')}" in text
    assert text.count("Not run: no `bench/results/") == len(BENCHMARKS) - 1


def test_the_committed_report_is_generated_from_the_committed_results() -> None:
    machine = "Machine of this report:"
    expected = [line for line in render(load_results(), Path("performance.png")).splitlines()
                if not line.startswith(machine)]
    committed = [line for line in DOC.read_text().splitlines() if not line.startswith(machine)]
    assert committed == expected, "run `python -m bench.performance` after changing bench/results/"
