"""DSS ``SignRequest`` → :class:`SignOrder` → ``SignResponse`` (OASIS DSS v1.0 core with the AdES profile).

Understood optional inputs:

- ``SignatureType``: ``urn:ietf:rfc:3275`` XAdES, ``urn:ietf:rfc:3369`` CAdES, ``http://uri.etsi.org/19162/v1.1.1``
  ASiC-E (with XAdES inside; ``urn:ietf:rfc:3369`` as ``SignatureType`` of an ``AdditionalProfile``-free request
  plus ASiC means CAdES inside: see :data:`ASIC_CADES`), ``http://uri.etsi.org/19142/v1.1.1`` PAdES.
  Absent: :func:`server.signing.order.choose_format` (XML → XAdES enveloped, PDF → PAdES, else CAdES detached).
- ``AdditionalProfile`` AdES + ``ades:SignatureForm``: ETSI baseline level URIs or the OASIS AdES forms
  (BES, ES-T, ES-X-L, ES-A); absent: ``signing.default_level``. ``AddTimestamp`` asks for at least B-T.
- ``KeySelector/ds:KeyInfo/ds:KeyName``: a key label the caller may use; absent: the caller's own key.
- ``SignaturePlacement`` (``WhichDocument``, ``CreateEnvelopedSignature``): enveloped XAdES inside that
  document (as the document element's last child); ``IncludeObject``: enveloping XAdES; else detached.
- ``Properties/SignedProperties/Property``: :data:`PROPERTIES` (claimed role, commitment type,
  production place, reason).
- ``siegel:PdfSignature`` (namespace ``urn:siegel:dss:1.0``): where and how a PAdES signature goes
  (:func:`_pdf_options`).

Several documents give one signature each (a batch: ``OptionalOutputs/siegel:SignedDocument`` per document)
or, with the ASiC-E type, one container. Bad input is RequesterError with a specific ResultMinor,
what is not offered ResponderError/NotSupported; both in the Result of a normal SignResponse.
"""

from __future__ import annotations

import base64
import binascii

from lxml import etree

from server.errors import DSS_MINOR, SIEGEL_MINOR, Code, SiegelError
from server.signing.engines import ASIC_URI, CMS_URI, PADES_URI, XMLDSIG_URI, Signed
from server.signing.keysource import DigestAlgorithm
from server.signing.levels import Level, Packaging, ProductionPlace, SignatureProperties
from server.signing.order import Document, Format, PdfOptions, SignOrder, choose_format, is_xml_type
from server.web.soap import DSS_NS, dss_result
from server.xmlsafe import parse_xml

ASIC_CADES = "urn:siegel:dss:1.0:asic-e:cades"
"""A second ``SignatureType`` beside the ASiC-E one: the container holds CAdES instead of XAdES."""
ADES_PROFILE = "urn:oasis:names:tc:dss:1.0:profiles:AdES"
ADES_NS = "urn:oasis:names:tc:dss:1.0:profiles:AdES:schema#"
SIEGEL_NS = "urn:siegel:dss:1.0"
SUCCESS = "urn:oasis:names:tc:dss:1.0:resultmajor:Success"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
LEVELS = {f"http://uri.etsi.org/ades/191x2/level/baseline/{level}#": level
          for level in ("B-B", "B-T", "B-LT", "B-LTA")}
LEVELS.update({f"urn:oasis:names:tc:dss:1.0:profiles:AdES:forms:{form}": level
               for form, level in (("BES", "B-B"), ("ES-T", "B-T"), ("ES-X-L", "B-LT"), ("ES-A", "B-LTA"))})
