"""Verification of XML signatures, XAdES and plain XMLDSig (ETSI EN 319 102-1 building blocks).

:func:`verify_xml_signatures` reports every ``ds:Signature`` of a document. What it holds against XML
Signature Wrapping:

- a same-document reference ``#id`` resolves only to the one element carrying that ``Id``/``ID``/``id``/
  ``xml:id``; an id carried twice makes the signature TOTAL-FAILED/FORMAT_FAILURE, a missing one
  INDETERMINATE/SIGNED_DATA_NOT_FOUND;
- referenced data inside a ``ds:Object`` that is nested in another ``ds:Object`` (not where XMLDSig puts
  one) is not accepted, and the SignedProperties reference must point at this signature's own
  SignedProperties (inside the QualifyingProperties of its ds:Object): else SIGNED_DATA_NOT_FOUND;
- a counter-signature must sign the SignatureValue of the signature it is attached to;
- the reported scopes are exactly what the verified references cover, named by id and location, narrowed
  by what their transforms removed or selected;
- the properties read (signing certificate, signing time) are only those of the signed SignedProperties.

Nothing is fetched: external references resolve through the caller's ``detached`` documents or
``detached_digests`` only. Transforms accepted: enveloped-signature, C14N 1.0/1.1/exclusive (1.1 is
computed as 1.0: lxml offers no 1.1, they differ only for xml:id/xml:base on document subsets), base64,
XPath Filter 2.0 selecting elements by name, and the two XPath 1.0 filters that mean "without signatures".
Anything else (XSLT, arbitrary XPath, here()) is refused: TOTAL-FAILED/FORMAT_FAILURE for that reference.
HMAC signature methods are not supported (a shared secret identifies no signer).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote

from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from server.errors import SiegelError
from server.validation.model import (
    Indication,
    SignatureReport,
    SignedScope,
    SubIndication,
    TimestampResult,
    Trust,
)
from server.xmlsafe import parse_xml

MAX_DEPTH = 200

DS = "http://www.w3.org/2000/09/xmldsig#"
DS11 = "http://www.w3.org/2009/xmldsig11#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
FILTER2 = "http://www.w3.org/2002/06/xmldsig-filter2"
XADES141 = "http://uri.etsi.org/01903/v1.4.1#"
XADES_NAMESPACES = ("http://uri.etsi.org/01903/v1.3.2#", "http://uri.etsi.org/01903/v1.2.2#",
                    "http://uri.etsi.org/01903/v1.1.1#")
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
ID_ATTRIBUTES = ("Id", "ID", "id", XML_ID)

ENVELOPED = DS + "enveloped-signature"
BASE64 = DS + "base64"
XPATH1 = "http://www.w3.org/TR/1999/REC-xpath-19991116"
C14N10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N11 = "http://www.w3.org/2006/12/xml-c14n11"


@dataclass(frozen=True)
class _C14n:
    exclusive: bool
    comments: bool


C14N_METHODS: dict[str, _C14n] = {
    C14N10: _C14n(False, False), C14N10 + "#WithComments": _C14n(False, True),
    C14N11: _C14n(False, False), C14N11 + "#WithComments": _C14n(False, True),
    EXC_C14N: _C14n(True, False), EXC_C14N + "WithComments": _C14n(True, True),
}

DIGESTS: dict[str, str] = {
    DS + "sha1": "sha1",
    "http://www.w3.org/2001/04/xmldsig-more#sha224": "sha224",
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
    "http://www.w3.org/2007/05/xmldsig-more#sha3-224": "sha3_224",
    "http://www.w3.org/2007/05/xmldsig-more#sha3-256": "sha3_256",
    "http://www.w3.org/2007/05/xmldsig-more#sha3-384": "sha3_384",
    "http://www.w3.org/2007/05/xmldsig-more#sha3-512": "sha3_512",
}
BROKEN_DIGESTS = {"http://www.w3.org/2001/04/xmldsig-more#md5": "MD5"}
WEAK = {"sha1"}
HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
    "sha512": hashes.SHA512, "sha3_224": hashes.SHA3_224, "sha3_256": hashes.SHA3_256,
    "sha3_384": hashes.SHA3_384, "sha3_512": hashes.SHA3_512,
}


@dataclass(frozen=True)
class _SignatureMethod:
    key_type: str  # rsa | rsa-pss | ecdsa | dsa
    hash_name: str


def _signature_methods() -> dict[str, _SignatureMethod]:
    more, more07 = "http://www.w3.org/2001/04/xmldsig-more#", "http://www.w3.org/2007/05/xmldsig-more#"
    methods = {DS + "rsa-sha1": _SignatureMethod("rsa", "sha1"), DS + "dsa-sha1": _SignatureMethod("dsa", "sha1"),
               DS11 + "dsa-sha256": _SignatureMethod("dsa", "sha256")}
    for name in ("sha1", "sha224", "sha256", "sha384", "sha512"):
        methods[f"{more}rsa-{name}"] = _SignatureMethod("rsa", name)
        methods[f"{more}ecdsa-{name}"] = _SignatureMethod("ecdsa", name)
    for name in ("sha224", "sha256", "sha384", "sha512", "sha3-224", "sha3-256", "sha3-384", "sha3-512"):
        methods[f"{more07}{name}-rsa-MGF1"] = _SignatureMethod("rsa-pss", name.replace("-", "_"))
    for name in ("sha3-224", "sha3-256", "sha3-384", "sha3-512"):
        methods[f"{more07}ecdsa-{name}"] = _SignatureMethod("ecdsa", name.replace("-", "_"))
    return methods


SIGNATURE_METHODS = _signature_methods()
BROKEN_SIGNATURE_METHODS = {"http://www.w3.org/2001/04/xmldsig-more#rsa-md5": "RSA-MD5"}
HMAC_MARK = "hmac-"


def _ds(name: str) -> str:
    return f"{{{DS}}}{name}"


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def _is(element: etree._Element | None, namespaces: Iterable[str], name: str) -> bool:
    if element is None or not isinstance(element.tag, str):
        return False
    qname = etree.QName(element)
    return qname.localname == name and qname.namespace in tuple(namespaces)


def _xades_child(parent: etree._Element | None, name: str) -> etree._Element | None:
    if parent is None:
        return None
    return next((c for c in parent if _is(c, XADES_NAMESPACES + (XADES141,), name)), None)


def _xades_children(parent: etree._Element | None, name: str) -> list[etree._Element]:
    if parent is None:
        return []
    return [c for c in parent if _is(c, XADES_NAMESPACES + (XADES141,), name)]


def _text(element: etree._Element | None) -> str:
    return "" if element is None else (element.text or "").strip()


# --- verdicts -------------------------------------------------------------------------------------------

_SEVERITY = {Indication.TOTAL_FAILED: 2, Indication.INDETERMINATE: 1, Indication.TOTAL_PASSED: 0}


@dataclass
class _Verdict:
    """The findings of one signature; the first of the worst decides the indication."""

    findings: list[tuple[Indication, SubIndication | None, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, sub: SubIndication, message: str) -> None:
        self.findings.append((Indication.TOTAL_FAILED, sub, message))

    def indeterminate(self, sub: SubIndication, message: str) -> None:
        self.findings.append((Indication.INDETERMINATE, sub, message))

    def failed(self) -> bool:
        return any(f[0] is not Indication.TOTAL_PASSED for f in self.findings)

    def result(self) -> tuple[Indication, SubIndication | None]:
        if not self.findings:
            return Indication.TOTAL_PASSED, None
        worst = max(_SEVERITY[f[0]] for f in self.findings)
        first = next(f for f in self.findings if _SEVERITY[f[0]] == worst)
        return first[0], first[1]

    def messages(self) -> list[str]:
        ordered = sorted(self.findings, key=lambda f: -_SEVERITY[f[0]])
        return [f[2] for f in ordered] + self.notes


class _RefusedReference(Exception):
    """A reference that cannot be processed; carries its verdict."""

    def __init__(self, indication: Indication, sub: SubIndication, message: str) -> None:
        super().__init__(message)
        self.indication, self.sub, self.message = indication, sub, message


def _format_failure(message: str) -> _RefusedReference:
    return _RefusedReference(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE, message)


def _not_found(message: str) -> _RefusedReference:
    return _RefusedReference(Indication.INDETERMINATE, SubIndication.SIGNED_DATA_NOT_FOUND, message)


def _lenient_b64(element: etree._Element | None) -> bytes | None:
    """Base64 content, or None where it is not base64 (a value that then matches nothing)."""
    try:
        return _b64(element, "a value")
    except _RefusedReference:
        return None


def _b64(element: etree._Element | None, what: str) -> bytes:
    text = re.sub(r"\s+", "", "" if element is None else element.text or "")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _format_failure(f"{what} is not base64") from None


# --- the document ---------------------------------------------------------------------------------------

@dataclass
class _Document:
    tree: etree._ElementTree
    ids: dict[str, list[etree._Element]]
    detached: Mapping[str, bytes]
    detached_digests: Mapping[str, tuple[str, bytes]]
    name: str

    @classmethod
    def parse(cls, data: bytes, detached: Mapping[str, bytes], detached_digests: Mapping[str, tuple[str, bytes]],
              name: str) -> _Document:
        tree = parse_xml(data, max_depth=MAX_DEPTH).getroottree()
        ids: dict[str, list[etree._Element]] = {}
        for element in tree.iter(etree.Element):
            for value in {element.get(a) for a in ID_ATTRIBUTES} - {None}:
                ids.setdefault(value, []).append(element)
        return cls(tree, ids, detached, detached_digests, name)

    def unique(self, identifier: str) -> etree._Element:
        found = self.ids.get(identifier, [])
        if not found:
            raise _not_found(f"no element carries the id {identifier!r}")
        if len(found) > 1:
            where = ", ".join(_location(e) for e in found)
            raise _format_failure(f"the id {identifier!r} is carried by {len(found)} elements ({where}): "
                                  "an ambiguous reference (XML signature wrapping) is not resolved")
        return found[0]

    def external(self, uri: str) -> tuple[str, bytes | tuple[str, bytes]]:
        """The name under which the caller supplied ``uri`` (as written, %-decoded, without "./") and
        its content or (algorithm, digest)."""
        for key in dict.fromkeys((uri, unquote(uri), unquote(uri).removeprefix("./"))):
            if key in self.detached:
                return key, self.detached[key]
            if key in self.detached_digests:
                return key, self.detached_digests[key]
        raise _not_found(f"the detached document {uri!r} was not supplied (nothing is fetched)")


def _location(element: etree._Element) -> str:
    """A readable path of local names with positions, e.g. /Doc/Signature/Object[2]/Data."""
    steps = []
    node: etree._Element | None = element
    while node is not None:
        parent = node.getparent()
        local = _local(node)
        if parent is not None:
            same = [c for c in parent if isinstance(c.tag, str) and _local(c) == local]
            if len(same) > 1:
                local += f"[{same.index(node) + 1}]"
        steps.append(local)
        node = parent
    return "/" + "/".join(reversed(steps))


def _describe(element: etree._Element, identifier: str | None) -> str:
    name = element.prefix + ":" + _local(element) if element.prefix else _local(element)
    id_part = f" with Id={identifier}" if identifier else ""
    return f"element {name}{id_part} at {_location(element)}"


# --- node sets and transforms ---------------------------------------------------------------------------

@dataclass
class _Nodes:
    """An XPath node-set as XMLDSig transforms pass it on: subtrees of a document (or of a private copy)."""

    tree: etree._ElementTree
    top: etree._Element | None  # the referenced element; None: the whole document
    comments: bool
    selection: list[etree._Element] | None = None  # after an XPath Filter 2.0 intersect
    copied: bool = False
    removed: tuple[str, ...] = ()  # locations of the elements transforms took out, signatures excepted
    signatures_removed: int = 0
    origin: dict[etree._Element, etree._Element] = field(default_factory=dict)  # parsed -> copy

    def roots(self) -> list[etree._Element | etree._ElementTree]:
        if self.selection is not None:
            return list(self.selection)
        return [self.top if self.top is not None else self.tree]

    def private(self) -> _Nodes:
        """The same node-set in a copy of the document that transforms may change."""
        if self.copied:
            return self
        tree = copy.deepcopy(self.tree)
        origin = dict(zip(self.tree.iter(), tree.iter(), strict=True))
        return _Nodes(tree, None if self.top is None else origin[self.top], self.comments,
                      None if self.selection is None else [origin[e] for e in self.selection],
                      True, self.removed, self.signatures_removed, origin)

    def here(self, parsed: etree._Element) -> etree._Element | None:
        """The element of this node-set's tree that is ``parsed`` of the document (None: taken out)."""
        if not self.copied:
            return parsed
        found = self.origin.get(parsed)
        if found is None or not any(a is self.tree.getroot() for a in (found, *found.iterancestors())):
            return None
        return found

    def take_out(self, element: etree._Element) -> None:
        """Remove ``element`` (of this private copy) and remember what was removed. Outside the referenced
        element, or around it (an enveloped-signature transform on data in the signature's own ds:Object,
        which verifiers treat as a no-op), nothing of the node-set is removed."""
        if not _within(element, self.top):
            return
        if element.tag == _ds("Signature"):
            self.signatures_removed += 1
        else:
            self.removed += (_location(element),)
        _cut(element)

    def narrowed(self, scope: str, description: str) -> tuple[str, str]:
        """The scope and description of what is left of a reference's target described so."""
        if self.selection is not None:
            chosen = ", ".join(_location(e) for e in self.selection)
            scope, description = "PARTIAL", f"the elements at {chosen} selected from {description}"
        if self.removed:
            scope, description = "PARTIAL", f"{description} without the elements at {', '.join(self.removed)}"
        if self.signatures_removed:
            plural = "s" if self.signatures_removed > 1 else ""
            description += f", without {self.signatures_removed} ds:Signature element{plural}"
        return scope, description


