"""Signing for callers: their own key, the format engine, the timestamps, the audit entry."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from collections.abc import Mapping
from typing import Any, Callable

from cryptography import x509
from sqlalchemy import Engine, delete
from sqlalchemy.orm import sessionmaker

from adapters.timestamp.client import TimestampClient, client_from_settings
from server import metrics
from server.audit import AuditLog
from server.config import Settings
from server.pki.ca import ROOT, CertificateAuthorityService
from server.db.batch import GroupCommit
from server.db.models import SigningState
from server.errors import Code, SiegelError
from server.signing.cades import SigningKey
from server.signing.engines import (VERIFY_PATH, Appearances, Signed, extend_signature, sign_asic_order,
                                    sign_document)
from server.signing.keys import SigningKeys
from server.signing.order import Format, SignOrder
from server.signing.two_step import PreparedOrder, complete_order, prepare_order
from server.signing.keysource import KeySource
from server.signing.levels import Level
from server.signing.validation_data import own_revocation_in_use
from server.validation.model import OwnRevocation


AuditItem = tuple[str, str, str, dict[str, object]]
"""An audit entry as :meth:`server.audit.AuditLog.append_many_in` takes it: actor, action, target, details."""
PREPARED_FOR = timedelta(minutes=15)  # how long a prepared two-step signature waits for its value
KEY_CACHE_SECONDS = 2.0  # how long a caller's key and chain are reused (a revocation or grant change takes this long)


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
                 keys: Callable[[], KeySource], audit: AuditLog, grants: SigningKeys,
                 trust_roots: Callable[[], tuple[bytes, ...]], own: OwnRevocation | None = None) -> None:
        """``own``: the instance's own revocation services, which B-LT asks in-process about its CAs'
        certificates (:func:`server.signing.validation_data.own_revocation_in_use`; None: fetched over HTTP)."""
        self._settings = settings
        self._ca = ca
        self._keys = keys
        self._audit = audit
        self._timestamps: TimestampClient | None = None
        self._grants = grants
        self._appearance_cache: Appearances | None = None
        self._key_cache: dict[tuple[int, str | None], tuple[float, SigningKey]] = {}
        self._trust_roots = trust_roots  # the verification trust anchors: B-LT proves the chain up to one
        self._own = own
        self._lock = threading.Lock()
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._audit_writer: GroupCommit[list[AuditItem], None] = GroupCommit(self._write_audit, name="sign-audit")

    def _write_audit(self, requests: list[list[AuditItem]]) -> list[None]:
        """The audit entries of the signing requests that finished meanwhile, in one transaction."""
        with self._engine.begin() as conn:  # Core: this runs for every signing request
            self._audit.append_many_in(conn, [entry for entries in requests for entry in entries])
        return [None] * len(requests)

    def _timestamp_client(self) -> TimestampClient:
        """The configured TSAs (``internal`` checked against our root), built on first use."""
        with self._lock:
            if self._timestamps is None:
                cas = self._ca.ca_certificates()
                self._timestamps = client_from_settings(self._settings, [cas[ROOT]], list(cas.values()))
            return self._timestamps

    def prepare(self, user_id: int, user_name: str, order: SignOrder,
                chain: tuple[bytes, ...]) -> tuple[str, PreparedOrder, datetime]:
        """Two-step signing, step 1 (:mod:`server.signing.two_step`): the digest the caller's own key (card,
        remote service) signs; the state id to complete with, and when it expires."""
        prepared = self.prepare_unstored(order, chain)
        state_id, expires = secrets.token_urlsafe(32), datetime.now(timezone.utc) + PREPARED_FOR
        audit = self.audit_entries(user_name, order, "(outside Siegel)")
        with self._sessions.begin() as session:
            session.add(SigningState(id=state_id, user_id=user_id, expires_at=expires, level=order.level.value,
                                     state=json.dumps({**prepared.state, "audit": audit})))
            for _, _, target, details in audit:
                self._audit.append_in(session, user_name, "sign.prepare", target, level=order.level.value,
                                      format=order.format.value, digest_algorithm=details["digest_algorithm"],
                                      document=details["document"], expires=expires.isoformat())
        return state_id, prepared, expires

    def complete(self, user_id: int, user_name: str, state_id: str, value: bytes,
                 password: str | None = None) -> Signed:
        """Two-step signing, step 3: the signed result with the caller's signature value, once; the value
        is checked against the certificate before anything is assembled."""
        with self._sessions() as session:
            row = session.get(SigningState, state_id)
        if row is None or row.user_id != user_id:
            raise SiegelError(Code.NOT_FOUND, "no prepared signature with this stateId for this account "
                                              "(completed already, or never prepared)")
        if _utc(row.expires_at) <= datetime.now(timezone.utc):
            raise SiegelError(Code.CONFLICT, f"the prepared signature expired at {_utc(row.expires_at).isoformat()}; "
                                             "prepare it again")
        state = json.loads(row.state)
        signed = self.complete_unstored(state, value, Level(row.level), password)
        with self._sessions.begin() as session:
            if session.execute(delete(SigningState).where(SigningState.id == state_id)).rowcount != 1:
                raise SiegelError(Code.CONFLICT, "this prepared signature was completed at the same moment already")
            self._audit.append_many_in(session, [tuple(entry) for entry in state["audit"]])  # type: ignore[misc]
        return signed

    def prepare_unstored(self, order: SignOrder, chain: tuple[bytes, ...]) -> PreparedOrder:
        """Two-step step 1 for ``chain``'s key, the state kept by the caller (remote signing keeps it in
        remote_operations)."""
        check_chain(chain)
        return prepare_order(chain, order, self._appearances)

    def complete_unstored(self, state: dict[str, Any], value: bytes, level: Level,
                          password: str | None = None) -> Signed:
        """Two-step step 3 on a state from :meth:`prepare_unstored`: the value checked, the result at ``level``."""
        with own_revocation_in_use(self._own):
            return complete_order(state, value, level,
                                  timestamps=self._timestamp_client() if level.at_least(Level.B_T) else None,
                                  trust_roots=self._trust_roots() if level.at_least(Level.B_LT) else (),
                                  password=password)

    def remove_expired(self) -> None:
        """The scheduled job "signing-states": prepared signatures nobody completed go."""
        with self._sessions.begin() as session:
            session.execute(delete(SigningState).where(SigningState.expires_at <= datetime.now(timezone.utc)))

    def extend(self, user_name: str, signature: bytes, level: Level,
               detached: Mapping[str, bytes]) -> tuple[bytes, str]:
        """An existing signature raised to ``level`` (DSS ReturnUpdatedSignature), and its SignatureType."""
        with own_revocation_in_use(self._own):
            extended = extend_signature(signature, level, timestamps=self._timestamp_client(),
                                        trust_roots=self._trust_roots() if level.at_least(Level.B_LT) else (),
                                        detached=detached)
        self._audit.append(user_name, "sign.extend", hashlib.sha256(signature).hexdigest(), level=level.value)
        return extended

    def _signing_key(self, user_id: int, key_name: str | None) -> SigningKey:
        """The key ``user_id`` signs with and its chain; remembered for KEY_CACHE_SECONDS, as looking
        them up (database, PKCS#11 object search) costs more than the signature."""
        now = time.monotonic()
        with self._lock:
            hit = self._key_cache.get((user_id, key_name))
        keys = self._keys()  # the key source now: a reconnected HSM is another one than a cached key's
        if hit is not None and hit[0] > now and hit[1].source is keys:
            return hit[1]
        label = self._grants.key_for(user_id, key_name)
        key = SigningKey(keys, label, tuple(keys.certificate_chain(label)))
        with self._lock:
            if len(self._key_cache) > 10000:
                self._key_cache.clear()
            self._key_cache[(user_id, key_name)] = (now + KEY_CACHE_SECONDS, key)
        return key

    @staticmethod
    def audit_entries(user_name: str, order: SignOrder, label: str) -> list[AuditItem]:
        """One ``sign.<format>`` entry per document of ``order``: its digest, key label, level, hash-only."""
        entries: list[AuditItem] = []
        for document in order.documents:
            algorithm, digest = document.digested(order.digest)
            entries.append((user_name, f"sign.{order.format.value}", digest.hex(), {
                "document": document.name, "digest_algorithm": algorithm.value, "key_label": label,
                "level": order.level.value, "packaging": order.packaging.value, "hash_only": document.content is None}))
        return entries

    def _appearances(self) -> Appearances:
        """The appearance templates, read on first use (a broken template is a configuration error then)."""
        from server.signing.stamp import load_templates  # fonts, images: ~18 MB a worker may never need

        with self._lock:
            if self._appearance_cache is None:
                settings = self._settings
                self._appearance_cache = Appearances(load_templates(settings), settings.appearance.default,
                                                     settings.server.public_base_url.rstrip("/") + VERIFY_PATH)
            return self._appearance_cache

    def sign(self, user_id: int, user_name: str, order: SignOrder, key: SigningKey | None = None) -> list[Signed]:
        """``order`` signed with the caller's own key or a key granted to it (or ``key``: one of a remote
        signing service, adapters.remote_signing): one signature per document, or one ASiC-E container
        over all; one audit entry per document."""
        key = key or self._signing_key(user_id, order.key_name)
        label = key.label
        timestamps = self._timestamp_client() if order.level.at_least(Level.B_T) else None
        roots = self._trust_roots() if order.level.at_least(Level.B_LT) else ()
        with own_revocation_in_use(self._own):
            if order.format is Format.ASIC:
                signed = [sign_asic_order(key, order, timestamps, roots)]
            else:
                signed = [sign_document(key, order, document, timestamps, roots, self._appearances)
                          for document in order.documents]
        entries = self.audit_entries(user_name, order, label)
        # Group commit: concurrent requests share one transaction; answered only once it committed.
        self._audit_writer.submit(entries).result()
        metrics.SIGNATURES.labels(format=order.format.value).inc(len(signed))
        return signed
