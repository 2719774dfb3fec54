"""The one hardened XML parser of Siegel: every XML entry point parses through :func:`parse_xml`.

What it refuses, and how:

- any DOCTYPE (internal subset or external DTD): found by a first pass that stops at the root
  element's start tag and raises the moment libxml2 reports the DOCTYPE, before an internal subset
  is even read, so no DTD is loaded, no entity is declared and nothing is expanded;
- nesting deeper than ``max_depth``: counted from parse events while the document is fed in chunks,
  so a deep document is refused after at most one chunk, never after building the whole tree;
- anything not well-formed, with line and column.

The parser never touches the network (``no_network``), never loads a DTD, never resolves entities,
never processes XInclude (lxml only does so on an explicit ``xinclude()`` call, which Siegel never
makes) and keeps libxml2's default resource limits (``huge_tree=False``: for example no text node
larger than 10 MB). Comments and processing instructions are kept.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from lxml import etree

from server.errors import Code, SiegelError

_CHUNK = 64 * 1024
_OPTIONS: dict[str, bool] = {
    "load_dtd": False,
    "dtd_validation": False,
    "attribute_defaults": False,
    "resolve_entities": False,
    "no_network": True,
    "huge_tree": False,
    "remove_comments": False,
    "remove_pis": False,
}
_TRUSTED_FILE_DEPTH = 64
_LIBXML2_MAX_DEPTH = 256  # libxml2 refuses deeper documents itself unless huge_tree is set


class _PrologEnd(Exception):
    """The first pass reached the root element: the prolog held no DOCTYPE."""


class _PrologGuard:
    """Parser target of the first pass: refuses a DOCTYPE, stops at the root element's start tag."""

    def doctype(self, name: str | None, pubid: str | None, system: str | None) -> None:
        where = f" with external DTD {system!r}" if system else ""
        raise SiegelError(
            Code.HOSTILE_XML,
            f"a DOCTYPE declaration (document type {name!r}{where}) is not accepted: "
            "XML input may carry no DTD and no entity declarations",
        )

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        raise _PrologEnd

    def close(self) -> None:
        return None


def _refuse_doctype(data: bytes) -> None:
    parser = etree.XMLParser(target=_PrologGuard(), **_OPTIONS)
    try:
        for offset in range(0, len(data), _CHUNK):
            parser.feed(data[offset:offset + _CHUNK])
        parser.close()
    except _PrologEnd:
        return
    except etree.XMLSyntaxError:
        return  # not well-formed before the root element: the full parse reports where


def _too_deep(limit: int, line: int | None) -> SiegelError:
    return SiegelError(Code.HOSTILE_XML, f"XML nesting depth exceeds the limit of {limit} levels (line {line})")


def _syntax_error(exc: etree.XMLSyntaxError, max_depth: int) -> SiegelError:
    # lxml's feed parser reports some errors (an undeclared entity) as "no element found" at 0:0;
    # the error log, cleared before the parse, holds libxml2's first and real complaint.
    errors = exc.error_log.filter_from_errors()
    if errors:
        first = errors[0]
        message, line, column, kind = first.message.strip(), first.line, first.column, first.type_name
    else:
        message, (line, column), kind = exc.msg, exc.position, ""
    if kind == "ERR_RESOURCE_LIMIT":
        if "depth" in message.lower():
            return _too_deep(min(max_depth, _LIBXML2_MAX_DEPTH), line)
        return SiegelError(Code.HOSTILE_XML, f"XML exceeds a parser resource limit at line {line}, "
                                             f"column {column}: {message}")
    return SiegelError(Code.MALFORMED_XML, f"XML is not well-formed at line {line}, column {column}: {message}")


def parse_xml(data: bytes, *, max_depth: int, base_url: str | None = None) -> etree._Element:
    """Parse untrusted XML into an lxml element, or raise SiegelError (HOSTILE_XML or MALFORMED_XML).

    ``max_depth`` is the deepest element nesting accepted (the root element is depth 1); libxml2
    itself stops at 256 levels whatever a larger ``max_depth`` says.
    ``base_url`` only names the document (for error messages and relative references of callers);
    nothing is ever fetched from it.
    """
    _refuse_doctype(data)
    etree.clear_error_log()
    parser = etree.XMLPullParser(events=("start", "end"), base_url=base_url, **_OPTIONS)
    depth = 0

    def consume() -> None:
        nonlocal depth
        for event, element in parser.read_events():
            if event == "end":
                depth -= 1
                continue
            depth += 1
            if depth > max_depth:
                raise _too_deep(max_depth, element.sourceline)

    try:
        for offset in range(0, len(data), _CHUNK):
            parser.feed(data[offset:offset + _CHUNK])
            consume()
        root: etree._Element = parser.close()
        consume()
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, max_depth) from None
    return root


def parse_trusted_file(path: Path) -> etree._Element:
    """Parse one of Siegel's own XML files (XSD, WSDL) with the same hardening; its URL is the file's."""
    return parse_xml(path.read_bytes(), max_depth=_TRUSTED_FILE_DEPTH, base_url=path.resolve().as_uri())


def looks_like_xml(data: bytes) -> bool:
    """Whether ``data`` starts like an XML document (after a BOM and white space)."""
    return data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<"


def standalone(element: etree._Element) -> bytes:
    """``element`` serialised as a document of its own, with the namespaces it declares itself but not
    those it only inherits (a ds:Signature inside a SOAP message must not take the envelope's
    namespaces into its inclusive canonical form)."""
    parent = element.getparent()
    declared = {prefix: uri for prefix, uri in element.nsmap.items()
                if parent is None or parent.nsmap.get(prefix) != uri}
    copy_ = etree.Element(element.tag, attrib=dict(element.attrib), nsmap=declared)
    copy_.text = element.text
    for child in element:
        copy_.append(copy.deepcopy(child))
    return etree.tostring(copy_, encoding="UTF-8")


class StopScan(Exception):
    """Raised by a :func:`scan_prefix` target once it has what it looks for."""


def scan_prefix(content: Any, target: object) -> None:
    """Feed the XML in ``content`` (a file: read in chunks and rewound) to the lxml parser ``target``
    until the target raises :class:`StopScan` or the document ends; no DTD, entities or network, and a
    syntax error simply ends the scan (the full parser answers the broken request)."""
    parser = etree.XMLParser(target=target, load_dtd=False, resolve_entities=False, no_network=True,
                             huge_tree=False)
    content.seek(0)
    try:
        while True:
            chunk = content.read(64 * 1024)
            if not chunk:
                parser.close()
                break
            parser.feed(chunk)
    except (StopScan, etree.XMLSyntaxError):
        pass
    finally:
        content.seek(0)
