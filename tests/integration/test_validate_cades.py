"""verify_cades on real CAdES signatures of users' HSM keys, against the online test PKI (OCSP, CRL, TSA).

Every report made here is also written as TS 119 102-2 XML and validated against the official XSD when
``../shared/standards`` is present (tests/unit/test_validation_report.py says so by skipping where it is not).
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta, timezone

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from lxml import etree

from adapters.timestamp.client import TimestampClient, endpoint_from_url
from server.pki.ca import serial_hex
from server.signing import cades
from server.signing.cades import SigningKey, sign_cades
from server.signing.keysource import DigestAlgorithm
from server.signing.levels import Level, Packaging
from server.validation.cades import verify_cades
from server.validation.certificates import ChainResult, check_signer
from server.validation.model import Indication, SignatureReport, SubIndication, Trust, ValidationReport
from server.validation.report import to_etsi_xml
from server.validation.timestamps import check_timestamp
from server.xmlsafe import parse_trusted_file, parse_xml
from tests.conftest import SHARED
from tests.fixtures.pki import OnlinePki, Pki, user_key

pytestmark = pytest.mark.integration

DOCUMENT = b"Kaufvertrag zwischen der Muster GmbH und der Beispiel AG\n" * 40
XSD = SHARED / "standards" / "TS119102-2-v122.xsd"
_SCHEMA: list[etree.XMLSchema] = []


def _user_key(pki: Pki, name: str) -> tuple[SigningKey, str]:
    """The key and the certificate's serial (as ``siegel ca revoke`` takes it)."""
    key = user_key(pki, name)
    return key, serial_hex(x509.load_der_x509_certificate(key.chain[0]).serial_number)


def _root(pki: Pki) -> bytes:
    return pki.ca.ca_certificate_der("ROOT")


def _trust(pki: Pki, **kwargs: object) -> Trust:
    return Trust((_root(pki),), **kwargs)  # type: ignore[arg-type]


def _tsa(pki: OnlinePki) -> TimestampClient:
    return TimestampClient([endpoint_from_url(pki.url + "/tsa", (pki.ca.ca_certificates()["ROOT"],))], 10, 0)


def _verify(signature: bytes, trust: Trust, **kwargs: object) -> SignatureReport:
    """The one report of a one-signer signature, whose XML must be valid against TS 119 102-2."""
    reports = verify_cades(signature, trust, **kwargs)  # type: ignore[arg-type]
    _assert_valid_xml(reports)
    assert len(reports) == 1, reports
    return reports[0]


def _assert_valid_xml(reports: list[SignatureReport]) -> None:
    if not XSD.is_file():
        return
    if not _SCHEMA:
        _SCHEMA.append(etree.XMLSchema(parse_trusted_file(XSD)))
    document = parse_xml(to_etsi_xml(ValidationReport(reports, datetime.now(timezone.utc))), max_depth=50)
    assert _SCHEMA[0].validate(document), _SCHEMA[0].error_log


def _other_root() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Unrelated Root")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


def _flip_signature_byte(signature: bytes) -> bytes:
    value = cms.ContentInfo.load(signature)["content"]["signer_infos"][0]["signature"].native
    at = signature.rindex(value) + len(value) // 2
    return signature[:at] + bytes([signature[at] ^ 0x01]) + signature[at + 1:]


def test_b_b_and_b_t_detached_and_enveloping_pass_with_our_root(pki_online: OnlinePki) -> None:
    key, _ = _user_key(pki_online, "anna")
    tsa = _tsa(pki_online)
    for level in (Level.B_B, Level.B_T):
        for packaging in (Packaging.DETACHED, Packaging.ENVELOPING):
            signature = sign_cades(key, content=DOCUMENT, level=level, packaging=packaging,
                                   timestamps=tsa if level is Level.B_T else None)
            given = DOCUMENT if packaging is Packaging.DETACHED else None
            report = _verify(signature, _trust(pki_online), content=given, name="kaufvertrag.txt")
            case = f"{level} {packaging}: {report.messages}"
            assert report.indication is Indication.TOTAL_PASSED and report.sub_indication is None, case
            assert report.format == "CAdES" and report.level == level.value, case
            assert report.chain[0] == key.chain[0] and report.chain[-1] == _root(pki_online), case
            assert report.signer_certificate == key.chain[0] and report.claimed_signing_time is not None
            (scope,) = report.scopes
            assert (scope.name, scope.scope, scope.digest) == ("kaufvertrag.txt", "FULL",
                                                              hashlib.sha256(DOCUMENT).digest())
            assert report.digest_algorithm == "sha256" and report.signature_algorithm == "sha256_ecdsa"
            assert any(m.startswith("revocation: OCSP good") for m in report.messages), case
            if level is Level.B_T:
                (stamp,) = report.timestamps
                assert stamp.valid and stamp.kind == "signature" and stamp.time is not None, stamp
                assert report.best_signature_time == stamp.time
                assert abs(stamp.time - datetime.now(timezone.utc)) < timedelta(minutes=1)
            else:
                assert report.timestamps == [] and report.best_signature_time is None