DIGEST_METHODS = {
    "http://www.w3.org/2001/04/xmlenc#sha256": DigestAlgorithm.SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": DigestAlgorithm.SHA384,
    "http://www.w3.org/2001/04/xmlenc#sha512": DigestAlgorithm.SHA512,
}
TYPES = {XMLDSIG_URI: Format.XADES, CMS_URI: Format.CADES, ASIC_URI: Format.ASIC, PADES_URI: Format.PADES}
PROPERTIES = {
    XADES + "ClaimedRole": "claimed_role",
    XADES + "CommitmentTypeIndication": "commitment_type",
    XADES + "SignatureProductionPlace": "production_place",
    SIEGEL_NS + ":property:Reason": "reason",
}
"""``dss:Property/Identifier`` → what it sets; the Value is text (a place as ``city; postal code; country``)."""
_NS = {"dss": DSS_NS, "ds": DS_NS, "ades": ADES_NS}


def _text(node: etree._Element | None) -> str:
    return "".join(node.itertext()).strip() if node is not None else ""


def _base64(node: etree._Element | None, what: str) -> bytes:
    try:
        return base64.b64decode("".join(_text(node).split()), validate=True)
    except (binascii.Error, ValueError):
        raise SiegelError(Code.BAD_REQUEST, f"{what} is not base64", SIEGEL_MINOR + "NotBase64") from None


def _level(options: etree._Element | None, default_level: str) -> Level:
    profiles = [_text(p) for p in options.findall("dss:AdditionalProfile", _NS)] if options is not None else []
    form = options.find(".//ades:SignatureForm", _NS) if options is not None else None
    if form is not None and ADES_PROFILE not in profiles:
        raise SiegelError(Code.BAD_REQUEST, f"SignatureForm needs the AdditionalProfile {ADES_PROFILE}")
    level = LEVELS.get(_text(form)) if form is not None else default_level
    if level is None:
        raise SiegelError(Code.BAD_REQUEST, f"SignatureForm {_text(form)!r}: expected an ETSI baseline level URI "
                                            "(http://uri.etsi.org/ades/191x2/level/baseline/B-T#, ...) or an "
                                            "OASIS AdES form (BES, ES-T, ES-X-L, ES-A)",
                          SIEGEL_MINOR + "UnknownSignatureForm")
    chosen = Level(level)
    if options is not None and options.find("dss:AddTimestamp", _NS) is not None and not chosen.at_least(Level.B_T):
        chosen = Level.B_T  # AddTimestamp: a signature timestamp at least
    return chosen


def _documents(request: etree._Element, max_depth: int) -> list[tuple[str | None, Document]]:
    """(ID, document) of each input, in order."""
    inputs = request.find("dss:InputDocuments", _NS)
    items = [i for i in inputs if isinstance(i.tag, str)] if inputs is not None else []
    if not items:
        raise SiegelError(Code.BAD_REQUEST, "InputDocuments holds no document: nothing to sign")
    found = []
    for number, item in enumerate(items, 1):
        ident = item.get("ID")
        name = item.get("RefURI") or ident or f"document-{number}"
        found.append((ident, _document(item, name, max_depth)))
    return found


def _parseable(content: bytes, name: str, max_depth: int) -> etree._Element:
    """The XML document element; well-formed without DTD or refused here, not deep in an engine."""
    try:
        return parse_xml(content, max_depth=max_depth)
    except SiegelError as exc:
        raise SiegelError(exc.code, f"document {name!r}: {exc.message}", DSS_MINOR + "NotParseableXMLDocument") from None


