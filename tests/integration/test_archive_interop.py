"""Evidence records made by Siegel's archive formats, renewed with a real TSA, verified by ours and by BouncyCastle.

Several documents go into one RFC 4998 hash tree whose root the reference TSA (``openssl ts``)
timestamps; each document's record is then renewed twice — timestamp renewal (a second tree over the
renewal hashes of two trees, one TSA request for both) and hash-tree renewal with SHA-512 — and after
each stage verified by ``server.archive.evidence_verify`` and by BouncyCastle 1.72's
``org.bouncycastle.tsp.ers`` (Debian libbcpkix-java), driven by tests/java/ErsCheck.java (tests.fixtures.bouncycastle).
The XMLERS line runs the same stages with RFC 6283's renewal hashes. BouncyCastle-made records (the
ers-testool vectors) are read by ours in test_archive_vectors.py.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from adapters.timestamp.client import TimestampClient, TsaEndpoint
from server.archive import ers, xmlers
from server.archive.evidence_verify import verify
from server.archive.hashtree import build, group_hash, grouped
from server.archive.record import (ArchiveTimestamp, EvidenceRecord, hashtree_renewal_leaf, initial_record,
                                   renew_hashtree, renew_timestamp, timestamp_renewal_digest)
from server.validation.model import Indication, SubIndication, Trust
from tests.fixtures.bouncycastle import BouncyCastle, bouncycastle  # noqa: F401 (the fixture)
from tests.fixtures.tsa import ReferenceTsa

DOCUMENTS = [f"document {i} of the archive".encode() * (i + 1) for i in range(5)]
OTHER_TREE = [f"another tree's document {i}".encode() for i in range(3)]
@pytest.fixture
def client(reference_tsa: ReferenceTsa) -> TimestampClient:
    return TimestampClient([TsaEndpoint(reference_tsa.url, (reference_tsa.ca,))], timeout=10, retries=0)


@pytest.fixture
def trust(reference_tsa: ReferenceTsa) -> Trust:
    return Trust((reference_tsa.ca.public_bytes(serialization.Encoding.DER),), allow_fetching=False)


def _initial(client: TimestampClient, documents: list[bytes]) -> list[EvidenceRecord]:
    tree = build([hashlib.sha256(d).digest() for d in documents], "sha256")
    token = client.timestamp(tree.root, "sha256").token
    return [initial_record(ArchiveTimestamp("sha256", tree.reduced(i), token)) for i in range(len(documents))]


def _renew_timestamps(client: TimestampClient, trees: list[list[EvidenceRecord]],
                      renewal_hash: object) -> list[list[EvidenceRecord]]:
    """One TSA request for all trees: a tree over each tree's renewal hash (the same for all its records)."""
    hashes = [renewal_hash(records[0]) for records in trees]  # type: ignore[operator]
    tree = build(hashes, "sha256")
    token = client.timestamp(tree.root, "sha256").token
    return [[renew_timestamp(r, ArchiveTimestamp("sha256", tree.reduced(t), token)) for r in records]
            for t, records in enumerate(trees)]


def _asn1_renewal_hash(record: EvidenceRecord) -> bytes:
    return timestamp_renewal_digest(record.chains[-1][-1], "sha256")


def _xml_renewal_hash(record: EvidenceRecord) -> bytes:
    return xmlers.timestamp_renewal_digest(record, len(record.chains) - 1, len(record.chains[-1]) - 1)


def _assert_ours(records: list[EvidenceRecord], documents: list[bytes], trust: Trust, encode: object) -> None:
    for record, document in zip(records, documents, strict=True):
        report = verify(encode(record), data=document, trust=trust)  # type: ignore[operator]
        assert report.indication is Indication.TOTAL_PASSED, report.to_json()
        assert report.proof_time is not None
    wrong = verify(encode(records[0]), data=documents[1] + b"!", trust=trust)  # type: ignore[operator]
    assert wrong.indication is Indication.TOTAL_FAILED


