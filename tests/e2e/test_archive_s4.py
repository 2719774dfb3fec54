"""TR-ESOR S.4 at /archive/s4 of a whole running server, through zeep built from ``/archive/s4?wsdl`` alone:
binary and XAIP submission, retrieval, evidence records (ASN.1 and XML), verification, update to a new version,
XPath data access, deletion with a reason; every message on the wire validates against the official TR-ESOR
schemas of ../shared/standards. Bad inputs get the TR-ESOR ResultMinor (or a SOAP fault) and change nothing."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import sqlalchemy
import zeep
from lxml import etree
from zeep.plugins import HistoryPlugin
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from server.web.s4 import ARL_MINOR, COMMON_MINOR, RESULT_MAJOR, SAL_MINOR, TR_NS
from server.web.soap import DSS_NS, SOAP11_ENV
from server.xmlsafe import parse_xml
from tests.e2e.test_dss_soap import reachable_schemas
from tests.e2e.test_wssecurity_soap import create_client
from tests.fixtures.server import SiegelInstance, make_instance
from tests.unit.test_xaip import delta, official_schema, package

pytestmark = pytest.mark.e2e

XAIP_NS = "http://www.bsi.bund.de/tr-esor/xaip"
VR_NS = "urn:oasis:names:tc:dss-x:1.0:profiles:verificationreport:schema#"
TRVR_NS = "http://www.bsi.bund.de/tr-esor/vr"
PDF = b"%PDF-1.7\n% an invoice to keep for 30 years\n"
OK = (RESULT_MAJOR + "ok", None)
FORGED = b"%PDF-1.7\n1 0 obj << /Type /Sig /ByteRange [0 10 20 10] /Contents <3080> >> endobj\n%%EOF\n"
"""A PDF claiming a signature that does not verify (archive.invalid_signatures = refuse)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiegelInstance]:
    inst = make_instance(tmp_path_factory.mktemp("s4"))
    inst.add_user("reader", "reader-password-1", "auditor", signing_key=False)
    yield from inst.serving()


class Wire:
    """A zeep client of /archive/s4 whose every sent and received body element is checked against the official
    schemas right after the call; it authenticates with HTTP Basic ``auth`` or the WS-Security token ``wsse``."""

    def __init__(self, inst: SiegelInstance, official: etree.XMLSchema, auth: tuple[str, str] | None,
                 wsse: UsernameToken | None = None) -> None:
        session = requests.Session()
        session.auth = auth
        self.history = HistoryPlugin(maxlen=2)
        self.client = zeep.Client(inst.url + "/archive/s4?wsdl", transport=Transport(session=session),
                                  plugins=[self.history], wsse=wsse)
        self.official = official
        self.checked = 0

    def __call__(self, operation: str, **kwargs: Any) -> Any:
        answer = getattr(self.client.service, operation)(**kwargs)
        for message in (self.history.last_sent, self.history.last_received):
            entry = message["envelope"].find(f"{{{SOAP11_ENV}}}Body")[0]
            self.official.assertValid(parse_xml(etree.tostring(entry), max_depth=256))
            self.checked += 1
        return answer


@pytest.fixture(scope="module")
def official(shared_dir: Path) -> etree.XMLSchema:
    return official_schema(shared_dir)


@pytest.fixture(scope="module")
def wire(server: SiegelInstance, official: etree.XMLSchema) -> Wire:
    return Wire(server, official, server.auth)


def result(answer: Any) -> tuple[str, str | None]:
    return answer.Result.ResultMajor, answer.Result.ResultMinor


def element(text: str) -> etree._Element:
    return parse_xml(text.encode(), max_depth=64)


def reason(name: str, why: str) -> dict[str, Any]:
    return {"_value_1": [element(f'<tr:ReasonOfDeletion xmlns:tr="{TR_NS}"><tr:RequestorName>{name}</tr:RequestorName>'
                                 f"<tr:RequestInfo>{why}</tr:RequestInfo></tr:ReasonOfDeletion>")]}


def test_wsdl_and_its_schemas_are_published(server: SiegelInstance) -> None:
    response = requests.get(server.url + "/archive/s4?wsdl", timeout=10)
    assert response.status_code == 200
    wsdl = parse_xml(response.content, max_depth=32)
    assert wsdl.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address").get("location") == server.url + "/archive/s4"
    seen = reachable_schemas([i.get("schemaLocation") for i in wsdl.iter("{http://www.w3.org/2001/XMLSchema}include")])
    assert all(url.startswith(server.url + "/archive/s4?xsd=") for url in seen)
    assert len(seen) == 30