def test_a_signature_over_a_digest_is_checked_against_the_digest(pki_online: OnlinePki) -> None:
    key, _ = _user_key(pki_online, "dora")
    digest = hashlib.sha384(DOCUMENT).digest()
    signature = sign_cades(key, content_digest=digest, digest=DigestAlgorithm.SHA384)
    report = _verify(signature, _trust(pki_online), content_digest=("SHA-384", digest))
    assert report.indication is Indication.TOTAL_PASSED, report.messages
    assert report.scopes[0].scope == "DIGEST" and report.scopes[0].digest == digest
    assert _verify(signature, _trust(pki_online), content=DOCUMENT).indication is Indication.TOTAL_PASSED

    other = _verify(signature, _trust(pki_online), content_digest=("sha256", hashlib.sha256(DOCUMENT).digest()))
    assert (other.indication, other.sub_indication) == (Indication.INDETERMINATE, SubIndication.SIGNED_DATA_NOT_FOUND)
    assert "sha256" in other.messages[0] and "sha384" in other.messages[0]


def test_tampered_content_and_a_flipped_signature_byte_fail(pki_online: OnlinePki) -> None:
    key, _ = _user_key(pki_online, "bert")
    signature = sign_cades(key, content=DOCUMENT, level=Level.B_T, timestamps=_tsa(pki_online))

    tampered = _verify(signature, _trust(pki_online), content=DOCUMENT + b"!")
    assert (tampered.indication, tampered.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE)
    assert "message-digest" in tampered.messages[0]

    flipped = _verify(_flip_signature_byte(signature), _trust(pki_online), content=DOCUMENT)
    assert (flipped.indication, flipped.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.SIG_CRYPTO_FAILURE)
    assert flipped.signer_certificate == key.chain[0]


def test_a_foreign_root_finds_no_chain_and_a_detached_signature_needs_its_content(pki_online: OnlinePki) -> None:
    key, _ = _user_key(pki_online, "carl")
    signature = sign_cades(key, content=DOCUMENT)

    untrusted = _verify(signature, Trust((_other_root(),)), content=DOCUMENT)
    assert (untrusted.indication, untrusted.sub_indication) == (Indication.INDETERMINATE,
                                                                SubIndication.NO_CERTIFICATE_CHAIN_FOUND)
    assert untrusted.chain == [key.chain[0]]

    missing = _verify(signature, _trust(pki_online))
    assert (missing.indication, missing.sub_indication) == (Indication.INDETERMINATE,
                                                            SubIndication.SIGNED_DATA_NOT_FOUND)
    assert missing.scopes == [] and "no content" in missing.messages[0]


def test_revoked_after_signing_passes_with_a_timestamp_and_is_indeterminate_without(pki_online: OnlinePki) -> None:
    key, serial = _user_key(pki_online, "emil")
    b_b = sign_cades(key, content=DOCUMENT)
    b_t = sign_cades(key, content=DOCUMENT, level=Level.B_T, timestamps=_tsa(pki_online))
    time.sleep(1.1)  # the revocation time must lie after the timestamp's genTime (both in whole seconds)
    pki_online.ca.revoke(serial, "keyCompromise", "test")

    without = _verify(b_b, _trust(pki_online), content=DOCUMENT)
    assert (without.indication, without.sub_indication) == (Indication.INDETERMINATE, SubIndication.REVOKED_NO_POE)
    assert "revoked" in without.messages[0] and "no proof of existence" in without.messages[0]

    with_poe = _verify(b_t, _trust(pki_online), content=DOCUMENT)
    assert with_poe.indication is Indication.TOTAL_PASSED, with_poe.messages
    assert with_poe.best_signature_time is not None and "proof of existence" in with_poe.messages[1]
    assert any("OCSP revoked" in m for m in with_poe.messages)


