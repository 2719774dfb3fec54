"""``server.audit.log.entry_hash`` writes the canonical JSON itself: the same bytes as ``canonical`` of the entry's
dict (sorted keys, no spaces, UTF-8, json's escaping), so chains written before and after verify alike."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from server.audit.log import GENESIS, canonical, entry_hash

# Any text UTF-8 can carry: controls, quotes, backslashes, U+2028, non-BMP; not lone surrogates (no UTF-8 form).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


def _by_dict(seq: int, at: str, actor: str, action: str, target: str, details: str, prev: str) -> str:
    return hashlib.sha256(canonical({"seq": seq, "at": at, "actor": actor, "action": action, "target": target,
                                     "details": details, "prev": prev})).hexdigest()


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=1, max_value=2**63 - 1), TEXT, TEXT, TEXT, TEXT, TEXT, TEXT)
def test_the_hash_is_that_of_the_canonical_dict(seq: int, at: str, actor: str, action: str, target: str,
                                                details: str, prev: str) -> None:
    assert entry_hash(seq, at, actor, action, target, details, prev) == _by_dict(
        seq, at, actor, action, target, details, prev)


def test_a_typical_entry() -> None:
    args = (7, "2026-12-07T21:00:00.000001+00:00", "erp", "sign.cades", "Vertrag \"Müller\"\n.pdf",
            canonical({"document": "a\\b", "level": "B-T"}).decode(), GENESIS)
    assert entry_hash(*args) == _by_dict(*args)
