"""XAdES B-B to B-LTA with users' HSM keys on SoftHSM2, checked by ``xmlsec1 --verify``, ``openssl ts
-verify``, the official XAdES schemas and imprints recomputed here with lxml's C14N."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import xmlschema
from asn1crypto import cms, ocsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from signxml.xades import XAdESSignatureConfiguration, XAdESVerifier

from adapters.timestamp.client import TimestampClient, endpoint_from_url
from server.errors import Code, SiegelError
from server.signing.keysource import DigestAlgorithm
from server.signing.levels import Level, Packaging, ProductionPlace, SignatureProperties
from server.signing.xades import (
    PreparedXades,
    archive_timestamp_input,
    assemble_xades,
    check_xades_value,
    extend_xades,
    prepare_xades,
    prepare_xades_asic,
    sign_xades,
)
from server.xmlsafe import parse_xml
from tests.fixtures.pki import OnlinePki, Pki, make_pki, pki_settings, user_key
from tests.fixtures.tsa import ReferenceTsa

pytestmark = pytest.mark.integration

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
XADES141 = "http://uri.etsi.org/01903/v1.4.1#"
NS = {"ds": DS, "xades": XADES, "xades141": XADES141}
BINARY = b"%PDF-1.7\n\x00\xff Rahmenvertrag zwischen der Muster GmbH und der Beispiel AG\n" * 40
INVOICE = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
           b'<inv:Rechnung xmlns:inv="urn:example:rechnung" xmlns="urn:example:default" Nummer="2026-17">\n'
           b'  <inv:Betrag Waehrung="EUR">1250.00</inv:Betrag>\n  <Posten>Beratung</Posten>\n</inv:Rechnung>\n')
DSS_VECTORS = "vectors/dss-xades"


def _root_pem(pki: Pki, directory: Path) -> None:
    root = pki.ca.ca_certificates()["ROOT"]
    (directory / "root.pem").write_bytes(root.public_bytes(Encoding.PEM))


def _xmlsec(directory: Path, signed: bytes, *trust: str) -> subprocess.CompletedProcess[bytes]:
    """xmlsec1 --verify of ``signed`` in ``directory`` (where a detached document lies beside it)."""
    (directory / "signed.xml").write_bytes(signed)
    return subprocess.run(["xmlsec1", "--verify", *(trust or ("--trusted-pem", "root.pem")),
                           "--id-attr:Id", f"{XADES}:SignedProperties", "--id-attr:Id", f"{DS}:Object", "signed.xml"],
                          cwd=directory, capture_output=True, timeout=60, check=False)


def _verified(done: subprocess.CompletedProcess[bytes]) -> bool:
    return done.returncode == 0 and b"OK" in done.stderr


def _tree(signed: bytes) -> etree._Element:
    return parse_xml(signed, max_depth=200)


def _signature(signed: bytes) -> etree._Element:
    root = _tree(signed)
    return root if root.tag == f"{{{DS}}}Signature" else root.find("ds:Signature", NS)


def _token_of(stamp: etree._Element) -> bytes:
    return base64.b64decode(stamp.findtext("xades:EncapsulatedTimeStamp", namespaces=NS) or "")


def _imprint(token: bytes) -> bytes:
    tst = cms.ContentInfo.load(token)["content"]["encap_content_info"]["content"].parsed
    assert tst["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
    return tst["message_imprint"]["hashed_message"].native  # type: ignore[no-any-return]


def _openssl_ts_verify(directory: Path, token: bytes, digest: bytes, ca_pem: Path) -> subprocess.CompletedProcess[bytes]:
    (directory / "token.der").write_bytes(token)
    return subprocess.run(["openssl", "ts", "-verify", "-token_in", "-in", "token.der", "-digest", digest.hex(),
                           "-CAfile", str(ca_pem)], cwd=directory, capture_output=True, timeout=60, check=False)


def _online_tsa(pki_online: OnlinePki) -> TimestampClient:
    return TimestampClient([endpoint_from_url(pki_online.url + "/tsa", (pki_online.ca.ca_certificates()["ROOT"],))],
                           10, 0)


def _reference_tsa(reference_tsa: ReferenceTsa) -> TimestampClient:
    return TimestampClient([endpoint_from_url(reference_tsa.url, (reference_tsa.ca,))], 10, 0)


def _root_der(pki: Pki) -> bytes:
    return pki.ca.ca_certificate_der("ROOT")


PACKAGINGS = [(Packaging.DETACHED, BINARY), (Packaging.ENVELOPING, BINARY), (Packaging.ENVELOPING, INVOICE),
              (Packaging.ENVELOPED, INVOICE)]


def _tampered(packaging: Packaging, document: bytes, signed: bytes, directory: Path) -> bytes:
    """The signature with the signed data changed (for detached: the file beside it)."""
    if packaging is Packaging.DETACHED:
        (directory / "vertrag.pdf").write_bytes(document + b"!")
        return signed
    if document is BINARY:
        old = base64.b64encode(BINARY)
        return signed.replace(old, base64.b64encode(BINARY.replace(b"Muster", b"Mister")))
    assert b"1250.00" in signed
    return signed.replace(b"1250.00", b"9250.00")


@pytest.mark.parametrize(("packaging", "document"), PACKAGINGS, ids=["detached", "enveloping-binary",
                                                                    "enveloping-xml", "enveloped"])
def test_each_packaging_b_b_verifies_with_xmlsec1_and_not_once_tampered(
        pki: Pki, tmp_path: Path, packaging: Packaging, document: bytes) -> None:
    key = user_key(pki)
    signed = sign_xades(key, level=Level.B_B, packaging=packaging, document=document, document_name="vertrag.pdf")
    _root_pem(pki, tmp_path)
    (tmp_path / "vertrag.pdf").write_bytes(document)
    done = _xmlsec(tmp_path, signed)
    assert _verified(done), done.stderr

    signature = _signature(signed)
    references = signature.findall("ds:SignedInfo/ds:Reference", NS)
    assert [r.get("Type") for r in references][1] == "http://uri.etsi.org/01903#SignedProperties"
    assert {"detached": "vertrag.pdf", "enveloped": ""}.get(packaging.value, "#") in references[0].get("URI", "")
    assert signature.find("ds:SignedInfo/ds:CanonicalizationMethod", NS).get("Algorithm") == \
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
    key_info = [base64.b64decode(c.text) for c in signature.iterfind("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)]
    assert key_info == [key.chain[0], pki.ca.ca_certificate_der("ISSUING")]  # signer first, no root
    properties = signature.find("ds:Object/xades:QualifyingProperties/xades:SignedProperties", NS)
    cert_digest = properties.findtext(".//xades:SigningCertificateV2/xades:Cert/xades:CertDigest/ds:DigestValue",
                                      namespaces=NS)
    assert base64.b64decode(cert_digest) == hashlib.sha256(key.chain[0]).digest()
    assert properties.findtext(".//xades:SigningTime", namespaces=NS)
    data_format = properties.find(".//xades:DataObjectFormat", NS)
    assert data_format.get("ObjectReference") == "#" + references[0].get("Id")
    assert data_format.findtext("xades:MimeType", namespaces=NS) == \
        ("text/xml" if document is INVOICE else "application/octet-stream")
    if packaging is Packaging.ENVELOPED:
        assert _tree(signed)[-1].tag == f"{{{DS}}}Signature"  # the last child of the document's root
    if packaging is not Packaging.DETACHED:  # a second opinion (signxml dereferences no outside URI)
        results = XAdESVerifier().verify(signed, ca_pem_file=str(tmp_path / "root.pem"),
                                         expect_config=XAdESSignatureConfiguration(expect_references=2))
        assert document is not BINARY or results[0].signed_data == BINARY

    assert not _verified(_xmlsec(tmp_path, _tampered(packaging, document, signed, tmp_path)))


@pytest.fixture(scope="module")
def xades_schema(shared_dir: Path) -> xmlschema.XMLSchema:
    """The EN 319 132 (2016) XAdES 1.4.1 schema with the 1.3.2 and xmldsig schemas it imports."""
    return xmlschema.XMLSchema(str(shared_dir / "standards" / "XAdES01903v141-201601.xsd"))


def _schema_errors(schema: xmlschema.XMLSchema, signed: bytes) -> list[str]:
    signature = _signature(signed)
    qualifying = signature.find("ds:Object/xades:QualifyingProperties", NS)
    return [str(e) for element in (signature, qualifying) for e in schema.iter_errors(element)]


@pytest.mark.parametrize(("packaging", "document"), PACKAGINGS, ids=["detached", "enveloping-binary",
                                                                    "enveloping-xml", "enveloped"])
def test_b_b_is_valid_against_the_xades_schemas(pki: Pki, packaging: Packaging, document: bytes,
                                                xades_schema: xmlschema.XMLSchema) -> None:
    properties = SignatureProperties(claimed_role="Prokurist", reason="Freigabe",
                                     commitment_type="http://uri.etsi.org/01903/v1.2.2#ProofOfApproval",
                                     production_place=ProductionPlace("Köln", "50667", "DE"))
    signed = sign_xades(user_key(pki), level=Level.B_B, packaging=packaging, document=document,
                        properties=properties)
    assert _schema_errors(xades_schema, signed) == []
    broken = signed.replace(b"<xades:SigningTime>", b"<xades:SigningTime>not a time")
    assert _schema_errors(xades_schema, broken)  # the check can fail


def test_b_t_timestamp_covers_the_canonical_signature_value(
        pki: Pki, tmp_path: Path, reference_tsa: ReferenceTsa) -> None:
    signed = sign_xades(user_key(pki), level=Level.B_T, packaging=Packaging.ENVELOPED, document=INVOICE,
                        timestamps=_reference_tsa(reference_tsa))
    _root_pem(pki, tmp_path)
    assert _verified(_xmlsec(tmp_path, signed))
    _check_signature_timestamp(signed, tmp_path, reference_tsa.ca_pem)


def _check_signature_timestamp(signed: bytes, directory: Path, ca_pem: Path) -> None:
    signature = _signature(signed)
    (stamp,) = signature.findall(".//xades:UnsignedSignatureProperties/xades:SignatureTimeStamp", NS)
    assert stamp.find("ds:CanonicalizationMethod", NS).get("Algorithm") == \
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
    value = etree.tostring(signature.find("ds:SignatureValue", NS), method="c14n")
    digest = hashlib.sha256(value).digest()
    assert _imprint(_token_of(stamp)) == digest
    done = _openssl_ts_verify(directory, _token_of(stamp), digest, ca_pem)
    assert done.returncode == 0 and b"Verification: OK" in done.stdout, done.stdout + done.stderr
    wrong = _openssl_ts_verify(directory, _token_of(stamp), hashlib.sha256(value + b" ").digest(), ca_pem)
    assert wrong.returncode != 0


def test_rsa_keys_sign_b_t_too(tmp_path: Path, database_url: str, hsm: object, reference_tsa: ReferenceTsa) -> None:
    made = make_pki(pki_settings(tmp_path / "var", database_url, key_algorithm="rsa-3072"), hsm)  # type: ignore[arg-type]
    try:
        made.ca.init("test")
        signed = sign_xades(user_key(made, "rsa"), level=Level.B_T, packaging=Packaging.ENVELOPING,
                            document=BINARY, timestamps=_reference_tsa(reference_tsa))
        _root_pem(made, tmp_path)
        assert _verified(_xmlsec(tmp_path, signed))
        assert _signature(signed).find("ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm") == \
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
        _check_signature_timestamp(signed, tmp_path, reference_tsa.ca_pem)
    finally:
        made.engine.dispose()


def _good_ocsp_for(values: list[bytes], certificate: bytes) -> bool:
    serial = x509.load_der_x509_certificate(certificate).serial_number
    for der in values:
        response = ocsp.OCSPResponse.load(der)
        if response["response_status"].native != "successful":
            continue
        for single in response.basic_ocsp_response["tbs_response_data"]["responses"]:
            if single["cert_id"]["serial_number"].native == serial and single["cert_status"].name == "good":
                return True
    return False


def _values(element: etree._Element, path: str) -> list[bytes]:
    return [base64.b64decode(e.text or "") for e in element.iterfind(path, NS)]


def test_b_lt_embeds_the_whole_chain_and_a_good_ocsp_response(pki_online: OnlinePki, tmp_path: Path) -> None:
    key = user_key(pki_online)
    signed = sign_xades(key, level=Level.B_LT, packaging=Packaging.DETACHED, document=BINARY,
                        document_name="vertrag.pdf", timestamps=_online_tsa(pki_online),
                        trust_roots=(_root_der(pki_online),))
    _root_pem(pki_online, tmp_path)
    (tmp_path / "vertrag.pdf").write_bytes(BINARY)
    assert _verified(_xmlsec(tmp_path, signed))
    properties = _signature(signed).find(".//xades:UnsignedSignatureProperties", NS)
    assert [etree.QName(p).localname for p in properties] == [
        "SignatureTimeStamp", "CertificateValues", "RevocationValues", "TimeStampValidationData"]
    certificates = _values(properties, "xades:CertificateValues/xades:EncapsulatedX509Certificate")
    assert set(certificates) == {key.chain[0], pki_online.ca.ca_certificate_der("ISSUING"), _root_der(pki_online)}
    assert _good_ocsp_for(_values(properties, "xades:RevocationValues/xades:OCSPValues/xades:EncapsulatedOCSPValue"),
                          key.chain[0])
    tsa_certificate = cms.ContentInfo.load(_token_of(properties[0]))["content"]["certificates"][0].chosen.dump()
    stamp_data = properties.find("xades141:TimeStampValidationData", NS)
    assert tsa_certificate in _values(stamp_data, "xades:CertificateValues/xades:EncapsulatedX509Certificate")
    revocation = _values(stamp_data, "xades:RevocationValues/*/*")
    assert revocation, "the TSA's certificate has revocation values"


def _independent_archive_input(signed: bytes, document: bytes, before: int) -> bytes:
    """EN 319 132-1 5.5.2.2 for our detached and base64-enveloping signatures, written out (C14N 1.0):
    the document, SignedProperties, SignedInfo, SignatureValue, KeyInfo, the first ``before`` unsigned
    signature properties and the ds:Object holding the document, if there is one."""
    signature = _signature(signed)
    c14n = [etree.tostring(signature.find(path, NS), method="c14n") for path in (
        "ds:Object/xades:QualifyingProperties/xades:SignedProperties", "ds:SignedInfo", "ds:SignatureValue",
        "ds:KeyInfo")]
    properties = list(signature.find(".//xades:UnsignedSignatureProperties", NS))[:before]
    data_objects = signature.findall("ds:Object[@Id]", NS)
    return document + b"".join(c14n) + b"".join(etree.tostring(p, method="c14n") for p in [*properties, *data_objects])


def test_b_lta_archive_timestamp_covers_everything_before_it_and_renews(
        pki_online: OnlinePki, tmp_path: Path) -> None:
    roots = (_root_der(pki_online),)
    signed = sign_xades(user_key(pki_online), level=Level.B_LTA, packaging=Packaging.DETACHED, document=BINARY,
                        document_name="vertrag.pdf", timestamps=_online_tsa(pki_online), trust_roots=roots)
    _root_pem(pki_online, tmp_path)
    (tmp_path / "vertrag.pdf").write_bytes(BINARY)
    assert _verified(_xmlsec(tmp_path, signed))
    properties = _signature(signed).find(".//xades:UnsignedSignatureProperties", NS)
    assert etree.QName(properties[-1]).localname == "ArchiveTimeStamp" and len(properties) == 5
    archive = _independent_archive_input(signed, BINARY, 4)
    assert _imprint(_token_of(properties[-1])) == hashlib.sha256(archive).digest()
    (tmp_path / "root-ca.pem").write_bytes(pki_online.ca.ca_certificates()["ROOT"].public_bytes(Encoding.PEM))
    done = _openssl_ts_verify(tmp_path, _token_of(properties[-1]), hashlib.sha256(archive).digest(),
                              tmp_path / "root-ca.pem")
    assert done.returncode == 0, done.stdout + done.stderr

    renewed = extend_xades(signed, Level.B_LTA, timestamps=_online_tsa(pki_online), trust_roots=roots,
                           detached_contents={"vertrag.pdf": BINARY})
    properties = _signature(renewed).find(".//xades:UnsignedSignatureProperties", NS)
    assert [etree.QName(p).localname for p in properties][4:] == [
        "ArchiveTimeStamp", "TimeStampValidationData", "ArchiveTimeStamp"]  # the first one's TSA data, then the new
    assert _imprint(_token_of(properties[-1])) == \
        hashlib.sha256(_independent_archive_input(renewed, BINARY, 6)).digest()
    assert _verified(_xmlsec(tmp_path, renewed))
    with pytest.raises(SiegelError) as caught:
        extend_xades(signed, Level.B_LTA, timestamps=_online_tsa(pki_online), trust_roots=roots)
    assert caught.value.code is Code.NOT_SUPPORTED and "detached document" in caught.value.message
    assert extend_xades(signed, Level.B_LT, timestamps=_online_tsa(pki_online), trust_roots=roots) == signed


def test_a_b_b_signature_extends_later_to_b_lta(pki_online: OnlinePki, tmp_path: Path) -> None:
    signed = sign_xades(user_key(pki_online), level=Level.B_B, packaging=Packaging.ENVELOPING, document=BINARY)
    extended = extend_xades(signed, Level.B_LTA, timestamps=_online_tsa(pki_online),
                            trust_roots=(_root_der(pki_online),))
    _root_pem(pki_online, tmp_path)
    assert _verified(_xmlsec(tmp_path, extended))
    properties = _signature(extended).find(".//xades:UnsignedSignatureProperties", NS)
    assert [etree.QName(p).localname for p in properties] == [
        "SignatureTimeStamp", "CertificateValues", "RevocationValues", "TimeStampValidationData", "ArchiveTimeStamp"]
    assert _imprint(_token_of(properties[-1])) == \
        hashlib.sha256(_independent_archive_input(extended, BINARY, 4)).digest()  # the data ds:Object included


def test_schemas_accept_b_lta(pki_online: OnlinePki, xades_schema: xmlschema.XMLSchema) -> None:
    signed = sign_xades(user_key(pki_online), level=Level.B_LTA, packaging=Packaging.ENVELOPED, document=INVOICE,
                        timestamps=_online_tsa(pki_online), trust_roots=(_root_der(pki_online),))
    assert _schema_errors(xades_schema, signed) == []


@pytest.mark.parametrize(("name", "intact"), [("xades-lta-valid.xml", True), ("xades-lta-copied-atst.xml", False)])
def test_archive_input_agrees_with_eu_dss(shared_dir: Path, name: str, intact: bool) -> None:
    """EU DSS's archive timestamps (exclusive C14N, a base64 ds:Object) have the imprint we compute, or
    (a copied archive timestamp) do not."""
    signature = _signature((shared_dir / DSS_VECTORS / name).read_bytes())
    (archive,) = signature.findall(".//xades141:ArchiveTimeStamp", NS)
    digest = hashlib.sha256(archive_timestamp_input(signature, archive)).digest()
    assert (_imprint(_token_of(archive)) == digest) is intact


def test_an_asic_signature_over_several_documents_reaches_b_lta(pki_online: OnlinePki, tmp_path: Path) -> None:
    """signatures.xml (asic:XAdESSignatures) over two files: xmlsec1 verifies it beside them, and the
    archive timestamp covers both files, then the signature's parts (EN 319 132-1 5.5.2.2)."""
    key = user_key(pki_online)
    files = {"Preisblatt 2027.csv": b"Position;Preis\nWartung;1200\n", "Übersicht.txt": INVOICE}
    prepared = prepare_xades_asic(key.chain, [(name, hashlib.sha256(content).digest(), "text/plain")
                                              for name, content in files.items()])
    value = pki_online.hsm.sign_digest(key.label, prepared.to_be_signed, DigestAlgorithm.SHA256, prepared.scheme)
    signed = assemble_xades(prepared, value, level=Level.B_LTA, timestamps=_online_tsa(pki_online),
                            trust_roots=(_root_der(pki_online),), detached_contents=files)
    assert _tree(signed).tag == "{http://uri.etsi.org/02918/v1.2.1#}XAdESSignatures"
    _root_pem(pki_online, tmp_path)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    assert _verified(_xmlsec(tmp_path, signed))
    signature = _signature(signed)
    (archive,) = signature.findall(".//xades141:ArchiveTimeStamp", NS)
    parts = [etree.tostring(signature.find(path, NS), method="c14n") for path in (
        "ds:Object/xades:QualifyingProperties/xades:SignedProperties", "ds:SignedInfo", "ds:SignatureValue",
        "ds:KeyInfo")]
    earlier = [etree.tostring(p, method="c14n") for p in list(archive.getparent())[:4]]
    assert _imprint(_token_of(archive)) == hashlib.sha256(b"".join([*files.values(), *parts, *earlier])).digest()
    (tmp_path / "Übersicht.txt").write_bytes(INVOICE + b" ")
    assert not _verified(_xmlsec(tmp_path, signed))

    for documents, message in (([], "at least one document"), ([("a.txt", bytes(20), "text/plain")], "not 20")):
        with pytest.raises(SiegelError) as caught:
            prepare_xades_asic(key.chain, documents)
        assert caught.value.code is Code.BAD_REQUEST and message in caught.value.message
    with pytest.raises(SiegelError) as caught:
        assemble_xades(prepared, value, level=Level.B_LTA, timestamps=_online_tsa(pki_online),
                       trust_roots=(_root_der(pki_online),), detached_contents={"Übersicht.txt": INVOICE})
    assert caught.value.code is Code.NOT_SUPPORTED and "Preisblatt%202027.csv" in caught.value.message


