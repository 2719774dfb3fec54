"""The TR-ESOR S.4 operations on :class:`server.archive.service.ArchiveService`: request element in, response out.

Every operation gets a schema-valid request element (:mod:`server.web.s4` validated it) and the authenticated
principal, and returns its response element; a refusal is a ``SiegelError`` (with the TR-ESOR ResultMinor where
the code alone does not say it), which the endpoint turns into the operation's response with an error Result.

- ArchiveSubmission: an ``xaip:XAIP`` (its binary data objects and its skeleton become the archive object's
  items, :mod:`server.archive.xaip`) or ``ArchiveData`` elements (a plain archive object, one item each).
  The AOID is Siegel's: a client-assigned one (``OptionalInputs/tr:AOID``, ``packageHeader/AOID``) is refused.
- ArchiveUpdate: an ``xaip:DXAIP`` merged into the stored package as a new version; its VersionID comes back.
- ArchiveRetrieval: the XAIP of the newest version (or of the one VersionID asked for; ``all``: the newest, which
  holds every version manifest); a plain object is shown as a synthesized XAIP (versions V1, V2, …). With
  ``tr:IncludeERS`` the version's evidence records come along as credentials pointing at their objects.
- ArchiveEvidence: ``xaip:evidenceRecord``s of the newest version (or of the VersionIDs asked for, ``all``), ASN.1
  (RFC 4998, the default) or XML (RFC 6283) by ``OptionalInputs/tr:ERSFormat``; one per archive item of the version,
  in the order of its items (the skeleton first).
- ArchiveDeletion: needs ``OptionalInputs/tr:ReasonOfDeletion`` whose RequestorName is the authenticated account;
  the archive logs the deletion with that reason.
- ArchiveData: ``DataLocation``s of Type XPath evaluated (XPath 1.0) on the XAIP of the newest version.
- Verify: the evidence records in ``SignatureObject/Other`` against the data in ``InputDocuments`` (an XAIP in
  ``InlineXML``, or ``Base64Data``), answered with a DSS-X VerificationReport holding a TR-ESOR
  ``EvidenceRecordReport`` per record.
- RetrieveInfo: the one profile offered, TR-ESOR S.4 V1.0.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from lxml import etree

from server.archive import xaip as xp
from server.errors import Code, SiegelError
from server.web.s4 import (ARL_MINOR, COMMON_MINOR, PROFILE, RESULT_MAJOR, SAL_MINOR, TR_NS, OPERATIONS,
                           response_element)
from server.web.s4_verify import evidence_record_element, verify_response
from server.web.soap import DSS_NS, dss_result
from server.xmlsafe import parse_xml

if TYPE_CHECKING:
    from server.archive.service import ArchiveItem, ArchiveService
    from server.identity.users import Principal
    from server.web.s4 import TrEsorSchema

PRES_NS = "http://uri.etsi.org/19512/v1.1.2#"
MD_NS = "http://docs.oasis-open.org/dss-x/ns/metadata"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
XPATH_TYPE = "http://www.w3.org/TR/2007/REC-xpath20-20070123/"
XAIP_FORMAT = "http://www.bsi.bund.de/tr-esor/xaip/1.3"
ERS_FORMATS = {
    "urn:ietf:rfc:4998": "ers",
    "urn:ietf:rfc:6283": "xml",
    "http://www.bsi.bund.de/SharedDocs/Downloads/DE/BSI/Publikationen/TechnischeRichtlinien/TR03125/"
    "BSI_TR_03125_Anlage_ERS_V1_2.html#Basis-ERS-Profil": "ers",
    "http://www.bsi.bund.de/SharedDocs/Downloads/DE/BSI/Publikationen/TechnischeRichtlinien/TR03125/"
    "BSI_TR_03125_Anlage_ERS_V1_2.html#Basis-XERS-Profil": "xml",
}
"""tr:ERSFormat URIs (TR-ESOR-E 3.4.1) → the archive's evidence record formats."""
ARCHIVE_DATA_TYPES = {
    "http://uri.etsi.org/ades/CAdES": "application/cms",
    "http://uri.etsi.org/ades/XAdES": "application/xml",
    "http://uri.etsi.org/ades/PAdES": "application/pdf",
    "http://uri.etsi.org/ades/ASiC/type/ASiC-E": "application/vnd.etsi.asic-e+zip",
    "http://uri.etsi.org/ades/ASiC/type/ASiC-S": "application/vnd.etsi.asic-s+zip",
    "http://uri.etsi.org/19512/format/DigestList": "application/xml",
}
"""ArchiveData Types Siegel archives (TR-ESOR-E, HINWEIS 5) with the MIME type used when none is given."""
_NS = {"tr": TR_NS, "dss": DSS_NS, "xaip": xp.XAIP_NS, "saml": SAML_NS}
_XPATH_NS = {"xaip": xp.XAIP_NS, "ds": "http://www.w3.org/2000/09/xmldsig#", "dss": DSS_NS,
             "xades": "http://uri.etsi.org/01903/v1.3.2#", "ers": "urn:ietf:params:xml:ns:ers"}


