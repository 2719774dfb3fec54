"""A workflow step signed with a remote qualified key, end to end: Siegel A has Siegel B's ``/csc/v2`` as the
remote signing account ``b`` (the pair of tests/e2e/test_remote_signing.py); the template's first step signs with
keySource remote at ``b``. Its signer starts the signature through the step's REST endpoint with the credential
and PIN (202: waiting for the OTP that B mails), finishes it with PIN and OTP, and the next step signs with the
internal key; A verified the qualified signature right after it was made, and the final PDF holds both. In the
portal (headless Chromium): a user's inbox step and an external signer's link page choose the credential B lists,
start with the PIN, are asked for the mailed one-time code, refuse a wrong code and a wrong PIN in words, and
finish."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.test_portal import check_page, login
from tests.e2e.test_remote_signing import ADA, _otp, _overview, pair  # noqa: F401 (pair: a fixture)
from tests.e2e.test_workflows import link_token
from tests.fixtures.browser import Shots, new_page
from tests.fixtures.pdf import make_pdf
from tests.fixtures.server import SiegelInstance
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


def step(a: SiegelInstance, who: str, wid: int, position: int, body: dict[str, object]) -> requests.Response:
    return requests.post(f"{a.url}/api/v1/workflows/{wid}/steps/{position}", json={"action": "sign", **body},
                         auth=(who, PASSWORD), timeout=120)


def test_a_step_signs_with_a_remote_qualified_key_and_the_otp(
        pair: tuple[SiegelInstance, SiegelInstance], smtp_server: SmtpServer, tmp_path: Path) -> None:
    a, _ = pair
    a.add_user("chef", PASSWORD, "template_manager", signing_key=False)
    a.add_user("quinn", PASSWORD, "signer", signing_key=False)  # signs with ada's key at B
    a.add_user("anna", PASSWORD, "signer")
    (credential,) = _overview(a)["credentials"]
    box = {"level": "B-T", "page": 1}
    created = requests.post(f"{a.url}/api/v1/workflows/templates", auth=("chef", PASSWORD), timeout=60, json={
        "name": "Qualifiziert", "definition": {"steps": [
            {"name": "qualifiziert", "assignee": {"user": "quinn"}, "action": "sign",
             "signature": {**box, "box": [50, 50, 200, 60], "keySource": "remote", "remoteService": "b"}},
            {"name": "intern", "assignee": {"user": "anna"}, "action": "sign",
             "signature": {**box, "box": [300, 50, 200, 60]}}]}})
    assert created.status_code == 201, created.text
    pdf = make_pdf()
    started = requests.post(f"{a.url}/api/v1/workflows", auth=a.auth, timeout=60, json={
        "template": "Qualifiziert", "document": base64.b64encode(pdf).decode()})
    assert started.status_code == 201, started.text
    wid = started.json()["id"]

    before = len(smtp_server.messages)
    waiting = step(a, "quinn", wid, 1, {"remote": {"credential": credential["id"], "pin": ADA[1]}})
    assert waiting.status_code == 202, waiting.text
    assert waiting.json()["remoteSignature"]["state"] == "awaiting-otp" and waiting.json()["revision"] == 0
    otp = _otp(smtp_server, before)
    assert step(a, "anna", wid, 2, {}).status_code == 409  # not her turn while quinn's signature waits
    bad = step(a, "quinn", wid, 1, {"remote": {"pin": ADA[1], "otp": "x", "operation": "?"}})
    assert bad.status_code == 400 and "remote: expected" in bad.json()["detail"], bad.text
    done = step(a, "quinn", wid, 1, {"remote": {"pin": ADA[1], "otp": otp}})
    assert done.status_code == 200, done.text
    assert done.json()["revision"] == 1 and [s["state"] for s in done.json()["steps"]] == ["done", "active"]
    (assignee,) = done.json()["steps"][0]["assignees"]
    assert assignee["user"] == "quinn" and assignee["state"] == "done"
    assert step(a, "quinn", wid, 1, {"remote": {"pin": ADA[1], "otp": otp}}).status_code == 409  # done already
    assert step(a, "anna", wid, 2, {}).status_code == 200

    signed = requests.get(f"{a.url}/api/v1/workflows/{wid}/document", auth=a.auth, timeout=60).content
    assert signed.startswith(pdf)
    report = requests.post(f"{a.url}/api/v1/verify", data=signed, auth=a.auth, timeout=120)
    assert report.status_code == 200, report.text
    signatures = report.json()["signatures"]
    assert [s["indication"] for s in signatures] == ["TOTAL-PASSED", "TOTAL-PASSED"], signatures
    assert "CN=ada" in signatures[0]["chain"][0] and "CN=anna" in signatures[1]["chain"][0]  # ada's key at B
    events = requests.get(f"{a.url}/api/v1/workflows/{wid}/history", auth=a.auth, timeout=60).json()["events"]
    (entry,) = [e for e in events if e["action"] == "workflow.sign" and e["details"]["step"] == "qualifiziert"]
    assert entry["actor"] == "quinn" and entry["details"]["verification"]["passed"] is True


def _mailed_otp(smtp: SmtpServer, since: int) -> str:
    """The one-time code B mailed ada (A's workflow mails arrive at the same server)."""
    text = smtp.mail_to("ada@example.com", "", since=since).text
    return re.search(r"\b(\d{6})\b", text).group(1)  # type: ignore[union-attr]


def _sign_remotely(page: Any, smtp: SmtpServer, credential: str, shots: Shots, name: str, *,
                   wrong: str) -> None:
    """On a remote step's form: B's credential chosen, the PIN started it; the page asks for the mailed code; a
    ``wrong`` "otp" or "pin" is refused in words, then the right ones finish the signature."""
    select = page.get_by_label("Your credential at b (qualified signature)")
    assert select.evaluate("e => [...e.options].map(o => o.value)") == [credential]  # the ones B lists
    select.select_option(credential)
    page.get_by_label("PIN of the credential").fill(ADA[1])
    before = len(smtp.messages)
    page.get_by_role("button", name="Sign", exact=True).click()
    assert page.locator("p.message").inner_text() == (
        f"The signing service sent you a one-time code for {credential}: enter it and your PIN.")
    assert f"with {credential} at b waits for the one-time code" in page.locator(".remote-waiting").inner_text()
    otp = _mailed_otp(smtp, before)
    shots.take(page, f"{name}-otp-asked")
    other = "000000" if otp != "000000" else "111111"
    page.get_by_label("One-time code (OTP)").fill(other if wrong == "otp" else otp)
    page.get_by_label("PIN of the credential").fill(ADA[1] if wrong == "otp" else "falsche-pin")
    page.get_by_role("button", name="Sign", exact=True).click()
    assert page.locator("p.message").inner_text() == {
        "otp": "The one-time code is wrong or expired: nothing was signed. Enter the code and your PIN again.",
        "pin": "The PIN is wrong: nothing was signed. Enter it again."}[wrong]
    shots.take(page, f"{name}-wrong-{wrong}")
    page.get_by_label("One-time code (OTP)").fill(otp)  # the PIN was wrong: the code is still unspent
    page.get_by_label("PIN of the credential").fill(ADA[1])
    page.get_by_role("button", name="Sign", exact=True).click()


def test_the_portal_inbox_and_the_link_page_sign_with_a_remote_key_and_the_mailed_otp(
        pair: tuple[SiegelInstance, SiegelInstance], smtp_server: SmtpServer, browser: Any, shots: Shots,
        console_errors: list[str]) -> None:
    a, _ = pair
    a.stop()  # A mails too: the external signer's invitation carries the link
    a.env.update({"SIEGEL_MAIL_HOST": smtp_server.host, "SIEGEL_MAIL_PORT": str(smtp_server.port),
                  "SIEGEL_MAIL_SENDER": "siegel-a@example.com"})
    a.start()
    a.add_user("chef", PASSWORD, "template_manager", signing_key=False)
    a.add_user("quinn", PASSWORD, "signer", signing_key=False)
    credential = _overview(a)["credentials"][0]["id"]
    remote = {"level": "B-T", "page": 1, "keySource": "remote", "remoteService": "b"}
    created = requests.post(f"{a.url}/api/v1/workflows/templates", auth=("chef", PASSWORD), timeout=60, json={
        "name": "Qualifiziert im Portal", "definition": {"steps": [
            {"name": "qualifiziert", "assignee": {"user": "quinn"}, "action": "sign",
             "signature": {**remote, "box": [50, 50, 200, 60]}},
            {"name": "Partner", "assignee": {"external": "{{partner}}"}, "action": "sign", "auth": "link",
             "signature": {**remote, "box": [300, 50, 200, 60]}}]}})
    assert created.status_code == 201, created.text
    pdf = make_pdf()
    started = requests.post(f"{a.url}/api/v1/workflows", auth=a.auth, timeout=60, json={
        "template": "Qualifiziert im Portal", "document": base64.b64encode(pdf).decode(),
        "documentName": "vertrag.pdf", "variables": {"partner": "partner@example.com"}})
    assert started.status_code == 201, started.text
    wid = started.json()["id"]

    page = new_page(browser, console_errors)
    login(page, a.url, ("quinn", PASSWORD))
    page.goto(f"{a.url}/portal/inbox/{wid}/1")
    check_page(page, console_errors)
    _sign_remotely(page, smtp_server, credential, shots, "inbox", wrong="otp")
    assert page.locator("p.message").inner_text() == f"Sign: step 1 of workflow {wid} done."
    page.context.close()

    token = link_token(smtp_server.mail_to("partner@example.com", "please sign"))
    outside = new_page(browser, console_errors)
    outside.goto(f"{a.url}/portal/link?token={token}")
    check_page(outside, console_errors)
    _sign_remotely(outside, smtp_server, credential, shots, "link", wrong="pin")
    assert outside.locator("#done").inner_text().startswith("Thank you: you signed vertrag.pdf.")
    shots.take(outside, "link-done")
    outside.context.close()

    status = requests.get(f"{a.url}/api/v1/workflows/{wid}", auth=a.auth, timeout=60).json()
    assert status["state"] == "completed" and status["revision"] == 2, status
    signed = requests.get(f"{a.url}/api/v1/workflows/{wid}/document", auth=a.auth, timeout=60).content
    report = requests.post(f"{a.url}/api/v1/verify", data=signed, auth=a.auth, timeout=120)
    assert report.status_code == 200, report.text
    signatures = report.json()["signatures"]
    assert [s["indication"] for s in signatures] == ["TOTAL-PASSED"] * 2, signatures
    assert all("CN=ada" in s["chain"][0] for s in signatures)  # both with ada's qualified key at B
    refused = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    assert console_errors == [refused] * 2  # Chromium's line for each refused form (wrong code, wrong PIN); no other
