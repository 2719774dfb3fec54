"""A workflow step signed with a remote qualified key, end to end: Siegel A has Siegel B's ``/csc/v2`` as the
remote signing account ``b`` (the pair of tests/e2e/test_remote_signing.py); the template's first step signs with
keySource remote at ``b``. Its signer starts the signature through the step's REST endpoint with the credential
and PIN (202: waiting for the OTP that B mails), finishes it with PIN and OTP, and the next step signs with the
internal key; A verified the qualified signature right after it was made, and the final PDF holds both."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import requests

from tests.e2e.test_remote_signing import ADA, _otp, _overview, pair  # noqa: F401 (pair: a fixture)
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