def _ok(request: etree._Element, message: str | None = None, minor: str | None = None,
        warning: bool = False) -> etree._Element:
    _, tag = OPERATIONS[request.tag]
    return response_element(tag, request, RESULT_MAJOR + ("warning" if warning else "ok"), minor, message)


def _refuse(message: str, minor: str, code: Code = Code.BAD_REQUEST) -> SiegelError:
    return SiegelError(code, message, ARL_MINOR + minor)


T = TypeVar("T")


def _signatures_checked(store: Callable[[], T]) -> T:
    """``store()``; the archive's refusal of a signed document that does not verify answers with the ResultMinor
    S.4 names for it (ArchiveSubmission 3.1.2, ArchiveUpdate 3.2.2: ``…/resultminor/sal#invalidSignature``)."""
    from server.archive.service import SignatureRefused

    try:
        return store()
    except SignatureRefused as exc:
        raise SiegelError(exc.code, exc.message, SAL_MINOR + "invalidSignature") from None


def _items(package: xp.Package) -> list[ArchiveItem]:
    """The archive items of a split XAIP: its skeleton, then its binary data objects."""
    from server.archive.service import ArchiveItem

    items = [ArchiveItem(xp.SKELETON, xp.SKELETON_MIME, package.skeleton, {})]
    return items + [ArchiveItem(o.ident, o.mime_type, o.content, {}) for o in package.objects]


def _retrieval_options(options: etree._Element | None) -> str | None:
    """The evidence record format ArchiveRetrieval's ``tr:IncludeERS`` asks for (None: none); ``pres:POFormat``
    may only name the XAIP."""
    include = None
    for option in options if options is not None else ():
        if not isinstance(option.tag, str):
            continue
        if option.tag == f"{{{TR_NS}}}IncludeERS":
            uri = _text(option) or "urn:ietf:rfc:4998"
            if uri not in ERS_FORMATS:
                raise _refuse(f"IncludeERS {uri!r}: the formats are {', '.join(ERS_FORMATS)}", "notSupported",
                              Code.NOT_SUPPORTED)
            include = ERS_FORMATS[uri]
        elif option.tag == f"{{{PRES_NS}}}POFormat":
            if _text(option) != XAIP_FORMAT:
                raise _refuse(f"POFormat {_text(option)!r}: Siegel returns {XAIP_FORMAT}", "unknownPOFormat")
        else:
            raise _refuse(f"OptionalInputs {etree.QName(option).localname}: ArchiveRetrieval takes IncludeERS and "
                          "POFormat", "notSupported", Code.NOT_SUPPORTED)
    return include


def _text(element: etree._Element | None) -> str:
    return "" if element is None else "".join(element.itertext()).strip()


