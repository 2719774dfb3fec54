"""Writing a benchmark result: one JSON file per benchmark under bench/results/."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(name: str, *, measured: dict[str, float], baseline: dict[str, float], ratios: dict[str, float],
                 goals: dict[str, str], notes: str = "", **extra: Any) -> Path:
    """Store ``measured`` values, the same-run ``baseline`` they are compared with, and their ``ratios``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
           "measured": measured, "baseline": baseline, "ratios": ratios, "goals": goals, "notes": notes, **extra}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
