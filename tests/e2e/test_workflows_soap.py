"""The SOAP admin service ``/soap/admin`` of a whole ``siegel serve``, called by zeep as a client generated from
the WSDL spyne produces: StartWorkflow, GetWorkflowStatus, CancelWorkflow and DownloadDocument of a finished
workflow; template management (list, get, create, update as a new version, retire) with REST's validation; the
route table's permission per operation, ownership, and every error as a SOAP fault with the DSS Result in its
detail; a Java client that wsimport generates from the live WSDL. Delivery of the finished document by a mail
with its link (a real SMTP server) and into the archive, whose object id the status names."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import hashlib
import re
import shutil
import time

import pytest
import requests
import zeep
import zeep.helpers
from lxml import etree
from zeep.exceptions import Fault
from zeep.transports import Transport

from tests.e2e.test_dss_soap import run
from tests.e2e.test_workflows import PASSWORD, act, api, smtp, template  # noqa: F401 (smtp: a fixture)
from tests.fixtures.pdf import make_pdf
from tests.fixtures.server import SiegelInstance, make_instance
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.e2e
DSS = "urn:oasis:names:tc:dss:1.0:core:schema"
MINOR = "urn:oasis:names:tc:dss:1.0:resultminor:"
BOX = {"level": "B-B", "page": 1, "box": [50, 50, 200, 60]}
JAVA_CLIENT = Path(__file__).parent / "java" / "WorkflowAdminClient.java"
JAXWS_RUNTIME = "/usr/share/java/jaxws-rt.jar"  # Debian jaxws


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
    assert operations == {"StartWorkflow", "GetWorkflowStatus", "CancelWorkflow", "DownloadDocument",
                          "ListTemplates", "GetTemplate", "CreateTemplate", "UpdateTemplate", "RetireTemplate"}
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


SOAP_CONTRACT = {
    "Description": "Kaufvertrag",
    "Starters": {"Roles": {"Role": ["integration"]}},
    "Steps": {"TemplateStep": [
        {"Name": "Freigabe", "Assignee": {"Group": "einkauf", "Mode": "any"}, "Action": "approve",
         "DeadlineHours": 48, "RemindAfterHours": {"Hours": [24]}},
        {"Name": "Unterschrift", "Assignee": {"User": "anna"}, "Action": "sign", "Auth": "password",
         "FourEyesWith": "Freigabe",
         "Signature": {"Level": "B-B", "Page": 1, "Box": {"X": 50, "Y": 50, "Width": 200, "Height": 60}}},
        {"Name": "Kopie", "Assignee": {"External": "{{kunde}}", "ExternalName": "Kunde"}, "Action": "copy"}]},
    "Delivery": {"TemplateDelivery": [{"Folder": "kauf"}, {"Archive": True}]}}
"""A definition in its SOAP form; the same as REST's JSON below."""

REST_CONTRACT = {
    "description": "Kaufvertrag",
    "starters": {"roles": ["integration"], "users": [], "groups": []},
    "steps": [
        {"name": "Freigabe", "assignee": {"group": "einkauf", "mode": "any"}, "action": "approve", "auth": "password",
         "deadlineHours": 48, "remindAfterHours": [24.0]},
        {"name": "Unterschrift", "assignee": {"user": "anna"}, "action": "sign", "auth": "password",
         "fourEyesWith": "Freigabe", "signature": {"format": "pades", "level": "B-B", "keySource": "internal",
                                                  "page": 1, "box": [50.0, 50.0, 200.0, 60.0]}},
        {"name": "Kopie", "assignee": {"external": "{{kunde}}", "name": "Kunde"}, "action": "copy", "auth": "link"}],
    "delivery": [{"folder": "kauf"}, {"archive": True}]}