def test_asn1_records_validate_with_ours_and_bouncycastle_through_both_renewals(
        client: TimestampClient, trust: Trust, bouncycastle: BouncyCastle) -> None:
    records = _initial(client, DOCUMENTS)
    other = _initial(client, OTHER_TREE)
    stages = {"initial": records}
    records, other = _renew_timestamps(client, [records, other], _asn1_renewal_hash)
    stages["timestamp renewal"] = records
    leaves = [hashtree_renewal_leaf(hashlib.sha512(d).digest(), r, "sha512") for r, d in zip(records, DOCUMENTS)]
    tree = build(leaves, "sha512")
    token = client.timestamp(tree.root, "sha512").token
    stages["hash-tree renewal"] = [renew_hashtree(r, ArchiveTimestamp("sha512", tree.reduced(i), token))
                                   for i, r in enumerate(records)]
    for stage, made in stages.items():
        _assert_ours(made, DOCUMENTS, trust, ers.encode)
        assert ers.decode(ers.encode(made[0])) == made[0], stage
        cases = [(ers.encode(r), d) for r, d in zip(made, DOCUMENTS)] + [(ers.encode(made[2]), DOCUMENTS[2] + b"!")]
        verdicts = bouncycastle.verdicts(cases)
        assert verdicts[:-1] == ["VALID"] * len(DOCUMENTS), (stage, verdicts)
        assert verdicts[-1].startswith("INVALID"), (stage, verdicts)  # BouncyCastle is able to say no
    assert [len(c) for c in stages["hash-tree renewal"][0].chains] == [2, 1]
    _assert_horizons(stages["initial"][0], stages["hash-tree renewal"][0], trust)


def _assert_horizons(initial: EvidenceRecord, renewed: EvidenceRecord, trust: Trust) -> None:
    """SHA-256 weakened yesterday: the initial record lost its strength, the one renewed to SHA-512 before it did not."""
    yesterday = datetime.now(UTC) - timedelta(days=1)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    weak = verify(ers.encode(initial), data=DOCUMENTS[0], trust=trust, horizons={"sha256": yesterday})
    assert (weak.indication, weak.sub_indication) == (Indication.INDETERMINATE,
                                                     SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE)
    assert [s.check for s in weak.steps if s.passed is None] == ["algorithm"]
    late = verify(ers.encode(renewed), data=DOCUMENTS[0], trust=trust, horizons={"sha256": yesterday})
    assert late.indication is Indication.INDETERMINATE  # renewed today, a day after SHA-256's horizon
    in_time = verify(ers.encode(renewed), data=DOCUMENTS[0], trust=trust,
                     horizons={"sha256": tomorrow, "sha512": tomorrow + timedelta(days=1)})
    assert in_time.indication is Indication.TOTAL_PASSED, in_time.to_json()
    assert [s.passed for s in in_time.steps if s.check == "algorithm"] == [True, True]


def test_xml_records_renew_with_rfc6283_hashes_and_verify(client: TimestampClient, trust: Trust) -> None:
    records = [xmlers.decode(xmlers.encode(r)) for r in _initial(client, DOCUMENTS)]
    other = [xmlers.decode(xmlers.encode(r)) for r in _initial(client, OTHER_TREE)]
    _assert_ours(records, DOCUMENTS, trust, xmlers.encode)
    records, other = _renew_timestamps(client, [records, other], _xml_renewal_hash)
    records = [xmlers.decode(xmlers.encode(r)) for r in records]
    _assert_ours(records, DOCUMENTS, trust, xmlers.encode)
    groups = [xmlers.hashtree_renewal_leaves([hashlib.sha512(d).digest()], r, "sha512")
              for r, d in zip(records, DOCUMENTS)]
    tree = build([group_hash("sha512", g) for g in groups], "sha512")
    token = client.timestamp(tree.root, "sha512").token
    renewed = [renew_hashtree(r, ArchiveTimestamp("sha512", grouped(tree.reduced(i), groups[i]), token))
               for i, r in enumerate(records)]
    _assert_ours(renewed, DOCUMENTS, trust, xmlers.encode)
    report = verify(xmlers.encode(renewed[0]), data=DOCUMENTS[0], trust=trust)
    assert [s.check for s in report.steps if s.chain == 2][:2] == ["sequence", "reference"]
    # the DER renewal hashes do not hold in XML: an ERS record with renewals is never written as XMLERS
    asn1 = _initial(client, DOCUMENTS[:2])
    renewed_asn1 = _renew_timestamps(client, [asn1], _asn1_renewal_hash)[0]
    with pytest.raises(Exception, match="cannot be written as RFC 6283"):
        xmlers.encode(renewed_asn1[0])


def test_untrusted_tsa_is_indeterminate(client: TimestampClient) -> None:
    record = _initial(client, DOCUMENTS[:3])[1]
    report = verify(ers.encode(record), data=DOCUMENTS[1])
    assert report.indication is Indication.INDETERMINATE
    assert report.sub_indication is not None and report.sub_indication.value == "NO_CERTIFICATE_CHAIN_FOUND"
