"""DSS ``VerifyRequest`` → a verification (and, asked for, an augmentation) → ``VerifyResponse``.

The signature is in ``SignatureObject`` (``ds:Signature``, ``Base64Signature`` or a ``SignaturePtr`` to
the input document holding it) or, without one, the single input document is the signed document
(enveloped XAdES, ASiC-E, enveloping CMS). Further input documents are the detached data, by their
``RefURI`` (or ``ID``); a ``DocumentHash`` gives detached data by digest only. Optional inputs:
``UseVerificationTime`` (``SpecificTime``), ``ReturnUpdatedSignature`` (``Type`` = a level URI: the
signature raised to that level comes back in ``UpdatedSignature``) and ``ReturnVerificationReport``
(the OASIS DSS-X report). The ETSI TS 119 102-2 report is always in ``OptionalOutputs``.

ResultMajor/ResultMinor of a finished verification: every signature TOTAL-PASSED → Success
``valid:signature:OnAllDocuments`` (``HasManifestResults`` with manifest scopes,
``NotAllDocumentsReferenced`` when an input document is not covered); one TOTAL-FAILED → Success
``invalid:IncorrectSignature``; INDETERMINATE → InsufficientInformation with ``CertificateChainNotComplete``
(no chain), ``OcspNotAvailiable`` (TRY_LATER), ``ReferencedDocumentNotPresent`` (no signed data) or
Siegel's ``indeterminate:<SUB-INDICATION>``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from server.errors import DSS_MAJOR, DSS_MINOR, SIEGEL_MINOR, Code, SiegelError
from server.signing.levels import Level
from server.validation.model import Indication, SubIndication, ValidationReport
from server.validation.report import to_etsi_xml
from server.validation.service import parse_validation_time
from server.web.dss_sign import LEVELS, SIEGEL_NS, _document, _text
from server.web.soap import DSS_NS, dss_result
from server.xmlsafe import parse_xml, standalone

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
VR_NS = "urn:oasis:names:tc:dss-x:1.0:profiles:verificationreport:schema#"
_NS = {"dss": DSS_NS, "ds": DS_NS, "vr": VR_NS}


@dataclass
class VerifyOrder:
    """What a VerifyRequest asks, checked."""

    signature: bytes
    name: str
    detached: dict[str, bytes] = field(default_factory=dict)
    detached_digests: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    document_names: list[str] = field(default_factory=list)  # every input document, to see which are covered
    at: datetime | None = None
    update_to: tuple[Level, str] | None = None  # the level and the Type URI it was asked with
    dssx_report: bool = False


def _inputs(request: etree._Element) -> list[tuple[str | None, str, etree._Element]]:
    """(ID, name, element) of each input document."""
    inputs = request.find("dss:InputDocuments", _NS)
    items = [i for i in inputs if isinstance(i.tag, str)] if inputs is not None else []
    return [(i.get("ID"), i.get("RefURI") or i.get("ID") or f"document-{n}", i) for n, i in enumerate(items, 1)]


def _signature_object(request: etree._Element) -> tuple[bytes | None, str | None]:
    """The signature given in SignatureObject, or the ID of the document it points into."""
    holder = request.find("dss:SignatureObject", _NS)
    if holder is None:
        return None, None
    inline = holder.find("ds:Signature", _NS)
    if inline is not None:
        return standalone(inline), None
    b64 = holder.find("dss:Base64Signature", _NS)
    if b64 is not None:
        try:
            return base64.b64decode("".join(_text(b64).split()), validate=True), None
        except (binascii.Error, ValueError):
            raise SiegelError(Code.BAD_REQUEST, "Base64Signature is not base64", SIEGEL_MINOR + "NotBase64") from None
    pointer = holder.find("dss:SignaturePtr", _NS)
    if pointer is not None:
        return None, pointer.get("WhichDocument")
    raise SiegelError(Code.NOT_SUPPORTED, "SignatureObject: Siegel verifies a ds:Signature, a Base64Signature or "
                                          "a SignaturePtr", DSS_MINOR + "NotSupported")


def _verification_time(options: etree._Element | None) -> datetime | None:
    use = options.find("dss:UseVerificationTime", _NS) if options is not None else None
    if use is None or use.find("dss:CurrentTime", _NS) is not None:
        return None
    return parse_validation_time(_text(use.find("dss:SpecificTime", _NS)), "UseVerificationTime/SpecificTime")


def _update_to(options: etree._Element | None) -> tuple[Level, str] | None:
    update = options.find("dss:ReturnUpdatedSignature", _NS) if options is not None else None
    if update is None:
        return None
    level = LEVELS.get(update.get("Type", ""))
    if level is None:
        raise SiegelError(Code.BAD_REQUEST, f"ReturnUpdatedSignature Type {update.get('Type')!r}: expected an ETSI "
                                            "baseline level URI (…/B-T#, …/B-LT#, …/B-LTA#) or an OASIS AdES form")
    if level == "B-B":
        raise SiegelError(Code.BAD_REQUEST, "ReturnUpdatedSignature: a signature is raised to B-T, B-LT or B-LTA")
    return Level(level), update.get("Type", "")


def parse_verify_request(request: etree._Element, max_depth: int) -> VerifyOrder:
    options = request.find("dss:OptionalInputs", _NS)
    signature, pointer = _signature_object(request)
    inputs = _inputs(request)
    ids = {ident: (name, element) for ident, name, element in inputs if ident is not None}
    if pointer is not None and pointer not in ids:
        raise SiegelError(Code.BAD_REQUEST, f"SignaturePtr: WhichDocument {pointer!r} names no input document",
                          DSS_MINOR + "ReferencedDocumentNotPresent")
    order = VerifyOrder(b"", "signature", at=_verification_time(options), update_to=_update_to(options),
                        dssx_report=options is not None and options.find("vr:ReturnVerificationReport", _NS)
                        is not None, document_names=[name for _, name, _ in inputs])
    signed_holder = ids[pointer][0] if pointer is not None else None
    if signature is None and pointer is None:
        if not inputs:
            raise SiegelError(Code.BAD_REQUEST, "nothing to verify: no SignatureObject and no input document")
        signed_holder = inputs[0][1]
    for _, name, element in inputs:
        document = _document(element, name, max_depth)
        if name == signed_holder:
            if document.content is None:
                raise SiegelError(Code.BAD_REQUEST, f"{name!r} is a DocumentHash: the signed document itself is "
                                                    "needed", DSS_MINOR + "ReferencedDocumentNotPresent")
            order.signature, order.name = document.content, name
        elif document.content is not None:
            order.detached[name] = document.content
        else:
            assert document.digest is not None
            order.detached_digests[name] = (document.digest_algorithm.value, document.digest)
    if signature is not None:
        order.signature = signature
    return order


_INDETERMINATE_MINORS = {SubIndication.NO_CERTIFICATE_CHAIN_FOUND: DSS_MINOR + "CertificateChainNotComplete",
                         SubIndication.TRY_LATER: DSS_MINOR + "OcspNotAvailiable",
                         SubIndication.SIGNED_DATA_NOT_FOUND: DSS_MINOR + "ReferencedDocumentNotPresent"}


def result_of(report: ValidationReport, document_names: list[str]) -> tuple[str, str, str]:
    """ResultMajor, ResultMinor and message of a finished verification."""
    worst = min(report.signatures, key=lambda s: (s.indication is Indication.TOTAL_PASSED,
                                                  s.indication is Indication.INDETERMINATE))
    words = "; ".join(worst.messages[:3]) or worst.indication.value
    if worst.indication is Indication.TOTAL_FAILED:
        return DSS_MAJOR + "Success", DSS_MINOR + "invalid:IncorrectSignature", words
    if worst.indication is Indication.INDETERMINATE:
        sub = worst.sub_indication or SubIndication.GENERIC
        minor = _INDETERMINATE_MINORS.get(sub, SIEGEL_MINOR + f"indeterminate:{sub.value}")
        return DSS_MAJOR + "InsufficientInformation", minor, words
    covered = {scope.name for s in report.signatures for scope in s.scopes}
    if any("manifest" in scope.description.lower() for s in report.signatures for scope in s.scopes):
        return DSS_MAJOR + "Success", DSS_MINOR + "valid:signature:HasManifestResults", "valid, with manifest results"
    if any(name not in covered for name in document_names if name != report.document_name):
        return DSS_MAJOR + "Success", DSS_MINOR + "valid:signature:NotAllDocumentsReferenced", \
            "valid; not every input document is covered by the signature"
    return DSS_MAJOR + "Success", DSS_MINOR + "valid:signature:OnAllDocuments", \
        f"{len(report.signatures)} valid {'signature' if len(report.signatures) == 1 else 'signatures'}"


def _dssx_report(report: ValidationReport, etsi: etree._Element) -> etree._Element:
    """The OASIS DSS-X VerificationReport: one IndividualReport per signature, its ETSI report as Details."""
    vr = etree.Element(f"{{{VR_NS}}}VerificationReport", nsmap={"vr": VR_NS, "dss": DSS_NS})
    info = etree.SubElement(vr, f"{{{DSS_NS}}}VerificationTimeInfo")
    etree.SubElement(info, f"{{{DSS_NS}}}VerificationTime").text = report.validation_time.isoformat()
    details = etsi.findall("{http://uri.etsi.org/19102/v1.2.1#}SignatureValidationReport")
    for signature, detail in zip(report.signatures, details):
        individual = etree.SubElement(vr, f"{{{VR_NS}}}IndividualReport")
        identifier = etree.SubElement(individual, f"{{{VR_NS}}}SignedObjectIdentifier")
        etree.SubElement(etree.SubElement(identifier, f"{{{VR_NS}}}Other"), f"{{{SIEGEL_NS}}}SignatureId",
                         nsmap={"siegel": SIEGEL_NS}).text = signature.id
        single = ValidationReport([signature], report.validation_time, report.document_name)
        major, minor, message = result_of(single, [])
        individual.append(dss_result(major, minor, message))
        etree.SubElement(individual, f"{{{VR_NS}}}Details").append(detail)
    return vr


def verify_response(request: etree._Element, profile: str, report: ValidationReport | None,
                    order: VerifyOrder | None, updated: tuple[bytes, str] | None = None,
                    error: SiegelError | None = None, max_depth: int = 256) -> etree._Element:
    """The VerifyResponse: the Result, the ETSI report (and DSS-X report, updated signature) in OptionalOutputs."""
    response = etree.Element(f"{{{DSS_NS}}}VerifyResponse", nsmap={"dss": DSS_NS})
    if request.get("RequestID") is not None:
        response.set("RequestID", request.get("RequestID"))
    response.set("Profile", request.get("Profile") or profile)
    if error is not None or report is None or order is None:
        assert error is not None
        response.append(dss_result(error.kind.major, error.result_minor, error.message))
        return response
    response.append(dss_result(*result_of(report, order.document_names)))
    outputs = etree.SubElement(response, f"{{{DSS_NS}}}OptionalOutputs")
    if updated is not None:
        data, signature_type = updated
        asked = {"Type": order.update_to[1]} if order.update_to else {}
        holder = etree.SubElement(etree.SubElement(outputs, f"{{{DSS_NS}}}UpdatedSignature", asked),
                                  f"{{{DSS_NS}}}SignatureObject")
        etree.SubElement(holder, f"{{{DSS_NS}}}Base64Signature", {"Type": signature_type}).text = \
            base64.b64encode(data).decode()
    etsi = to_etsi_xml(report)
    if order.dssx_report:
        outputs.append(_dssx_report(report, parse_xml(etsi, max_depth=max_depth)))
    outputs.append(parse_xml(etsi, max_depth=max_depth))
    return response

