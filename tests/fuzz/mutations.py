"""Hypothesis strategies of fuzz inputs: arbitrary bytes, the seeds as they are, and seeds mutated by
bit flips, truncations, deletions, insertions (random bytes or a target's tokens), repetitions and splices
of two seeds."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

MAX_RANDOM = 4096


@st.composite
def _edit(draw: st.DrawFn, data: bytes, seeds: Sequence[bytes], tokens: Sequence[bytes]) -> bytes:
    if not data:
        return draw(st.binary(max_size=64))
    at = draw(st.integers(0, len(data)))
    kind = draw(st.sampled_from(("flip", "truncate", "delete", "insert", "repeat", "splice")
                                + (("token",) if tokens else ())))
    if kind == "flip":
        index = min(at, len(data) - 1)
        return data[:index] + bytes([data[index] ^ (1 << draw(st.integers(0, 7)))]) + data[index + 1:]
    if kind == "truncate":
        return data[:at]
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 64)):]
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    if kind == "token":
        return data[:at] + draw(st.sampled_from(tokens)) + data[at:]
    if kind == "repeat":
        piece = data[at:at + draw(st.integers(1, 32))]
        return data[:at] + piece * draw(st.integers(2, 200)) + data[at:]
    other = draw(st.sampled_from(seeds))
    return data[:at] + other[draw(st.integers(0, len(other))):]


@st.composite
def _mutated(draw: st.DrawFn, seeds: Sequence[bytes], tokens: Sequence[bytes]) -> bytes:
    data = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 4))):
        data = draw(_edit(data, seeds, tokens))
    return data


def inputs(seeds: Sequence[bytes], tokens: Sequence[bytes] = ()) -> st.SearchStrategy[bytes]:
    """Fuzz inputs for a target with these valid ``seeds`` (none: arbitrary bytes only)."""
    arbitrary = st.binary(max_size=MAX_RANDOM)
    if not seeds:
        return arbitrary
    return st.one_of(arbitrary, st.sampled_from(list(seeds)), _mutated(list(seeds), list(tokens)))