def test_templates_are_managed_over_soap_as_over_rest(server: SiegelInstance) -> None:
    chef = client(server, ("chef", PASSWORD))
    created = chef.service.CreateTemplate(Name="SOAP-Kauf", Definition=SOAP_CONTRACT)
    assert (created.Name, created.Version, created.CurrentVersion, created.Retired) == ("SOAP-Kauf", 1, 1, False)
    tid = created.Id
    rest = api(server, "GET", f"/templates/{tid}", "chef").json()
    assert rest["definition"] == REST_CONTRACT  # the SOAP form became the JSON one, element by element
    got = chef.service.GetTemplate(TemplateId=tid)
    assert zeep.helpers.serialize_object(got.Definition, dict) == zeep.helpers.serialize_object(
        created.Definition, dict)
    step = got.Definition.Steps.TemplateStep[1]
    assert (step.Signature.Box.Width, step.Signature.KeySource, step.FourEyesWith) == (200.0, "internal", "Freigabe")
    assert got.Definition.Steps.TemplateStep[0].RemindAfterHours.Hours == [24.0]
    assert got.Definition.Delivery.TemplateDelivery[1].Archive is True
    assert got.Definition.Starters.Roles.Role == ["integration"]
    listed = chef.service.ListTemplates()  # zeep unwraps the array of the response's one element
    assert [(t.Id, t.Version) for t in listed if t.Name == "SOAP-Kauf"] == [(tid, 1)]
    assert {t.Name for t in listed} == {t["name"] for t in api(server, "GET", "/templates",
                                                                                "chef").json()["templates"]}

    # an update is a new version; a running workflow keeps the version it started with
    erp = client(server, server.auth)
    one_step = {**SOAP_CONTRACT, "Steps": {"TemplateStep": [
        {**SOAP_CONTRACT["Steps"]["TemplateStep"][1], "FourEyesWith": None}]}}  # anna's alone
    updated = chef.service.UpdateTemplate(TemplateId=tid, Definition=one_step)
    assert (updated.Version, updated.CurrentVersion) == (2, 2) and len(updated.Definition.Steps.TemplateStep) == 1
    assert chef.service.GetTemplate(TemplateId=tid, Version=1).Definition.Steps.TemplateStep[0].Name == "Freigabe"
    wid = erp.service.StartWorkflow(Template=str(tid), Document=make_pdf()).Id
    assert chef.service.UpdateTemplate(TemplateId=tid, Definition=SOAP_CONTRACT).Version == 3
    assert erp.service.GetWorkflowStatus(WorkflowId=wid).TemplateVersion == 2

    # the same validation as REST, as a fault with the same message
    bad = {"Steps": {"TemplateStep": [{"Name": "a", "Assignee": {"User": "anna", "External": "x@example.org"},
                                       "Action": "sign", "Signature": {"Level": "B-Z", "Page": 1},
                                       "FourEyesWith": "nirgends"}]},
           "Delivery": {"TemplateDelivery": [{"Archive": False}]}}
    with pytest.raises(Fault) as invalid:
        chef.service.CreateTemplate(Name="SOAP-Falsch", Definition=bad)
    refused = api(server, "POST", "/templates", "chef", json={"name": "SOAP-Falsch", "definition": {
        "steps": [{"name": "a", "assignee": {"user": "anna", "external": "x@example.org"}, "action": "sign",
                   "signature": {"level": "B-Z", "page": 1}, "fourEyesWith": "nirgends"}],
        "delivery": [{"archive": False}]}})
    assert refused.status_code == 400 and invalid.value.message == refused.json()["detail"], invalid.value.message
    for problem in ("steps[1].assignee: name exactly one", "steps[1].signature.level: 'B-Z'",
                    "a position needs both page", "steps[1].fourEyesWith", "delivery[1].archive: expected true"):
        assert problem in invalid.value.message
    assert invalid.value.code.endswith("Client") and invalid.value.detail.findtext(
        f"{{{DSS}}}Result/{{{DSS}}}ResultMajor") == "urn:oasis:names:tc:dss:1.0:resultmajor:RequesterError"
    with pytest.raises(Fault) as no_steps:
        chef.service.UpdateTemplate(TemplateId=tid, Definition={"Description": "leer"})
    assert "steps: expected a list of 1 to 50 steps" in no_steps.value.message
    with pytest.raises(Fault) as twice:
        chef.service.CreateTemplate(Name="SOAP-Kauf", Definition=SOAP_CONTRACT)
    assert "named 'SOAP-Kauf' exists already" in twice.value.message
    with pytest.raises(Fault) as missing:
        chef.service.GetTemplate(TemplateId=999999)
    assert "no workflow template 999999" in missing.value.message
    assert chef.service.GetTemplate(TemplateId=tid).CurrentVersion == 3  # nothing of the refusals stayed

    # the route table: an auditor reads templates but may not change them
    revisor = client(server, ("revisor", PASSWORD))
    assert revisor.service.GetTemplate(TemplateId=tid).Name == "SOAP-Kauf"
    for refused_call in (lambda: revisor.service.CreateTemplate(Name="SOAP-Revisor", Definition=SOAP_CONTRACT),
                         lambda: revisor.service.RetireTemplate(TemplateId=tid)):
        with pytest.raises(Fault) as forbidden:
            refused_call()
        assert result_minor(forbidden.value) == MINOR + "AuthenticationError", forbidden.value.message

    retired = chef.service.RetireTemplate(TemplateId=tid)
    assert retired.Retired is True and retired.CurrentVersion == 3
    assert tid not in [t.Id for t in chef.service.ListTemplates() or []]  # zeep: None for an empty list
    with pytest.raises(Fault) as gone:
        erp.service.StartWorkflow(Template="SOAP-Kauf", Document=make_pdf())
    assert "retired" in gone.value.message, gone.value.message
    with pytest.raises(Fault) as frozen:
        chef.service.UpdateTemplate(TemplateId=tid, Definition=one_step)
    assert "is retired" in frozen.value.message


