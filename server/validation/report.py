"""A :class:`ValidationReport` as the ETSI TS 119 102-2 XML report and as JSON.

:func:`to_etsi_xml` writes ``vr:ValidationReport`` (namespace ``http://uri.etsi.org/19102/v1.2.1#``, valid
against TS119102-2-v122.xsd): one ``SignatureValidationReport`` per signature (SignatureIdentifier,
ValidationTimeInfo, SignersDocument, SignatureAttributes, SignerInformation, SignatureValidationProcess,
SignatureValidationStatus with the certificate chain, the timestamps and our messages as
AssociatedValidationReportData), then ``SignatureValidationObjects``: every certificate, timestamp and signed
data object once, with a POE (the best signature time for signed data, the genTime for a valid timestamp,
the validation time otherwise). Identifiers: ``S-<signature id>``, ``C-<SHA-256 prefix>`` (certificates),
``T-<SHA-256 prefix>`` (timestamps), ``D-<signature index>-<scope index>`` (signed data).

:func:`to_json` gives a dict with these keys (stable; times ISO 8601 UTC, digests base64, absent values null):
``validationTime``, ``documentName``, ``passed``, ``signatures[]`` with ``id``, ``format``, ``indication``,
``subIndication``, ``messages[]``, ``signer`` (subject, RFC 4514), ``signingTime`` (claimed),
``bestSignatureTime``, ``level``, ``digestAlgorithm``, ``signatureAlgorithm``, ``timestamps[]`` (``kind``,
``time``, ``valid``, ``tsa``, ``message``), ``scopes[]`` (``name``, ``scope``, ``description``,
``digestAlgorithm``, ``digest``) and ``chain[]`` (subjects, the signer's first).
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime, timezone
from typing import Any

from cryptography import x509
from lxml import etree

from server.validation.model import Indication, SignatureReport, SignedScope, TimestampResult, ValidationReport

VR = "http://uri.etsi.org/19102/v1.2.1#"
DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
_NSMAP = {"vr": VR, "ds": DS, "XAdES": XADES}

MAIN_INDICATION = "urn:etsi:019102:mainindication:"
SUB_INDICATION = "urn:etsi:019102:subindication:"
OBJECT_TYPE = "urn:etsi:019102:validationObject:"
POE_VALIDATION = "urn:etsi:019102:poetype:validation"
PROCESS = "urn:etsi:019102:validationprocess:"
#: Types of our AdditionalValidationReportData entries.
MESSAGE_TYPE = "urn:siegel:validation:message"
LEVEL_TYPE = "urn:siegel:validation:level"

DIGEST_URIS = {
    "sha1": "http://www.w3.org/2000/09/xmldsig#sha1",
    "sha224": "http://www.w3.org/2001/04/xmldsig-more#sha224",
    "sha256": "http://www.w3.org/2001/04/xmlenc#sha256",
    "sha384": "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "sha512": "http://www.w3.org/2001/04/xmlenc#sha512",
    "sha3_224": "http://www.w3.org/2007/05/xmldsig-more#sha3-224",
    "sha3_256": "http://www.w3.org/2007/05/xmldsig-more#sha3-256",
    "sha3_384": "http://www.w3.org/2007/05/xmldsig-more#sha3-384",
    "sha3_512": "http://www.w3.org/2007/05/xmldsig-more#sha3-512",
}


# ---------------------------------------------------------------- JSON

def to_json(report: ValidationReport) -> dict[str, Any]:
    """The report as JSON-ready data (keys in the module docstring)."""
    return {
        "validationTime": _iso(report.validation_time),
        "documentName": report.document_name,
        "passed": report.passed,
        "signatures": [_signature_json(s) for s in report.signatures],
    }


def _signature_json(sig: SignatureReport) -> dict[str, Any]:
    return {
        "id": sig.id,
        "format": sig.format,
        "indication": sig.indication.value,
        "subIndication": sig.sub_indication.value if sig.sub_indication else None,
        "messages": list(sig.messages),
        "signer": sig.signer_name,
        "signingTime": _iso(sig.claimed_signing_time),
        "bestSignatureTime": _iso(sig.best_signature_time),
        "level": sig.level,
        "digestAlgorithm": sig.digest_algorithm,
        "signatureAlgorithm": sig.signature_algorithm,
        "timestamps": [{"kind": t.kind, "time": _iso(t.time), "valid": t.valid, "tsa": t.tsa, "message": t.message}
                       for t in sig.timestamps],
        "scopes": [{"name": s.name, "scope": s.scope, "description": s.description,
                    "digestAlgorithm": s.digest_algorithm, "digest": _b64(s.digest)} for s in sig.scopes],
        "chain": [_subject(der) for der in sig.chain],
    }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    utc = moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return utc.isoformat().replace("+00:00", "Z")


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _subject(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


# ---------------------------------------------------------------- XML

def to_etsi_xml(report: ValidationReport) -> bytes:
    """The TS 119 102-2 ``vr:ValidationReport`` (UTF-8, with XML declaration)."""
    objects = _Objects(report.validation_time)
    root = etree.Element(f"{{{VR}}}ValidationReport", nsmap=_NSMAP)
    for index, sig in enumerate(report.signatures, 1):
        root.append(_signature_report(sig, index, report.validation_time, objects, _unique_id(sig.id, objects)))
    if objects.elements:
        listing = _sub(root, "SignatureValidationObjects")
        listing.extend(objects.elements)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _unique_id(signature_id: str, objects: _Objects) -> str:
    """``S-`` and the signature id made an NCName, unique in the document."""
    base = "S-" + re.sub(r"[^A-Za-z0-9._-]", "_", signature_id)
    candidate, n = base, 1
    while candidate in objects.used:
        n += 1
        candidate = f"{base}-{n}"
    objects.used.add(candidate)
    return candidate


def _vr(tag: str) -> str:
    return f"{{{VR}}}{tag}"


def _sub(parent: etree._Element, tag: str, text: str | None = None, ns: str = VR, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{tag}", attrs)
    if text is not None:
        element.text = text
    return element


def _xml_time(moment: datetime) -> str:
    text = _iso(moment)
    assert text is not None
    return text


class _Objects:
    """The SignatureValidationObjects, each object once, collected while the reports are written."""

    def __init__(self, validation_time: datetime) -> None:
        self.validation_time = validation_time
        self.elements: list[etree._Element] = []
        self.used: set[str] = set()

    def certificate(self, der: bytes) -> str:
        return self._add("C-" + hashlib.sha256(der).hexdigest()[:16], "certificate", der,
                         self.validation_time, None)

    def timestamp(self, stamp: TimestampResult) -> str:
        key = "T-" + hashlib.sha256(stamp.token or stamp.message.encode()).hexdigest()[:16]
        if key not in self.used:
            poe = stamp.time if stamp.valid and stamp.time else self.validation_time
            self._add(key, "timestamp", stamp.token or None, poe, None)
            self._timestamp_report(self.elements[-1], stamp)
        return key

    def signed_data(self, identifier: str, scope: SignedScope, poe: datetime, poe_object: str | None) -> str:
        return self._add(identifier, "signedData", None, poe, poe_object, scope)

    def _add(self, identifier: str, kind: str, der: bytes | None, poe: datetime, poe_object: str | None,
             scope: SignedScope | None = None) -> str:
        if identifier in self.used:
            return identifier
        self.used.add(identifier)
        element = etree.Element(_vr("ValidationObject"), id=identifier)
        _sub(element, "ObjectType", OBJECT_TYPE + kind)
        representation = _sub(element, "ValidationObjectRepresentation")
        if der is not None:
            _sub(representation, "base64", base64.b64encode(der).decode("ascii"))
        elif scope is not None and scope.digest is not None and scope.digest_algorithm is not None:
            _digest_alg_and_value(representation, "DigestAlgAndValue", scope.digest_algorithm, scope.digest)
        else:
            _sub(representation, "URI", "urn:siegel:signed-data:" + (scope.name if scope else identifier))
        _poe(element, "POE", poe, poe_object)
        self.elements.append(element)
        return identifier

    @staticmethod
    def _timestamp_report(element: etree._Element, stamp: TimestampResult) -> None:
        """The timestamp's own verdict (PASSED / FAILED) inside its ValidationObject."""
        report = _sub(element, "ValidationReport")
        status = _sub(report, "SignatureValidationStatus")
        _sub(status, "MainIndication", MAIN_INDICATION + ("passed" if stamp.valid else "failed"))
        _additional(_sub(status, "AssociatedValidationReportData"), [(MESSAGE_TYPE, stamp.message)])


