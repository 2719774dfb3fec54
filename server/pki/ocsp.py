"""The RFC 6960 OCSP responder of the internal CAs.

A request names a certificate by CertID (hashes of its issuer's name and key, and its serial
number), with SHA-1, SHA-256, SHA-384 or SHA-512; the answer repeats the CertID in the request's
algorithm. Certificates of the issuing CA are answered by the delegated OCSP signer (its key in the
HSM, its certificate with id-pkix-ocsp-nocheck); those of the root CA (the issuing CA's own) by the
root CA key itself, as a relying party must find the answer signed by the issuer or its delegate.

Answers: good, revoked (time and reason) or unknown (a serial the CA never issued); unauthorized
for an issuer that is not ours; malformedRequest for anything that does not parse; internalError
when the database or the HSM fails. A nonce in the request is echoed. Answers are not audited: they
change nothing, and relying parties ask often.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp
from sqlalchemy.exc import SQLAlchemyError

from server.config import PkiSettings
from server.errors import SiegelError
from server.pki.ca import ISSUING, ROOT, CertificateAuthorityService
from server.pki.keystore import KeyStore, PrivateKeyFactory
from server.pki.profiles import signature_hash

log = logging.getLogger("siegel.ocsp")

CERT_ID_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


@dataclass(frozen=True)
class OcspReply:
    """The DER OCSPResponse, and why it is not a successful one (None when it is)."""

    der: bytes
    problem: str | None = None


@dataclass(frozen=True)
class _Responder:
    """Who signs the answers about one CA's certificates."""

    key_label: str
    certificate: x509.Certificate
    private_key: CertificateIssuerPrivateKeyTypes


@dataclass(frozen=True)
class _Issuer:
    """One of our CAs as CertIDs name it: hashes of its subject and its public key bits, by algorithm."""

    name: str
    subject_der: bytes
    key_bits: bytes

    def matches(self, algorithm: str, name_hash: bytes, key_hash: bytes) -> bool:
        return (hashlib.new(algorithm, self.subject_der).digest() == name_hash
                and hashlib.new(algorithm, self.key_bits).digest() == key_hash)


def _issuer(name: str, cert: x509.Certificate) -> _Issuer:
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    bits = asn1_keys.PublicKeyInfo.load(spki)["public_key"].contents[1:]  # without the unused-bits octet
    return _Issuer(name, cert.subject.public_bytes(), bits)


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)


class OcspResponder:
    """Answers OCSPRequest DER with OCSPResponse DER."""

    def __init__(self, ca: CertificateAuthorityService, keys: Callable[[], KeyStore],
                 private_key: PrivateKeyFactory, settings: PkiSettings) -> None:
        self._ca = ca
        self._keys = keys
        self._private_key = private_key
        self._validity = timedelta(minutes=settings.ocsp_validity_minutes)
        self._lock = threading.Lock()
        self._issuers: list[_Issuer] = []
        self._responders: dict[str, _Responder] = {}

    def respond(self, der: bytes) -> OcspReply:
        try:
            request = ocsp.load_der_ocsp_request(der)
            algorithm = request.hash_algorithm.name
            name_hash, key_hash, serial = request.issuer_name_hash, request.issuer_key_hash, request.serial_number
            nonce = self._nonce(request)
        except (ValueError, UnsupportedAlgorithm) as exc:
            message = f"not a DER OCSPRequest for one certificate: {exc}"
            return OcspReply(unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST), message)
        if serial < 0:  # RFC 5280 4.1.2.2: serial numbers are positive; no response can name a negative one
            return OcspReply(unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST),
                             f"the CertID serial number {serial} is negative")
        if algorithm not in CERT_ID_HASHES:
            return OcspReply(unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST),
                             f"CertID hash {algorithm} is not accepted (SHA-1, SHA-256, SHA-384, SHA-512 are)")
        try:
            issuer = self._find_issuer(algorithm, name_hash, key_hash)
            if issuer is None:
                return OcspReply(unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED),
                                 "the CertID names an issuer that is not one of this server's CAs")
            return OcspReply(self._answer(issuer, algorithm, name_hash, key_hash, serial, nonce))
        except SiegelError as exc:
            problem, code = exc.message, exc.code.value
        except SQLAlchemyError as exc:
            problem, code = f"database error: {exc.__class__.__name__}", "database"
        log.error("OCSP response not signed", extra={"fields": {"error": problem, "code": code}})
        return OcspReply(unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR), problem)

    @staticmethod
    def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
        try:
            return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            return None

    def _find_issuer(self, algorithm: str, name_hash: bytes, key_hash: bytes) -> _Issuer | None:
        """The CA the CertID names; the CA certificates are read again once when none matches."""
        for reload in (False, True):
            with self._lock:
                if reload:
                    self._issuers = [_issuer(name, cert) for name, cert in self._ca.ca_certificates().items()]
                found = next((i for i in self._issuers if i.matches(algorithm, name_hash, key_hash)), None)
            if found is not None:
                return found
        return None

    def _responder(self, issuer: str) -> _Responder:
        """The delegated OCSP signer for the issuing CA, the root CA's own key for the root CA."""
        if issuer == ROOT:
            label, der = self._ca.ca_key(ROOT)
        else:
            label, chain = self._ca.service_credentials("ocsp")
            der = chain[0]
        with self._lock:
            cached = self._responders.get(issuer)
            if cached is not None and cached.key_label == label and cached.certificate.public_bytes(Encoding.DER) == der:
                return cached
        responder = _Responder(label, x509.load_der_x509_certificate(der), self._private_key(self._keys(), label))
        with self._lock:
            self._responders[issuer] = responder
        return responder

    def _answer(self, issuer: _Issuer, algorithm: str, name_hash: bytes, key_hash: bytes, serial: int,
                nonce: bytes | None) -> bytes:
        status = self._ca.status(issuer.name, serial)
        responder = self._responder(issuer.name)
        now = datetime.now(timezone.utc).replace(microsecond=0)
        cert_status = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
                       "unknown": ocsp.OCSPCertStatus.UNKNOWN}[status.state]
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=name_hash, issuer_key_hash=key_hash, serial_number=serial,
            algorithm=CERT_ID_HASHES[algorithm](), cert_status=cert_status, this_update=now,
            next_update=now + self._validity, revocation_time=status.revoked_at,
            revocation_reason=status.reason if status.reason is not x509.ReasonFlags.unspecified else None)
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, responder.certificate)
        if issuer.name == ISSUING:  # a delegated signer shows its certificate; the root is known to the client
            builder = builder.certificates([responder.certificate])
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        response = builder.sign(responder.private_key, signature_hash(responder.certificate.public_key()))
        return response.public_bytes(Encoding.DER)
