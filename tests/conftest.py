"""Shared pytest configuration: the fixture plugins that start real services."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.softhsm",
    "tests.fixtures.pki",
    "tests.fixtures.postgres",
    "tests.fixtures.slapd",
    "tests.fixtures.smtp",
    "tests.fixtures.server",
    "tests.fixtures.tsa",
    "tests.fixtures.browser",
]

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (standards and vectors); tests needing it skip with a clear message when absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: official schemas and test vectors are not available here")
    return SHARED
