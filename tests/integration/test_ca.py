"""The internal CA (CertificateAuthorityService) on the session's SoftHSM2 token, SQLite and PostgreSQL.

Certificates and CRLs are checked with ``cryptography`` and cross-checked with the ``openssl`` CLI;
the key attributes are read from the token with a python-pkcs11 session of the test's own.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pkcs11
import pytest
from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID
from pkcs11 import Attribute, ObjectClass
from sqlalchemy import func, select, text

from adapters.hsm.keys import hsm_private_key
from adapters.hsm.pkcs11 import Pkcs11Hsm
from adapters.timestamp.client import parse_response, verify_token
from server import config
from server.audit import AuditLog
from server.config import Settings
from server.db.engine import make_engine
from server.db.models import AuditEntry, Certificate, CertificateAuthority, Crl
from server.errors import Code, SiegelError
from server.identity.users import UserService
from server.pki import ca as ca_module
from server.pki.ca import CertificateAuthorityService
from server.pki.keystore import KeyStore
from server.pki.profiles import CLOCK_SKEW, ID_KP_DOCUMENT_SIGNING
from server.pki.tsa import TimestampAuthority
from server.signing.keysource import KeyKind
from tests.fixtures.pki import Pki, make_pki
from tests.fixtures.softhsm import SoftHsmToken

pytestmark = pytest.mark.integration

PASSWORD = "long password"
BASE_URL = "https://siegel.example.org/pki"
# Every reason a CRL entry can carry (removeFromCRL only releases a hold; certificateHold has its own test).
CRL_REASONS = [r for r in x509.ReasonFlags if r not in (x509.ReasonFlags.remove_from_crl,
                                                         x509.ReasonFlags.certificate_hold)]


# --- helpers ---------------------------------------------------------------------------------------

def _no_hsm() -> KeyStore:
    raise AssertionError("the HSM must not be touched")


def _hsm_down() -> KeyStore:
    raise SiegelError(Code.HSM_UNAVAILABLE, "token removed")


def _service(pki: Pki, keys: Any = None, **pki_settings: Any) -> CertificateAuthorityService:
    """Another CA service on the fixture's database: other keys callable and/or other [pki] settings."""
    settings = replace(pki.settings, pki=replace(pki.settings.pki, **pki_settings))
    return CertificateAuthorityService(pki.engine, pki.audit, settings, keys or (lambda: pki.hsm), hsm_private_key)


def _settings(tmp_path: Path, database_url: str, **env: str) -> Settings:
    return config.load(data_dir=tmp_path / "var", environ={"SIEGEL_DATABASE_URL": database_url, **env})


def _openssl(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=False)


def _pem(path: Path, *ders: bytes) -> Path:
    path.write_text("".join(x509.load_der_x509_certificate(d).public_bytes(Encoding.PEM).decode() for d in ders))
    return path


def _crl_pem(path: Path, *ders: bytes) -> Path:
    path.write_text("".join(x509.load_der_x509_crl(d).public_bytes(Encoding.PEM).decode() for d in ders))
    return path


def _kind(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}[key.curve.name]


def _cert(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def _ext(cert: x509.Certificate | x509.CertificateRevocationList, typ: type) -> x509.Extension[Any]:
    return cert.extensions.get_extension_for_class(typ)


def _links(cert: x509.Certificate) -> tuple[list[str], list[str], list[str]]:
    """caIssuers URLs, OCSP URLs and CRL distribution point URLs of a certificate."""
    try:
        aia = _ext(cert, x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        aia = []
    try:
        cdp = [name.value for point in _ext(cert, x509.CRLDistributionPoints).value for name in point.full_name]
    except x509.ExtensionNotFound:
        cdp = []
    return ([d.access_location.value for d in aia if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS],
            [d.access_location.value for d in aia if d.access_method == AuthorityInformationAccessOID.OCSP], cdp)


def _last_seq(audit: AuditLog) -> int:
    return max((e.seq for e in audit.entries()), default=0)


def _entries_after(audit: AuditLog, seq: int) -> list[AuditEntry]:
    return [e for e in audit.entries() if e.seq > seq]


def _actions_after(audit: AuditLog, seq: int) -> list[tuple[str, str]]:
    return [(e.action, e.target) for e in _entries_after(audit, seq)]


def _count(pki: Pki, model: type) -> int:
    with pki.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def _crl_numbers(pki: Pki, ca: str) -> list[int]:
    with pki.engine.connect() as conn:
        return list(conn.execute(select(Crl.number).where(Crl.ca == ca).order_by(Crl.number)).scalars())


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    return int(_ext(crl, x509.CRLNumber).value.crl_number)


def _add_user(pki: Pki, name: str, email: str) -> int:
    UserService(pki.engine, pki.audit, 0).add(name, email, "signer", PASSWORD)
    with pki.engine.connect() as conn:
        return int(conn.execute(text("SELECT id FROM users WHERE name = :n"), {"n": name}).scalar_one())


def _fresh_user(pki: Pki, name: str, email: str) -> int:
    """A user whose id no key on the token is named after yet.

    The session's token outlives every test's database, where ids start again at 1; the user's id
    is moved to one whose labels ``user-<id>`` and ``user-<id>-2`` are still free on the token.
    """
    _add_user(pki, name, email)
    fresh = next(i for i in itertools.count(100000)
                 if not pki.hsm.has_key(f"user-{i}") and not pki.hsm.has_key(f"user-{i}-2"))
    with pki.engine.begin() as conn:
        conn.execute(text("UPDATE users SET id = :i WHERE name = :n"), {"i": fresh, "n": name})
    return fresh


@pytest.fixture
def token_session(softhsm_token: SoftHsmToken, hsm: Pkcs11Hsm) -> Iterator[Any]:
    """A python-pkcs11 session of the test's own on the token (logged in through the process's login)."""
    session = pkcs11.lib(softhsm_token.module).get_token(token_label=softhsm_token.label).open()
    try:
        yield session
    finally:
        session.close()


def _private_key_attributes(session: Any, label: str) -> dict[str, bool]:
    (key,) = session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})
    return {name: bool(key[attr]) for name, attr in (
        ("sensitive", Attribute.SENSITIVE), ("extractable", Attribute.EXTRACTABLE),
        ("always_sensitive", Attribute.ALWAYS_SENSITIVE), ("never_extractable", Attribute.NEVER_EXTRACTABLE),
        ("token", Attribute.TOKEN), ("private", Attribute.PRIVATE))}


