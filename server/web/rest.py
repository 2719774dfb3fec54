"""JSON API under ``/api/v1``; errors are RFC 9457 problem documents."""

from __future__ import annotations

import base64
import binascii
import json
from email import policy as email_policy
from collections.abc import Callable
from email.parser import BytesParser
from typing import Any

from twisted.internet import threads
from twisted.web import resource

from server import __version__
from server.branding.report import report_pdf
from server.branding.service import BrandService
from server.errors import Code, SiegelError
from server.signing.levels import Level, Packaging
from server.signing.keysource import DigestAlgorithm
from server.signing.engines import Signed
from server.signing.order import Document, Format, PdfOptions, SignOrder, is_xml_type
from server.signing.service import SigningService
from server.validation.report import to_etsi_xml, to_json
from server.validation.service import VerificationService, parse_validation_time
from server.web import openapi
from server.web.http import DigestingBody, error_body, json_response, render_deferred
from server.web.remote_signing import Remote, RemoteAccounts, RemoteAuthorize, RemoteCallback, RemoteCancel, start_remote

FORMATS = ("cades", "xades", "asic", "pades")
DIGESTS = {"SHA-256": DigestAlgorithm.SHA256, "SHA-384": DigestAlgorithm.SHA384, "SHA-512": DigestAlgorithm.SHA512}


