"""RFC 6283 XML evidence records (server.archive.xmlers): schema-valid output, round trip, XML renewal hashes, refusals."""

from __future__ import annotations

import base64
import hashlib

import pytest

from server.archive import xmlers
from server.archive.record import ArchiveTimestamp, EvidenceRecord, renew_hashtree, renew_timestamp
from server.errors import Code, SiegelError

TOKEN = bytes.fromhex("300f06092a864886f70d010702a0023000")
H = [hashlib.sha256(bytes([i])).digest() for i in range(4)]
H512 = hashlib.sha512(b"x").digest()


def _initial() -> EvidenceRecord:
    return EvidenceRecord(("sha256",), ((ArchiveTimestamp("sha256", ((H[0], H[1]), (H[2],)), TOKEN),),))


def test_written_records_are_schema_valid_and_read_back() -> None:
    data = xmlers.encode(_initial())
    assert data.startswith(b"<?xml") and b'Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"' in data
    again = xmlers.decode(data)
    assert again.syntax == "xml" and again.encoded == data
    assert again.chains == _initial().chains
    assert xmlers.encode(again) == data


def test_timestamp_renewal_hashes_the_canonical_timestamp_element() -> None:
    record = xmlers.decode(xmlers.encode(_initial()))
    expected = ('<ers:TimeStamp xmlns:ers="urn:ietf:params:xml:ns:ers"><ers:TimeStampToken Type="RFC3161">'
                f'{base64.b64encode(TOKEN).decode()}</ers:TimeStampToken></ers:TimeStamp>').encode()
    assert xmlers.timestamp_renewal_digest(record, 0, 0) == hashlib.sha256(expected).digest()
    assert xmlers.token_renewal_digest(TOKEN, "sha256") == hashlib.sha256(expected).digest()  # without a record


def test_a_record_whose_renewals_cover_both_hashes_is_written_as_xml() -> None:
    pair = (hashlib.sha256(TOKEN).digest(), xmlers.token_renewal_digest(TOKEN, "sha256"))
    both = EvidenceRecord(("sha256",), ((*_initial().chains[0], ArchiveTimestamp("sha256", (pair,), TOKEN)),),
                          syntax="both")
    written = xmlers.decode(xmlers.encode(both))
    assert written.chains[0][1].reduced_tree == (pair,)
    assert xmlers.timestamp_renewal_digest(written, 0, 0) == pair[1]


def test_sequence_hash_leaves_out_the_chain_and_later_ones() -> None:
    record = xmlers.decode(xmlers.encode(_initial()))
    renewed = renew_hashtree(renew_timestamp(record, ArchiveTimestamp("sha256", (), TOKEN)),
                             ArchiveTimestamp("sha512", ((H512,),), TOKEN))
    written = xmlers.decode(xmlers.encode(renewed))
    one_chain = xmlers.decode(xmlers.encode(renew_timestamp(record, ArchiveTimestamp("sha256", (), TOKEN))))
    assert xmlers.sequence_digest(written, 1, "sha512") == xmlers.sequence_digest(one_chain, 1, "sha512")
    assert xmlers.sequence_digest(written, 1, "sha512") != xmlers.sequence_digest(written, 2, "sha512")
    group = xmlers.hashtree_renewal_leaves([H512], one_chain, "sha512")
    assert group == [xmlers.sequence_digest(one_chain, 1, "sha512"), H512]


def test_a_renewed_ers_record_is_not_written_as_xml() -> None:
    renewed = renew_timestamp(_initial(), ArchiveTimestamp("sha256", (), TOKEN))
    with pytest.raises(SiegelError, match="cannot be written as RFC 6283") as caught:
        xmlers.encode(renewed)
    assert caught.value.code is Code.NOT_SUPPORTED


@pytest.mark.parametrize("data, code", [
    (b"<!DOCTYPE x [<!ENTITY e 'x'>]><x/>", Code.HOSTILE_XML),
    (b"<unclosed", Code.MALFORMED_XML),
    (b"<x xmlns='urn:other'/>", Code.BAD_REQUEST),
    (b"<ers:EvidenceRecord xmlns:ers='urn:ietf:params:xml:ns:ers' Version='1.0'/>", Code.SCHEMA_INVALID),
])
def test_bad_input_is_refused(data: bytes, code: Code) -> None:
    with pytest.raises(SiegelError) as caught:
        xmlers.decode(data)
    assert caught.value.code is code


def test_orders_and_digest_lengths_are_checked() -> None:
    data = xmlers.encode(_initial())
    with pytest.raises(SiegelError, match="numbered"):
        xmlers.decode(data.replace(b'Sequence Order="2"', b'Sequence Order="3"'))
    short = base64.b64encode(b"short").decode().encode()
    with pytest.raises(SiegelError, match="not 32 bytes"):
        xmlers.decode(data.replace(base64.b64encode(H[2]), short))
    with pytest.raises(SiegelError, match="does not know") as caught:
        xmlers.decode(data.replace(b"xmlenc#sha256", b"xmlenc#sha257"))
    assert caught.value.code is Code.NOT_SUPPORTED
