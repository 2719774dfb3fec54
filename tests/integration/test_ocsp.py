"""The RFC 6960 OCSP responder on the fixture's CA, SoftHSM2 token, SQLite and PostgreSQL.

Answers are checked by ``cryptography`` (signature by the named responder, CertID, nonce, times) and
by the independent ``openssl ocsp -respin`` against the internal root.
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from server.errors import Code, SiegelError
from server.identity.users import UserService
from server.pki.ca import ISSUING, ROOT
from server.pki.keystore import KeyStore
from server.pki.ocsp import OcspResponder
from tests.fixtures.pki import Pki

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


@pytest.fixture
def responder(pki: Pki) -> OcspResponder:
    return _responder(pki, lambda: pki.hsm)


def _responder(pki: Pki, keys: object) -> OcspResponder:
    from adapters.hsm.keys import hsm_private_key

    return OcspResponder(pki.ca, keys, hsm_private_key, pki.settings.pki)  # type: ignore[arg-type]


def _user_certificate(pki: Pki, name: str = "anna") -> x509.Certificate:
    UserService(pki.engine, pki.audit, 0).add(name, f"{name}@example.com", "signer", PASSWORD)
    return x509.load_der_x509_certificate(pki.ca.issue_user(name, "test").der)


def _audit_count(pki: Pki) -> int:
    return sum(1 for _ in pki.audit.entries())


def _ca(pki: Pki, name: str) -> x509.Certificate:
    return pki.ca.ca_certificates()[name]


def _request(cert: x509.Certificate, issuer: x509.Certificate, algorithm: hashes.HashAlgorithm = hashes.SHA1(),
             nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(Encoding.DER)


def _verify_signature(response: ocsp.OCSPResponse, signer: x509.Certificate) -> None:
    key = signer.public_key()
    assert response.signature_hash_algorithm is not None
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(response.signature_hash_algorithm))
    else:
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(),
                   response.signature_hash_algorithm)


def _successful(responder: OcspResponder, der: bytes) -> ocsp.OCSPResponse:
    reply = responder.respond(der)
    response = ocsp.load_der_ocsp_response(reply.der)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL, reply.problem
    assert reply.problem is None
    return response


def _status_only(responder: OcspResponder, der: bytes) -> tuple[ocsp.OCSPResponseStatus, str | None]:
    reply = responder.respond(der)
    return ocsp.load_der_ocsp_response(reply.der).response_status, reply.problem


@pytest.mark.parametrize("algorithm", [hashes.SHA1(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512()],
                         ids=lambda a: a.name)
def test_good_answer_signed_by_the_delegated_signer_in_the_request_algorithm(
        pki: Pki, responder: OcspResponder, algorithm: hashes.HashAlgorithm) -> None:
    cert = _user_certificate(pki)
    issuing = _ca(pki, ISSUING)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    response = _successful(responder, _request(cert, issuing, algorithm, nonce=b"0123456789abcdef"))

    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == cert.serial_number
    assert response.hash_algorithm.name == algorithm.name
    asked = ocsp.load_der_ocsp_request(_request(cert, issuing, algorithm))
    assert (response.issuer_name_hash, response.issuer_key_hash) == (asked.issuer_name_hash, asked.issuer_key_hash)
    nonce = response.extensions.get_extension_for_class(x509.OCSPNonce)
    assert nonce.value.nonce == b"0123456789abcdef" and not nonce.critical

    signer = x509.load_der_x509_certificate(pki.ca.service_credentials("ocsp")[1][0])
    assert response.certificates == [signer]
    assert response.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(signer.public_key()).digest
    assert response.responder_name is None
    assert ExtendedKeyUsageOID.OCSP_SIGNING in signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert signer.issuer == issuing.subject
    _verify_signature(response, signer)

    assert before <= response.this_update_utc <= datetime.now(timezone.utc)
    assert response.next_update_utc is not None
    assert response.next_update_utc - response.this_update_utc == timedelta(
        minutes=pki.settings.pki.ocsp_validity_minutes)


def test_no_nonce_asked_none_given(pki: Pki, responder: OcspResponder) -> None:
    response = _successful(responder, _request(_user_certificate(pki), _ca(pki, ISSUING)))
    with pytest.raises(x509.ExtensionNotFound):
        response.extensions.get_extension_for_class(x509.OCSPNonce)


@pytest.mark.parametrize("reason", ["keyCompromise", "cessationOfOperation", "certificateHold", "unspecified"])
def test_revoked_with_time_and_reason(pki: Pki, responder: OcspResponder, reason: str) -> None:
    cert = _user_certificate(pki)
    serial = format(cert.serial_number, "x")
    pki.ca.revoke(serial, reason, "test")
    response = _successful(responder, _request(cert, _ca(pki, ISSUING), hashes.SHA256()))

    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    listed = x509.load_der_x509_crl(pki.ca.current_crl(ISSUING)).get_revoked_certificate_by_serial_number(
        cert.serial_number)
    assert listed is not None and response.revocation_time_utc == listed.revocation_date_utc
    expected = None if reason == "unspecified" else x509.ReasonFlags(reason)
    assert response.revocation_reason == expected


def test_released_hold_is_good_again(pki: Pki, responder: OcspResponder) -> None:
    cert = _user_certificate(pki)
    serial = format(cert.serial_number, "x")
    pki.ca.revoke(serial, "certificateHold", "test")
    pki.ca.revoke(serial, "removeFromCRL", "test")
    response = _successful(responder, _request(cert, _ca(pki, ISSUING)))
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD


def test_a_serial_the_ca_never_issued_is_unknown(pki: Pki, responder: OcspResponder) -> None:
    issuing = _ca(pki, ISSUING)
    cert = _user_certificate(pki)
    der = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        ocsp.load_der_ocsp_request(_request(cert, issuing)).issuer_name_hash,
        ocsp.load_der_ocsp_request(_request(cert, issuing)).issuer_key_hash,
        cert.serial_number + 1, hashes.SHA1()).build().public_bytes(Encoding.DER)
    assert _successful(responder, der).certificate_status is ocsp.OCSPCertStatus.UNKNOWN


def test_the_issuing_ca_is_answered_by_the_root(pki: Pki, responder: OcspResponder) -> None:
    """The root CA's certificates are answered with the root's own key (the delegate is the issuing CA's)."""
    root, issuing = _ca(pki, ROOT), _ca(pki, ISSUING)
    response = _successful(responder, _request(issuing, root, hashes.SHA256()))
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(root.public_key()).digest
    assert response.certificates == []
    _verify_signature(response, root)
    # The root's own serial is not something the root answers for: it is the trust anchor.
    assert _successful(responder, _request(root, root)).certificate_status is ocsp.OCSPCertStatus.UNKNOWN


def test_a_foreign_issuer_is_unauthorized(pki: Pki, responder: OcspResponder) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Elsewhere CA")])
    now = datetime.now(timezone.utc)
    foreign = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(7).not_valid_before(now).not_valid_after(now + timedelta(days=1))
               .sign(key, hashes.SHA256()))
    assert _status_only(responder, _request(foreign, foreign))[0] is ocsp.OCSPResponseStatus.UNAUTHORIZED


