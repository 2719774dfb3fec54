"""Writing a benchmark result: one JSON file per benchmark under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


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


def tree_state() -> str:
    """Which server code a run measured: the commit and the uncommitted files under server/ and adapters/."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=False).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "server", "adapters"], cwd=REPO,
                           capture_output=True, text=True, check=False).stdout.split("\n")
    changed = sorted(line[3:] for line in dirty if line.strip())
    return f"server code of {head.strip()}" + (f" with uncommitted changes in {', '.join(changed)}" if changed else "")
