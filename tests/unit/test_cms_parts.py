"""server.signing.cms_parts: the DER it assembles from parts is asn1crypto's DER of the same structure,
byte for byte, with the elements of every SET OF in DER order (no HSM, no network)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from server.errors import Code, SiegelError
from server.signing import cms_parts
from server.signing.cms_parts import (
    OCTET_STRING,
    SEQUENCE,
    attribute,
    integer,
    oid,
    signed_attributes,
    signed_data,
    signer_info,
    signer_parts,
    tlv,
    utc_time,
)
from server.signing.keysource import DigestAlgorithm, SignatureScheme

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Muster GmbH"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: x509.Name, key: object, issuer: x509.Name, issuer_key: object, serial: int) -> bytes:
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key())  # type: ignore[attr-defined]
               .serial_number(serial).not_valid_before(NOW - timedelta(days=1))
               .not_valid_after(NOW + timedelta(days=365)))
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(Encoding.DER)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=["ec", "rsa"])
def chain(request: pytest.FixtureRequest) -> tuple[bytes, ...]:
    """Signer, issuing CA, self-signed root; serials of different lengths (one with its high bit set)."""
    def new_key() -> object:
        if request.param == "ec":
            return ec.generate_private_key(ec.SECP256R1())
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    root_key, issuing_key, signer_key = new_key(), new_key(), new_key()
    root = _certificate(_name("Root"), root_key, _name("Root"), root_key, 1)
    issuing = _certificate(_name("Issuing CA"), issuing_key, _name("Root"), root_key, 0x80)
    signer = _certificate(_name("Anna Muster"), signer_key, _name("Issuing CA"), issuing_key, 0x5D8C6312_46EC0F9F_3D514122)
    return signer, issuing, root


def _algorithm(chain: tuple[bytes, ...], digest: DigestAlgorithm) -> str:
    ec_key = isinstance(x509.load_der_x509_certificate(chain[0]).public_key(), ec.EllipticCurvePublicKey)
    return f"{digest.value}_{'ecdsa' if ec_key else 'rsa'}"


def _elements(der: bytes) -> list[bytes]:
    """The encoded attributes of a SET OF Attribute, in their order there."""
    return [child.dump() for child in cms.CMSAttributes.load(der)]


def test_tlv_integer_and_utc_time_are_asn1cryptos_encodings() -> None:
    for size in (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000):
        assert tlv(OCTET_STRING, b"x" * size) == core.OctetString(b"x" * size).dump()
    for value in (0, 1, 127, 128, 255, 256, 0x5D8C631246EC0F9F3D514122CBA40613507DB780, 2**159, -1, -129):
        assert integer(value) == core.Integer(value).dump()
    for when in (NOW, datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), NOW.astimezone(timezone(timedelta(hours=2)))):
        assert utc_time(when) == core.UTCTime(when).dump()
    with pytest.raises(ValueError):
        utc_time(datetime(2050, 1, 1, tzinfo=UTC))


def test_oids_and_attributes() -> None:
    assert oid("content_type") == cms.CMSAttributeType("content_type").dump()
    assert oid("tst_info") == cms.ContentType("tst_info").dump()
    assert oid("signed_data") == cms.ContentType("signed_data").dump()
    assert oid("0.4.0.1733.2.4") == core.ObjectIdentifier("0.4.0.1733.2.4").dump()
    digest = hashlib.sha256(b"document").digest()
    assert attribute("message_digest", tlv(OCTET_STRING, digest)) == \
        cms.CMSAttribute({"type": "message_digest", "values": [digest]}).dump()
    assert attribute("signing_time", utc_time(NOW)) == \
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": NOW})]}).dump()
    assert attribute("content_type", oid("data")) == cms.CMSAttribute({"type": "content_type", "values": ["data"]}).dump()


def test_the_attribute_set_is_in_der_order_whatever_order_it_gets() -> None:
    attrs = [attribute("content_type", oid("data")),
             attribute("message_digest", tlv(OCTET_STRING, bytes(32))),
             attribute("signing_time", utc_time(NOW)),
             attribute("1.3.6.1.4.1.99999.7", tlv(SEQUENCE, b"")),  # shorter, with a later OID (registered nowhere)
             attribute("message_digest", tlv(OCTET_STRING, b"\x01" * 200))]  # long form length: 0x30 0x81...
    expected = cms.CMSAttributes([cms.CMSAttribute.load(a) for a in attrs]).dump(force=True)  # asn1crypto sorts
    for order in (attrs, attrs[::-1], attrs[2:] + attrs[:2]):
        der = signed_attributes(order)
        assert der == expected
        assert _elements(der) == sorted(attrs)
    assert signed_attributes([]) == b"\x31\x00"


def test_signer_parts_are_asn1cryptos_encodings(chain: tuple[bytes, ...]) -> None:
    for digest in DigestAlgorithm:
        parts = signer_parts(chain, digest, _algorithm(chain, digest))
        signer = asn1_x509.Certificate.load(chain[0])
        assert parts.digest is digest
        assert parts.scheme is (SignatureScheme.ECDSA if "ecdsa" in _algorithm(chain, digest)
                                else SignatureScheme.RSA_PKCS1V15)
        digest_algorithm = algos.DigestAlgorithm({"algorithm": digest.value})
        assert parts.digest_algorithms == cms.DigestAlgorithms([digest_algorithm]).dump()
        assert parts.signature_algorithm == algos.SignedDigestAlgorithm(
            {"algorithm": _algorithm(chain, digest)}).dump()
        assert parts.signer_head == (core.Integer(1).dump() + cms.IssuerAndSerialNumber(
            {"issuer": signer.issuer, "serial_number": signer.serial_number}).dump() + digest_algorithm.dump())
        ess = tsp.SigningCertificateV2({"certs": [tsp.ESSCertIDv2({
            "cert_hash": hashlib.sha256(chain[0]).digest(),
            "issuer_serial": {"issuer": [asn1_x509.GeneralName({"directory_name": signer.issuer})],
                              "serial_number": signer.serial_number}})]})
        assert parts.signing_certificate_v2 == cms.CMSAttribute(
            {"type": "signing_certificate_v2", "values": [ess]}).dump(force=True)
        # the root is not sent; the others in DER order, as asn1crypto encodes a CertificateSet
        certificates = cms.CertificateSet([cms.CertificateChoices(
            name="certificate", value=asn1_x509.Certificate.load(der)) for der in chain[:2]])
        assert parts.certificates == b"\xa0" + certificates.dump(force=True)[1:]
        assert [c.chosen.dump() for c in cms.CertificateSet.load(b"\x31" + parts.certificates[1:])] == \
            sorted(chain[:2])


def test_signer_parts_are_cached_and_need_a_certificate(chain: tuple[bytes, ...]) -> None:
    algorithm = _algorithm(chain, DigestAlgorithm.SHA256)
    assert signer_parts(chain, DigestAlgorithm.SHA256, algorithm) is \
        signer_parts(tuple(bytes(c) for c in chain), DigestAlgorithm.SHA256, algorithm)
    assert signer_parts.cache_info().maxsize  # bounded
    with pytest.raises(SiegelError) as caught:
        signer_parts((), DigestAlgorithm.SHA256, algorithm)
    assert caught.value.code is Code.KEY_NOT_FOUND
    alone = signer_parts(chain[:1], DigestAlgorithm.SHA256, algorithm)  # no issuers given: the signer alone
    assert alone.certificates == cms_parts.tlv(0xA0, chain[0])
    root_only = signer_parts(chain[2:], DigestAlgorithm.SHA256, algorithm)  # a self-signed signer is still sent
    assert root_only.certificates == cms_parts.tlv(0xA0, chain[2])


def _asn1crypto_content_info(chain: tuple[bytes, ...], digest: DigestAlgorithm, signed: list[bytes],
                             signature: bytes, unsigned: list[bytes], content: bytes | None,
                             content_type: str, version: str, with_certificates: bool) -> cms.ContentInfo:
    """The same SignedData, built the ordinary way."""
    signer = asn1_x509.Certificate.load(chain[0])
    info = {
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": {"issuer": signer.issuer,
                                                                  "serial_number": signer.serial_number}}),
        "digest_algorithm": {"algorithm": digest.value},
        "signed_attrs": cms.CMSAttributes([cms.CMSAttribute.load(a) for a in signed]),
        "signature_algorithm": {"algorithm": _algorithm(chain, digest)},
        "signature": signature,
    }
    if unsigned:
        info["unsigned_attrs"] = cms.CMSAttributes([cms.CMSAttribute.load(a) for a in unsigned])
    encap: dict[str, object] = {"content_type": content_type}
    if content is not None:
        encap["content"] = content if content_type == "data" else core.ParsableOctetString(content)
    data: dict[str, object] = {
        "version": version,
        "digest_algorithms": [{"algorithm": digest.value}],
        "encap_content_info": encap,
        "signer_infos": [info],
    }
    if with_certificates:
        data["certificates"] = [asn1_x509.Certificate.load(der) for der in chain[:2]]
    return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(data)})


@pytest.mark.parametrize("content", [None, b"", b"Rahmenvertrag\n" * 40], ids=["detached", "empty", "enveloping"])
def test_signed_data_is_asn1cryptos_encoding(chain: tuple[bytes, ...], content: bytes | None) -> None:
    digest = DigestAlgorithm.SHA384
    parts = signer_parts(chain, digest, _algorithm(chain, digest))
    signed = [attribute("content_type", oid("data")),
              attribute("message_digest", tlv(OCTET_STRING, hashlib.sha384(content or b"").digest())),
              attribute("signing_time", utc_time(NOW)), parts.signing_certificate_v2]
    signature = bytes(range(71))
    der = signed_data(parts, 1, "data", signer_info(parts, signed_attributes(signed), signature),
                      encap_content=content)
    expected = _asn1crypto_content_info(chain, digest, signed, signature, [], content, "data", "v1", True)
    assert der == expected.dump(force=True)
    assert cms.ContentInfo.load(der).dump(force=True) == der  # parsed and re-encoded: the same bytes
    parsed = cms.ContentInfo.load(der)["content"]
    assert parsed["encap_content_info"]["content"].native == content
    assert parsed["signer_infos"][0]["signed_attrs"].dump() == b"\xa0" + signed_attributes(signed)[1:]

    # with an unsigned attribute (a token of its own) and without certificates, as a TSA answers cert_req false
    tst_info = tsp.TSTInfo({"version": "v1", "policy": "1.3.6.1.4.1.99999.1", "serial_number": 7,
                            "message_imprint": {"hash_algorithm": {"algorithm": "sha384"},
                                                "hashed_message": hashlib.sha384(signature).digest()},
                            "gen_time": NOW}).dump()
    token = signed_data(parts, 3, "tst_info", signer_info(parts, signed_attributes(signed), signature),
                        encap_content=tst_info, with_certificates=False)
    assert token == _asn1crypto_content_info(chain, digest, signed, signature, [], tst_info, "tst_info", "v3",
                                             False).dump(force=True)
    unsigned = [attribute("signature_time_stamp_token", token)]
    der = signed_data(parts, 1, "data", signer_info(parts, signed_attributes(signed), signature,
                                                    signed_attributes(unsigned)), encap_content=content)
    # (asn1crypto's forced re-encoding takes exponential time in the nesting depth: not for a token in a token)
    expected = _asn1crypto_content_info(chain, digest, signed, signature, unsigned, content, "data", "v1", True)
    assert der == expected.dump()
    stamp = cms.ContentInfo.load(der)["content"]["signer_infos"][0]["unsigned_attrs"][0]
    assert stamp["type"].native == "signature_time_stamp_token" and stamp["values"][0].dump() == token