def _remove(nodes: _Nodes, targets: Callable[[_Nodes], Sequence[etree._Element | None]]) -> _Nodes:
    """``nodes`` without the subtrees ``targets`` names in a private copy (None: already gone), tails kept."""
    result = nodes.private()
    for target in targets(result):
        if target is None:
            continue
        if target.getparent() is None or target is result.top:
            raise _format_failure("a transform would remove the whole referenced data")
        result.take_out(target)
    return result


def _cut(element: etree._Element) -> None:
    parent, previous, tail = element.getparent(), element.getprevious(), element.tail
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)


def _c14n_nodes(nodes: _Nodes, method: _C14n, prefixes: list[str] | None) -> bytes:
    effective = _C14n(method.exclusive, method.comments and nodes.comments)
    return b"".join(_c14n(root, effective, prefixes) for root in nodes.roots())


XML_NAMESPACE_PREFIX = "{http://www.w3.org/XML/1998/namespace}"
C14N_REFUSED = ("the signed XML has no canonical form (Canonical XML refuses, for one, a namespace name that is "
                "a relative URI such as xmlns:p=\"h\")")


def _c14n(node: etree._Element | etree._ElementTree, method: _C14n, prefixes: list[str] | None) -> bytes:
    """Canonical XML of a whole document or of one element's subtree in its document's context."""
    try:
        if method.exclusive or isinstance(node, etree._ElementTree) or node.getparent() is None:
            return etree.tostring(node, method="c14n", exclusive=method.exclusive, with_comments=method.comments,
                                  inclusive_ns_prefixes=prefixes if method.exclusive else None)
        return etree.tostring(_inclusive_apex(node), method="c14n", with_comments=method.comments)
    except etree.C14NError:
        raise _format_failure(C14N_REFUSED) from None


