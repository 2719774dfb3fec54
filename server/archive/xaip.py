"""TR-ESOR XAIP (BSI TR-03125 F, ``tr-esor-xaip-v1.3.xsd``): what an archive object is made of on the S.4 interface.

An XAIP is kept as archive items: its binary data objects (``dataObject/binaryData``), each an item named by its
``dataObjectID``, and the *skeleton*: the XAIP itself with every ``binaryData`` emptied and without
``packageHeader/AOID`` (the archive assigns the AOID after the items are given), in exclusive canonical form, as the
item named :data:`SKELETON` (an ``xs:ID`` holds no colon, so no data object can take that name). Metadata, XML data
objects and credentials stay in the skeleton, whose evidence record covers them. :func:`assemble` puts the package
back together; :func:`merge` applies a Delta-XAIP (ArchiveUpdate) and gives the package of the new version.
A binary submission (``ArchiveData``) is a plain archive object; :func:`synthesize` shows it as an XAIP.

The XAIP of a version holds every version manifest up to it (an XAIP carries its history); versions are counted
from 1 in the order of the ``versionManifest`` elements, which is the order of the archive's versions.
Errors are ``SiegelError``s whose ResultMinor is the TR-ESOR one (``…/resultminor/arl/XAIP_NOK`` and friends).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from lxml import etree

from server.errors import Code, SiegelError

XAIP_NS = "http://www.bsi.bund.de/tr-esor/xaip"
ARL_MINOR = "http://www.bsi.bund.de/tr-esor/api/1.3/resultminor/arl/"
XAIP_VERSION = "1.3.0"
SKELETON = "tr-esor:xaip"
"""The archive item name of the XAIP skeleton (never a dataObjectID: those are NCNames)."""
SKELETON_MIME = "application/xml"
_NS = {"xaip": XAIP_NS}
_SECTIONS = ("metaDataSection", "dataObjectsSection", "credentialsSection")
_SECTION_CHILD = {"metaDataSection": "metaDataObject", "dataObjectsSection": "dataObject",
                  "credentialsSection": "credential"}
_ID_ATTRS = ("dataObjectID", "metaDataID", "credentialID", "packageUnitID", "VersionID", "packageID",
             "idAssignmentListID", "transformObjectID")
CHECKSUM_ALGORITHMS: Mapping[str, str] = {
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
    "http://www.w3.org/2007/05/xmldsig-more#sha3-256": "sha3_256",
    "http://www.w3.org/2007/05/xmldsig-more#sha3-384": "sha3_384",
    "http://www.w3.org/2007/05/xmldsig-more#sha3-512": "sha3_512",
}
"""xaip:checkSum algorithms Siegel checks (XML Signature / Encryption URIs)."""


def _x(name: str) -> str:
    return f"{{{XAIP_NS}}}{name}"


def _nok(message: str, minor: str = "XAIP_NOK") -> SiegelError:
    return SiegelError(Code.BAD_REQUEST, message, ARL_MINOR + minor)


@dataclass(frozen=True)
class DataObject:
    """A binary data object of an XAIP, decoded."""

    ident: str
    mime_type: str
    content: bytes


@dataclass(frozen=True)
class Package:
    """An XAIP split into its archive items: the skeleton's canonical bytes and the binary data objects."""

    skeleton: bytes
    objects: tuple[DataObject, ...]
    version_ids: tuple[str, ...]


def version_ids(xaip: etree._Element) -> tuple[str, ...]:
    """The VersionIDs of the package's version manifests, oldest first."""
    return tuple(m.get("VersionID", "") for m in xaip.iterfind("xaip:packageHeader/xaip:versionManifest", _NS))


def declared_aoid(xaip: etree._Element) -> str | None:
    """The AOID the package header names, if any."""
    text = xaip.findtext("xaip:packageHeader/xaip:AOID", namespaces=_NS)
    return text.strip() if text is not None and text.strip() else None


