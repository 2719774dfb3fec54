"""TR-ESOR S.4 ``Verify`` (TR-ESOR-E 3.7): evidence records checked against the data they protect.

The request names the records in ``SignatureObject/Other/xaip:evidenceRecord`` (A3.7.1-4), or, without them, the
records in the ``credentialsSection`` of the XAIP it carries (A3.7.1-3). The data is in ``InputDocuments``: an
``xaip:XAIP`` in ``Document/InlineXML`` (each record is checked against the package's skeleton and each binary
data object, :mod:`server.archive.xaip`, and reported against the one it protects), or ``Document/Base64Data``.
The answer is a ``dss:VerifyResponse`` whose ``OptionalOutputs`` hold a DSS-X ``vr:VerificationReport`` with one
``IndividualReport`` per record, its ``Details`` a TR-ESOR ``EvidenceRecordReport`` (TR-ESOR-VR 3.1).
Signatures inside an XAIP (VerifyUnderSignaturePolicy) are not verified here: ``…/arl/notSupported``; ``/dss``
verifies signatures.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from asn1crypto import cms
from lxml import etree

from server.archive import xaip as xp
from server.archive.evidence_verify import EvidenceReport, Step, decode
from server.archive.record import ArchiveTimestamp, EvidenceRecord
from server.errors import Code, SiegelError
from server.validation.model import Indication
from server.web.s4 import ARL_MINOR, COMMON_MINOR, RESULT_MAJOR, response_element
from server.web.soap import DSS_NS, dss_result
from server.xmlsafe import parse_xml

if TYPE_CHECKING:
    from server.archive.service import ArchiveService

VR_NS = "urn:oasis:names:tc:dss-x:1.0:profiles:verificationreport:schema#"
TRVR_NS = "http://www.bsi.bund.de/tr-esor/vr"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
DETAIL = "urn:oasis:names:tc:dss:1.0:detail:"
DIGEST_URIS = {"sha256": "http://www.w3.org/2001/04/xmlenc#sha256",
               "sha384": "http://www.w3.org/2001/04/xmldsig-more#sha384",
               "sha512": "http://www.w3.org/2001/04/xmlenc#sha512"}
XAIP_POLICIES = ("http://www.bsi.bund.de/DE/tr-esor/sigpolicy/verify-xaip",
                 "http://www.bsi.bund.de/DE/tr-esor/sigpolicy/verify-xaip/shell",
                 "http://www.bsi.bund.de/DE/tr-esor/sigpolicy/verify-xaip/chain")
_NS = {"dss": DSS_NS, "xaip": xp.XAIP_NS, "tr": "http://www.bsi.bund.de/tr-esor/api/1.3", "vr": VR_NS}
_VERDICT = {Indication.TOTAL_PASSED: "valid", Indication.TOTAL_FAILED: "invalid",
            Indication.INDETERMINATE: "indetermined"}
_RANK = {Indication.TOTAL_FAILED: 0, Indication.INDETERMINATE: 1, Indication.TOTAL_PASSED: 2}


def _records(request: etree._Element, packages: Sequence[etree._Element]) -> list[etree._Element]:
    """The xaip:evidenceRecord elements to verify: SignatureObject/Other's, else those in the XAIPs' credentials."""
    named = request.findall("dss:SignatureObject/dss:Other/xaip:evidenceRecord", _NS)
    if named:
        return named
    carried = [r for package in packages for r in package.iterfind(
        "xaip:credentialsSection/xaip:credential/xaip:evidenceRecord", _NS)]
    if not carried:
        raise SiegelError(Code.BAD_REQUEST, "nothing to verify: no xaip:evidenceRecord in SignatureObject/Other or in "
                                            "the credentials of an XAIP in InputDocuments (signatures: /dss)",
                          COMMON_MINOR + "parameterError")
    return carried


def _inputs(request: etree._Element) -> tuple[list[tuple[str, bytes]], list[etree._Element]]:
    """The data an evidence record may protect, named, and the XAIPs among the input documents."""
    candidates: list[tuple[str, bytes]] = []
    packages: list[etree._Element] = []
    for number, document in enumerate(request.iterfind("dss:InputDocuments/dss:Document", _NS), 1):
        name = document.get("ID") or f"document-{number}"
        package = document.find("dss:InlineXML/xaip:XAIP", _NS)
        if package is not None:
            packages.append(package)
            parts = xp.split(package)
            candidates.append((f"{name}: the XAIP skeleton", parts.skeleton))
            candidates += [(f"{name}: dataObject {o.ident}", o.content) for o in parts.objects]
            continue
        data = document.find("dss:Base64Data", _NS)
        if data is None:
            raise SiegelError(Code.NOT_SUPPORTED, f"input document {name!r}: Siegel reads an xaip:XAIP in InlineXML or "
                                                  "Base64Data", ARL_MINOR + "notSupported")
        try:
            candidates.append((name, base64.b64decode("".join((data.text or "").split()), validate=True)))
        except (binascii.Error, ValueError):
            raise SiegelError(Code.BAD_REQUEST, f"input document {name!r}: Base64Data is not base64",
                              COMMON_MINOR + "parameterError") from None
    return candidates, packages


def _refuse_signature_policies(request: etree._Element) -> None:
    options = request.find("dss:OptionalInputs", _NS)
    if options is not None and any(isinstance(o.tag, str) and etree.QName(o).localname == "VerifyUnderSignaturePolicy"
                                   for o in options):
        raise SiegelError(Code.NOT_SUPPORTED, "VerifyUnderSignaturePolicy: Siegel's S.4 Verify checks evidence "
                                              "records; signatures are verified at /dss", ARL_MINOR + "notSupported")


def _result(parent: etree._Element, tag: str, verdict: str, message: str | None = None,
            ns: str = TRVR_NS) -> etree._Element:
    """A vr:VerificationResultType element: ResultMajor ``urn:…:detail:<verdict>`` and a message."""
    holder = etree.SubElement(parent, f"{{{ns}}}{tag}")
    etree.SubElement(holder, f"{{{VR_NS}}}ResultMajor").text = DETAIL + verdict
    if message:
        etree.SubElement(holder, f"{{{VR_NS}}}ResultMessage", {"{http://www.w3.org/XML/1998/namespace}lang": "en"}
                         ).text = message
    return holder


def _algorithm(parent: etree._Element, tag: str, name: str, ns: str = TRVR_NS) -> None:
    holder = etree.SubElement(parent, f"{{{ns}}}{tag}")
    etree.SubElement(holder, f"{{{VR_NS}}}Algorithm").text = DIGEST_URIS.get(name, f"urn:siegel:digest:{name}")


def _tsa_identifier(parent: etree._Element, token: bytes) -> None:
    """vr:CertificateIdentifier: issuer and serial number of the timestamp's signer, as the token names it."""
    holder = etree.SubElement(parent, f"{{{VR_NS}}}CertificateIdentifier")
    issuer, serial = "", "0"
    try:
        signer = cms.ContentInfo.load(token)["content"]["signer_infos"][0]["sid"]
        if signer.name == "issuer_and_serial_number":
            issuer = signer.chosen["issuer"].human_friendly
            serial = str(signer.chosen["serial_number"].native)
    except (ValueError, KeyError, IndexError, TypeError):
        pass  # the timestamp verdict says what is wrong with the token
    etree.SubElement(holder, f"{{{DS_NS}}}X509IssuerName").text = issuer
    etree.SubElement(holder, f"{{{DS_NS}}}X509SerialNumber").text = serial


