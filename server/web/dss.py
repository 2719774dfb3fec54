"""OASIS DSS v1.0 over SOAP 1.1 at ``/dss``: the contract-first Sign and Verify endpoint.

The contract is ours: ``wsdl/dss.wsdl`` with the schemas it imports from ``schemas/``, served at
``GET /dss?wsdl`` and ``GET /dss?xsd=NAME`` with every location made absolute for this server.
``POST /dss`` goes to spyne, hosted as a WSGI application in Twisted's WSGI container (spyne's own
Twisted transport does not work with this Twisted). Spyne routes on the body element only; the
envelope is parsed by :func:`server.xmlsafe.parse_xml`, the body travels as the raw lxml element in
both directions (spyne's models would drop the DSS open content) and is validated against our
schema before the operation runs. Every failure is a SOAP fault with the DSS Result in its detail.
"""

from __future__ import annotations

import copy
import logging
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, urlsplit

from lxml import etree
from spyne import Application, AnyXml, Service, rpc
from spyne.error import ResourceNotFoundError
from spyne.model.fault import Fault
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request
from twisted.web.wsgi import WSGIResource

from server.config import Settings
from server.signing.service import SigningService
from server.validation.model import Indication
from server.validation.service import VerificationService
from server.web.dss_sign import parse_sign_request, sign_response
from server.web.dss_verify import parse_verify_request, verify_response
from server.errors import DSS_MINOR, Code, SiegelError
from server.web.soap import DSS_NS, SOAP11_ENV, SOAP_CONTENT_TYPE, soap_envelope, soap_fault, soap_fault_envelope
from server.xmlsafe import parse_trusted_file, parse_xml

log = logging.getLogger("siegel.dss")

REPO = Path(__file__).resolve().parents[2]
WSDL_FILE = REPO / "wsdl" / "dss.wsdl"
SCHEMA_DIR = REPO / "schemas"
ROOT_SCHEMA = "siegel-dss-core.xsd"
PATH = "/dss"
SIEGEL_PROFILE = "urn:siegel:dss:1.0:profile"
"""The Profile a response names when its request named none."""

_XS = "http://www.w3.org/2001/XMLSchema"
_WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
_SCHEMA_REFS = etree.XPath("//xs:import[@schemaLocation] | //xs:include[@schemaLocation]", namespaces={"xs": _XS})
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


class RawElement(AnyXml):
    """A body element kept exactly as parsed or built: spyne neither models nor rewrites it."""


class _SiegelFault(Fault):
    """A spyne fault carrying the SiegelError it reports."""

    def __init__(self, error: SiegelError) -> None:
        super().__init__("Client" if error.kind.major.endswith(":RequesterError") else "Server", error.message)
        self.error = error


def _as_error(fault: Fault) -> SiegelError:
    """The SiegelError a fault stands for; spyne's own server faults never show their text."""
    if isinstance(fault, _SiegelFault):
        return fault.error
    if isinstance(fault, ResourceNotFoundError):
        return SiegelError(Code.BAD_REQUEST, f"{fault.faultstring}: /dss offers the operations Sign "
                                             "(dss:SignRequest) and Verify (dss:VerifyRequest)")
    if fault.faultcode.startswith("Client"):
        return SiegelError(Code.BAD_REQUEST, fault.faultstring)
    return SiegelError(Code.INTERNAL, "internal error")


