"""ASiC-E with CAdES and with XAdES: the ZIP layout of EN 319 162-1, the manifest and signatures.xml against
the official XSDs, the CAdES over the manifest checked by ``openssl cms -verify``, every manifest digest
against its document, the XAdES in signatures.xml by ``xmlsec1 --verify`` beside the files; both by Siegel's
own ``verify_asic``."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import urllib.parse
import zipfile
from pathlib import Path

import pytest
import xmlschema
from asn1crypto import cms
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from adapters.timestamp.client import TimestampClient, endpoint_from_url
from server.errors import Code, SiegelError
from server.signing.asic import MIMETYPE, assemble_asic, prepare_asic, sign_asic
from server.signing.cades import SigningKey
from server.signing.keysource import DigestAlgorithm, SignatureScheme
from server.signing.levels import Level, SignatureProperties
from server.signing.xades import PreparedXades, extend_xades
from server.validation.asic import verify_asic
from server.validation.model import Indication, SignatureReport, Trust
from tests.fixtures.pki import OnlinePki, Pki, user_key

pytestmark = pytest.mark.integration

ASIC = "{http://uri.etsi.org/02918/v1.2.1#}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
XADES = "{http://uri.etsi.org/01903/v1.3.2#}"
XADES141 = "{http://uri.etsi.org/01903/v1.4.1#}"
SIGNATURES = "META-INF/signatures.xml"
DOCUMENTS = [
    ("Vertrag.pdf", b"%PDF-1.7 Rahmenvertrag\n" * 200, "application/pdf"),
    ("Anlagen/Preisblatt 2027.csv", "Position;Preis\nWartung;1200 €\n".encode(), "text/csv"),
    ("Übersicht.txt", b"Inhalt des Containers\n", "text/plain"),
]
ARCHIVE_TIME_STAMP_V3 = "0.4.0.1733.2.4"
SIGNER_ATTRIBUTES_V2 = "0.4.0.19122.1.1"


def _unpack(container: bytes, directory: Path) -> zipfile.ZipFile:
    (directory / "container.asice").write_bytes(container)
    archive = zipfile.ZipFile(io.BytesIO(container))
    archive.extractall(directory / "x")
    return archive


def _cms_verify(directory: Path, pki: Pki) -> subprocess.CompletedProcess[bytes]:
    (directory / "root.pem").write_bytes(pki.ca.ca_certificates()["ROOT"].public_bytes(Encoding.PEM))
    return subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
                           "x/META-INF/signature.p7s", "-content", "x/META-INF/ASiCManifest.xml", "-CAfile", "root.pem",
                           "-purpose", "any", "-out", "/dev/null"], cwd=directory, capture_output=True, timeout=60,
                          check=False)


def _check_container(container: bytes, directory: Path, pki: Pki) -> zipfile.ZipFile:
    """mimetype first and stored, every document once, the manifest's digests right, the CAdES valid."""
    archive = _unpack(container, directory)
    first = archive.infolist()[0]
    assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED and first.extra == b""
    assert container[30:38] == b"mimetype" and container[38:38 + len(MIMETYPE)] == MIMETYPE.encode()  # EN 319 162-1 A.1
    listed = subprocess.run(["unzip", "-l", "container.asice"], cwd=directory, capture_output=True, text=True,
                            timeout=60, check=True).stdout
    assert all(name in listed for name, _, _ in DOCUMENTS)
    assert sorted(archive.namelist()) == sorted(["mimetype", "META-INF/ASiCManifest.xml", "META-INF/signature.p7s",
                                                 *(name for name, _, _ in DOCUMENTS)])

    manifest = etree.fromstring(archive.read("META-INF/ASiCManifest.xml"))
    assert manifest.find(f"{ASIC}SigReference").get("URI") == "META-INF/signature.p7s"
    references = manifest.findall(f"{ASIC}DataObjectReference")
    assert len(references) == len(DOCUMENTS)
    for reference, (name, content, mime_type) in zip(references, DOCUMENTS, strict=True):
        assert urllib.parse.unquote(reference.get("URI")) == name and reference.get("MimeType") == mime_type
        assert reference.find(f"{DS}DigestMethod").get("Algorithm") == "http://www.w3.org/2001/04/xmlenc#sha256"
        assert base64.b64decode(reference.findtext(f"{DS}DigestValue")) == hashlib.sha256(content).digest()
        assert archive.read(name) == content

    done = _cms_verify(directory, pki)
    assert done.returncode == 0 and b"Verification successful" in done.stderr, done.stderr
    return archive


