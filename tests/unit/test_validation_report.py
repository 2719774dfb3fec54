"""The TS 119 102-2 XML report validates against the official XSD; the JSON report has its documented keys."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from lxml import etree

from server.validation.model import (Indication, SignatureReport, SignedScope, SubIndication, TimestampResult,
                                     ValidationReport)
from server.validation.report import MAIN_INDICATION, SUB_INDICATION, VR, to_etsi_xml, to_json
from server.xmlsafe import parse_trusted_file, parse_xml

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc)
SIGNED = NOW - timedelta(days=3)
NS = {"vr": VR}


def _certificate(name: str, issuer: str | None = None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - timedelta(days=30))
            .not_valid_after(NOW + timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


ROOT = _certificate("Siegel Test Root")
ISSUING = _certificate("Siegel Test Issuing", "Siegel Test Root")
ANNA = _certificate("Anna Muster", "Siegel Test Issuing")
SCOPE = SignedScope("vertrag.pdf", "FULL", "the whole document", "sha256", bytes(range(32)))
STAMP = TimestampResult("signature", SIGNED, True, "CN=Siegel TSA", "signature timestamp is valid", b"\x30\x03\x02\x01\x01")


def _passed() -> SignatureReport:
    return SignatureReport("signer-1", "CAdES", Indication.TOTAL_PASSED, messages=["the signature is valid"],
                           signer_certificate=ANNA, chain=[ANNA, ISSUING, ROOT], claimed_signing_time=SIGNED,
                           best_signature_time=SIGNED, level="B-T", digest_algorithm="sha256",
                           signature_algorithm="sha256_ecdsa", timestamps=[STAMP], scopes=[SCOPE],
                           signature_value=b"\x01" * 64)


def _failed() -> SignatureReport:
    bad_stamp = TimestampResult("signature", None, False, None, "timestamp token fails the message imprint check",
                                b"\x30\x03\x02\x01\x02")
    return SignatureReport("signer 2 (odd id)", "CAdES", Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE,
                           ["the message-digest attribute does not match the signed content"],
                           signer_certificate=ANNA, chain=[ANNA], claimed_signing_time=SIGNED, level="B-B",
                           timestamps=[bad_stamp], scopes=[SCOPE])


def _indeterminate() -> SignatureReport:
    digest_only = SignedScope("(digest)", "DIGEST", "the digest only", "sha384", bytes(48))
    return SignatureReport("signer-3", "XAdES", Indication.INDETERMINATE, SubIndication.REVOKED_NO_POE,
                           ["revoked, no proof of existence"], signer_certificate=ANNA, chain=[ANNA, ISSUING, ROOT],
                           scopes=[digest_only])


def _no_certificate() -> SignatureReport:
    return SignatureReport("signature", "CAdES", Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE,
                           ["not a CMS SignedData"])


@pytest.fixture(scope="module")
def schema(shared_dir: Path) -> etree.XMLSchema:
    xsd = shared_dir / "standards" / "TS119102-2-v122.xsd"
    if not xsd.is_file():
        pytest.skip(f"{xsd} is absent: the TS 119 102-2 schema is not available here")
    return etree.XMLSchema(parse_trusted_file(xsd))


def _valid(schema: etree.XMLSchema, report: ValidationReport) -> etree._Element:
    document = parse_xml(to_etsi_xml(report), max_depth=50)
    assert schema.validate(document), schema.error_log
    return document


@pytest.mark.parametrize("make", [_passed, _failed, _indeterminate, _no_certificate])
def test_each_kind_of_report_is_valid_against_the_ts_119_102_2_schema(schema: etree.XMLSchema, make) -> None:  # type: ignore[no-untyped-def]
    document = _valid(schema, ValidationReport([make()], NOW, "vertrag.pdf"))
    sig = make()
    main = document.findtext("vr:SignatureValidationReport/vr:SignatureValidationStatus/vr:MainIndication",
                             namespaces=NS)
    assert main == MAIN_INDICATION + sig.indication.value.lower()
    sub = document.findtext("vr:SignatureValidationReport/vr:SignatureValidationStatus/vr:SubIndication",
                            namespaces=NS)
    assert sub == (SUB_INDICATION + sig.sub_indication.value if sig.sub_indication else None)


def test_a_report_of_several_signatures_lists_each_object_once_and_references_resolve(schema: etree.XMLSchema) -> None:
    document = _valid(schema, ValidationReport([_passed(), _failed(), _indeterminate(), _passed()], NOW))
    assert len(document.findall("vr:SignatureValidationReport", NS)) == 4
    ids = [o.get("id") for o in document.iterfind("vr:SignatureValidationObjects/vr:ValidationObject", NS)]
    assert len(ids) == len(set(ids))
    certificates = document.findall("vr:SignatureValidationObjects/vr:ValidationObject"
                                    "[vr:ObjectType='urn:etsi:019102:validationObject:certificate']", NS)
    assert len(certificates) == 3  # Anna, issuing CA and root, however often they appear
    references = {ref for element in document.iter() for ref in (element.get("VOReference") or "").split()}
    assert references and references <= set(ids)
    identifiers = [i.get("id") for i in document.iterfind("vr:SignatureValidationReport/vr:SignatureIdentifier", NS)]
    assert identifiers == ["S-signer-1", "S-signer_2__odd_id_", "S-signer-3", "S-signer-1-2"]


def test_the_xml_carries_signer_times_timestamps_chain_and_scope(schema: etree.XMLSchema) -> None:
    document = _valid(schema, ValidationReport([_passed()], NOW))
    sig = document.find("vr:SignatureValidationReport", NS)
    assert sig is not None
    assert sig.findtext("vr:SignerInformation/vr:Signer", namespaces=NS) == "CN=Anna Muster"
    assert sig.findtext("vr:ValidationTimeInfo/vr:ValidationTime", namespaces=NS) == "2026-12-07T10:00:00Z"
    assert sig.findtext("vr:ValidationTimeInfo/vr:BestSignatureTime/vr:POETime", namespaces=NS) == "2026-12-04T10:00:00Z"
    assert sig.findtext("vr:SignatureAttributes/vr:SigningTime/vr:Time", namespaces=NS) == "2026-12-04T10:00:00Z"
    stamp_ref = sig.find("vr:SignatureAttributes/vr:SignatureTimeStamp/vr:AttributeObject", NS)
    assert stamp_ref is not None
    assert sig.find("vr:ValidationTimeInfo/vr:BestSignatureTime/vr:POEObject", NS).get("VOReference") == stamp_ref.get("VOReference")  # type: ignore[union-attr]
    chain = sig.find("vr:SignatureValidationStatus/vr:AssociatedValidationReportData/vr:CertificateChain", NS)
    assert chain is not None and [c.tag.split("}")[1] for c in chain] == [
        "SigningCertificate", "IntermediateCertificate", "TrustAnchor"]
    assert sig.findtext("vr:SignatureValidationProcess/vr:SignatureValidationProcessID",
                        namespaces=NS) == "urn:etsi:019102:validationprocess:LTVM"
    objects = document.find("vr:SignatureValidationObjects", NS)
    assert objects is not None
    (data,) = objects.findall("vr:ValidationObject[vr:ObjectType='urn:etsi:019102:validationObject:signedData']", NS)
    assert data.findtext("vr:POE/vr:POETime", namespaces=NS) == "2026-12-04T10:00:00Z"
    assert data.find("vr:ValidationObjectRepresentation/vr:DigestAlgAndValue", NS) is not None
    (stamp,) = objects.findall("vr:ValidationObject[vr:ObjectType='urn:etsi:019102:validationObject:timestamp']", NS)
    assert stamp.findtext("vr:ValidationReport/vr:SignatureValidationStatus/vr:MainIndication",
                          namespaces=NS) == "urn:etsi:019102:mainindication:passed"


def test_json_has_the_documented_keys_and_serialises() -> None:
    report = ValidationReport([_passed(), _failed()], NOW, "vertrag.pdf")
    data = to_json(report)
    json.dumps(data)
    assert data["validationTime"] == "2026-12-07T10:00:00Z" and data["passed"] is False
    first, second = data["signatures"]
    assert set(first) == {"id", "format", "indication", "subIndication", "messages", "signer", "signingTime",
                          "bestSignatureTime", "level", "digestAlgorithm", "signatureAlgorithm", "timestamps",
                          "scopes", "chain"}
    assert first["indication"] == "TOTAL-PASSED" and first["subIndication"] is None
    assert first["chain"] == ["CN=Anna Muster", "CN=Siegel Test Issuing", "CN=Siegel Test Root"]
    assert first["timestamps"] == [{"kind": "signature", "time": "2026-12-04T10:00:00Z", "valid": True,
                                    "tsa": "CN=Siegel TSA", "message": "signature timestamp is valid"}]
    assert first["scopes"][0]["digest"] == "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    assert second["subIndication"] == "HASH_FAILURE" and second["bestSignatureTime"] is None