def test_binary_round_trip(wire: Wire, server: SiegelInstance) -> None:
    submitted = wire("ArchiveSubmission", RequestID="bin-1", ArchiveData=[
        {"_value_1": PDF, "Type": "http://uri.etsi.org/ades/PAdES", "archiveDataID": "invoice",
         "MimeType": "application/pdf"}])
    assert result(submitted) == OK and submitted.RequestID == "bin-1"
    aoid = submitted.AOID
    retrieved = wire("ArchiveRetrieval", AOID=aoid)
    assert result(retrieved) == OK
    assert retrieved.XAIP.packageHeader.AOID == aoid
    [data_object] = retrieved.XAIP.dataObjectsSection.dataObject
    assert (data_object.dataObjectID, data_object.binaryData._value_1) == ("invoice", PDF)

    evidence = wire("ArchiveEvidence", AOID=aoid)
    assert result(evidence) == OK
    [record] = evidence.evidenceRecord
    assert (record.AOID, record.VersionID) == (aoid, "V1")
    der = record.asn1EvidenceRecord
    assert der[:1] == b"\x30"

    verified = wire("Verify", InputDocuments={"_value_1": [{"Document": {"Base64Data": {"_value_1": PDF}}}]},
                    SignatureObject={"Other": {"_value_1": [evidence_element(aoid, "V1", der)]}},
                    OptionalInputs={"_value_1": [element(f'<vr:ReturnVerificationReport xmlns:vr="{VR_NS}"/>')]})
    assert result(verified) == OK
    assert report_majors(wire) == [RESULT_MAJOR + "ok"]
    tampered = wire("Verify", InputDocuments={"_value_1": [{"Document": {"Base64Data": {"_value_1": PDF + b" "}}}]},
                    SignatureObject={"Other": {"_value_1": [evidence_element(aoid, "V1", der)]}})
    assert result(tampered)[0] == RESULT_MAJOR + "error"
    assert report_majors(wire) == [RESULT_MAJOR + "error"]

    deleted = wire("ArchiveDeletion", AOID=aoid, OptionalInputs=reason(server.user, "retention period over"))
    assert result(deleted) == OK
    gone = wire("ArchiveRetrieval", AOID=aoid)
    assert result(gone) == (RESULT_MAJOR + "error", ARL_MINOR + "unknownAOID")
    assert any(aoid in target and "retention period over" in details for target, details in audit(server))


def database(server: SiegelInstance) -> sqlalchemy.Engine:
    return sqlalchemy.create_engine(f"sqlite:///{server.data_dir / 'siegel.db'}")


def audit(server: SiegelInstance) -> list[tuple[str, str]]:
    """(target, details) of every audit log entry."""
    with database(server).connect() as connection:
        return [(row.target, row.details) for row in connection.execute(sqlalchemy.text(
            "SELECT target, details FROM audit_log ORDER BY seq"))]