def _inclusive_apex(element: etree._Element) -> etree._Element:
    """``element`` serialized (with every namespace in scope) and parsed as a document of its own, with
    the xml:* attributes it inherits: inclusive C14N of that root is the subtree's C14N in place.

    lxml 6.1 with libxml2 2.14 renders a subtree in place wrongly (a spurious xmlns="" three levels
    down where the default namespace is inherited from outside the subtree)."""
    apex = parse_xml(etree.tostring(element, with_tail=False), max_depth=MAX_DEPTH)
    for ancestor in element.iterancestors():
        for key, value in ancestor.attrib.items():
            if key.startswith(XML_NAMESPACE_PREFIX) and key != XML_ID and apex.get(key) is None:
                apex.set(key, value)
    return apex


def _prefixes(method_element: etree._Element) -> list[str] | None:
    inclusive = method_element.find(f"{{{EXC_C14N}}}InclusiveNamespaces")
    if inclusive is None:
        return None
    return inclusive.get("PrefixList", "").split() or None


def c14n_element(element: etree._Element, algorithm: str, prefixes: list[str] | None = None) -> bytes:
    """The canonical form of one element in place (its document gives the namespace context)."""
    method = C14N_METHODS.get(algorithm)
    if method is None:
        raise _format_failure(f"canonicalization {algorithm!r} is not supported")
    return _c14n(element, method, prefixes)


_NOT_ANY_SIGNATURE = re.compile(r"^not\(ancestor-or-self::(\w+):Signature\)$")
_NOT_THIS_SIGNATURE = re.compile(
    r"^count\(ancestor-or-self::(\w+):Signature\|here\(\)/ancestor::(\w+):Signature\[1\]\)>"
    r"count\(ancestor-or-self::(\w+):Signature\)$")


@dataclass
class _Context:
    """What transforms of one reference need besides their input."""

    document: _Document
    signature: etree._Element


def _xpath1(data: _Nodes, transform: etree._Element, context: _Context) -> _Nodes:
    """XPath 1.0 filtering, only in the two forms that mean 'without the signatures' / 'without this one'."""
    xpath = transform.find(_ds("XPath"))
    expression = re.sub(r"\s+", "", "" if xpath is None else xpath.text or "")
    namespaces = {} if xpath is None else xpath.nsmap
    all_match = _NOT_ANY_SIGNATURE.match(expression)
    if all_match and namespaces.get(all_match.group(1)) == DS:
        return _remove(data, lambda nodes: _signatures(nodes.tree))
    this_match = _NOT_THIS_SIGNATURE.match(expression)
    if this_match and all(namespaces.get(p) == DS for p in this_match.groups()):
        return _remove(data, lambda nodes: [nodes.here(context.signature)])
    raise _format_failure(f"XPath transform {expression!r} is not supported (only the filters that exclude "
                          "signatures are)")


def _signatures(tree: etree._ElementTree) -> list[etree._Element]:
    found = list(tree.iter(_ds("Signature")))
    return [s for s in found if not any(a in found for a in s.iterancestors(_ds("Signature")))]


_FILTER2_STEP = re.compile(r"^(?:/descendant::|//)((?:[A-Za-z_][\w.-]*:)?[A-Za-z_][\w.-]*)$")


def _filter2(data: _Nodes, transform: etree._Element) -> _Nodes:
    """XPath Filter 2.0: subtract removes subtrees, intersect and union select them.

    Only the expressions that select elements by name (``//p:Name``, ``/descendant::p:Name``) are
    evaluated: an arbitrary XPath from the document could cost any amount of time."""
    result = data.private()
    keep: list[etree._Element] = []
    drop: list[etree._Element] = []
    for xpath in transform.iter(f"{{{FILTER2}}}XPath"):
        expression = (xpath.text or "").strip()
        if not _FILTER2_STEP.match(expression):
            raise _format_failure(f"XPath Filter 2.0 expression {expression!r} is not supported (only "
                                  "selections of elements by name are)")
        namespaces = {k: v for k, v in xpath.nsmap.items() if k}
        try:
            found = result.tree.xpath(expression, namespaces=namespaces)
        except etree.XPathError as exc:
            raise _format_failure(f"XPath Filter 2.0 expression {expression!r} is not valid: {exc}") from None
        (drop if xpath.get("Filter") == "subtract" else keep).extend(found)
    for element in drop:
        if element.getparent() is None or element is result.top:
            raise _format_failure("an XPath Filter 2.0 subtract removes the whole referenced data")
        result.take_out(element)
    if keep:
        alive = [e for e in keep if e.getroottree().getroot() is result.tree.getroot() and _within(e, result.top)]
        result.selection = sorted({id(e): e for e in alive if not any(a in alive for a in e.iterancestors())}.values(),
                                  key=lambda e: result.tree.getpath(e))
        if not result.selection:
            raise _not_found("the XPath Filter 2.0 intersection selects nothing of the referenced data")
    return result


def _within(element: etree._Element, top: etree._Element | None) -> bool:
    """``element`` is ``top`` or inside it (always, for the whole document)."""
    return top is None or element is top or top in element.iterancestors()


def _parse_octets(data: bytes) -> etree._ElementTree:
    """Octets a reference gives (a detached document, a base64 result) parsed for a canonicalization."""
    try:
        return parse_xml(data, max_depth=MAX_DEPTH).getroottree()
    except SiegelError as exc:
        raise _format_failure(f"the referenced data is not XML that can be canonicalized: {exc.message}") from None


def _transform(data: _Nodes | bytes, transform: etree._Element, context: _Context) -> _Nodes | bytes:
    algorithm = transform.get("Algorithm", "")
    if algorithm in C14N_METHODS:
        if isinstance(data, bytes):
            data = _Nodes(_parse_octets(data), None, True)
        return _c14n_nodes(data, C14N_METHODS[algorithm], _prefixes(transform))
    if algorithm == BASE64:
        text = data if isinstance(data, bytes) else "".join(r.xpath("string()") for r in data.roots()).encode()
        try:
            return base64.b64decode(re.sub(rb"\s+", b"", text), validate=True)
        except (binascii.Error, ValueError):
            raise _format_failure("the base64 transform's input is not base64") from None
    if isinstance(data, bytes):
        raise _format_failure(f"transform {algorithm!r} needs XML input, the reference gives octets")
    if algorithm == ENVELOPED:
        return _remove(data, lambda nodes: [nodes.here(context.signature)])
    if algorithm == XPATH1:
        return _xpath1(data, transform, context)
    if algorithm == FILTER2:
        return _filter2(data, transform)
    raise _format_failure(f"transform {algorithm!r} is not accepted")


