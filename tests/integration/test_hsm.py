"""Pkcs11Hsm and HsmPrivateKey on a real SoftHSM2 token."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pkcs11
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11e

from adapters.hsm.keys import hsm_private_key
from adapters.hsm.pkcs11 import Pkcs11Hsm, key_id
from server.errors import Code, SiegelError
from server.signing.keysource import DigestAlgorithm, KeyKind, SignatureScheme
from tests.fixtures.softhsm import SoftHsmToken

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
_labels = itertools.count()


def fresh_label(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_labels)}"


@pytest.fixture(scope="module")
def keys(hsm: Pkcs11Hsm) -> dict[KeyKind, str]:
    """One key of every kind, generated on the token for this module."""
    labels = {kind: fresh_label(f"key-{kind}") for kind in KeyKind}
    for kind, label in labels.items():
        hsm.generate_key(label, kind)
    return labels


@pytest.fixture
def raw_session(softhsm_token: SoftHsmToken, hsm: Pkcs11Hsm) -> Iterator[Any]:
    """A python-pkcs11 session of our own on the token (logged in through the process's login)."""
    token = pkcs11.lib(softhsm_token.module).get_token(token_label=softhsm_token.label)
    session = token.open()
    try:
        yield session
    finally:
        session.close()


def _digest(alg: DigestAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(alg.hash())
    h.update(data)
    return h.finalize()


EXPECTED_PUBLIC = {
    KeyKind.RSA_3072: (rsa.RSAPublicKey, 3072),
    KeyKind.RSA_4096: (rsa.RSAPublicKey, 4096),
    KeyKind.EC_P256: (ec.EllipticCurvePublicKey, 256),
    KeyKind.EC_P384: (ec.EllipticCurvePublicKey, 384),
}


@pytest.mark.parametrize("kind", list(KeyKind))
def test_generated_key_has_its_kind_and_is_listed_as_non_extractable(hsm: Pkcs11Hsm, keys: dict[KeyKind, str],
                                                                    kind: KeyKind) -> None:
    public = hsm.public_key(keys[kind])
    typ, size = EXPECTED_PUBLIC[kind]
    assert isinstance(public, typ) and public.key_size == size
    listed = {k.label: k for k in hsm.list_keys()}
    info = listed[keys[kind]]
    assert (info.kind, info.size, info.key_id) == (str(kind), size, key_id(keys[kind]))
    assert info.extractable is False and info.sensitive is True


def test_generate_key_returns_the_public_key_of_the_new_pair(hsm: Pkcs11Hsm) -> None:
    label = fresh_label("fresh")
    public = hsm.generate_key(label, KeyKind.EC_P256)
    digest = _digest(DigestAlgorithm.SHA256, b"x")
    signature = hsm.sign_digest(label, digest, DigestAlgorithm.SHA256, SignatureScheme.ECDSA)
    public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


@pytest.mark.parametrize("kind", list(KeyKind))
def test_private_key_cannot_be_read_or_wrapped(raw_session: Any, keys: dict[KeyKind, str], kind: KeyKind) -> None:
    key = raw_session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=keys[kind])
    assert key[Attribute.EXTRACTABLE] is False and key[Attribute.NEVER_EXTRACTABLE] is True
    assert key[Attribute.SENSITIVE] is True and key[Attribute.ALWAYS_SENSITIVE] is True
    assert key[Attribute.TOKEN] is True and key[Attribute.PRIVATE] is True
    secret_parts = ((Attribute.PRIVATE_EXPONENT, Attribute.PRIME_1, Attribute.PRIME_2) if key.key_type is KeyType.RSA
                    else (Attribute.VALUE,))
    for attribute in secret_parts:
        with pytest.raises(p11e.AttributeSensitive):
            key[attribute]
    wrapping = raw_session.generate_key(KeyType.AES, 256, template={Attribute.WRAP: True, Attribute.EXTRACTABLE: True})
    with pytest.raises((p11e.KeyUnextractable, p11e.KeyNotWrappable)):
        wrapping.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)


def test_generating_an_existing_label_is_a_conflict(hsm: Pkcs11Hsm, keys: dict[KeyKind, str]) -> None:
    with pytest.raises(SiegelError) as err:
        hsm.generate_key(keys[KeyKind.EC_P256], KeyKind.EC_P384)
    assert err.value.code is Code.CONFLICT and keys[KeyKind.EC_P256] in err.value.message
    assert hsm.public_key(keys[KeyKind.EC_P256]).curve.name == "secp256r1"  # the old key is untouched