class S4Operations:
    """The S.4 functions over one ArchiveService; ``max_depth`` bounds the XML Siegel parses from storage."""

    def __init__(self, archive: ArchiveService, schema: TrEsorSchema, max_depth: int) -> None:
        self._archive = archive
        self._schema = schema
        self._max_depth = max_depth

    # --- ArchiveSubmission ----------------------------------------------------------------------------------

    def archive_submission(self, principal: Principal, request: etree._Element) -> etree._Element:
        if request.find("dss:OptionalInputs/tr:AOID", _NS) is not None:
            raise _refuse("AOIDs are assigned by Siegel: send the request without OptionalInputs/AOID", "notSupported",
                          Code.NOT_SUPPORTED)
        package = request.find("xaip:XAIP", _NS)
        if package is not None:
            if xp.declared_aoid(package) is not None:
                raise _refuse("AOIDs are assigned by Siegel: send the XAIP without packageHeader/AOID", "notSupported",
                              Code.NOT_SUPPORTED)
            items = _items(xp.split(package))
        else:
            items = [self._archive_data(element) for element in request.iterfind("tr:ArchiveData", _NS)]
        info = _signatures_checked(lambda: self._archive.submit(principal, items))
        response = _ok(request)
        etree.SubElement(response, f"{{{TR_NS}}}AOID").text = info.aoid
        return response

    @staticmethod
    def _archive_data(element: etree._Element) -> ArchiveItem:
        from server.archive.service import ArchiveItem

        kind = element.get("Type", "")
        if kind not in ARCHIVE_DATA_TYPES:
            raise _refuse(f"ArchiveData {element.get('archiveDataID')!r}: Type {kind!r} is not archived here; "
                          f"the Types are {', '.join(ARCHIVE_DATA_TYPES)}", "unknownArchiveDataType")
        try:
            content = base64.b64decode("".join((element.text or "").split()), validate=True)
        except (binascii.Error, ValueError):
            raise SiegelError(Code.BAD_REQUEST, f"ArchiveData {element.get('archiveDataID')!r} is not base64",
                              COMMON_MINOR + "parameterError") from None
        return ArchiveItem(element.get("archiveDataID", ""), element.get("MimeType") or ARCHIVE_DATA_TYPES[kind],
                           content, {})

    # --- the stored package ---------------------------------------------------------------------------------

    def _package(self, principal: Principal, aoid: str, version: int | None = None) -> etree._Element:
        """The XAIP of ``aoid`` (at ``version``, default the newest): assembled, or synthesized for a plain object."""
        return self._shown(principal, aoid, version)[0]

    def _shown(self, principal: Principal, aoid: str, version: int | None) -> tuple[etree._Element, bool]:
        """The XAIP of ``aoid`` at ``version`` and whether it is synthesized (a plain object)."""
        items = self._archive.retrieve(principal, aoid, version)
        contents = {item.name: content for item, content in items}
        if xp.SKELETON in contents and contents[xp.SKELETON] is not None:
            present = {name: data for name, data in contents.items() if data is not None and name != xp.SKELETON}
            return xp.assemble(contents[xp.SKELETON], present, aoid, max_depth=self._max_depth), False
        newest = len(self._archive.info(principal, aoid).versions) if version is None else version
        versions = [items if number == newest else self._archive.retrieve(principal, aoid, number)
                    for number in range(1, newest + 1)]
        shown = []
        for number, version_items in enumerate(versions, 1):
            plain = [xp.PlainItem(item.name, item.mime_type, content) for item, content in version_items
                     if content is not None]
            if not plain:
                raise _refuse(f"{aoid} version {number} holds only hashes: there is no data to show",
                              "notSupported", Code.NOT_SUPPORTED)
            shown.append(plain)
        return xp.synthesize(aoid, shown), True

    def _version_ids(self, principal: Principal, aoid: str) -> tuple[str, ...]:
        """The VersionIDs of ``aoid``, oldest first: its package's, or V1, V2, … of a plain object."""
        for item, content in self._archive.retrieve(principal, aoid):
            if item.name == xp.SKELETON and content is not None:
                return xp.version_ids(parse_xml(content, max_depth=self._max_depth))
        count = len(self._archive.info(principal, aoid).versions)
        return tuple(xp.plain_version_id(number) for number in range(1, count + 1))

    def _version_number(self, principal: Principal, aoid: str, wanted: Sequence[str]) -> int | None:
        """The archive version of the VersionIDs asked for (None: the newest; ``all`` asks for the newest too)."""
        asked = [v for v in wanted if v != "all"]
        if not asked:
            return None
        if len(set(asked)) > 1:
            raise _refuse("one VersionID (or all) per request: the XAIP of a version holds every version before it",
                          "notSupported", Code.NOT_SUPPORTED)
        ids = self._version_ids(principal, aoid)
        if asked[0] not in ids:
            raise _refuse(f"VersionID {asked[0]!r} is not a version of {aoid} ({', '.join(ids)})", "unknownVersionID")
        return ids.index(asked[0]) + 1

    # --- ArchiveUpdate --------------------------------------------------------------------------------------

    def archive_update(self, principal: Principal, request: etree._Element) -> etree._Element:
        delta = request.find("xaip:DXAIP", _NS)
        aoid = xp.declared_aoid(delta) or _text(request.find("dss:OptionalInputs/tr:AOID", _NS))
        if not aoid:
            raise _refuse("the Delta-XAIP names no AOID (packageHeader/AOID or OptionalInputs/AOID)", "DXAIP_NOK_AOID")
        try:
            stored = self._package(principal, aoid)
        except SiegelError as exc:
            if exc.code is Code.NOT_FOUND:
                raise _refuse(f"no archive object {aoid!r}", "DXAIP_NOK_AOID", Code.NOT_FOUND) from None
            raise
        merged = xp.merge(stored, delta)
        problem = self._schema.problem(merged.xaip)
        if problem is not None:
            raise _refuse(f"the XAIP of the new version would not match the schema at {problem}", "DXAIP_NOK")
        _signatures_checked(lambda: self._archive.update(principal, aoid, _items(xp.split(merged.xaip))))
        response = _ok(request, minor=ARL_MINOR + "existingPackageInfoWarning" if merged.package_info_ignored else None,
                       message="the stored package has a packageInfo: the Delta-XAIP's is ignored"
                       if merged.package_info_ignored else None, warning=merged.package_info_ignored)
        etree.SubElement(response, f"{{{TR_NS}}}VersionID").text = merged.version_id
        return response

    # --- ArchiveRetrieval -----------------------------------------------------------------------------------

    def archive_retrieval(self, principal: Principal, request: etree._Element) -> etree._Element:
        aoid = _text(request.find("tr:AOID", _NS))
        include = _retrieval_options(request.find("dss:OptionalInputs", _NS))
        version = self._version_number(principal, aoid, [_text(v) for v in request.iterfind("tr:VersionID", _NS)])
        package, synthesized = self._shown(principal, aoid, version)
        if include is not None:
            ids = xp.version_ids(package)
            records = [evidence_record_element(r, include, aoid, ids[-1], self._max_depth)
                       for r in self._archive.evidence(principal, aoid, include, version=len(ids))]
            xp.embed_evidence(package, records, xp.version_objects(package, synthesized=synthesized))
        response = _ok(request)
        response.append(package)
        return response

    # --- ArchiveEvidence ------------------------------------------------------------------------------------

    def archive_evidence(self, principal: Principal, request: etree._Element) -> etree._Element:
        aoid = _text(request.find("tr:AOID", _NS))
        uri = _text(request.find("dss:OptionalInputs/tr:ERSFormat", _NS)) or "urn:ietf:rfc:4998"
        if uri not in ERS_FORMATS:
            raise _refuse(f"ERSFormat {uri!r}: the formats are {', '.join(ERS_FORMATS)}", "notSupported",
                          Code.NOT_SUPPORTED)
        ids = self._version_ids(principal, aoid)
        asked = [_text(v) for v in request.iterfind("tr:VersionID", _NS)]
        wanted = list(ids) if "all" in asked else list(dict.fromkeys(asked)) or [ids[-1]]
        unknown = [v for v in wanted if v not in ids]
        if unknown:
            raise _refuse(f"VersionID {', '.join(unknown)}: not a version of {aoid} ({', '.join(ids)})",
                          "unknownVersionID")
        response = _ok(request)
        for version_id in wanted:
            for record in self._archive.evidence(principal, aoid, ERS_FORMATS[uri], version=ids.index(version_id) + 1):
                response.append(evidence_record_element(record, ERS_FORMATS[uri], aoid, version_id, self._max_depth))
        return response

    # --- ArchiveDeletion ------------------------------------------------------------------------------------

    def archive_deletion(self, principal: Principal, request: etree._Element) -> etree._Element:
        aoid = _text(request.find("tr:AOID", _NS))
        reason = request.find("dss:OptionalInputs/tr:ReasonOfDeletion", _NS)
        if reason is None:
            raise _refuse("ArchiveDeletion needs OptionalInputs/ReasonOfDeletion (RequestorName, RequestInfo)",
                          "missingReasonOfDeletion")
        requestor = _text(reason.find("tr:RequestorName", _NS))
        if requestor != principal.name:
            raise SiegelError(Code.FORBIDDEN, f"ReasonOfDeletion: RequestorName {requestor!r} is not the authenticated "
                                              f"account {principal.name!r}", COMMON_MINOR + "noPermission")
        self._archive.delete(principal, aoid, f"{_text(reason.find('tr:RequestInfo', _NS))} "
                                              f"(TR-ESOR ArchiveDeletion, RequestorName {requestor})")
        return _ok(request)

    # --- ArchiveData ----------------------------------------------------------------------------------------

    def archive_data(self, principal: Principal, request: etree._Element) -> etree._Element:
        aoid = _text(request.find("tr:AOID", _NS))
        package = self._package(principal, aoid)
        response = _ok(request)
        found = 0
        for location in request.iterfind("tr:DataLocation", _NS):
            entry = etree.SubElement(response, f"{{{TR_NS}}}XAIPData")
            values = self._locate(package, location)
            if isinstance(values, SiegelError):
                entry.append(dss_result(RESULT_MAJOR + "error", values.minor, values.message))
            else:
                found += 1
                entry.append(dss_result(RESULT_MAJOR + "ok", None, f"{len(values)} nodes"))
            entry.append(copy.deepcopy(location))
            if not isinstance(values, SiegelError):
                value = etree.SubElement(entry, f"{{{TR_NS}}}Value")
                for item in values:
                    if isinstance(item, etree._Element):
                        value.append(copy.deepcopy(item))
                    else:
                        value.text = (value.text or "") + str(item)
        total = len(response.findall("tr:XAIPData", _NS))
        if found < total:
            result = response.find("dss:Result", _NS)
            result.getparent().replace(result, dss_result(
                RESULT_MAJOR + ("warning" if found else "error"),
                ARL_MINOR + ("requestOnlyPartlySuccessfulWarning" if found else "unknownLocation"),
                f"{found} of {total} data locations found"))
        return response

    @staticmethod
    def _locate(package: etree._Element, location: etree._Element) -> list[object] | SiegelError:
        """The nodes or values a DataLocation selects, or the error saying why none."""
        if location.get("Type") != XPATH_TYPE:
            return SiegelError(Code.NOT_SUPPORTED, f"DataLocation Type {location.get('Type')!r}: Siegel evaluates "
                                                   f"{XPATH_TYPE} (XPath 1.0)", ARL_MINOR + "unknownLocation")
        expression = _text(location.find("tr:XPathFilter", _NS)) or _text(location)
        try:
            selected = etree.XPath(expression, namespaces=_XPATH_NS)(package)
        except (etree.XPathError, TypeError) as exc:
            return SiegelError(Code.BAD_REQUEST, f"XPath {expression!r}: {exc}", COMMON_MINOR + "parameterError")
        values = selected if isinstance(selected, list) else [selected]
        if not values or values == [False]:
            return SiegelError(Code.BAD_REQUEST, f"XPath {expression!r} selects nothing", ARL_MINOR + "unknownLocation")
        return [v if isinstance(v, etree._Element) else str(v) for v in values]

    # --- Verify ---------------------------------------------------------------------------------------------

    def verify(self, principal: Principal, request: etree._Element) -> etree._Element:
        return verify_response(self._archive, request)

    # --- RetrieveInfo ---------------------------------------------------------------------------------------

    def retrieve_info(self, principal: Principal, request: etree._Element) -> etree._Element:
        asked = _text(request.find("tr:ProfileIdentifier", _NS))
        status = _text(request.find("tr:Status", _NS)) or "active"
        response = _ok(request)
        if asked in ("", PROFILE) and status in ("active", "all"):
            response.append(profile_element())
        return response