# --- references -----------------------------------------------------------------------------------------

@dataclass
class _Resolved:
    """A reference's target before transforms."""

    data: _Nodes | bytes | tuple[str, bytes]
    element: etree._Element | None  # the same-document element referenced (None: whole document/external)
    scope_name: str
    scope: str  # FULL | PARTIAL | DIGEST
    description: str


_XPOINTER_ID = re.compile(r"""^xpointer\(id\(['"]([^'"]+)['"]\)\)$""")


def _dereference(uri: str | None, document: _Document) -> _Resolved:
    if uri is None:
        raise _not_found("a reference without URI names no data the verifier could find")
    tree = document.tree
    if uri == "":
        return _Resolved(_Nodes(tree, None, False), None, document.name, "FULL", f"the whole document {document.name}")
    if uri == "#xpointer(/)":
        return _Resolved(_Nodes(tree, None, True), None, document.name, "FULL", f"the whole document {document.name}")
    if uri.startswith("#"):
        pointer = _XPOINTER_ID.match(uri[1:])
        identifier = pointer.group(1) if pointer else uri[1:]
        if not pointer and uri.startswith("#xpointer("):
            raise _format_failure(f"XPointer {uri!r} is not supported")
        element = document.unique(identifier)
        scope = "FULL" if element.getparent() is None else "PARTIAL"
        return _Resolved(_Nodes(tree, element, bool(pointer)), element, "#" + identifier, scope,
                         _describe(element, identifier))
    supplied, found = document.external(uri)
    if isinstance(found, tuple):
        return _Resolved(found, None, supplied, "DIGEST", f"detached document {supplied} (its digest supplied)")
    return _Resolved(found, None, supplied, "FULL", f"detached document {supplied}")


def _check_placement(element: etree._Element | None) -> None:
    """A ds:Object is a child of a ds:Signature (or, holding enveloped data, of a document element); one
    that is neither, nested in another ds:Object, is wrapped content."""
    if element is None:
        return
    chain = [element, *element.iterancestors()]
    for place, node in enumerate(chain):
        parent = node.getparent()
        nested = any(a.tag == _ds("Object") for a in chain[place + 1:])
        if node.tag == _ds("Object") and nested and (parent is None or parent.tag != _ds("Signature")):
            break
    else:
        return
    raise _not_found(f"the referenced {_local(element)} at {_location(element)} lies in a ds:Object nested "
                     "in another ds:Object (XML signature wrapping): it is not accepted as signed data")


def _digest_method(reference: etree._Element) -> str:
    method = reference.find(_ds("DigestMethod"))
    algorithm = "" if method is None else method.get("Algorithm", "")
    if algorithm in BROKEN_DIGESTS:
        raise _RefusedReference(Indication.INDETERMINATE, SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE,
                                f"digest algorithm {BROKEN_DIGESTS[algorithm]} is broken and not accepted")
    if algorithm not in DIGESTS:
        raise _RefusedReference(Indication.INDETERMINATE, SubIndication.CRYPTO_CONSTRAINTS_FAILURE,
                                f"digest algorithm {algorithm!r} is not supported")
    return DIGESTS[algorithm]


@dataclass
class _Checked:
    """A reference whose digest matched."""

    reference: etree._Element
    element: etree._Element | None
    octets: bytes
    scope: SignedScope


def _check_reference(reference: etree._Element, context: _Context) -> _Checked:
    """Resolve, transform and digest one ds:Reference; raise _RefusedReference or HASH_FAILURE as refusal."""
    uri = reference.get("URI")
    digest_name = _digest_method(reference)
    expected = _b64(reference.find(_ds("DigestValue")), f"the DigestValue of reference {uri!r}")
    resolved = _dereference(uri, context.document)
    _check_placement(resolved.element)
    transforms = reference.findall(f"{_ds('Transforms')}/{_ds('Transform')}")
    scope_kind, description = resolved.scope, resolved.description
    if isinstance(resolved.data, tuple):
        octets, actual = b"", _supplied_digest(resolved.data, digest_name, transforms, uri or "")
    else:
        data: _Nodes | bytes = resolved.data
        for transform in transforms:
            data = _transform(data, transform, context)
            if isinstance(data, _Nodes):
                scope_kind, description = data.narrowed(resolved.scope, resolved.description)
        octets = data if isinstance(data, bytes) else _c14n_nodes(data, C14N_METHODS[C14N10], None)
        actual = hashlib.new(digest_name, octets).digest()
    if actual != expected:
        raise _RefusedReference(Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE,
                                f"the digest of reference {uri!r} ({resolved.description}) does not match: "
                                "the signed data was changed")
    scope = SignedScope(resolved.scope_name, scope_kind, description, digest_name, actual)
    return _Checked(reference, resolved.element, octets, scope)


def _supplied_digest(supplied: tuple[str, bytes], digest_name: str, transforms: list, uri: str) -> bytes:
    algorithm, digest = supplied
    if transforms:
        raise _not_found(f"reference {uri!r} has transforms: they cannot be applied to a supplied digest")
    if algorithm.replace("-", "").lower() != digest_name.replace("_", "").replace("-", "").lower():
        raise _not_found(f"the digest supplied for {uri!r} is {algorithm}, the reference needs {digest_name}")
    return digest


# --- keys and the signature value -----------------------------------------------------------------------

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | dsa.DSAPublicKey


@dataclass
class _Candidate:
    key: PublicKey
    certificate: bytes | None  # DER


def _certificate(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion):
        raise _format_failure("an X509Certificate is not a valid certificate") from None


def _key_candidates(signature: etree._Element, extra_certificates: Sequence[bytes]) -> list[_Candidate]:
    """The keys the signer may have used: KeyInfo certificates, XAdES CertificateValues, then bare key values."""
    key_info = signature.find(_ds("KeyInfo"))
    found: list[_Candidate] = []
    ders = [] if key_info is None else [_b64(e, "an X509Certificate") for e in key_info.iter(_ds("X509Certificate"))]
    for der in list(dict.fromkeys(ders + list(extra_certificates))):
        try:
            key = _certificate(der).public_key()
        except (_RefusedReference, UnsupportedAlgorithm, ValueError):
            if der in ders:
                raise _format_failure("an X509Certificate in KeyInfo is not a valid certificate") from None
            continue
        if isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, dsa.DSAPublicKey)):
            found.append(_Candidate(key, der))
    if key_info is not None:
        found.extend(_Candidate(k, None) for k in _key_values(key_info))
    return found


def _key_values(key_info: etree._Element) -> list[PublicKey]:
    try:
        return _parsed_key_values(key_info)
    except (ValueError, UnsupportedAlgorithm):
        raise _format_failure("a key value in KeyInfo is not a usable public key") from None


def _parsed_key_values(key_info: etree._Element) -> list[PublicKey]:
    keys: list[PublicKey] = []
    for rsa_value in key_info.iter(_ds("RSAKeyValue")):
        keys.append(rsa.RSAPublicNumbers(_integer(rsa_value, "Exponent"), _integer(rsa_value, "Modulus")).public_key())
    for dsa_value in key_info.iter(_ds("DSAKeyValue")):
        parameters = dsa.DSAParameterNumbers(_integer(dsa_value, "P"), _integer(dsa_value, "Q"),
                                             _integer(dsa_value, "G"))
        keys.append(dsa.DSAPublicNumbers(_integer(dsa_value, "Y"), parameters).public_key())
    for der_value in key_info.iter(f"{{{DS11}}}DEREncodedKeyValue"):
        key = serialization.load_der_public_key(_b64(der_value, "a DEREncodedKeyValue"))
        if isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, dsa.DSAPublicKey)):
            keys.append(key)
    for ec_value in key_info.iter(f"{{{DS11}}}ECKeyValue"):
        keys.append(_ec_key(ec_value))
    return keys