# --- init ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", [None, "ec-p384"], ids=["default-rsa-3072", "ec-p384"])
def test_init_creates_the_hierarchy_in_the_hsm_from_the_settings(
        tmp_path: Path, database_url: str, hsm: Pkcs11Hsm, token_session: Any, algorithm: str | None) -> None:
    env = {"SIEGEL_SERVER_PUBLIC_BASE_URL": BASE_URL + "/", "SIEGEL_PKI_ROOT_COMMON_NAME": "Example Root",
           "SIEGEL_PKI_ISSUING_COMMON_NAME": "Example Issuing", "SIEGEL_PKI_ORGANIZATION": "Example GmbH",
           "SIEGEL_PKI_COUNTRY": "AT", "SIEGEL_PKI_ROOT_LIFETIME_DAYS": "4000",
           "SIEGEL_PKI_ISSUING_LIFETIME_DAYS": "2000", "SIEGEL_PKI_SERVICE_LIFETIME_DAYS": "300"}
    if algorithm is not None:
        env["SIEGEL_PKI_KEY_ALGORITHM"] = algorithm
    kind = algorithm or "rsa-3072"  # the default of config/siegel.toml
    made = make_pki(_settings(tmp_path, database_url, **env), hsm)
    try:
        assert made.ca.missing() == ["ROOT", "ISSUING", "tsa", "ocsp"]
        started = datetime.now(timezone.utc).replace(microsecond=0)
        done = made.ca.init("admin")
        finished = datetime.now(timezone.utc)
        assert len(done) == 6 and made.ca.missing() == []

        with made.engine.connect() as conn:
            cas = {r.name: r for r in conn.execute(select(CertificateAuthority)).all()}
        root, issuing = _cert(cas["ROOT"].der), _cert(cas["ISSUING"].der)
        tsa_label, tsa_chain = made.ca.service_credentials("tsa")
        ocsp_label, ocsp_chain = made.ca.service_credentials("ocsp")
        tsa, ocsp = _cert(tsa_chain[0]), _cert(ocsp_chain[0])
        assert tsa_chain[1:] == ocsp_chain[1:] == [cas["ISSUING"].der, cas["ROOT"].der]

        # names, key algorithm, lifetimes
        assert root.subject.rfc4514_string() == "CN=Example Root,O=Example GmbH,C=AT" == root.issuer.rfc4514_string()
        assert issuing.subject.rfc4514_string() == "CN=Example Issuing,O=Example GmbH,C=AT"
        assert issuing.issuer == root.subject and tsa.issuer == ocsp.issuer == issuing.subject
        assert tsa.subject.rfc4514_string() == "CN=Example GmbH Time-Stamping Authority,O=Example GmbH,C=AT"
        assert ocsp.subject.rfc4514_string() == "CN=Example GmbH OCSP Responder,O=Example GmbH,C=AT"
        root.verify_directly_issued_by(root)
        issuing.verify_directly_issued_by(root)
        tsa.verify_directly_issued_by(issuing)
        ocsp.verify_directly_issued_by(issuing)
        expected_hash = hashes.SHA384 if kind == "ec-p384" else hashes.SHA256
        for cert, days in ((root, 4000), (issuing, 2000), (tsa, 300), (ocsp, 300)):
            assert _kind(cert.public_key()) == kind
            assert isinstance(cert.signature_hash_algorithm, expected_hash)
            assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=days) + CLOCK_SKEW
            assert started - CLOCK_SKEW <= cert.not_valid_before_utc <= finished - CLOCK_SKEW

        # CA constraints and the links built from server.public_base_url
        assert _ext(root, x509.BasicConstraints).critical
        assert _ext(root, x509.BasicConstraints).value == x509.BasicConstraints(ca=True, path_length=None)
        assert _ext(issuing, x509.BasicConstraints).value == x509.BasicConstraints(ca=True, path_length=0)
        for ca in (root, issuing):
            usage = _ext(ca, x509.KeyUsage)
            assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
            assert not usage.value.digital_signature
        assert _links(root) == ([], [], [])
        assert _links(issuing) == ([f"{BASE_URL}/ca/ROOT.crt"], [], [f"{BASE_URL}/crl/ROOT.crl"])
        for service in (tsa, ocsp):
            assert _links(service) == ([f"{BASE_URL}/ca/ISSUING.crt"], [f"{BASE_URL}/ocsp"],
                                       [f"{BASE_URL}/crl/ISSUING.crl"])

        # the keys: generated in the HSM, sensitive, never extractable, matching the certificates
        keys = {k.label: k for k in hsm.list_keys()}
        labels = {"ROOT": cas["ROOT"].key_label, "ISSUING": cas["ISSUING"].key_label, "tsa": tsa_label,
                  "ocsp": ocsp_label}
        for name, label in labels.items():
            assert re.fullmatch({"ROOT": r"ca-root", "ISSUING": r"ca-issuing"}.get(name, name) + r"(-\d+)?", label)
            assert keys[label].kind == kind and not keys[label].extractable and keys[label].sensitive
            assert _private_key_attributes(token_session, label) == {
                "sensitive": True, "extractable": False, "always_sensitive": True, "never_extractable": True,
                "token": True, "private": True}
        for label, cert in ((labels["ROOT"], root), (labels["ISSUING"], issuing), (tsa_label, tsa),
                            (ocsp_label, ocsp)):
            assert hsm.public_key(label).public_numbers() == cert.public_key().public_numbers()
        assert hsm.certificate_chain(labels["ISSUING"]) == [cas["ISSUING"].der, cas["ROOT"].der]
        assert hsm.certificate_chain(tsa_label) == tsa_chain

        # the first CRLs
        for name, ca in (("ROOT", root), ("ISSUING", issuing)):
            crl = x509.load_der_x509_crl(made.ca.current_crl(name))
            assert _crl_number(crl) == 1 and len(crl) == 0 and crl.is_signature_valid(ca.public_key())

        # the TSA and its key work: openssl and our client accept a token
        authority = TimestampAuthority(made.engine, made.audit, made.ca, lambda: hsm, made.settings.tsa)
        digest = hashlib.sha256(b"init").digest()
        reply = authority.respond(_timestamp_request(digest))
        status, token = parse_response(reply.der)
        assert status.granted and token is not None, status.describe()
        assert verify_token(token, digest, "sha256", [root]).signer == tsa
        (tmp_path / "resp.der").write_bytes(reply.der)
        _pem(tmp_path / "root.pem", cas["ROOT"].der)
        _pem(tmp_path / "issuing.pem", cas["ISSUING"].der)
        result = _openssl("ts", "-verify", "-digest", digest.hex(), "-in", "resp.der", "-CAfile", "root.pem",
                          "-untrusted", "issuing.pem", cwd=tmp_path)
        assert "Verification: OK" in result.stdout, result.stdout + result.stderr

        # audit: one entry per change, by the given actor, chain intact
        entries = _entries_after(made.audit, 0)
        assert [(e.action, e.target) for e in entries if e.action != "tsa.issue"] == [
            ("ca.create", "ROOT"), ("ca.create", "ISSUING"), ("ca.issue", format(tsa.serial_number, "x")),
            ("ca.issue", format(ocsp.serial_number, "x")), ("ca.crl", "ROOT"), ("ca.crl", "ISSUING")]
        assert {e.actor for e in entries if e.action.startswith("ca.")} == {"admin"}
        assert json.loads(entries[0].details)["key_kind"] == kind
        assert made.audit.verify() == (len(entries), None)

        # idempotent: nothing to do, so the HSM is not even opened
        seq = _last_seq(made.audit)
        again = CertificateAuthorityService(made.engine, made.audit, made.settings, _no_hsm, hsm_private_key)
        assert again.init("admin") == []
        assert _last_seq(made.audit) == seq
        assert _count(made, Certificate) == 4
    finally:
        made.engine.dispose()


