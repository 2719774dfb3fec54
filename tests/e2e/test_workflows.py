"""Acceptance of signature workflows over a whole ``siegel serve`` and a real SMTP server started by the test:
three internal users and one external signer get their mails with working links, a link works once, the
order is enforced (409), the four-eyes approver rejects (second workflow), the final PDF holds four valid
signatures in their fields (pdfsig), the delivery file appears and the callback arrives with a valid HMAC,
``siegel audit verify`` passes; an SMTP outage during the workflow delays
mails, which go out exactly once when it is back; 20 parallel attempts to sign one step make one signature."""

from __future__ import annotations

import base64
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from adapters.delivery.callback import verify_signature
from tests.fixtures.http_sink import HttpSink
from tests.fixtures.pdf import EmptyField, make_pdf, nss_trusting_server, pdfsig
from tests.fixtures.server import SiegelInstance, make_instance
from tests.fixtures.smtp import ReceivedMail, SmtpServer, running_smtp

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"
PEOPLE = ("anna", "bert", "carla")
PARTNER = "partner@example.org"


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with running_smtp() as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Iterator[SiegelInstance]:
    inst = make_instance(tmp_path_factory.mktemp("workflows"), {
        "SIEGEL_MAIL_HOST": smtp.host, "SIEGEL_MAIL_PORT": str(smtp.port), "SIEGEL_MAIL_SENDER": "siegel@example.com",
        "SIEGEL_JOBS_POLL_SECONDS": "0.3", "SIEGEL_WORKFLOWS_MAIL_INTERVAL_SECONDS": "0.3"})
    inst.add_user("chef", PASSWORD, "template_manager", signing_key=False)
    for name in PEOPLE:
        inst.add_user(name, PASSWORD, "signer")
    yield from inst.serving()