def test_a_java_client_generated_by_wsimport_manages_templates_and_starts_a_workflow(
        server: SiegelInstance, tmp_path: Path) -> None:
    """wsimport (JAX-WS) generates the client from the live WSDL; javac compiles it with
    ``tests/e2e/java/WorkflowAdminClient.java``, which creates a template, lists, starts and follows a workflow
    as the template manager."""
    if not (shutil.which("wsimport") and shutil.which("javac") and shutil.which("java")):
        pytest.skip("wsimport/javac/java are not installed (Debian packages jaxws and default-jdk-headless; "
                    "see APT_TEST in the Makefile)")
    src, classes = tmp_path / "src", tmp_path / "classes"
    src.mkdir()
    classes.mkdir()
    run(["wsimport", "-quiet", "-keep", "-Xnocompile", "-s", str(src), "-d", str(classes),
         server.url + "/soap/admin?wsdl"], tmp_path)
    shutil.copy(JAVA_CLIENT, src)
    run(["javac", "-nowarn", "-cp", JAXWS_RUNTIME, "-d", str(classes), *sorted(map(str, src.rglob("*.java")))],
        tmp_path)
    (tmp_path / "java.pdf").write_bytes(make_pdf())
    output = run(["java", "-cp", f"{classes}:{JAXWS_RUNTIME}", "WorkflowAdminClient", server.url + "/soap/admin?wsdl",
                  "chef", PASSWORD, "Java-Vertrag", str(tmp_path / "java.pdf"), "anna"], tmp_path)
    lines = [line.split("=", 1) for line in output.splitlines() if "=" in line]
    tid = api(server, "GET", "/templates", "erp").json()["templates"]
    (mine,) = [t for t in tid if t["name"] == "Java-Vertrag"]
    assert lines[0] == ["Created", f"{mine['id']}:Java-Vertrag:1"], output
    assert ["Listed", f"{mine['id']}:Java-Vertrag:1"] in lines
    assert {value for key, value in lines if key == "Listed"} == {f"{t['id']}:{t['name']}:{t['version']}" for t in tid}
    (workflow,) = [value for key, value in lines if key == "Workflow"]
    wid, state, name, starter = workflow.split(":")
    assert (state, name, starter) == ("running", "Java-Vertrag", "chef"), output
    assert [value for key, value in lines if key == "Step"] == ["Unterschrift:active:anna"]
    definition = api(server, "GET", f"/templates/{mine['id']}", "erp").json()["definition"]
    assert definition["steps"][0]["signature"] == {"format": "pades", "level": "B-B", "keySource": "internal",
                                                   "page": 1, "box": [50.0, 50.0, 200.0, 60.0]}
    assert api(server, "GET", f"/{wid}", "chef").json()["template"]["name"] == "Java-Vertrag"
    (fault,) = [value for key, value in lines if key == "Fault"]
    assert fault.startswith("the workflow template is not valid: steps: expected a list of 1 to 50 steps"), output