RSA_CASES = [(kind, scheme, alg) for kind in (KeyKind.RSA_3072, KeyKind.RSA_4096)
             for scheme in (SignatureScheme.RSA_PKCS1V15, SignatureScheme.RSA_PSS) for alg in DigestAlgorithm]
EC_CASES = [(kind, SignatureScheme.ECDSA, alg) for kind in (KeyKind.EC_P256, KeyKind.EC_P384) for alg in DigestAlgorithm]


def _verify(public: Any, signature: bytes, digest: bytes, alg: DigestAlgorithm, scheme: SignatureScheme) -> None:
    prehashed = utils.Prehashed(alg.hash())
    if scheme is SignatureScheme.ECDSA:
        public.verify(signature, digest, ec.ECDSA(prehashed))
    elif scheme is SignatureScheme.RSA_PSS:
        public.verify(signature, digest, padding.PSS(mgf=padding.MGF1(alg.hash()), salt_length=alg.size), prehashed)
    else:
        public.verify(signature, digest, padding.PKCS1v15(), prehashed)


@pytest.mark.parametrize(("kind", "scheme", "alg"), RSA_CASES + EC_CASES, ids=lambda v: str(v))
def test_signature_verifies_with_cryptography(hsm: Pkcs11Hsm, keys: dict[KeyKind, str], kind: KeyKind,
                                              scheme: SignatureScheme, alg: DigestAlgorithm) -> None:
    digest = _digest(alg, os.urandom(64))
    signature = hsm.sign_digest(keys[kind], digest, alg, scheme)
    public = hsm.public_key(keys[kind])
    _verify(public, signature, digest, alg, scheme)
    if scheme is SignatureScheme.ECDSA:
        utils.decode_dss_signature(signature)  # DER, not r || s
    other = bytes([digest[0] ^ 1]) + digest[1:]
    with pytest.raises(InvalidSignature):
        _verify(public, signature, other, alg, scheme)


def test_sign_refuses_a_scheme_the_key_cannot_do_and_a_digest_of_the_wrong_size(hsm: Pkcs11Hsm,
                                                                                 keys: dict[KeyKind, str]) -> None:
    digest = _digest(DigestAlgorithm.SHA256, b"x")
    with pytest.raises(SiegelError) as wrong_type:
        hsm.sign_digest(keys[KeyKind.EC_P256], digest, DigestAlgorithm.SHA256, SignatureScheme.RSA_PSS)
    assert wrong_type.value.code is Code.BAD_REQUEST and "EC key" in wrong_type.value.message
    with pytest.raises(SiegelError) as wrong_size:
        hsm.sign_digest(keys[KeyKind.RSA_3072], digest, DigestAlgorithm.SHA512, SignatureScheme.RSA_PKCS1V15)
    assert wrong_size.value.code is Code.BAD_REQUEST


