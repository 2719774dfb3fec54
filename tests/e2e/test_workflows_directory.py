"""A directory account disabled in a real slapd: ``siegel ldap sync`` on a running server flags the pending
workflow assignments of that account (once), the status shows the flag over REST and SOAP and the admin portal's
workflow pages in headless Chromium, the audit log has an entry for it and stays intact; enabled in the directory
again, the next sync clears the flag."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from server.workflows.flags import DISABLED_FLAG
from tests.e2e.test_portal import check_page, login
from tests.e2e.test_workflows import PASSWORD, api, start, template
from tests.e2e.test_workflows_soap import client
from tests.fixtures.browser import Shots, new_page
from tests.fixtures.pdf import make_pdf
from tests.fixtures.server import SiegelInstance, make_instance
from tests.fixtures.slapd import Org, SlapdServer, org_ldif
from tests.fixtures.smtp import running_smtp

pytestmark = pytest.mark.e2e

ADMIN = ("ada", "ada-admin-password")


@pytest.fixture(scope="module")
def org(slapd_server: SlapdServer) -> Org:
    ldif, made = org_ldif(f"w{uuid.uuid4().hex[:8]}", users=4, team_size=2, teams_per_department=2)
    slapd_server.add_ldif(ldif)
    return made


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, slapd_server: SlapdServer, org: Org) -> Iterator[SiegelInstance]:
    base = tmp_path_factory.mktemp("workflows-directory")
    name = org.dn.split(",")[0].split("=")[1]
    with running_smtp() as smtp:
        inst = make_instance(base, {
            "SIEGEL_MAIL_HOST": smtp.host, "SIEGEL_MAIL_PORT": str(smtp.port),
            **slapd_server.siegel_settings(org, base, f"{name}-signers=signer"),
            "SIEGEL_TWOFACTOR_REQUIRED_ROLES": ""})  # the admin logs in to the portal with the password alone
        inst.add_user(*ADMIN, "admin", signing_key=False)
        inst.cli("user", "add", "chef", "--email", "chef@example.com", "--role", "template_manager",
                 "--password-stdin", stdin=PASSWORD + "\n")
        synced = inst.cli("ldap", "sync")
        assert "workflow steps flagged: 0" in synced.stdout, synced.stdout
        inst.start()
        try:
            yield inst
        finally:
            inst.stop()


def test_a_disabled_directory_account_flags_its_pending_steps(server: SiegelInstance, slapd_server: SlapdServer,
                                                              org: Org, tmp_path: Path) -> None:
    first, leaving, other = org.users[0], org.users[1], org.users[2]
    assert not {first, leaving, other} & org.disabled
    tid = template(server, "Verzeichnis", [
        {"name": "Prüfung", "assignee": {"user": first}, "action": "approve"},
        {"name": "Freigabe", "assignee": {"user": leaving}, "action": "approve"}])
    wid = start(server, tid, make_pdf())
    untouched = start(server, template(server, "Andere", [
        {"name": "a", "assignee": {"user": other}, "action": "approve"}]), make_pdf())

    slapd_server.set_disabled(org, leaving, True)
    synced = server.cli("ldap", "sync")
    assert f"disable {leaving} (disabled in the directory)" in synced.stdout, synced.stdout
    assert "workflow steps flagged: 1" in synced.stdout, synced.stdout

    status = api(server, "GET", f"/{wid}", "erp").json()
    (pending_first,), (pending_leaving,) = (s["assignees"] for s in status["steps"])
    assert pending_first["flag"] is None and pending_first["state"] == "pending"
    assert (pending_leaving["user"], pending_leaving["state"], pending_leaving["flag"]) == (
        leaving, "pending", DISABLED_FLAG)
    assert pending_leaving["flagged"] is not None
    assert api(server, "GET", f"/{untouched}", "erp").json()["steps"][0]["assignees"][0]["flag"] is None
    soap = client(server, server.auth).service.GetWorkflowStatus(WorkflowId=wid)
    assert [a.Flag for s in soap.Steps.WorkflowStep for a in s.Assignees.Assignee] == [None, DISABLED_FLAG]
    events = api(server, "GET", f"/{wid}/history", "erp").json()["events"]
    flags = [(e["actor"], e["target"], e["details"]["user"]) for e in events if e["action"] == "workflow.flag"]
    assert flags == [("ldap-sync", f"workflow:{wid}/2", leaving)], events

    again = server.cli("ldap", "sync", "--full")
    assert "workflow steps flagged: 0" in again.stdout, again.stdout  # flagged once
    assert "intact" in server.cli("audit", "verify").stdout


def flagged_rows(page: Any, url: str) -> dict[int, str | None]:
    """The admin's workflow list filtered to flagged workflows: id → its number of flagged steps."""
    page.goto(url + "/portal/admin/workflows")
    page.get_by_label("Only workflows with flagged steps").check()
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state()
    return {int(r.get_attribute("data-workflow")): r.get_attribute("data-flagged")
            for r in page.locator("#workflows tr[data-workflow]").all()}


def test_the_admin_portal_shows_the_flag_until_the_directory_enables_the_account_again(
        server: SiegelInstance, slapd_server: SlapdServer, org: Org, browser: Any, shots: Shots,
        console_errors: list[str]) -> None:
    returning = org.users[3]
    assert returning not in org.disabled
    wid = start(server, template(server, "Rückkehr", [
        {"name": "Unterschrift", "assignee": {"user": returning}, "action": "approve"}]), make_pdf())
    page = new_page(browser, console_errors)
    login(page, server.url, ADMIN)
    page.get_by_role("link", name="Administration").first.click()
    page.get_by_role("link", name="Workflows", exact=True).click()
    row = page.locator(f"#workflows tr[data-workflow='{wid}']")
    assert row.get_attribute("data-flagged") is None and row.locator("td.flags").inner_text() == "0"
    assert wid not in flagged_rows(page, server.url)

    slapd_server.set_disabled(org, returning, True)
    assert "workflow steps flagged: 1" in server.cli("ldap", "sync").stdout
    flagged = flagged_rows(page, server.url)
    assert flagged[wid] == "1" and all(flagged.values()), flagged
    page.locator(f"#workflows tr[data-workflow='{wid}'] a").click()
    step = page.locator("#workflow-steps tr[data-step='1']")
    assert step.get_attribute("data-flagged") == "1"
    note = step.locator(f"li[data-assignee='{returning}'] .flag")
    assert note.get_attribute("data-flag") == DISABLED_FLAG
    assert note.inner_text().startswith("The directory sync disabled this account"), note.inner_text()
    check_page(page, console_errors)
    shots.take(page, "workflow-flagged")

    slapd_server.set_disabled(org, returning, False)
    synced = server.cli("ldap", "sync").stdout
    assert f"enable {returning} (enabled in the directory again)" in synced and \
        "workflow step flags cleared: 1" in synced, synced
    assert api(server, "GET", f"/{wid}", "erp").json()["steps"][0]["assignees"][0]["flag"] is None
    page.reload()
    assert step.get_attribute("data-flagged") is None and step.locator(".flag").count() == 0
    assert wid not in flagged_rows(page, server.url)
    events = api(server, "GET", f"/{wid}/history", "erp").json()["events"]
    flags = [(e["action"], e["target"]) for e in events if e["action"] in ("workflow.flag", "workflow.unflag")]
    assert flags == [("workflow.flag", f"workflow:{wid}/1"), ("workflow.unflag", f"workflow:{wid}/1")], events
    assert not console_errors, console_errors
    page.context.close()
