"""CAdES (ETSI EN 319 122) baseline signatures, B-B and B-T, detached or enveloping.

Hash → sign → assemble: :func:`prepare_cades` builds the signed attributes (content-type,
message-digest, signing-time, signing-certificate-v2) with pyHanko; the digest of their DER
(:attr:`Prepared.to_be_signed`) is signed by a key source, ours or the caller's (two-step signing);
:func:`assemble_cades` embeds the value with pyHanko's ``ExternalSigner`` and adds, for B-T, the
signature-time-stamp from our RFC 3161 client (ordered TSAs, failover, every token checked) through
:class:`ClientTimeStamper`. :func:`sign_cades` is the three steps with a key source of ours.

pyHanko's API is asyncio; these functions run it to completion and belong off the reactor thread.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding
from pyhanko.sign.signers.pdf_cms import ExternalSigner
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from adapters.timestamp.client import TimestampClient
from server.errors import Code, SiegelError
from server.signing.keysource import DigestAlgorithm, KeySource, SignatureScheme
from server.signing.levels import Level, Packaging

LEVELS = (Level.B_B, Level.B_T)  # what this engine produces so far


@dataclass(frozen=True)
class SigningKey:
    """A key of a key source and its certificate chain (DER, own first)."""

    source: KeySource
    label: str
    chain: tuple[bytes, ...]


@dataclass(frozen=True)
class Prepared:
    """Step 1 done: the signed attributes for a signer's certificate; their digest is what gets signed."""

    signed_attrs: bytes  # DER of the CMS SignedAttributes (a SET)
    digest: DigestAlgorithm
    chain: tuple[bytes, ...]  # the signer's certificate first

    @property
    def to_be_signed(self) -> bytes:
        return hashlib.new(self.digest.value, self.signed_attrs).digest()

    @property
    def scheme(self) -> SignatureScheme:
        return _scheme_of(self.chain[0])


def _scheme_of(certificate: bytes) -> SignatureScheme:
    public = x509.load_der_x509_certificate(certificate).public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        return SignatureScheme.ECDSA
    if isinstance(public, rsa.RSAPublicKey):
        return SignatureScheme.RSA_PKCS1V15
    raise SiegelError(Code.NOT_SUPPORTED, "the signer's key is neither RSA nor EC")


def _signer(chain: tuple[bytes, ...], digest: DigestAlgorithm, value: bytes | None) -> ExternalSigner:
    """pyHanko's CMS builder for this chain, embedding a given signature value (None: a placeholder)."""
    if not chain:
        raise SiegelError(Code.KEY_NOT_FOUND, "the key has no certificate to sign with")
    ecdsa = _scheme_of(chain[0]) is SignatureScheme.ECDSA
    certs = [asn1_x509.Certificate.load(der) for der in chain]
    mechanism = algos.SignedDigestAlgorithm({"algorithm": f"{digest.value}_{'ecdsa' if ecdsa else 'rsa'}"})
    return ExternalSigner(certs[0], SimpleCertificateStore.from_certs(certs[1:]), signature_value=value,
                          signature_mechanism=mechanism, embed_roots=False)


def prepare_cades(chain: tuple[bytes, ...], content_digest: bytes, digest: DigestAlgorithm) -> Prepared:
    """Step 1: the signed attributes (content-type, message-digest, signing-time, signing-certificate-v2)."""
    if len(content_digest) != digest.size:
        raise SiegelError(Code.BAD_REQUEST, f"a {digest.value} digest has {digest.size} bytes, "
                                            f"not {len(content_digest)}")
    attrs = asyncio.run(_signer(chain, digest, None).signed_attrs(
        content_digest, digest.value, use_pades=True, is_pdf_sig=False, content_type="data"))
    return Prepared(bytes(attrs.dump()), digest, chain)


def check_signature_value(prepared: Prepared, value: bytes) -> None:
    """The value must be the signer certificate's signature over the signed attributes."""
    public = x509.load_der_x509_certificate(prepared.chain[0]).public_key()
    algorithm = prepared.digest.hash()
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(value, prepared.signed_attrs, ec.ECDSA(algorithm))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(value, prepared.signed_attrs, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise SiegelError(Code.BAD_REQUEST, "the signature value does not verify with the signer's certificate "
                                            "over the prepared attributes") from None


def assemble_cades(prepared: Prepared, value: bytes, *, level: Level = Level.B_B,
                   timestamps: TimestampClient | None = None, content: bytes | None = None) -> bytes:
    """Step 3: the CMS with the signature value (and, for B-T, a signature timestamp); ``content``
    inside for an enveloping signature."""
    _check_level(level, timestamps)
    stamper = ClientTimeStamper(timestamps) if level is Level.B_T and timestamps is not None else None
    encap = None if content is None else cms.ContentInfo({"content_type": "data", "content": content})
    signed = asyncio.run(_signer(prepared.chain, prepared.digest, value).async_sign_prescribed_attributes(
        prepared.digest.value, cms.CMSAttributes.load(prepared.signed_attrs), timestamper=stamper,
        encap_content_info=encap))
    return bytes(signed.dump())


def _check_level(level: Level, timestamps: TimestampClient | None) -> None:
    if level not in LEVELS:
        raise SiegelError(Code.NOT_SUPPORTED, f"CAdES {level} is not offered yet ({', '.join(LEVELS)} are)")
    if level is Level.B_T and timestamps is None:
        raise SiegelError(Code.CONFIG, "B-T needs a time-stamping authority (setting tsa.clients)")


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
    """A DER CMS ContentInfo signing ``content``, or (detached only) the given ``content_digest``:
    prepare, sign in the key source, assemble."""
    if (content is None) == (content_digest is None):
        raise SiegelError(Code.BAD_REQUEST, "sign either the content or its digest")
    if packaging is Packaging.ENVELOPED:
        raise SiegelError(Code.BAD_REQUEST, "a CMS signature is detached or enveloping, never enveloped")
    if content_digest is not None and packaging is not Packaging.DETACHED:
        raise SiegelError(Code.BAD_REQUEST, "a signature over a digest only is detached: the content is not here")
    _check_level(level, timestamps)
    data_digest = content_digest if content is None else hashlib.new(digest.value, content).digest()
    assert data_digest is not None
    prepared = prepare_cades(key.chain, data_digest, digest)
    value = key.source.sign_digest(key.label, prepared.to_be_signed, digest, prepared.scheme)
    return assemble_cades(prepared, value, level=level, timestamps=timestamps,
                          content=content if packaging is Packaging.ENVELOPING else None)