def _poe(parent: etree._Element, tag: str, moment: datetime, poe_object: str | None) -> None:
    poe = _sub(parent, tag)
    _sub(poe, "POETime", _xml_time(moment))
    _sub(poe, "TypeOfProof", POE_VALIDATION)
    if poe_object is not None:
        _sub(poe, "POEObject", VOReference=poe_object)


def _digest_alg_and_value(parent: etree._Element, tag: str, algorithm: str, digest: bytes) -> None:
    element = _sub(parent, tag)
    _sub(element, "DigestMethod", ns=DS, Algorithm=DIGEST_URIS.get(algorithm, f"urn:siegel:digest:{algorithm}"))
    _sub(element, "DigestValue", base64.b64encode(digest).decode("ascii"), ns=DS)


def _additional(parent: etree._Element, entries: list[tuple[str, str]]) -> None:
    if not entries:
        return
    data = _sub(parent, "AdditionalValidationReportData")
    for kind, value in entries:
        item = _sub(data, "ReportData")
        _sub(item, "Type", kind)
        _sub(item, "Value", value)


def _signature_report(sig: SignatureReport, index: int, validation_time: datetime, objects: _Objects,
                      identifier: str) -> etree._Element:
    element = etree.Element(_vr("SignatureValidationReport"))
    _identifier(element, sig, identifier)
    stamps = [(t, objects.timestamp(t)) for t in sig.timestamps]
    best = next((ref for t, ref in stamps if t.valid and t.kind == "signature" and t.time == sig.best_signature_time),
                None)
    time_info = _sub(element, "ValidationTimeInfo")
    _sub(time_info, "ValidationTime", _xml_time(validation_time))
    _poe(time_info, "BestSignatureTime", sig.best_signature_time or validation_time, best)
    scopes = [objects.signed_data(f"D-{index}-{n}", s, sig.best_signature_time or validation_time, best)
              for n, s in enumerate(sig.scopes, 1)]
    _signers_document(element, sig, scopes)
    _attributes(element, sig, stamps)
    chain = [objects.certificate(der) for der in sig.chain]
    if sig.signer_certificate is not None:
        information = _sub(element, "SignerInformation")
        _sub(information, "SignerCertificate", VOReference=objects.certificate(sig.signer_certificate))
        _sub(information, "Signer", sig.signer_name)
    process = _sub(element, "SignatureValidationProcess")
    _sub(process, "SignatureValidationProcessID", PROCESS + _process(sig))
    _status(element, sig, chain, [ref for _, ref in stamps] + scopes)
    return element