def _document(item: etree._Element, name: str, max_depth: int) -> Document:
    if etree.QName(item).localname == "DocumentHash":
        method = item.find("ds:DigestMethod", _NS)
        uri = method.get("Algorithm", "") if method is not None else ""
        if uri not in DIGEST_METHODS:
            raise SiegelError(Code.BAD_REQUEST, f"DigestMethod {uri!r}: expected one of {', '.join(DIGEST_METHODS)}",
                              SIEGEL_MINOR + "UnsupportedDigestMethod")
        if item.find("ds:Transforms", _NS) is not None:
            raise SiegelError(Code.NOT_SUPPORTED, f"DocumentHash {name!r}: Transforms are not supported; "
                                                  "give the digest of the document's bytes")
        digest, algorithm = _base64(item.find("ds:DigestValue", _NS), "DigestValue"), DIGEST_METHODS[uri]
        if len(digest) != algorithm.size:
            raise SiegelError(Code.BAD_REQUEST, f"DigestValue of {name!r}: a {algorithm.value} digest has "
                                                f"{algorithm.size} bytes, this one {len(digest)}",
                              SIEGEL_MINOR + "InvalidDigestValue")
        return Document(name, digest=digest, digest_algorithm=algorithm)
    data = item.find("dss:Base64Data", _NS)
    if data is not None:
        return Document(name, content=_base64(data, "Base64Data"), mime_type=data.get("MimeType"))
    b64xml = item.find("dss:Base64XML", _NS)
    if b64xml is not None:
        content = _base64(b64xml, "Base64XML")
        _parseable(content, name, max_depth)
        return Document(name, content=content, mime_type="application/xml", is_xml=True)
    inline = item.find("dss:InlineXML", _NS)
    children = [c for c in inline if isinstance(c.tag, str)] if inline is not None else []
    if len(children) != 1:
        raise SiegelError(Code.BAD_REQUEST, f"document {name!r}: InlineXML holds exactly one element")
    return Document(name, content=etree.tostring(children[0], encoding="UTF-8"), mime_type="application/xml",
                    is_xml=True)


def _properties(options: etree._Element | None) -> SignatureProperties:
    values: dict[str, object] = {}
    for prop in options.findall("dss:Properties/dss:SignedProperties/dss:Property", _NS) if options is not None else []:
        identifier = _text(prop.find("dss:Identifier", _NS))
        if identifier not in PROPERTIES:
            raise SiegelError(Code.NOT_SUPPORTED, f"signed property {identifier!r} is not supported "
                                                  f"(supported: {', '.join(PROPERTIES)})")
        value = _text(prop.find("dss:Value", _NS))
        if not value:
            raise SiegelError(Code.BAD_REQUEST, f"signed property {identifier!r} needs a Value")
        field = PROPERTIES[identifier]
        if field == "production_place":
            parts = [p.strip() or None for p in value.split(";")] + [None, None]
            values[field] = ProductionPlace(parts[0], parts[1], parts[2])
        else:
            values[field] = value
    if options is not None and options.find("dss:Properties/dss:UnsignedProperties", _NS) is not None:
        raise SiegelError(Code.NOT_SUPPORTED, "UnsignedProperties are not supported: Siegel adds the unsigned "
                                              "properties of the requested level itself")
    return SignatureProperties(**values)  # type: ignore[arg-type]


def _key_name(options: etree._Element | None) -> str | None:
    selector = options.find("dss:KeySelector", _NS) if options is not None else None
    if selector is None:
        return None
    name = _text(selector.find("ds:KeyInfo/ds:KeyName", _NS))
    if not name:
        raise SiegelError(Code.NOT_SUPPORTED, "KeySelector: Siegel selects keys by ds:KeyInfo/ds:KeyName (a key label)")
    return name


def _which(options: etree._Element, tag: str, ids: dict[str, Document]) -> Document | None:
    element = options.find(f"dss:{tag}", _NS)
    if element is None:
        return None
    which = element.get("WhichDocument")
    if which not in ids:
        raise SiegelError(Code.BAD_REQUEST, f"{tag}: WhichDocument {which!r} names no input document "
                                            f"(IDs: {', '.join(ids) or 'none'})", DSS_MINOR + "ReferencedDocumentNotPresent")
    return ids[which]


