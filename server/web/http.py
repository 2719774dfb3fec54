"""The HTTP plumbing shared by every endpoint.

``SiegelRequest`` enforces the request-size limit while the body streams in, gives every request
an id, refuses new requests while the server drains for shutdown, and ``SiegelSite`` writes one
JSON log line and the Prometheus counters per request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import threading
import time
import uuid
import weakref
from typing import Any, Callable
from urllib.parse import parse_qs

from twisted.internet import defer
from twisted.web import http, server
from twisted.web.resource import IResource

from server import metrics
from server.errors import Code, SiegelError

log = logging.getLogger("siegel.http")

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")
SOAP_PREFIXES = (b"/dss", b"/archive/s4", b"/soap/")
SMALL_BODY_PREFIXES = (b"/tsa", b"/ocsp")  # a TimeStampReq or OCSPRequest has a few hundred bytes
SMALL_BODY_LIMIT = 64 * 1024
STREAMED_PATH = b"/api/v1/sign"  # with a detached format: the body is hashed as it arrives, never kept
STREAMED_FORMATS = (b"cades", b"xades")
STREAMED_READ_BYTES = 1 << 20  # recv size while a streamed body arrives
STREAMED_PENDING_CHUNKS = 8  # reads received but not yet hashed, at most (then reading pauses)
RETRY_AFTER_SECONDS = b"1"  # what a 503 asks clients to wait: the outages it reports are retried by then or soon after
KNOWN_ROUTES = {"dss", "api", "health", "metrics", "archive", "soap", "csc", "tsa", "ocsp", "crl", "ca", "portal"}


def route_of(path: bytes) -> str:
    """The metrics label of a path: its first segment when it is one of ours."""
    first = path.split(b"?", 1)[0].lstrip(b"/").split(b"/", 1)[0].decode("latin-1")
    return "/" + first if first in KNOWN_ROUTES else ("/" if not first else "other")


def problem(status: int, title: str, detail: str, code: str, result_minor: str | None = None) -> bytes:
    """An RFC 9457 problem document; with ``result_minor``, the extension member ``resultMinor`` (the DSS
    ResultMinor the same error has over SOAP)."""
    document: dict[str, object] = {"type": f"urn:siegel:problem:{code}", "title": title, "status": status,
                                   "detail": detail}
    if result_minor is not None:
        document["resultMinor"] = result_minor
    return json.dumps(document).encode()


def error_body(path: bytes, error: SiegelError) -> tuple[bytes, bytes]:
    """Content type and body for an error on ``path``: a SOAP fault on SOAP endpoints, else problem JSON."""
    if path.startswith(SOAP_PREFIXES):
        from server.web.soap import soap_fault

        return b"text/xml; charset=utf-8", soap_fault(error)
    from server.web.pki_http import protocol_error

    spoken = protocol_error(path, error)
    if spoken is not None:
        return spoken
    kind = error.kind
    return b"application/problem+json", problem(kind.http_status, kind.title, error.message, error.code.value,
                                                error.result_minor)


def error_status(path: bytes, error: SiegelError) -> int:
    """The HTTP status for an error on ``path``: a SOAP fault goes with 500 (WS-I Basic Profile R1126, or JAX-WS
    and .NET clients see a transport error instead of the fault), except 401, whose challenge HTTP
    authentication needs; elsewhere the error kind's status."""
    status = error.kind.http_status
    return 500 if path.startswith(SOAP_PREFIXES) and status != 401 else status


STREAMED_DIGESTS = {b"SHA-256": "sha256", b"SHA-384": "sha384", b"SHA-512": "sha512"}