def test_a_cades_container_has_the_en_319_162_layout_and_verifies(pki: Pki, tmp_path: Path) -> None:
    container = sign_asic(user_key(pki), DOCUMENTS, signature_format="cades", level=Level.B_B,
                          properties=SignatureProperties(claimed_role="Prokurist"))
    archive = _check_container(container, tmp_path, pki)
    signer_info = cms.ContentInfo.load(archive.read("META-INF/signature.p7s"))["content"]["signer_infos"][0]
    assert SIGNER_ATTRIBUTES_V2 in {a["type"].dotted for a in signer_info["signed_attrs"]}
    assert all(i.flag_bits & 0x800 for i in archive.infolist() if not i.filename.isascii())  # UTF-8 names
    (tmp_path / "x" / "META-INF" / "ASiCManifest.xml").write_bytes(
        archive.read("META-INF/ASiCManifest.xml").replace(b"Vertrag.pdf", b"Vertrag.pdX"))
    assert _cms_verify(tmp_path, pki).returncode != 0  # the signature covers the manifest


def test_the_manifest_is_valid_against_the_official_schema(pki: Pki, tmp_path: Path, shared_dir: Path) -> None:
    xsd = shared_dir / "standards" / "en_31916201v010101.xsd"
    if not xsd.is_file():
        pytest.skip(f"{xsd} is absent: the ASiC schema of EN 319 162-1 is not available here")
    schema = etree.XMLSchema(etree.parse(str(xsd)))
    container = sign_asic(user_key(pki), DOCUMENTS, signature_format="cades", level=Level.B_B)
    manifest = etree.fromstring(zipfile.ZipFile(io.BytesIO(container)).read("META-INF/ASiCManifest.xml"))
    assert schema.validate(manifest), schema.error_log


def test_two_step_signing_makes_the_same_container(pki: Pki, tmp_path: Path) -> None:
    key = user_key(pki)
    prepared = prepare_asic(key.chain, DOCUMENTS, signature_format="cades", digest=DigestAlgorithm.SHA256)
    assert prepared.scheme is SignatureScheme.ECDSA
    value = pki.hsm.sign_digest(key.label, prepared.to_be_signed, DigestAlgorithm.SHA256, prepared.scheme)
    _check_container(assemble_asic(prepared, value), tmp_path, pki)


def test_a_b_lta_container_carries_the_archive_timestamp(pki_online: OnlinePki, tmp_path: Path) -> None:
    root = pki_online.ca.ca_certificates()["ROOT"]
    client = TimestampClient([endpoint_from_url(pki_online.url + "/tsa", (root,))], 10, 0)
    container = sign_asic(user_key(pki_online), DOCUMENTS, signature_format="cades", level=Level.B_LTA,
                          timestamps=client, trust_roots=[pki_online.ca.ca_certificate_der("ROOT")])
    archive = _check_container(container, tmp_path, pki_online)
    signer_info = cms.ContentInfo.load(archive.read("META-INF/signature.p7s"))["content"]["signer_infos"][0]
    assert ARCHIVE_TIME_STAMP_V3 in {a["type"].dotted for a in signer_info["unsigned_attrs"]}


class _NoKeys:
    """A key source that must not be reached."""

    def sign_digest(self, *args: object) -> bytes:
        raise AssertionError("the key source was asked to sign")

    def certificate_chain(self, key_label: str) -> list[bytes]:
        return []


@pytest.mark.parametrize("name", ["../outside.txt", "a/../../b", "/etc/passwd", "C:/Windows/x", "a\\b.txt",
                                  "META-INF/manifest.xml", "meta-inf/x.xml", "mimetype", "", "dir/", "a//b",
                                  "./a", "a/./b", "tab\there"])
def test_unsafe_document_names_are_refused(name: str) -> None:
    with pytest.raises(SiegelError) as caught:
        sign_asic(SigningKey(_NoKeys(), "none", ()), [(name, b"x", "text/plain")], signature_format="cades",
                  level=Level.B_B)
    assert caught.value.code is Code.BAD_REQUEST and "cannot be used in the container" in caught.value.message


def test_duplicates_no_documents_and_unoffered_variants_are_refused() -> None:
    key = SigningKey(_NoKeys(), "none", ())
    cases = [
        ([("a.txt", b"1", "text/plain"), ("a.txt", b"2", "text/plain")], "cades", Code.BAD_REQUEST, "twice"),
        ([("Akte.txt", b"1", "text/plain"), ("akte.TXT", b"2", "text/plain")], "cades", Code.BAD_REQUEST, "twice"),
        ([("a/b/c.txt", b"1", "text/plain"), ("a/b", b"2", "text/plain")], "cades", Code.BAD_REQUEST, "folder"),
        ([], "cades", Code.BAD_REQUEST, "at least one document"),
        (DOCUMENTS, "pades", Code.BAD_REQUEST, "XAdES or CAdES"),
        ([("a.txt", b"1", "text/plain"), ("A.txt", b"2", "text/plain")], "xades", Code.BAD_REQUEST, "twice"),
    ]
    for documents, signature_format, code, message in cases:
        with pytest.raises(SiegelError) as caught:
            sign_asic(key, documents, signature_format=signature_format, level=Level.B_B)  # type: ignore[arg-type]
        assert caught.value.code is code and message in caught.value.message, message


