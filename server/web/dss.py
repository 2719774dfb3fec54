"""OASIS DSS v1.0 over SOAP 1.1 at ``/dss``: the contract-first Sign and Verify endpoint.

The contract is ours: ``wsdl/dss.wsdl`` with the schemas it imports from ``schemas/``, served at
``GET /dss?wsdl`` and ``GET /dss?xsd=NAME`` with every location made absolute for this server.
``POST /dss`` is :class:`DssEndpoint`, run in the reactor's thread pool: the envelope is parsed by
:func:`server.xmlsafe.parse_xml`, the operation is the Body's element, which travels as the raw lxml
element in both directions and is validated against our schema before the operation runs. (Spyne
served this once: its object models drop the DSS open content, and with its WSGI hosting and a full
``gc.collect()`` every second it cost more CPU than the signing itself.) Every failure is a SOAP fault
with the DSS Result in its detail.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from lxml import etree
from twisted.internet import threads
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from server.branding.service import BrandService
from server.config import Settings
from server.identity.users import Principal
from server.signing.service import SigningService
from server.validation.model import Indication
from server.validation.service import VerificationService
from server.web.dss_sign import parse_sign_request, sign_response
from server.web.dss_verify import parse_verify_request, verify_response
from server.errors import DSS_MINOR, Code, SiegelError
from server.web.soap import DSS_NS, SOAP_CONTENT_TYPE, SoapEndpoint, body_entry, soap_envelope, soap_fault
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


Operation = Callable[[etree._Element, Principal], etree._Element]


class DssEndpoint:
    """``POST /dss`` without the transport: a SOAP 1.1 request's bytes in, the status and the response out.

    The envelope is parsed by the hardened parser, its Body must hold exactly one element, which names
    the operation and is validated against our schema before the operation runs. Operations answer
    their own errors in the DSS Result of a normal response; what goes wrong before (or unexpectedly
    inside) one is a SOAP fault with HTTP 500.
    """

    def __init__(self, settings: Settings, schema_doc: etree._Element, signing: SigningService,
                 verification: VerificationService, brands: BrandService | None = None) -> None:
        self._signing = signing
        self._brands = brands  # None: a PDF's default stamp carries no API client's brand
        self._verification = verification
        self._default_level = settings.signing.default_level
        self._max_depth = settings.server.max_xml_depth
        self._schema_doc = schema_doc
        # Each thread compiles its own schema: lxml validates without the GIL but keeps one error log
        # per schema object, which concurrent validations would overwrite.
        self._compiled = threading.local()
        self._operations: dict[str, Operation] = {f"{{{DSS_NS}}}SignRequest": self._sign,
                                                  f"{{{DSS_NS}}}VerifyRequest": self._verify}

    def handle(self, body: bytes, principal: Principal) -> tuple[int, bytes]:
        """HTTP status and SOAP envelope answering the request ``body`` of the authenticated ``principal``."""
        try:
            entry = body_entry(parse_xml(body, max_depth=self._max_depth))
            operation = self._operations.get(entry.tag)
            if operation is None:
                raise SiegelError(Code.BAD_REQUEST, f"{entry.tag} is not an operation of {PATH}: it offers Sign "
                                                    "(dss:SignRequest) and Verify (dss:VerifyRequest)")
            self._validate(entry)
            response = operation(entry, principal)
        except SiegelError as exc:
            return 500, soap_fault(exc)
        except Exception:
            log.exception("DSS request failed")
            return 500, soap_fault(SiegelError(Code.INTERNAL, "internal error"))
        # The envelope declares no namespace but SOAP's, so the response keeps its own prefixes.
        envelope, soap_body = soap_envelope()
        soap_body.append(response)
        return 200, etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")

    def _validate(self, entry: etree._Element) -> None:
        """Refuse a body element that does not match our schema."""
        schema: etree.XMLSchema | None = getattr(self._compiled, "schema", None)
        if schema is None:
            schema = self._compiled.schema = etree.XMLSchema(self._schema_doc)
        if not schema.validate(entry):
            first = schema.error_log.filter_from_errors()[0]
            raise SiegelError(Code.SCHEMA_INVALID, f"{etree.QName(entry).localname} does not match the DSS schema "
                                                   f"at line {first.line}: {first.message}")

    def _sign(self, request: etree._Element, principal: Principal) -> etree._Element:
        try:
            order = parse_sign_request(request, self._default_level, self._max_depth)
            if self._brands is not None:
                order = self._brands.client_stamp(order, principal.client)
            signed = self._signing.sign(principal.user_id, principal.name, order)
        except SiegelError as exc:
            return sign_response(request, SIEGEL_PROFILE, [], exc)
        return sign_response(request, SIEGEL_PROFILE, signed)

    def _verify(self, request: etree._Element, principal: Principal) -> etree._Element:
        depth = self._max_depth
        try:
            order = parse_verify_request(request, depth)
            report = self._verification.verify(order.signature, name=order.name, detached=order.detached,
                                               detached_digests=order.detached_digests, at=order.at)
            updated = None
            if order.update_to is not None:
                if any(s.indication is Indication.TOTAL_FAILED for s in report.signatures):
                    raise SiegelError(Code.BAD_REQUEST, "ReturnUpdatedSignature: an invalid signature is not raised "
                                                        "to a higher level", DSS_MINOR + "invalid:IncorrectSignature")
                updated = self._signing.extend(principal.name, order.signature, order.update_to[0], order.detached)
        except SiegelError as exc:
            return verify_response(request, SIEGEL_PROFILE, None, None, error=exc)
        return verify_response(request, SIEGEL_PROFILE, report, order, updated, max_depth=depth)


def _imported_names(doc: etree._Element) -> list[str]:
    return [Path(ref.get("schemaLocation")).name for ref in _SCHEMA_REFS(doc)]


@dataclass(frozen=True)
class Contract:
    """A WSDL and the schemas it imports, parsed once, with their locations still relative; served at ``path``."""

    wsdl: etree._Element
    schemas: dict[str, etree._Element]
    path: str = PATH

    @classmethod
    def load(cls, wsdl_file: Path = WSDL_FILE, path: str = PATH) -> "Contract":
        """Read ``wsdl_file`` (wsdl/dss.wsdl) and, transitively, every file of schemas/ it imports."""
        wsdl = parse_trusted_file(wsdl_file)
        schemas: dict[str, etree._Element] = {}
        pending = _imported_names(wsdl)
        while pending:
            name = pending.pop()
            if name not in schemas:
                schemas[name] = parse_trusted_file(SCHEMA_DIR / name)
                pending.extend(_imported_names(schemas[name]))
        return cls(wsdl, schemas, path)

    def render_wsdl(self, base_url: str) -> bytes:
        """The WSDL with its service address and schema locations under ``base_url``."""
        doc = copy.deepcopy(self.wsdl)
        for address in doc.iter(f"{{{_WSDL_SOAP}}}address"):
            address.set("location", base_url + self.path)
        return self._absolute(doc, base_url)

    def render_schema(self, name: str, base_url: str) -> bytes | None:
        """The schema ``name`` with absolute import locations, or None for a name not in the contract."""
        if name not in self.schemas:
            return None
        return self._absolute(copy.deepcopy(self.schemas[name]), base_url)

    def _absolute(self, doc: etree._Element, base_url: str) -> bytes:
        for ref in _SCHEMA_REFS(doc):
            ref.set("schemaLocation", f"{base_url}{self.path}?xsd={Path(ref.get('schemaLocation')).name}")
        return etree.tostring(doc, xml_declaration=True, encoding="UTF-8")

    def render_get(self, request: Request, public_base_url: str) -> bytes:
        """``GET path?wsdl`` (the WSDL), ``GET path?xsd=NAME`` (one of its schemas), else 404 naming both."""
        query = request.uri.partition(b"?")[2].decode("latin-1")
        args = {key.lower(): values for key, values in parse_qs(query, keep_blank_values=True).items()}
        base = base_url(request, public_base_url)
        if "wsdl" in args:
            body: bytes | None = self.render_wsdl(base)
        elif "xsd" in args:
            body = self.render_schema(args["xsd"][0], base)
        else:
            body = None
        if body is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            names = ", ".join(sorted(self.schemas))
            return (f"not found: GET {self.path}?wsdl for the WSDL, {self.path}?xsd=NAME for its schemas "
                    f"({names})\n").encode()
        request.setHeader(b"content-type", SOAP_CONTENT_TYPE.encode())
        return body


def base_url(request: Request, configured: str) -> str:
    """The base URL for locations in the WSDL: ``configured`` (server.public_base_url) when the
    client reached us under its host, else the scheme and Host the client used."""
    configured = configured.rstrip("/")
    host = (request.getHeader(b"host") or b"").decode("latin-1")
    if not _HOST.match(host) or host.lower() == urlsplit(configured).netloc.lower():
        return configured
    return ("https" if request.isSecure() else "http") + "://" + host


class SoapResource(Resource):
    """A SOAP path (``/dss``, ``/archive/s4``): GET serves the contract, POST the endpoint's operations."""

    isLeaf = True

    def __init__(self, settings: Settings, contract: Contract, endpoint: SoapEndpoint) -> None:
        super().__init__()
        self._public_base_url = settings.server.public_base_url
        self._contract = contract
        self._endpoint = endpoint

    def render_GET(self, request: Request) -> bytes:
        return self._contract.render_get(request, self._public_base_url)

    def render_POST(self, request: Request) -> int:
        """The operation runs in the reactor's thread pool; the body is complete in request.content here
        (the guard in front read its start and put the authenticated principal on the request)."""
        principal: Principal = request.principal  # type: ignore[attr-defined]
        request.content.seek(0)
        body = request.content.read()

        def answer(outcome: tuple[int, bytes]) -> None:
            if request.finished or request._disconnected:  # type: ignore[attr-defined]
                return
            status, envelope = outcome
            request.setResponseCode(status)
            request.setHeader(b"content-type", SOAP_CONTENT_TYPE.encode())
            request.setHeader(b"content-length", str(len(envelope)).encode())
            request.write(envelope)
            request.finish()

        threads.deferToThread(self._endpoint.handle, body, principal).addCallback(answer)
        return NOT_DONE_YET


def build_dss_resource(settings: Settings, signing: SigningService, verification: VerificationService,
                       brands: BrandService) -> IResource:
    """The ``/dss`` resource (a PDF's default stamp in the brand of the calling API client); the schemas are
    loaded and compiled here, once."""
    contract = Contract.load()
    schema_doc = parse_trusted_file(SCHEMA_DIR / ROOT_SCHEMA)
    etree.XMLSchema(schema_doc)  # a broken schema stops the start, not the first request
    return SoapResource(settings, contract, DssEndpoint(settings, schema_doc, signing, verification, brands))
