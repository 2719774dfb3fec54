"""TLS client certificates mapped to accounts.

Under ``siegel serve --tls`` the server asks every client for a certificate (optional: a client without
one goes on to HTTP Basic or WS-Security). OpenSSL verifies a presented certificate against the internal
CA (root and issuing) and the CAs in ``auth.client_ca_file``; a certificate that does not verify ends the
handshake. ``siegel clientcert map CERT.pem USER`` stores the certificate's SHA-256 fingerprint (with its
issuer and serial, for the operator and the revocation check) → account; ``unmap`` and ``list``.

A request whose verified certificate is mapped authenticates as that account when it carries no other
credentials (an Authorization header or a wsse:Security header are checked instead: explicit credentials
win), provided the account is enabled, the certificate has not expired, and - for a certificate of the
internal CA - the CA's records say "good" (revoked or unknown there: refused). For certificates of an
outside CA (``auth.client_ca_file``) Siegel has no revocation state: unmap them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from server.audit import AuditLog
from server.db.models import ClientCertificate, User
from server.errors import Code, SiegelError
from server.identity.users import Principal, Role, utc
from server.pki.ca import CertificateAuthorityService

log = logging.getLogger("siegel.clientcert")
CA_CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class MappedCertificate:
    fingerprint: str
    user: str
    subject: str
    issuer: str
    serial: str
    not_after: datetime
    created_at: datetime


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def load_certificate(data: bytes) -> x509.Certificate:
    """One certificate, PEM or DER."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise SiegelError(Code.BAD_REQUEST, "not an X.509 certificate (PEM or DER)") from None


def normalize_fingerprint(text: str) -> str:
    value = text.replace(":", "").strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise SiegelError(Code.BAD_REQUEST, f"{text!r} is not a SHA-256 fingerprint (64 hex digits)")
    return value


class ClientCertificateService:
    def __init__(self, engine: object, audit: AuditLog, ca: CertificateAuthorityService) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)  # type: ignore[call-overload]
        self._audit = audit
        self._ca = ca
        self._cas: tuple[float, dict[str, x509.Certificate]] = (0.0, {})
        self._lock = threading.Lock()

    # --- administration -----------------------------------------------------------------------------

    def map(self, data: bytes, user_name: str, actor: str = "cli") -> MappedCertificate:
        cert = load_certificate(data)
        der = cert.public_bytes(Encoding.DER)
        fp = fingerprint(der)
        now = datetime.now(timezone.utc)
        if cert.not_valid_after_utc <= now:
            raise SiegelError(Code.BAD_REQUEST, "the certificate has expired")
        row = ClientCertificate(fingerprint=fp, issuer=cert.issuer.rfc4514_string()[:1000],
                                serial=format(cert.serial_number, "x"), subject=cert.subject.rfc4514_string()[:1000],
                                not_after=cert.not_valid_after_utc, created_at=now)
        try:
            with self._sessions.begin() as session:
                user = session.execute(select(User).where(User.name == user_name)).scalar_one_or_none()
                if user is None:
                    raise SiegelError(Code.NOT_FOUND, f"no user named {user_name!r}")
                if user.disabled:
                    raise SiegelError(Code.BAD_REQUEST, f"user {user_name!r} is disabled")
                row.user_id = user.id
                session.add(row)
                session.flush()
                self._audit.append_in(session, actor, "clientcert.map", fp, user=user_name, subject=row.subject,
                                      issuer=row.issuer, serial=row.serial)
        except IntegrityError:
            raise SiegelError(Code.CONFLICT, f"the certificate {fp} is mapped already (unmap it first)") from None
        return MappedCertificate(fp, user_name, row.subject, row.issuer, row.serial, cert.not_valid_after_utc, now)

    def unmap(self, fingerprint_or_cert: str | bytes, actor: str = "cli") -> str:
        if isinstance(fingerprint_or_cert, bytes):
            fp = fingerprint(load_certificate(fingerprint_or_cert).public_bytes(Encoding.DER))
        else:
            fp = normalize_fingerprint(fingerprint_or_cert)
        with self._sessions.begin() as session:
            row = session.get(ClientCertificate, fp)
            if row is None:
                raise SiegelError(Code.NOT_FOUND, f"no client certificate with the fingerprint {fp} is mapped")
            session.delete(row)
            self._audit.append_in(session, actor, "clientcert.unmap", fp)
        return fp

    def list(self) -> list[MappedCertificate]:
        with self._sessions() as session:
            rows = session.execute(select(ClientCertificate, User.name).join(User, ClientCertificate.user_id == User.id)
                                   .order_by(User.name, ClientCertificate.created_at)).all()
        return [MappedCertificate(c.fingerprint, name, c.subject, c.issuer, c.serial, utc(c.not_after),  # type: ignore[arg-type]
                                  utc(c.created_at)) for c, name in rows]  # type: ignore[arg-type]

    # --- authentication ----------------------------------------------------------------------------

    def authenticate(self, der: bytes) -> Principal | None:
        """The account a (TLS-verified) client certificate is mapped to, or None: not mapped, expired,
        account disabled, or revoked / unknown at the internal CA that issued it. Off the reactor thread."""
        fp = fingerprint(der)
        with self._sessions() as session:
            row = session.execute(select(ClientCertificate, User).join(User, ClientCertificate.user_id == User.id)
                                  .where(ClientCertificate.fingerprint == fp)).first()
        if row is None:
            log.info("client certificate %s is not mapped to an account", fp)
            return None
        user = row[1]
        cert = x509.load_der_x509_certificate(der)
        now = datetime.now(timezone.utc)
        if user.disabled or not (cert.not_valid_before_utc <= now < cert.not_valid_after_utc):
            return None
        for name, ca_cert in self._ca_certificates().items():
            if cert.issuer != ca_cert.subject:
                continue
            try:
                cert.verify_directly_issued_by(ca_cert)
            except (ValueError, TypeError, InvalidSignature):
                log.warning("client certificate %s names the internal CA %s but is not issued by it", fp, name)
                return None
            state = self._ca.status(name, cert.serial_number).state
            if state != "good":
                log.warning("client certificate %s of %s is %s at the internal CA", fp, user.name, state)
                return None
            break
        return Principal(user.id, user.name, Role(user.role))

    def _ca_certificates(self) -> dict[str, x509.Certificate]:
        mono = time.monotonic()
        with self._lock:
            if self._cas[0] > mono:
                return self._cas[1]
        cas = self._ca.ca_certificates()
        with self._lock:
            self._cas = (mono + CA_CACHE_SECONDS, cas)
        return cas
