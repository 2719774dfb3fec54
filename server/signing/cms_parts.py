"""CMS SignedData (RFC 5652) assembled from precomputed DER parts, for the CAdES engine and the TSA.

asn1crypto re-encodes every value it wraps (the certificates, the issuer Name of a
signing-certificate-v2), which cost a CAdES signature or a timestamp token many times what the
HSM's signature costs. What depends only on the signer's certificate chain and digest algorithm is
encoded once (:func:`signer_parts`, cached); per signature only the attributes that change and the
signature value are put around those bytes with :func:`tlv`.

The output is DER: the elements of every SET OF (attributes, certificates, digest algorithms) are
sorted by their encoding, so that a verifier that re-encodes (asn1crypto, BouncyCastle) hashes the
same bytes.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509

from server.errors import Code, SiegelError
from server.signing.keysource import DigestAlgorithm, SignatureScheme, scheme_of

INTEGER, OCTET_STRING, UTC_TIME = 0x02, 0x04, 0x17
SEQUENCE, SET = 0x30, 0x31
CONTEXT_0, CONTEXT_1, CONTEXT_4 = 0xA0, 0xA1, 0xA4  # constructed [0], [1], [4]


def tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length, content."""
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def integer(value: int) -> bytes:
    """A DER INTEGER (two's complement, minimal)."""
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def utc_time(when: datetime) -> bytes:
    """A DER UTCTime (YYMMDDHHMMSSZ, whole seconds; 1950 to 2049, as RFC 5652 11.3 wants for signing-time)."""
    when = when.astimezone(UTC)
    if not 1950 <= when.year < 2050:
        raise ValueError(f"UTCTime cannot express the year {when.year}")
    return tlv(UTC_TIME, b"%02d%02d%02d%02d%02d%02dZ" % (when.year % 100, when.month, when.day, when.hour,
                                                         when.minute, when.second))


@functools.lru_cache(maxsize=256)
def oid(name: str) -> bytes:
    """The DER OBJECT IDENTIFIER of a CMS attribute type or content type: asn1crypto's name or a dotted OID."""
    try:
        return cms.CMSAttributeType(name).dump()
    except ValueError:
        return cms.ContentType(name).dump()


def attribute(type_oid_name: str, value_der: bytes) -> bytes:
    """An Attribute with one value: SEQUENCE { attrType, SET { value } }."""
    return tlv(SEQUENCE, oid(type_oid_name) + tlv(SET, value_der))


def signed_attributes(attrs: Iterable[bytes]) -> bytes:
    """The SET OF Attribute (DER: its elements sorted by their encoding). The SET is what gets hashed
    for the signature; :func:`signer_info` puts it in as [0] (signed) or [1] (unsigned) IMPLICIT."""
    return tlv(SET, b"".join(sorted(attrs)))


@dataclass(frozen=True)
class SignerParts:
    """The DER of everything a SignedData says about its signer's certificate chain and algorithms."""

    scheme: SignatureScheme
    digest: DigestAlgorithm
    signature_algorithm: bytes  # SignerInfo's signatureAlgorithm
    digest_algorithms: bytes  # SignedData's SET OF DigestAlgorithmIdentifier
    signer_head: bytes  # SignerInfo's version (1), sid (IssuerAndSerialNumber) and digestAlgorithm
    certificates: bytes  # [0] IMPLICIT CertificateSet: the chain without a self-signed root, sorted
    signing_certificate_v2: bytes  # the signed attribute (ESSCertIDv2: SHA-256 hash, IssuerSerial)


def _name_fields(certificate: bytes) -> tuple[bytes, bytes, bytes]:
    """The encoded serialNumber, issuer and subject of a certificate, as they are in its DER."""
    tbs = asn1_x509.Certificate.load(certificate)["tbs_certificate"]
    return tbs["serial_number"].dump(), tbs["issuer"].dump(), tbs["subject"].dump()


@functools.lru_cache(maxsize=128)
def signer_parts(chain: tuple[bytes, ...], digest: DigestAlgorithm, signature_algorithm: str) -> SignerParts:
    """The parts for ``chain`` (DER, the signer's certificate first) signing with ``digest``;
    ``signature_algorithm`` is asn1crypto's name of the SignedDigestAlgorithm (``sha256_ecdsa``,
    ``sha256_rsa``, ``rsassa_pkcs1v15``...). Cached per chain and algorithms."""
    if not chain:
        raise SiegelError(Code.KEY_NOT_FOUND, "the key has no certificate to sign with")
    serial, issuer, _ = _name_fields(chain[0])
    digest_algorithm = algos.DigestAlgorithm({"algorithm": digest.value}).dump()
    embedded = [chain[0]] + [der for der in chain[1:] if _name_fields(der)[1] != _name_fields(der)[2]]
    # ESSCertIDv2 { certHash (hashAlgorithm SHA-256 is the DEFAULT, so absent), IssuerSerial {
    #   GeneralNames { [4] directoryName }, serialNumber } }
    ess_cert_id = tlv(SEQUENCE, tlv(OCTET_STRING, hashlib.sha256(chain[0]).digest())
                      + tlv(SEQUENCE, tlv(SEQUENCE, tlv(CONTEXT_4, issuer)) + serial))
    return SignerParts(
        scheme=scheme_of(chain[0]),
        digest=digest,
        signature_algorithm=algos.SignedDigestAlgorithm({"algorithm": signature_algorithm}).dump(),
        digest_algorithms=tlv(SET, digest_algorithm),
        signer_head=integer(1) + tlv(SEQUENCE, issuer + serial) + digest_algorithm,
        certificates=tlv(CONTEXT_0, b"".join(sorted(dict.fromkeys(embedded)))),
        signing_certificate_v2=attribute("signing_certificate_v2", tlv(SEQUENCE, tlv(SEQUENCE, ess_cert_id))),
    )


def _implicit(tag: int, element: bytes) -> bytes:
    """``element`` (a constructed DER element) with its tag replaced: an IMPLICIT [n]."""
    return bytes((tag,)) + element[1:]


def signer_info(parts: SignerParts, signed_attrs: bytes, signature: bytes, unsigned_attrs: bytes = b"") -> bytes:
    """The SignerInfo; ``signed_attrs`` and ``unsigned_attrs`` (none when empty) are SETs as
    :func:`signed_attributes` gives them."""
    return tlv(SEQUENCE, parts.signer_head + _implicit(CONTEXT_0, signed_attrs) + parts.signature_algorithm
               + tlv(OCTET_STRING, signature) + (_implicit(CONTEXT_1, unsigned_attrs) if unsigned_attrs else b""))


def signed_data(parts: SignerParts, version: int, content_type: str, signer_info: bytes, *,
                encap_content: bytes | None, with_certificates: bool = True) -> bytes:
    """The ContentInfo of a SignedData with one SignerInfo; ``content_type`` is the eContentType (an
    asn1crypto name or dotted OID), ``encap_content`` the eContent (None: detached)."""
    encap = oid(content_type) + (b"" if encap_content is None else tlv(CONTEXT_0, tlv(OCTET_STRING, encap_content)))
    body = (integer(version) + parts.digest_algorithms + tlv(SEQUENCE, encap)
            + (parts.certificates if with_certificates else b"") + tlv(SET, signer_info))
    return tlv(SEQUENCE, oid("signed_data") + tlv(CONTEXT_0, tlv(SEQUENCE, body)))