def _verdict(steps: Sequence[Step]) -> tuple[str, str | None]:
    """valid / invalid / indetermined of some steps (all passed / one failed / else) and their messages."""
    if any(s.passed is False for s in steps):
        verdict = "invalid"
    elif all(s.passed for s in steps):
        verdict = "valid"
    else:
        verdict = "indetermined"
    return verdict, "; ".join(s.message for s in steps if s.message) or None


def _timestamp_report(parent: etree._Element, ats: ArchiveTimestamp, steps: Sequence[Step]) -> None:
    """One ArchiveTimeStamp of a TR-ESOR EvidenceRecordReport (TR-ESOR-VR 3.2): its FormatOK says the structural
    checks (the value it must cover is in its first partial hash tree, the tree leads to the imprint), the
    TimeStamp's SignatureOK and CertificatePathValidity the RFC 3161 token's."""
    report = etree.SubElement(parent, f"{{{TRVR_NS}}}ArchiveTimeStamp")
    _result(report, "FormatOK", *_verdict([s for s in steps if s.check in ("reference", "hash-tree")]), ns=VR_NS)
    _algorithm(report, "DigestAlgorithm", ats.digest_algorithm, ns=VR_NS)
    if ats.reduced_tree:
        tree = etree.SubElement(report, f"{{{VR_NS}}}ReducedHashTree")
        for group in ats.reduced_tree:
            partial = etree.SubElement(tree, f"{{{VR_NS}}}PartialHashTree")
            for value in group:
                holder = etree.SubElement(partial, f"{{{VR_NS}}}HashValue")
                etree.SubElement(holder, f"{{{VR_NS}}}HashValue").text = value.hex().upper()
    stamp = etree.SubElement(report, f"{{{VR_NS}}}TimeStamp")
    token = _verdict([s for s in steps if s.check == "timestamp"])
    _result(stamp, "FormatOK", "valid", ns=VR_NS)
    signature = etree.SubElement(stamp, f"{{{VR_NS}}}SignatureOK")
    _result(signature, "SigMathOK", *token, ns=VR_NS)
    path = etree.SubElement(stamp, f"{{{VR_NS}}}CertificatePathValidity")
    _result(path, "PathValiditySummary", *token, ns=VR_NS)
    _tsa_identifier(path, ats.timestamp)