def _integer(parent: etree._Element, name: str) -> int:
    child = parent.find(_ds(name))
    return int.from_bytes(_b64(child, f"KeyValue {name}"), "big")


def _ec_key(ec_value: etree._Element) -> ec.EllipticCurvePublicKey:
    curve_element = ec_value.find(f"{{{DS11}}}NamedCurve")
    oid = (curve_element.get("URI", "") if curve_element is not None else "").removeprefix("urn:oid:")
    try:
        curve = ec.get_curve_for_oid(x509.ObjectIdentifier(oid))
        point = _b64(ec_value.find(f"{{{DS11}}}PublicKey"), "ECKeyValue PublicKey")
        return ec.EllipticCurvePublicKey.from_encoded_point(curve(), point)
    except (LookupError, ValueError):
        raise _format_failure(f"ECKeyValue on curve {oid!r} is not usable") from None


def _verify_value(key: PublicKey, method: _SignatureMethod, value: bytes, data: bytes) -> bool:
    hash_algorithm = HASHES[method.hash_name]()
    try:
        if method.key_type == "rsa" and isinstance(key, rsa.RSAPublicKey):
            key.verify(value, data, padding.PKCS1v15(), hash_algorithm)
        elif method.key_type == "rsa-pss" and isinstance(key, rsa.RSAPublicKey):
            key.verify(value, data, padding.PSS(padding.MGF1(hash_algorithm), hash_algorithm.digest_size),
                       hash_algorithm)
        elif method.key_type == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(_raw_to_der(value), data, ec.ECDSA(hash_algorithm))
        elif method.key_type == "dsa" and isinstance(key, dsa.DSAPublicKey):
            key.verify(_raw_to_der(value), data, hash_algorithm)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def _raw_to_der(value: bytes) -> bytes:
    """XMLDSig writes (EC)DSA signatures as r || s, each half of the value."""
    if not value or len(value) % 2:
        raise ValueError("an (EC)DSA signature value of odd length")
    half = len(value) // 2
    return encode_dss_signature(int.from_bytes(value[:half], "big"), int.from_bytes(value[half:], "big"))


def _signature_method(signed_info: etree._Element) -> tuple[str, _SignatureMethod]:
    element = signed_info.find(_ds("SignatureMethod"))
    algorithm = "" if element is None else element.get("Algorithm", "")
    if HMAC_MARK in algorithm:
        raise _RefusedReference(Indication.INDETERMINATE, SubIndication.CRYPTO_CONSTRAINTS_FAILURE,
                                f"HMAC signature method {algorithm!r} is not supported: a shared-secret MAC "
                                "identifies no signer")
    if algorithm in BROKEN_SIGNATURE_METHODS:
        raise _RefusedReference(Indication.INDETERMINATE, SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE,
                                f"signature algorithm {BROKEN_SIGNATURE_METHODS[algorithm]} is broken and not "
                                "accepted")
    if algorithm not in SIGNATURE_METHODS:
        raise _RefusedReference(Indication.INDETERMINATE, SubIndication.CRYPTO_CONSTRAINTS_FAILURE,
                                f"signature algorithm {algorithm!r} is not supported")
    return algorithm, SIGNATURE_METHODS[algorithm]


def _check_value(signed_info: etree._Element, signature: etree._Element,
                 candidates: Sequence[_Candidate]) -> tuple[_Candidate, str]:
    """The candidate whose key verifies the SignatureValue over the canonical SignedInfo."""
    algorithm, method = _signature_method(signed_info)
    c14n = signed_info.find(_ds("CanonicalizationMethod"))
    c14n_algorithm = "" if c14n is None else c14n.get("Algorithm", "")
    data = c14n_element(signed_info, c14n_algorithm, None if c14n is None else _prefixes(c14n))
    value = _b64(signature.find(_ds("SignatureValue")), "the SignatureValue")
    if not candidates:
        fetch = signature.find(f"{_ds('KeyInfo')}/{_ds('RetrievalMethod')}") is not None
        raise _RefusedReference(Indication.INDETERMINATE, SubIndication.NO_SIGNING_CERTIFICATE_FOUND,
                                "KeyInfo names no certificate or key the signature could be verified with"
                                + (" (a RetrievalMethod is not followed: nothing is fetched)" if fetch else ""))
    for candidate in candidates:
        if _verify_value(candidate.key, method, value, data):
            return candidate, algorithm
    raise _RefusedReference(Indication.TOTAL_FAILED, SubIndication.SIG_CRYPTO_FAILURE,
                            "the SignatureValue does not verify with the signer's key")


# --- XAdES properties -----------------------------------------------------------------------------------

@dataclass
class _Xades:
    """This signature's own QualifyingProperties, and whether its SignedProperties are signed."""

    qualifying: etree._Element | None
    signed_properties: etree._Element | None
    signed: bool = False

    @property
    def signed_signature_properties(self) -> etree._Element | None:
        return _xades_child(self.signed_properties, "SignedSignatureProperties") if self.signed else None

    @property
    def unsigned_signature_properties(self) -> etree._Element | None:
        return _xades_child(_xades_child(self.qualifying, "UnsignedProperties"), "UnsignedSignatureProperties")


def _xades(signature: etree._Element) -> tuple[_Xades, list[str]]:
    """The QualifyingProperties in this signature's ds:Object children: the one whose Target names it, or
    the only one there (with a note: its Target is wrong); and notes on what is odd."""
    target = f"#{signature.get('Id')}" if signature.get("Id") else None
    found = [q for obj in signature.findall(_ds("Object")) for q in _xades_children(obj, "QualifyingProperties")]
    own = [q for q in found if target is not None and q.get("Target") == target]
    notes = []
    if not own and len(found) == 1:
        own = found
        notes.append(f"the QualifyingProperties' Target {found[0].get('Target')!r} does not name this signature "
                     f"(Id {signature.get('Id')!r}); they are the only ones in it and are used")
    if len(own) != 1:
        return _Xades(None, None), notes
    return _Xades(own[0], _xades_child(own[0], "SignedProperties")), notes


def _order_problem(qualifying: etree._Element) -> str | None:
    names = [_local(c) for c in qualifying if isinstance(c.tag, str)]
    if "UnsignedProperties" in names and "SignedProperties" in names[names.index("UnsignedProperties"):]:
        return "QualifyingProperties hold SignedProperties after UnsignedProperties (not the schema's order)"
    return None


def _is_signed_properties_reference(reference: etree._Element) -> bool:
    kind = reference.get("Type", "")
    return kind.startswith("http://uri.etsi.org/01903") and kind.endswith("#SignedProperties")


def _signing_certificate(properties: etree._Element | None) -> etree._Element | None:
    found = _xades_child(properties, "SigningCertificateV2")
    return found if found is not None else _xades_child(properties, "SigningCertificate")