def test_eight_threads_sign_while_keys_are_generated(hsm: Pkcs11Hsm, keys: dict[KeyKind, str]) -> None:
    """Six signers and two key managers at once; SoftHSM2 crashes here unless initialised for threads."""
    cases = [(KeyKind.EC_P256, SignatureScheme.ECDSA), (KeyKind.RSA_3072, SignatureScheme.RSA_PSS)]
    publics = {kind: hsm.public_key(keys[kind]) for kind, _ in cases}
    signed: list[tuple[KeyKind, SignatureScheme, bytes, bytes]] = []
    generated: list[tuple[str, Any]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def signer(n: int) -> None:
        kind, scheme = cases[n % 2]
        for i in range(30):
            digest = _digest(DigestAlgorithm.SHA256, f"{n}-{i}".encode())
            signed.append((kind, scheme, digest, hsm.sign_digest(keys[kind], digest, DigestAlgorithm.SHA256, scheme)))

    def manager(n: int) -> None:
        for i in range(15):
            label = fresh_label(f"busy-{n}")
            generated.append((label, hsm.generate_key(label, KeyKind.EC_P256)))
            hsm.list_keys()

    def run(work: Any, n: int) -> None:
        try:
            start.wait()
            work(n)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(signer if n < 6 else manager, n)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(signed) == 180 and len(generated) == 30
    for kind, scheme, digest, signature in signed:
        _verify(publics[kind], signature, digest, DigestAlgorithm.SHA256, scheme)
    listed = {k.label for k in hsm.list_keys()}
    for label, public in generated:
        assert label in listed and hsm.public_key(label) == public


def test_the_digest_algorithm_may_be_given_by_name(hsm: Pkcs11Hsm, keys: dict[KeyKind, str]) -> None:
    digest = _digest(DigestAlgorithm.SHA384, b"by name")
    signature = hsm.sign_digest(keys[KeyKind.RSA_3072], digest, "sha384", SignatureScheme.RSA_PKCS1V15)
    _verify(hsm.public_key(keys[KeyKind.RSA_3072]), signature, digest, DigestAlgorithm.SHA384,
            SignatureScheme.RSA_PKCS1V15)


def test_a_wrong_pin_is_refused_while_the_process_is_logged_in(softhsm_token: SoftHsmToken, hsm: Pkcs11Hsm) -> None:
    with pytest.raises(SiegelError) as err:
        Pkcs11Hsm(softhsm_token.module, softhsm_token.label, "not-the-pin")
    assert err.value.code is Code.HSM_LOGIN
    assert "PIN" in err.value.message and softhsm_token.label in err.value.message
    hsm.check()  # the refused attempt did not log the process out


def test_a_second_instance_with_the_right_pin_shares_the_login(softhsm_token: SoftHsmToken, hsm: Pkcs11Hsm,
                                                               keys: dict[KeyKind, str]) -> None:
    second = Pkcs11Hsm(softhsm_token.module, softhsm_token.label, softhsm_token.user_pin, pool_size=1)
    second.close()
    hsm.check()  # closing the second did not log the first out
    digest = _digest(DigestAlgorithm.SHA256, b"still signing")
    hsm.sign_digest(keys[KeyKind.EC_P256], digest, DigestAlgorithm.SHA256, SignatureScheme.ECDSA)


CHILD = """
import json, sys
from adapters.hsm.pkcs11 import Pkcs11Hsm
from server.errors import SiegelError
module, label, pin = sys.argv[1:4]
try:
    hsm = Pkcs11Hsm(module, label, pin)
    print(json.dumps({"ok": hsm.check() is None, "keys": len(hsm.list_keys())}))
    hsm.close()
except SiegelError as exc:
    print(json.dumps({"code": exc.code.value, "message": exc.message}))
"""


def _in_fresh_process(softhsm_token: SoftHsmToken, pin: str) -> dict[str, Any]:
    env = dict(os.environ, SOFTHSM2_CONF=str(softhsm_token.conf), PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", CHILD, softhsm_token.module, softhsm_token.label, pin],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_a_wrong_pin_is_refused_by_the_token(softhsm_token: SoftHsmToken) -> None:
    answer = _in_fresh_process(softhsm_token, "not-the-pin")
    assert answer["code"] == "hsm-login"
    assert "PIN" in answer["message"] and "wrong" in answer["message"] and softhsm_token.label in answer["message"]
    assert _in_fresh_process(softhsm_token, softhsm_token.user_pin)["ok"] is True


def test_a_missing_token_names_the_label_and_the_module(softhsm_token: SoftHsmToken) -> None:
    with pytest.raises(SiegelError) as err:
        Pkcs11Hsm(softhsm_token.module, "no-such-token", softhsm_token.user_pin)
    assert err.value.code is Code.HSM_UNAVAILABLE
    assert "no-such-token" in err.value.message and softhsm_token.module in err.value.message
    assert softhsm_token.label in err.value.message  # the tokens that are there


def test_a_missing_module_names_its_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "libnothere.so")
    with pytest.raises(SiegelError) as err:
        Pkcs11Hsm(missing, "siegel", "1234")
    assert err.value.code is Code.HSM_UNAVAILABLE and missing in err.value.message


def test_a_file_that_is_no_pkcs11_module_is_unavailable(tmp_path: Path) -> None:
    bogus = tmp_path / "libbogus.so"
    bogus.write_bytes(b"not a shared object")
    with pytest.raises(SiegelError) as err:
        Pkcs11Hsm(str(bogus), "siegel", "1234")
    assert err.value.code is Code.HSM_UNAVAILABLE and str(bogus) in err.value.message


def test_an_unknown_key_label_is_key_not_found(hsm: Pkcs11Hsm) -> None:
    digest = _digest(DigestAlgorithm.SHA256, b"x")
    for call in (lambda: hsm.sign_digest("no-such-key", digest, DigestAlgorithm.SHA256, SignatureScheme.ECDSA),
                 lambda: hsm.public_key("no-such-key"),
                 lambda: hsm_private_key(hsm, "no-such-key")):
        with pytest.raises(SiegelError) as err:
            call()
        assert err.value.code is Code.KEY_NOT_FOUND and "no-such-key" in err.value.message


def test_a_closed_instance_refuses_work(softhsm_token: SoftHsmToken) -> None:
    own = Pkcs11Hsm(softhsm_token.module, softhsm_token.label, softhsm_token.user_pin, pool_size=1)
    own.close()
    with pytest.raises(SiegelError) as err:
        own.check()
    assert err.value.code is Code.HSM_UNAVAILABLE


# --- certificates -------------------------------------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Siegel")])


def _certificate(subject: str, public: Any, issuer: str, signer: Any, ca: bool, rsa_padding: Any = None,
                 days_ago: int = 1) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(public).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=days_ago)).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                                            crl_sign=ca, encipher_only=False, decipher_only=False), critical=True))
    if rsa_padding is not None:
        return builder.sign(signer, hashes.SHA256(), rsa_padding=rsa_padding)
    return builder.sign(signer, hashes.SHA256())