def record_report(record: EvidenceRecord, fmt: str, report: EvidenceReport) -> etree._Element:
    """A TR-ESOR-VR EvidenceRecordReport of ``record`` (``fmt`` ers or xml) from the steps of its verification."""
    element = etree.Element(f"{{{TRVR_NS}}}EvidenceRecordReport", {"ReportVersion": "1.3.0"},
                            nsmap={"trvr": TRVR_NS, "vr": VR_NS})
    _result(element, "FormatOK", *_verdict([s for s in report.steps if s.check == "format"]))
    etree.SubElement(element, f"{{{TRVR_NS}}}Version").text = f"urn:ietf:rfc:{4998 if fmt == 'ers' else 6283}"
    for name in record.digest_algorithms:
        _algorithm(element, "DigestAlgorithm", name)
    sequence = etree.SubElement(element, f"{{{TRVR_NS}}}ArchiveTimeStampSequence")
    for c, chain in enumerate(record.chains, 1):
        holder = etree.SubElement(sequence, f"{{{TRVR_NS}}}ArchiveTimeStampChain")
        for n, ats in enumerate(chain, 1):
            _timestamp_report(holder, ats, [s for s in report.steps if (s.chain, s.timestamp) == (c, n)])
    return element


def evidence_record_element(record: bytes, fmt: str, aoid: str, version_id: str, max_depth: int) -> etree._Element:
    """An ``xaip:evidenceRecord`` holding ``record`` (DER of RFC 4998, or an RFC 6283 ers:EvidenceRecord)."""
    holder = etree.Element(f"{{{xp.XAIP_NS}}}evidenceRecord", {"AOID": aoid, "VersionID": version_id},
                           nsmap={"xaip": xp.XAIP_NS})
    if fmt == "ers":
        etree.SubElement(holder, f"{{{xp.XAIP_NS}}}asn1EvidenceRecord").text = base64.b64encode(record).decode()
        return holder
    ers = parse_xml(record, max_depth=max_depth)
    inner = etree.SubElement(holder, f"{{{xp.XAIP_NS}}}xmlEvidenceRecord", dict(ers.attrib))
    inner.text = ers.text
    for child in ers:
        inner.append(child)
    return holder


def evidence_record_bytes(holder: etree._Element) -> tuple[bytes, str]:
    """The record in an ``xaip:evidenceRecord`` (DER, or an ers:EvidenceRecord document) and its format."""
    asn1 = holder.find("xaip:asn1EvidenceRecord", _NS)
    if asn1 is not None:
        try:
            return base64.b64decode("".join((asn1.text or "").split()), validate=True), "ers"
        except (binascii.Error, ValueError):
            raise SiegelError(Code.BAD_REQUEST, "asn1EvidenceRecord is not base64", COMMON_MINOR + "parameterError") \
                from None
    xml = holder.find("xaip:xmlEvidenceRecord", _NS)
    assert xml is not None  # schema-valid: one of the two
    ers = etree.Element("{urn:ietf:params:xml:ns:ers}EvidenceRecord", dict(xml.attrib),
                        nsmap={"ers": "urn:ietf:params:xml:ns:ers"})
    ers.text = xml.text
    for child in xml:
        ers.append(copy.deepcopy(child))
    return etree.tostring(ers), "xml"


def _words(report: EvidenceReport) -> str:
    """Why a record is not valid (its failed and undecided steps), or since when it proves existence."""
    if report.passed:
        return "valid" + (f", existence proven since {report.proof_time.isoformat()}" if report.proof_time else "")
    words = [s.message for s in report.steps if s.passed is not True and s.message]
    return "; ".join(words[:4]) or report.indication.value


