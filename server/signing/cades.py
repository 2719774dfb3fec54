"""CAdES (ETSI EN 319 122) baseline signatures, B-B and B-T, detached or enveloping.

pyHanko builds the CMS (content-type, message-digest, signing-time, signing-certificate-v2; the
signature-time-stamp for B-T); its :class:`~pyhanko.sign.signers.pdf_cms.Signer` is fed by
:class:`KeySourceSigner`, so the signed attributes are hashed here and only that digest goes to the
key source (hash → sign → assemble). Timestamps come from our RFC 3161 client (ordered TSAs,
failover, every token checked) through :class:`ClientTimeStamper`.

pyHanko's API is asyncio; :func:`sign_cades` runs it to completion and belongs off the reactor
thread (the key source blocks).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from enum import StrEnum

from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from adapters.timestamp.client import TimestampClient
from server.errors import Code, SiegelError
from server.signing.keysource import DigestAlgorithm, KeySource, SignatureScheme


class Level(StrEnum):
    """ETSI baseline levels this engine produces."""

    B_B = "B-B"
    B_T = "B-T"


class Packaging(StrEnum):
    DETACHED = "detached"  # the SignedData without the content
    ENVELOPING = "enveloping"  # the content inside the SignedData


@dataclass(frozen=True)
class SigningKey:
    """A key of a key source and its certificate chain (DER, own first)."""

    source: KeySource
    label: str
    chain: tuple[bytes, ...]


class KeySourceSigner(Signer):
    """pyHanko's signer over a :class:`KeySource`: RSA PKCS#1 v1.5 or ECDSA, the hash chosen by the caller."""

    def __init__(self, key: SigningKey, digest: DigestAlgorithm) -> None:
        if not key.chain:
            raise SiegelError(Code.KEY_NOT_FOUND, f"key {key.label!r} has no certificate to sign with")
        certs = [asn1_x509.Certificate.load(der) for der in key.chain]
        public = x509.load_der_x509_certificate(key.chain[0]).public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            self._scheme, mechanism = SignatureScheme.ECDSA, f"{digest.value}_ecdsa"
        elif isinstance(public, rsa.RSAPublicKey):
            self._scheme, mechanism = SignatureScheme.RSA_PKCS1V15, f"{digest.value}_rsa"
        else:
            raise SiegelError(Code.NOT_SUPPORTED, f"key {key.label!r} is neither RSA nor EC")
        self._key = key
        self._digest = digest
        super().__init__(signing_cert=certs[0], cert_registry=SimpleCertificateStore.from_certs(certs[1:]),
                         signature_mechanism=algos.SignedDigestAlgorithm({"algorithm": mechanism}),
                         embed_roots=False)

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        digest = DigestAlgorithm.parse(digest_algorithm)
        if dry_run:
            return bytes(512)  # room for an RSA-4096 or ECDSA value; only size estimates use it
        hashed = hashlib.new(digest.value, data).digest()
        return await asyncio.to_thread(self._key.source.sign_digest, self._key.label, hashed, digest, self._scheme)


class ClientTimeStamper(TimeStamper):
    """pyHanko's timestamper over our RFC 3161 client: its tokens are checked before they are embedded."""

    def __init__(self, client: TimestampClient) -> None:
        super().__init__(include_nonce=True)
        self._client = client

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> cms.ContentInfo:
        token = await asyncio.to_thread(self._client.timestamp, message_digest, DigestAlgorithm.parse(md_algorithm))
        return cms.ContentInfo.load(token.token)


def sign_cades(key: SigningKey, *, content: bytes | None = None, content_digest: bytes | None = None,
               digest: DigestAlgorithm = DigestAlgorithm.SHA256, level: Level = Level.B_B,
               packaging: Packaging = Packaging.DETACHED, timestamps: TimestampClient | None = None) -> bytes:
    """A DER CMS ContentInfo signing ``content``, or (detached only) the given ``content_digest``."""
    if (content is None) == (content_digest is None):
        raise SiegelError(Code.BAD_REQUEST, "sign either the content or its digest")
    if content_digest is not None:
        if packaging is not Packaging.DETACHED:
            raise SiegelError(Code.BAD_REQUEST, "a signature over a digest only is detached: the content is not here")
        if len(content_digest) != digest.size:
            raise SiegelError(Code.BAD_REQUEST, f"a {digest.value} digest has {digest.size} bytes, "
                                                f"not {len(content_digest)}")
    if level is Level.B_T and timestamps is None:
        raise SiegelError(Code.CONFIG, "B-T needs a time-stamping authority (setting tsa.clients)")
    signer = KeySourceSigner(key, digest)
    stamper = ClientTimeStamper(timestamps) if level is Level.B_T and timestamps is not None else None

    async def run() -> cms.ContentInfo:
        if content_digest is not None:
            return await signer.async_sign(content_digest, digest.value, timestamper=stamper, is_pdf_sig=False)
        assert content is not None
        return await signer.async_sign_general_data(content, digest.value, detached=packaging is Packaging.DETACHED,
                                                    use_cades=True, timestamper=stamper)

    return bytes(asyncio.run(run()).dump())