def profile_element() -> etree._Element:
    """The pres:Profile of Siegel's S.4 interface (ETSI TS 119 512, 5.4.6)."""
    profile = etree.Element(f"{{{PRES_NS}}}Profile", nsmap={"pres": PRES_NS, "md": MD_NS})
    etree.SubElement(profile, f"{{{MD_NS}}}ProfileIdentifier").text = PROFILE
    for name, _ in OPERATIONS.values():
        operation = etree.SubElement(profile, f"{{{MD_NS}}}Operation")
        etree.SubElement(operation, f"{{{MD_NS}}}Name").text = name
    etree.SubElement(profile, f"{{{PRES_NS}}}SchemeIdentifier").text = \
        "http://uri.etsi.org/19512/scheme/pds+pgd+wst+ers"
    period = etree.SubElement(profile, f"{{{PRES_NS}}}ProfileValidityPeriod")
    etree.SubElement(period, f"{{{PRES_NS}}}ValidFrom").text = "2026-01-01T00:00:00Z"
    etree.SubElement(profile, f"{{{PRES_NS}}}PreservationStorageModel").text = "WithStorage"
    for goal in ("pds", "pgd"):
        etree.SubElement(profile, f"{{{PRES_NS}}}PreservationGoal").text = f"http://uri.etsi.org/19512/goal/{goal}"
    for uri, default in (("urn:ietf:rfc:4998", "true"), ("urn:ietf:rfc:6283", "false")):
        evidence = etree.SubElement(profile, f"{{{PRES_NS}}}EvidenceFormat", {"IsDefault": default})
        etree.SubElement(evidence, f"{{{MD_NS}}}FormatID").text = uri
    return profile
