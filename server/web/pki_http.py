"""The public PKI endpoints: ``/tsa`` (RFC 3161), ``/ocsp`` (RFC 6960), ``/crl/<CA>.crl``, ``/ca/<CA>.crt``.

They need no account: relying parties and signature validators fetch them. The TSA and OCSP
endpoints always answer in their protocol (a TimeStampResp or OCSPResponse, also for a wrong method,
content type or oversized body, see :func:`protocol_error`); refused requests get a log line, not an
audit entry. The work runs in the reactor's thread pool (database and HSM calls block).
"""

from __future__ import annotations

import base64
import binascii
import logging
import urllib.parse
from typing import Any, Callable

from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from twisted.internet import threads
from twisted.web import resource

from server import metrics
from server.errors import Code, SiegelError
from server.pki.ocsp import OcspReply
from server.pki.tsa import TsaReply, rejection
from server.web.http import error_body, render_deferred

log = logging.getLogger("siegel.pki")

TSA_QUERY = b"application/timestamp-query"
TSA_REPLY = b"application/timestamp-reply"
OCSP_REQUEST = b"application/ocsp-request"
OCSP_RESPONSE = b"application/ocsp-response"


def protocol_error(path: bytes, error: SiegelError) -> tuple[bytes, bytes] | None:
    """Content type and body of ``error`` in the protocol spoken at ``path`` (None: not a PKI protocol path)."""
    internal = error.kind.http_status >= 500
    if path.startswith(b"/tsa"):
        return TSA_REPLY, rejection("system_failure" if internal else "bad_request", error.message)
    if path.startswith(b"/ocsp"):
        status = ocsp.OCSPResponseStatus.INTERNAL_ERROR if internal else ocsp.OCSPResponseStatus.MALFORMED_REQUEST
        return OCSP_RESPONSE, ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)
    return None


def _content_type(request: Any) -> bytes:
    return (request.getHeader(b"content-type") or b"").split(b";", 1)[0].strip().lower()


def _answer(request: Any, content_type: bytes, body: bytes, status: int = 200, cache: bytes = b"no-store") -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"cache-control", cache)
    request.setHeader(b"content-length", b"%d" % len(body))  # not chunked: simple RFC 3161/6960 clients need it
    return body


def _refuse(request: Any, status: int, message: str, allow: bytes | None = None) -> bytes:
    """A protocol error answer for a request that never reaches the service."""
    log.info("request refused", extra={"fields": {"path": request.path.decode("latin-1"), "status": status,
                                                  "problem": message}})
    if allow is not None:
        request.setHeader(b"allow", allow)
    ctype, body = error_body(request.path, SiegelError(Code.BAD_REQUEST, message))
    return _answer(request, ctype, body, status)


def _respond(request: Any, work: Callable[[], TsaReply | OcspReply], content_type: bytes, what: str,
             signature_format: str) -> int:
    def written(reply: TsaReply | OcspReply) -> bytes:
        if reply.problem is not None:
            log.info(f"{what} not granted", extra={"fields": {"problem": reply.problem,
                                                              "request_id": request.request_id}})
        else:
            metrics.SIGNATURES.labels(signature_format).inc()
        return _answer(request, content_type, reply.der)

    return render_deferred(request, lambda: threads.deferToThread(work).addCallback(written))


class _DerProtocol(resource.Resource):
    """``POST`` of a DER request with the protocol's content type, answered by ``respond``."""

    isLeaf = True
    request_type: bytes
    reply_type: bytes
    what: str
    signature_format: str  # the label of siegel_signatures_total

    def __init__(self, respond: Callable[[bytes], TsaReply | OcspReply]) -> None:
        super().__init__()
        self._respond = respond

    def render_POST(self, request: Any) -> int | bytes:
        if _content_type(request) != self.request_type:
            return _refuse(request, 415, f"the content type must be {self.request_type.decode()}")
        return self._answer_der(request, request.content.read())

    def _answer_der(self, request: Any, der: bytes) -> int:
        return _respond(request, lambda: self._respond(der), self.reply_type, self.what, self.signature_format)


class Tsa(_DerProtocol):
    """``POST /tsa`` with a DER TimeStampReq."""

    request_type, reply_type, what, signature_format = TSA_QUERY, TSA_REPLY, "timestamp", "rfc3161"

    def render_GET(self, request: Any) -> bytes:
        return _refuse(request, 405, "a TimeStampReq is sent with POST", allow=b"POST")


class Ocsp(_DerProtocol):
    """``POST /ocsp`` with a DER OCSPRequest, or ``GET /ocsp/<base64 of it>`` (RFC 6960 appendix A.1)."""

    request_type, reply_type, what, signature_format = OCSP_REQUEST, OCSP_RESPONSE, "OCSP response", "ocsp"

    def render_GET(self, request: Any) -> int | bytes:
        # The raw path, not postpath: base64 may hold "/" and "%2F" alike.
        encoded = request.path[len(b"/ocsp/"):] if request.path.startswith(b"/ocsp/") else b""
        try:
            der = base64.b64decode(urllib.parse.unquote_to_bytes(encoded), validate=True)
        except (binascii.Error, ValueError):
            der = b""
        if not der:
            return _refuse(request, 400, "GET /ocsp/ needs the base64 of a DER OCSPRequest after the slash")
        return self._answer_der(request, der)


class Published(resource.Resource):
    """``GET /<prefix>/<CA><suffix>``: a DER object of a CA (certificate or CRL), or problem JSON 404."""

    isLeaf = True

    def __init__(self, fetch: Callable[[str], bytes], suffix: bytes, content_type: bytes) -> None:
        super().__init__()
        self._fetch = fetch
        self._suffix = suffix
        self._content_type = content_type

    def render_GET(self, request: Any) -> int:
        leaf = request.postpath[-1] if len(request.postpath) == 1 else b""
        name = leaf[: -len(self._suffix)].decode("latin-1") if leaf.endswith(self._suffix) else ""

        def work() -> Any:
            if not name.isalnum():
                raise SiegelError(Code.NOT_FOUND, f"no resource at {request.path.decode('latin-1')} (expected "
                                                  f"<CA>{self._suffix.decode()}, e.g. ISSUING{self._suffix.decode()})")
            return threads.deferToThread(self._fetch, name).addCallback(
                lambda der: _answer(request, self._content_type, der, cache=b"max-age=300"))

        return render_deferred(request, work)
