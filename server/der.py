"""Strict decoding of asn1crypto values parsed from outside input.

asn1crypto parses lazily: a malformed field surfaces only when first read. ``decode_all`` reads every field once,
so that garbage is refused where the input is loaded. It does not go through ``.native`` of a whole structure:
on CMS that re-encodes nested values again and again (seconds for one B-LT signature with pyHanko's OIDs
registered) and may even fail on well-formed input.
"""

from __future__ import annotations

from asn1crypto import core


def decode_all(value: core.Asn1Value) -> None:
    """Parse every part of ``value``, raising asn1crypto's ValueError/TypeError on the first malformed one.

    A copy is read: asn1crypto marks a Sequence changed when it fills in a DEFAULT field, and a changed value is
    re-encoded by every later ``dump()``; ``value`` itself keeps its received encoding."""
    _walk(value.copy())


def _walk(value: core.Asn1Value) -> None:
    if isinstance(value, core.Choice):
        _walk(value.chosen)
    elif isinstance(value, (core.Sequence, core.Set)):
        for index in range(len(value)):
            _walk(value[index])
    elif isinstance(value, (core.SequenceOf, core.SetOf)):
        for child in value:
            _walk(child)
    elif isinstance(value, core.Any):
        _walk(value.parsed)
    elif isinstance(value, (core.ParsableOctetString, core.ParsableOctetBitString)) and value._parsed is not None:
        _walk(value._parsed[0])  # parsed by its parent's spec (an OID's type); otherwise plain bytes
    else:
        value.native