def _timestamp_request(digest: bytes) -> bytes:
    return tsp.TimeStampReq({"version": "v1", "cert_req": True, "nonce": 42, "message_imprint": {
        "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest}}).dump()


def test_init_replaces_only_what_is_missing(pki: Pki) -> None:
    old_label, old_chain = pki.ca.service_credentials("tsa")
    cas_before = pki.ca.ca_certificates()
    pki.ca.revoke(format(_cert(old_chain[0]).serial_number, "x"), "superseded")
    assert pki.ca.missing() == ["tsa"]
    seq = _last_seq(pki.audit)

    done = pki.ca.init("admin")

    assert len(done) == 1 and "TSA" in done[0]
    label, chain = pki.ca.service_credentials("tsa")
    assert label != old_label and label.startswith("tsa") and chain[0] != old_chain[0]
    assert chain[1:] == old_chain[1:]
    assert pki.ca.ca_certificates() == cas_before
    assert _actions_after(pki.audit, seq) == [("ca.issue", format(_cert(chain[0]).serial_number, "x"))]


# --- profiles --------------------------------------------------------------------------------------

def test_profiles_carry_what_they_promise(pki: Pki, tmp_path: Path) -> None:
    _add_user(pki, "anna", "anna@example.com")
    user = _cert(pki.ca.issue_user("anna").der)
    tls = _cert(pki.ca.issue_tls_server(["siegel.example.org", "*.xn--bcher-kva.example", "192.0.2.10",
                                          "2001:db8::1"]).der)
    tsa = _cert(pki.ca.service_credentials("tsa")[1][0])
    ocsp = _cert(pki.ca.service_credentials("ocsp")[1][0])
    base = pki.settings.server.public_base_url.rstrip("/")

    assert user.subject.rfc4514_string() == "1.2.840.113549.1.9.1=anna@example.com,CN=anna,O=Siegel"
    assert _ext(user, x509.SubjectAlternativeName).value.get_values_for_type(x509.RFC822Name) == ["anna@example.com"]
    usage = _ext(user, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.content_commitment
    assert not (usage.value.key_encipherment or usage.value.key_cert_sign or usage.value.crl_sign)
    assert list(_ext(user, x509.ExtendedKeyUsage).value) == [ID_KP_DOCUMENT_SIGNING,
                                                             ExtendedKeyUsageOID.EMAIL_PROTECTION]

    eku = _ext(tsa, x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]

    assert list(_ext(ocsp, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert isinstance(_ext(ocsp, x509.OCSPNoCheck).value, x509.OCSPNoCheck)

    assert list(_ext(tls, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = _ext(tls, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["siegel.example.org", "*.xn--bcher-kva.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.10", "2001:db8::1"]
    assert tls.subject.rfc4514_string() == "CN=siegel.example.org,O=Siegel,C=DE"

    for cert in (user, tls, tsa, ocsp):
        assert _ext(cert, x509.BasicConstraints).critical and not _ext(cert, x509.BasicConstraints).value.ca
        assert _ext(cert, x509.KeyUsage).critical
        assert _links(cert) == ([f"{base}/ca/ISSUING.crt"], [f"{base}/ocsp"], [f"{base}/crl/ISSUING.crl"])
        assert cert.serial_number.bit_length() > 64
        assert (ExtendedKeyUsageOID.TIME_STAMPING in _ext(cert, x509.ExtendedKeyUsage).value) == (cert is tsa)

    # the independent tool: chains, purposes, and what the certificates say
    cas = pki.ca.ca_certificates()
    _pem(tmp_path / "root.pem", cas["ROOT"].public_bytes(Encoding.DER))
    _pem(tmp_path / "issuing.pem", cas["ISSUING"].public_bytes(Encoding.DER))
    for name, cert, purpose in (("user", user, "smimesign"), ("tls", tls, "sslserver"),
                                ("tsa", tsa, "timestampsign"), ("ocsp", ocsp, "any")):
        _pem(tmp_path / f"{name}.pem", cert.public_bytes(Encoding.DER))
        result = _openssl("verify", "-purpose", purpose, "-CAfile", "root.pem", "-untrusted", "issuing.pem",
                          f"{name}.pem", cwd=tmp_path)
        assert result.returncode == 0 and result.stdout.strip() == f"{name}.pem: OK", result.stdout + result.stderr
    wrong = _openssl("verify", "-purpose", "sslserver", "-CAfile", "root.pem", "-untrusted", "issuing.pem",
                     "user.pem", cwd=tmp_path)
    assert wrong.returncode != 0 and "unsuitable certificate purpose" in wrong.stdout + wrong.stderr

    def described(name: str) -> str:
        return re.sub(r"\s+", " ", _openssl("x509", "-noout", "-text", "-in", f"{name}.pem", cwd=tmp_path).stdout)

    user_text = described("user")
    assert "X509v3 Key Usage: critical Digital Signature, Non Repudiation " in user_text
    assert "X509v3 Extended Key Usage: 1.3.6.1.5.5.7.3.36, E-mail Protection " in user_text
    assert "X509v3 Subject Alternative Name: email:anna@example.com " in user_text
    assert "X509v3 Extended Key Usage: critical Time Stamping " in described("tsa")
    ocsp_text = described("ocsp")
    assert "X509v3 Extended Key Usage: OCSP Signing " in ocsp_text and "OCSP No Check" in ocsp_text
    tls_text = described("tls")
    assert "X509v3 Extended Key Usage: TLS Web Server Authentication " in tls_text
    assert "DNS:siegel.example.org, DNS:*.xn--bcher-kva.example, IP Address:192.0.2.10, IP Address:2001:DB8:0:0:0:0:0:1" in tls_text
    assert f"CA Issuers - URI:{base}/ca/ISSUING.crt" in tls_text and f"OCSP - URI:{base}/ocsp" in tls_text
    assert f"URI:{base}/crl/ISSUING.crl" in tls_text


@pytest.mark.parametrize("names", [[], [""], ["exämple.com"], ["two words.example.org"], ["a" * 254],
                                   ["-leading.example.org"], ["x." * 40 + "example.org"]],
                         ids=["none", "empty", "unicode", "space", "too-long", "hyphen", "cn-over-64"])
def test_tls_server_names_are_checked_before_the_hsm(pki: Pki, names: list[str]) -> None:
    seq = _last_seq(pki.audit)
    with pytest.raises(SiegelError) as caught:
        _service(pki, _no_hsm).issue_tls_server(names)
    assert caught.value.code is Code.BAD_REQUEST
    assert _last_seq(pki.audit) == seq and _count(pki, Certificate) == 4


def test_openssl_verifies_the_chain_and_sees_the_revocation(pki: Pki, tmp_path: Path) -> None:
    _add_user(pki, "anna", "anna@example.com")
    issued = pki.ca.issue_user("anna")
    cas = {name: pki.ca.ca_certificate_der(name) for name in ("ROOT", "ISSUING")}
    _pem(tmp_path / "root.pem", cas["ROOT"])
    _pem(tmp_path / "issuing.pem", cas["ISSUING"])
    _pem(tmp_path / "user.pem", issued.der)

    def verify() -> subprocess.CompletedProcess[str]:
        _crl_pem(tmp_path / "crl.pem", pki.ca.current_crl("ISSUING"))
        _crl_pem(tmp_path / "crls.pem", pki.ca.current_crl("ISSUING"), pki.ca.current_crl("ROOT"))
        leaf = _openssl("verify", "-crl_check", "-CAfile", "root.pem", "-untrusted", "issuing.pem",
                        "-CRLfile", "crl.pem", "user.pem", cwd=tmp_path)
        whole = _openssl("verify", "-crl_check_all", "-CAfile", "root.pem", "-untrusted", "issuing.pem",
                         "-CRLfile", "crls.pem", "user.pem", cwd=tmp_path)
        assert (leaf.returncode, leaf.stdout, leaf.stderr) == (whole.returncode, whole.stdout, whole.stderr)
        return leaf

    plain = _openssl("verify", "-CAfile", "root.pem", "-untrusted", "issuing.pem", "user.pem", cwd=tmp_path)
    assert plain.returncode == 0 and plain.stdout.strip() == "user.pem: OK", plain.stderr
    before = verify()
    assert before.returncode == 0 and before.stdout.strip() == "user.pem: OK", before.stdout + before.stderr

    serial = ":".join(re.findall("..", issued.serial.zfill(40).upper()))  # the form openssl prints it in
    pki.ca.revoke(serial, "keyCompromise")

    after = verify()
    assert after.returncode != 0 and "certificate revoked" in after.stdout + after.stderr
    described = _openssl("crl", "-noout", "-text", "-in", "crl.pem", cwd=tmp_path).stdout
    assert issued.serial.upper() in described.upper().replace(":", "") and "Key Compromise" in described
    checked = _openssl("crl", "-noout", "-in", "crl.pem", "-CAfile", "issuing.pem", cwd=tmp_path)
    assert "verify OK" in checked.stdout + checked.stderr


# --- issuing to users ------------------------------------------------------------------------------

def test_issue_user_derives_the_key_label_from_the_user_id(pki: Pki) -> None:
    user_id = _fresh_user(pki, "anna", "anna@example.com")
    seq = _last_seq(pki.audit)

    first, second = pki.ca.issue_user("anna", "admin"), pki.ca.issue_user("anna", "admin")

    assert (first.key_label, second.key_label) == (f"user-{user_id}", f"user-{user_id}-2")
    assert first.user_id == second.user_id == user_id and first.profile == second.profile == "user-signing"
    assert first.serial != second.serial and first.issuer == "ISSUING"
    for row in (first, second):
        cert = _cert(row.der)
        assert pki.hsm.public_key(row.key_label).public_numbers() == cert.public_key().public_numbers()
        assert _kind(cert.public_key()) == "ec-p256"
        assert pki.hsm.certificate_chain(row.key_label) == [row.der, pki.ca.ca_certificate_der("ISSUING"),
                                                            pki.ca.ca_certificate_der("ROOT")]
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=730) + CLOCK_SKEW
    assert _cert(first.der).public_key() != _cert(second.der).public_key()
    entries = _entries_after(pki.audit, seq)
    assert [(e.action, e.target, e.actor) for e in entries] == [("ca.issue", first.serial, "admin"),
                                                                ("ca.issue", second.serial, "admin")]
    assert json.loads(entries[0].details) == {
        "profile": "user-signing", "subject": first.subject, "key_label": first.key_label, "user_id": user_id,
        "not_after": _cert(first.der).not_valid_after_utc.isoformat()}


def test_issue_user_skips_a_label_left_on_the_token(pki: Pki) -> None:
    user_id = _fresh_user(pki, "anna", "anna@example.com")
    pki.hsm.generate_key(f"user-{user_id}", KeyKind.EC_P256)  # left by an attempt that failed later

    assert pki.ca.issue_user("anna").key_label == f"user-{user_id}-2"


def test_issue_user_refuses_unknown_and_disabled_users_without_a_trace(pki: Pki) -> None:
    _add_user(pki, "carl", "carl@example.com")
    with pki.engine.begin() as conn:
        conn.execute(text("UPDATE users SET disabled = :t WHERE name = 'carl'"), {"t": True})
    seq, certificates = _last_seq(pki.audit), _count(pki, Certificate)
    service = _service(pki, _no_hsm)

    with pytest.raises(SiegelError) as unknown:
        service.issue_user("nobody")
    with pytest.raises(SiegelError) as disabled:
        service.issue_user("carl")

    assert unknown.value.code is Code.NOT_FOUND and "nobody" in unknown.value.message
    assert disabled.value.code is Code.BAD_REQUEST and "disabled" in disabled.value.message
    assert _last_seq(pki.audit) == seq and _count(pki, Certificate) == certificates


class _NoCertificateStore:
    """The fixture's HSM, except that storing a certificate fails (the token filled up, say)."""

    def __init__(self, hsm: Pkcs11Hsm) -> None:
        self._hsm = hsm

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hsm, name)

    def store_certificate(self, label: str, der: bytes) -> None:
        raise SiegelError(Code.HSM_UNAVAILABLE, "the token is full")


def test_a_failing_hsm_leaves_no_certificate_and_no_entry(pki: Pki) -> None:
    user_id = _fresh_user(pki, "anna", "anna@example.com")
    seq, certificates = _last_seq(pki.audit), _count(pki, Certificate)

    with pytest.raises(SiegelError) as down:
        _service(pki, _hsm_down).issue_user("anna")
    with pytest.raises(SiegelError) as full:
        _service(pki, lambda: _NoCertificateStore(pki.hsm)).issue_user("anna")

    assert down.value.code is full.value.code is Code.HSM_UNAVAILABLE
    assert _last_seq(pki.audit) == seq and _count(pki, Certificate) == certificates
    assert pki.hsm.has_key(f"user-{user_id}")  # generated before the failure: left unused, never reused
    assert pki.ca.issue_user("anna").key_label == f"user-{user_id}-2"


# --- revocation and CRLs ---------------------------------------------------------------------------

def test_revoke_issues_the_crl_at_once_for_every_reason(pki: Pki) -> None:
    issuing = pki.ca.ca_certificates()["ISSUING"]
    seq = _last_seq(pki.audit)
    serials = []
    for number, reason in enumerate(CRL_REASONS, start=2):
        row = pki.ca.issue_tls_server([f"{reason.value.lower()}.example.org"])
        serials.append(row.serial)
        started = datetime.now(timezone.utc).replace(microsecond=0)

        crl_row = pki.ca.revoke(row.serial, reason.value, "admin")

        finished = datetime.now(timezone.utc)
        crl = x509.load_der_x509_crl(crl_row.der)
        assert crl_row.ca == "ISSUING" and crl_row.number == number == _crl_number(crl)
        assert crl.is_signature_valid(issuing.public_key()) and crl.issuer == issuing.subject
        assert _ext(crl, x509.AuthorityKeyIdentifier).value.key_identifier == \
            _ext(issuing, x509.SubjectKeyIdentifier).value.digest
        assert started <= crl.last_update_utc <= finished
        assert crl.next_update_utc - crl.last_update_utc == timedelta(hours=pki.settings.pki.crl_validity_hours)
        assert x509.load_der_x509_crl(pki.ca.current_crl("ISSUING")) == crl
        assert sorted(format(e.serial_number, "x") for e in crl) == sorted(serials)
        entry = crl.get_revoked_certificate_by_serial_number(int(row.serial, 16))
        assert entry is not None and started <= entry.revocation_date_utc <= finished
        if reason is x509.ReasonFlags.unspecified:  # RFC 5280 5.3.1: left out rather than written
            with pytest.raises(x509.ExtensionNotFound):
                entry.extensions.get_extension_for_class(x509.CRLReason)
        else:
            assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is reason
        status = pki.ca.status("ISSUING", int(row.serial, 16))
        assert (status.state, status.reason) == ("revoked", reason)

    assert _crl_numbers(pki, "ISSUING") == list(range(1, len(CRL_REASONS) + 2))
    revokes = [e for e in _entries_after(pki.audit, seq) if e.action == "ca.revoke"]
    assert [(e.target, json.loads(e.details)["reason"], e.actor) for e in revokes] == [
        (s, r.value, "admin") for s, r in zip(serials, CRL_REASONS)]


def test_crl_validity_comes_from_the_settings(pki: Pki) -> None:
    crl = x509.load_der_x509_crl(_service(pki, crl_validity_hours=7).issue_crl("ROOT").der)
    assert crl.next_update_utc - crl.last_update_utc == timedelta(hours=7)
    assert _crl_number(crl) == 2


def test_revoking_the_issuing_ca_goes_on_the_root_crl(pki: Pki) -> None:
    serial = format(pki.ca.ca_certificates()["ISSUING"].serial_number, "x")
    crl_row = pki.ca.revoke(serial, "cACompromise")
    crl = x509.load_der_x509_crl(crl_row.der)
    assert crl_row.ca == "ROOT" and _crl_number(crl) == 2 and _crl_numbers(pki, "ISSUING") == [1]
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.ca_compromise


def test_hold_and_release(pki: Pki) -> None:
    row = pki.ca.issue_tls_server(["held.example.org"])
    serial = int(row.serial, 16)

    held = x509.load_der_x509_crl(pki.ca.revoke(row.serial, "certificateHold").der)
    entry = held.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.certificate_hold
    assert pki.ca.status("ISSUING", serial).state == "revoked"

    released = x509.load_der_x509_crl(pki.ca.revoke(row.serial, "removeFromCRL").der)
    assert released.get_revoked_certificate_by_serial_number(serial) is None and len(released) == 0
    assert pki.ca.status("ISSUING", serial).state == "good"
    assert (_crl_number(held), _crl_number(released)) == (2, 3)

    pki.ca.revoke(row.serial, "certificateHold")
    final = x509.load_der_x509_crl(pki.ca.revoke(row.serial, "keyCompromise").der)  # a hold may become final
    entry = final.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    with pytest.raises(SiegelError) as caught:
        pki.ca.revoke(row.serial, "removeFromCRL")
    assert caught.value.code is Code.BAD_REQUEST
    assert _crl_numbers(pki, "ISSUING") == [1, 2, 3, 4, 5]


def test_revoke_refuses_clearly_and_changes_nothing(pki: Pki) -> None:
    good = pki.ca.issue_tls_server(["good.example.org"])
    revoked = pki.ca.issue_tls_server(["revoked.example.org"])
    held = pki.ca.issue_tls_server(["held.example.org"])
    pki.ca.revoke(revoked.serial, "keyCompromise")
    pki.ca.revoke(held.serial, "certificateHold")
    root_serial = format(pki.ca.ca_certificates()["ROOT"].serial_number, "x")
    seq, numbers = _last_seq(pki.audit), _crl_numbers(pki, "ISSUING")
    cases = [
        (good.serial, "stolen", Code.BAD_REQUEST, "keyCompromise"),  # the message lists the RFC 5280 names
        (good.serial, "key_compromise", Code.BAD_REQUEST, "keyCompromise"),
        ("0123456789abcdef", "keyCompromise", Code.NOT_FOUND, "serial 123456789abcdef"),
        ("not hex", "keyCompromise", Code.BAD_REQUEST, "hexadecimal"),
        (root_serial, "keyCompromise", Code.BAD_REQUEST, "root"),
        (revoked.serial, "keyCompromise", Code.CONFLICT, "revoked already"),
        (revoked.serial, "certificateHold", Code.CONFLICT, "revoked already"),
        (held.serial, "certificateHold", Code.CONFLICT, "on hold already"),
        (good.serial, "removeFromCRL", Code.BAD_REQUEST, "not on hold"),
    ]
    for serial, reason, code, says in cases:
        with pytest.raises(SiegelError) as caught:
            pki.ca.revoke(serial, reason)
        assert (caught.value.code, says in caught.value.message) == (code, True), (serial, reason, caught.value)

    assert _last_seq(pki.audit) == seq and _crl_numbers(pki, "ISSUING") == numbers
    assert pki.ca.status("ISSUING", int(good.serial, 16)).state == "good"
    assert pki.ca.issue_crl("ISSUING").number == numbers[-1] + 1  # the refused attempts used no number


def test_issue_all_crls_bumps_both_numbers(pki: Pki) -> None:
    seq = _last_seq(pki.audit)
    pki.ca.issue_all_crls()
    pki.ca.issue_all_crls()
    assert _crl_numbers(pki, "ROOT") == _crl_numbers(pki, "ISSUING") == [1, 2, 3]
    assert [(e.action, e.target, e.actor, json.loads(e.details)["number"]) for e in _entries_after(pki.audit, seq)] \
        == [("ca.crl", "ISSUING", "scheduler", 2), ("ca.crl", "ROOT", "scheduler", 2),
            ("ca.crl", "ISSUING", "scheduler", 3), ("ca.crl", "ROOT", "scheduler", 3)]
    for ca in ("ROOT", "ISSUING"):
        assert _crl_number(x509.load_der_x509_crl(pki.ca.current_crl(ca))) == 3


def test_crl_numbers_stay_gap_free_under_concurrency(pki: Pki) -> None:
    """Threads on two engines (two nodes, say) issue CRLs and revoke at the same time."""
    revokable = [pki.ca.issue_tls_server([f"host{i}.example.org"]).serial for i in range(4)]
    other_engine = make_engine(pki.settings.database_url)
    other = CertificateAuthorityService(other_engine, AuditLog(other_engine), pki.settings, lambda: pki.hsm,
                                        hsm_private_key)
    start = threading.Barrier(8)
    rounds = 5

    def issue(service: CertificateAuthorityService) -> list[int]:
        start.wait()
        return [service.issue_crl("ISSUING").number for _ in range(rounds)]

    def revoke(service: CertificateAuthorityService, serial: str) -> list[int]:
        start.wait()
        return [service.revoke(serial, "superseded").number]

    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(issue, pki.ca if i % 2 else other) for i in range(4)]
            futures += [pool.submit(revoke, other if i % 2 else pki.ca, s) for i, s in enumerate(revokable)]
            numbers = [n for f in futures for n in f.result()]
    finally:
        other_engine.dispose()

    expected = list(range(2, 2 + 4 * rounds + len(revokable)))
    assert sorted(numbers) == expected
    assert _crl_numbers(pki, "ISSUING") == [1, *expected]
    with pki.engine.connect() as conn:
        for number, der in conn.execute(select(Crl.number, Crl.der).where(Crl.ca == "ISSUING")):
            assert _crl_number(x509.load_der_x509_crl(der)) == number
        assert conn.execute(select(CertificateAuthority.crl_number)
                            .where(CertificateAuthority.name == "ISSUING")).scalar_one() == expected[-1]
    newest = x509.load_der_x509_crl(pki.ca.current_crl("ISSUING"))
    assert _crl_number(newest) == expected[-1]
    assert sorted(format(e.serial_number, "x") for e in newest) == sorted(revokable)
    assert pki.audit.verify()[1] is None


# --- reading ---------------------------------------------------------------------------------------

def test_list_filters_what_expires_soon(pki: Pki) -> None:
    _add_user(pki, "anna", "anna@example.com")
    _add_user(pki, "bert", "bert@example.com")
    short = _service(pki, user_lifetime_days=10, service_lifetime_days=20)
    soon = short.issue_user("anna")
    later = pki.ca.issue_user("bert")
    tls_soon = short.issue_tls_server(["soon.example.org"])
    revoked_soon = short.issue_tls_server(["gone.example.org"])
    pki.ca.revoke(revoked_soon.serial, "cessationOfOperation")
    seq = _last_seq(pki.audit)

    within_30 = pki.ca.list(expiring_within=timedelta(days=30), actor="admin")
    within_15 = pki.ca.list(expiring_within=timedelta(days=15), actor="admin")
    everything = pki.ca.list(actor="admin")

    assert [c.serial for c in within_30] == [soon.serial, tls_soon.serial]  # soonest first
    assert [c.serial for c in within_15] == [soon.serial]
    assert len(everything) == _count(pki, Certificate) == 8
    assert {soon.serial, later.serial, tls_soon.serial, revoked_soon.serial} <= {c.serial for c in everything}
    not_after = [c.not_after.replace(tzinfo=None) for c in everything]
    assert not_after == sorted(not_after)
    entries = _entries_after(pki.audit, seq)
    assert [(e.action, e.actor, json.loads(e.details)) for e in entries] == [
        ("ca.list", "admin", {"expiring_within": str(timedelta(days=30)), "count": 2}),
        ("ca.list", "admin", {"expiring_within": str(timedelta(days=15)), "count": 1}),
        ("ca.list", "admin", {"expiring_within": None, "count": 8})]


def test_export_gives_ca_and_issued_certificates_as_pem(pki: Pki) -> None:
    cas = pki.ca.ca_certificates()
    seq = _last_seq(pki.audit)

    root_pem, issuing_pem = pki.ca.export("ROOT", "admin"), pki.ca.export("issuing", "admin")

    assert root_pem.startswith("-----BEGIN CERTIFICATE-----\n") and root_pem.endswith("-----END CERTIFICATE-----\n")
    assert x509.load_pem_x509_certificate(root_pem.encode()) == cas["ROOT"]
    assert x509.load_pem_x509_certificate(issuing_pem.encode()) == cas["ISSUING"]
    assert pki.ca.ca_certificate_der("ROOT") == cas["ROOT"].public_bytes(Encoding.DER)
    with pytest.raises(SiegelError) as caught:
        pki.ca.export("OTHER")
    assert caught.value.code is Code.BAD_REQUEST and "ROOT, ISSUING or" in caught.value.message
    tsa_serial = format(_cert(pki.ca.service_credentials("tsa")[1][0]).serial_number, "x")
    with pytest.raises(SiegelError) as caught:
        pki.ca.export(tsa_serial + "0")
    assert caught.value.code is Code.NOT_FOUND
    tsa_pem = pki.ca.export(tsa_serial.upper(), "admin")
    assert x509.load_pem_x509_certificate(tsa_pem.encode()).public_bytes(Encoding.DER) == \
        pki.ca.service_credentials("tsa")[1][0]
    assert [(e.action, e.target, e.actor, json.loads(e.details)) for e in _entries_after(pki.audit, seq)] == [
        ("ca.export", "ROOT", "admin", {"serial": format(cas["ROOT"].serial_number, "x")}),
        ("ca.export", "ISSUING", "admin", {"serial": format(cas["ISSUING"].serial_number, "x")}),
        ("ca.export", tsa_serial, "admin", {"serial": tsa_serial})]


# --- audit -----------------------------------------------------------------------------------------

def test_every_operation_is_audited_and_the_chain_holds(pki: Pki) -> None:
    _add_user(pki, "anna", "anna@example.com")
    seq = _last_seq(pki.audit)

    user = pki.ca.issue_user("anna", "admin")
    tls = pki.ca.issue_tls_server(["siegel.example.org"], "admin")
    pki.ca.revoke(user.serial, "keyCompromise", "admin")
    pki.ca.issue_crl("ROOT", "admin")
    pki.ca.list(actor="admin")
    pki.ca.export("ROOT", "admin")
    pki.ca.issue_all_crls()

    assert _actions_after(pki.audit, seq) == [
        ("ca.issue", user.serial), ("ca.issue", tls.serial), ("ca.revoke", user.serial), ("ca.crl", "ISSUING"),
        ("ca.crl", "ROOT"), ("ca.list", ""), ("ca.export", "ROOT"), ("ca.crl", "ISSUING"), ("ca.crl", "ROOT")]
    count, fault = pki.audit.verify()
    assert fault is None and count == _last_seq(pki.audit)


def test_other_processes_see_a_renewed_service_certificate_after_the_cache_time(
        pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = _service(pki)  # the CA service of another worker process on the same database
    label, chain = elsewhere.service_credentials("ocsp")
    pki.ca.revoke(format(_cert(chain[0]).serial_number, "x"), "superseded", "test")
    pki.ca.init("test")
    assert pki.ca.service_credentials("ocsp")[0] != label  # here at once: this service changed it
    assert elsewhere.service_credentials("ocsp") == (label, chain)  # there: within SERVICE_CACHE_SECONDS
    monkeypatch.setattr(ca_module, "SERVICE_CACHE_SECONDS", 0.0)
    renewed = elsewhere.service_credentials("ocsp")
    assert renewed == pki.ca.service_credentials("ocsp") and renewed[0] != label