def test_b_lt_and_b_lta_round_trip_passes_after_revocation_and_offline(pki_online: OnlinePki) -> None:
    if Level.B_LT not in cades.LEVELS:
        pytest.skip("server.signing.cades does not make B-LT yet")
    key, serial = _user_key(pki_online, "frieda")
    roots = [_root(pki_online)]
    b_lt = sign_cades(key, content=DOCUMENT, level=Level.B_LT, timestamps=_tsa(pki_online), trust_roots=roots)
    b_lta = sign_cades(key, content=DOCUMENT, level=Level.B_LTA, timestamps=_tsa(pki_online), trust_roots=roots,
                       packaging=Packaging.ENVELOPING)
    offline = _verify(b_lt, _trust(pki_online, allow_fetching=False), content=DOCUMENT)
    assert offline.indication is Indication.TOTAL_PASSED and offline.level == "B-LT", offline.messages
    assert any(m.startswith("revocation: OCSP good") and m.endswith("embedded") for m in offline.messages)

    time.sleep(1.1)
    pki_online.ca.revoke(serial, "keyCompromise", "test")
    for signature, level in ((b_lt, "B-LT"), (b_lta, "B-LTA")):
        report = _verify(signature, _trust(pki_online), content=DOCUMENT if level == "B-LT" else None)
        assert report.indication is Indication.TOTAL_PASSED, (level, report.messages)
        assert report.level == level
    lta = _verify(b_lta, _trust(pki_online, allow_fetching=False))
    assert lta.indication is Indication.TOTAL_PASSED and lta.level == "B-LTA", lta.messages
    (archive,) = [t for t in lta.timestamps if t.kind == "archive"]
    assert archive.valid and "not recomputed" not in archive.message, archive.message


def _without_certificate(signature: bytes, der: bytes) -> bytes:
    """The signature with the embedded certificate ``der`` taken out (and nothing else changed)."""
    info = cms.ContentInfo.load(signature)
    certificates = list(info["content"]["certificates"])
    assert any(c.chosen.dump() == der for c in certificates)
    info["content"]["certificates"] = [c for c in certificates if c.chosen.dump() != der]
    return info.dump()


def test_an_archive_timestamp_is_rebuilt_over_the_content_and_its_hash_index(pki_online: OnlinePki) -> None:
    if Level.B_LTA not in cades.LEVELS:
        pytest.skip("server.signing.cades does not make B-LTA yet")
    key, _ = _user_key(pki_online, "gerd")
    signature = sign_cades(key, content=DOCUMENT, level=Level.B_LTA, timestamps=_tsa(pki_online),
                           trust_roots=[_root(pki_online)])
    exact = _verify(signature, _trust(pki_online), content=DOCUMENT)
    assert exact.indication is Indication.TOTAL_PASSED and exact.level == "B-LTA", exact.messages

    digest_only = _verify(signature, _trust(pki_online), content_digest=("sha256", hashlib.sha256(DOCUMENT).digest()))
    assert digest_only.indication is Indication.TOTAL_PASSED and digest_only.level == "B-LTA"
    (archive,) = [t for t in digest_only.timestamps if t.kind == "archive"]
    assert archive.valid and "not recomputed" in archive.message

    other_content = _verify(signature, _trust(pki_online), content=DOCUMENT + b"!")
    assert other_content.sub_indication is SubIndication.HASH_FAILURE

    stripped = _verify(_without_certificate(signature, _root(pki_online)), _trust(pki_online), content=DOCUMENT)
    (archive,) = [t for t in stripped.timestamps if t.kind == "archive"]
    assert not archive.valid and "no longer has" in archive.message, archive.message
    assert stripped.level != "B-LTA"


