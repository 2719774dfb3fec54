"""Siegel's evidence record verifier over ../shared/vectors/evidence-records (EU DSS and BouncyCastle ers-testool records).

The folder has no MANIFEST.md / manifest.json (unlike the other vector folders), so the verdicts are
in the table below, each with its reason. No trust anchor is given: a record whose every hash and
signature checks is INDETERMINATE / NO_CERTIFICATE_CHAIN_FOUND ("valid(crypto)" in the vectors'
README), never TOTAL-PASSED. ``data`` names the archived file; ``None`` means the vectors lack it:
the row is then verified with the first leaf of the first tree as the given hash (so the reference
step is not informative there, but tree, timestamps and renewals are).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from server.archive.evidence_verify import EvidenceReport, decode, verify
from server.validation.model import Indication, SubIndication
from server.validation.timestamps import message_imprint

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "evidence-records"
VALID_CRYPTO = (Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)


@dataclass(frozen=True)
class Row:
    record: str
    data: str | None
    indication: Indication
    sub: SubIndication | None
    failed: str | None = None  # "check@chain.timestamp" of the first failed step
    why: str = ""


ROWS = [
    Row("dss-asn1/1_0_Initial.er", "dss-asn1/data/123456.bin", Indication.INDETERMINATE,
        SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE, why="tree intact; the token's SHA-224 imprint is not accepted"),
    Row("dss-asn1/1_3_Renew_Unsorted.er", "dss-asn1/data/123456.bin", Indication.INDETERMINATE,
        SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE, why="four hash-tree renewals in RFC order h(d)+ha, first ATS SHA-224"),
    Row("dss-asn1/BIN-1_ER_malformed.ers", "dss-asn1/data/one.bin", Indication.TOTAL_FAILED,
        SubIndication.FORMAT_FAILURE, "format@None.None", "no DER EvidenceRecord"),
    Row("dss-asn1/er-asn1-chain-renewal-invalid.ers", "dss-asn1/data/tab.bin", Indication.TOTAL_FAILED,
        SubIndication.HASH_FAILURE, "reference@2.1", "the second chain does not cover document + first chain"),
    Row("dss-asn1/er-asn1-full-renewal.ers", "dss-asn1/data/x01.bin", *VALID_CRYPTO,
        why="data group, timestamp and hash-tree renewal"),
    Row("dss-asn1/er-asn1-full-renewal.ers", "dss-asn1/data/x03.bin", *VALID_CRYPTO),
    Row("dss-asn1/er-asn1-full-renewal-two-ats-chain.ers", "dss-asn1/data/x03.bin", *VALID_CRYPTO,
        why="three chains; the third covers only x03"),
    Row("dss-asn1/er-asn1-full-renewal-two-ats-chain.ers", "dss-asn1/data/x01.bin", Indication.TOTAL_FAILED,
        SubIndication.HASH_FAILURE, "reference@3.1", "x01 is not in the third chain's tree"),
    Row("dss-asn1/er-asn1-one-level-hashtree.ers", "dss-asn1/data/x02.bin", *VALID_CRYPTO),
    Row("dss-asn1/er-asn1-simple.ers", "dss-asn1/data/one.bin", *VALID_CRYPTO),
    Row("dss-asn1/er-asn1-on-tst.ers", "dss-asn1/d-trust.tsr", *VALID_CRYPTO, why="over a timestamp response file"),
    Row("dss-asn1/bsi_gov_vte-lza_002.ers", None, *VALID_CRYPTO, why="the .bin beside it is not the hashed object"),
    Row("dss-asn1/evidencerecord.ers", None, *VALID_CRYPTO),
    Row("dss-asn1/LKSG_4.ers", None, Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
        why="second chain needs a SHA-384 hash of the missing document"),
    Row("ers-testool/1Chain1ATS_BIN_ER.ers", "ers-testool/BIN.bin", *VALID_CRYPTO,
        why="OCSP responses in the token's crls (OtherRevocationInfoFormat)"),
    Row("ers-testool/1Chain2ATS_BIN_ER.ers", "ers-testool/BIN.bin", *VALID_CRYPTO, why="timestamp renewal"),
    Row("ers-testool/2Chains3ATS_BIN_ER.ers", "ers-testool/BIN.bin", *VALID_CRYPTO, why="hash-tree renewal"),
    Row("ers-testool/1Chain2ATS_testRenewal.ers", "ers-testool/BIN.bin", *VALID_CRYPTO,
        why="the renewal chain's token is signed with SHA-1: reported, not failed"),
    Row("dss-xml/er-chain-renewal.xml", "dss-xml/data/uuid.bin", *VALID_CRYPTO, why="XML hash-tree renewal"),
    Row("dss-xml/er-chain-renewal-missing-doc-ref.xml", "dss-xml/data/uuid.bin", Indication.TOTAL_FAILED,
        SubIndication.HASH_FAILURE, "reference@2.1", "the new chain lacks the document's hash"),
    Row("dss-xml/er-chain-renewal-invalid.xml", "dss-xml/data/uuid.bin", Indication.TOTAL_FAILED,
        SubIndication.HASH_FAILURE, "reference@1.1", "hash values changed"),
    Row("dss-xml/er-data-group.xml", "dss-xml/data/HELLO.bin", *VALID_CRYPTO),
    Row("dss-xml/er-data-group.xml", "dss-xml/data/CIAO.bin", *VALID_CRYPTO),
    Row("dss-xml/er-data-group.xml", "dss-xml/data/BYE.bin", *VALID_CRYPTO),
    Row("dss-xml/er-malformed.xml", "dss-xml/data/HELLO.bin", Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE,
        "format@None.None"),
    Row("dss-xml/er-on-tst.xml", "dss-asn1/d-trust.tsr", *VALID_CRYPTO),
    Row("dss-xml/er-tst-renewal.xml", None, *VALID_CRYPTO, why="XML timestamp renewal over C14N TimeStamp"),
    Row("dss-xml/er-tst-renewal-invalid.xml", None, Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE,
        "reference@1.2", "the renewals do not cover the previous TimeStamp"),
    *(Row(f"dss-xml/{name}", None, *VALID_CRYPTO) for name in (
        "er-no-hashtree.xml", "er-not-perfect-tree.xml", "er-perfect-tree.xml", "er-simple.xml",
        "er-two-levels.xml", "er-xml-document.xml")),
]


@pytest.fixture(scope="module", autouse=True)
def _vectors() -> None:
    if not VECTORS.is_dir():
        pytest.skip(f"the shared evidence record vectors are absent ({VECTORS})")


def _verify(row: Row) -> EvidenceReport:
    raw = (VECTORS / row.record).read_bytes()
    if row.data is not None:
        return verify(raw, data=(VECTORS / row.data).read_bytes())
    first = decode(raw).chains[0][0]
    leaf = first.reduced_tree[0][0] if first.reduced_tree else message_imprint(first.timestamp)[1]
    return verify(raw, digests={first.digest_algorithm: leaf})


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.record}:{r.data}" for r in ROWS])
def test_vector_verdict(row: Row) -> None:
    report = _verify(row)
    failed = [f"{s.check}@{s.chain}.{s.timestamp}" for s in report.steps if s.passed is False]
    assert (report.indication, report.sub_indication) == (row.indication, row.sub), report.to_json()
    assert failed[:1] == ([row.failed] if row.failed else []), report.to_json()
    if row.indication is not Indication.TOTAL_FAILED:
        assert any(s.check == "hash-tree" or s.check == "reference" for s in report.steps if s.passed)


def test_renewal_steps_are_reported() -> None:
    report = verify((VECTORS / "dss-asn1/er-asn1-full-renewal.ers").read_bytes(),
                    data=(VECTORS / "dss-asn1/data/x01.bin").read_bytes())
    checks = {(s.check, s.chain, s.timestamp) for s in report.steps if s.passed}
    assert {("chain", 1, 2), ("sequence", 2, 1), ("hash-tree", 2, 1)} <= checks
    assert report.to_json()["steps"][0]["check"] == "reference"