class _NotFound(resource.Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        error = SiegelError(Code.NOT_FOUND, f"no resource at {request.path.decode('latin-1')}")
        ctype, body = error_body(request.path, error)
        request.setResponseCode(404)
        request.setHeader(b"content-type", ctype)
        return body


class WhoAmI(resource.Resource):
    """``GET /api/v1/whoami``: the authenticated account."""

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        p = request.principal
        return json_response(request, 200, {"id": p.user_id, "name": p.name, "role": p.role.value})


def _query(request: Any, name: str, default: str) -> str:
    values = request.args.get(name.encode(), [default.encode()])
    return values[-1].decode("utf-8", "replace")


def _choice(request: Any, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = _query(request, name, default)
    if value not in allowed:
        raise SiegelError(Code.BAD_REQUEST, f"{name}={value!r}: expected one of {', '.join(allowed)}")
    return value


class _SigningEndpoint(resource.Resource):
    """A POST endpoint of the signing service; ``_start`` checks the request and starts the work."""

    isLeaf = True

    def __init__(self, signing: SigningService) -> None:
        super().__init__()
        self._signing = signing

    def render_POST(self, request: Any) -> int:
        return render_deferred(request, lambda: self._start(request))

    def _start(self, request: Any) -> Any:
        raise NotImplementedError


def _answer_signed(request: Any, signed: list[Signed]) -> bytes:
    """The one result answered with its content type."""
    request.setHeader(b"x-siegel-signature-type", signed[0].signature_type.encode())
    return _signed(request, signed[0].data, signed[0].mime_type.encode())


def _signed_in_thread(request: Any, signing: SigningService, order: SignOrder) -> Any:
    """``order`` signed off the reactor."""
    principal = request.principal
    return threads.deferToThread(signing.sign, principal.user_id, principal.name, order).addCallback(
        lambda signed: _answer_signed(request, signed))


def _client_branded(request: Any, brands: BrandService, order: SignOrder) -> Any:
    """``order`` with a PDF's default stamp in the calling API client's brand (BrandService.client_stamp), looked
    up off the reactor: every path that builds a stamp for a request (one step, prepare, remote) goes through
    here before it is built."""
    return threads.deferToThread(brands.client_stamp, order, request.principal.client)


class Sign(_SigningEndpoint):
    """``POST /api/v1/sign?format=cades|xades|asic&level=B-T&packaging=detached|enveloping|enveloped``: the
    body signed with the caller's key (``key``: a key label granted to it); a detached CAdES or XAdES is made
    from the body's digest, computed while it streams in; a PDF's default stamp is in the brand of the calling
    API client (if it has one). ``/prepare`` and ``/complete`` for outside keys."""

    isLeaf = False

    def __init__(self, signing: SigningService, brands: BrandService, remote: Remote | None = None) -> None:
        super().__init__(signing)
        self._brands = brands
        self._remote = remote
        self.putChild(b"prepare", SignPrepare(signing, brands))
        self.putChild(b"complete", SignComplete(signing))
        if remote is not None:
            remote_root = resource.Resource()
            remote_root.putChild(b"authorize", RemoteAuthorize(remote, _answer_signed))
            remote_root.putChild(b"cancel", RemoteCancel(remote))
            remote_root.putChild(b"callback", RemoteCallback(remote, _answer_signed))
            self.putChild(b"remote", remote_root)

    def getChild(self, path: bytes, request: Any) -> resource.IResource:
        return _NotFound()

    def _start(self, request: Any) -> Any:
        fmt = Format(_choice(request, "format", "cades", FORMATS))
        level = Level(_choice(request, "level", "B-T", tuple(Level)))
        packaging = Packaging(_choice(request, "packaging", "detached", tuple(Packaging)))
        digest = DIGESTS[_choice(request, "digestAlgorithm", "SHA-256", tuple(DIGESTS))]
        name = _query(request, "name", "document")
        mime = (request.getHeader(b"content-type") or b"application/octet-stream").decode("latin-1")
        body = request.content
        if isinstance(body, DigestingBody):
            if not body.length:
                raise SiegelError(Code.BAD_REQUEST, "the request body is the document to sign; it is empty")
            document = Document(name, digest=body.digest(), digest_algorithm=DigestAlgorithm(body.algorithm),
                                mime_type=mime)
        else:
            content = body.read()
            if not content:
                raise SiegelError(Code.BAD_REQUEST, "the request body is the document to sign; it is empty")
            document = Document(name, content=content, mime_type=mime, is_xml=is_xml_type(mime))
        if fmt is Format.PADES:
            packaging = Packaging.ENVELOPED
        order = SignOrder(fmt, level, packaging, (document,), key_name=_query(request, "key", "") or None,
                          digest=digest, container_format=Format(_choice(request, "container", "xades",
                                                                         ("xades", "cades"))),
                          pdf=_pdf_options(request))
        account = _query(request, "remote", "")
        remote = self._remote
        if not account:
            return _client_branded(request, self._brands, order).addCallback(
                lambda branded: _signed_in_thread(request, self._signing, branded))
        if remote is None:  # a credential of a remote CSC service (server.web.remote_signing)
            raise SiegelError(Code.NOT_SUPPORTED, "remote signing is not configured")
        return _client_branded(request, self._brands, order).addCallback(
            lambda branded: start_remote(request, remote, branded, account, _query(request, "credential", ""),
                                         _answer_signed))


def _number(request: Any, name: str) -> float | None:
    text = _query(request, name, "")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise SiegelError(Code.BAD_REQUEST, f"{name}={text!r}: expected a number") from None


def _pdf_options(request: Any) -> PdfOptions:
    """``field``, or ``page`` with ``x``, ``y``, ``w``, ``h`` (PDF points); ``appearance``, ``invisible``,
    ``certify``, ``lock`` (comma-separated field names, or * for all); the password in ``X-Pdf-Password``."""
    page, box = _number(request, "page"), tuple(_number(request, n) for n in ("x", "y", "w", "h"))
    if any(v is None for v in box) and any(v is not None for v in box):
        raise SiegelError(Code.BAD_REQUEST, "a position needs all of x, y, w and h (PDF points)")
    lock = _query(request, "lock", "")
    password = request.getHeader(b"x-pdf-password")
    return PdfOptions(field=_query(request, "field", "") or None, page=None if page is None else int(page),
                      box=None if box[0] is None else box,  # type: ignore[arg-type]
                      invisible=_query(request, "invisible", "false") == "true",
                      appearance=_query(request, "appearance", "") or None,
                      certify=_query(request, "certify", "false") == "true",
                      lock_fields=None if not lock else () if lock == "*" else tuple(lock.split(",")),
                      password=password.decode("utf-8", "replace") if password else None)


class SignHash(_SigningEndpoint):
    """``POST /api/v1/sign-hash`` with JSON ``{"digestAlgorithm": "SHA-256", "digest": "<base64>",
    "format": "cades|xades", "level": "B-T"}``: a detached signature over the digest; the document stays away."""

    def _start(self, request: Any) -> Any:
        body = _json_object(request)
        fmt, level = str(body.get("format", "cades")), str(body.get("level", "B-T"))
        if fmt not in ("cades", "xades") or level not in tuple(Level):
            raise SiegelError(Code.BAD_REQUEST, f"format={fmt!r}, level={level!r}: expected format cades or xades "
                                                "and level B-B, B-T, B-LT or B-LTA")
        digest_algorithm, digest = _digest_of(body)
        document = Document(str(body.get("name", "document")), digest=digest, digest_algorithm=digest_algorithm)
        key = body.get("key")
        order = SignOrder(Format(fmt), Level(level), Packaging.DETACHED, (document,),
                          key_name=str(key) if key else None, digest=digest_algorithm)
        return _signed_in_thread(request, self._signing, order)


def _digest_algorithm(body: dict[str, Any], default: str = "") -> DigestAlgorithm:
    """``digestAlgorithm`` of a JSON request (``default`` when absent)."""
    name = str(body.get("digestAlgorithm", default)).upper()
    if name not in DIGESTS:
        raise SiegelError(Code.BAD_REQUEST, f"digestAlgorithm {name!r}: expected one of {', '.join(DIGESTS)}")
    return DIGESTS[name]


def _digest_of(body: dict[str, Any]) -> tuple[DigestAlgorithm, bytes]:
    """``digestAlgorithm`` and the base64 ``digest`` of a JSON request."""
    return _digest_algorithm(body), _b64(body.get("digest"), "digest")


def _b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value if value is not None else ""), validate=True)
    except (binascii.Error, ValueError):
        raise SiegelError(Code.BAD_REQUEST, f"{what}: expected base64") from None