def _checked(archive: ArchiveService, data: bytes, candidates: Sequence[tuple[str, bytes]]
             ) -> tuple[str, bytes, EvidenceReport]:
    """The candidate the record protects (the first that verifies, else the best verdict's) and its report."""
    if not candidates:
        raise SiegelError(Code.BAD_REQUEST, "Verify needs the data the evidence records protect: an xaip:XAIP in "
                                            "InputDocuments/Document/InlineXML or a Document's Base64Data",
                          COMMON_MINOR + "parameterError")
    best: tuple[str, bytes, EvidenceReport] | None = None
    for name, content in candidates:
        report = archive.verify(data, data=content)
        if best is None or _RANK[report.indication] > _RANK[best[2].indication]:
            best = (name, content, report)
        if report.passed:
            break
    assert best is not None
    return best


def _individual(parent: etree._Element, holder: etree._Element, archive: ArchiveService,
                candidates: Sequence[tuple[str, bytes]]) -> Indication:
    """The IndividualReport of one xaip:evidenceRecord; returns its verdict."""
    individual = etree.SubElement(parent, f"{{{VR_NS}}}IndividualReport")
    identifier = etree.SubElement(individual, f"{{{VR_NS}}}SignedObjectIdentifier")
    data, fmt = evidence_record_bytes(holder)
    subject = f"the evidence record of {holder.get('AOID') or 'an archive object'} {holder.get('VersionID') or ''}"
    try:
        record = decode(data)
    except SiegelError as exc:
        individual.append(dss_result(RESULT_MAJOR + "error", ARL_MINOR + "XAIP_NOK_ER", f"{subject}: {exc.message}"))
        return Indication.TOTAL_FAILED
    name, content, report = _checked(archive, data, candidates)
    digest = etree.SubElement(identifier, f"{{{VR_NS}}}DigestAlgAndValue")
    etree.SubElement(digest, f"{{{DS_NS}}}DigestMethod", {"Algorithm": DIGEST_URIS["sha256"]})
    etree.SubElement(digest, f"{{{DS_NS}}}DigestValue").text = \
        base64.b64encode(hashlib.sha256(content).digest()).decode()
    words = f"{subject} over {name}: {_words(report)}"
    if report.passed:
        individual.append(dss_result(RESULT_MAJOR + "ok", None, words))
    else:
        failed = report.indication is Indication.TOTAL_FAILED
        individual.append(dss_result(RESULT_MAJOR + ("error" if failed else "warning"), ARL_MINOR + "XAIP_NOK_ER",
                                     words))
    etree.SubElement(individual, f"{{{VR_NS}}}Details").append(record_report(record, fmt, report))
    return report.indication


def verify_response(archive: ArchiveService, request: etree._Element) -> etree._Element:
    """The dss:VerifyResponse to a TR-ESOR VerifyRequest: every evidence record's IndividualReport in a DSS-X
    VerificationReport; the Result is ``#ok`` when all are valid, else ``#error`` (``#warning`` when none is
    invalid but one undecided) with ``…/arl/XAIP_NOK_ER``."""
    _refuse_signature_policies(request)
    candidates, packages = _inputs(request)
    holders = _records(request, packages)
    report = etree.Element(f"{{{VR_NS}}}VerificationReport", nsmap={"vr": VR_NS, "dss": DSS_NS, "ds": DS_NS})
    verdicts = [_individual(report, holder, archive, candidates) for holder in holders]
    worst = min(verdicts, key=_RANK.__getitem__)
    count = f"{len(verdicts)} evidence record{'s' if len(verdicts) != 1 else ''}"
    if worst is Indication.TOTAL_PASSED:
        response = response_element(f"{{{DSS_NS}}}VerifyResponse", request, RESULT_MAJOR + "ok", None,
                                    f"{count} valid", nsmap={"dss": DSS_NS})
    else:
        response = response_element(f"{{{DSS_NS}}}VerifyResponse", request, RESULT_MAJOR + (
            "error" if worst is Indication.TOTAL_FAILED else "warning"), ARL_MINOR + "XAIP_NOK_ER",
            f"{count}: {sum(v is not Indication.TOTAL_PASSED for v in verdicts)} not valid", nsmap={"dss": DSS_NS})
    etree.SubElement(response, f"{{{DSS_NS}}}OptionalOutputs").append(report)
    return response
