"""server.archive.xaip: an XAIP split into archive items and put together again, Delta-XAIP merges, plain objects
shown as XAIPs; every package the module makes validates against the official TR-ESOR XAIP schema."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from lxml import etree

from server.archive import xaip as xp
from server.errors import SiegelError
from server.xmlsafe import parse_xml

XAIP = xp.XAIP_NS


def package(data: bytes = b"hello xaip", ident: str = "DO1", version: str = "V001", checksum: str | None = None,
            aoid: str | None = None) -> str:
    """An XAIP with package info, an XML metadata object and one binary data object with its SHA-256 checkSum."""
    digest = checksum if checksum is not None else hashlib.sha256(data).hexdigest()
    declared = f"<xaip:AOID>{aoid}</xaip:AOID>" if aoid else ""
    return (f'<xaip:XAIP xmlns:xaip="{XAIP}" XAIPVersion="1.3.0"><xaip:packageHeader packageID="PKG">{declared}'
            "<xaip:packageInfo>invoice</xaip:packageInfo>"
            f'<xaip:versionManifest VersionID="{version}"><xaip:preservationInfo><xaip:retentionPeriod>2060-01-01'
            '</xaip:retentionPeriod></xaip:preservationInfo><xaip:packageInfoUnit packageUnitID="PU1">'
            f"<xaip:protectedObjectPointer>{ident}</xaip:protectedObjectPointer>"
            "<xaip:protectedObjectPointer>MD1</xaip:protectedObjectPointer></xaip:packageInfoUnit>"
            "</xaip:versionManifest></xaip:packageHeader>"
            f'<xaip:metaDataSection><xaip:metaDataObject metaDataID="MD1" relatedObjects="{ident}"><xaip:xmlMetaData>'
            '<title xmlns="urn:example">Invoice 4711</title></xaip:xmlMetaData></xaip:metaDataObject>'
            f'</xaip:metaDataSection><xaip:dataObjectsSection><xaip:dataObject dataObjectID="{ident}">'
            f'<xaip:binaryData MimeType="text/plain">{base64.b64encode(data).decode()}</xaip:binaryData>'
            "<xaip:checkSum><xaip:checkSumAlgorithm>http://www.w3.org/2001/04/xmlenc#sha256</xaip:checkSumAlgorithm>"
            f"<xaip:checkSum>{digest}</xaip:checkSum></xaip:checkSum></xaip:dataObject></xaip:dataObjectsSection>"
            "</xaip:XAIP>")


def delta(aoid: str = "aoid-1", prev: str = "V001", version: str = "V002", ident: str = "DO2",
          holder: str = "DO1", info: bool = False) -> str:
    """A Delta-XAIP adding the data object ``ident`` and keeping ``holder`` of the previous version."""
    return (f'<xaip:DXAIP xmlns:xaip="{XAIP}" XAIPVersion="1.3.0"><xaip:packageHeader packageID="PKG2">'
            f"<xaip:AOID>{aoid}</xaip:AOID>{'<xaip:packageInfo>other</xaip:packageInfo>' if info else ''}"
            f'<xaip:versionManifest VersionID="{version}"><xaip:preservationInfo><xaip:retentionPeriod>2061-01-01'
            '</xaip:retentionPeriod></xaip:preservationInfo><xaip:packageInfoUnit packageUnitID="PU2">'
            f"<xaip:protectedObjectPointer>{holder}</xaip:protectedObjectPointer>"
            f"<xaip:protectedObjectPointer>{ident}</xaip:protectedObjectPointer></xaip:packageInfoUnit>"
            "</xaip:versionManifest></xaip:packageHeader><xaip:dataObjectsSection>"
            f'<xaip:dataObject dataObjectID="{ident}"><xaip:binaryData>{base64.b64encode(b"second").decode()}'
            "</xaip:binaryData></xaip:dataObject></xaip:dataObjectsSection><xaip:updateSection>"
            f'<xaip:prevVersion>{prev}</xaip:prevVersion><xaip:placeHolder objectID="{holder}"/></xaip:updateSection>'
            "</xaip:DXAIP>")


def official_schema(shared_dir: Path) -> etree.XMLSchema:
    """The official TR-ESOR S.4 schemas of ../shared/standards (tr-esor-interfaces-v1.3.xsd and, through its
    imports and catalog.xml, the XAIP, verification report, DSS, eCard and ETSI schemas)."""
    standards = shared_dir / "standards"
    os.environ["XML_CATALOG_FILES"] = str(standards / "catalog.xml")
    return etree.XMLSchema(etree.parse(str(standards / "tr-esor-interfaces-v1.3.xsd")))


def parsed(text: str) -> etree._Element:
    return parse_xml(text.encode(), max_depth=64)


@pytest.fixture(scope="module")
def schema(shared_dir: Path) -> etree.XMLSchema:
    return official_schema(shared_dir)


def minor(error: pytest.ExceptionInfo[SiegelError]) -> str:
    assert error.value.minor is not None
    return error.value.minor.rsplit("/", 1)[1]


def test_split_keeps_binary_data_out_of_the_skeleton_and_assemble_restores_it(schema: etree.XMLSchema) -> None:
    original = parsed(package())
    parts = xp.split(original)
    assert [(o.ident, o.mime_type, o.content) for o in parts.objects] == [("DO1", "text/plain", b"hello xaip")]
    assert parts.version_ids == ("V001",)
    skeleton = parse_xml(parts.skeleton, max_depth=64)
    assert skeleton.findtext(f"{{{XAIP}}}dataObjectsSection/{{{XAIP}}}dataObject/{{{XAIP}}}binaryData") == ""
    assert "Invoice 4711" in parts.skeleton.decode()  # metadata stays in the skeleton
    rebuilt = xp.assemble(parts.skeleton, {"DO1": b"hello xaip"}, "aoid-7", max_depth=64)
    schema.assertValid(rebuilt)
    assert xp.declared_aoid(rebuilt) == "aoid-7"
    assert rebuilt.find(f"{{{XAIP}}}packageHeader")[0].tag == f"{{{XAIP}}}AOID"
    assert xp.canonical_skeleton(rebuilt) == parts.skeleton  # what the skeleton's evidence record covers
    original.find(f"{{{XAIP}}}packageHeader").insert(0, etree.fromstring(f'<AOID xmlns="{XAIP}">aoid-7</AOID>'))
    assert etree.tostring(rebuilt, method="c14n") == etree.tostring(original, method="c14n")


def test_assemble_refuses_a_skeleton_whose_content_is_missing() -> None:
    parts = xp.split(parsed(package()))
    with pytest.raises(SiegelError, match="DO1"):
        xp.assemble(parts.skeleton, {}, "aoid-7", max_depth=64)


@pytest.mark.parametrize(("text", "expected"), [
    (package(checksum="00" * 32), "XAIP_NOK"),
    (package().replace(base64.b64encode(b"hello xaip").decode(), "not*base64"), "XAIP_NOK"),
    (package().replace("xmlenc#sha256", "xmlenc#ripemd160"), "notSupported"),
], ids=["checksum-mismatch", "not-base64", "unknown-checksum-algorithm"])
def test_split_refuses_broken_data_objects(text: str, expected: str) -> None:
    with pytest.raises(SiegelError) as error:
        xp.split(parsed(text))
    assert minor(error) == expected


def test_merge_appends_the_new_version(schema: etree.XMLSchema) -> None:
    stored = xp.assemble(xp.split(parsed(package())).skeleton, {"DO1": b"hello xaip"}, "aoid-1", max_depth=64)
    merged = xp.merge(stored, parsed(delta()))
    schema.assertValid(merged.xaip)
    assert (merged.version_id, merged.package_info_ignored) == ("V002", False)
    assert xp.version_ids(merged.xaip) == ("V001", "V002")
    parts = xp.split(merged.xaip)
    assert [(o.ident, o.content) for o in parts.objects] == [("DO1", b"hello xaip"), ("DO2", b"second")]
    assert xp.merge(stored, parsed(delta(info=True))).package_info_ignored


@pytest.mark.parametrize(("text", "expected"), [
    (delta(prev="V000"), "DXAIP_NOK_Version"),
    (delta(holder="DO9"), "DXAIP_NOK_ID"),
    (delta(ident="MD1"), "DXAIP_NOK"),
    (package(), "DXAIP_NOK"),
], ids=["not-the-newest-version", "unknown-placeholder", "identifier-clash", "not-a-dxaip"])
def test_merge_refuses(text: str, expected: str) -> None:
    stored = xp.assemble(xp.split(parsed(package())).skeleton, {"DO1": b"hello xaip"}, "aoid-1", max_depth=64)
    with pytest.raises(SiegelError) as error:
        xp.merge(stored, parsed(text))
    assert minor(error) == expected


def test_synthesize_shows_a_plain_object_as_a_valid_xaip(schema: etree.XMLSchema) -> None:
    versions = [[xp.PlainItem("doc1", "application/pdf", b"%PDF-1"), xp.PlainItem("a b.pdf", "application/pdf", b"x")],
                [xp.PlainItem("doc1", "application/pdf", b"%PDF-2")]]
    shown = xp.synthesize("aoid-9", versions)
    schema.assertValid(shown)
    assert xp.version_ids(shown) == ("V1", "V2")
    assert xp.declared_aoid(shown) == "aoid-9"
    assert [(o.ident, o.content) for o in xp.split(shown).objects] == [
        ("doc1", b"%PDF-1"), ("V1-2", b"x"), ("V2-1", b"%PDF-2")]  # names that are no unused NCName are replaced
