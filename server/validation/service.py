"""Verification for callers: which format a signed input is, the trust it is checked against, the report.

Formats are told apart by their bytes: an ASiC container (a ZIP starting with ``mimetype``), a PDF
(``%PDF-``: PAdES), XML (XAdES / XMLDSig), else a CMS (CAdES; DER, or PEM / base64 text).
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Callable

from server.config import Settings
from server.errors import Code, SiegelError
from server.pki.ca import CertificateAuthorityService
from server.pki.ocsp import OcspResponder
from server.validation.asic import is_asic, verify_asic
from server.validation.cades import verify_cades
from server.validation.model import Indication, OwnRevocation, Trust, ValidationReport
from server.validation.pades import verify_pdf
from server.validation.trust import load_certificate_files
from server.validation.xades import verify_xml_signatures
from server.xmlsafe import looks_like_xml

_PEM = re.compile(rb"-----BEGIN [A-Z0-9 ]+-----(.*?)-----END [A-Z0-9 ]+-----", re.S)


def _cms_bytes(data: bytes) -> bytes:
    """DER of a CMS given as DER, PEM or bare base64 text."""
    if data[:1] == b"\x30":
        return data
    match = _PEM.search(data)
    text = match.group(1) if match else data
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return data  # not text: the CMS parser says what is wrong with it


def parse_validation_time(text: str, what: str) -> datetime:
    """An ISO 8601 / xs:dateTime with a time zone, as callers give a verification time (``what`` names it)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SiegelError(Code.BAD_REQUEST, f"{what}: {text!r} is not a time such as 2026-12-07T10:00:00Z") from None
    if moment.tzinfo is None:
        raise SiegelError(Code.BAD_REQUEST, f"{what}: the time needs a time zone (Z or ±hh:mm)")
    return moment


def own_revocation(ca: CertificateAuthorityService, responder: OcspResponder) -> OwnRevocation:
    """The instance's CAs and OCSP responder as a verification asks them: in-process."""
    def ocsp(request: bytes) -> bytes | None:
        reply = responder.respond(request)
        return reply.der if reply.problem is None else None

    return OwnRevocation(ocsp, lambda: tuple(ca.current_crl(name) for name in ca.ca_certificates()))


class VerificationService:
    def __init__(self, settings: Settings, internal_root: Callable[[], bytes],
                 own: OwnRevocation | None = None) -> None:
        """``own``: the instance's own revocation services (:func:`own_revocation`)."""
        self._settings = settings
        self._internal_root = internal_root
        self._own = own
        self._roots: tuple[bytes, ...] | None = None
        self._lock = threading.Lock()

    def trust(self, at: datetime | None = None) -> Trust:
        """The configured trust: the internal root and ``validation.trust_roots``; fetching per setting."""
        with self._lock:
            if self._roots is None:
                self._roots = (self._internal_root(),) + tuple(
                    load_certificate_files(self._settings, self._settings.validation.trust_roots))
        return Trust(self._roots, self._settings.validation.allow_fetching, at, self._own)

    def verify(self, data: bytes, *, name: str = "document", detached: Mapping[str, bytes] | None = None,
               detached_digests: Mapping[str, tuple[str, bytes]] | None = None,
               at: datetime | None = None, password: str | None = None) -> ValidationReport:
        """The report on every signature in ``data`` (a signed document or a detached signature, with
        the data it covers in ``detached`` / ``detached_digests``; ``password`` of an encrypted PDF); a
        TOTAL-FAILED signature is reported
        as covering nothing. Blocking (revocation fetching): call it off the reactor thread."""
        if not data:
            raise SiegelError(Code.BAD_REQUEST, "nothing to verify: the signed document is empty")
        detached, detached_digests = dict(detached or {}), dict(detached_digests or {})
        trust = self.trust(at)
        if is_asic(data):
            signatures = verify_asic(data, trust, max_bytes=self._settings.server.max_streamed_bytes)
        elif data.startswith(b"%PDF-"):
            signatures = verify_pdf(data, trust, name=name, password=password)
        elif looks_like_xml(data):
            signatures = verify_xml_signatures(data, trust, detached=detached, detached_digests=detached_digests,
                                               name=name)
        else:
            if len(detached) + len(detached_digests) > 1:
                raise SiegelError(Code.BAD_REQUEST, "a CMS signature covers one document; several were given")
            covered, content = next(iter(detached.items()), (name, None))
            covered, digest = next(iter(detached_digests.items()), (covered, None))
            signatures = verify_cades(_cms_bytes(data), trust, content=content, content_digest=digest, name=covered)
        if not signatures:
            raise SiegelError(Code.BAD_REQUEST, f"{name} holds no signature")
        for signature in signatures:
            if signature.indication is Indication.TOTAL_FAILED:
                signature.scopes = []  # a failed signature proves nothing signed
        return ValidationReport(signatures, at or datetime.now(timezone.utc), name)
