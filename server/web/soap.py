"""SOAP 1.1 faults and the DSS Result they carry, shared by every SOAP endpoint.

A fault names the side at fault (``soap:Client`` for a DSS RequesterError, ``soap:Server`` for a
ResponderError), says the message in ``faultstring`` and repeats the stable DSS code in its
``detail`` as a ``dss:Result``, so DSS clients see the same ResultMajor/ResultMinor as in a response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from lxml import etree

from server.errors import Code, SiegelError

if TYPE_CHECKING:
    from server.identity.users import Principal

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
DSS_NS = "urn:oasis:names:tc:dss:1.0:core:schema"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
SOAP_CONTENT_TYPE = "text/xml; charset=utf-8"


def dss_result(major: str, minor: str | None, message: str, lang: str = "en") -> etree._Element:
    """A ``dss:Result`` element: ResultMajor, the optional ResultMinor and a ResultMessage."""
    result = etree.Element(f"{{{DSS_NS}}}Result", nsmap={"dss": DSS_NS})
    etree.SubElement(result, f"{{{DSS_NS}}}ResultMajor").text = major
    if minor is not None:
        etree.SubElement(result, f"{{{DSS_NS}}}ResultMinor").text = minor
    text = etree.SubElement(result, f"{{{DSS_NS}}}ResultMessage", {XML_LANG: lang})
    text.text = message
    return result


def soap_envelope() -> tuple[etree._Element, etree._Element]:
    """A SOAP 1.1 envelope and its empty Body.

    The envelope declares no namespace but SOAP's: an element appended to the Body keeps its own
    prefixes and declarations (lxml would fold them into an ancestor's declaring the same URI,
    which changes prefixes a signature's canonical form depends on).
    """
    envelope = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap={"soap": SOAP11_ENV})
    return envelope, etree.SubElement(envelope, f"{{{SOAP11_ENV}}}Body")


def body_entry(envelope: etree._Element) -> etree._Element:
    """The one element in the Body of a SOAP 1.1 envelope (the operation), or SiegelError(BAD_REQUEST)."""
    if envelope.tag != f"{{{SOAP11_ENV}}}Envelope":
        raise SiegelError(Code.BAD_REQUEST, f"expected a SOAP 1.1 Envelope, got {envelope.tag!r}")
    body = envelope.find(f"{{{SOAP11_ENV}}}Body")
    entries = [] if body is None else [child for child in body if isinstance(child.tag, str)]
    if len(entries) != 1:
        raise SiegelError(Code.BAD_REQUEST, f"the SOAP Body must hold exactly one element, it holds {len(entries)}")
    return entries[0]


class SoapEndpoint(Protocol):
    """A SOAP endpoint without the transport (server.web.dss.SoapResource runs it in the thread pool)."""

    def handle(self, body: bytes, principal: Principal) -> tuple[int, bytes]:
        """HTTP status and SOAP envelope answering the request ``body`` of the authenticated ``principal``."""


def soap_fault_envelope(error: SiegelError) -> etree._Element:
    """The SOAP 1.1 envelope of a fault reporting ``error``."""
    kind = error.kind
    side = "Server" if kind.major.endswith(":ResponderError") else "Client"
    envelope, body = soap_envelope()
    fault = etree.SubElement(body, f"{{{SOAP11_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap:{side}"
    etree.SubElement(fault, "faultstring").text = error.message
    etree.SubElement(fault, "detail").append(dss_result(kind.major, error.result_minor, error.message))
    return envelope


def soap_fault(error: SiegelError) -> bytes:
    """The serialized SOAP 1.1 fault envelope for ``error``; send it with HTTP 500 and SOAP_CONTENT_TYPE."""
    return etree.tostring(soap_fault_envelope(error), xml_declaration=True, encoding="UTF-8")
