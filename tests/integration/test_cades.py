"""CAdES B-B to B-LTA with users' HSM keys on SoftHSM2, checked by ``openssl cms -verify`` and ``openssl ts -verify``;
the archive timestamp's imprint is recomputed here from the raw DER, independently of the engine."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import cms, tsp
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from adapters.timestamp.client import TimestampClient, endpoint_from_url
from server.errors import Code, SiegelError
from server.signing.cades import (
    SigningKey,
    assemble_cades,
    check_signature_value,
    extend_cades,
    prepare_cades,
    sign_cades,
)
from server.signing.keysource import DigestAlgorithm
from server.signing.levels import Level, Packaging, ProductionPlace, SignatureProperties
from server.signing.validation_data import collect_validation_data
from tests.fixtures.pki import OnlinePki, Pki, make_pki, pki_settings, user_key
from tests.fixtures.tsa import ReferenceTsa

pytestmark = pytest.mark.integration

DOCUMENT = b"Rahmenvertrag zwischen der Muster GmbH und der Beispiel AG\n" * 50
SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
SIGNATURE_TIME_STAMP = "1.2.840.113549.1.9.16.2.14"


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
    key = user_key(pki)
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
    signature = sign_cades(user_key(pki), content=DOCUMENT, packaging=Packaging.ENVELOPING)
    _files(tmp_path, pki, signature)
    done = _cms_verify(tmp_path, "-out", "content.out")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "content.out").read_bytes() == DOCUMENT


@pytest.mark.parametrize("digest", list(DigestAlgorithm))
def test_a_signature_over_the_digest_alone_verifies_against_the_document(
        pki: Pki, tmp_path: Path, digest: DigestAlgorithm) -> None:
    signature = sign_cades(user_key(pki), content_digest=hashlib.new(digest.value, DOCUMENT).digest(), digest=digest)
    _files(tmp_path, pki, signature)
    done = _cms_verify(tmp_path, "-content", "document.txt", "-out", "/dev/null")
    assert done.returncode == 0 and b"Verification successful" in done.stderr, done.stderr
    assert _signer_info(signature)["digest_algorithm"]["algorithm"].native == digest.value


def test_rsa_keys_sign_too(tmp_path: Path, database_url: str, hsm: object) -> None:
    made = make_pki(pki_settings(tmp_path / "var", database_url, key_algorithm="rsa-3072"), hsm)  # type: ignore[arg-type]
    try:
        made.ca.init("test")
        signature = sign_cades(user_key(made, "rsa"), content=DOCUMENT)
        _files(tmp_path, made, signature)
        done = _cms_verify(tmp_path, "-content", "document.txt", "-out", "/dev/null")
        assert done.returncode == 0, done.stderr
        assert _signer_info(signature)["signature_algorithm"]["algorithm"].native == "sha256_rsa"
    finally:
        made.engine.dispose()


def test_b_t_embeds_a_checked_timestamp_over_the_signature_value(
        pki: Pki, tmp_path: Path, reference_tsa: ReferenceTsa) -> None:
    client = TimestampClient([endpoint_from_url(reference_tsa.url, (reference_tsa.ca,))], 10, 0)
    signature = sign_cades(user_key(pki), content=DOCUMENT, level=Level.B_T, timestamps=client)
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


def test_two_step_b_t_from_prepared_attributes_is_der_and_verifies(
        pki: Pki, tmp_path: Path, reference_tsa: ReferenceTsa) -> None:
    """prepare → the HSM signs the digest → check → assemble B-T, with the signed attributes pyHanko gave
    before the CMS was assembled from parts (content-type, signing-time, message-digest, signing-certificate-v2)."""
    key = user_key(pki)
    prepared = prepare_cades(key.chain, hashlib.sha256(DOCUMENT).digest(), DigestAlgorithm.SHA256)
    value = pki.hsm.sign_digest(key.label, prepared.to_be_signed, DigestAlgorithm.SHA256, prepared.scheme)
    check_signature_value(prepared, value)
    with pytest.raises(SiegelError):
        check_signature_value(prepared, value[:-1] + bytes([value[-1] ^ 1]))
    b_b = assemble_cades(prepared, value)
    assert cms.ContentInfo.load(b_b).dump(force=True) == b_b  # DER: asn1crypto re-encodes it to the same bytes
    assert [a["type"].dotted for a in _signer_info(b_b)["signed_attrs"]] == [
        "1.2.840.113549.1.9.3", "1.2.840.113549.1.9.5", "1.2.840.113549.1.9.4", SIGNING_CERTIFICATE_V2]
    assert _signer_info(b_b)["signed_attrs"].dump()[1:] == prepared.signed_attrs[1:]
    assert cms.ContentInfo.load(b_b)["content"]["version"].native == "v1"

    client = TimestampClient([endpoint_from_url(reference_tsa.url, (reference_tsa.ca,))], 10, 0)
    b_t = assemble_cades(prepared, value, level=Level.B_T, timestamps=client)
    _files(tmp_path, pki, b_t)
    done = _cms_verify(tmp_path, "-content", "document.txt", "-out", "/dev/null")
    assert done.returncode == 0 and b"Verification successful" in done.stderr, done.stderr
    (stamp,) = _signer_info(b_t)["unsigned_attrs"]
    assert stamp["type"].dotted == SIGNATURE_TIME_STAMP
    for name in ("sid", "signed_attrs", "signature_algorithm", "signature"):  # B-B's SignerInfo, plus the token
        assert _signer_info(b_t)[name].dump() == _signer_info(b_b)[name].dump()
    assert extend_cades(b_t, Level.B_T, timestamps=client, trust_roots=()) == b_t  # there already, as extend sees it


def test_bad_requests_are_refused_before_the_hsm(pki: Pki) -> None:
    key = user_key(pki)
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
    from server.signing.keys import SigningKeys
    from server.signing.order import Document, Format, SignOrder
    from server.signing.service import SigningService

    key = user_key(pki)
    user_id = next(c.user_id for c in pki.ca.list() if c.key_label == key.label)
    assert user_id is not None
    service = SigningService(pki.settings, pki.engine, pki.ca, lambda: pki.hsm, pki.audit,
                             SigningKeys(pki.engine, pki.audit, pki.ca), lambda: ())
    order = SignOrder(Format.CADES, Level.B_B, Packaging.DETACHED, (Document("contract.bin", content=DOCUMENT),))
    state_id, prepared, _ = service.prepare(user_id, "anna", order, key.chain)
    value = pki.hsm.sign_digest(key.label, prepared.to_be_signed, DigestAlgorithm.SHA256, prepared.scheme)
    with pki.engine.begin() as conn:
        conn.execute(update(SigningState).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    with pytest.raises(SiegelError) as caught:
        service.complete(user_id, "anna", state_id, value)
    assert caught.value.code is Code.CONFLICT and "expired" in caught.value.message
    service.remove_expired()
    with pki.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(SigningState)).scalar_one() == 0


# ---------------------------------------------------------------- B-LT and B-LTA

ARCHIVE_TIME_STAMP_V3 = bytes.fromhex("060604008d450204")  # DER of OID 0.4.0.1733.2.4
ATS_HASH_INDEX_V3 = bytes.fromhex("060704008195320105")  # DER of OID 0.4.0.19122.1.5
SHA256 = bytes.fromhex("0609608648016503040201")  # DER of OID 2.16.840.1.101.3.4.2.1


def _tsa(pki: OnlinePki) -> TimestampClient:
    return TimestampClient([endpoint_from_url(pki.url + "/tsa", (pki.ca.ca_certificates()["ROOT"],))], 10, 0)


def _roots(pki: Pki) -> list[bytes]:
    return [pki.ca.ca_certificate_der("ROOT")]


def _ca_files(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "issuing.pem").write_bytes(pki.ca.ca_certificates()["ISSUING"].public_bytes(Encoding.PEM))


# A DER walker of its own, so that the imprint below does not come from the engine's asn1crypto.
def _element(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of the value, end) of the DER element that begins at ``at``."""
    length, start = data[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        length, start = int.from_bytes(data[start:start + count], "big"), start + count
    return data[at], start, start + length


def _children(data: bytes) -> list[bytes]:
    """The encoded elements inside the constructed element ``data``."""
    _, at, end = _element(data, 0)
    out = []
    while at < end:
        _, _, stop = _element(data, at)
        out.append(data[at:stop])
        at = stop
    return out


def _der(tag: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    size = len(body)
    length = bytes([size]) if size < 0x80 else bytes([0x80 | ((size.bit_length() + 7) // 8)]) + \
        size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + body


@dataclass
class _RawSignedData:
    """The encoded fields of a ContentInfo's SignedData (and its first SignerInfo), found by tag and position."""

    encap: bytes = b""
    certificates: list[bytes] = field(default_factory=list)
    crls: list[bytes] = field(default_factory=list)
    signer_info: list[bytes] = field(default_factory=list)

    @classmethod
    def of(cls, signature: bytes) -> _RawSignedData:
        raw = cls()
        version, digest_algorithms, *rest, signer_infos = _children(_children(_children(signature)[1])[0])
        assert version[0] == 0x02 and digest_algorithms[0] == signer_infos[0] == 0x31
        for element in rest:
            if element[0] == 0x30:
                raw.encap = element
            elif element[0] == 0xA0:
                raw.certificates = _children(element)
            elif element[0] == 0xA1:
                raw.crls = _children(element)
        raw.signer_info = _children(_children(signer_infos)[0])
        return raw


def _attributes(attrs: bytes) -> list[tuple[bytes, list[bytes]]]:
    """(encoded attrType, encoded values) of each Attribute in an encoded SET OF Attribute ([1] or [0])."""
    out = []
    for attribute in _children(attrs):
        type_, values = _children(attribute)
        out.append((type_, _children(values)))
    return out


def _independent_ats_check(signature: bytes, content: bytes, tmp_path: Path, pki: Pki) -> None:
    """For every archive-time-stamp-v3 (EN 319 122-1 5.5.2, 5.5.3), from the raw DER: its ats-hash-index-v3
    names only values the signature has (the newest one: all of them but itself), and ``openssl ts -verify
    -digest`` accepts the token for the imprint rebuilt here."""
    def sha256(data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    raw = _RawSignedData.of(signature)
    covered, unsigned = raw.signer_info[:6], _attributes(raw.signer_info[6])
    assert covered[3][0] == 0xA0 and raw.signer_info[6][0] == 0xA1  # signedAttrs [0] ... unsignedAttrs [1]
    assert _children(covered[3]) == sorted(_children(covered[3]))  # DER: verifiers that re-encode hash the same
    now = {"certificates": [_der(0x04, sha256(c)) for c in raw.certificates],
           "crls": [_der(0x04, sha256(r)) for r in raw.crls]}
    archives = [(i, values[0]) for i, (type_, values) in enumerate(unsigned) if type_ == ARCHIVE_TIME_STAMP_V3]
    assert archives, "no archive-time-stamp-v3"
    indexes = []
    for position, token in archives:
        token_signer = _children(_children(_children(_children(token)[1])[0])[-1])[0]
        (index,) = [v[0] for t, v in _attributes(_children(token_signer)[-1]) if t == ATS_HASH_INDEX_V3]
        algorithm, certificates, crls, attributes = _children(index)
        others = [_der(0x04, sha256(t + v)) for i, (t, values) in enumerate(unsigned) if i != position
                  for v in values]
        assert _children(algorithm)[0] == SHA256  # hashIndAlgorithm, written although it is the DEFAULT
        assert set(_children(certificates)) <= set(now["certificates"]) and set(_children(crls)) <= set(now["crls"])
        assert set(_children(attributes)) <= set(others)
        indexes.append((len(_children(attributes)), index, others))

        imprint = sha256(_children(raw.encap)[0] + sha256(content) + b"".join(covered) + index)
        (tmp_path / "ats.der").write_bytes(token)
        _ca_files(tmp_path, pki)
        done = subprocess.run(["openssl", "ts", "-verify", "-token_in", "-in", "ats.der", "-digest", imprint.hex(),
                               "-CAfile", "root.pem", "-untrusted", "issuing.pem"],
                              cwd=tmp_path, capture_output=True, timeout=60, check=False)
        assert done.returncode == 0 and b"Verification: OK" in done.stdout, done.stdout + done.stderr

    _, newest, others = max(indexes)
    _, certificates, crls, attributes = _children(newest)
    assert _children(certificates) == now["certificates"] and _children(crls) == now["crls"]  # in encoded order
    assert sorted(_children(attributes)) == sorted(others)


def _ocsp_statuses(signature: bytes, serial: int) -> list[str]:
    """The status of ``serial`` in each OCSP response of SignedData.crls (``other``, id-ri-ocsp-response)."""
    statuses = []
    for choice in cms.ContentInfo.load(signature)["content"]["crls"]:
        if choice.name == "other":
            assert choice.chosen["other_rev_info_format"].dotted == "1.3.6.1.5.5.7.16.2"
            response: asn1_ocsp.OCSPResponse = choice.chosen["other_rev_info"]
            for single in response.basic_ocsp_response["tbs_response_data"]["responses"]:
                if single["cert_id"]["serial_number"].native == serial:
                    statuses.append(single["cert_status"].name)
    return statuses


def _serial(certificate: bytes) -> int:
    return x509.load_der_x509_certificate(certificate).serial_number


def _tsa_certificate(signature: bytes) -> bytes:
    (stamp,) = [a for a in _signer_info(signature)["unsigned_attrs"] if a["type"].dotted == SIGNATURE_TIME_STAMP]
    token_data = stamp["values"][0]["content"]
    serial = token_data["signer_infos"][0]["sid"].chosen["serial_number"].native
    (cert,) = [c.chosen.dump() for c in token_data["certificates"] if c.chosen.serial_number == serial]
    return cert


@pytest.mark.parametrize("packaging", [Packaging.DETACHED, Packaging.ENVELOPING])
def test_b_lt_embeds_both_chains_and_a_good_ocsp_for_the_signer(
        pki_online: OnlinePki, tmp_path: Path, packaging: Packaging) -> None:
    key = user_key(pki_online)
    signature = sign_cades(key, content=DOCUMENT, level=Level.B_LT, packaging=packaging,
                           timestamps=_tsa(pki_online), trust_roots=_roots(pki_online))
    _files(tmp_path, pki_online, signature)
    args = ("-content", "document.txt", "-out", "/dev/null") if packaging is Packaging.DETACHED else ("-out", "out")
    done = _cms_verify(tmp_path, *args)
    assert done.returncode == 0 and b"Verification successful" in done.stderr, done.stderr

    signed_data = cms.ContentInfo.load(signature)["content"]
    embedded = {c.chosen.dump() for c in signed_data["certificates"]}
    tsa_cert = _tsa_certificate(signature)
    assert {*key.chain, *_roots(pki_online), tsa_cert} <= embedded  # both chains up to the root
    assert _ocsp_statuses(signature, _serial(key.chain[0])) == ["good"]
    assert _ocsp_statuses(signature, _serial(tsa_cert)) == ["good"]
    assert signed_data["version"].native == "v5"  # RFC 5652: "other" revocation values


def test_a_revoked_signer_keeps_the_good_ocsp_embedded_at_signing(pki_online: OnlinePki) -> None:
    key = user_key(pki_online, "bert")
    signature = sign_cades(key, content=DOCUMENT, level=Level.B_LT, timestamps=_tsa(pki_online),
                           trust_roots=_roots(pki_online))
    serial = next(c.serial for c in pki_online.ca.list() if c.key_label == key.label)
    pki_online.ca.revoke(serial, "keyCompromise", "test")
    with pytest.raises(SiegelError, match="revoked"):  # revoked now, for everyone who asks
        collect_validation_data(key.chain, _roots(pki_online))
    assert _ocsp_statuses(signature, _serial(key.chain[0])) == ["good"]  # the proof of signing time stays


@pytest.mark.parametrize("packaging", [Packaging.DETACHED, Packaging.ENVELOPING])
def test_b_lta_archive_timestamp_covers_the_recomputed_imprint(
        pki_online: OnlinePki, tmp_path: Path, packaging: Packaging) -> None:
    signature = sign_cades(user_key(pki_online), content=DOCUMENT, level=Level.B_LTA, packaging=packaging,
                           timestamps=_tsa(pki_online), trust_roots=_roots(pki_online))
    _files(tmp_path, pki_online, signature)
    args = ("-content", "document.txt", "-out", "/dev/null") if packaging is Packaging.DETACHED else ("-out", "out")
    assert _cms_verify(tmp_path, *args).returncode == 0
    _independent_ats_check(signature, DOCUMENT, tmp_path, pki_online)


def test_extend_raises_b_b_to_b_t_and_then_to_b_lta_twice(pki_online: OnlinePki, tmp_path: Path) -> None:
    key = user_key(pki_online)
    tsa, roots = _tsa(pki_online), _roots(pki_online)
    b_b = sign_cades(key, content=DOCUMENT)
    b_t = extend_cades(b_b, Level.B_T, timestamps=tsa, trust_roots=())
    assert SIGNATURE_TIME_STAMP in {a["type"].dotted for a in _signer_info(b_t)["unsigned_attrs"]}
    assert extend_cades(b_t, Level.B_T, timestamps=tsa, trust_roots=()) == b_t  # there already

    b_lta = extend_cades(b_t, Level.B_LTA, timestamps=tsa, trust_roots=roots, content=DOCUMENT)
    renewed = extend_cades(b_lta, Level.B_LTA, timestamps=tsa, trust_roots=roots, content=DOCUMENT)
    for signature in (b_lta, renewed):
        _files(tmp_path, pki_online, signature)
        done = _cms_verify(tmp_path, "-content", "document.txt", "-out", "/dev/null")
        assert done.returncode == 0, done.stderr
        _independent_ats_check(signature, DOCUMENT, tmp_path, pki_online)
    types = [a["type"].dotted for a in _signer_info(renewed)["unsigned_attrs"]]
    assert types.count("0.4.0.1733.2.4") == 2 and types.count(SIGNATURE_TIME_STAMP) == 1
    assert _ocsp_statuses(b_lta, _serial(key.chain[0])) == ["good"]
    assert set(_ocsp_statuses(renewed, _serial(key.chain[0]))) == {"good"}  # kept, and a fresh one beside it


def test_another_producers_cms_is_raised_to_b_t_and_still_verifies(
        tmp_path: Path, reference_tsa: ReferenceTsa) -> None:
    d = reference_tsa.directory
    (tmp_path / "document.txt").write_bytes(DOCUMENT)
    subprocess.run(["openssl", "cms", "-sign", "-binary", "-in", "document.txt", "-signer", str(d / "ec-tsa.pem"),
                    "-inkey", str(d / "ec-tsa.key"), "-outform", "DER", "-out", "theirs.p7s", "-md", "sha256"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=60)
    client = TimestampClient([endpoint_from_url(reference_tsa.url, (reference_tsa.ca,))], 10, 0)
    raised = extend_cades((tmp_path / "theirs.p7s").read_bytes(), Level.B_T, timestamps=client, trust_roots=())
    (tmp_path / "signature.p7s").write_bytes(raised)
    done = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", "signature.p7s",
                           "-content", "document.txt", "-CAfile", str(reference_tsa.ca_pem), "-purpose", "any",
                           "-out", "/dev/null"], cwd=tmp_path, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0 and b"Verification successful" in done.stderr, done.stderr
    assert SIGNATURE_TIME_STAMP in {a["type"].dotted for a in _signer_info(raised)["unsigned_attrs"]}


def test_b_lt_and_b_lta_refusals_come_before_any_network(pki: Pki, reference_tsa: ReferenceTsa) -> None:
    key = user_key(pki)
    client = TimestampClient([endpoint_from_url(reference_tsa.url, (reference_tsa.ca,))], 10, 0)
    detached = sign_cades(key, content=DOCUMENT)
    before = reference_tsa.hits["/tsa"]
    cases = [
        ({"content": DOCUMENT, "level": Level.B_LT, "timestamps": client}, Code.CONFIG, "trust anchors"),
        ({"content_digest": bytes(32), "level": Level.B_LTA, "timestamps": client, "trust_roots": [b"x"]},
         Code.NOT_SUPPORTED, "digest alone"),
    ]
    for kwargs, code, message in cases:
        with pytest.raises(SiegelError) as caught:
            sign_cades(key, **kwargs)  # type: ignore[arg-type]
        assert caught.value.code is code and message in caught.value.message, kwargs
    extensions = [
        (detached, None, Code.NOT_SUPPORTED, "only with its content"),
        (detached, DOCUMENT + b"!", Code.BAD_REQUEST, "not the content the signature signs"),
        (b"not a signature", None, Code.BAD_REQUEST, "not a CMS SignedData"),
    ]
    for signature, content, code, message in extensions:
        with pytest.raises(SiegelError) as caught:
            extend_cades(signature, Level.B_LTA, timestamps=client, trust_roots=[b"x"], content=content)
        assert caught.value.code is code and message in caught.value.message, message
    assert reference_tsa.hits["/tsa"] == before


def test_the_signers_claims_are_signed_attributes(pki: Pki, tmp_path: Path) -> None:
    properties = SignatureProperties(claimed_role="Prokurist", reason="Freigabe des Rahmenvertrags",
                                     commitment_type="http://uri.etsi.org/01903/v1.2.2#ProofOfApproval",
                                     production_place=ProductionPlace("Köln", "50667", "DE"))
    signature = sign_cades(user_key(pki), content=DOCUMENT, properties=properties)
    _files(tmp_path, pki, signature)
    done = _cms_verify(tmp_path, "-content", "document.txt", "-out", "/dev/null")
    assert done.returncode == 0 and b"Verification successful" in done.stderr, done.stderr

    attrs = {a["type"].dotted: a["values"][0] for a in _signer_info(signature)["signed_attrs"]}
    assert attrs["1.2.840.113549.1.9.16.2.16"]["commitment_type_id"].dotted == "1.2.840.113549.1.9.16.6.5"
    assert attrs["1.2.840.113549.1.9.16.2.17"].native == {"country_name": "DE", "locality_name": "Köln",
                                                          "postal_address": ["50667"]}
    (role,) = attrs["0.4.0.19122.1.1"]["claimed_attributes"]
    assert role["type"].dotted == "2.5.4.41" and role["values"][0].native == "Prokurist"  # as EU DSS writes it
    assert attrs["1.2.840.113549.1.9.16.2.4"]["content_description"].native == "Freigabe des Rahmenvertrags"

    with pytest.raises(SiegelError) as caught:
        sign_cades(user_key(pki, "bert"), content=DOCUMENT, properties=SignatureProperties(commitment_type="sure"))
    assert caught.value.code is Code.BAD_REQUEST and "commitment type 'sure'" in caught.value.message