def test_another_producers_signature_extends_to_b_t(shared_dir: Path, tmp_path: Path,
                                                    reference_tsa: ReferenceTsa) -> None:
    original = (shared_dir / DSS_VECTORS / "dss-signed.xml").read_bytes()  # EU DSS, enveloped, exclusive C14N
    extended = extend_xades(original, Level.B_T, timestamps=_reference_tsa(reference_tsa), trust_roots=())
    insecure = ("--insecure", "--enabled-key-data", "x509")
    assert _verified(_xmlsec(tmp_path, original, *insecure))
    assert _verified(_xmlsec(tmp_path, extended, *insecure))
    _check_signature_timestamp(extended, tmp_path, reference_tsa.ca_pem)


def test_two_step_signing_survives_a_json_round_trip(pki: Pki, tmp_path: Path) -> None:
    key = user_key(pki)
    prepared = prepare_xades(key.chain, packaging=Packaging.ENVELOPED, document=INVOICE)
    value = pki.hsm.sign_digest(key.label, prepared.to_be_signed, DigestAlgorithm.SHA256, prepared.scheme)
    later = PreparedXades.from_state(json.loads(json.dumps(prepared.to_state())))
    assert later == prepared
    wrong = pki.hsm.sign_digest(key.label, hashlib.sha256(b"other").digest(), DigestAlgorithm.SHA256, later.scheme)
    for bad in (wrong, b"\x30\x03not DER"):
        with pytest.raises(SiegelError) as caught:
            check_xades_value(later, bad)
        assert caught.value.code is Code.BAD_REQUEST and "does not verify" in caught.value.message
    with pytest.raises(SiegelError) as caught:
        PreparedXades.from_state({**prepared.to_state(), "xml": "not base64!"})
    assert caught.value.code is Code.BAD_REQUEST and "damaged" in caught.value.message
    check_xades_value(later, value)
    _root_pem(pki, tmp_path)
    assert _verified(_xmlsec(tmp_path, assemble_xades(later, value)))
    assert not _verified(_xmlsec(tmp_path, assemble_xades(later, wrong)))


