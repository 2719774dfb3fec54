"""Verification over REST (``/api/v1/verify``), DSS (``dss:VerifyRequest``) and ``siegel verify``.

Signatures are made by the running server itself; reports are checked against the official schemas
(TS 119 102-2, OASIS DSS core and DSS-X verification report).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import xmlschema
from asn1crypto import cms
from lxml import etree

from server.web.soap import DSS_NS, SOAP11_ENV
from server.xmlsafe import parse_trusted_file, parse_xml
from tests.e2e.test_dss_soap import SOAP_HEADERS, envelope, official  # noqa: F401 (official is a fixture)
from tests.fixtures.server import SiegelInstance

pytestmark = pytest.mark.e2e

DOCUMENT = b"Kaufvertrag Nr. 2026-117 zwischen der Muster GmbH und der Beispiel AG\n" * 40
ETSI = "http://uri.etsi.org/19102/v1.2.1#"
VR = "urn:oasis:names:tc:dss-x:1.0:profiles:verificationreport:schema#"
MINOR = "urn:oasis:names:tc:dss:1.0:resultminor:"
MAJOR = "urn:oasis:names:tc:dss:1.0:resultmajor:"
SIGNATURE_TIME_STAMP = "1.2.840.113549.1.9.16.2.14"


@pytest.fixture(scope="module")
def verifier(siegel_server: SiegelInstance) -> tuple[str, str]:
    name, password = "verify-signer", "verify-signer-password"
    siegel_server.cli("user", "add", name, "--email", "verify-signer@example.com", "--role", "signer",
                      "--password-stdin", stdin=password + "\n")
    siegel_server.cli("ca", "issue", name)
    return name, password


@pytest.fixture(scope="module")
def etsi_schema(shared_dir: Path) -> etree.XMLSchema:
    return etree.XMLSchema(parse_trusted_file(shared_dir / "standards" / "TS119102-2-v122.xsd"))


@pytest.fixture(scope="module")
def dssx_schema(shared_dir: Path) -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(shared_dir / "standards" / "oasis-dssx-1.0-profiles-verification-report-cs1.xsd"))


def _sign(inst: SiegelInstance, auth: tuple[str, str], query: str, body: bytes = DOCUMENT) -> bytes:
    r = requests.post(f"{inst.url}/api/v1/sign?{query}", data=body, auth=auth, timeout=60)
    assert r.status_code == 200, r.text
    return r.content


def _verify_rest(inst: SiegelInstance, auth: tuple[str, str], signature: bytes, document: bytes | None = None,
                 **kwargs: Any) -> requests.Response:
    if document is None:
        return requests.post(inst.url + "/api/v1/verify", data=signature, auth=auth, timeout=60, **kwargs)
    files = {"signature": ("signature.p7s", signature), "document": ("contract.txt", document)}
    return requests.post(inst.url + "/api/v1/verify", files=files, auth=auth, timeout=60, **kwargs)


def test_rest_verifies_a_detached_cades_and_reports_what_it_covers(
        siegel_server: SiegelInstance, verifier: tuple[str, str], etsi_schema: etree.XMLSchema) -> None:
    signature = _sign(siegel_server, verifier, "format=cades&level=B-T")
    r = _verify_rest(siegel_server, verifier, signature, DOCUMENT)
    assert r.status_code == 200, r.text
    report = r.json()
    (sig,) = report["signatures"]
    assert (sig["indication"], sig["level"], report["passed"]) == ("TOTAL-PASSED", "B-T", True), sig
    assert "verify-signer" in sig["signer"]
    assert [s["digest"] for s in sig["scopes"]] == [base64.b64encode(hashlib.sha256(DOCUMENT).digest()).decode()]
    assert [t["kind"] for t in sig["timestamps"]] == ["signature"] and sig["timestamps"][0]["valid"]

    xml = _verify_rest(siegel_server, verifier, signature, DOCUMENT, headers={"Accept": "application/xml"})
    assert xml.status_code == 200 and xml.headers["Content-Type"] == "application/xml"
    etsi_schema.assertValid(parse_xml(xml.content, max_depth=128))


def test_a_changed_document_fails_and_only_its_digest_can_stand_in(
        siegel_server: SiegelInstance, verifier: tuple[str, str]) -> None:
    signature = _sign(siegel_server, verifier, "format=cades&level=B-B")
    (sig,) = _verify_rest(siegel_server, verifier, signature, DOCUMENT + b"!").json()["signatures"]
    assert (sig["indication"], sig["subIndication"]) == ("TOTAL-FAILED", "HASH_FAILURE")
    assert sig["scopes"] == []

    digest = base64.b64encode(hashlib.sha256(DOCUMENT).digest()).decode()
    by_digest = requests.post(siegel_server.url + "/api/v1/verify", params={"digest": digest}, data=signature,
                              auth=verifier, timeout=60).json()
    assert by_digest["signatures"][0]["indication"] == "TOTAL-PASSED", by_digest
    alone = _verify_rest(siegel_server, verifier, signature).json()["signatures"][0]
    assert (alone["indication"], alone["subIndication"]) == ("INDETERMINATE", "SIGNED_DATA_NOT_FOUND")


@pytest.mark.parametrize(("body", "status", "detail"), [
    (b"", 400, "empty"),
    (b"\x30\x03\x02\x01\x01", 200, "FORMAT_FAILURE"),
    (b"%PDF-1.7\n", 200, "the PDF cannot be read"),
], ids=["empty", "not-cms", "broken-pdf"])
def test_what_cannot_be_verified_is_said_so(siegel_server: SiegelInstance, verifier: tuple[str, str], body: bytes,
                                            status: int, detail: str) -> None:
    r = _verify_rest(siegel_server, verifier, body)
    assert r.status_code == status, r.text
    assert detail in r.text


def _dss_verify(inst: SiegelInstance, schema: xmlschema.XMLSchema, options: str, signature: bytes | None,
                documents: str) -> etree._Element:
    holder = (f'<dss:SignatureObject><dss:Base64Signature Type="urn:ietf:rfc:3369">'
              f"{base64.b64encode(signature).decode()}</dss:Base64Signature></dss:SignatureObject>"
              if signature is not None else "")
    body = (f'<dss:VerifyRequest RequestID="v-1">{options}<dss:InputDocuments>{documents}</dss:InputDocuments>'
            f"{holder}</dss:VerifyRequest>")
    request = envelope(body)
    schema.validate(parse_xml(request, max_depth=64).find(f"{{{SOAP11_ENV}}}Body")[0])
    r = requests.post(inst.url + "/dss", data=request, headers=SOAP_HEADERS, auth=inst.auth, timeout=60)
    assert r.status_code == 200, r.text
    response = parse_xml(r.content, max_depth=128).find(f"{{{SOAP11_ENV}}}Body")[0]
    schema.validate(parse_xml(etree.tostring(response), max_depth=128))
    assert response.get("RequestID") == "v-1"
    return response


def _document(content: bytes, ident: str = "contract", name: str = "contract.txt") -> str:
    return (f'<dss:Document ID="{ident}" RefURI="{name}"><dss:Base64Data MimeType="text/plain">'
            f"{base64.b64encode(content).decode()}</dss:Base64Data></dss:Document>")


def _result(response: etree._Element) -> tuple[str, str]:
    result = response.find(f"{{{DSS_NS}}}Result")
    return result.findtext(f"{{{DSS_NS}}}ResultMajor"), result.findtext(f"{{{DSS_NS}}}ResultMinor")


def test_dss_verify_request_gives_result_etsi_and_dssx_reports(
        siegel_server: SiegelInstance, verifier: tuple[str, str], official: xmlschema.XMLSchema,
        etsi_schema: etree.XMLSchema, dssx_schema: xmlschema.XMLSchema) -> None:
    signature = _sign(siegel_server, verifier, "format=cades&level=B-T")
    options = ('<dss:OptionalInputs><vr:ReturnVerificationReport xmlns:vr="urn:oasis:names:tc:dss-x:1.0:profiles:'
               'verificationreport:schema#"/></dss:OptionalInputs>')
    response = _dss_verify(siegel_server, official, options, signature, _document(DOCUMENT))
    assert _result(response) == (MAJOR + "Success", MINOR + "valid:signature:OnAllDocuments")
    outputs = response.find(f"{{{DSS_NS}}}OptionalOutputs")
    etsi = outputs.find(f"{{{ETSI}}}ValidationReport")
    etsi_schema.assertValid(etree.ElementTree(etree.fromstring(etree.tostring(etsi))))
    assert etsi.findtext(f".//{{{ETSI}}}MainIndication") == "urn:etsi:019102:mainindication:total-passed"
    dssx = outputs.find(f"{{{VR}}}VerificationReport")
    dssx_schema.validate(etree.fromstring(etree.tostring(dssx)))
    assert len(dssx.findall(f"{{{VR}}}IndividualReport")) == 1

    tampered = _dss_verify(siegel_server, official, "", signature, _document(DOCUMENT + b"."))
    assert _result(tampered) == (MAJOR + "Success", MINOR + "invalid:IncorrectSignature")


def test_dss_verify_with_only_the_documents_hash(siegel_server: SiegelInstance, verifier: tuple[str, str],
                                                 official: xmlschema.XMLSchema) -> None:
    signature = _sign(siegel_server, verifier, "format=cades&level=B-B")
    digest = base64.b64encode(hashlib.sha256(DOCUMENT).digest()).decode()
    document_hash = ('<dss:DocumentHash RefURI="contract.txt"><ds:DigestMethod xmlns:ds="http://www.w3.org/2000/09/'
                     'xmldsig#" Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue xmlns:ds='
                     f'"http://www.w3.org/2000/09/xmldsig#">{digest}</ds:DigestValue></dss:DocumentHash>')
    response = _dss_verify(siegel_server, official, "", signature, document_hash)
    assert _result(response) == (MAJOR + "Success", MINOR + "valid:signature:OnAllDocuments")


def test_dss_returns_the_signature_raised_to_b_t(siegel_server: SiegelInstance, verifier: tuple[str, str],
                                                 official: xmlschema.XMLSchema) -> None:
    signature = _sign(siegel_server, verifier, "format=cades&level=B-B")
    options = ('<dss:OptionalInputs><dss:ReturnUpdatedSignature '
               'Type="http://uri.etsi.org/ades/191x2/level/baseline/B-T#"/></dss:OptionalInputs>')
    response = _dss_verify(siegel_server, official, options, signature, _document(DOCUMENT))
    assert _result(response)[0] == MAJOR + "Success"
    updated = response.find(f"{{{DSS_NS}}}OptionalOutputs/{{{DSS_NS}}}UpdatedSignature")
    raised = base64.b64decode(updated.findtext(f"{{{DSS_NS}}}SignatureObject/{{{DSS_NS}}}Base64Signature"))
    info = cms.ContentInfo.load(raised)["content"]["signer_infos"][0]
    assert SIGNATURE_TIME_STAMP in {a["type"].dotted for a in info["unsigned_attrs"]}
    (sig,) = _verify_rest(siegel_server, verifier, raised, DOCUMENT).json()["signatures"]
    assert (sig["indication"], sig["level"]) == ("TOTAL-PASSED", "B-T")


def test_siegel_verify_exit_codes_follow_the_verdict(siegel_server: SiegelInstance, verifier: tuple[str, str],
                                                     tmp_path: Path) -> None:
    (tmp_path / "contract.txt").write_bytes(DOCUMENT)
    (tmp_path / "contract.txt.p7s").write_bytes(_sign(siegel_server, verifier, "format=cades&level=B-T"))
    (tmp_path / "changed.txt").write_bytes(DOCUMENT + b"?")
    passed = siegel_server.cli("verify", str(tmp_path / "contract.txt.p7s"), "--detached", str(tmp_path / "contract.txt"),
                               "--report", str(tmp_path / "report.xml"))
    assert "TOTAL-PASSED" in passed.stdout and (tmp_path / "report.xml").read_bytes().startswith(b"<?xml")
    failed = siegel_server.cli("verify", str(tmp_path / "contract.txt.p7s"), "--detached", str(tmp_path / "changed.txt"),
                               check=False)
    assert failed.returncode == 1 and "HASH_FAILURE" in failed.stdout
    missing = siegel_server.cli("verify", str(tmp_path / "contract.txt.p7s"), check=False)
    assert missing.returncode == 3 and "SIGNED_DATA_NOT_FOUND" in missing.stdout


def test_dss_verifies_an_inline_xades_signature_over_a_detached_document(
        siegel_server: SiegelInstance, verifier: tuple[str, str], official: xmlschema.XMLSchema) -> None:
    signature = _sign(siegel_server, verifier, "format=xades&level=B-T&name=contract.txt")
    body = (f'<dss:VerifyRequest RequestID="v-1"><dss:InputDocuments>{_document(DOCUMENT)}</dss:InputDocuments>'
            f"<dss:SignatureObject>{signature.decode().split('?>', 1)[-1]}</dss:SignatureObject></dss:VerifyRequest>")
    request = envelope(body)
    official.validate(parse_xml(request, max_depth=64).find(f"{{{SOAP11_ENV}}}Body")[0])
    r = requests.post(siegel_server.url + "/dss", data=request, headers=SOAP_HEADERS, auth=siegel_server.auth,
                      timeout=60)
    response = parse_xml(r.content, max_depth=128).find(f"{{{SOAP11_ENV}}}Body")[0]
    assert _result(response) == (MAJOR + "Success", MINOR + "valid:signature:OnAllDocuments"), \
        response.findtext(f"{{{DSS_NS}}}Result/{{{DSS_NS}}}ResultMessage")
    report = response.find(f"{{{DSS_NS}}}OptionalOutputs/{{{ETSI}}}ValidationReport")
    assert report.findtext(f".//{{{ETSI}}}MainIndication") == "urn:etsi:019102:mainindication:total-passed"


def test_dss_refuses_a_signature_with_a_dtd_and_reports_wrapped_content_unsigned(
        siegel_server: SiegelInstance, official: xmlschema.XMLSchema, shared_dir: Path) -> None:
    vectors = shared_dir / "vectors" / "dss-xades"
    dtd = _dss_verify(siegel_server, official, "", None,
                      f'<dss:Document ID="d"><dss:Base64Data MimeType="application/xml">'
                      f'{base64.b64encode((vectors / "xades-with-dtd-injection.xml").read_bytes()).decode()}'
                      "</dss:Base64Data></dss:Document>")
    assert _result(dtd) == (MAJOR + "RequesterError", "urn:siegel:dss:1.0:resultminor:ForbiddenXmlConstruct")
    wrapped = _dss_verify(siegel_server, official, "", None,
                          f'<dss:Document ID="d"><dss:Base64Data MimeType="application/xml">'
                          f'{base64.b64encode((vectors / "xsw" / "XSW-enveloping-fake-object.xml").read_bytes()).decode()}'
                          "</dss:Base64Data></dss:Document>")
    major, minor = _result(wrapped)
    assert major != MAJOR + "Success" or minor != MINOR + "valid:signature:OnAllDocuments", (major, minor)


def test_dss_raises_a_detached_xades_to_b_lta_with_its_document(
        siegel_server: SiegelInstance, verifier: tuple[str, str], official: xmlschema.XMLSchema) -> None:
    signature = _sign(siegel_server, verifier, "format=xades&level=B-B&name=contract.txt")
    options = ('<dss:OptionalInputs><dss:ReturnUpdatedSignature '
               'Type="http://uri.etsi.org/ades/191x2/level/baseline/B-LTA#"/></dss:OptionalInputs>')
    holder = (f'<dss:SignatureObject><dss:Base64Signature Type="urn:ietf:rfc:3275">'
              f"{base64.b64encode(signature).decode()}</dss:Base64Signature></dss:SignatureObject>")
    body = (f'<dss:VerifyRequest RequestID="v-1">{options}<dss:InputDocuments>{_document(DOCUMENT)}'
            f"</dss:InputDocuments>{holder}</dss:VerifyRequest>")
    r = requests.post(siegel_server.url + "/dss", data=envelope(body), headers=SOAP_HEADERS, auth=siegel_server.auth,
                      timeout=120)
    response = parse_xml(r.content, max_depth=128).find(f"{{{SOAP11_ENV}}}Body")[0]
    official.validate(parse_xml(etree.tostring(response), max_depth=128))
    assert _result(response)[0] == MAJOR + "Success", response.findtext(f".//{{{DSS_NS}}}ResultMessage")
    raised = base64.b64decode(response.findtext(
        f"{{{DSS_NS}}}OptionalOutputs/{{{DSS_NS}}}UpdatedSignature/{{{DSS_NS}}}SignatureObject/{{{DSS_NS}}}Base64Signature"))
    assert b"ArchiveTimeStamp" in raised
    files = {"signature": ("signature.xml", raised), "document": ("contract.txt", DOCUMENT)}
    (sig,) = requests.post(siegel_server.url + "/api/v1/verify", files=files, auth=verifier, timeout=60).json()["signatures"]
    assert (sig["indication"], sig["level"]) == ("TOTAL-PASSED", "B-LTA"), sig


def _at(moment: str) -> str:
    return (f"<dss:OptionalInputs><dss:UseVerificationTime><dss:SpecificTime>{moment}</dss:SpecificTime>"
            '</dss:UseVerificationTime><vr:ReturnVerificationReport xmlns:vr="urn:oasis:names:tc:dss-x:1.0:'
            'profiles:verificationreport:schema#"/></dss:OptionalInputs>')


def test_dss_verifies_at_the_time_asked_for(siegel_server: SiegelInstance, verifier: tuple[str, str],
                                            official: xmlschema.XMLSchema) -> None:
    """UseVerificationTime/SpecificTime: in 2000 the signer's certificate was not yet issued, so the signature
    cannot pass then; at a time after signing it passes; a time without a zone is refused."""
    signature = _sign(siegel_server, verifier, "format=cades&level=B-B")
    then = _dss_verify(siegel_server, official, _at("2000-01-01T00:00:00Z"), signature, _document(DOCUMENT))
    assert _result(then) == (MAJOR + "InsufficientInformation",
                             "urn:siegel:dss:1.0:resultminor:indeterminate:NOT_YET_VALID"), _result(then)
    outputs = then.find(f"{{{DSS_NS}}}OptionalOutputs")
    assert outputs.findtext(f".//{{{DSS_NS}}}VerificationTime").startswith("2000-01-01T00:00:00")
    assert outputs.findtext(f".//{{{ETSI}}}MainIndication") == "urn:etsi:019102:mainindication:indeterminate"

    soon = (datetime.now(UTC) + timedelta(minutes=1)).isoformat(timespec="seconds")
    later = _dss_verify(siegel_server, official, _at(soon), signature, _document(DOCUMENT))
    assert _result(later) == (MAJOR + "Success", MINOR + "valid:signature:OnAllDocuments"), _result(later)

    zoneless = _dss_verify(siegel_server, official, _at("2026-12-07T10:00:00"), signature, _document(DOCUMENT))
    assert _result(zoneless)[0] == MAJOR + "RequesterError"
