"""The SOAP admin service ``/soap/admin`` of a whole ``siegel serve``, called by zeep as a client generated from
the WSDL spyne produces: StartWorkflow, GetWorkflowStatus, CancelWorkflow and DownloadDocument of a finished
workflow; the route table's permission per operation, ownership, and every error as a SOAP fault with the DSS
Result in its detail. Delivery of the finished document by a mail with its link (a real SMTP server) and into the
archive, whose object id the status names."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import hashlib
import re
import time

import pytest
import requests
import zeep
from lxml import etree
from zeep.exceptions import Fault
from zeep.transports import Transport

from tests.e2e.test_workflows import PASSWORD, act, api, smtp, template  # noqa: F401 (smtp: a fixture)
from tests.fixtures.pdf import make_pdf
from tests.fixtures.server import SiegelInstance, make_instance
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.e2e
DSS = "urn:oasis:names:tc:dss:1.0:core:schema"
MINOR = "urn:oasis:names:tc:dss:1.0:resultminor:"
BOX = {"level": "B-B", "page": 1, "box": [50, 50, 200, 60]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Iterator[SiegelInstance]:
    inst = make_instance(tmp_path_factory.mktemp("workflows-soap"), {
        "SIEGEL_MAIL_HOST": smtp.host, "SIEGEL_MAIL_PORT": str(smtp.port),
        "SIEGEL_MAIL_SENDER": "siegel@example.com", "SIEGEL_JOBS_POLL_SECONDS": "0.3",
        "SIEGEL_WORKFLOWS_MAIL_INTERVAL_SECONDS": "0.3"})
    inst.add_user("chef", PASSWORD, "template_manager", signing_key=False)
    inst.add_user("revisor", PASSWORD, "auditor", signing_key=False)
    for name in ("anna", "bert"):
        inst.add_user(name, PASSWORD, "signer")
    yield from inst.serving()


def client(server: SiegelInstance, auth: tuple[str, str]) -> zeep.Client:
    session = requests.Session()
    session.trust_env = False
    session.auth = auth
    return zeep.Client(server.url + "/soap/admin?wsdl", transport=Transport(session=session))


def result_minor(fault: Fault) -> str | None:
    assert fault.detail is not None, fault.message
    return fault.detail.findtext(f"{{{DSS}}}Result/{{{DSS}}}ResultMinor")


def test_the_wsdl_is_spynes_with_this_servers_address(server: SiegelInstance) -> None:
    r = requests.get(server.url + "/soap/admin?wsdl", timeout=30)
    assert r.status_code == 200, r.text
    wsdl = etree.fromstring(r.content)
    assert wsdl.xpath("//*[local-name()='address']/@location") == [server.url + "/soap/admin"]
    operations = set(wsdl.xpath("//*[local-name()='portType']/*[local-name()='operation']/@name"))
    assert operations == {"StartWorkflow", "GetWorkflowStatus", "CancelWorkflow", "DownloadDocument"}
    assert requests.get(server.url + "/soap/admin", timeout=30).status_code == 404


def test_start_follow_and_download_a_finished_workflow(server: SiegelInstance, tmp_path: Path) -> None:
    tid = template(server, "SOAP-Vertrag", [
        {"name": "Unterschrift", "assignee": {"user": "anna"}, "action": "sign", "signature": BOX},
        {"name": "Kopie", "assignee": {"external": "{{kunde}}"}, "action": "copy"}])
    erp = client(server, server.auth)
    pdf = make_pdf()
    started = erp.service.StartWorkflow(Template="SOAP-Vertrag", Document=pdf, DocumentName="vertrag.pdf",
                                        Variables={"Variable": [{"Name": "kunde", "Value": "kunde@example.org"}]})
    assert started.State == "running" and started.Template == "SOAP-Vertrag" and started.StartedBy == "erp"
    wid = started.Id
    assert [(s.Name, s.State) for s in started.Steps.WorkflowStep] == [("Unterschrift", "active"),
                                                                       ("Kopie", "waiting")]
    status = erp.service.GetWorkflowStatus(WorkflowId=wid)
    assert status.Id == wid and status.Steps.WorkflowStep[0].Assignees.Assignee[0].User == "anna"
    assert status.Steps.WorkflowStep[1].Assignees.Assignee[0].Email == "kunde@example.org"

    assert act(server, "anna", wid, 1).status_code == 200
    done = erp.service.GetWorkflowStatus(WorkflowId=wid)
    assert done.State == "completed" and done.Revision == 1 and done.Finished is not None
    assert done.Steps.WorkflowStep[0].Assignees.Assignee[0].Auth == "password"
    document = erp.service.DownloadDocument(WorkflowId=wid)
    rest = api(server, "GET", f"/{wid}/document", "erp")
    assert document.Name == "vertrag.pdf" and document.Revision == 1 and document.Content == rest.content
    assert document.Content != pdf and b"/ByteRange" in document.Content
    assert document.Sha256 == done.DocumentSha256

    # ownership is the service's: bert is neither starter nor assignee, anna is an assignee
    with pytest.raises(Fault) as hidden:
        client(server, ("bert", PASSWORD)).service.DownloadDocument(WorkflowId=wid)
    assert "no workflow" in hidden.value.message and result_minor(hidden.value) == MINOR + "GeneralError"
    assert client(server, ("anna", PASSWORD)).service.GetWorkflowStatus(WorkflowId=wid).State == "completed"


def test_cancel_over_soap_and_the_faults(server: SiegelInstance) -> None:
    template(server, "SOAP-Freigabe", [{"name": "Freigabe", "assignee": {"user": "bert"}, "action": "approve"}])
    erp = client(server, server.auth)
    wid = erp.service.StartWorkflow(Template="SOAP-Freigabe", Document=make_pdf()).Id
    cancelled = erp.service.CancelWorkflow(WorkflowId=wid, Reason="doppelt")
    assert cancelled.State == "cancelled" and cancelled.Reason == "doppelt"
    assert cancelled.Steps.WorkflowStep[0].State == "cancelled"
    with pytest.raises(Fault) as again:
        erp.service.CancelWorkflow(WorkflowId=wid)
    assert "is cancelled" in again.value.message and again.value.code.endswith("Client")
    assert act(server, "bert", wid, 1, "approve").status_code == 409

    with pytest.raises(Fault) as not_pdf:
        erp.service.StartWorkflow(Template="SOAP-Freigabe", Document=b"plain text")
    assert "a workflow document is a PDF" in not_pdf.value.message
    with pytest.raises(Fault) as unknown:
        erp.service.StartWorkflow(Template="gibt es nicht", Document=make_pdf())
    assert "gibt es nicht" in unknown.value.message, unknown.value.message
    with pytest.raises(Fault) as twice:
        erp.service.StartWorkflow(Template="SOAP-Freigabe", Document=make_pdf(), Variables={"Variable": [
            {"Name": "a", "Value": "1"}, {"Name": "a", "Value": "2"}]})
    assert "given twice" in twice.value.message
    with pytest.raises(Fault) as missing:
        erp.service.GetWorkflowStatus(WorkflowId=999999)
    assert "no workflow 999999" in missing.value.message

    # the route table: an auditor may read workflows but neither start nor cancel them
    revisor = client(server, ("revisor", PASSWORD))
    with pytest.raises(Fault) as refused:
        revisor.service.StartWorkflow(Template="SOAP-Freigabe", Document=make_pdf())
    assert result_minor(refused.value) == MINOR + "AuthenticationError", refused.value.message
    with pytest.raises(Fault) as unauthenticated:  # the guard's HTTP Basic challenge, its body a fault as on /dss
        client(server, ("erp", "wrong")).service.GetWorkflowStatus(WorkflowId=wid)
    assert result_minor(unauthenticated.value) == MINOR + "AuthenticationError", unauthenticated.value.message

    envelope = (b'<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
                b'<a:GetWorkflowStatus xmlns:a="urn:siegel:admin:1.0"><a:WorkflowId>x</a:WorkflowId>'
                b'</a:GetWorkflowStatus></s:Body></s:Envelope>')
    r = requests.post(server.url + "/soap/admin", data=envelope, auth=server.auth, timeout=30,
                      headers={"content-type": "text/xml; charset=utf-8"})
    assert r.status_code == 500
    fault = etree.fromstring(r.content)
    assert fault.findtext(f".//{{{DSS}}}ResultMinor") == "urn:siegel:dss:1.0:resultminor:RequestNotSchemaValid"
    hostile = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "e">]>' + envelope[21:]
    r = requests.post(server.url + "/soap/admin", data=hostile, auth=server.auth, timeout=30)
    assert r.status_code == 500
    assert etree.fromstring(r.content).findtext(f".//{{{DSS}}}ResultMinor").endswith("ForbiddenXmlConstruct")


def test_delivery_by_mail_with_the_link_and_into_the_archive(server: SiegelInstance, smtp: SmtpServer) -> None:
    template(server, "Archivvertrag", [
        {"name": "Unterschrift", "assignee": {"user": "anna"}, "action": "sign", "signature": BOX}],
        delivery=[{"emailLink": "{{buchhaltung}}"}, {"email": "{{buchhaltung}}"}, {"archive": True}])
    erp = client(server, server.auth)
    wid = erp.service.StartWorkflow(Template="Archivvertrag", Document=make_pdf(), DocumentName="archiv.pdf",
                                    Variables={"Variable": [{"Name": "buchhaltung", "Value": "fibu@example.com"}]}).Id
    assert act(server, "anna", wid, 1).status_code == 200
    mail = smtp.mail_to("fibu@example.com", "archiv.pdf is signed")
    text = mail.message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    link = f"{server.url}/api/v1/workflows/{wid}/document"
    assert link in text, text
    signed = requests.get(link, auth=server.auth, timeout=30)
    assert signed.status_code == 200 and b"/ByteRange" in signed.content
    assert hashlib.sha256(signed.content).hexdigest() in text
    attached = smtp.mail_to("fibu@example.com", "archiv.pdf (signed)")
    (pdf,) = [part for part in attached.message.iter_attachments() if part.get_content_type() == "application/pdf"]
    assert pdf.get_filename() == f"{wid}-archiv.pdf" and pdf.get_content() == signed.content

    deadline = time.monotonic() + 30
    while (status := erp.service.GetWorkflowStatus(WorkflowId=wid)).ArchiveObjectId is None:
        assert time.monotonic() < deadline, api(server, "GET", f"/{wid}", "erp").json()["deliveries"]
        time.sleep(0.3)
    deliveries = api(server, "GET", f"/{wid}", "erp").json()["deliveries"]
    assert [(d["kind"], d["target"], d["state"]) for d in deliveries] == [
        ("emailLink", "fibu@example.com", "delivered"), ("email", "fibu@example.com", "delivered"),
        ("archive", "", "delivered")]
    aoid = status.ArchiveObjectId
    archived = requests.get(f"{server.url}/api/v1/archive/objects/{aoid}", auth=server.auth, timeout=30)
    assert archived.status_code == 200, archived.text
    (version,) = archived.json()["versions"]
    key = version["metadata"].pop("siegelDelivery")  # the delivery's idempotency key
    assert version["metadata"] == {"workflow": str(wid), "documentSha256": status.DocumentSha256}
    assert re.fullmatch(f"workflow-{wid}-delivery-[0-9]+", key), key
    (item,) = version["items"]
    assert item["name"] == "archiv.pdf" and item["digests"]["sha256"] == status.DocumentSha256
    content = requests.get(f"{server.url}/api/v1/archive/objects/{aoid}/items/1", auth=server.auth, timeout=30)
    assert content.content == signed.content
    time.sleep(1.0)  # a second archive object or mail would be there by now
    assert sum("fibu@example.com" in m.rcpt_tos for m in smtp.messages) == 2

    # a starter whose role may not archive cannot start a template that archives: refused before anything exists
    refused = api(server, "POST", "", "chef", json={"template": "Archivvertrag", "document": "JVBERi0=",
                                                    "variables": {"buchhaltung": "fibu@example.com"}})
    assert refused.status_code == 403 and "archive" in refused.json()["detail"], refused.text
