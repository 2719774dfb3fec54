"""CAdES B-B and B-T with users' HSM keys on SoftHSM2, checked by ``openssl cms -verify`` and ``openssl ts -verify``."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from adapters.timestamp.client import TimestampClient, endpoint_from_url
from server.errors import Code, SiegelError
from server.identity.users import UserService
from server.signing.cades import SigningKey, sign_cades
from server.signing.levels import Level, Packaging
from server.signing.keysource import DigestAlgorithm
from tests.fixtures.pki import Pki, make_pki, pki_settings
from tests.fixtures.tsa import ReferenceTsa

pytestmark = pytest.mark.integration

DOCUMENT = b"Rahmenvertrag zwischen der Muster GmbH und der Beispiel AG\n" * 50
SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
SIGNATURE_TIME_STAMP = "1.2.840.113549.1.9.16.2.14"


def _user_key(pki: Pki, name: str = "anna") -> SigningKey:
    UserService(pki.engine, pki.audit, 0).add(name, f"{name}@example.com", "signer", "correct horse battery")
    cert = pki.ca.issue_user(name, "test")
    return SigningKey(pki.hsm, cert.key_label, tuple(pki.hsm.certificate_chain(cert.key_label)))


def _files(tmp_path: Path, pki: Pki, signature: bytes) -> None:
    root = pki.ca.ca_certificates()["ROOT"]
    (tmp_path / "root.pem").write_bytes(root.public_bytes(Encoding.PEM))
    (tmp_path / "document.txt").write_bytes(DOCUMENT)
    (tmp_path / "signature.p7s").write_bytes(signature)


def _cms_verify(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", "signature.p7s",
                           "-CAfile", "root.pem", "-purpose", "any", *extra], cwd=tmp_path, capture_output=True,
                          timeout=60, check=False)


def _signer_info(signature: bytes) -> cms.SignerInfo:
    return cms.ContentInfo.load(signature)["content"]["signer_infos"][0]


def _signed_attribute_types(signature: bytes) -> set[str]:
    return {a["type"].dotted for a in _signer_info(signature)["signed_attrs"]}


def test_detached_b_b_verifies_with_openssl_and_carries_the_baseline_attributes(pki: Pki, tmp_path: Path) -> None:
    key = _user_key(pki)
    signature = sign_cades(key, content=DOCUMENT)
    _files(tmp_path, pki, signature)
    done = _cms_verify(tmp_path, "-content", "document.txt", "-out", "/dev/null")
    assert done.returncode == 0 and b"Verification successful" in done.stderr, done.stderr

    signed_data = cms.ContentInfo.load(signature)["content"]
    assert signed_data["encap_content_info"]["content"].native is None  # detached
    assert {"1.2.840.113549.1.9.3", "1.2.840.113549.1.9.4", "1.2.840.113549.1.9.5",
            SIGNING_CERTIFICATE_V2} <= _signed_attribute_types(signature)
    embedded = [c.chosen.dump() for c in signed_data["certificates"]]
    assert sorted(embedded) == sorted([key.chain[0], pki.ca.ca_certificate_der("ISSUING")])  # the root is not sent

    (tmp_path / "document.txt").write_bytes(DOCUMENT + b"!")
    tampered = _cms_verify(tmp_path, "-content", "document.txt", "-out", "/dev/null")
    assert tampered.returncode != 0 and b"content verify error" in tampered.stderr.lower()


def test_enveloping_b_b_carries_the_content(pki: Pki, tmp_path: Path) -> None:
    signature = sign_cades(_user_key(pki), content=DOCUMENT, packaging=Packaging.ENVELOPING)
    _files(tmp_path, pki, signature)
    done = _cms_verify(tmp_path, "-out", "content.out")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "content.out").read_bytes() == DOCUMENT


@pytest.mark.parametrize("digest", list(DigestAlgorithm))
def test_a_signature_over_the_digest_alone_verifies_against_the_document(
        pki: Pki, tmp_path: Path, digest: DigestAlgorithm) -> None:
    signature = sign_cades(_user_key(pki), content_digest=hashlib.new(digest.value, DOCUMENT).digest(), digest=digest)
    _files(tmp_path, pki, signature)
    done = _cms_verify(tmp_path, "-content", "document.txt", "-out", "/dev/null")
    assert done.returncode == 0 and b"Verification successful" in done.stderr, done.stderr
    assert _signer_info(signature)["digest_algorithm"]["algorithm"].native == digest.value


def test_rsa_keys_sign_too(tmp_path: Path, database_url: str, hsm: object) -> None:
    made = make_pki(pki_settings(tmp_path / "var", database_url, key_algorithm="rsa-3072"), hsm)  # type: ignore[arg-type]
    try:
        made.ca.init("test")
        signature = sign_cades(_user_key(made, "rsa"), content=DOCUMENT)
        _files(tmp_path, made, signature)
        done = _cms_verify(tmp_path, "-content", "document.txt", "-out", "/dev/null")
        assert done.returncode == 0, done.stderr
        assert _signer_info(signature)["signature_algorithm"]["algorithm"].native == "sha256_rsa"
    finally:
        made.engine.dispose()


def test_b_t_embeds_a_checked_timestamp_over_the_signature_value(
        pki: Pki, tmp_path: Path, reference_tsa: ReferenceTsa) -> None:
    client = TimestampClient([endpoint_from_url(reference_tsa.url, (reference_tsa.ca,))], 10, 0)
    signature = sign_cades(_user_key(pki), content=DOCUMENT, level=Level.B_T, timestamps=client)
    _files(tmp_path, pki, signature)
    assert _cms_verify(tmp_path, "-content", "document.txt", "-out", "/dev/null").returncode == 0

    info = _signer_info(signature)
    (stamp,) = [a for a in info["unsigned_attrs"] if a["type"].dotted == SIGNATURE_TIME_STAMP]
    token = stamp["values"][0]
    tst = tsp.TSTInfo.load(token["content"]["encap_content_info"]["content"].parsed.dump())
    assert tst["message_imprint"]["hashed_message"].native == hashlib.sha256(info["signature"].native).digest()
    (tmp_path / "token.der").write_bytes(token.dump())
    (tmp_path / "tsa-ca.pem").write_bytes(reference_tsa.ca.public_bytes(Encoding.PEM))
    done = subprocess.run(["openssl", "ts", "-verify", "-token_in", "-in", "token.der", "-digest",
                           hashlib.sha256(info["signature"].native).hexdigest(), "-CAfile", "tsa-ca.pem"],
                          cwd=tmp_path, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0 and b"Verification: OK" in done.stdout, done.stdout + done.stderr


def test_bad_requests_are_refused_before_the_hsm(pki: Pki) -> None:
    key = _user_key(pki)
    cases = [
        ({}, Code.BAD_REQUEST, "either the content or its digest"),
        ({"content": DOCUMENT, "content_digest": bytes(32)}, Code.BAD_REQUEST, "either the content or its digest"),
        ({"content_digest": bytes(20)}, Code.BAD_REQUEST, "a sha256 digest has 32 bytes, not 20"),
        ({"content_digest": bytes(32), "packaging": Packaging.ENVELOPING}, Code.BAD_REQUEST, "detached"),
        ({"content": DOCUMENT, "level": Level.B_T}, Code.CONFIG, "time-stamping authority"),
    ]
    for kwargs, code, message in cases:
        with pytest.raises(SiegelError) as caught:
            sign_cades(key, **kwargs)  # type: ignore[arg-type]
        assert caught.value.code is code and message in caught.value.message, kwargs
    with pytest.raises(SiegelError) as caught:
        sign_cades(SigningKey(pki.hsm, key.label, ()), content=DOCUMENT)
    assert caught.value.code is Code.KEY_NOT_FOUND
    assert x509.load_der_x509_certificate(key.chain[0]).subject.rfc4514_string().startswith("1.2.840")


def test_prepared_signatures_expire_and_are_swept(pki: Pki) -> None:
    from sqlalchemy import func, select, update

    from server.db.models import SigningState
    from server.signing.service import SigningService

    key = _user_key(pki)
    user_id = next(c.user_id for c in pki.ca.list() if c.key_label == key.label)
    assert user_id is not None
    service = SigningService(pki.settings, pki.engine, pki.ca, lambda: pki.hsm, pki.audit)
    state_id, prepared, _ = service.prepare_cades(user_id, "anna", hashlib.sha256(DOCUMENT).digest(),
                                                  DigestAlgorithm.SHA256, Level.B_B, key.chain)
    value = pki.hsm.sign_digest(key.label, prepared.to_be_signed, DigestAlgorithm.SHA256, prepared.scheme)
    with pki.engine.begin() as conn:
        conn.execute(update(SigningState).values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    with pytest.raises(SiegelError) as caught:
        service.complete_cades(user_id, "anna", state_id, value)
    assert caught.value.code is Code.CONFLICT and "expired" in caught.value.message
    service.remove_expired()
    with pki.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(SigningState)).scalar_one() == 0