def test_check_timestamp_needs_the_imprint_and_a_tsa_chain_to_a_trusted_root(pki_online: OnlinePki) -> None:
    digest = hashlib.sha256(DOCUMENT).digest()
    token = _tsa(pki_online).timestamp(digest).token
    good = check_timestamp(token, digest, "sha256", _trust(pki_online), "content")
    assert good.valid and good.kind == "content" and good.time is not None and "Time-Stamping" in (good.tsa or "")
    cases = [(hashlib.sha256(b"other").digest(), _trust(pki_online), "message imprint"),
             (digest, Trust((_other_root(),)), "trust anchor"), (digest, Trust(()), "no trust anchor")]
    for checked, trust, reason in cases:
        bad = check_timestamp(token, checked, "sha256", trust, "signature")
        assert not bad.valid and bad.time is None and reason in bad.message, (reason, bad.message)
    assert not check_timestamp(b"garbage", digest, "sha256", _trust(pki_online), "signature").valid


def _with_signed_attrs(signature: bytes, change: str) -> bytes:
    """The signature with its signing-certificate-v2 attribute dropped ("drop") or naming another hash ("other")."""
    info = cms.ContentInfo.load(signature)
    signer_info = info["content"]["signer_infos"][0]
    attrs = [a for a in signer_info["signed_attrs"] if change != "drop" or a["type"].native != "signing_certificate_v2"]
    if change == "other":
        for attr in attrs:
            if attr["type"].native == "signing_certificate_v2":
                attr["values"][0]["certs"][0]["cert_hash"] = bytes(32)
    signer_info["signed_attrs"] = cms.CMSAttributes(attrs)
    return info.dump(force=True)


def test_the_signers_certificate_must_be_embedded_and_bound_by_signing_certificate_v2(pki: Pki) -> None:
    key, _ = _user_key(pki, "hanna")
    signature = sign_cades(key, content=DOCUMENT)
    trust = _trust(pki, allow_fetching=False)
    dropped = _verify(_with_signed_attrs(signature, "drop"), trust, content=DOCUMENT)
    assert (dropped.indication, dropped.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE)
    other = _verify(_with_signed_attrs(signature, "other"), trust, content=DOCUMENT)
    assert (other.indication, other.sub_indication) == (Indication.INDETERMINATE,
                                                        SubIndication.NO_SIGNING_CERTIFICATE_FOUND)
    absent = _verify(_without_certificate(signature, key.chain[0]), trust, content=DOCUMENT)
    assert (absent.indication, absent.sub_indication) == (Indication.INDETERMINATE,
                                                          SubIndication.NO_SIGNING_CERTIFICATE_FOUND)
    assert absent.signer_certificate is None


@pytest.mark.parametrize("garbage", [b"", b"garbage", b"\x30\x03\x02\x01\x01", b"\x30\x80" + b"\x00" * 10,
                                     bytes.fromhex("300f06092a864886f70d010701a0020400")])
def test_anything_that_is_no_cms_signature_is_a_format_failure(garbage: bytes) -> None:
    (report,) = verify_cades(garbage, Trust((_other_root(),)), content=DOCUMENT)
    assert (report.indication, report.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE)
    assert report.messages and report.level is None
    _assert_valid_xml([report])


# ---------------------------------------------------------------- check_signer on a PKI made here (no network)

_USAGE = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
              encipher_only=False, decipher_only=False)
_UNREACHABLE_CRL = x509.CRLDistributionPoints([x509.DistributionPoint(
    [x509.UniformResourceIdentifier("http://127.0.0.1:9/made-here.crl")], None, None, None)])