# ---------------------------------------------------------------- XAdES inside

def _online_tsa(pki_online: OnlinePki) -> TimestampClient:
    root = pki_online.ca.ca_certificates()["ROOT"]
    return TimestampClient([endpoint_from_url(pki_online.url + "/tsa", (root,))], 10, 0)


def _xmlsec_beside_the_files(directory: Path, pki: Pki) -> subprocess.CompletedProcess[bytes]:
    """xmlsec1 --verify of signatures.xml copied to the unpacked container's top, where its relative
    URIs name the files."""
    (directory / "root.pem").write_bytes(pki.ca.ca_certificates()["ROOT"].public_bytes(Encoding.PEM))
    shutil.copyfile(directory / "x" / SIGNATURES, directory / "x" / "signatures.xml")
    return subprocess.run(["xmlsec1", "--verify", "--trusted-pem", "../root.pem", "--id-attr:Id",
                           f"{XADES[1:-1]}:SignedProperties", "signatures.xml"], cwd=directory / "x",
                          capture_output=True, timeout=60, check=False)


def _verify_asic(container: bytes, pki: Pki) -> SignatureReport:
    (report,) = verify_asic(container, Trust((pki.ca.ca_certificate_der("ROOT"),)), max_bytes=1 << 26)
    return report


def _check_xades_container(container: bytes, directory: Path, pki: Pki) -> etree._Element:
    """mimetype first and stored, the documents and META-INF/signatures.xml only (no manifest), one
    ds:Signature in asic:XAdESSignatures with a transform-less Reference per document and its
    DataObjectFormat, valid by xmlsec1 beside the files and by verify_asic with exactly the files in scope."""
    archive = _unpack(container, directory)
    first = archive.infolist()[0]
    assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED and first.extra == b""
    assert container[30:38] == b"mimetype" and container[38:38 + len(MIMETYPE)] == MIMETYPE.encode()
    assert sorted(archive.namelist()) == sorted(["mimetype", SIGNATURES, *(name for name, _, _ in DOCUMENTS)])
    assert all(archive.read(name) == content for name, content, _ in DOCUMENTS)

    root = etree.fromstring(archive.read(SIGNATURES))
    assert root.tag == f"{ASIC}XAdESSignatures" and [child.tag for child in root] == [f"{DS}Signature"]
    references = root[0].findall(f"{DS}SignedInfo/{DS}Reference")
    assert len(references) == len(DOCUMENTS) + 1
    assert references[-1].get("Type") == "http://uri.etsi.org/01903#SignedProperties"
    formats = {f.get("ObjectReference"): f.findtext(f"{XADES}MimeType") for f in root.iter(f"{XADES}DataObjectFormat")}
    for reference, (name, content, mime_type) in zip(references, DOCUMENTS, strict=False):
        assert reference.get("URI") == urllib.parse.quote(name) and reference.find(f"{DS}Transforms") is None
        assert reference.find(f"{DS}DigestMethod").get("Algorithm") == "http://www.w3.org/2001/04/xmlenc#sha256"
        assert base64.b64decode(reference.findtext(f"{DS}DigestValue")) == hashlib.sha256(content).digest()
        assert formats.pop("#" + reference.get("Id")) == mime_type
    assert formats == {}

    done = _xmlsec_beside_the_files(directory, pki)
    assert done.returncode == 0 and b"OK" in done.stderr, done.stderr
    report = _verify_asic(container, pki)
    assert (report.indication, report.format) == (Indication.TOTAL_PASSED, "ASiC-E/XAdES"), report.messages
    assert sorted(scope.name for scope in report.scopes) == sorted(name for name, _, _ in DOCUMENTS)
    return root