def _matching_cert(reference: etree._Element, signer: bytes) -> etree._Element | None:
    """The xades:Cert entry whose CertDigest is that of ``signer``."""
    for cert in _xades_children(reference, "Cert"):
        digest = _xades_child(cert, "CertDigest")
        method = None if digest is None else digest.find(_ds("DigestMethod"))
        name = DIGESTS.get("" if method is None else method.get("Algorithm", ""))
        if name is not None and digest is not None and (
                hashlib.new(name, signer).digest() == _lenient_b64(digest.find(_ds("DigestValue")))):
            return cert
    return None


def _signing_certificate_problem(properties: etree._Element | None, signer: bytes) -> str | None:
    """Why SigningCertificate(V2) does not designate ``signer``; None when it does."""
    reference = _signing_certificate(properties)
    if reference is None:
        return "the SignedProperties hold no SigningCertificate(V2)"
    cert = _matching_cert(reference, signer)
    if cert is None:
        return "no SigningCertificate digest matches the certificate that verifies the signature"
    return _issuer_serial_problem(cert, signer)


_RDN_NAMES = {"CN": "2.5.4.3", "SN": "2.5.4.4", "SERIALNUMBER": "2.5.4.5", "C": "2.5.4.6", "L": "2.5.4.7",
              "ST": "2.5.4.8", "S": "2.5.4.8", "STREET": "2.5.4.9", "O": "2.5.4.10", "OU": "2.5.4.11",
              "T": "2.5.4.12", "TITLE": "2.5.4.12", "GIVENNAME": "2.5.4.42", "G": "2.5.4.42",
              "ORGANIZATIONIDENTIFIER": "2.5.4.97", "DC": "0.9.2342.19200300.100.1.25",
              "UID": "0.9.2342.19200300.100.1.1", "E": "1.2.840.113549.1.9.1",
              "EMAILADDRESS": "1.2.840.113549.1.9.1"}
_DN_PART = re.compile(r'\s*([^=,+]+?)\s*=\s*("(?:[^"\\]|\\.)*"|(?:[^,+\\]|\\.)*)\s*([,+;]|$)')