def archive_state(server: SiegelInstance) -> dict[str, int]:
    """The number of rows of every archive table and of files in the document store."""
    engine = database(server)
    tables = [t for t in sqlalchemy.inspect(engine).get_table_names() if t.startswith("archive")]
    assert tables, "no archive tables"
    with engine.connect() as connection:
        counts = {t: connection.execute(sqlalchemy.text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables}
    counts["files"] = sum(1 for f in server.data_dir.rglob("*") if f.is_file() and "store" in f.parts)
    return counts


def evidence_element(aoid: str, version: str, der: bytes) -> etree._Element:
    return element(f'<xaip:evidenceRecord xmlns:xaip="{XAIP_NS}" AOID="{aoid}" VersionID="{version}">'
                   f"<xaip:asn1EvidenceRecord>{base64.b64encode(der).decode()}</xaip:asn1EvidenceRecord>"
                   "</xaip:evidenceRecord>")


def report_majors(wire: Wire) -> list[str]:
    """The ResultMajor of every IndividualReport (one per evidence record, with an EvidenceRecordReport) in the
    last VerifyResponse."""
    received = wire.history.last_received["envelope"]
    reports = list(received.iter(f"{{{VR_NS}}}IndividualReport"))
    assert all(r.find(f"{{{VR_NS}}}Details/{{{TRVR_NS}}}EvidenceRecordReport") is not None for r in reports)
    return [r.findtext(f"{{{DSS_NS}}}Result/{{{DSS_NS}}}ResultMajor") for r in reports]


def test_xaip_round_trip_with_an_update(wire: Wire, server: SiegelInstance) -> None:
    xaip = {"XAIPVersion": "1.3.0",
            "packageHeader": {"packageID": "PKG", "versionManifest": [{
                "VersionID": "V001", "preservationInfo": {"retentionPeriod": datetime.date(2060, 1, 1)},
                "packageInfoUnit": [{"packageUnitID": "PU1", "protectedObjectPointer": ["DO1"]}]}]},
            "dataObjectsSection": {"dataObject": [{"dataObjectID": "DO1",
                                                   "binaryData": {"_value_1": PDF, "MimeType": "application/pdf"}}]}}
    submitted = wire("ArchiveSubmission", XAIP=xaip)
    assert result(submitted) == OK
    aoid = submitted.AOID
    updated = wire("ArchiveUpdate", DXAIP=wire.client.get_element(f"{{{XAIP_NS}}}DXAIP").type(
        **zeep_delta(wire, aoid)))
    assert (result(updated), updated.VersionID) == (OK, "V002")
    newest = wire("ArchiveRetrieval", AOID=aoid)
    assert [m.VersionID for m in newest.XAIP.packageHeader.versionManifest] == ["V001", "V002"]
    assert [d.binaryData._value_1 for d in newest.XAIP.dataObjectsSection.dataObject] == [PDF, b"second"]
    first = wire("ArchiveRetrieval", AOID=aoid, VersionID=["V001"])
    assert [m.VersionID for m in first.XAIP.packageHeader.versionManifest] == ["V001"]
    with_records = wire("ArchiveRetrieval", AOID=aoid, OptionalInputs={"_value_1": [
        element(f'<tr:IncludeERS xmlns:tr="{TR_NS}">urn:ietf:rfc:4998</tr:IncludeERS>')]})
    credentials = with_records.XAIP.credentialsSection.credential
    assert [c.relatedObjects for c in credentials] == ["V002", "DO1", "DO2"]
    assert all(c.evidenceRecord.asn1EvidenceRecord[:1] == b"\x30" for c in credentials)

    records = wire("ArchiveEvidence", AOID=aoid, OptionalInputs={"_value_1": [
        element(f'<tr:ERSFormat xmlns:tr="{TR_NS}">urn:ietf:rfc:6283</tr:ERSFormat>')]})
    assert result(records) == OK
    assert len(records.evidenceRecord) == 3  # the skeleton and the two data objects of V002
    assert all(r.VersionID == "V002" and r.xmlEvidenceRecord is not None for r in records.evidenceRecord)

    data = wire("ArchiveData", AOID=aoid, DataLocation=[{  # zeep sends anyType content as text: the XPath itself
        "Type": "http://www.w3.org/TR/2007/REC-xpath20-20070123/",
        "_value_1": "string(//xaip:versionManifest[2]/@VersionID)"}])
    assert result(data) == OK
    assert wire.history.last_received["envelope"].findtext(f".//{{{TR_NS}}}Value") == "V002"
    assert result(wire("ArchiveDeletion", AOID=aoid, OptionalInputs=reason(server.user, "test over"))) == OK


def zeep_delta(wire: Wire, aoid: str, prev: str = "V001") -> dict[str, Any]:
    """tests.unit.test_xaip.delta as zeep values (DO2 added, DO1 kept by a placeHolder)."""
    parsed = wire.client.get_element(f"{{{XAIP_NS}}}DXAIP").parse(element(delta(aoid, prev=prev)),
                                                                  wire.client.wsdl.types)
    return {name: getattr(parsed, name) for name in parsed}


def test_refusals_change_nothing(wire: Wire, server: SiegelInstance) -> None:
    kept = wire("ArchiveSubmission", ArchiveData=[{"_value_1": PDF, "Type": "http://uri.etsi.org/ades/PAdES",
                                                   "archiveDataID": "kept"}]).AOID
    before = archive_state(server)
    assert before["files"] >= 1

    def refused(minor: str, operation: str, **kwargs: Any) -> None:
        assert result(wire(operation, **kwargs)) == (RESULT_MAJOR + "error", minor)

    xaip_type = wire.client.get_element(f"{{{XAIP_NS}}}XAIP")
    refused(ARL_MINOR + "XAIP_NOK", "ArchiveSubmission",
            XAIP=xaip_type.parse(element(package(checksum="00" * 32)), wire.client.wsdl.types))
    refused(ARL_MINOR + "unknownArchiveDataType", "ArchiveSubmission",
            ArchiveData=[{"_value_1": b"PK", "Type": "urn:example:zip", "archiveDataID": "z"}])
    refused(SAL_MINOR + "invalidSignature", "ArchiveSubmission",  # archive.invalid_signatures = refuse (S.4 3.1.2)
            ArchiveData=[{"_value_1": FORGED, "Type": "http://uri.etsi.org/ades/PAdES", "archiveDataID": "f"}])
    refused(ARL_MINOR + "DXAIP_NOK_Version", "ArchiveUpdate", DXAIP=wire.client.get_element(
        f"{{{XAIP_NS}}}DXAIP").type(**zeep_delta(wire, kept, prev="V7")))
    refused(ARL_MINOR + "unknownAOID", "ArchiveRetrieval", AOID="no-such-aoid")
    refused(ARL_MINOR + "missingReasonOfDeletion", "ArchiveDeletion", AOID=kept)
    refused(COMMON_MINOR + "noPermission", "ArchiveDeletion", AOID=kept, OptionalInputs=reason("mallory", "x"))
    assert archive_state(server) == before
    assert [m.VersionID for m in wire("ArchiveRetrieval", AOID=kept).XAIP.packageHeader.versionManifest] == ["V1"]


def test_an_update_whose_signature_does_not_verify_is_refused_as_invalid_signature(wire: Wire,
                                                                                    server: SiegelInstance) -> None:
    xaip_type = wire.client.get_element(f"{{{XAIP_NS}}}XAIP")
    aoid = wire("ArchiveSubmission", XAIP=xaip_type.parse(element(package()), wire.client.wsdl.types)).AOID
    before = archive_state(server)
    forged = zeep_delta(wire, aoid)
    forged["dataObjectsSection"].dataObject[0].binaryData._value_1 = FORGED
    answer = wire("ArchiveUpdate", DXAIP=wire.client.get_element(f"{{{XAIP_NS}}}DXAIP").type(**forged))
    assert result(answer) == (RESULT_MAJOR + "error", SAL_MINOR + "invalidSignature")  # S.4 3.2.2
    assert "signature does not verify" in answer.Result.ResultMessage._value_1
    assert archive_state(server) == before
    assert [m.VersionID for m in wire("ArchiveRetrieval", AOID=aoid).XAIP.packageHeader.versionManifest] == ["V001"]


def raw(server: SiegelInstance, body: bytes, auth: tuple[str, str] | None = None) -> requests.Response:
    return requests.post(server.url + "/archive/s4", data=body, auth=auth or server.auth, timeout=30,
                         headers={"Content-Type": "text/xml; charset=utf-8",
                                  "SOAPAction": '"http://www.bsi.bund.de/tr-esor/ArchiveRetrieval"'})


def envelope(body: str) -> bytes:
    return (f'<s:Envelope xmlns:s="{SOAP11_ENV}" xmlns:tr="{TR_NS}" xmlns:dss="{DSS_NS}"><s:Body>{body}'
            "</s:Body></s:Envelope>").encode()


@pytest.mark.parametrize("body", [
    b"<s:Envelope", b'<!DOCTYPE x [<!ENTITY e "e">]>' + envelope("<tr:RetrieveInfoRequest/>"),
    envelope("<dss:SignRequest/>"),
], ids=["malformed", "doctype", "not-an-s4-operation"])
def test_what_no_operation_answers_is_a_soap_fault(server: SiegelInstance, official: etree.XMLSchema,
                                                     body: bytes) -> None:
    response = raw(server, body)
    assert response.status_code == 500, response.text
    fault = parse_xml(response.content, max_depth=16).find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
    assert fault.findtext("faultcode") == "soap:Client"


def test_schema_invalid_request_is_a_parameter_error(server: SiegelInstance, official: etree.XMLSchema) -> None:
    response = raw(server, envelope("<tr:ArchiveRetrievalRequest><tr:Unknown/></tr:ArchiveRetrievalRequest>"))
    assert response.status_code == 200
    entry = parse_xml(response.content, max_depth=16).find(f"{{{SOAP11_ENV}}}Body")[0]
    official.assertValid(parse_xml(etree.tostring(entry), max_depth=16))
    assert entry.findtext(f"{{{DSS_NS}}}Result/{{{DSS_NS}}}ResultMinor") == COMMON_MINOR + "parameterError"


def test_an_auditor_reads_but_does_not_submit_or_delete(server: SiegelInstance, official: etree.XMLSchema) -> None:
    auditor = Wire(server, official, ("reader", "reader-password-1"))
    with pytest.raises(zeep.exceptions.Fault) as refused:
        auditor("ArchiveSubmission", ArchiveData=[{"_value_1": PDF, "Type": "http://uri.etsi.org/ades/PAdES",
                                                   "archiveDataID": "x"}])
    assert "archive_submit" in refused.value.message
    assert result(auditor("RetrieveInfo")) == OK
    assert result(auditor("ArchiveRetrieval", AOID="no-such-aoid"))[1] == ARL_MINOR + "unknownAOID"


def test_a_ws_security_token_authenticates(server: SiegelInstance, official: etree.XMLSchema) -> None:
    key, _, digest = create_client(server)
    wire = Wire(server, official, None, UsernameToken(key, digest, use_digest=True))
    submitted = wire("ArchiveSubmission", ArchiveData=[{"_value_1": PDF, "Type": "http://uri.etsi.org/ades/PAdES",
                                                        "archiveDataID": "wsse"}])
    assert result(submitted) == OK
    assert "authorization" not in {h.lower() for h in wire.history.last_sent["http_headers"]}
    assert result(wire("ArchiveRetrieval", AOID=submitted.AOID)) == OK
