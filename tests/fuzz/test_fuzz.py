"""Hypothesis over every fuzz target: seeds, their mutations and arbitrary bytes; no crash, no hang."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from tests.fuzz.context import FuzzContext
from tests.fuzz.mutations import inputs
from tests.fuzz.runner import execute
from tests.fuzz.targets import TARGETS

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_no_input_crashes_or_hangs(name: str, fuzz: FuzzContext) -> None:
    target = TARGETS[name]
    seeds = target.seeds(fuzz)
    refusals = [execute(target, fuzz, seed) for seed in seeds]
    # Own seeds are valid: a target that refuses all of them would fuzz nothing but its first check.
    assert any(r is None for r in refusals), [str(r) for r in refusals]

    ran: list[int] = []

    @given(inputs(seeds, target.tokens))
    def fuzzed(data: bytes) -> None:
        ran.append(len(data))
        execute(target, fuzz, data)

    fuzzed()
    # hypothesis ends early only when it has seen every input its strategy can make, which these cannot
    assert len(ran) >= settings.default.max_examples, len(ran)