def _unknown_hash_request(pki: Pki, oid: str) -> bytes:
    cert = _user_certificate(pki)
    parsed = asn1_ocsp.OCSPRequest.load(_request(cert, _ca(pki, ISSUING)))
    fields = parsed.native
    fields["tbs_request"]["request_list"][0]["req_cert"]["hash_algorithm"]["algorithm"] = oid
    return asn1_ocsp.OCSPRequest(fields).dump()


@pytest.mark.parametrize("make", [
    pytest.param(lambda pki: b"", id="empty"),
    pytest.param(lambda pki: b"\x30\x82\x01", id="truncated-header"),
    pytest.param(lambda pki: _request(_user_certificate(pki), _ca(pki, ISSUING))[:-5], id="truncated"),
    pytest.param(lambda pki: b"GET / HTTP/1.1\r\n\r\n", id="garbage"),
    pytest.param(lambda pki: _unknown_hash_request(pki, "1.2.3.4.5"), id="unknown-hash-oid"),
    pytest.param(lambda pki: _unknown_hash_request(pki, "md5"), id="md5"),
])
def test_malformed_requests_get_malformed_request(pki: Pki, responder: OcspResponder, make: object) -> None:
    der = make(pki)  # type: ignore[operator]
    before = _audit_count(pki)
    status, problem = _status_only(responder, der)
    assert status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert problem
    assert _audit_count(pki) == before


def test_a_failing_hsm_is_an_internal_error(pki: Pki) -> None:
    def down() -> KeyStore:
        raise SiegelError(Code.HSM_UNAVAILABLE, "token removed")

    status, problem = _status_only(_responder(pki, down), _request(_user_certificate(pki), _ca(pki, ISSUING)))
    assert status is ocsp.OCSPResponseStatus.INTERNAL_ERROR
    assert problem == "token removed"


def test_answers_write_no_audit_entries(pki: Pki, responder: OcspResponder) -> None:
    der = _request(_user_certificate(pki), _ca(pki, ISSUING))
    before = _audit_count(pki)
    for _ in range(3):
        _successful(responder, der)
    assert _audit_count(pki) == before


def test_a_renewed_signer_is_picked_up(pki: Pki, responder: OcspResponder) -> None:
    cert = _user_certificate(pki)
    der = _request(cert, _ca(pki, ISSUING))
    first = _successful(responder, der).responder_key_hash
    old = pki.ca.service_credentials("ocsp")[1][0]
    pki.ca.revoke(format(x509.load_der_x509_certificate(old).serial_number, "x"), "superseded", "test")
    pki.ca.init("test")  # issues a new OCSP signer certificate with a new key
    second = _successful(responder, der)
    assert second.responder_key_hash != first
    _verify_signature(second, x509.load_der_x509_certificate(pki.ca.service_credentials("ocsp")[1][0]))


def _openssl_ocsp(tmp_path: Path, pki: Pki, cert: x509.Certificate, response: bytes) -> str:
    root, issuing = _ca(pki, ROOT), _ca(pki, ISSUING)
    (tmp_path / "root.pem").write_bytes(root.public_bytes(Encoding.PEM))
    (tmp_path / "issuing.pem").write_bytes(issuing.public_bytes(Encoding.PEM))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    (tmp_path / "response.der").write_bytes(response)
    done = subprocess.run(["openssl", "ocsp", "-respin", "response.der", "-issuer", "issuing.pem", "-sha256",
                           "-cert", "cert.pem", "-CAfile", "root.pem", "-verify_other", "issuing.pem"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Response verify OK" in done.stderr, done.stderr
    return done.stdout


def test_openssl_verifies_good_then_revoked(pki: Pki, responder: OcspResponder, tmp_path: Path) -> None:
    cert = _user_certificate(pki)
    der = _request(cert, _ca(pki, ISSUING), hashes.SHA256())
    assert "cert.pem: good" in _openssl_ocsp(tmp_path, pki, cert, responder.respond(der).der)
    pki.ca.revoke(format(cert.serial_number, "x"), "keyCompromise", "test")
    out = _openssl_ocsp(tmp_path, pki, cert, responder.respond(der).der)
    assert "cert.pem: revoked" in out and "Reason: keyCompromise" in out, out