@pytest.mark.parametrize("digest", list(DigestAlgorithm))
def test_a_signature_over_the_digest_alone_verifies_against_the_document(
        pki: Pki, tmp_path: Path, digest: DigestAlgorithm) -> None:
    signed = sign_xades(user_key(pki), level=Level.B_B, packaging=Packaging.DETACHED, digest=digest,
                        document_digest=hashlib.new(digest.value, BINARY).digest(), document_name="vertrag 1.pdf")
    _root_pem(pki, tmp_path)
    (tmp_path / "vertrag 1.pdf").write_bytes(BINARY)
    assert _verified(_xmlsec(tmp_path, signed))
    (tmp_path / "vertrag 1.pdf").write_bytes(BINARY[:-1])
    assert not _verified(_xmlsec(tmp_path, signed))


def test_claimed_properties_are_signed(pki: Pki, tmp_path: Path) -> None:
    properties = SignatureProperties(claimed_role="Prokurist",
                                     commitment_type="http://uri.etsi.org/01903/v1.2.2#ProofOfApproval",
                                     production_place=ProductionPlace("Köln", "50667", "DE"), reason="Freigabe")
    key = user_key(pki)
    signed = sign_xades(key, level=Level.B_B, packaging=Packaging.ENVELOPED, document=INVOICE, properties=properties)
    signed_properties = _signature(signed).find(".//xades:SignedProperties", NS)
    text = {path: signed_properties.findtext(path, namespaces=NS) for path in (
        ".//xades:SignerRoleV2/xades:ClaimedRoles/xades:ClaimedRole",
        ".//xades:CommitmentTypeIndication/xades:CommitmentTypeId/xades:Identifier",
        ".//xades:CommitmentTypeQualifiers/xades:CommitmentTypeQualifier",
        ".//xades:SignatureProductionPlaceV2/xades:City", ".//xades:SignatureProductionPlaceV2/xades:PostalCode",
        ".//xades:SignatureProductionPlaceV2/xades:CountryName")}
    assert list(text.values()) == ["Prokurist", properties.commitment_type, "Freigabe", "Köln", "50667", "DE"]
    _root_pem(pki, tmp_path)
    assert _verified(_xmlsec(tmp_path, signed))
    for old, new in (("Prokurist", "Vorstand"), ("ProofOfApproval", "ProofOfOrigin"), ("50667", "50668")):
        assert not _verified(_xmlsec(tmp_path, signed.replace(old.encode(), new.encode()))), old

    described = sign_xades(key, level=Level.B_B, packaging=Packaging.DETACHED, document=BINARY,
                           properties=SignatureProperties(reason="Freigabe"))
    assert _signature(described).findtext(".//xades:DataObjectFormat/xades:Description", namespaces=NS) == "Freigabe"


