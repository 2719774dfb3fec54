"""One streaming scan of the start of a SOAP request for what the guard needs before the body is parsed:
the WS-Security UsernameToken of the ``soap:Header`` (read by :func:`server.identity.wssecurity.token_of`)
and the DSS operation the ``soap:Body`` asks for (read by :func:`server.web.auth.required_actions`).

The scan stops as soon as both are known (normally at the body element's start tag), at a DOCTYPE (then
it reports neither) and at anything that is not a SOAP 1.1 envelope. A request's scan is done once and
kept on the request (:func:`soap_prefix`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.web.soap import DSS_NS, SOAP11_ENV
from server.xmlsafe import StopScan, scan_prefix

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
_ENVELOPE, _HEADER, _BODY = f"{{{SOAP11_ENV}}}Envelope", f"{{{SOAP11_ENV}}}Header", f"{{{SOAP11_ENV}}}Body"
_SECURITY, _TOKEN = f"{{{WSSE}}}Security", f"{{{WSSE}}}UsernameToken"
_SIGN, _VERIFY = f"{{{DSS_NS}}}SignRequest", f"{{{DSS_NS}}}VerifyRequest"
_TR_ESOR = "{http://www.bsi.bund.de/tr-esor/api/1.3}"  # the S.4 requests at /archive/s4 (dss:VerifyRequest too)
ADMIN_NS = "urn:siegel:admin:1.0"  # the operations of /soap/admin (server.web.soap_admin)
_ADMIN = f"{{{ADMIN_NS}}}"
_OPTIONAL, _UPDATE = f"{{{DSS_NS}}}OptionalInputs", f"{{{DSS_NS}}}ReturnUpdatedSignature"


@dataclass
class SoapPrefix:
    """What the start of a SOAP request says.

    Header side: whether a ``wsse:Security`` header came before the first non-Header element of the
    envelope, how many ``wsse:UsernameToken`` it holds, the text and attributes of the first token's child
    elements, and a child element given twice (the token is then unusable). Body side: the DSS operation
    (``SignRequest`` / ``VerifyRequest``; a TR-ESOR S.4 or /soap/admin request's local name; None for anything else)
    and whether a VerifyRequest's
    OptionalInputs hold ReturnUpdatedSignature.
    """

    security: bool = False
    tokens: int = 0
    fields: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, dict[str, str]] = field(default_factory=dict)
    repeated: str | None = None
    operation: str | None = None
    update: bool = False


class _Scanner:
    """Parser target filling a :class:`SoapPrefix`."""

    def __init__(self) -> None:
        self.found = SoapPrefix()
        self.path: list[str] = []
        self.in_header = False  # inside a soap:Header that precedes every other child of the envelope
        self.headers_over = False  # a non-Header child of the envelope began: no token after this
        self.in_body = False  # inside the first soap:Body
        self.body_seen = False
        self.in_optional = False
        self.text: list[str] | None = None

    def doctype(self, *args: Any) -> None:
        self.found = SoapPrefix()
        raise StopScan

    def start(self, tag: str, attrib: Any) -> None:
        self.path.append(tag)
        depth, found = len(self.path), self.found
        if depth == 1:
            if tag != _ENVELOPE:
                raise StopScan
        elif depth == 2:
            self.in_header = tag == _HEADER and not self.headers_over
            self.headers_over = self.headers_over or not self.in_header
            self.in_body = tag == _BODY and not self.body_seen
            self.body_seen = self.body_seen or self.in_body
        elif self.in_header:
            self._header(depth, tag, attrib)
        elif self.in_body:
            if depth == 3:
                if found.operation is not None:
                    raise StopScan  # a second body element: the SOAP layer refuses the request
                if tag == _SIGN:
                    found.operation = "SignRequest"
                    raise StopScan
                if tag.startswith(_TR_ESOR):
                    found.operation = tag[len(_TR_ESOR):]
                    raise StopScan
                if tag.startswith(_ADMIN):
                    found.operation = tag[len(_ADMIN):]
                    raise StopScan
                if tag != _VERIFY:
                    raise StopScan
                found.operation = "VerifyRequest"
            elif depth == 4 and found.operation == "VerifyRequest":
                if tag != _OPTIONAL:
                    raise StopScan
                self.in_optional = True
            elif depth == 5 and self.in_optional and tag == _UPDATE:
                found.update = True
                raise StopScan

    def _header(self, depth: int, tag: str, attrib: Any) -> None:
        found = self.found
        if depth == 3 and tag == _SECURITY:
            found.security = True
        elif depth == 4 and self.path[2] == _SECURITY and tag == _TOKEN:
            found.tokens += 1
        elif depth == 5 and found.tokens == 1 and self.path[3] == _TOKEN:
            if tag in found.attrs:
                found.repeated = found.repeated or tag
            found.attrs[tag] = dict(attrib)
            self.text = []

    def end(self, tag: str) -> None:
        depth = len(self.path)
        if depth == 5 and self.text is not None:
            self.found.fields[tag] = "".join(self.text).strip()
            self.text = None
        elif depth == 4 and self.in_optional:
            raise StopScan
        elif depth == 3 and self.in_body and self.found.operation is not None:
            raise StopScan
        self.path.pop()

    def data(self, data: str) -> None:
        if self.text is not None:
            self.text.append(data)

    def close(self) -> None:
        return None


def scan_soap(content: Any) -> SoapPrefix:
    """The prefix of the SOAP request in ``content`` (a file: read in chunks and rewound). A broken envelope
    simply ends the scan: the SOAP layer answers it."""
    scanner = _Scanner()
    scan_prefix(content, scanner)
    return scanner.found


def soap_prefix(request: Any) -> SoapPrefix:
    """The prefix of ``request``'s body, scanned on first use and kept on the request."""
    found: SoapPrefix | None = getattr(request, "siegel_soap_prefix", None)
    if found is None:
        found = scan_soap(request.content)
        request.siegel_soap_prefix = found
    return found
