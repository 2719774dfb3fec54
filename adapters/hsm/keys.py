"""HSM keys as ``cryptography`` private keys, so its X.509, CRL and OCSP builders sign in the HSM.

``CertificateBuilder.sign(hsm_private_key(hsm, "ca"), hashes.SHA256())`` hashes the to-be-signed
data, hands it to :meth:`sign`, which sends only the digest to the token. The private numbers and
bytes stay where they are: asking for them raises.
"""

from __future__ import annotations

from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from adapters.hsm.pkcs11 import Pkcs11Hsm
from server.errors import Code, SiegelError
from server.signing.keysource import DigestAlgorithm, SignatureScheme


def hsm_private_key(hsm: Pkcs11Hsm, label: str) -> HsmRsaPrivateKey | HsmEcPrivateKey:
    """The key pair ``label`` of ``hsm`` as an RSA or EC private key object."""
    public = hsm.public_key(label)
    if isinstance(public, rsa.RSAPublicKey):
        return HsmRsaPrivateKey(hsm, label, public)
    return HsmEcPrivateKey(hsm, label, public)


class HsmPrivateKey:
    """The part RSA and EC keys share: the HSM, the label, the real public key."""

    def __init__(self, hsm: Pkcs11Hsm, label: str, public_key: Any) -> None:
        self.hsm = hsm
        self.label = label
        self._public_key = public_key

    @property
    def key_size(self) -> int:
        return int(self._public_key.key_size)

    def _sign(self, data: bytes, algorithm: hashes.HashAlgorithm | utils.Prehashed,
              scheme: SignatureScheme) -> bytes:
        if isinstance(algorithm, utils.Prehashed):
            digest = data
            digest_algorithm = DigestAlgorithm.from_hash(algorithm._algorithm)  # no public accessor in cryptography 50
        else:
            digest_algorithm = DigestAlgorithm.from_hash(algorithm)
            h = hashes.Hash(digest_algorithm.hash())
            h.update(data)
            digest = h.finalize()
        return self.hsm.sign_digest(self.label, digest, digest_algorithm, scheme)

    def _stays_in_hsm(self, *_: Any) -> NoReturn:
        raise SiegelError(Code.NOT_SUPPORTED, f"the private key {self.label!r} stays in the HSM; "
                                              "it cannot be exported, decrypt or derive")

    private_numbers = private_bytes = _stays_in_hsm

    def __copy__(self) -> HsmPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> HsmPrivateKey:
        return self


class HsmRsaPrivateKey(HsmPrivateKey, rsa.RSAPrivateKey):
    """An RSA key in the HSM; PKCS#1 v1.5 or PSS (MGF1 with the same hash, salt of digest length)."""

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public_key  # type: ignore[no-any-return]

    def sign(self, data: bytes, padding: padding.AsymmetricPadding,
             algorithm: hashes.HashAlgorithm | utils.Prehashed) -> bytes:
        return self._sign(data, algorithm, _rsa_scheme(padding, algorithm))

    decrypt = HsmPrivateKey._stays_in_hsm


class HsmEcPrivateKey(HsmPrivateKey, ec.EllipticCurvePrivateKey):
    """An EC key in the HSM; ECDSA with a DER-encoded result."""

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key  # type: ignore[no-any-return]

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public_key.curve  # type: ignore[no-any-return]

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise SiegelError(Code.NOT_SUPPORTED, f"EC key {self.label!r} signs with ECDSA only")
        return self._sign(data, signature_algorithm.algorithm, SignatureScheme.ECDSA)

    exchange = HsmPrivateKey._stays_in_hsm


def _rsa_scheme(pad: padding.AsymmetricPadding, algorithm: hashes.HashAlgorithm | utils.Prehashed) -> SignatureScheme:
    if isinstance(pad, padding.PKCS1v15):
        return SignatureScheme.RSA_PKCS1V15
    if isinstance(pad, padding.PSS):
        hash_type = type(algorithm._algorithm if isinstance(algorithm, utils.Prehashed) else algorithm)
        digest_size = hash_type().digest_size
        mgf = pad.mgf  # MGF1 and PSS keep their hash and salt length private in cryptography 50
        same_hash = isinstance(mgf, padding.MGF1) and type(mgf._algorithm) is hash_type
        if same_hash and pad._salt_length in (padding.PSS.DIGEST_LENGTH, digest_size):
            return SignatureScheme.RSA_PSS
        raise SiegelError(Code.NOT_SUPPORTED, "RSA-PSS in the HSM needs MGF1 with the signature's hash and a salt "
                                              "as long as the digest")
    raise SiegelError(Code.NOT_SUPPORTED, f"RSA padding {pad.name} is not supported for signing")