def test_bad_requests_are_refused_before_the_hsm(pki: Pki) -> None:
    key = user_key(pki)
    cases: list[tuple[dict[str, object], Code, str]] = [
        ({"packaging": Packaging.DETACHED}, Code.BAD_REQUEST, "either the document or its digest"),
        ({"packaging": Packaging.ENVELOPED, "document": BINARY}, Code.BAD_REQUEST, "XML document"),
        ({"packaging": Packaging.ENVELOPED, "document": b'<!DOCTYPE r [<!ENTITY e "x">]><r>&e;</r>'},
         Code.HOSTILE_XML, "DOCTYPE"),
        ({"packaging": Packaging.ENVELOPED, "document": b'<r xml:lang="de"><a/></r>'}, Code.NOT_SUPPORTED, "xml:lang"),
        ({"packaging": Packaging.ENVELOPING, "document_digest": bytes(32)}, Code.BAD_REQUEST, "detached"),
        ({"packaging": Packaging.DETACHED, "document_digest": bytes(20)}, Code.BAD_REQUEST, "32 bytes, not 20"),
        ({"packaging": Packaging.DETACHED, "document": BINARY, "level": Level.B_T}, Code.CONFIG,
         "time-stamping authority"),
        ({"packaging": Packaging.DETACHED, "document": BINARY, "level": Level.B_LT, "timestamps": object()},
         Code.CONFIG, "trust anchors"),
        ({"packaging": Packaging.DETACHED, "document_digest": bytes(32), "level": Level.B_LTA,
          "timestamps": object(), "trust_roots": (b"root",)}, Code.NOT_SUPPORTED, "not only its digest"),
    ]
    for kwargs, code, message in cases:
        with pytest.raises(SiegelError) as caught:
            sign_xades(key, **{"level": Level.B_B, **kwargs})  # type: ignore[arg-type]
        assert caught.value.code is code and message in caught.value.message, kwargs
    for signed, code, message in ((INVOICE, Code.BAD_REQUEST, "0 XAdES signatures"),
                                  (b'<!DOCTYPE r SYSTEM "http://example.com/x.dtd"><r/>', Code.HOSTILE_XML, "DOCTYPE")):
        with pytest.raises(SiegelError) as caught:
            extend_xades(signed, Level.B_T, timestamps=object(), trust_roots=())  # type: ignore[arg-type]
        assert caught.value.code is code and message in caught.value.message
