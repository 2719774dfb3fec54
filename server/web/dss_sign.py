"""DSS ``SignRequest`` → a signing call → ``SignResponse`` (OASIS DSS v1.0 core with the AdES profile).

What is understood so far: one ``dss:Document`` (``Base64Data``) or ``dss:DocumentHash``; the
``SignatureType`` ``urn:ietf:rfc:3369`` (CAdES), or none, where the MIME type chooses (XML → XAdES,
PDF → PAdES, anything else → CAdES detached; the first two are not offered yet); the level from
``AdditionalProfile`` AdES + ``SignatureForm`` (ETSI baseline URIs, or the OASIS forms as aliases);
absent: the setting ``signing.default_level``. The signature comes back as ``SignatureObject/Base64Signature``.
Whatever is not understood yet is answered with ResponderError/NotSupported, bad input with
RequesterError and a specific ResultMinor; all in the Result of a normal SignResponse.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from lxml import etree

from server.errors import KINDS, Code, SiegelError
from server.signing.levels import Level
from server.signing.keysource import DigestAlgorithm
from server.web.soap import DSS_NS, dss_result

CMS = "urn:ietf:rfc:3369"
XMLDSIG = "urn:ietf:rfc:3275"
ADES_PROFILE = "urn:oasis:names:tc:dss:1.0:profiles:AdES"
ADES_NS = "urn:oasis:names:tc:dss:1.0:profiles:AdES:schema#"
SUCCESS = "urn:oasis:names:tc:dss:1.0:resultmajor:Success"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
LEVELS = {f"http://uri.etsi.org/ades/191x2/level/baseline/{level}#": level
          for level in ("B-B", "B-T", "B-LT", "B-LTA")}
LEVELS.update({f"urn:oasis:names:tc:dss:1.0:profiles:AdES:forms:{form}": level
               for form, level in (("BES", "B-B"), ("ES-T", "B-T"), ("ES-X-L", "B-LT"), ("ES-A", "B-LTA"))})
DIGEST_METHODS = {
    "http://www.w3.org/2001/04/xmlenc#sha256": DigestAlgorithm.SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": DigestAlgorithm.SHA384,
    "http://www.w3.org/2001/04/xmlenc#sha512": DigestAlgorithm.SHA512,
}
_NS = {"dss": DSS_NS, "ds": DS_NS, "ades": ADES_NS}


@dataclass(frozen=True)
class SignOrder:
    """What a SignRequest asks for, checked."""

    level: Level
    content: bytes | None
    digest: bytes | None
    digest_algorithm: DigestAlgorithm


def _text(node: etree._Element | None) -> str:
    return "".join(node.itertext()).strip() if node is not None else ""


def parse_sign_request(request: etree._Element, default_level: str) -> SignOrder:
    """The order in ``request``; SiegelError (BAD_REQUEST or NOT_SUPPORTED) names what is wrong."""
    options = request.find("dss:OptionalInputs", _NS)
    signature_type = _text(options.find("dss:SignatureType", _NS)) if options is not None else ""
    profiles = [_text(p) for p in options.findall("dss:AdditionalProfile", _NS)] if options is not None else []
    form = options.find(".//ades:SignatureForm", _NS) if options is not None else None
    if form is not None and ADES_PROFILE not in profiles:
        raise SiegelError(Code.BAD_REQUEST, f"SignatureForm needs the AdditionalProfile {ADES_PROFILE}")
    level = LEVELS.get(_text(form)) if form is not None else default_level
    if level is None:
        raise SiegelError(Code.BAD_REQUEST, f"SignatureForm {_text(form)!r}: expected an ETSI baseline level URI "
                                            "(http://uri.etsi.org/ades/191x2/level/baseline/B-T#, ...) or an "
                                            "OASIS AdES form (BES, ES-T, ES-X-L, ES-A)")
    if level not in tuple(Level):
        raise SiegelError(Code.NOT_SUPPORTED, f"level {level} is not offered yet (B-B and B-T are)")

    inputs = request.find("dss:InputDocuments", _NS)
    items = list(inputs) if inputs is not None else []
    if len(items) != 1:
        raise SiegelError(Code.NOT_SUPPORTED if items else Code.BAD_REQUEST,
                          f"InputDocuments holds {len(items)} documents; one document or document hash per "
                          "request is signed so far")
    item = items[0]
    if etree.QName(item).localname == "DocumentHash":
        method = item.find("ds:DigestMethod", _NS)
        uri = method.get("Algorithm", "") if method is not None else ""
        if uri not in DIGEST_METHODS:
            raise SiegelError(Code.BAD_REQUEST, f"DigestMethod {uri!r}: expected one of {', '.join(DIGEST_METHODS)}")
        digest_algorithm, digest = DIGEST_METHODS[uri], _base64(item.find("ds:DigestValue", _NS), "DigestValue")
        if len(digest) != digest_algorithm.size:
            raise SiegelError(Code.BAD_REQUEST, f"DigestValue: a {digest_algorithm.value} digest has "
                                                f"{digest_algorithm.size} bytes, this one {len(digest)}")
        _check_type(signature_type, None)
        return SignOrder(Level(level), None, digest, digest_algorithm)
    data = item.find("dss:Base64Data", _NS)
    if etree.QName(item).localname != "Document" or data is None:
        raise SiegelError(Code.NOT_SUPPORTED, "documents are signed from Base64Data or a DocumentHash so far")
    _check_type(signature_type, data.get("MimeType"))
    return SignOrder(Level(level), _base64(data, "Base64Data"), None, DigestAlgorithm.SHA256)


def _base64(node: etree._Element | None, what: str) -> bytes:
    try:
        return base64.b64decode("".join(_text(node).split()), validate=True)
    except (binascii.Error, ValueError):
        raise SiegelError(Code.BAD_REQUEST, f"{what} is not base64") from None


def _check_type(signature_type: str, mime_type: str | None) -> None:
    """CAdES is what is offered: explicitly, or chosen by a MIME type that is neither XML nor PDF."""
    if signature_type == CMS:
        return
    if signature_type:
        known = {XMLDSIG: "XAdES", "http://uri.etsi.org/19162/v1.1.1": "ASiC-E", "http://uri.etsi.org/19142/v1.1.1":
                 "PAdES"}
        if signature_type in known:
            raise SiegelError(Code.NOT_SUPPORTED, f"{known[signature_type]} signatures are not offered yet")
        raise SiegelError(Code.BAD_REQUEST, f"SignatureType {signature_type!r} is unknown (expected {CMS}, "
                                            f"{XMLDSIG}, http://uri.etsi.org/19162/v1.1.1 or "
                                            "http://uri.etsi.org/19142/v1.1.1)")
    mime = (mime_type or "").split(";")[0].strip().lower()
    if mime.endswith("/xml") or mime.endswith("+xml") or mime == "application/pdf":
        raise SiegelError(Code.NOT_SUPPORTED, f"a {mime} document gets an XAdES or PAdES signature, "
                                              "which is not offered yet; ask for SignatureType urn:ietf:rfc:3369")


def sign_response(request: etree._Element, profile: str, signature: bytes | None,
                  error: SiegelError | None = None) -> etree._Element:
    """The SignResponse: Success with the CMS in SignatureObject, or the error's Result."""
    response = etree.Element(f"{{{DSS_NS}}}SignResponse", nsmap={"dss": DSS_NS})
    if request.get("RequestID") is not None:
        response.set("RequestID", request.get("RequestID"))
    response.set("Profile", request.get("Profile") or profile)
    if error is not None:
        kind = KINDS[error.code]
        response.append(dss_result(kind.major, kind.minor, error.message))
        return response
    assert signature is not None
    response.append(dss_result(SUCCESS, None, "signed"))
    holder = etree.SubElement(response, f"{{{DSS_NS}}}SignatureObject")
    etree.SubElement(holder, f"{{{DSS_NS}}}Base64Signature", {"Type": CMS}).text = base64.b64encode(signature).decode()
    return response

