"""Signing for callers: their own key, the format engine, the timestamps, the audit entry."""

from __future__ import annotations

import hashlib
import threading
from typing import Callable

from adapters.timestamp.client import TimestampClient, client_from_settings
from server.audit import AuditLog
from server.config import Settings
from server.pki.ca import ROOT, CertificateAuthorityService
from server.signing.cades import Level, Packaging, SigningKey, sign_cades
from server.signing.keysource import DigestAlgorithm, KeySource


class SigningService:
    def __init__(self, settings: Settings, ca: CertificateAuthorityService, keys: Callable[[], KeySource],
                 audit: AuditLog) -> None:
        self._settings = settings
        self._ca = ca
        self._keys = keys
        self._audit = audit
        self._timestamps: TimestampClient | None = None
        self._lock = threading.Lock()

    def _timestamp_client(self) -> TimestampClient:
        """The configured TSAs (``internal`` checked against our root), built on first use."""
        with self._lock:
            if self._timestamps is None:
                self._timestamps = client_from_settings(self._settings, [self._ca.ca_certificates()[ROOT]])
            return self._timestamps

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
