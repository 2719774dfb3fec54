"""Signing for callers: their own key, the format engine, the timestamps, the audit entry."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from datetime import datetime, timedelta, timezone
from typing import Callable

from cryptography import x509
from sqlalchemy import Engine, delete
from sqlalchemy.orm import sessionmaker

from adapters.timestamp.client import TimestampClient, client_from_settings
from server.audit import AuditLog
from server.config import Settings
from server.pki.ca import ROOT, CertificateAuthorityService
from server.db.models import SigningState
from server.errors import Code, SiegelError
from server.signing.cades import (Prepared, SigningKey, assemble_cades, check_signature_value, prepare_cades,
                                  sign_cades)
from server.signing.keysource import DigestAlgorithm, KeySource
from server.signing.levels import Level, Packaging


PREPARED_FOR = timedelta(minutes=15)  # how long a prepared two-step signature waits for its value


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def check_chain(chain: tuple[bytes, ...]) -> None:
    """DER certificates, each issued by the next (the signer's first)."""
    if not chain:
        raise SiegelError(Code.BAD_REQUEST, "certificateChain: the signer's certificate is needed")
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError:
        raise SiegelError(Code.BAD_REQUEST, "certificateChain: every entry must be a DER X.509 certificate") from None
    for cert, issuer in zip(certs, certs[1:]):
        if cert.issuer != issuer.subject:
            raise SiegelError(Code.BAD_REQUEST, f"certificateChain: {cert.subject.rfc4514_string()} is not issued by "
                                                f"the next entry, {issuer.subject.rfc4514_string()}")


class SigningService:
    def __init__(self, settings: Settings, engine: Engine, ca: CertificateAuthorityService,
                 keys: Callable[[], KeySource], audit: AuditLog) -> None:
        self._settings = settings
        self._ca = ca
        self._keys = keys
        self._audit = audit
        self._timestamps: TimestampClient | None = None
        self._lock = threading.Lock()
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def _timestamp_client(self) -> TimestampClient:
        """The configured TSAs (``internal`` checked against our root), built on first use."""
        with self._lock:
            if self._timestamps is None:
                self._timestamps = client_from_settings(self._settings, [self._ca.ca_certificates()[ROOT]])
            return self._timestamps

    def prepare_cades(self, user_id: int, user_name: str, content_digest: bytes, digest: DigestAlgorithm,
                      level: Level, chain: tuple[bytes, ...]) -> tuple[str, Prepared, datetime]:
        """Two-step signing, step 1: the digest the caller's own key (card, remote service) signs; the
        state id to complete with, and when it expires."""
        check_chain(chain)
        prepared = prepare_cades(chain, content_digest, digest)
        state_id, expires = secrets.token_urlsafe(32), datetime.now(timezone.utc) + PREPARED_FOR
        state = {"signed_attrs": base64.b64encode(prepared.signed_attrs).decode(), "digest": digest.value,
                 "chain": [base64.b64encode(der).decode() for der in chain], "content_digest": content_digest.hex()}
        with self._sessions.begin() as session:
            session.add(SigningState(id=state_id, user_id=user_id, expires_at=expires, level=level.value,
                                     state=json.dumps(state)))
            self._audit.append_in(session, user_name, "sign.prepare", content_digest.hex(), level=level.value,
                                  digest_algorithm=digest.value, expires=expires.isoformat())
        return state_id, prepared, expires

    def complete_cades(self, user_id: int, user_name: str, state_id: str, value: bytes) -> bytes:
        """Two-step signing, step 3: the detached CAdES with the caller's signature value, once."""
        with self._sessions() as session:
            row = session.get(SigningState, state_id)
        if row is None or row.user_id != user_id:
            raise SiegelError(Code.NOT_FOUND, "no prepared signature with this stateId for this account "
                                              "(completed already, or never prepared)")
        if _utc(row.expires_at) <= datetime.now(timezone.utc):
            raise SiegelError(Code.CONFLICT, f"the prepared signature expired at {_utc(row.expires_at).isoformat()}; "
                                             "prepare it again")
        state = json.loads(row.state)
        prepared = Prepared(base64.b64decode(state["signed_attrs"]), DigestAlgorithm(state["digest"]),
                            tuple(base64.b64decode(der) for der in state["chain"]))
        check_signature_value(prepared, value)
        level = Level(row.level)
        signature = assemble_cades(prepared, value, level=level,
                                   timestamps=self._timestamp_client() if level is Level.B_T else None)
        with self._sessions.begin() as session:
            if session.execute(delete(SigningState).where(SigningState.id == state_id)).rowcount != 1:
                raise SiegelError(Code.CONFLICT, "this prepared signature was completed at the same moment already")
            self._audit.append_in(session, user_name, "sign.cades", state["content_digest"], level=level.value,
                                  digest_algorithm=prepared.digest.value, key_label="(outside Siegel)",
                                  packaging=Packaging.DETACHED.value, hash_only=True)
        return signature

    def remove_expired(self) -> None:
        """The scheduled job "signing-states": prepared signatures nobody completed go."""
        with self._sessions.begin() as session:
            session.execute(delete(SigningState).where(SigningState.expires_at <= datetime.now(timezone.utc)))

    def cades(self, user_id: int, user_name: str, level: Level, packaging: Packaging, *,
              content: bytes | None = None, content_digest: bytes | None = None,
              digest: DigestAlgorithm = DigestAlgorithm.SHA256) -> bytes:
        """A CAdES signature of ``content`` (or of its ``content_digest``) with the caller's own key;
        audited with the content's digest."""
        label = self._ca.signing_key_of(user_id)
        keys = self._keys()
        key = SigningKey(keys, label, tuple(keys.certificate_chain(label)))
        signature = sign_cades(key, content=content, content_digest=content_digest, digest=digest, level=level,
                               packaging=packaging, timestamps=self._timestamp_client() if level is Level.B_T else None)
        signed = content_digest if content is None else hashlib.new(digest.value, content).digest()
        assert signed is not None
        self._audit.append(user_name, "sign.cades", signed.hex(), digest_algorithm=digest.value, key_label=label,
                           level=level.value, packaging=packaging.value, hash_only=content is None)
        return signature
