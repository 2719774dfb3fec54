"""XML signatures made by other implementations, verified against the verdicts of their manifests.

Every signature file of ../shared/vectors/dss-xades (EU DSS) and ../shared/vectors/xmldsig-interop
(W3C interop samples) is a case; its expected verdict is the ``verdict`` text of manifest.json, read
through :data:`VERDICTS` (a verdict text missing there fails, so a new row is never silently passed).
Rows marked DISAGREE are skipped with that reason. :data:`POLICY` lists the files where Siegel answers
differently from the producer on purpose, each with the reason; HMAC signatures ("valid with key ...")
are refused by design (a shared secret identifies no signer). No trust anchor is given, so a
cryptographically valid signature ends INDETERMINATE/NO_CERTIFICATE_CHAIN_FOUND ("valid(crypto)"); the
tests at the end trust a vector's own embedded roots instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509
from lxml import etree

from server.errors import Code, SiegelError
from server.validation.model import Indication, SignatureReport, SubIndication, Trust
from server.validation.xades import IMPRINT_MISMATCH, verify_xml_signatures
from tests.conftest import SHARED

pytestmark = pytest.mark.integration

FOLDERS = ("dss-xades", "xmldsig-interop")
UNTRUSTED = Trust(roots=(), allow_fetching=False)
RFC3161 = {"http://www.ietf.org/rfc/rfc3161.txt": "phaos/rfc3161.txt"}
DETACHED: dict[str, dict[str, str]] = {
    "dss-xades/detached/xades-detached.xml": {"sample.xml": "detached/sample.xml"},
    "xmldsig-interop/phaos/signature-rsa-detached.xml": RFC3161,
    "xmldsig-interop/phaos/signature-dsa-detached.xml": RFC3161,
    "xmldsig-interop/phaos/signature-hmac-sha1-40-c14n-comments-detached.xml": RFC3161,
    "xmldsig-interop/phaos/signature-rsa-manifest.xml": {**RFC3161, "document.xml": "phaos/document.xml"},
}

Check = Callable[[list[SignatureReport]], None]


def _crypto_valid(report: SignatureReport) -> None:
    """No structure or crypto failure: only the missing trust anchor (or, with a bare key, the missing
    certificate) keeps it from PASSED."""
    allowed = {SubIndication.NO_CERTIFICATE_CHAIN_FOUND}
    if report.signer_certificate is None:
        allowed.add(SubIndication.NO_SIGNING_CERTIFICATE_FOUND)
    assert (report.indication, report.sub_indication in allowed) == (Indication.INDETERMINATE, True), \
        (report.indication, report.sub_indication, report.messages)
    assert report.scopes, "a crypto-valid signature names what it signs"


def crypto_valid(reports: list[SignatureReport]) -> None:
    assert reports
    for report in reports:
        _crypto_valid(report)


def invalid(reports: list[SignatureReport]) -> None:
    assert reports[0].indication is Indication.TOTAL_FAILED, (reports[0].sub_indication, reports[0].messages)


def indeterminate(sub: SubIndication) -> Check:
    def check(reports: list[SignatureReport]) -> None:
        assert (reports[0].indication, reports[0].sub_indication) == (Indication.INDETERMINATE, sub), \
            reports[0].messages
    return check


def one_of(*verdicts: tuple[Indication, SubIndication | None]) -> Check:
    """Manifest verdicts such as "invalid/indeterminate": the report is one of ``verdicts``
    (a sub-indication None: any)."""
    def check(reports: list[SignatureReport]) -> None:
        got = (reports[0].indication, reports[0].sub_indication)
        assert any(got[0] is i and s in (None, got[1]) for i, s in verdicts), (got, reports[0].messages)
    return check


def counter_signature_invalid(reports: list[SignatureReport]) -> None:
    """The master signature is intact; the counter-signature inside it is TOTAL-FAILED."""
    master, *counter = reports
    _crypto_valid(master)
    assert counter and all(r.indication is Indication.TOTAL_FAILED for r in counter), \
        [(r.sub_indication, r.messages) for r in counter]


def archive_invalid(reports: list[SignatureReport]) -> None:
    """B and T intact (the signature timestamp's imprint matches), the archive timestamp not valid."""
    report = reports[0]
    _crypto_valid(report)
    archive = [t for t in report.timestamps if t.kind == "archive"]
    signature = [t for t in report.timestamps if t.kind == "signature"]
    assert report.level != "B-LTA"
    assert signature and not any(IMPRINT_MISMATCH in t.message for t in signature)
    assert (archive and not any(t.valid for t in archive)) or "CertificateValues" in " ".join(report.messages)


def hmac_refused(reports: list[SignatureReport]) -> None:
    """HMAC signatures are not supported (a shared secret identifies no signer), whatever the key."""
    assert (reports[0].indication, reports[0].sub_indication) == (
        Indication.INDETERMINATE, SubIndication.CRYPTO_CONSTRAINTS_FAILURE)
    assert any("HMAC" in m for m in reports[0].messages)


def rejected(reports: list[SignatureReport]) -> None:
    raise AssertionError(f"input accepted, expected SiegelError: {[(r.indication, r.messages) for r in reports]}")


NOT_VALID = one_of((Indication.TOTAL_FAILED, None), (Indication.INDETERMINATE, SubIndication.CRYPTO_CONSTRAINTS_FAILURE),
                   (Indication.INDETERMINATE, SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE),
                   (Indication.INDETERMINATE, SubIndication.NO_SIGNING_CERTIFICATE_FOUND),
                   (Indication.INDETERMINATE, SubIndication.SIGNED_DATA_NOT_FOUND))
CERT_REFERENCE_MISMATCH = one_of((Indication.TOTAL_FAILED, None),
                                 (Indication.INDETERMINATE, SubIndication.NO_SIGNING_CERTIFICATE_FOUND))
BROKEN_ALGORITHM = one_of((Indication.INDETERMINATE, SubIndication.CRYPTO_CONSTRAINTS_FAILURE),
                          (Indication.INDETERMINATE, SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE))

SIGNED_DATA_NOT_FOUND = indeterminate(SubIndication.SIGNED_DATA_NOT_FOUND)

VERDICTS: dict[str, Check] = {
    "valid(crypto)": crypto_valid,
    "valid(crypto) -> INDETERMINATE/NO_CERTIFICATE_CHAIN_FOUND": crypto_valid,
    "valid(crypto) (signxml cannot process XAdES 1.2.2 namespace)": crypto_valid,
    "valid(crypto) BUT the signed scope is only the genuine element": crypto_valid,
    "valid(crypto) per signxml": crypto_valid,
    "valid(crypto) with sample.xml; invalid digest with any other content": crypto_valid,
    "valid": crypto_valid,
    "valid (DSA)": crypto_valid,
    "valid (DSA, needs rfc3161.txt)": crypto_valid,
    "valid (DSA-SHA1, legacy)": crypto_valid,
    "valid (ECDSA P-256)": crypto_valid,
    "valid (ECDSA P-384)": crypto_valid,
    "valid (ECDSA P-521)": crypto_valid,
    "valid (RSA)": crypto_valid,
    "valid (base64 transform)": crypto_valid,
    "valid (manifest references)": crypto_valid,
    "valid (needs rfc3161.txt resolved for the external URI)": crypto_valid,
    "valid crypto (X509Certificate key info); signxml flags cert": crypto_valid,
    "valid crypto; X509Data variants": crypto_valid,
    "valid crypto; cert+CRL in KeyInfo": crypto_valid,
    'valid per producer (signxml lists it as "bad interop case" for chain reasons)': crypto_valid,
    "valid per producer": crypto_valid,
    "valid per producer; XPath transform (many verifiers refuse)": crypto_valid,
    "accepted by signxml (W3C TR2012 case on DER-encoded signature values); verdict not independently confirmed":
        crypto_valid,
    "signature math verifies with rsa-cert.der (dsig11:X509Digest reference); signxml still raises "
    "InvalidCertificate (cert policy) -> treat as indeterminate": indeterminate(SubIndication.NO_SIGNING_CERTIFICATE_FOUND),
    "valid per producer but exotic (xpointer, xslt, here()); expected to be refused by a hardened verifier": rejected,
    "indeterminate (SIGNED_DATA_NOT_FOUND)": SIGNED_DATA_NOT_FOUND,
    "indeterminate (SIGNED_DATA_NOT_FOUND) - note: signature math verifies (signxml accepts), the trap is what is "
    "reported as signed": SIGNED_DATA_NOT_FOUND,
    "indeterminate (SIGNED_DATA_NOT_FOUND) - signature math verifies (signxml accepts)": SIGNED_DATA_NOT_FOUND,
    "indeterminate (SIGNED_DATA_NOT_FOUND) / invalid": one_of(
        (Indication.INDETERMINATE, SubIndication.SIGNED_DATA_NOT_FOUND), (Indication.TOTAL_FAILED, None)),
    "invalid": invalid,
    "invalid (B-level not technically valid)": invalid,
    "invalid (bad SignatureValue; signxml: schema-invalid)": invalid,
    "invalid (digest mismatch)": one_of((Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE)),
    "invalid (signxml: InvalidSignature)": invalid,
    "not asserted by DSS; signxml: InvalidSignature": invalid,
    "invalid (counter-signature)": counter_signature_invalid,
    "invalid/indeterminate": NOT_VALID,
    "invalid/indeterminate: signer cert expired at validation time": one_of((Indication.TOTAL_FAILED, None),
                                                                            (Indication.INDETERMINATE, None)),
    "signature crypto valid, signing-cert ref mismatch -> should fail/indeterminate": CERT_REFERENCE_MISMATCH,
    "as above": CERT_REFERENCE_MISMATCH,
    "signing-cert ref mismatch": CERT_REFERENCE_MISMATCH,
    "error (DSS throws DSSException on validate)": BROKEN_ALGORITHM,
    "reject: RSA-MD5": BROKEN_ALGORITHM,
    "reject/unsupported: RIPEMD-160": BROKEN_ALGORITHM,
    "reject (HMAC-MD5) under modern policy; valid per 2002 producer": BROKEN_ALGORITHM,
    "invalid - must reject HMACOutputLength=40": hmac_refused,
    "invalid - must reject truncated HMAC": hmac_refused,
    "invalid - truncated HMAC (HMACOutputLength 64)": hmac_refused,
    'valid with key "secret"': hmac_refused,
    'valid with key "test"': hmac_refused,
    'valid with key "testkey"': hmac_refused,
    "B,T valid; A-level invalid": archive_invalid,
    "reject input": rejected,
}

POLICY: dict[str, tuple[Check, str]] = {
    "xmldsig-interop/phaos/signature-rsa-detached-xslt-transform-bad-retrieval-method.xml": (
        indeterminate(SubIndication.NO_SIGNING_CERTIFICATE_FOUND),
        ("KeyInfo holds only a RetrievalMethod; Siegel fetches nothing, so no key is found (INDETERMINATE, "
         "not the producer's 'invalid', which needs the retrieved certificate)")),
    "xmldsig-interop/merlin/signature-x509-crt.xml": (
        SIGNED_DATA_NOT_FOUND, "a reference names http://www.w3.org/TR/xml-stylesheet; Siegel fetches nothing"),
    "xmldsig-interop/merlin/signature-x509-crt-crl.xml": (
        SIGNED_DATA_NOT_FOUND, "a reference names http://www.w3.org/TR/xml-stylesheet; Siegel fetches nothing"),
}

SIGNATURE_VERDICTS_SKIPPED = ("(doc)", "(data)", "(data for detached refs)", "(trust anchor)", "(trust input)")


@dataclass(frozen=True)
class Case:
    path: str  # folder/file
    verdict: str

    @property
    def disagree(self) -> bool:
        return "DISAGREE" in self.verdict


def _cases() -> list[Case]:
    cases = []
    for folder in FOLDERS:
        manifest = SHARED / "vectors" / folder / "manifest.json"
        if not manifest.is_file():
            continue
        for row in json.loads(manifest.read_text()):
            if row["file"].endswith(".xml") and row["verdict"] not in SIGNATURE_VERDICTS_SKIPPED:
                cases.append(Case(f"{folder}/{row['file']}", row["verdict"]))
    return cases


CASES = _cases()


def _case_id(case: Case) -> str:
    prefix = "DISAGREE-excluded:" if case.disagree else "policy:" if case.path in POLICY else ""
    return prefix + case.path


def _detached(vectors: Path, case: Case) -> dict[str, bytes]:
    folder = vectors / case.path.split("/", 1)[0]
    return {uri: (folder / file).read_bytes() for uri, file in DETACHED.get(case.path, {}).items()}


def verify_vector(vectors: Path, path: str, **kwargs) -> list[SignatureReport]:
    return verify_xml_signatures((vectors / path).read_bytes(), UNTRUSTED, name=Path(path).name, **kwargs)


@pytest.fixture(scope="module")
def vectors(shared_dir: Path) -> Path:
    return shared_dir / "vectors"


@pytest.mark.parametrize("case", CASES or [None], ids=[_case_id(c) for c in CASES] or ["no-vectors"])
def test_vector_verdict(vectors: Path, case: Case | None) -> None:
    if case is None:
        pytest.skip("no vector manifests found")
    if case.disagree:
        pytest.skip(f"DISAGREE row, not asserted: {case.verdict}")
    check, reason = POLICY.get(case.path, (VERDICTS.get(case.verdict), "the manifest's verdict"))
    assert check is not None, f"verdict text not mapped in VERDICTS: {case.verdict!r}"
    try:
        reports = verify_vector(vectors, case.path, detached=_detached(vectors, case))
    except SiegelError as exc:
        assert check is rejected, f"unexpected refusal ({reason}): {exc}"
        assert exc.code in (Code.HOSTILE_XML, Code.MALFORMED_XML)
        return
    try:
        check(reports)
    except AssertionError as exc:
        raise AssertionError(f"expected per {reason}: {exc}") from None


def test_every_policy_override_names_a_vector() -> None:
    assert set(POLICY) <= {c.path for c in CASES} or not CASES


# --- detached content ------------------------------------------------------------------------------------

DETACHED_SIGNATURE = "dss-xades/detached/xades-detached.xml"


def test_detached_with_other_content_is_a_hash_failure(vectors: Path) -> None:
    [report] = verify_vector(vectors, DETACHED_SIGNATURE, detached={"sample.xml": b"<other/>"})
    assert (report.indication, report.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE)


def test_detached_not_supplied_is_signed_data_not_found(vectors: Path) -> None:
    [report] = verify_vector(vectors, DETACHED_SIGNATURE)
    assert (report.indication, report.sub_indication) == (Indication.INDETERMINATE,
                                                         SubIndication.SIGNED_DATA_NOT_FOUND)
    assert report.scopes == []


def test_detached_by_digest(vectors: Path) -> None:
    sample = (vectors / "dss-xades/detached/sample.xml").read_bytes()
    [report] = verify_vector(vectors, DETACHED_SIGNATURE,
                             detached_digests={"sample.xml": ("sha256", hashlib.sha256(sample).digest())})
    _crypto_valid(report)
    [scope] = report.scopes
    assert (scope.name, scope.scope, scope.digest) == ("sample.xml", "DIGEST", hashlib.sha256(sample).digest())


def test_detached_by_wrong_digest(vectors: Path) -> None:
    [report] = verify_vector(vectors, DETACHED_SIGNATURE,
                             detached_digests={"sample.xml": ("sha256", hashlib.sha256(b"other").digest())})
    assert (report.indication, report.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE)


# --- what XML signature wrapping must never achieve --------------------------------------------------------

def _scope_text(report: SignatureReport) -> str:
    return " ".join(f"{s.name} {s.description}" for s in report.scopes)


def test_fake_content_reports_only_the_genuine_element(vectors: Path) -> None:
    [report] = verify_vector(vectors, "dss-xades/xsw/XSW-enveloped-fake-content.xml")
    [scope] = report.scopes
    assert scope.name == "#TLISK-102" and scope.scope == "PARTIAL"
    assert scope.description.endswith("at /TrustServiceStatusList/Signature/Object[2]/TrustServiceStatusList")
    assert "EVIL" not in _scope_text(report)


@pytest.mark.parametrize("path, injected", [
    ("dss-xades/xsw/XSW-enveloped-fake-content-two-same-id.xml", "#TLISK-102"),
    ("dss-xades/xsw/XSW-enveloped-fake-signedProperties.xml", "xades-id-12c636e98a145ca9cd7847934a3e8a69"),
    ("dss-xades/xsw/XSW-enveloping-fake-manifest.xml", "blabla.png"),
    ("dss-xades/xsw/XSW-enveloping-fake-manifest.xml", "evil"),
    ("dss-xades/xsw/XSW-enveloping-fake-object.xml", "#o-id-1"),
    ("dss-xades/xsw/XSW-enveloping-fake-object.xml", "evil"),
    ("dss-xades/xades-counter-signature-injected.xml", "evil"),
])
def test_wrapped_content_is_never_a_scope(vectors: Path, path: str, injected: str) -> None:
    for report in verify_vector(vectors, path):
        assert injected not in _scope_text(report)


def test_two_same_ids_is_a_format_failure_without_scope(vectors: Path) -> None:
    [report] = verify_vector(vectors, "dss-xades/xsw/XSW-enveloped-fake-content-two-same-id.xml")
    assert (report.indication, report.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE)
    assert report.scopes == []


def test_fake_signed_properties_are_not_read(vectors: Path) -> None:
    """The fake SignedProperties claim 2018, the unsigned genuine-looking ones 2218: neither is used."""
    [report] = verify_vector(vectors, "dss-xades/xsw/XSW-enveloped-fake-signedProperties.xml")
    assert report.claimed_signing_time is None and report.level is None


# --- what the reports say about intact vectors -----------------------------------------------------------

def test_manifest_entries_are_scopes(vectors: Path) -> None:
    [report] = verify_vector(vectors, "dss-xades/plugtest/Signature-X-SK_DIT-1.xml")
    names = [s.name for s in report.scopes]
    assert "#objectId" in names and all("manifest" in s.description for s in report.scopes if s.name == "#objectId")


def test_xpath_filter_intersection_is_a_partial_scope(vectors: Path) -> None:
    """URI="" narrowed by XPath Filter 2.0 to //ToBeSigned: the scope is that element, not the document."""
    [report] = verify_vector(vectors, "xmldsig-interop/aleksey/x509data-test.xml")
    [scope] = report.scopes
    assert scope.scope == "PARTIAL" and scope.description.startswith("the elements at /Document/ToBeSigned")


@pytest.mark.parametrize("path", ["dss-xades/plugtest/Signature-X-CZ_SEF-4.xml",  # escaped UTF-8 in the name
                                  "dss-xades/plugtest/Signature-X-SK_DIT-1.xml",  # quoted values
                                  "dss-xades/xsw/XSW-enveloped-fake-content.xml"])  # spaces after commas
def test_signing_certificate_v1_issuer_names_in_rfc2253_forms_match(vectors: Path, path: str) -> None:
    [report] = verify_vector(vectors, path)
    assert report.level == "B-B" and not any("names the issuer" in m for m in report.messages), report.messages


def test_xades_b_report(vectors: Path) -> None:
    [report] = verify_vector(vectors, "dss-xades/dss-signed.xml")
    assert (report.id, report.format, report.level) == ("id-8aa555101680cd4b9ace1ab16b32e4d3", "XAdES", "B-B")
    assert report.claimed_signing_time is not None and report.signer_certificate is not None
    assert report.signature_algorithm == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    assert report.digest_algorithm == "sha256"
    [scope] = report.scopes
    assert (scope.name, scope.scope) == ("dss-signed.xml", "FULL")


def test_xmldsig_report_without_id(vectors: Path) -> None:
    [report] = verify_vector(vectors, "xmldsig-interop/merlin/signature-enveloping-rsa.xml")
    assert (report.id, report.format, report.level) == ("signature-1", "XMLDSig", None)
    assert any("SHA-1" in m and "weak" in m for m in report.messages)


def test_copied_signature_timestamp_is_named(vectors: Path) -> None:
    [report] = verify_vector(vectors, "dss-xades/xades-t-copied-sigtst.xml")
    [stamp] = [t for t in report.timestamps if t.kind == "signature"]
    assert not stamp.valid and IMPRINT_MISMATCH in stamp.message
    assert report.best_signature_time is None


# --- with the vector's own roots trusted -----------------------------------------------------------------

def _embedded_certificates(document: bytes) -> list[bytes]:
    """Certificates a vector carries: KeyInfo, CertificateValues and inside its timestamp tokens."""
    root = etree.fromstring(document)
    found = []
    for element in root.iter("{*}X509Certificate", "{*}EncapsulatedX509Certificate", "{*}EncapsulatedTimeStamp"):
        try:
            der = base64.b64decode("".join((element.text or "").split()), validate=True)
        except binascii.Error:
            continue
        if etree.QName(element).localname != "EncapsulatedTimeStamp":
            found.append(der)
            continue
        found.extend(c.chosen.dump() for c in cms.ContentInfo.load(der)["content"]["certificates"])
    return found


def _embedded_roots(document: bytes) -> tuple[bytes, ...]:
    roots = []
    for der in _embedded_certificates(document):
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError:
            continue
        if certificate.subject == certificate.issuer:
            roots.append(der)
    return tuple(dict.fromkeys(roots))


def verify_trusting_its_roots(vectors: Path, path: str) -> SignatureReport:
    document = (vectors / path).read_bytes()
    [report] = verify_xml_signatures(document, Trust(roots=_embedded_roots(document), allow_fetching=False))
    return report


def test_trusted_root_and_embedded_validation_data_pass(vectors: Path) -> None:
    """HU_POL-3 carries its roots, the OCSP/CRL values and timestamps: TOTAL-PASSED at B-LTA today,
    its expired CA certificate covered by the signature timestamp's proof of existence."""
    report = verify_trusting_its_roots(vectors, "dss-xades/plugtest/Signature-X-HU_POL-3.xml")
    assert (report.indication, report.sub_indication, report.level) == (Indication.TOTAL_PASSED, None, "B-LTA"), \
        report.messages
    assert report.best_signature_time == datetime(2014, 11, 5, 11, 50, 7, tzinfo=UTC)
    assert report.chain[0] == report.signer_certificate and len(report.chain) >= 2
    assert all(t.valid for t in report.timestamps)


@pytest.mark.parametrize("path, level, archive_valid", [
    ("dss-xades/xades-extended-t.xml", "B-T", None),
    ("dss-xades/xades-lta-valid.xml", "B-LTA", True),
    ("dss-xades/xades-lta-copied-atst.xml", "B-LT", False),
])
def test_levels_with_trusted_timestamps(vectors: Path, path: str, level: str, archive_valid: bool | None) -> None:
    report = verify_trusting_its_roots(vectors, path)
    assert report.level == level, report.messages
    assert [t.valid for t in report.timestamps if t.kind == "signature"] == [True]
    assert [t.valid for t in report.timestamps if t.kind == "archive"] == ([] if archive_valid is None
                                                                             else [archive_valid])
    assert report.indication is not Indication.TOTAL_FAILED