class DigestingBody:
    """A request body sink that keeps only the digest of what was written (and its length).

    The hashing runs in a thread of the body's own, so the reactor reads the next chunk while the last
    is hashed (hashlib releases the GIL for large buffers): with both on one thread a large upload was
    hashed at two thirds of ``openssl dgst``'s rate. At most :data:`STREAMED_PENDING_CHUNKS` reads wait (counted
    as reads, not bytes: each holds up to a read's allocation); beyond that ``transport`` stops reading until
    the hasher caught up. :meth:`finished` fires once every
    written byte is hashed; only then is :meth:`digest` valid.
    """

    def __init__(self, algorithm: str, transport: Any = None) -> None:
        self.algorithm = algorithm
        self.length = 0
        self._hash = hashlib.new(algorithm)
        self._transport = transport
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0  # chunks written but not hashed yet
        self._paused = False
        self._closed = False
        self._done: defer.Deferred[None] = defer.Deferred()
        self._thread = threading.Thread(target=self._hash_chunks, name="digesting-body", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        self.length += len(data)
        with self._lock:
            self._pending += 1
            pause = self._pending > STREAMED_PENDING_CHUNKS and not self._paused and self._transport is not None
            self._paused = self._paused or pause
        self._chunks.put(data)
        if pause:
            self._transport.pauseProducing()

    def _hash_chunks(self) -> None:
        from twisted.internet import reactor

        while (data := self._chunks.get()) is not None:
            self._hash.update(data)
            with self._lock:
                self._pending -= 1
                resume = self._paused and self._pending <= STREAMED_PENDING_CHUNKS // 2
                self._paused = self._paused and not resume
            if resume:
                reactor.callFromThread(self._transport.resumeProducing)  # type: ignore[attr-defined]
        reactor.callFromThread(self._done.callback, None)  # type: ignore[attr-defined]

    def finished(self) -> defer.Deferred[None]:
        """Fires (on the reactor) once all that was written is hashed; nothing may be written after."""
        self.close()
        return self._done

    def digest(self) -> bytes:
        if not self._done.called:
            raise RuntimeError("the body is still being hashed: wait for finished()")
        return self._hash.digest()

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def tell(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        """No more writes: the hasher ends after the chunks queued (also when the connection was lost)."""
        with self._lock:
            closed, self._closed = self._closed, True
        if not closed:
            self._chunks.put(None)


def streamed(path: bytes) -> str | None:
    """The digest algorithm a request for ``path`` (with its query) is hashed with as it streams in
    (a :class:`DigestingBody`: detached signing), or None when its body is kept."""
    route, _, query = path.partition(b"?")
    if route.rstrip(b"/") != STREAMED_PATH:
        return None
    args = parse_qs(query)
    if (args.get(b"format", [b"cades"])[-1] not in STREAMED_FORMATS
            or args.get(b"packaging", [b"detached"])[-1] != b"detached"):
        return None
    return STREAMED_DIGESTS.get(args.get(b"digestAlgorithm", [b"SHA-256"])[-1])  # unknown: the endpoint says so


class SiegelRequest(server.Request):
    """A request with an id, a streamed size limit and drain awareness."""

    site: "SiegelSite"

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        self.started = time.monotonic()
        self.request_id = uuid.uuid4().hex
        self._received = 0
        self._digest_algorithm: str | None = None  # set when the body is only hashed (see streamed())
        self._read_size: int | None = None  # the transport's recv size before a streamed body
        self._refused = False
        self._late = False

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        """Every 503 (database or HSM unreachable, draining) tells clients when to retry."""
        super().setResponseCode(code, message)
        if code == 503:
            self.setHeader(b"retry-after", RETRY_AFTER_SECONDS)

    def gotLength(self, length: int | None) -> None:
        site = self.channel.site
        self._digest_algorithm = self._streamed()
        limit = self._limit()
        if length is not None and length > limit:
            self._refuse_oversized(limit)
            return
        # From here the request is in flight: a drain waits for it, unless it began after the drain did.
        site._channels.add(self.channel)
        self._late = site.draining
        if not self._late:
            site.request_started(self)
        super().gotLength(length)
        if self._digest_algorithm is not None:
            self.content.close()
            self.content = DigestingBody(self._digest_algorithm, self.channel.transport)
            # Twisted reads 64 KiB per recv: a large body then costs more in the read path than in hashing.
            transport = self.channel.transport
            self._read_size = getattr(transport, "bufferSize", None)
            if self._read_size is not None:
                transport.bufferSize = STREAMED_READ_BYTES

    def _streamed(self) -> str | None:
        if getattr(self.channel, "_command", b"") != b"POST":
            return None
        return streamed(getattr(self.channel, "_path", b"") or b"")

    def _limit(self) -> int:
        """The body size limit of this request's path."""
        settings = self.channel.site.settings.server
        if self._digest_algorithm is not None:
            return int(settings.max_streamed_bytes)
        limit = int(settings.max_request_bytes)
        path = getattr(self.channel, "_path", b"") or b""
        return min(limit, SMALL_BODY_LIMIT) if path.startswith(SMALL_BODY_PREFIXES) else limit

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        limit = self._limit()
        if self._received > limit:
            self._refuse_oversized(limit)
            return
        super().handleContentChunk(data)

    def _refuse_oversized(self, limit: int) -> None:
        """Answer 413 at once and drop the connection: the rest of the body is never read."""
        self._refused = True
        path = getattr(self.channel, "_path", b"") or b""
        error = SiegelError(Code.REQUEST_TOO_LARGE, f"the request body exceeds the limit of {limit} bytes")
        ctype, body = error_body(path, error)
        head = (b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: " + ctype
                + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
        self.channel.transport.write(head + body)
        self.channel.transport.loseConnection()
        metrics.HTTP_REQUESTS.labels(route_of(path), self.channel._command.decode("latin-1", "replace")
                                     if getattr(self.channel, "_command", None) else "?", "413").inc()
        log.warning("request refused", extra={"fields": {"status": 413, "path": path.decode("latin-1"),
                                                            "reason": "too large"}})

    def process(self) -> None:
        if self._refused:
            return
        given = self.getHeader(b"x-request-id")
        if given and _REQUEST_ID.match(given):
            self.request_id = given.decode("ascii")
        self.setHeader(b"x-request-id", self.request_id.encode())
        if self._late:
            self.setResponseCode(503)
            self.setHeader(b"connection", b"close")
            ctype, body = error_body(self.uri, SiegelError(Code.INTERNAL, "the server is shutting down"))
            self.setHeader(b"content-type", ctype)
            self.write(body)
            self.finish()
            return
        if isinstance(self.content, DigestingBody):
            if self._read_size is not None:
                self.channel.transport.bufferSize = self._read_size  # for what follows on the connection
            self.content.finished().addCallback(lambda _: server.Request.process(self))
            return
        super().process()


class SiegelSite(server.Site):
    """The site: per-request log lines and metrics, and the in-flight count for draining."""

    requestFactory = SiegelRequest
    displayTracebacks = False

    def __init__(self, root: IResource, settings: Any) -> None:
        # No HTML form parsing of POST bodies: no endpoint reads form arguments, and Twisted parses the
        # Content-Type with the email package for every POST, a tenth of a TSA request's time.
        super().__init__(root, parsePOSTFormSubmission=False)
        self.settings = settings
        self.draining = False
        self._inflight = 0
        self._idle: list[defer.Deferred[None]] = []
        self._channels: weakref.WeakSet[http.HTTPChannel] = weakref.WeakSet()  # those that sent a request

    def request_started(self, request: SiegelRequest) -> None:
        self._inflight += 1
        request.notifyFinish().addBoth(self._request_ended)

    def _request_ended(self, _: object) -> None:
        self._inflight -= 1
        if self._inflight == 0:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def drain(self, grace: float) -> defer.Deferred[None]:
        """Refuse new requests; fire once in-flight ones have finished and their answers are sent.

        The reactor drops open connections at shutdown without flushing them, so every connection is
        closed politely here (written data first) and waited for; ``grace`` seconds bound the whole.
        """
        from twisted.internet import reactor, task

        self.draining = True
        deadline = time.monotonic() + grace
        requests_done: defer.Deferred[None] = defer.Deferred()
        if self._inflight == 0:
            requests_done.callback(None)
        else:
            self._idle.append(requests_done)
            timer = reactor.callLater(grace, lambda: requests_done.called or requests_done.callback(None))  # type: ignore[attr-defined]
            requests_done.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])

        def close_connections(_: object) -> defer.Deferred[None]:
            for channel in list(self._channels):
                if channel.transport is not None and channel.transport.connected:
                    channel.transport.loseConnection()
            return _until(lambda: time.monotonic() >= deadline or not any(
                c.transport is not None and c.transport.connected for c in self._channels))

        def _until(done: Callable[[], bool]) -> defer.Deferred[None]:
            if done():
                return defer.succeed(None)
            return task.deferLater(reactor, 0.02, _until, done)  # type: ignore[arg-type]

        return requests_done.addCallback(close_connections)

    def log(self, request: SiegelRequest) -> None:  # type: ignore[override]
        elapsed = time.monotonic() - request.started
        route = route_of(request.path)
        status = str(request.code)
        metrics.HTTP_REQUESTS.labels(route, request.method.decode("latin-1"), status).inc()
        metrics.HTTP_LATENCY.labels(route).observe(elapsed)
        log.info("request", extra={"fields": {
            "request_id": request.request_id,
            "method": request.method.decode("latin-1"),
            "path": request.path.decode("latin-1"),
            "status": request.code,
            "bytes": request.sentLength,
            "ms": round(elapsed * 1000, 2),
            "client": getattr(request.getClientAddress(), "host", ""),
            "user": getattr(getattr(request, "principal", None), "name", None),
        }})


def json_response(request: server.Request, status: int, body: Any,
                  content_type: bytes = b"application/json") -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body).encode()


def render_deferred(request: server.Request, work: Callable[[], defer.Deferred[bytes]]) -> int:
    """Run ``work`` and write its bytes; a failure becomes a problem response, never a traceback."""

    def write(body: bytes) -> None:
        if not request.finished and not request._disconnected:  # type: ignore[attr-defined]
            request.write(body)
            request.finish()

    def fail(failure: Any) -> None:
        error = failure.value if isinstance(failure.value, SiegelError) else SiegelError(Code.INTERNAL, "internal error")
        if not isinstance(failure.value, SiegelError):
            log.error("unhandled error", exc_info=(failure.type, failure.value, failure.getTracebackObject()))
        ctype, body = error_body(request.path, error)
        request.setResponseCode(error_status(request.path, error))
        request.setHeader(b"content-type", ctype)
        write(body)

    defer.maybeDeferred(work).addCallbacks(write, fail)
    return server.NOT_DONE_YET
