"""Step 2 of hash → sign → assemble: the :class:`KeySource` protocol and the algorithms it speaks.

A key source only ever sees a digest. It answers with the signature value in the form X.509, CMS
and PAdES embed (PKCS#1 bytes for RSA, DER ``ECDSA-Sig-Value`` for ECDSA); XAdES wants ECDSA as raw
``r || s`` (RFC 4050), which :func:`ecdsa_der_to_raw` gives.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from server.errors import Code, SiegelError


class DigestAlgorithm(StrEnum):
    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"

    def hash(self) -> hashes.HashAlgorithm:
        """A fresh ``cryptography`` hash object of this algorithm."""
        return _HASHES[self]()

    @property
    def size(self) -> int:
        """Digest length in bytes."""
        return self.hash().digest_size

    @classmethod
    def parse(cls, value: str) -> DigestAlgorithm:
        """Ours for a name such as "sha256" (or a member); other names are refused."""
        try:
            return cls(value)
        except ValueError:
            raise SiegelError(Code.NOT_SUPPORTED, f"digest algorithm {value!r} is not supported "
                                                  f"(use one of {', '.join(cls)})") from None

    @classmethod
    def from_hash(cls, algorithm: hashes.HashAlgorithm) -> DigestAlgorithm:
        """Ours for a ``cryptography`` hash; SHA-1, MD5 and the rest are refused."""
        for digest, typ in _HASHES.items():
            if type(algorithm) is typ:
                return digest
        raise SiegelError(Code.NOT_SUPPORTED, f"digest algorithm {algorithm.name} is not supported "
                                              f"(use one of {', '.join(DigestAlgorithm)})")


_HASHES: dict[DigestAlgorithm, type[hashes.HashAlgorithm]] = {
    DigestAlgorithm.SHA256: hashes.SHA256,
    DigestAlgorithm.SHA384: hashes.SHA384,
    DigestAlgorithm.SHA512: hashes.SHA512,
}

# DER of DigestInfo up to the digest octets (RFC 8017 section 9.2, note 1).
_DIGEST_INFO_PREFIX: dict[DigestAlgorithm, bytes] = {
    DigestAlgorithm.SHA256: bytes.fromhex("3031300d060960864801650304020105000420"),
    DigestAlgorithm.SHA384: bytes.fromhex("3041300d060960864801650304020205000430"),
    DigestAlgorithm.SHA512: bytes.fromhex("3051300d060960864801650304020305000440"),
}


class SignatureScheme(StrEnum):
    """How a digest becomes a signature value."""

    RSA_PKCS1V15 = "rsa-pkcs1v15"
    RSA_PSS = "rsa-pss"  # MGF1 with the digest's hash, salt as long as the digest
    ECDSA = "ecdsa"


class KeyKind(StrEnum):
    """Key types Siegel generates; the values are those of the ``pki.key_algorithm`` setting."""

    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"


def check_digest(digest: bytes, digest_algorithm: DigestAlgorithm | str) -> DigestAlgorithm:
    """The algorithm, after refusing an unknown one or a digest whose length does not fit it."""
    algorithm = DigestAlgorithm.parse(digest_algorithm)
    if len(digest) != algorithm.size:
        raise SiegelError(Code.BAD_REQUEST, f"a {algorithm} digest has {algorithm.size} bytes, "
                                            f"this one has {len(digest)}")
    return algorithm


def digest_info(digest: bytes, digest_algorithm: DigestAlgorithm | str) -> bytes:
    """DER ``DigestInfo`` (algorithm identifier and digest), the input of RSA PKCS#1 v1.5 signing."""
    return _DIGEST_INFO_PREFIX[check_digest(digest, digest_algorithm)] + digest


def ecdsa_raw_to_der(raw: bytes) -> bytes:
    """``r || s`` (as PKCS#11 and XML signatures carry it) to DER ``ECDSA-Sig-Value``."""
    if not raw or len(raw) % 2:
        raise SiegelError(Code.BAD_REQUEST, f"a raw ECDSA signature has two halves of equal length, not {len(raw)} bytes")
    half = len(raw) // 2
    return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


def ecdsa_der_to_raw(der: bytes, curve: ec.EllipticCurve) -> bytes:
    """DER ``ECDSA-Sig-Value`` to ``r || s``, each half as long as the curve's field."""
    try:
        r, s = utils.decode_dss_signature(der)
    except ValueError:
        raise SiegelError(Code.BAD_REQUEST, "the ECDSA signature is not a DER ECDSA-Sig-Value") from None
    size = (curve.key_size + 7) // 8
    if r.bit_length() > curve.key_size or s.bit_length() > curve.key_size:
        raise SiegelError(Code.BAD_REQUEST, f"the ECDSA signature does not belong to curve {curve.name}")
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _public_key(certificate: bytes) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    public = x509.load_der_x509_certificate(certificate).public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise SiegelError(Code.NOT_SUPPORTED, "the signer's key is neither RSA nor EC")
    return public


def scheme_of(certificate: bytes) -> SignatureScheme:
    """How the key of ``certificate`` (DER) signs: ECDSA for EC keys, PKCS#1 v1.5 for RSA keys."""
    if isinstance(_public_key(certificate), ec.EllipticCurvePublicKey):
        return SignatureScheme.ECDSA
    return SignatureScheme.RSA_PKCS1V15


def verify_value(certificate: bytes, data: bytes, value: bytes, digest: DigestAlgorithm) -> bool:
    """Whether ``value``, in the form a key source gives it (DER for ECDSA, PKCS#1 v1.5 for RSA), is the
    signature of the key of ``certificate`` (DER) over ``data`` hashed with ``digest``."""
    public = _public_key(certificate)
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(value, data, ec.ECDSA(digest.hash()))
        else:
            public.verify(value, data, padding.PKCS1v15(), digest.hash())
    except (InvalidSignature, ValueError):
        return False
    return True


class KeySource(Protocol):
    """Turns a digest into a signature value with a named key (HSM, remote signing service, card)."""

    def sign_digest(self, key_label: str, digest: bytes, digest_algorithm: DigestAlgorithm | str,
                    scheme: SignatureScheme) -> bytes:
        """The signature value over ``digest``; ECDSA values are DER-encoded."""
        ...

    def certificate_chain(self, key_label: str) -> list[bytes]:
        """DER certificates of the key, its own first, then each issuer; empty when there are none."""
        ...