@pytest.fixture(scope="module")
def nss(server: SiegelInstance, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An NSS database trusting the server's root CA, for pdfsig."""
    return nss_trusting_server(tmp_path_factory.mktemp("nss"), server.url)


def api(server: SiegelInstance, method: str, path: str, who: str | None = None, **kwargs: Any) -> requests.Response:
    auth = None if who is None else server.auth if who == "erp" else (who, PASSWORD)
    return requests.request(method, server.url + "/api/v1/workflows" + path, auth=auth, timeout=120, **kwargs)


def template(server: SiegelInstance, name: str, steps: list[dict[str, Any]],
             delivery: list[dict[str, str]] | None = None) -> int:
    r = api(server, "POST", "/templates", "chef", json={"name": name, "definition": {
        "starters": {"roles": ["integration", "template_manager"]}, "steps": steps, "delivery": delivery or []}})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def start(server: SiegelInstance, template_id: int, pdf: bytes, variables: dict[str, str] | None = None) -> int:
    r = api(server, "POST", "", "erp", json={"template": template_id, "document": base64.b64encode(pdf).decode(),
                                             "documentName": "vertrag.pdf", "variables": variables or {}})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def link_token(mail: ReceivedMail) -> str:
    text = mail.text
    match = re.search(r"(http://\S+/portal/link)\?token=([A-Za-z0-9_-]{43})", text)
    assert match, text
    return match.group(2)


def act(server: SiegelInstance, who: str, workflow: int, step: int, action: str = "sign",
        reason: str | None = None) -> requests.Response:
    return api(server, "POST", f"/{workflow}/steps/{step}", who, json={"action": action, "reason": reason})


@pytest.fixture(scope="module")
def sink() -> Iterator[HttpSink]:
    receiver = HttpSink()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def test_three_users_and_an_external_signer_complete_a_contract_with_four_signatures(
        server: SiegelInstance, smtp: SmtpServer, sink: HttpSink, nss: Path, tmp_path: Path) -> None:
    sign = {"level": "B-T"}
    fields = [EmptyField(f"Sig{i}", 0, (40 + 130 * (i - 1), 100, 160 + 130 * (i - 1), 150)) for i in range(1, 5)]
    tid = template(server, "Rahmenvertrag", [
        {"name": "Vertrieb", "assignee": {"user": "anna"}, "action": "sign", "signature": {**sign, "field": "Sig1"}},
        {"name": "Recht", "assignee": {"user": "bert"}, "action": "sign", "signature": {**sign, "field": "Sig2"}},
        {"name": "Leitung", "assignee": {"user": "carla"}, "action": "sign", "auth": "link",
         "signature": {**sign, "field": "Sig3"}},
        {"name": "Partner", "assignee": {"external": "{{partner}}"}, "action": "sign",
         "signature": {**sign, "field": "Sig4"}}], delivery=[{"folder": "vertraege"}, {"callback": sink.url}])
    wid = start(server, tid, make_pdf(fields=fields), {"partner": PARTNER})
    invite = smtp.mail_to("anna@example.com", "please sign")
    assert f"/api/v1/workflows/{wid}/steps/1" in invite.text
    inbox = api(server, "GET", "/inbox", "anna").json()["steps"]
    assert [(s["workflow"], s["step"], s["sender"]) for s in inbox] == [(wid, 1, "erp")]

    assert act(server, "bert", wid, 2).status_code == 409  # not bert's turn yet
    assert act(server, "bert", wid, 1).status_code == 403  # anna's step
    assert api(server, "GET", f"/{wid}", "carla").status_code == 200  # an assignee sees the workflow

    smtp.stop()  # the relay is down while anna signs: bert's invitation waits in the queue
    try:
        r = act(server, "anna", wid, 1)
        assert r.status_code == 200, r.text
        time.sleep(1.5)
    finally:
        smtp.start()
    smtp.mail_to("bert@example.com", "please sign", timeout=30)
    assert act(server, "bert", wid, 2).status_code == 200

    token = link_token(smtp.mail_to("carla@example.com", "please sign"))
    view = api(server, "GET", "/link", params={"token": token})
    assert view.status_code == 200 and view.json()["step"] == 3, view.text
    document = api(server, "GET", "/link/document", params={"token": token})
    assert document.status_code == 200 and document.content.startswith(b"%PDF-")
    forged = token[:-1] + ("B" if token.endswith("A") else "A")  # another token of the same form
    assert api(server, "POST", "/link", json={"token": forged, "action": "sign"}).status_code == 403
    assert api(server, "POST", "/link", json={"token": token, "action": "sign"}).status_code == 200
    again = api(server, "POST", "/link", json={"token": token, "action": "sign"})
    assert again.status_code == 403, again.text  # a link works once

    partner_token = link_token(smtp.mail_to(PARTNER, "please sign"))
    assert act(server, "anna", wid, 4).status_code == 403  # the external step is not anna's
    done = api(server, "POST", "/link", json={"token": partner_token, "action": "sign"})
    assert done.status_code == 200 and done.json()["state"] == "completed", done.text
    steps = done.json()["steps"]
    assert [s["assignees"][0]["auth"] for s in steps] == ["password", "password", "link", "link"]
    assert all(s["assignees"][0]["verification"]["passed"] for s in steps)

    pdf = api(server, "GET", f"/{wid}/document", "erp")
    assert pdf.status_code == 200
    report = pdfsig(nss, pdf.content, tmp_path / "final.pdf")
    assert report.count("Signature is Valid.") == 4, report
    assert report.count("Certificate is Trusted.") == 4, report
    assert sorted(re.findall(r"Signature Field Name: (\S+)", report)) == ["Sig1", "Sig2", "Sig3", "Sig4"], report

    for address in ("erp@example.com", "anna@example.com", "bert@example.com", "carla@example.com", PARTNER):
        smtp.mail_to(address, "completed")
    time.sleep(1.0)  # a duplicate would be out by now
    sent = Counter((m.rcpt_tos, m.message["Subject"]) for m in smtp.messages)
    assert all(n == 1 for n in sent.values()), sent  # every mail exactly once, the delayed one too
    assert len({m.message["Message-ID"] for m in smtp.messages}) == len(smtp.messages)
    delivered = server.data_dir / "delivery" / "vertraege" / f"{wid}-vertrag.pdf"
    (callback,) = sink.wait_for(1, timeout=20)
    assert delivered.read_bytes() == pdf.content
    key = (server.data_dir / "secrets" / "workflow-callback.key").read_bytes()
    assert verify_signature(key, callback.body, callback.headers["x-siegel-signature"]), callback.headers
    assert base64.b64decode(callback.json()["document"]) == pdf.content
    events = api(server, "GET", f"/{wid}/history", "erp").json()["events"]
    signs = [e["details"] for e in events if e["action"] == "workflow.sign"]
    assert [(e["auth"], e["verification"]["passed"]) for e in signs] == [("password", True)] * 2 + [("link", True)] * 2
    certificate = api(server, "GET", f"/{wid}/certificate", "erp")
    assert certificate.status_code == 200, certificate.text
    checked = pdfsig(nss, certificate.content, tmp_path / "completion.pdf")
    assert checked.count("Signature is Valid.") == 1 and "system.workflows" in checked, checked
    verified = server.cli("audit", "verify")
    assert "intact" in verified.stdout, verified.stdout


def test_the_four_eyes_approver_rejects_and_the_signer_cannot_approve_their_own(
        server: SiegelInstance, smtp: SmtpServer) -> None:
    box = {"level": "B-B", "page": 1, "box": [50, 50, 200, 60]}
    tid = template(server, "Bestellung", [
        {"name": "Antrag", "assignee": {"user": "anna"}, "action": "sign", "signature": box},
        {"name": "Freigabe", "assignee": {"user": "bert"}, "action": "approve", "fourEyesWith": "Antrag"}])
    wid = start(server, tid, make_pdf())
    assert act(server, "anna", wid, 1).status_code == 200
    assert act(server, "bert", wid, 2, "reject").status_code == 400  # a rejection needs a reason
    rejected = act(server, "bert", wid, 2, "reject", "Budget fehlt")
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    assert rejected.json()["reason"] == "Budget fehlt"
    assert "Budget fehlt" in smtp.mail_to("erp@example.com", "rejected").text

    same = template(server, "Selbstfreigabe", [
        {"name": "Antrag", "assignee": {"user": "anna"}, "action": "sign", "signature": box},
        {"name": "Freigabe", "assignee": {"user": "anna"}, "action": "approve", "fourEyesWith": "Antrag"}])
    wid = start(server, same, make_pdf())
    assert act(server, "anna", wid, 1).status_code == 200
    refused = act(server, "anna", wid, 2, "approve")
    assert refused.status_code == 403 and "separation of duties" in refused.json()["detail"], refused.text
    cancelled = api(server, "POST", f"/{wid}/cancel", "erp", json={"reason": "falsch aufgesetzt"})
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert act(server, "anna", wid, 2, "approve").status_code == 409


def test_twenty_parallel_attempts_to_sign_one_step_make_one_signature(server: SiegelInstance, nss: Path,
                                                                      tmp_path: Path) -> None:
    tid = template(server, "Parallel", [
        {"name": "a", "assignee": {"user": "carla"}, "action": "sign",
         "signature": {"level": "B-B", "page": 1, "box": [50, 50, 200, 60]}},
        {"name": "b", "assignee": {"user": "anna"}, "action": "approve"}])
    wid = start(server, tid, make_pdf())
    assert api(server, "GET", "/inbox", "carla").status_code == 200  # the password is verified and cached once
    with ThreadPoolExecutor(20) as pool:
        codes = sorted(pool.map(lambda _: act(server, "carla", wid, 1).status_code, range(20)))
    assert codes == [200] + [409] * 19, codes
    report = pdfsig(nss, api(server, "GET", f"/{wid}/document", "erp").content, tmp_path / "one.pdf")
    assert report.count("Signature is Valid.") == 1, report
    assert api(server, "GET", f"/{wid}", "erp").json()["revision"] == 1


def test_templates_over_rest_are_validated_versioned_and_guarded(server: SiegelInstance) -> None:
    bad = api(server, "POST", "/templates", "chef", json={"name": "x", "definition": {"steps": [
        {"name": "a", "assignee": {"user": "anna"}, "action": "stamp"}]}})
    assert bad.status_code == 400 and "steps[1].action" in bad.json()["detail"]
    assert api(server, "POST", "/templates", "anna", json={"name": "y", "definition": {}}).status_code == 403
    tid = template(server, "Versioniert", [{"name": "a", "assignee": {"user": "anna"}, "action": "approve"}])
    wid = start(server, tid, make_pdf())
    put = api(server, "PUT", f"/templates/{tid}", "chef", json={"definition": {"steps": [
        {"name": "b", "assignee": {"user": "bert"}, "action": "approve"}]}})
    assert put.status_code == 200 and put.json()["version"] == 2
    assert api(server, "GET", f"/{wid}", "erp").json()["template"]["version"] == 1
    assert api(server, "GET", f"/templates/{tid}", "anna", params={"version": 1}).json()["definition"]["steps"][0][
        "name"] == "a"
    assert api(server, "GET", f"/{wid}", "bert").status_code == 404  # neither starter nor assignee
    assert api(server, "GET", "/nonsense", "erp").status_code == 400
    assert api(server, "GET", "/link", params={"token": "x" * 43}).status_code == 403


def test_the_cli_imports_templates_as_new_versions_and_shows_a_workflow(server: SiegelInstance, tmp_path: Path) -> None:
    definition = tmp_path / "t.json"
    definition.write_text('{"steps": [{"name": "a", "assignee": {"user": "anna"}, "action": "approve"}]}')
    first = server.cli("workflow", "template-import", "Kommandozeile", str(definition), "--user", "chef")
    assert "version 1" in first.stdout
    assert "version 2" in server.cli("workflow", "template-import", "Kommandozeile", str(definition),
                                     "--user", "chef").stdout
    listed = server.cli("workflow", "templates").stdout
    assert re.search(r"^\d+\tKommandozeile\tversion 2$", listed, re.M), listed
    refused = server.cli("workflow", "template-import", "x", str(definition), "--user", "anna", check=False)
    assert refused.returncode != 0 and "template_manage" in refused.stderr
    definition.write_text('{"steps": []}')
    bad = server.cli("workflow", "template-import", "y", str(definition), "--user", "chef", check=False)
    assert bad.returncode != 0 and "steps: expected a list" in bad.stderr
    tid = int(re.search(r"^(\d+)\tKommandozeile", listed, re.M).group(1))  # type: ignore[union-attr]
    wid = start(server, tid, make_pdf())
    status = server.cli("workflow", "status", str(wid)).stdout
    assert '"state": "running"' in status and '"version": 2' in status
