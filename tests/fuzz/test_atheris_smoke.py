"""A short atheris run: the entry point starts its own token and PKI, seeds the corpus and fuzzes (make fuzz
runs every target for longer)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

REPO = Path(__file__).resolve().parents[2]


def test_atheris_fuzzes_a_target_from_its_seeded_corpus(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris is not installed (it is in the test extras: make venv)")
    run = subprocess.run([sys.executable, "-m", "tests.fuzz.atheris_main", "rest-json", "-runs=500", "-seed=1"],
                         cwd=REPO, env={**os.environ, "SIEGEL_FUZZ_DIR": str(tmp_path)}, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done 500 runs" in run.stderr, run.stderr[-3000:]
    assert len(list((tmp_path / "corpus" / "rest-json").iterdir())) >= 4  # at least the target's own seeds
    assert not list((tmp_path / "artifacts" / "rest-json").iterdir())
