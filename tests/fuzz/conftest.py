"""Hypothesis profiles of the fuzz harnesses and the one fuzz context of a test session.

``ci`` (the default, ``make test``): a few hundred examples per target, derandomized, so a run is
reproducible. ``long`` (``make fuzz``, or ``--hypothesis-profile=long``): many more examples, random, with
the examples that failed kept under var/fuzz/hypothesis for the next run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from adapters.hsm.pkcs11 import Pkcs11Hsm
from tests.fixtures.softhsm import SoftHsmToken
from tests.fuzz.context import FuzzContext, fuzz_context

REPO = Path(__file__).resolve().parents[2]
_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]

settings.register_profile("ci", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")), derandomize=True,
                          deadline=None, database=None, suppress_health_check=_CHECKS, print_blob=True)
settings.register_profile("long", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "20000")), deadline=None,
                          database=DirectoryBasedExampleDatabase(str(REPO / "var" / "fuzz" / "hypothesis")),
                          suppress_health_check=_CHECKS, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def fuzz(softhsm_token: SoftHsmToken, hsm: Pkcs11Hsm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzContext]:
    """The PKI, services and seeds every fuzz target of the session shares (SQLite, the session token)."""
    yield from fuzz_context(softhsm_token, hsm, tmp_path_factory.mktemp("fuzz"))