def _packaging(options: etree._Element | None, documents: list[tuple[str | None, Document]],
               fmt: Format, max_depth: int) -> Packaging:
    """Enveloped (SignaturePlacement), enveloping (IncludeObject) or detached, for XAdES."""
    if options is None or fmt is not Format.XADES:
        return Packaging.DETACHED
    ids = {ident: doc for ident, doc in documents if ident is not None}
    placed, included = _which(options, "SignaturePlacement", ids), _which(options, "IncludeObject", ids)
    for chosen, tag in ((placed, "SignaturePlacement"), (included, "IncludeObject")):
        if chosen is not None and chosen.content is None:
            raise SiegelError(Code.BAD_REQUEST, f"{tag}: {chosen.name!r} is a DocumentHash; the document itself "
                                                "is needed", DSS_MINOR + "ReferencedDocumentNotPresent")
    if placed is not None and included is not None:
        raise SiegelError(Code.BAD_REQUEST, "SignaturePlacement and IncludeObject exclude each other")
    if placed is not None:
        placement = options.find("dss:SignaturePlacement", _NS)
        if placement.get("CreateEnvelopedSignature", "true") in ("false", "0"):
            raise SiegelError(Code.NOT_SUPPORTED, "SignaturePlacement without CreateEnvelopedSignature: Siegel "
                                                  "places enveloped signatures only")
        _check_placement(placement, placed, max_depth)
        return Packaging.ENVELOPED
    return Packaging.ENVELOPING if included is not None else Packaging.DETACHED


def _check_placement(placement: etree._Element, document: Document, max_depth: int) -> None:
    """The XPath must select the document element: the signature becomes its last child."""
    xpath = _text(placement.find("dss:XPathFirstChildOf", _NS)) or _text(placement.find("dss:XPathAfter", _NS))
    if not xpath or document.content is None:
        return
    root = _parseable(document.content, document.name, max_depth)
    try:
        selected = root.getroottree().xpath(xpath, namespaces={k: v for k, v in placement.nsmap.items() if k})
    except etree.XPathError:
        raise SiegelError(Code.BAD_REQUEST, f"SignaturePlacement: {xpath!r} is not an XPath expression") from None
    if not (isinstance(selected, list) and len(selected) == 1 and selected[0] is root
            and placement.find("dss:XPathFirstChildOf", _NS) is not None):
        raise SiegelError(Code.NOT_SUPPORTED, f"SignaturePlacement {xpath!r}: Siegel places an enveloped signature "
                                              "in the document element (XPathFirstChildOf selecting it)")


def _float(element: etree._Element, name: str) -> float:
    try:
        return float(element.get(name, ""))
    except ValueError:
        raise SiegelError(Code.BAD_REQUEST, f"siegel:PdfSignature {name}={element.get(name)!r}: expected a number "
                                            "of PDF points") from None


def _pdf_options(options: etree._Element | None) -> PdfOptions:
    """``siegel:PdfSignature`` (namespace urn:siegel:dss:1.0): Field, or Page with X, Y, Width, Height;
    Appearance, Invisible, Certify, LockFields (space-separated names, or * for all), Password."""
    element = options.find(f"{{{SIEGEL_NS}}}PdfSignature") if options is not None else None
    if element is None:
        return PdfOptions()
    page = element.get("Page")
    box = tuple(_float(element, n) for n in ("X", "Y", "Width", "Height")) if page is not None else None
    try:
        page_number = int(page) if page is not None else None
    except ValueError:
        raise SiegelError(Code.BAD_REQUEST, f"siegel:PdfSignature Page={page!r}: expected a page number "
                                            "(1 = first, -1 = last)") from None
    lock = element.get("LockFields")
    return PdfOptions(field=element.get("Field"), page=page_number, box=box,  # type: ignore[arg-type]
                      invisible=element.get("Invisible") in ("true", "1"), appearance=element.get("Appearance"),
                      certify=element.get("Certify") in ("true", "1"),
                      lock_fields=None if lock is None else () if lock.strip() == "*" else tuple(lock.split()),
                      password=element.get("Password"))


