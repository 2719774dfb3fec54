"""BSI TR-ESOR S.4 (TR-03125 E, v1.3) over SOAP 1.1 at ``/archive/s4``: the archive's standard interface.

The contract is the official one: ``wsdl/tr-esor-S-4-v1.3.wsdl`` with the schemas it imports from ``schemas/``,
served at ``GET /archive/s4?wsdl`` and ``?xsd=NAME`` with absolute locations (:class:`server.web.dss.Contract`).
``POST /archive/s4`` is :class:`S4Endpoint` in the reactor's thread pool (:class:`server.web.dss.SoapResource`),
without spyne: the envelope is parsed by :func:`server.xmlsafe.parse_xml`, the one body element is validated
against the official schemas and dispatched by its name to :class:`server.web.s4_operations.S4Operations`,
whose lxml-built response is validated as well before it is sent (a response the schema refuses is a bug:
logged, answered with a fault).

What goes wrong is said the TR-ESOR way where the operation is known: the operation's response with a
``dss:Result`` of eCard ``…/resultmajor#error`` (``#warning``) and the TR-ESOR ResultMinor (``…/al/common#
parameterError`` for a request the schema refuses, ``…/arl/unknownAOID``, …), HTTP 200. Where no operation can
answer (not XML, hostile XML, not a SOAP 1.1 envelope, an unknown body element) it is a SOAP fault with the DSS
Result in its detail, HTTP 500, as on ``/dss``; so are the guard's refusals (only its 401 challenge keeps 401).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from lxml import etree

from server.config import Settings
from server.errors import Code, SiegelError
from server.web.dss import REPO, SCHEMA_DIR, Contract, SoapResource
from server.web.soap import DSS_NS, body_entry, dss_result, soap_envelope, soap_fault
from server.xmlsafe import parse_trusted_file, parse_xml

if TYPE_CHECKING:
    from server.archive.service import ArchiveService
    from server.identity.users import Principal
    from server.web.s4_operations import S4Operations

log = logging.getLogger("siegel.s4")

PATH = "/archive/s4"
WSDL_FILE = REPO / "wsdl" / "tr-esor-S-4-v1.3.wsdl"
ROOT_SCHEMA = "tr-esor-interfaces-v1.3.xsd"
TR_NS = "http://www.bsi.bund.de/tr-esor/api/1.3"
PROFILE = "http://www.bsi.bund.de/tr-esor/V1.3.0/profile/S.4/V1.0"
"""The S.4 profile of TR-ESOR 1.3 (RetrieveInfo); the Profile of a response whose request named none."""
RESULT_MAJOR = "http://www.bsi.bund.de/ecard/api/1.1/resultmajor#"
COMMON_MINOR = "http://www.bsi.bund.de/ecard/api/1.1/resultminor/al/common#"
ARL_MINOR = TR_NS + "/resultminor/arl/"
SAL_MINOR = "http://www.bsi.bund.de/ecard/api/1.1/resultminor/sal#"
TR_MINORS = (ARL_MINOR, COMMON_MINOR, SAL_MINOR)

OPERATIONS: dict[str, tuple[str, str]] = {
    f"{{{TR_NS}}}ArchiveSubmissionRequest": ("ArchiveSubmission", f"{{{TR_NS}}}ArchiveSubmissionResponse"),
    f"{{{TR_NS}}}ArchiveUpdateRequest": ("ArchiveUpdate", f"{{{TR_NS}}}ArchiveUpdateResponse"),
    f"{{{TR_NS}}}ArchiveRetrievalRequest": ("ArchiveRetrieval", f"{{{TR_NS}}}ArchiveRetrievalResponse"),
    f"{{{TR_NS}}}ArchiveEvidenceRequest": ("ArchiveEvidence", f"{{{TR_NS}}}ArchiveEvidenceResponse"),
    f"{{{TR_NS}}}ArchiveDeletionRequest": ("ArchiveDeletion", f"{{{TR_NS}}}ArchiveDeletionResponse"),
    f"{{{TR_NS}}}ArchiveDataRequest": ("ArchiveData", f"{{{TR_NS}}}ArchiveDataResponse"),
    f"{{{DSS_NS}}}VerifyRequest": ("Verify", f"{{{DSS_NS}}}VerifyResponse"),
    f"{{{TR_NS}}}RetrieveInfoRequest": ("RetrieveInfo", f"{{{TR_NS}}}RetrieveInfoResponse"),
}
"""Body element → (WSDL operation, response element). ArchiveTrace is not offered (optional in S.4)."""


def tr_result(error: SiegelError) -> tuple[str, str, str]:
    """ResultMajor, ResultMinor and message of a refused TR-ESOR request: the TR-ESOR minor the error carries,
    else the eCard/TR-ESOR one of its code."""
    minor = error.minor if error.minor and error.minor.startswith(TR_MINORS) else None
    if minor is None:
        if error.code is Code.NOT_FOUND:
            minor = ARL_MINOR + "unknownAOID"
        elif error.code in (Code.FORBIDDEN, Code.UNAUTHENTICATED):
            minor = COMMON_MINOR + "noPermission"
        elif error.code is Code.NOT_SUPPORTED:
            minor = ARL_MINOR + "notSupported"
        elif error.kind.major.endswith(":RequesterError"):
            minor = COMMON_MINOR + "parameterError"
        else:
            minor = COMMON_MINOR + "internalError"
    return RESULT_MAJOR + "error", minor, error.message


def response_element(tag: str, request: etree._Element, major: str, minor: str | None, message: str | None,
                     nsmap: dict[str | None, str] | None = None) -> etree._Element:
    """The response ``tag`` to ``request``: its RequestID, a Profile, the dss:Result (message in English)."""
    response = etree.Element(tag, nsmap=nsmap or {"tr": TR_NS, "dss": DSS_NS})
    if request.get("RequestID") is not None:
        response.set("RequestID", request.get("RequestID"))
    response.set("Profile", request.get("Profile") or PROFILE)
    result = dss_result(major, minor, message or "")
    if message is None:
        result.remove(result[-1])
    response.append(result)
    return response


def error_response(tag: str, request: etree._Element, error: SiegelError) -> etree._Element:
    return response_element(tag, request, *tr_result(error))


class TrEsorSchema:
    """The official TR-ESOR schemas compiled once per thread (lxml keeps one error log per schema object)."""

    def __init__(self) -> None:
        self._doc = parse_trusted_file(SCHEMA_DIR / ROOT_SCHEMA)
        self._local = threading.local()
        self._compiled()  # a broken schema stops the start, not the first request

    def _compiled(self) -> etree.XMLSchema:
        if not hasattr(self._local, "schema"):
            self._local.schema = etree.XMLSchema(self._doc)
        schema: etree.XMLSchema = self._local.schema
        return schema

    def problem(self, element: etree._Element) -> str | None:
        """None when ``element`` is valid, else where and why not."""
        schema = self._compiled()
        if schema.validate(element):
            return None
        first = schema.error_log.filter_from_errors()[0]
        return f"line {first.line}: {first.message}"


class S4Endpoint:
    """Envelope in, envelope out: parse, validate, dispatch, validate the answer. Blocking; call it off the reactor."""

    def __init__(self, operations: S4Operations, schema: TrEsorSchema, max_depth: int) -> None:
        self._max_depth = max_depth
        self._schema = schema
        self._handlers: dict[str, Callable[[Principal, etree._Element], etree._Element]] = {
            tag: getattr(operations, _snake(name)) for tag, (name, _) in OPERATIONS.items()}

    def handle(self, body: bytes, principal: Principal) -> tuple[int, bytes]:
        """HTTP status and SOAP envelope answering the request ``body`` of ``principal``."""
        try:
            request = body_entry(parse_xml(body, max_depth=self._max_depth))
        except SiegelError as exc:
            return 500, soap_fault(exc)
        if request.tag not in OPERATIONS:
            offered = ", ".join(f"{name} ({etree.QName(tag).localname})" for tag, (name, _) in OPERATIONS.items())
            return 500, soap_fault(SiegelError(Code.BAD_REQUEST, f"{etree.QName(request).localname} in "
                                                                 f"{etree.QName(request).namespace!r}: {PATH} offers "
                                                                 f"the TR-ESOR S.4 operations {offered}"))
        name, response_tag = OPERATIONS[request.tag]
        problem = self._schema.problem(request)
        if problem is not None:
            response = error_response(response_tag, request, SiegelError(
                Code.SCHEMA_INVALID, f"{etree.QName(request).localname} does not match the TR-ESOR schema at "
                                     f"{problem}"))
        else:
            try:
                response = self._handlers[request.tag](principal, request)
            except SiegelError as exc:
                log.info("%s refused for %s: %s", name, principal.name, exc.message)
                response = error_response(response_tag, request, exc)
            except Exception:
                log.exception("%s failed", name)
                return 500, soap_fault(SiegelError(Code.INTERNAL, "internal error"))
        invalid = self._schema.problem(response)
        if invalid is not None:
            log.error("%s: the response does not match the TR-ESOR schema at %s", name, invalid)
            return 500, soap_fault(SiegelError(Code.INTERNAL, "internal error: the response does not match the schema"))
        envelope, soap_body = soap_envelope()
        soap_body.append(response)
        return 200, etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def build_s4_resource(settings: Settings, archive: ArchiveService) -> SoapResource:
    """The ``/archive/s4`` resource; contract and schemas are loaded and compiled here, once."""
    from server.web.s4_operations import S4Operations

    schema = TrEsorSchema()
    depth = settings.server.max_xml_depth
    return SoapResource(settings, Contract.load(WSDL_FILE, PATH),
                        S4Endpoint(S4Operations(archive, schema, depth), schema, depth))
