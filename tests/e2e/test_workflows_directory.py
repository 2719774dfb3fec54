"""A directory account disabled in a real slapd: ``siegel ldap sync`` on a running server flags the pending
workflow assignments of that account (once), the status shows the flag over REST and SOAP, the audit log has an
entry for it and stays intact."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest

from server.workflows.flags import DISABLED_FLAG
from tests.e2e.test_workflows import PASSWORD, api, start, template
from tests.e2e.test_workflows_soap import client
from tests.fixtures.pdf import make_pdf
from tests.fixtures.server import SiegelInstance, make_instance
from tests.fixtures.slapd import Org, SlapdServer, org_ldif
from tests.fixtures.smtp import running_smtp

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def org(slapd_server: SlapdServer) -> Org:
    ldif, made = org_ldif(f"w{uuid.uuid4().hex[:8]}", users=4, team_size=2, teams_per_department=2)
    slapd_server.add_ldif(ldif)
    return made


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, slapd_server: SlapdServer, org: Org) -> Iterator[SiegelInstance]:
    base = tmp_path_factory.mktemp("workflows-directory")
    secret = base / "bind.password"
    secret.write_text(slapd_server.password + "\n")
    name = org.dn.split(",")[0].split("=")[1]
    with running_smtp() as smtp:
        inst = make_instance(base, {
            "SIEGEL_MAIL_HOST": smtp.host, "SIEGEL_MAIL_PORT": str(smtp.port),
            "SIEGEL_DIRECTORY_ENABLED": "true", "SIEGEL_DIRECTORY_SERVERS": slapd_server.url,
            "SIEGEL_DIRECTORY_START_TLS": "false", "SIEGEL_DIRECTORY_BIND_DN": slapd_server.bind_dn,
            "SIEGEL_DIRECTORY_BIND_PASSWORD_FILE": str(secret), "SIEGEL_DIRECTORY_USER_BASE": org.users_dn,
            "SIEGEL_DIRECTORY_GROUP_BASE": org.groups_dn, "SIEGEL_DIRECTORY_ROLE_GROUPS": f"{name}-signers=signer"})
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

    slapd_server.modify_ldif(f"dn: {org.user_dn(leaving)}\nchangetype: modify\nreplace: userAccountControl\n"
                             "userAccountControl: 514\n")
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