def _json_choice(body: dict[str, Any], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = str(body.get(name, default))
    if value not in allowed:
        raise SiegelError(Code.BAD_REQUEST, f"{name}={value!r}: expected one of {', '.join(allowed)}")
    return value


def _json_documents(body: dict[str, Any]) -> tuple[Document, ...]:
    """``documents`` (a list of ``{"name", "mimeType", "content"}``), one ``document`` (base64, with ``name``
    and ``mimeType``) or a ``digest`` with its ``digestAlgorithm`` (detached signatures only)."""
    def one(item: dict[str, Any], what: str) -> Document:
        mime = str(item["mimeType"]) if item.get("mimeType") else None
        return Document(str(item.get("name") or "document"), content=_b64(item.get("content"), what),
                        mime_type=mime, is_xml=is_xml_type(mime))

    if "documents" in body:
        items = body["documents"]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise SiegelError(Code.BAD_REQUEST, 'documents: expected a list of {"name", "mimeType", "content"}')
        return tuple(one(item, f"documents[{n}].content") for n, item in enumerate(items))
    if "document" in body:
        return (one({**body, "content": body["document"]}, "document"),)
    algorithm, digest = _digest_of(body)
    return (Document(str(body.get("name") or "document"), digest=digest, digest_algorithm=algorithm),)


def _two_step_order(request: Any, body: dict[str, Any]) -> SignOrder:
    """The order of a prepare request: JSON ``format``, ``level``, ``packaging``, ``container`` (ASiC-E),
    ``digestAlgorithm`` and the documents (:func:`_json_documents`); a PDF's options as for /sign (query)."""
    fmt = Format(_json_choice(body, "format", "cades", FORMATS))
    packaging = Packaging.ENVELOPED if fmt is Format.PADES else \
        Packaging(_json_choice(body, "packaging", "detached", tuple(Packaging)))
    digest = _digest_algorithm(body, "SHA-256")
    return SignOrder(fmt, Level(_json_choice(body, "level", "B-T", tuple(Level))), packaging, _json_documents(body),
                     digest=digest, container_format=Format(_json_choice(body, "container", "xades", ("xades", "cades"))),
                     pdf=_pdf_options(request))


class SignPrepare(_SigningEndpoint):
    """``POST /api/v1/sign/prepare`` with JSON ``certificateChain`` (base64 DER, the signer's first) and the
    order (:func:`_two_step_order`): the digest to sign elsewhere, and the state to complete with; a PDF's default
    stamp in the brand of the calling API client (the stamp is drawn now, /complete only signs it)."""

    def __init__(self, signing: SigningService, brands: BrandService) -> None:
        super().__init__(signing)
        self._brands = brands

    def _start(self, request: Any) -> Any:
        body = _json_object(request)
        order = _two_step_order(request, body)
        chain = body.get("certificateChain")
        if not isinstance(chain, list):
            raise SiegelError(Code.BAD_REQUEST, "certificateChain: expected a list of base64 DER certificates")
        certs = tuple(_b64(c, "certificateChain") for c in chain)
        principal = request.principal
        names = {algorithm: name for name, algorithm in DIGESTS.items()}
        return _client_branded(request, self._brands, order).addCallback(
            lambda branded: threads.deferToThread(self._signing.prepare, principal.user_id, principal.name,
                                                  branded, certs)).addCallback(
            lambda prepared: json_response(request, 200, {
                "stateId": prepared[0], "digestAlgorithm": names[prepared[1].digest],
                "digestToSign": base64.b64encode(prepared[1].to_be_signed).decode(),
                "signatureAlgorithm": prepared[1].scheme.value, "expires": prepared[2].isoformat()}))


class SignComplete(_SigningEndpoint):
    """``POST /api/v1/sign/complete`` with JSON ``stateId`` and ``signatureValue`` (base64; ECDSA as DER;
    an encrypted PDF's password in ``X-Pdf-Password`` again): the signed result of the prepared format,
    checked against the certificate before it is assembled."""

    def _start(self, request: Any) -> Any:
        body = _json_object(request)
        state_id, value = str(body.get("stateId", "")), _b64(body.get("signatureValue"), "signatureValue")
        password = request.getHeader(b"x-pdf-password")
        principal = request.principal
        return threads.deferToThread(self._signing.complete, principal.user_id, principal.name, state_id, value,
                                     password.decode("utf-8", "replace") if password else None).addCallback(
            lambda signed: _answer_signed(request, [signed]))


def _json_object(request: Any) -> dict[str, Any]:
    try:
        body = json.loads(request.content.read())
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested deeper than Python's stack
        raise SiegelError(Code.BAD_REQUEST, "the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise SiegelError(Code.BAD_REQUEST, "the request body must be a JSON object")
    return body


def _signed(request: Any, body: bytes, content_type: bytes) -> bytes:
    request.setResponseCode(200)
    request.setHeader(b"content-type", content_type)
    return body


def _parts(request: Any) -> tuple[bytes, str, dict[str, bytes]]:
    """The signed input, its name and detached documents: the body, or the multipart/form-data parts
    ``signature`` (the signed input) and ``document`` (detached data, named by its filename)."""
    ctype = (request.getHeader(b"content-type") or b"").decode("latin-1")
    body = request.content.read()
    if not ctype.lower().startswith("multipart/"):
        return body, _query(request, "name", "document"), {}
    message = BytesParser(policy=email_policy.HTTP).parsebytes(b"Content-Type: " + ctype.encode("latin-1")
                                                               + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise SiegelError(Code.BAD_REQUEST, "a multipart body without parts")
    signature: tuple[bytes, str] | None = None
    detached: dict[str, bytes] = {}
    for part in message.iter_parts():
        field = part.get_param("name", header="content-disposition")
        content = part.get_payload(decode=True) or b""
        filename = part.get_filename() or str(field)
        if field == "signature":
            signature = (content, filename)
        elif field == "document":
            detached[filename] = content
        else:
            raise SiegelError(Code.BAD_REQUEST, f"multipart part {field!r}: expected 'signature' and 'document' parts")
    if signature is None:
        raise SiegelError(Code.BAD_REQUEST, "the multipart body has no 'signature' part")
    return signature[0], signature[1], detached


class Verify(resource.Resource):
    """``POST /api/v1/verify``: the signed document (or a multipart ``signature`` + ``document`` pair; or the
    detached data's ``digest`` + ``digestAlgorithm`` as query) → the report as JSON, the ETSI TS 119 102-2
    XML report with ``Accept: application/xml``, or the readable report PDF with ``Accept: application/pdf`` (in
    the brand of the calling API client, else of the request's host); ``at`` (ISO time) verifies at another
    time."""

    isLeaf = True

    def __init__(self, verification: VerificationService, brands: BrandService) -> None:
        super().__init__()
        self._verification = verification
        self._brands = brands

    def render_POST(self, request: Any) -> int:
        return render_deferred(request, lambda: self._start(request))

    def _start(self, request: Any) -> Any:
        data, name, detached = _parts(request)
        digests: dict[str, tuple[str, bytes]] = {}
        if _query(request, "digest", ""):
            algorithm = DIGESTS[_choice(request, "digestAlgorithm", "SHA-256", tuple(DIGESTS))]
            digest = _b64(_query(request, "digest", ""), "digest")
            digests[_query(request, "documentName", "document")] = (algorithm.value, digest)
        at = _query(request, "at", "")
        moment = parse_validation_time(at, "at") if at else None
        accept = request.getHeader(b"accept") or b""
        answer = next((kind for kind in (b"application/pdf", b"application/xml") if kind in accept), None)
        password = request.getHeader(b"x-pdf-password")
        client_key, host = request.principal.client, (request.getHeader(b"host") or b"").decode("latin-1")

        def verify() -> bytes | dict[str, Any]:
            report = self._verification.verify(data, name=name, detached=detached, detached_digests=digests, at=moment,
                                               password=password.decode("utf-8", "replace") if password else None)
            if answer == b"application/pdf":
                return report_pdf(self._brands, self._brands.for_request(client_key, host), to_json(report))
            return to_etsi_xml(report) if answer == b"application/xml" else to_json(report)

        return threads.deferToThread(verify).addCallback(
            lambda out: json_response(request, 200, out) if isinstance(out, dict) else _signed(request, out, answer))


class OpenApi(resource.Resource):
    """``GET /api/v1/openapi.json``."""

    isLeaf = True

    def __init__(self, public_base_url: str) -> None:
        super().__init__()
        self._url = public_base_url

    def render_GET(self, request: Any) -> bytes:
        return json_response(request, 200, openapi.document(self._url), b"application/openapi+json")


class ApiV1(resource.Resource):
    def __init__(self, signing: SigningService, verification: VerificationService, public_base_url: str,
                 remote: Remote | None = None, remote_overview: Callable[[], list[dict[str, Any]]] | None = None,
                 *, brands: BrandService) -> None:
        super().__init__()
        self.putChild(b"verify", Verify(verification, brands))
        self.putChild(b"whoami", WhoAmI())
        self.putChild(b"openapi.json", OpenApi(public_base_url))
        self.putChild(b"sign", Sign(signing, brands, remote))
        if remote_overview is not None:
            remote_signing = resource.Resource()
            remote_signing.putChild(b"accounts", RemoteAccounts(remote_overview))
            self.putChild(b"remote-signing", remote_signing)
        self.putChild(b"sign-hash", SignHash(signing))

    def getChild(self, path: bytes, request: Any) -> resource.IResource:
        return _NotFound()

    def render_GET(self, request: Any) -> bytes:
        return json_response(request, 200, {"name": "Siegel", "version": __version__, "api": "v1"})