def parse_sign_request(request: etree._Element, default_level: str, max_depth: int) -> SignOrder:
    """The order in ``request``; SiegelError (BAD_REQUEST or NOT_SUPPORTED) names what is wrong."""
    options = request.find("dss:OptionalInputs", _NS)
    types = [_text(t) for t in options.findall("dss:SignatureType", _NS)] if options is not None else []
    documents = _documents(request, max_depth)
    container = Format.XADES
    if ASIC_URI in types:
        container = Format.CADES if ASIC_CADES in types or CMS_URI in types else Format.XADES
        types = [ASIC_URI]
    if len(types) > 1:
        raise SiegelError(Code.BAD_REQUEST, "one SignatureType per request (several only for ASiC-E with CAdES)")
    if types and types[0] not in TYPES:
        raise SiegelError(Code.BAD_REQUEST, f"SignatureType {types[0]!r} is unknown (expected one of "
                                            f"{', '.join(TYPES)})", SIEGEL_MINOR + "UnknownSignatureType")
    if types:
        fmt = TYPES[types[0]]
        packaging = _packaging(options, documents, fmt, max_depth)
    else:
        choices = {choose_format(d) for _, d in documents}
        if len(choices) != 1:
            raise SiegelError(Code.BAD_REQUEST, "these documents would get different formats; name one with "
                                                "SignatureType")
        fmt, packaging = choices.pop()
    return SignOrder(fmt, _level(options, default_level), packaging, tuple(d for _, d in documents),
                     key_name=_key_name(options), properties=_properties(options), container_format=container,
                     pdf=_pdf_options(options))


def _output(parent: etree._Element, signed: Signed, ident: str | None) -> None:
    """``signed`` as a SignatureObject or a DocumentWithSignature under ``parent``."""
    if not signed.with_document:
        holder = etree.SubElement(parent, f"{{{DSS_NS}}}SignatureObject")
        etree.SubElement(holder, f"{{{DSS_NS}}}Base64Signature", {"Type": signed.signature_type}).text = \
            base64.b64encode(signed.data).decode()
        return
    document = etree.SubElement(etree.SubElement(parent, f"{{{DSS_NS}}}DocumentWithSignature"),
                                f"{{{DSS_NS}}}Document")
    if ident is not None:
        document.set("ID", ident)
    if is_xml_type(signed.mime_type):
        etree.SubElement(document, f"{{{DSS_NS}}}Base64XML").text = base64.b64encode(signed.data).decode()
    else:
        etree.SubElement(document, f"{{{DSS_NS}}}Base64Data", {"MimeType": signed.mime_type}).text = \
            base64.b64encode(signed.data).decode()


def sign_response(request: etree._Element, profile: str, signed: list[Signed],
                  error: SiegelError | None = None) -> etree._Element:
    """The SignResponse: Success with the signature(s) or signed document(s), or the error's Result."""
    response = etree.Element(f"{{{DSS_NS}}}SignResponse", nsmap={"dss": DSS_NS})
    if request.get("RequestID") is not None:
        response.set("RequestID", request.get("RequestID"))
    response.set("Profile", request.get("Profile") or profile)
    if error is not None:
        response.append(dss_result(error.kind.major, error.result_minor, error.message))
        return response
    response.append(dss_result(SUCCESS, None, f"signed {len(signed)} "
                                              f"{'signature' if len(signed) == 1 else 'signatures'}"))
    inputs = request.find("dss:InputDocuments", _NS)
    ids = {(i.get("RefURI") or i.get("ID") or f"document-{n}"): i.get("ID")
           for n, i in enumerate((c for c in inputs if isinstance(c.tag, str)), 1)} if inputs is not None else {}
    if len(signed) == 1 and not signed[0].with_document:
        _output(response, signed[0], None)
        return response
    outputs = etree.Element(f"{{{DSS_NS}}}OptionalOutputs")
    response.insert(1, outputs)
    if len(signed) == 1:
        _output(outputs, signed[0], ids.get(signed[0].name))
        return response
    for item in signed:
        batch = etree.SubElement(outputs, f"{{{SIEGEL_NS}}}SignedDocument", {"Name": item.name},
                                 nsmap={"siegel": SIEGEL_NS})
        if ids.get(item.name) is not None:
            batch.set("WhichDocument", ids[item.name])
        _output(batch, item, ids.get(item.name))
    return response