def _dn_attributes(text: str) -> set[tuple[str, str]] | None:
    """An RFC 2253/4514 string as a set of (OID, case-folded value); None when it does not parse."""
    found, position = set(), 0
    while position < len(text):
        match = _DN_PART.match(text, position)
        if match is None or match.end() == position:
            return None
        kind, value = match.group(1).strip(), match.group(2).strip()
        oid = _RDN_NAMES.get(kind.upper().removeprefix("OID."), kind.removeprefix("OID."))
        if value.startswith('"'):
            value = value[1:-1]
        raw = re.sub(rb"\\([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), value.encode())
        value = re.sub(r"\\(.)", r"\1", raw.decode("utf-8", "replace"))
        found.add((oid, " ".join(value.split()).casefold()))
        position = match.end()
    return found


def _same_issuer_name(text: str, issuer: x509.Name) -> bool:
    """X509IssuerName written in any common way (order, spacing, case, escapes) against the issuer."""
    named = _dn_attributes(text)
    actual = {(a.oid.dotted_string, " ".join(str(a.value).split()).casefold()) for a in issuer}
    return named == actual


def _issuer_serial_problem(cert: etree._Element, signer: bytes) -> str | None:
    certificate = asn1_x509.Certificate.load(signer)
    v2 = _xades_child(cert, "IssuerSerialV2")
    if v2 is not None:
        try:
            issuer_serial = asn1_cms.IssuerSerial.load(_b64(v2, "IssuerSerialV2"))
            names = [n.chosen for n in issuer_serial["issuer"] if n.name == "directory_name"]
            same_name = any(_same_name(certificate.issuer, n) for n in names)
            same = issuer_serial["serial"].native == certificate.serial_number and same_name
        except ValueError:
            return "IssuerSerialV2 is not a DER IssuerSerial"
        return None if same else "IssuerSerialV2 does not name the signer certificate's issuer and serial number"
    v1 = _xades_child(cert, "IssuerSerial")
    if v1 is None:
        return None
    serial = _text(v1.find(_ds("X509SerialNumber")))
    if not serial.lstrip("-").isdigit() or int(serial) != certificate.serial_number:
        return f"IssuerSerial names serial number {serial}, the signer certificate has {certificate.serial_number}"
    return None


def _issuer_name_note(properties: etree._Element | None, signer: bytes) -> str | None:
    """The SigningCertificate (v1) IssuerName of the matching entry written for another issuer: the digest
    and serial number identify the certificate, so this is a note, not a failure."""
    reference = _signing_certificate(properties)
    cert = None if reference is None else _matching_cert(reference, signer)
    name = _text(None if cert is None else cert.find(f"*/{_ds('X509IssuerName')}"))
    issuer = x509.load_der_x509_certificate(signer).issuer
    if name and not _same_issuer_name(name, issuer):
        return f"SigningCertificate names the issuer {name!r}, the certificate's is {issuer.rfc4514_string()!r}"
    return None


def _same_name(issuer: asn1_x509.Name, named: asn1_x509.Name) -> bool:
    """Equal names, also with the RDNs in reverse order (a known producer mistake that EU DSS accepts)."""
    reverse = asn1_x509.Name(name="", value=asn1_x509.RDNSequence([r.copy() for r in reversed(list(named.chosen))]))
    return issuer == named or issuer == reverse


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _encapsulated_tokens(element: etree._Element) -> list[bytes]:
    return [_b64(e, "an EncapsulatedTimeStamp") for e in _xades_children(element, "EncapsulatedTimeStamp")]


def _timestamp_c14n(element: etree._Element) -> str:
    method = element.find(_ds("CanonicalizationMethod"))
    return C14N10 if method is None else method.get("Algorithm", C14N10)


IMPRINT_MISMATCH = "message imprint does not match the timestamped data"


def _check_token(token: bytes, data: bytes | None, trust: Trust, kind: str, pool: Sequence[bytes]) -> TimestampResult:
    """A timestamp token over ``data`` (None: the data could not be computed): imprint here, the rest by
    the timestamp building block."""
    from server.validation.timestamps import check_timestamp, message_imprint
    try:
        algorithm, imprint = message_imprint(token)
    except (ValueError, KeyError, TypeError):
        return TimestampResult(kind, None, False, None, "the timestamp token is not a readable RFC 3161 token", token)
    if algorithm not in hashlib.algorithms_available:
        return TimestampResult(kind, None, False, None, f"the timestamp imprint uses {algorithm}, not supported",
                               token)
    if data is None:
        return TimestampResult(kind, None, False, None, "the timestamped data cannot be computed: a reference "
                               "of the signature was not verified", token)
    digest = hashlib.new(algorithm, data).digest()
    if digest != imprint:
        return TimestampResult(kind, None, False, None, f"the {IMPRINT_MISMATCH} (copied from another signature?)",
                               token)
    return check_timestamp(token, digest, algorithm, trust, kind, pool=pool)


def _archive_input(signature: etree._Element, checked: Sequence[_Checked], stamp: etree._Element) -> bytes:
    """XAdES 1.4.1 ArchiveTimeStamp input (EN 319 132-1 5.5.2): references, signature parts, earlier properties."""
    algorithm = _timestamp_c14n(stamp)
    parts = [c.octets for c in checked]
    for name in ("SignedInfo", "SignatureValue", "KeyInfo"):
        element = signature.find(_ds(name))
        if element is not None:
            parts.append(c14n_element(element, algorithm))
    for earlier in stamp.getparent():
        if earlier is stamp:
            break
        if isinstance(earlier.tag, str):
            parts.append(c14n_element(earlier, algorithm))
    for obj in signature.findall(_ds("Object")):
        if not _xades_children(obj, "QualifyingProperties"):
            parts.append(c14n_element(obj, algorithm))
    return b"".join(parts)


def _certificate_values(unsigned: etree._Element | None) -> tuple[list[bytes], int]:
    """The CertificateValues that are certificates, and how many are not."""
    values = _xades_child(unsigned, "CertificateValues")
    found: list[bytes] = []
    broken = 0
    for element in _xades_children(values, "EncapsulatedX509Certificate"):
        der = _lenient_b64(element)
        try:
            found.append(_certificate(der or b"").public_bytes(serialization.Encoding.DER))
        except _RefusedReference:
            broken += 1
    return found, broken


def _revocation_values(unsigned: etree._Element | None) -> tuple[list[bytes], list[bytes]]:
    values = _xades_child(unsigned, "RevocationValues")
    ocsps = [_b64(e, "an EncapsulatedOCSPValue")
             for e in _xades_children(_xades_child(values, "OCSPValues"), "EncapsulatedOCSPValue")]
    crls = [_b64(e, "an EncapsulatedCRLValue")
            for e in _xades_children(_xades_child(values, "CRLValues"), "EncapsulatedCRLValue")]
    return ocsps, crls


# --- one signature --------------------------------------------------------------------------------------

@dataclass
class _Work:
    """What the steps of one signature's verification share."""

    signature: etree._Element
    document: _Document
    trust: Trust
    at: datetime
    report: SignatureReport
    verdict: _Verdict = field(default_factory=_Verdict)
    checked: list[_Checked] = field(default_factory=list)

    def refuse(self, refusal: _RefusedReference) -> None:
        self.verdict.findings.append((refusal.indication, refusal.sub, refusal.message))


def _references(work: _Work, signed_info: etree._Element, xades: _Xades) -> None:
    context = _Context(work.document, work.signature)
    references = signed_info.findall(_ds("Reference"))
    if not references:
        work.verdict.fail(SubIndication.FORMAT_FAILURE, "SignedInfo holds no Reference")
    for reference in references:
        try:
            checked = _check_reference(reference, context)
        except _RefusedReference as refusal:
            work.refuse(refusal)
            continue
        work.checked.append(checked)
        if _is_signed_properties_reference(reference) or _is(checked.element, XADES_NAMESPACES, "SignedProperties"):
            if checked.element is None or checked.element is not xades.signed_properties:
                work.verdict.indeterminate(SubIndication.SIGNED_DATA_NOT_FOUND,
                                           f"the SignedProperties referenced by {reference.get('URI')!r} are not "
                                           "this signature's own (XML signature wrapping): its properties are "
                                           "not used")
            else:
                xades.signed = True
                if not _is_signed_properties_reference(reference):
                    work.verdict.notes.append("the reference to the SignedProperties lacks "
                                              "Type=\"http://uri.etsi.org/01903#SignedProperties\"")
        elif checked.element is not None and checked.element.tag == _ds("Manifest"):
            _manifest(work, checked.element, context)
        elif not _is_signature_part(checked.element, work.signature):
            work.report.scopes.append(checked.scope)
        _note_weak(work, checked.scope.digest_algorithm)


def _is_signature_part(element: etree._Element | None, signature: etree._Element) -> bool:
    """KeyInfo and the XAdES properties are signed too, but they are the signature's, not signed data."""
    if element is None:
        return False
    chain = [element, *element.iterancestors()]
    if signature not in chain:
        return False
    return any(e.tag == _ds("KeyInfo") or _is(e, XADES_NAMESPACES, "QualifyingProperties") for e in chain)


def _manifest(work: _Work, manifest: etree._Element, context: _Context) -> None:
    """ds:Manifest entries are checked like references; each verified entry is a scope. An entry whose data
    is not at hand is reported, not failed (XMLDSig leaves manifests to the application); a changed one fails."""
    for reference in manifest.findall(_ds("Reference")):
        try:
            checked = _check_reference(reference, context)
        except _RefusedReference as refusal:
            if refusal.sub is SubIndication.SIGNED_DATA_NOT_FOUND:
                work.verdict.notes.append(f"manifest entry not checked and not a signed scope: {refusal.message}")
            else:
                work.refuse(_RefusedReference(refusal.indication, refusal.sub, f"manifest entry: {refusal.message}"))
            continue
        work.report.scopes.append(SignedScope(checked.scope.name, checked.scope.scope,
                                              f"{checked.scope.description}, by the manifest at "
                                              f"{_location(manifest)}", checked.scope.digest_algorithm,
                                              checked.scope.digest))
        _note_weak(work, checked.scope.digest_algorithm)


def _note_weak(work: _Work, digest_name: str | None) -> None:
    note = f"digest algorithm {digest_name} is weak: accepted only to verify old signatures"
    if digest_name in WEAK and note not in work.verdict.notes:
        work.verdict.notes.append(note)


def _signer(work: _Work, signed_info: etree._Element, extra_certificates: Sequence[bytes]) -> _Candidate | None:
    try:
        candidate, algorithm = _check_value(signed_info, work.signature,
                                            _key_candidates(work.signature, extra_certificates))
    except _RefusedReference as refusal:
        work.refuse(refusal)
        return None
    work.report.signature_algorithm = algorithm
    if SIGNATURE_METHODS[algorithm].hash_name in WEAK:
        work.verdict.notes.append(f"signature algorithm {algorithm} uses SHA-1, which is weak")
    work.report.signer_certificate = candidate.certificate
    return candidate


def _properties(work: _Work, xades: _Xades, signer: _Candidate | None) -> bool:
    """Signing time and signing certificate of the signed properties; True when B-B holds."""
    properties = xades.signed_signature_properties
    if properties is None:
        work.verdict.indeterminate(SubIndication.SIGNED_DATA_NOT_FOUND,
                                   "this signature's SignedProperties are not covered by a verified reference")
        return False
    work.report.claimed_signing_time = _parse_time(_text(_xades_child(properties, "SigningTime")))
    if signer is None:
        return False
    if signer.certificate is None:
        work.verdict.indeterminate(SubIndication.NO_SIGNING_CERTIFICATE_FOUND,
                                   "the signature verifies with a bare key: no certificate to match "
                                   "SigningCertificate")
        return False
    problem = _signing_certificate_problem(properties, signer.certificate)
    if problem is not None:
        work.verdict.indeterminate(SubIndication.NO_SIGNING_CERTIFICATE_FOUND, problem)
        return False
    if note := _issuer_name_note(properties, signer.certificate):
        work.verdict.notes.append(note)
    return True


def _timestamps(work: _Work, xades: _Xades, pool: Sequence[bytes]) -> tuple[bool, bool]:
    """Signature and archive timestamps; whether a valid one of each kind was found."""
    unsigned = xades.unsigned_signature_properties
    signature_value = work.signature.find(_ds("SignatureValue"))
    valid_signature, valid_archive = False, False
    if signature_value is None:
        return valid_signature, valid_archive
    for stamp in _xades_children(unsigned, "SignatureTimeStamp"):
        data = c14n_element(signature_value, _timestamp_c14n(stamp))
        for token in _encapsulated_tokens(stamp):
            result = _check_token(token, data, work.trust, "signature", pool)
            work.report.timestamps.append(result)
            valid_signature |= result.valid
            if result.valid and result.time and (work.report.best_signature_time is None
                                                 or result.time < work.report.best_signature_time):
                work.report.best_signature_time = result.time
    for stamp in (c for c in ([] if unsigned is None else unsigned) if _is(c, (XADES141,), "ArchiveTimeStamp")):
        complete = len(work.checked) == len(work.signature.findall(f"{_ds('SignedInfo')}/{_ds('Reference')}"))
        archived = _archive_input(work.signature, work.checked, stamp) if complete else None
        for token in _encapsulated_tokens(stamp):
            result = _check_token(token, archived, work.trust, "archive", pool)
            work.report.timestamps.append(result)
            valid_archive |= result.valid
    if any(_is(c, XADES_NAMESPACES, "ArchiveTimeStamp") for c in ([] if unsigned is None else unsigned)):
        work.verdict.notes.append("an ArchiveTimeStamp of XAdES before 1.4.1 is present and not verified")
    for result in work.report.timestamps:
        if not result.valid:
            work.verdict.notes.append(f"{result.kind} timestamp not valid: {result.message}")
    return valid_signature, valid_archive


def _chain(work: _Work, pool: Sequence[bytes], ocsps: Sequence[bytes], crls: Sequence[bytes]) -> None:
    signer = work.report.signer_certificate
    if any(f[0] is Indication.TOTAL_FAILED for f in work.verdict.findings):
        return
    if signer is None:
        if not work.verdict.failed():
            work.verdict.indeterminate(SubIndication.NO_SIGNING_CERTIFICATE_FOUND,
                                       "the signature verifies with a bare key: no certificate names the signer")
        return
    from server.validation.certificates import check_signer
    try:
        result = check_signer(signer, pool, work.trust, at=work.at, ocsps=ocsps, crls=crls,
                              poe=work.report.best_signature_time)
    except ValueError as exc:
        work.verdict.indeterminate(SubIndication.CERTIFICATE_CHAIN_GENERAL_FAILURE,
                                   f"the certificates cannot be read: {exc}")
        return
    work.report.chain = list(result.chain)
    if result.indication is not Indication.TOTAL_PASSED:
        work.verdict.findings.append((result.indication, result.sub_indication, result.message))
    else:
        work.verdict.notes.append(f"certificate chain: {result.message}")


def _verify(signature: etree._Element, number: int, document: _Document, trust: Trust,
            at: datetime) -> SignatureReport:
    xades, notes = _xades(signature)
    has_xades = xades.qualifying is not None or any(
        _xades_children(o, "QualifyingProperties") for o in signature.findall(_ds("Object")))
    report = SignatureReport(signature.get("Id") or f"signature-{number}", "XAdES" if has_xades else "XMLDSig",
                             Indication.TOTAL_PASSED)
    work = _Work(signature, document, trust, at, report)
    work.verdict.notes.extend(notes)
    try:
        _verify_parts(work, xades, has_xades)
    except _RefusedReference as refusal:
        work.refuse(refusal)
    report.indication, report.sub_indication = work.verdict.result()
    if report.indication is Indication.TOTAL_FAILED:
        report.level = None
    report.messages = work.verdict.messages()
    if report.digest_algorithm is None and work.checked:
        report.digest_algorithm = work.checked[0].scope.digest_algorithm
    return report


def _countersigned_problem(work: _Work) -> str | None:
    """A counter-signature (in xades:CounterSignature) must sign the SignatureValue of its signature."""
    parent = work.signature.getparent()
    if not _is(parent, XADES_NAMESPACES, "CounterSignature"):
        return None
    master = next(parent.iterancestors(_ds("Signature")), None)
    value = None if master is None else master.find(_ds("SignatureValue"))
    if value is not None and any(c.element is value for c in work.checked):
        return None
    return ("this counter-signature does not sign the SignatureValue of the signature it is attached to "
            "(a counter-signature injected or forged)")


def _verify_parts(work: _Work, xades: _Xades, has_xades: bool) -> None:
    """Format, references (and manifests), signature value, XAdES properties, timestamps, then the chain."""
    signed_info = work.signature.find(_ds("SignedInfo"))
    if signed_info is None:
        work.verdict.fail(SubIndication.FORMAT_FAILURE, "the ds:Signature has no SignedInfo")
        return
    if has_xades and xades.qualifying is None:
        work.verdict.indeterminate(SubIndication.SIGNED_DATA_NOT_FOUND,
                                   "no QualifyingProperties name this signature as their Target")
    elif xades.qualifying is not None and (problem := _order_problem(xades.qualifying)):
        work.verdict.fail(SubIndication.FORMAT_FAILURE, problem)
    unsigned = xades.unsigned_signature_properties
    values, broken = _certificate_values(unsigned)
    if broken:
        work.verdict.notes.append(f"{broken} CertificateValues entries are not certificates (ignored; B-LT incomplete)")
    ocsps, crls = _revocation_values(unsigned)
    _references(work, signed_info, xades)
    if problem := _countersigned_problem(work):
        work.verdict.fail(SubIndication.FORMAT_FAILURE, problem)
    if not work.report.scopes and not work.verdict.failed():
        work.verdict.indeterminate(SubIndication.SIGNED_DATA_NOT_FOUND, "no signed data was verified: the "
                                   "signature covers nothing but its own parts")
    signer = _signer(work, signed_info, values)
    if not has_xades:
        _chain(work, _pool(work.signature, values), ocsps, crls)
        return
    basic = _properties(work, xades, signer)
    pool = _pool(work.signature, values)
    valid_signature, valid_archive = _timestamps(work, xades, pool)
    _chain(work, pool, ocsps, crls)
    work.report.level = _level(basic, valid_signature, bool(values) and not broken and bool(ocsps or crls),
                               valid_archive)


def _pool(signature: etree._Element, values: Sequence[bytes]) -> list[bytes]:
    key_info = signature.find(_ds("KeyInfo"))
    embedded = [] if key_info is None else [_b64(e, "an X509Certificate")
                                            for e in key_info.iter(_ds("X509Certificate"))]
    return list(dict.fromkeys(embedded + list(values)))


def _level(basic: bool, timestamped: bool, long_term: bool, archived: bool) -> str | None:
    if not basic:
        return None
    if not timestamped:
        return "B-B"
    if not long_term:
        return "B-T"
    return "B-LTA" if archived else "B-LT"


_NO_DOCUMENTS: Mapping[str, bytes] = {}
_NO_DIGESTS: Mapping[str, tuple[str, bytes]] = {}


def verify_xml_signatures(document: bytes, trust: Trust, *, detached: Mapping[str, bytes] = _NO_DOCUMENTS,
                          detached_digests: Mapping[str, tuple[str, bytes]] = _NO_DIGESTS,
                          name: str = "document") -> list[SignatureReport]:
    """A report for every ds:Signature of ``document`` (counter-signatures included), in document order.

    ``detached`` maps a reference URI (a file name) to its content, ``detached_digests`` to an
    (algorithm, digest) pair such as ("sha256", b"..."). Raises SiegelError HOSTILE_XML (a DTD, entities)
    or MALFORMED_XML. Blocking (revocation fetching when ``trust.allow_fetching``): call it off the reactor.
    """
    parsed = _Document.parse(document, detached, detached_digests, name)
    at = trust.validation_time or datetime.now(UTC)
    return [_verify(signature, number, parsed, trust, at)
            for number, signature in enumerate(parsed.tree.iter(_ds("Signature")), 1)]