def _tampered(container: bytes, name: str) -> bytes:
    """The container with one byte more in document ``name``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(container)) as original, zipfile.ZipFile(out, "w") as changed:
        for info in original.infolist():
            content = original.read(info)
            changed.writestr(info, content + b"!" if info.filename == name else content)
    return out.getvalue()


@pytest.mark.parametrize("level", [Level.B_B, Level.B_T, Level.B_LTA], ids=str)
def test_a_xades_container_has_the_en_319_162_layout_and_verifies(pki_online: OnlinePki, tmp_path: Path,
                                                                  level: Level) -> None:
    container = sign_asic(user_key(pki_online), DOCUMENTS, signature_format="xades", level=level,
                          timestamps=_online_tsa(pki_online), trust_roots=[pki_online.ca.ca_certificate_der("ROOT")],
                          properties=SignatureProperties(claimed_role="Prokurist"))
    root = _check_xades_container(container, tmp_path, pki_online)
    assert root.findtext(f".//{XADES}SignedProperties//{XADES}ClaimedRole") == "Prokurist"
    unsigned = [etree.QName(p).localname for p in root.iterfind(f".//{XADES}UnsignedSignatureProperties/*")]
    assert unsigned == {Level.B_B: [], Level.B_T: ["SignatureTimeStamp"],
                        Level.B_LTA: ["SignatureTimeStamp", "CertificateValues", "RevocationValues",
                                      "TimeStampValidationData", "ArchiveTimeStamp"]}[level]
    assert _verify_asic(container, pki_online).level == level.value

    for name, _, _ in DOCUMENTS:
        tampered = _tampered(container, name)
        assert _verify_asic(tampered, pki_online).indication is Indication.TOTAL_FAILED, name
        _unpack(tampered, tmp_path)
        assert _xmlsec_beside_the_files(tmp_path, pki_online).returncode != 0, name


def test_a_xades_container_extends_to_b_lta_with_its_documents(pki_online: OnlinePki, tmp_path: Path) -> None:
    roots = (pki_online.ca.ca_certificate_der("ROOT"),)
    container = sign_asic(user_key(pki_online), DOCUMENTS, signature_format="xades", level=Level.B_T,
                          timestamps=_online_tsa(pki_online))
    signatures = zipfile.ZipFile(io.BytesIO(container)).read(SIGNATURES)
    with pytest.raises(SiegelError) as caught:
        extend_xades(signatures, Level.B_LTA, timestamps=_online_tsa(pki_online), trust_roots=roots,
                     detached_contents={name: content for name, content, _ in DOCUMENTS[:-1]})
    assert caught.value.code is Code.NOT_SUPPORTED and urllib.parse.quote(DOCUMENTS[-1][0]) in caught.value.message
    extended = extend_xades(signatures, Level.B_LTA, timestamps=_online_tsa(pki_online), trust_roots=roots,
                            detached_contents={name: content for name, content, _ in DOCUMENTS})
    root = etree.fromstring(extended)
    assert root.tag == f"{ASIC}XAdESSignatures" and root.find(f".//{XADES141}ArchiveTimeStamp") is not None
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(container)) as original, zipfile.ZipFile(out, "w") as changed:
        for info in original.infolist():
            changed.writestr(info, extended if info.filename == SIGNATURES else original.read(info))
    _check_xades_container(out.getvalue(), tmp_path, pki_online)
    assert _verify_asic(out.getvalue(), pki_online).level == "B-LTA"


def test_two_step_signing_of_a_xades_container(pki_online: OnlinePki, tmp_path: Path) -> None:
    key = user_key(pki_online)
    prepared = prepare_asic(key.chain, DOCUMENTS, signature_format="xades", digest=DigestAlgorithm.SHA256)
    assert isinstance(prepared.signature, PreparedXades) and prepared.manifest is None
    assert PreparedXades.from_state(json.loads(json.dumps(prepared.signature.to_state()))) == prepared.signature
    value = pki_online.hsm.sign_digest(key.label, prepared.to_be_signed, DigestAlgorithm.SHA256, prepared.scheme)
    _check_xades_container(assemble_asic(prepared, value), tmp_path, pki_online)


def test_signatures_xml_is_valid_against_the_asic_and_xades_schemas(pki: Pki, shared_dir: Path) -> None:
    standards = shared_dir / "standards"
    container = sign_asic(user_key(pki), DOCUMENTS, signature_format="xades", level=Level.B_B,
                          properties=SignatureProperties(claimed_role="Prokurist", reason="Freigabe"))
    root = etree.fromstring(zipfile.ZipFile(io.BytesIO(container)).read(SIGNATURES))
    asic_schema = etree.XMLSchema(etree.parse(str(standards / "en_31916201v010101.xsd")))
    assert asic_schema.validate(root), asic_schema.error_log
    xades_schema = xmlschema.XMLSchema(str(standards / "XAdES01903v141-201601.xsd"))
    signature = root.find(f"{DS}Signature")
    qualifying = signature.find(f"{DS}Object/{XADES}QualifyingProperties")
    assert [str(e) for element in (signature, qualifying) for e in xades_schema.iter_errors(element)] == []