def _openssl_verify(tmp_path: Path, root: x509.Certificate, leaf: x509.Certificate) -> subprocess.CompletedProcess[str]:
    (tmp_path / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return subprocess.run(["openssl", "verify", "-check_ss_sig", "-CAfile", str(tmp_path / "root.pem"),
                           str(tmp_path / "leaf.pem")], capture_output=True, text=True, timeout=30)


PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


@pytest.mark.parametrize(("kind", "rsa_padding"), [(KeyKind.RSA_3072, None), (KeyKind.RSA_3072, PSS),
                                                   (KeyKind.EC_P256, None), (KeyKind.EC_P384, None)],
                         ids=["rsa-pkcs1v15", "rsa-pss", "ec-p256", "ec-p384"])
def test_hsm_private_key_signs_a_self_signed_certificate(hsm: Pkcs11Hsm, keys: dict[KeyKind, str], tmp_path: Path,
                                                         kind: KeyKind, rsa_padding: Any) -> None:
    key = hsm_private_key(hsm, keys[kind])
    assert key.public_key() == hsm.public_key(keys[kind])
    cert = _certificate("HSM Root", key.public_key(), "HSM Root", key, ca=True, rsa_padding=rsa_padding)
    cert.verify_directly_issued_by(cert)
    done = _openssl_verify(tmp_path, cert, cert)
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stdout + done.stderr


@pytest.mark.parametrize("kind", [KeyKind.RSA_3072, KeyKind.EC_P384])
def test_hsm_private_key_signs_crls_and_ocsp_responses(hsm: Pkcs11Hsm, keys: dict[KeyKind, str], kind: KeyKind) -> None:
    key = hsm_private_key(hsm, keys[kind])
    root = _certificate("HSM CA", key.public_key(), "HSM CA", key, ca=True)
    now = dt.datetime.now(dt.timezone.utc)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(root.subject).last_update(now)
           .next_update(now + dt.timedelta(hours=24))
           .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(42).revocation_date(now).build())
           .sign(key, hashes.SHA384()))
    assert crl.is_signature_valid(key.public_key())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate("leaf", leaf_key.public_key(), "HSM CA", key, ca=False)
    response = (ocsp.OCSPResponseBuilder()
                .add_response(cert=leaf, issuer=root, algorithm=hashes.SHA256(), cert_status=ocsp.OCSPCertStatus.GOOD,
                              this_update=now, next_update=now + dt.timedelta(hours=1), revocation_time=None,
                              revocation_reason=None)
                .responder_id(ocsp.OCSPResponderEncoding.HASH, root)
                .sign(key, hashes.SHA256()))
    args = ((ec.ECDSA(hashes.SHA256()),) if kind.startswith("ec") else (padding.PKCS1v15(), hashes.SHA256()))
    key.public_key().verify(response.signature, response.tbs_response_bytes, *args)