class SiegelSoap11(Soap11):
    """Spyne's SOAP 1.1 with Siegel's parser, envelope checks, raw body elements and fault shape."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(parse_xsi_type=False)
        self.max_depth = max_depth
        self.deserialization_handlers[RawElement] = self._raw_from_element
        self.serialization_handlers[RawElement] = self._raw_to_parent

    def create_in_document(self, ctx: Any, charset: str | None = None) -> None:
        """Parse the request with the hardened parser (the transport checked method and size)."""
        try:
            ctx.in_document = (parse_xml(b"".join(ctx.in_string), max_depth=self.max_depth), {})
        except SiegelError as exc:
            raise _SiegelFault(exc) from None

    def decompose_incoming_envelope(self, ctx: Any, message: Any = Soap11.REQUEST) -> None:
        envelope, _ = ctx.in_document
        if envelope.tag != f"{{{SOAP11_ENV}}}Envelope":
            raise _SiegelFault(SiegelError(Code.BAD_REQUEST, f"expected a SOAP 1.1 Envelope, got {envelope.tag!r}"))
        body = envelope.find(f"{{{SOAP11_ENV}}}Body")
        entries = [] if body is None else [child for child in body if isinstance(child.tag, str)]
        if len(entries) != 1:
            raise _SiegelFault(SiegelError(Code.BAD_REQUEST, "the SOAP Body must hold exactly one element, "
                                                             f"it holds {len(entries)}"))
        ctx.in_document = envelope
        ctx.in_header_doc = None
        ctx.in_body_doc = entries[0]
        ctx.method_request_string = entries[0].tag

    def serialize(self, ctx: Any, message: Any) -> None:
        """Build the response envelope ourselves: spyne's declares the application's namespaces,
        which rewrites the prefixes of the raw body element (see soap_envelope)."""
        self.event_manager.fire_event("before_serialize", ctx)
        if ctx.out_error is None:
            ctx.out_document, body = soap_envelope()
            self.to_parent(ctx, ctx.descriptor.out_message, ctx.out_object[0], body, DSS_NS)
        else:
            ctx.out_document = soap_fault_envelope(_as_error(ctx.out_error))
        self.event_manager.fire_event("after_serialize", ctx)

    @staticmethod
    def _raw_from_element(ctx: Any, cls: type, element: etree._Element) -> etree._Element:
        return element

    @staticmethod
    def _raw_to_parent(ctx: Any, cls: type, inst: etree._Element, parent: etree._Element, ns: str,
                       *args: Any, **kwargs: Any) -> None:
        parent.append(inst)


class DssService(Service):
    """The DSS operations; each receives and returns the raw body element."""

    @rpc(RawElement, _returns=RawElement, _body_style="bare",
         _in_message_name=f"{{{DSS_NS}}}SignRequest", _out_message_name=f"{{{DSS_NS}}}SignResponse")
    def sign(ctx: Any, request: etree._Element) -> etree._Element:
        signing: SigningService = ctx.app.siegel_signing
        user_id, user_name = _principal(ctx)
        try:
            order = parse_sign_request(request, ctx.app.siegel_default_level, ctx.app.siegel_max_depth)
            signed = signing.sign(user_id, user_name, order)
        except SiegelError as exc:
            return sign_response(request, SIEGEL_PROFILE, [], exc)
        return sign_response(request, SIEGEL_PROFILE, signed)

    @rpc(RawElement, _returns=RawElement, _body_style="bare",
         _in_message_name=f"{{{DSS_NS}}}VerifyRequest", _out_message_name=f"{{{DSS_NS}}}VerifyResponse")
    def verify(ctx: Any, request: etree._Element) -> etree._Element:
        verification: VerificationService = ctx.app.siegel_verification
        signing: SigningService = ctx.app.siegel_signing
        _, user_name = _principal(ctx)
        depth = ctx.app.siegel_max_depth
        try:
            order = parse_verify_request(request, depth)
            report = verification.verify(order.signature, name=order.name, detached=order.detached,
                                         detached_digests=order.detached_digests, at=order.at)
            updated = None
            if order.update_to is not None:
                if any(s.indication is Indication.TOTAL_FAILED for s in report.signatures):
                    raise SiegelError(Code.BAD_REQUEST, "ReturnUpdatedSignature: an invalid signature is not raised "
                                                        "to a higher level", DSS_MINOR + "invalid:IncorrectSignature")
                updated = signing.extend(user_name, order.signature, order.update_to[0], order.detached)
        except SiegelError as exc:
            return verify_response(request, SIEGEL_PROFILE, None, None, error=exc)
        return verify_response(request, SIEGEL_PROFILE, report, order, updated, max_depth=depth)


PRINCIPAL_HEADER = b"x-siegel-principal"  # set by DssResource from the authenticated account, never by clients


def _principal(ctx: Any) -> tuple[int, str]:
    value = ctx.transport.req.get("HTTP_X_SIEGEL_PRINCIPAL", "")
    user_id, _, name = value.partition(":")
    if not user_id.isdigit() or not name:
        raise _SiegelFault(SiegelError(Code.UNAUTHENTICATED, "no authenticated account reached the DSS service"))
    return int(user_id), name


def _schema_validator(schema_doc: etree._Element) -> Callable[[Any], None]:
    """A spyne ``method_call`` listener refusing a body that does not match the schema ``schema_doc``.

    Each thread compiles its own copy: lxml validates without the GIL but keeps one error log per
    schema object, which concurrent validations would overwrite.
    """
    compiled = threading.local()

    def validate(ctx: Any) -> None:
        if not hasattr(compiled, "schema"):
            compiled.schema = etree.XMLSchema(schema_doc)
        schema: etree.XMLSchema = compiled.schema
        body = ctx.in_body_doc  # the element itself even where spyne made the argument None (xsi:nil)
        if not schema.validate(body):
            first = schema.error_log.filter_from_errors()[0]
            raise _SiegelFault(SiegelError(Code.SCHEMA_INVALID, f"{etree.QName(body).localname} does not "
                                                                f"match the DSS schema at line {first.line}: "
                                                                f"{first.message}"))

    return validate


def build_wsgi_app(settings: Settings, schema_doc: etree._Element, signing: SigningService,
                   verification: VerificationService) -> Callable[..., Iterable[bytes]]:
    """The spyne application as a WSGI callable that answers a SOAP fault instead of ever crashing."""
    app = Application([DssService], tns=DSS_NS, name="DigitalSignatureService",
                      in_protocol=SiegelSoap11(settings.server.max_xml_depth),
                      out_protocol=SiegelSoap11(settings.server.max_xml_depth))
    app.siegel_signing = signing  # what the operations call (spyne's services are classes without state)
    app.siegel_verification = verification
    app.siegel_default_level = settings.signing.default_level
    app.siegel_max_depth = settings.server.max_xml_depth
    app.event_manager.add_listener("method_call", _schema_validator(schema_doc))
    spyne_app = WsgiApplication(app, max_content_length=settings.server.max_request_bytes)

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            return list(spyne_app(environ, start_response))
        except Exception:
            log.exception("DSS request failed inside spyne")
            start_response("500 Internal Server Error", [("Content-Type", SOAP_CONTENT_TYPE)], sys.exc_info())
            return [soap_fault(SiegelError(Code.INTERNAL, "internal error"))]

    return guarded


def _imported_names(doc: etree._Element) -> list[str]:
    return [Path(ref.get("schemaLocation")).name for ref in _SCHEMA_REFS(doc)]


@dataclass(frozen=True)
class Contract:
    """The WSDL and the schemas it imports, parsed once, with their locations still relative."""

    wsdl: etree._Element
    schemas: dict[str, etree._Element]

    @classmethod
    def load(cls) -> "Contract":
        """Read wsdl/dss.wsdl and, transitively, every file of schemas/ it imports."""
        wsdl = parse_trusted_file(WSDL_FILE)
        schemas: dict[str, etree._Element] = {}
        pending = _imported_names(wsdl)
        while pending:
            name = pending.pop()
            if name not in schemas:
                schemas[name] = parse_trusted_file(SCHEMA_DIR / name)
                pending.extend(_imported_names(schemas[name]))
        return cls(wsdl, schemas)

    def render_wsdl(self, base_url: str) -> bytes:
        """The WSDL with its service address and schema locations under ``base_url``."""
        doc = copy.deepcopy(self.wsdl)
        for address in doc.iter(f"{{{_WSDL_SOAP}}}address"):
            address.set("location", base_url + PATH)
        return self._absolute(doc, base_url)

    def render_schema(self, name: str, base_url: str) -> bytes | None:
        """The schema ``name`` with absolute import locations, or None for a name not in the contract."""
        if name not in self.schemas:
            return None
        return self._absolute(copy.deepcopy(self.schemas[name]), base_url)

    @staticmethod
    def _absolute(doc: etree._Element, base_url: str) -> bytes:
        for ref in _SCHEMA_REFS(doc):
            ref.set("schemaLocation", f"{base_url}{PATH}?xsd={Path(ref.get('schemaLocation')).name}")
        return etree.tostring(doc, xml_declaration=True, encoding="UTF-8")


def base_url(request: Request, configured: str) -> str:
    """The base URL for locations in the WSDL: ``configured`` (server.public_base_url) when the
    client reached us under its host, else the scheme and Host the client used."""
    configured = configured.rstrip("/")
    host = (request.getHeader(b"host") or b"").decode("latin-1")
    if not _HOST.match(host) or host.lower() == urlsplit(configured).netloc.lower():
        return configured
    return ("https" if request.isSecure() else "http") + "://" + host


class DssResource(Resource):
    """``/dss``: GET serves the contract, POST the SOAP operations."""

    isLeaf = True

    def __init__(self, settings: Settings, contract: Contract, soap: IResource) -> None:
        super().__init__()
        self._public_base_url = settings.server.public_base_url
        self._contract = contract
        self._soap = soap

    def render_GET(self, request: Request) -> bytes:
        query = request.uri.partition(b"?")[2].decode("latin-1")
        args = {key.lower(): values for key, values in parse_qs(query, keep_blank_values=True).items()}
        base = base_url(request, self._public_base_url)
        if "wsdl" in args:
            body: bytes | None = self._contract.render_wsdl(base)
        elif "xsd" in args:
            body = self._contract.render_schema(args["xsd"][0], base)
        else:
            body = None
        if body is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            names = ", ".join(sorted(self._contract.schemas))
            return f"not found: GET {PATH}?wsdl for the WSDL, {PATH}?xsd=NAME for its schemas ({names})\n".encode()
        request.setHeader(b"content-type", SOAP_CONTENT_TYPE.encode())
        return body

    def render_POST(self, request: Request) -> Any:
        # Twisted's WSGI container passes no CONTENT_LENGTH for a chunked body and spyne then reads
        # nothing: the body is complete in request.content here, so state its length.
        content = request.content
        content.seek(0, 2)
        request.requestHeaders.setRawHeaders(b"content-length", [str(content.tell()).encode()])
        content.seek(0)
        principal = request.principal  # the guard in front of /dss put it there
        request.requestHeaders.setRawHeaders(PRINCIPAL_HEADER, [f"{principal.user_id}:{principal.name}".encode()])
        return self._soap.render(request)


def build_dss_resource(settings: Settings, signing: SigningService, verification: VerificationService) -> IResource:
    """The ``/dss`` resource; the schemas are loaded and compiled here, once."""
    from twisted.internet import reactor

    contract = Contract.load()
    schema_doc = parse_trusted_file(SCHEMA_DIR / ROOT_SCHEMA)
    etree.XMLSchema(schema_doc)  # a broken schema stops the start, not the first request
    soap = WSGIResource(reactor, reactor.getThreadPool(), build_wsgi_app(settings, schema_doc, signing, verification))  # type: ignore[attr-defined]
    return DssResource(settings, contract, soap)