def _made_here(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
               issuer_key: ec.EllipticCurvePrivateKey | None, serial: int, valid: tuple[datetime, datetime],
               ca: bool) -> x509.Certificate:
    """A certificate of a PKI made here; below the root, with a CRL distribution point that answers nothing."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signing_key = issuer_key or key
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.subject if issuer else subject)
               .public_key(key.public_key()).serial_number(serial).not_valid_before(valid[0])
               .not_valid_after(valid[1])
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **_USAGE),
                              critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
                              critical=False))
    if issuer is not None:
        builder = builder.add_extension(_UNREACHABLE_CRL, critical=False)
    return builder.sign(signing_key, hashes.SHA256())


class _Pki:
    """Root, optionally an intermediate CA, and a signer; revocation comes only from the CRLs given."""

    def __init__(self, *, leaf_from: datetime, leaf_until: datetime, intermediate: bool = False) -> None:
        now = datetime.now(timezone.utc)
        years = (now - timedelta(days=365), now + timedelta(days=365))
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = _made_here("Made-here Root", self.root_key, None, None, 1, years, True)
        self.issuer, self.issuer_key = self.root, self.root_key
        if intermediate:
            self.issuer_key = ec.generate_private_key(ec.SECP256R1())
            self.issuer = _made_here("Made-here CA", self.issuer_key, self.root, self.root_key, 2, years, True)
        self.leaf = _made_here("Made-here Signer", ec.generate_private_key(ec.SECP256R1()), self.issuer,
                               self.issuer_key, 3, (leaf_from, leaf_until), False)

    def crl(self, revoked_at: datetime | None = None, *, by_root: bool = False) -> bytes:
        """The signer's issuer's CRL (or the root's, ``by_root``), revoking its one child at ``revoked_at``."""
        issuer, key = (self.root, self.root_key) if by_root else (self.issuer, self.issuer_key)
        now = datetime.now(timezone.utc)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
                   .last_update(now - timedelta(hours=1)).next_update(now + timedelta(days=1))
                   .add_extension(x509.CRLNumber(1), critical=False))
        if revoked_at is not None:
            serial = 2 if by_root else 3
            builder = builder.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                                      .revocation_date(revoked_at).build())
        return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)

    def check(self, *, crls: tuple[bytes, ...] = (), poe: datetime | None = None) -> ChainResult:
        trust = Trust((self.root.public_bytes(Encoding.DER),), allow_fetching=False)
        pool = () if self.issuer is self.root else (self.issuer.public_bytes(Encoding.DER),)
        return check_signer(self.leaf.public_bytes(Encoding.DER), pool, trust, at=datetime.now(timezone.utc),
                            crls=crls, poe=poe)


def test_check_signer_rules_for_revoked_expired_and_unknown_status() -> None:
    now = datetime.now(timezone.utc)
    valid = _Pki(leaf_from=now - timedelta(days=10), leaf_until=now + timedelta(days=10))
    good = valid.check(crls=(valid.crl(),))
    assert good.passed and good.chain == (valid.leaf.public_bytes(Encoding.DER), valid.root.public_bytes(Encoding.DER))
    assert good.revocation.startswith("CRL of") and good.revocation.endswith("embedded")

    unknown = valid.check()
    assert (unknown.indication, unknown.sub_indication) == (Indication.INDETERMINATE, SubIndication.TRY_LATER)

    revoked_crl = valid.crl(revoked_at=now - timedelta(hours=2))
    earlier = valid.check(crls=(revoked_crl,), poe=now - timedelta(hours=3))
    assert earlier.passed and "proof of existence" in earlier.message, earlier
    for poe in (None, now - timedelta(hours=1)):
        later = valid.check(crls=(revoked_crl,), poe=poe)
        assert (later.indication, later.sub_indication) == (Indication.INDETERMINATE, SubIndication.REVOKED_NO_POE)
        assert later.revocation.startswith("revoked at")

    expired = _Pki(leaf_from=now - timedelta(days=10), leaf_until=now - timedelta(days=1))
    inside = expired.check(crls=(expired.crl(),), poe=now - timedelta(days=5))
    assert inside.passed and "expired" in inside.message, inside
    for crls, poe in (((expired.crl(),), None), ((), now - timedelta(days=5)),
                      ((expired.crl(),), now - timedelta(hours=1))):
        out = expired.check(crls=crls, poe=poe)
        assert (out.indication, out.sub_indication) == (Indication.INDETERMINATE, SubIndication.OUT_OF_BOUNDS_NO_POE)


def test_check_signer_accepts_a_revoked_ca_only_with_an_earlier_proof_of_existence() -> None:
    now = datetime.now(timezone.utc)
    pki = _Pki(leaf_from=now - timedelta(days=10), leaf_until=now + timedelta(days=10), intermediate=True)
    crls = (pki.crl(revoked_at=now - timedelta(hours=2), by_root=True), pki.crl())
    earlier = pki.check(crls=crls, poe=now - timedelta(hours=3))
    assert earlier.passed and len(earlier.chain) == 3, earlier
    for poe in (None, now - timedelta(hours=1)):
        later = pki.check(crls=crls, poe=poe)
        assert (later.indication, later.sub_indication) == (Indication.INDETERMINATE, SubIndication.REVOKED_CA_NO_POE)