def test_hsm_private_key_keeps_its_secrets(hsm: Pkcs11Hsm, keys: dict[KeyKind, str]) -> None:
    key = hsm_private_key(hsm, keys[KeyKind.RSA_3072])
    for call in (key.private_numbers,
                 lambda: key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()),
                 lambda: key.decrypt(b"x", padding.PKCS1v15())):
        with pytest.raises(SiegelError) as err:
            call()
        assert err.value.code is Code.NOT_SUPPORTED
    with pytest.raises(SiegelError):
        key.sign(b"data", padding.PKCS1v15(), hashes.SHA1())


def test_certificate_chain_round_trip(hsm: Pkcs11Hsm, keys: dict[KeyKind, str], tmp_path: Path) -> None:
    ca_label, leaf_label = fresh_label("chain-ca"), fresh_label("chain-leaf")
    hsm.generate_key(ca_label, KeyKind.EC_P256)
    hsm.generate_key(leaf_label, KeyKind.EC_P256)
    ca_key = hsm_private_key(hsm, ca_label)
    root = _certificate("Chain Root", ca_key.public_key(), "Chain Root", ca_key, ca=True)
    old = _certificate("Chain Leaf", hsm.public_key(leaf_label), "Chain Root", ca_key, ca=False, days_ago=20)
    new = _certificate("Chain Leaf", hsm.public_key(leaf_label), "Chain Root", ca_key, ca=False, days_ago=2)
    assert hsm.certificate_chain(leaf_label) == []
    der = [c.public_bytes(serialization.Encoding.DER) for c in (root, old, new)]
    hsm.store_certificate(leaf_label, der[0])  # issuers may come first
    hsm.store_certificate(leaf_label, der[1])
    hsm.store_certificate(leaf_label, der[2])
    hsm.store_certificate(ca_label, der[0])
    assert hsm.certificate_chain(leaf_label) == [der[2], der[0]]  # the newer leaf replaced the older
    assert hsm.certificate_chain(ca_label) == [der[0]]
    hsm.store_certificate(ca_label, der[0])  # storing again replaces, it does not duplicate
    assert hsm.certificate_chain(ca_label) == [der[0]]
    hsm.store_certificate(leaf_label, der[1])  # whatever was stored last is the key's certificate
    assert hsm.certificate_chain(leaf_label) == [der[1], der[0]]
    with pytest.raises(SiegelError) as garbage:
        hsm.store_certificate(ca_label, b"not a certificate")
    assert garbage.value.code is Code.BAD_REQUEST
    assert _openssl_verify(tmp_path, root, new).returncode == 0


def test_certificates_are_token_objects_with_the_keys_id(raw_session: Any, hsm: Pkcs11Hsm) -> None:
    label = fresh_label("cert-attrs")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate("Attrs", key.public_key(), "Attrs", key, ca=True)
    hsm.store_certificate(label, cert.public_bytes(serialization.Encoding.DER))
    [stored] = raw_session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: label})
    assert stored[Attribute.TOKEN] is True and stored[Attribute.ID] == key_id(label)
    assert stored[Attribute.SUBJECT] == cert.subject.public_bytes()
    assert hashlib.sha256(stored[Attribute.VALUE]).digest() == hashlib.sha256(
        cert.public_bytes(serialization.Encoding.DER)).digest()


def test_a_key_replaced_under_its_label_is_found_again(softhsm_token: SoftHsmToken, hsm: Pkcs11Hsm) -> None:
    """Sessions remember the keys they looked up; a key destroyed and made again under its label
    (by an operator, or another node) must not leave them with a dead handle."""
    label = fresh_label("replaced")
    digest = hashlib.sha256(b"document").digest()
    hsm.generate_key(label, KeyKind.EC_P256)
    for _ in range(8):  # every pooled session looks the key up
        hsm.sign_digest(label, digest, DigestAlgorithm.SHA256, SignatureScheme.ECDSA)
    token = pkcs11.lib(softhsm_token.module).get_token(token_label=softhsm_token.label)
    with token.open(rw=True) as session:
        for obj in session.get_objects({Attribute.LABEL: label}):
            obj.destroy()
    with pytest.raises(SiegelError) as caught:
        hsm.sign_digest(label, digest, DigestAlgorithm.SHA256, SignatureScheme.ECDSA)
    assert caught.value.code is Code.KEY_NOT_FOUND
    public = hsm.generate_key(label, KeyKind.EC_P256)
    for _ in range(8):
        signature = hsm.sign_digest(label, digest, DigestAlgorithm.SHA256, SignatureScheme.ECDSA)
        public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))  # type: ignore[union-attr]