def _identifier(parent: etree._Element, sig: SignatureReport, identifier: str) -> None:
    element = _sub(parent, "SignatureIdentifier", id=identifier)
    if sig.signature_value is not None:
        _sub(element, "SignatureValue", base64.b64encode(sig.signature_value).decode("ascii"), ns=DS)
    _sub(element, "HashOnly", "true" if any(s.scope == "DIGEST" for s in sig.scopes) else "false")
    _sub(element, "DocHashOnly", "false")


def _signers_document(parent: etree._Element, sig: SignatureReport, scope_refs: list[str]) -> None:
    for scope, ref in zip(sig.scopes, scope_refs):
        if scope.digest is not None and scope.digest_algorithm is not None:
            document = _sub(parent, "SignersDocument")
            _digest_alg_and_value(document, "DigestAlgAndValue", scope.digest_algorithm, scope.digest)
            _sub(document, "SignersDocumentRef", VOReference=ref)
            return


def _attributes(parent: etree._Element, sig: SignatureReport, stamps: list[tuple[TimestampResult, str]]) -> None:
    tags = {"signature": "SignatureTimeStamp", "archive": "ArchiveTimeStamp", "content": "AllDataObjectsTimeStamp"}
    entries = [(tags[t.kind], t, ref) for t, ref in stamps if t.kind in tags and t.time is not None]
    if sig.claimed_signing_time is None and not entries:
        return
    attributes = _sub(parent, "SignatureAttributes")
    if sig.claimed_signing_time is not None:
        signing_time = _sub(attributes, "SigningTime", Signed="true")
        _sub(signing_time, "Time", _xml_time(sig.claimed_signing_time))
    for tag, stamp, ref in entries:
        attribute = _sub(attributes, tag, Signed="false")
        _sub(attribute, "AttributeObject", VOReference=ref)
        assert stamp.time is not None
        _sub(attribute, "TimeStampValue", _xml_time(stamp.time))


def _process(sig: SignatureReport) -> str:
    """Which TS 119 102-1 process the verdict rests on: LTA with archive timestamps, LTVM with a signature
    timestamp's proof of existence, Basic otherwise."""
    valid = {t.kind for t in sig.timestamps if t.valid}
    if "archive" in valid:
        return "LTA"
    return "LTVM" if sig.best_signature_time is not None else "Basic"


def _status(parent: etree._Element, sig: SignatureReport, chain: list[str], related: list[str]) -> None:
    status = _sub(parent, "SignatureValidationStatus")
    _sub(status, "MainIndication", MAIN_INDICATION + _main(sig.indication))
    if sig.sub_indication is not None:
        _sub(status, "SubIndication", SUB_INDICATION + sig.sub_indication.value)
    data = _sub(status, "AssociatedValidationReportData")
    if chain:
        certificates = _sub(data, "CertificateChain")
        _sub(certificates, "SigningCertificate", VOReference=chain[0])
        for ref in chain[1:-1]:
            _sub(certificates, "IntermediateCertificate", VOReference=ref)
        if len(chain) > 1:
            _sub(certificates, "TrustAnchor", VOReference=chain[-1])
    for ref in related:
        _sub(data, "RelatedValidationObject", VOReference=ref)
    entries = [(MESSAGE_TYPE, m) for m in sig.messages]
    if sig.level is not None:
        entries.append((LEVEL_TYPE, sig.level))
    _additional(data, entries)
    if not len(data):
        status.remove(data)


def _main(indication: Indication) -> str:
    return indication.value.lower()