def _decoded(element: etree._Element, what: str) -> bytes:
    try:
        return base64.b64decode("".join((element.text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise _nok(f"{what}: binaryData is not base64") from None


def _check_sum(data_object: etree._Element, content: bytes, ident: str) -> None:
    """Refuse a binary data object whose xaip:checkSum does not match its content."""
    check = data_object.find("xaip:checkSum", _NS)
    if check is None:
        return
    uri = (check.findtext("xaip:checkSumAlgorithm", namespaces=_NS) or "").strip()
    algorithm = CHECKSUM_ALGORITHMS.get(uri)
    if algorithm is None:
        raise SiegelError(Code.NOT_SUPPORTED, f"dataObject {ident!r}: checkSumAlgorithm {uri!r} is not supported "
                                              f"(supported: {', '.join(CHECKSUM_ALGORITHMS)})",
                          ARL_MINOR + "notSupported")
    given = (check.findtext("xaip:checkSum", namespaces=_NS) or "").strip().lower()
    if hashlib.new(algorithm, content).hexdigest() != given:
        raise _nok(f"dataObject {ident!r}: the checkSum does not match its binaryData")


def _binary_objects(xaip: etree._Element) -> list[tuple[etree._Element, DataObject]]:
    found = []
    for data_object in xaip.iterfind("xaip:dataObjectsSection/xaip:dataObject", _NS):
        binary = data_object.find("xaip:binaryData", _NS)
        if binary is None:
            continue
        ident = data_object.get("dataObjectID", "")
        content = _decoded(binary, f"dataObject {ident!r}")
        _check_sum(data_object, content, ident)
        found.append((binary, DataObject(ident, binary.get("MimeType") or "application/octet-stream", content)))
    return found


def canonical_skeleton(xaip: etree._Element) -> bytes:
    """The skeleton of ``xaip``: a copy without packageHeader/AOID, every binaryData emptied, exclusive C14N."""
    doc = copy.deepcopy(xaip)
    aoid = doc.find("xaip:packageHeader/xaip:AOID", _NS)
    if aoid is not None:
        aoid.getparent().remove(aoid)
    for binary in doc.iterfind("xaip:dataObjectsSection/xaip:dataObject/xaip:binaryData", _NS):
        binary.text = None
    return etree.tostring(doc, method="c14n", exclusive=True)


def split(xaip: etree._Element) -> Package:
    """The archive items of a (schema-valid) XAIP; refuses checksum mismatches and an XAIP without versions."""
    if xaip.tag != _x("XAIP"):
        raise _nok(f"expected xaip:XAIP, got {etree.QName(xaip).localname}")
    ids = version_ids(xaip)
    if len(set(ids)) != len(ids):
        raise _nok("the versionManifests' VersionIDs repeat")
    objects = tuple(obj for _, obj in _binary_objects(xaip))
    return Package(canonical_skeleton(xaip), objects, ids)


def assemble(skeleton: bytes, contents: Mapping[str, bytes], aoid: str, *, max_depth: int) -> etree._Element:
    """The XAIP of a stored skeleton with its binary data objects filled in and ``aoid`` in the package header."""
    from server.xmlsafe import parse_xml

    xaip = parse_xml(skeleton, max_depth=max_depth)
    for data_object in xaip.iterfind("xaip:dataObjectsSection/xaip:dataObject", _NS):
        binary = data_object.find("xaip:binaryData", _NS)
        if binary is None:
            continue
        ident = data_object.get("dataObjectID", "")
        if ident not in contents:
            raise SiegelError(Code.INTERNAL, f"the archive holds no content for data object {ident!r}")
        binary.text = base64.b64encode(contents[ident]).decode("ascii")
    header = xaip.find("xaip:packageHeader", _NS)
    assert header is not None  # a stored skeleton is schema-valid
    etree.SubElement(header, _x("AOID")).text = aoid
    header.insert(0, header[-1])  # AOID is the header's first child
    return xaip


def _ids(xaip: etree._Element) -> set[str]:
    return {value for element in xaip.iter() for attr in _ID_ATTRS
            if (value := element.get(attr)) is not None and etree.QName(element).namespace == XAIP_NS}


def _section(xaip: etree._Element, name: str) -> etree._Element:
    """The section ``name`` of ``xaip``, created in schema order when absent."""
    found = xaip.find(f"xaip:{name}", _NS)
    if found is not None:
        return found
    section = etree.Element(_x(name))
    before = [s for s in _SECTIONS[_SECTIONS.index(name) + 1:] if xaip.find(f"xaip:{s}", _NS) is not None]
    if before:
        xaip.find(f"xaip:{before[0]}", _NS).addprevious(section)
    else:
        xaip.append(section)
    return section


@dataclass(frozen=True)
class Merged:
    """The XAIP of a new version made from a stored XAIP and a Delta-XAIP."""

    xaip: etree._Element
    version_id: str
    package_info_ignored: bool  # the DXAIP's packageInfo was dropped: the stored package has one


def merge(stored: etree._Element, dxaip: etree._Element) -> Merged:
    """The stored XAIP (with its binary data filled in) extended by the Delta-XAIP ``dxaip``
    (TR-ESOR-F 3.1.6): its one new versionManifest after the others, its data objects, metadata and credentials
    added to their sections; ``updateSection/prevVersion`` must name the newest version and every ``placeHolder``
    an object of the stored package. The caller validates the result (pointers must resolve)."""
    if dxaip.tag != _x("DXAIP"):
        raise _nok(f"expected xaip:DXAIP, got {etree.QName(dxaip).localname}", "DXAIP_NOK")
    versions = version_ids(stored)
    update = dxaip.find("xaip:updateSection", _NS)
    assert update is not None  # schema-valid
    previous = (update.findtext("xaip:prevVersion", namespaces=_NS) or "").strip()
    if previous != versions[-1]:
        raise _nok(f"prevVersion {previous!r} is not the newest version {versions[-1]!r}", "DXAIP_NOK_Version")
    known = _ids(stored)
    for holder in update.iterfind("xaip:placeHolder", _NS):
        if holder.get("objectID") not in known:
            raise _nok(f"placeHolder {holder.get('objectID')!r} names no object of the stored package", "DXAIP_NOK_ID")
    manifests = dxaip.findall("xaip:packageHeader/xaip:versionManifest", _NS)
    if len(manifests) != 1:
        raise _nok(f"a Delta-XAIP brings exactly one new versionManifest, this one {len(manifests)}", "DXAIP_NOK")
    holders = {h.get("objectID") for h in update.iterfind("xaip:placeHolder", _NS)}
    added = _ids(dxaip) - holders - {dxaip.find("xaip:packageHeader", _NS).get("packageID")}
    clash = sorted(added & known)
    if clash:
        raise _nok(f"the Delta-XAIP reuses identifiers of the stored package: {', '.join(clash)}", "DXAIP_NOK")
    merged = copy.deepcopy(stored)
    header = merged.find("xaip:packageHeader", _NS)
    header.findall("xaip:versionManifest", _NS)[-1].addnext(copy.deepcopy(manifests[0]))
    ignored = False
    info = dxaip.find("xaip:packageHeader/xaip:packageInfo", _NS)
    if info is not None:
        if header.find("xaip:packageInfo", _NS) is not None:
            ignored = True
        else:
            before = header.find("xaip:versionManifest", _NS)
            before.addprevious(copy.deepcopy(info))
    for name in _SECTIONS:
        for child in dxaip.iterfind(f"xaip:{name}/xaip:{_SECTION_CHILD[name]}", _NS):
            _section(merged, name).append(copy.deepcopy(child))
    return Merged(merged, manifests[0].get("VersionID", ""), ignored)


def version_objects(xaip: etree._Element, *, synthesized: bool) -> tuple[str, ...]:
    """What the archive items of the newest version of ``xaip`` are, in the items' order: for a stored package its
    newest version manifest (the skeleton) and every binary data object; for a synthesized one (a plain object)
    the data objects its newest manifest points at."""
    manifest = xaip.findall("xaip:packageHeader/xaip:versionManifest", _NS)[-1]
    if synthesized:
        return tuple(p.text or "" for p in manifest.iterfind("xaip:packageInfoUnit/xaip:protectedObjectPointer", _NS))
    return (manifest.get("VersionID", ""), *(o.get("dataObjectID", "") for o in xaip.iterfind(
        "xaip:dataObjectsSection/xaip:dataObject[xaip:binaryData]", _NS)))


def embed_evidence(xaip: etree._Element, records: Sequence[etree._Element], related: Sequence[str]) -> None:
    """Put ``records`` (xaip:evidenceRecord elements of the newest version, one per object of ``related``) into the
    credentials section, each a credential pointing at its object, and point the newest manifest at them
    (TR-ESOR-E A3.3.1-2: unprotectedObjectPointer)."""
    manifest = xaip.findall("xaip:packageHeader/xaip:versionManifest", _NS)[-1]
    version_id = manifest.get("VersionID", "")
    assert len(records) == len(related)
    unit = manifest.find("xaip:packageInfoUnit", _NS)
    after = unit.findall("xaip:protectedObjectPointer", _NS)[-1]
    taken = _ids(xaip)
    for number, (record, target) in enumerate(zip(records, related), 1):
        ident = f"siegel-er-{version_id}-{number}"
        while ident in taken:
            ident += "-"
        credential = etree.SubElement(_section(xaip, "credentialsSection"), _x("credential"),
                                      {"credentialID": ident, "relatedObjects": target})
        credential.append(record)
        pointer = etree.Element(_x("unprotectedObjectPointer"))
        pointer.text = ident
        after.addnext(pointer)
        after = pointer


@dataclass(frozen=True)
class PlainItem:
    """A data object of a plain (binary-submitted) archive object as :func:`synthesize` shows it."""

    name: str
    mime_type: str
    content: bytes


_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")


def plain_version_id(version: int) -> str:
    """The VersionID of version ``version`` of a plain archive object: V1, V2, …"""
    return f"V{version}"


def synthesize(aoid: str, versions: Sequence[Sequence[PlainItem]], retention: date | None = None) -> etree._Element:
    """A plain archive object shown as an XAIP: one versionManifest per version (V1, V2, …) pointing at that
    version's data objects, one dataObject per item (dataObjectID: the item's name where that is an unused
    NCName, else ``V<version>-<n>``). ``retention`` defaults to 30 years from today."""
    xaip = etree.Element(_x("XAIP"), {"XAIPVersion": XAIP_VERSION}, nsmap={"xaip": XAIP_NS})
    header = etree.SubElement(xaip, _x("packageHeader"), {"packageID": "package"})
    etree.SubElement(header, _x("AOID")).text = aoid
    section = etree.Element(_x("dataObjectsSection"))
    until = (retention or date.today() + timedelta(days=365 * 30)).isoformat()
    used = {"package"}
    for number, items in enumerate(versions, 1):
        version = plain_version_id(number)
        used |= {version, f"{version}-unit"}
        manifest = etree.SubElement(header, _x("versionManifest"), {"VersionID": version})
        preservation = etree.SubElement(manifest, _x("preservationInfo"))
        etree.SubElement(preservation, _x("retentionPeriod")).text = until
        unit = etree.SubElement(manifest, _x("packageInfoUnit"), {"packageUnitID": f"{version}-unit"})
        for index, item in enumerate(items, 1):
            ident = item.name if _NCNAME.match(item.name) and item.name not in used else f"{version}-{index}"
            used.add(ident)
            etree.SubElement(unit, _x("protectedObjectPointer")).text = ident
            holder = etree.SubElement(section, _x("dataObject"), {"dataObjectID": ident})
            etree.SubElement(holder, _x("binaryData"), {"MimeType": item.mime_type}).text = \
                base64.b64encode(item.content).decode("ascii")
    xaip.append(section)
    return xaip
