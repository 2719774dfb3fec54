"""The TR-ESOR S.4 endpoint (server.web.s4) over a small in-memory stand-in of the ArchiveService interface:
envelopes in, envelopes out; every response validates against the official TR-ESOR schemas; refusals carry the
TR-ESOR ResultMinor and leave the archive as it was. (The real service: tests/e2e/test_archive_s4.py.)"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from server.archive.evidence_verify import EvidenceReport, Step
from server.errors import Code, SiegelError
from server.identity.users import Principal, Role
from server.validation.model import Indication
from server.web.s4 import ARL_MINOR, COMMON_MINOR, RESULT_MAJOR, TR_NS, S4Endpoint, TrEsorSchema
from server.web.soap import DSS_NS, SOAP11_ENV
from server.xmlsafe import parse_xml
from tests.unit.test_xaip import official_schema

pytestmark = pytest.mark.unit

XAIP_NS = "http://www.bsi.bund.de/tr-esor/xaip"
PRINCIPAL = Principal(7, "erp", Role.INTEGRATION)


def envelope(body: str) -> bytes:
    return (f'<s:Envelope xmlns:s="{SOAP11_ENV}" xmlns:tr="{TR_NS}" xmlns:dss="{DSS_NS}" xmlns:xaip="{XAIP_NS}">'
            f"<s:Body>{body}</s:Body></s:Envelope>").encode()


@dataclass
class _Info:
    aoid: str
    versions: list[Any]


class InMemoryArchive:
    """The promised ArchiveService interface, in memory: versions of items, evidence records as fixed bytes."""

    def __init__(self) -> None:
        self.objects: dict[str, list[list[Any]]] = {}
        self.deleted: list[tuple[str, str]] = []
        self.protected: bytes | None = None
        self.verified: list[bytes | None] = []
        self._numbers = itertools.count(1)

    def _versions(self, aoid: str) -> list[list[Any]]:
        if aoid not in self.objects:
            raise SiegelError(Code.NOT_FOUND, f"no archive object {aoid!r}")
        return self.objects[aoid]

    def submit(self, principal: Principal, items: Sequence[Any], metadata: Mapping[str, str] | None = None,
               *, verify_signatures: bool = True) -> _Info:
        aoid = f"aoid-{next(self._numbers)}"
        self.objects[aoid] = [list(items)]
        return _Info(aoid, self.objects[aoid])

    def update(self, principal: Principal, aoid: str, items: Sequence[Any],
               metadata: Mapping[str, str] | None = None) -> _Info:
        self._versions(aoid).append(list(items))
        return _Info(aoid, self.objects[aoid])

    def info(self, principal: Principal, aoid: str) -> _Info:
        return _Info(aoid, self._versions(aoid))

    def retrieve(self, principal: Principal, aoid: str, version: int | None = None) -> list[tuple[Any, bytes | None]]:
        items = self._versions(aoid)[-1 if version is None else version - 1]
        return [(item, item.content) for item in items]

    def evidence(self, principal: Principal, aoid: str, fmt: str = "ers", *, seal: bool = True,
                 version: int | None = None) -> list[bytes]:
        return [b"\x30\x03\x02\x01\x01" for _ in self._versions(aoid)[-1 if version is None else version - 1]]

    def verify(self, record: bytes, *, data: bytes | None = None,
               digests: Mapping[str, bytes] | None = None) -> EvidenceReport:
        """Valid for the one datum ``self.protected``; reference not found for anything else."""
        self.verified.append(data)
        passed = data == self.protected
        return EvidenceReport(Indication.TOTAL_PASSED if passed else Indication.TOTAL_FAILED, None, [
            Step("reference", passed, "" if passed else "no hash of the data in the first partial hash tree", 1, 1),
            Step("timestamp", True, "the token verifies", 1, 1)])

    def delete(self, principal: Principal, aoid: str, reason: str) -> None:
        self._versions(aoid)
        del self.objects[aoid]
        self.deleted.append((aoid, reason))


@pytest.fixture(scope="module")
def official(shared_dir: Path) -> etree.XMLSchema:
    return official_schema(shared_dir)


@pytest.fixture
def archive() -> InMemoryArchive:
    return InMemoryArchive()


@pytest.fixture
def call(archive: InMemoryArchive, official: etree.XMLSchema) -> Any:
    from server.web.s4_operations import S4Operations

    schema = TrEsorSchema()
    endpoint = S4Endpoint(S4Operations(archive, schema, 256), schema, 256)  # type: ignore[arg-type]

    def run(body: str, status: int = 200) -> etree._Element:
        code, answer = endpoint.handle(envelope(body), PRINCIPAL)
        assert code == status, answer
        entry = parse_xml(answer, max_depth=256).find(f"{{{SOAP11_ENV}}}Body")[0]
        if status == 200:
            official.assertValid(entry)
        return entry

    return run


def result(response: etree._Element) -> tuple[str, str | None]:
    return (response.findtext(f"{{{DSS_NS}}}Result/{{{DSS_NS}}}ResultMajor"),
            response.findtext(f"{{{DSS_NS}}}Result/{{{DSS_NS}}}ResultMinor"))


def submit_binary(call: Any, data: bytes = b"%PDF-1.7 test") -> str:
    response = call('<tr:ArchiveSubmissionRequest RequestID="r1"><tr:ArchiveData Type="http://uri.etsi.org/ades/PAdES" '
                    f'archiveDataID="doc1">{base64.b64encode(data).decode()}</tr:ArchiveData>'
                    "</tr:ArchiveSubmissionRequest>")
    assert result(response) == (RESULT_MAJOR + "ok", None)
    assert response.get("RequestID") == "r1"
    return response.findtext(f"{{{TR_NS}}}AOID")


def test_binary_submission_is_retrieved_as_an_xaip(call: Any, archive: InMemoryArchive) -> None:
    aoid = submit_binary(call)
    [[item]] = archive.objects[aoid]
    assert (item.name, item.mime_type, item.content) == ("doc1", "application/pdf", b"%PDF-1.7 test")
    response = call(f"<tr:ArchiveRetrievalRequest><tr:AOID>{aoid}</tr:AOID></tr:ArchiveRetrievalRequest>")
    binary = response.find(f"{{{XAIP_NS}}}XAIP/{{{XAIP_NS}}}dataObjectsSection/{{{XAIP_NS}}}dataObject/"
                           f"{{{XAIP_NS}}}binaryData")
    assert base64.b64decode(binary.text) == b"%PDF-1.7 test"


def test_xaip_submission_update_retrieval_evidence(call: Any, archive: InMemoryArchive) -> None:
    from tests.unit.test_xaip import delta, package

    aoid = call(f"<tr:ArchiveSubmissionRequest>{package()}</tr:ArchiveSubmissionRequest>").findtext(f"{{{TR_NS}}}AOID")
    assert [i.name for i in archive.objects[aoid][0]] == ["tr-esor:xaip", "DO1"]
    update = call(f"<tr:ArchiveUpdateRequest>{delta(aoid)}</tr:ArchiveUpdateRequest>")
    assert (result(update), update.findtext(f"{{{TR_NS}}}VersionID")) == ((RESULT_MAJOR + "ok", None), "V002")
    again = call(f"<tr:ArchiveUpdateRequest>{delta(aoid)}</tr:ArchiveUpdateRequest>")
    assert result(again) == (RESULT_MAJOR + "error", ARL_MINOR + "DXAIP_NOK_Version")
    assert len(archive.objects[aoid]) == 2  # the refused update added nothing
    newest = call(f"<tr:ArchiveRetrievalRequest><tr:AOID>{aoid}</tr:AOID></tr:ArchiveRetrievalRequest>")
    manifests = newest.findall(f".//{{{XAIP_NS}}}versionManifest")
    assert [m.get("VersionID") for m in manifests] == ["V001", "V002"]
    assert newest.findtext(f".//{{{XAIP_NS}}}packageHeader/{{{XAIP_NS}}}AOID") == aoid
    first = call(f"<tr:ArchiveRetrievalRequest><tr:AOID>{aoid}</tr:AOID><tr:VersionID>V001</tr:VersionID>"
                 "</tr:ArchiveRetrievalRequest>")
    assert len(first.findall(f".//{{{XAIP_NS}}}versionManifest")) == 1
    evidence = call(f"<tr:ArchiveEvidenceRequest><tr:AOID>{aoid}</tr:AOID></tr:ArchiveEvidenceRequest>")
    records = evidence.findall(f"{{{XAIP_NS}}}evidenceRecord")
    assert [(r.get("AOID"), r.get("VersionID")) for r in records] == [(aoid, "V002")] * 3
    every = call(f"<tr:ArchiveEvidenceRequest><tr:AOID>{aoid}</tr:AOID><tr:VersionID>all</tr:VersionID>"
                 "</tr:ArchiveEvidenceRequest>")
    assert [r.get("VersionID") for r in every.findall(f"{{{XAIP_NS}}}evidenceRecord")] == ["V001"] * 2 + ["V002"] * 3
    old = call(f"<tr:ArchiveEvidenceRequest><tr:AOID>{aoid}</tr:AOID><tr:VersionID>V009</tr:VersionID>"
               "</tr:ArchiveEvidenceRequest>")
    assert result(old) == (RESULT_MAJOR + "error", ARL_MINOR + "unknownVersionID")


def test_deletion_needs_a_reason_of_the_authenticated_account(call: Any, archive: InMemoryArchive) -> None:
    aoid = submit_binary(call)

    def delete(reason: str) -> etree._Element:
        return call(f"<tr:ArchiveDeletionRequest>{reason}<tr:AOID>{aoid}</tr:AOID></tr:ArchiveDeletionRequest>")

    assert result(delete("")) == (RESULT_MAJOR + "error", ARL_MINOR + "missingReasonOfDeletion")
    someone = ("<dss:OptionalInputs><tr:ReasonOfDeletion><tr:RequestorName>mallory</tr:RequestorName>"
               "<tr:RequestInfo>x</tr:RequestInfo></tr:ReasonOfDeletion></dss:OptionalInputs>")
    assert result(delete(someone)) == (RESULT_MAJOR + "error", COMMON_MINOR + "noPermission")
    assert aoid in archive.objects
    assert result(delete(someone.replace("mallory", "erp"))) == (RESULT_MAJOR + "ok", None)
    assert archive.deleted == [(aoid, "x (TR-ESOR ArchiveDeletion, RequestorName erp)")]
    gone = call(f"<tr:ArchiveRetrievalRequest><tr:AOID>{aoid}</tr:AOID></tr:ArchiveRetrievalRequest>")
    assert result(gone) == (RESULT_MAJOR + "error", ARL_MINOR + "unknownAOID")


@pytest.mark.parametrize(("body", "minor"), [
    ("<tr:ArchiveSubmissionRequest><tr:Bogus/></tr:ArchiveSubmissionRequest>", COMMON_MINOR + "parameterError"),
    ('<tr:ArchiveSubmissionRequest><tr:ArchiveData Type="urn:example:zip" archiveDataID="a">AA==</tr:ArchiveData>'
     "</tr:ArchiveSubmissionRequest>", ARL_MINOR + "unknownArchiveDataType"),
    ("<tr:ArchiveSubmissionRequest><dss:OptionalInputs><tr:AOID>mine</tr:AOID></dss:OptionalInputs>"
     '<tr:ArchiveData Type="http://uri.etsi.org/ades/PAdES" archiveDataID="a">AA==</tr:ArchiveData>'
     "</tr:ArchiveSubmissionRequest>", ARL_MINOR + "notSupported"),
    ("<tr:ArchiveEvidenceRequest><dss:OptionalInputs><tr:ERSFormat>urn:example:ers</tr:ERSFormat>"
     "</dss:OptionalInputs><tr:AOID>aoid-1</tr:AOID></tr:ArchiveEvidenceRequest>", ARL_MINOR + "notSupported"),
], ids=["schema-invalid", "unknown-type", "client-aoid", "unknown-ers-format"])
def test_refused_requests_archive_nothing(call: Any, archive: InMemoryArchive, body: str, minor: str) -> None:
    assert result(call(body)) == (RESULT_MAJOR + "error", minor)
    assert archive.objects == {}


@pytest.mark.parametrize("data", [
    b"not xml", f'<tr:RetrieveInfoRequest xmlns:tr="{TR_NS}"/>'.encode(),
    envelope('<dss:SignRequest/>'), envelope(""),
], ids=["not-xml", "no-envelope", "not-an-s4-operation", "empty-body"])
def test_what_no_operation_answers_is_a_soap_fault(archive: InMemoryArchive, data: bytes) -> None:
    from server.web.s4_operations import S4Operations

    schema = TrEsorSchema()
    endpoint = S4Endpoint(S4Operations(archive, schema, 256), schema, 256)  # type: ignore[arg-type]
    code, answer = endpoint.handle(data, PRINCIPAL)
    fault = parse_xml(answer, max_depth=32).find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
    assert code == 500 and fault is not None and fault.findtext("faultcode") == "soap:Client"


def test_retrieve_info_names_the_s4_profile(call: Any) -> None:
    response = call("<tr:RetrieveInfoRequest/>")
    names = [n.text for n in response.iter("{http://docs.oasis-open.org/dss-x/ns/metadata}Name")]
    assert "ArchiveSubmission" in names and "Verify" in names
    assert call("<tr:RetrieveInfoRequest><tr:Status>inactive</tr:Status></tr:RetrieveInfoRequest>").find(
        "{http://uri.etsi.org/19512/v1.1.2#}Profile") is None


def test_archive_data_selects_by_xpath(call: Any) -> None:
    from tests.unit.test_xaip import package

    aoid = call(f"<tr:ArchiveSubmissionRequest>{package()}</tr:ArchiveSubmissionRequest>").findtext(f"{{{TR_NS}}}AOID")
    xpath = 'Type="http://www.w3.org/TR/2007/REC-xpath20-20070123/"'
    response = call(f"<tr:ArchiveDataRequest><tr:AOID>{aoid}</tr:AOID><tr:DataLocation {xpath}><tr:XPathFilter>"
                    "//xaip:metaDataObject</tr:XPathFilter></tr:DataLocation><tr:DataLocation {xpath}>//nothing"
                    "</tr:DataLocation></tr:ArchiveDataRequest>".replace("{xpath}", xpath))
    assert result(response) == (RESULT_MAJOR + "warning", ARL_MINOR + "requestOnlyPartlySuccessfulWarning")
    found, missing = response.findall(f"{{{TR_NS}}}XAIPData")
    assert found.find(f"{{{TR_NS}}}Value/{{{XAIP_NS}}}metaDataObject").get("metaDataID") == "MD1"
    assert result(missing) == (RESULT_MAJOR + "error", ARL_MINOR + "unknownLocation")


@pytest.mark.parametrize(("body", "actions"), [
    ("<tr:ArchiveSubmissionRequest/>", ("archive_submit",)),
    ("<tr:ArchiveUpdateRequest/>", ("archive_submit",)),
    ("<tr:ArchiveRetrievalRequest/>", ("archive_read",)),
    ("<tr:ArchiveEvidenceRequest/>", ("archive_read",)),
    ("<tr:ArchiveDataRequest/>", ("archive_read",)),
    ("<tr:ArchiveDeletionRequest/>", ("archive_delete",)),
    ("<tr:RetrieveInfoRequest/>", ("api_info",)),
    ("<dss:VerifyRequest/>", ("verify",)),
    ("<tr:ArchiveTraceRequest/>", None),
], ids=lambda v: v if isinstance(v, str) else None)
def test_the_guard_reads_the_s4_operation(body: str, actions: tuple[str, ...] | None) -> None:
    from io import BytesIO

    from server.web.auth import DSS_OPERATION, permission_of, required_actions

    assert permission_of(b"/archive/s4", b"POST")[0] == DSS_OPERATION
    assert permission_of(b"/archive/s4", b"GET")[0] == "public"

    class Request:
        content = BytesIO(envelope(body))

    found = required_actions(Request(), DSS_OPERATION)
    assert (tuple(a.value for a in found) if found is not None else None) == actions


def test_verify_reports_each_evidence_record_against_the_data_it_protects(call: Any, archive: InMemoryArchive,
                                                                          shared_dir: Path) -> None:
    vectors = shared_dir / "vectors" / "evidence-records" / "ers-testool"
    record, data = (vectors / "2Chains3ATS_BIN_ER.ers").read_bytes(), (vectors / "BIN.bin").read_bytes()
    archive.protected = data
    holder = (f'<xaip:evidenceRecord AOID="aoid-1" VersionID="V1"><xaip:asn1EvidenceRecord>'
              f"{base64.b64encode(record).decode()}</xaip:asn1EvidenceRecord></xaip:evidenceRecord>")

    def verify(*documents: bytes) -> etree._Element:
        inputs = "".join(f'<dss:Document ID="d{n}"><dss:Base64Data>{base64.b64encode(d).decode()}</dss:Base64Data>'
                         "</dss:Document>" for n, d in enumerate(documents))
        return call(f'<dss:VerifyRequest RequestID="v"><dss:InputDocuments>{inputs}</dss:InputDocuments>'
                    f"<dss:SignatureObject><dss:Other>{holder}</dss:Other></dss:SignatureObject></dss:VerifyRequest>")

    response = verify(b"something else", data)
    assert result(response) == (RESULT_MAJOR + "ok", None)
    assert archive.verified == [b"something else", data]  # tried in turn until one is protected
    vr = "urn:oasis:names:tc:dss-x:1.0:profiles:verificationreport:schema#"
    [individual] = response.iter(f"{{{vr}}}IndividualReport")
    assert "over d1" in individual.findtext(f"{{{DSS_NS}}}Result/{{{DSS_NS}}}ResultMessage")
    chains = individual.findall(".//{http://www.bsi.bund.de/tr-esor/vr}ArchiveTimeStampChain")
    assert [len(c.findall("{http://www.bsi.bund.de/tr-esor/vr}ArchiveTimeStamp")) for c in chains] == [2, 1]
    refused = verify(b"something else")
    assert result(refused) == (RESULT_MAJOR + "error", ARL_MINOR + "XAIP_NOK_ER")
    assert "no hash of the data" in refused.findtext(f".//{{{vr}}}IndividualReport/{{{DSS_NS}}}Result/"
                                                     f"{{{DSS_NS}}}ResultMessage")


def test_an_xml_evidence_record_survives_the_xaip_wrapping(shared_dir: Path, official: etree.XMLSchema) -> None:
    """ArchiveEvidence moves an RFC 6283 record's content into xaip:xmlEvidenceRecord, Verify takes it out again:
    the record verifies exactly as before (its renewal hashes are over canonical XML)."""
    from server.archive import evidence_verify
    from server.web.s4_verify import evidence_record_bytes, evidence_record_element

    vectors = shared_dir / "vectors" / "evidence-records" / "dss-xml"
    for name, data in (("er-chain-renewal.xml", "uuid.bin"), ("er-data-group.xml", "HELLO.bin")):
        original = (vectors / name).read_bytes()
        holder = evidence_record_element(original, "xml", "aoid-1", "V1", 256)
        official.assertValid(holder)
        back, fmt = evidence_record_bytes(holder)
        document = (vectors / "data" / data).read_bytes()
        assert fmt == "xml"
        assert (evidence_verify.verify(back, data=document).to_json() ==
                evidence_verify.verify(original, data=document).to_json())


def test_a_plain_object_takes_a_delta_xaip(call: Any, archive: InMemoryArchive) -> None:
    """ArchiveUpdate on a binary submission: the DXAIP builds on the synthesized XAIP (version V1, object doc1)."""
    from tests.unit.test_xaip import delta

    aoid = submit_binary(call)
    update = call(f"<tr:ArchiveUpdateRequest>{delta(aoid, prev='V1', holder='doc1')}</tr:ArchiveUpdateRequest>")
    assert (result(update), update.findtext(f"{{{TR_NS}}}VersionID")) == ((RESULT_MAJOR + "ok", None), "V002")
    assert [i.name for i in archive.objects[aoid][1]] == ["tr-esor:xaip", "doc1", "DO2"]
    first = call(f"<tr:ArchiveRetrievalRequest><tr:AOID>{aoid}</tr:AOID><tr:VersionID>V1</tr:VersionID>"
                 "</tr:ArchiveRetrievalRequest>")
    assert [m.get("VersionID") for m in first.iter(f"{{{XAIP_NS}}}versionManifest")] == ["V1"]
    newest = call(f"<tr:ArchiveRetrievalRequest><tr:AOID>{aoid}</tr:AOID></tr:ArchiveRetrievalRequest>")
    assert [m.get("VersionID") for m in newest.iter(f"{{{XAIP_NS}}}versionManifest")] == ["V1", "V002"]


def test_retrieval_includes_the_evidence_records_when_asked(call: Any) -> None:
    from tests.unit.test_xaip import delta, package

    include = ("<dss:OptionalInputs><tr:IncludeERS>urn:ietf:rfc:4998</tr:IncludeERS>"
               '<pres:POFormat xmlns:pres="http://uri.etsi.org/19512/v1.1.2#">http://www.bsi.bund.de/tr-esor/xaip/1.3'
               "</pres:POFormat></dss:OptionalInputs>")
    aoid = call(f"<tr:ArchiveSubmissionRequest>{package()}</tr:ArchiveSubmissionRequest>").findtext(f"{{{TR_NS}}}AOID")
    call(f"<tr:ArchiveUpdateRequest>{delta(aoid)}</tr:ArchiveUpdateRequest>")
    response = call(f"<tr:ArchiveRetrievalRequest>{include}<tr:AOID>{aoid}</tr:AOID></tr:ArchiveRetrievalRequest>")
    credentials = response.findall(f".//{{{XAIP_NS}}}credential")
    assert [c.get("relatedObjects") for c in credentials] == ["V002", "DO1", "DO2"]  # schema-valid: IDREFs resolve
    assert all(c.find(f"{{{XAIP_NS}}}evidenceRecord").get("VersionID") == "V002" for c in credentials)
    newest = response.findall(f".//{{{XAIP_NS}}}versionManifest")[-1]
    assert [p.text for p in newest.iter(f"{{{XAIP_NS}}}unprotectedObjectPointer")] == [
        c.get("credentialID") for c in credentials]
    plain = submit_binary(call)
    shown = call(f"<tr:ArchiveRetrievalRequest>{include}<tr:AOID>{plain}</tr:AOID></tr:ArchiveRetrievalRequest>")
    assert [c.get("relatedObjects") for c in shown.iter(f"{{{XAIP_NS}}}credential")] == ["doc1"]
    other = include.replace("http://www.bsi.bund.de/tr-esor/xaip/1.3", "http://uri.etsi.org/ades/ASiC/type/ASiC-ERS")
    refused = call(f"<tr:ArchiveRetrievalRequest>{other}<tr:AOID>{plain}</tr:AOID></tr:ArchiveRetrievalRequest>")
    assert result(refused) == (RESULT_MAJOR + "error", ARL_MINOR + "unknownPOFormat")
