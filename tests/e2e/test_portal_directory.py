"""The admin portal's users page with a directory (a real slapd) in headless Chromium against a whole
`siegel serve`: "Synchronise now" imports the directory's accounts, which are marked as directory-sourced
(local ones as local); the last run and its errors (a role group the directory does not have) are shown; a
full run after an account was disabled in the directory shows it disabled; the groups are listed, the directory's
marked, with their members and the role or certificate they give, local ones as local. Screenshots go to
test-artifacts/<test>/."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Iterator

import pytest
from sqlalchemy import create_engine

from tests.e2e.test_portal import check_page, login
from tests.e2e.test_workflows_directory import ADMIN, org  # noqa: F401 - org: a fresh organisation in slapd
from tests.fixtures.browser import Shots, new_page
from tests.fixtures.server import SiegelInstance, make_instance
from tests.fixtures.slapd import Org, SlapdServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory, slapd_server: SlapdServer, org: Org) -> Iterator[SiegelInstance]:
    base = tmp_path_factory.mktemp("portal-directory")
    name = org.dn.split(",")[0].split("=")[1]
    inst = make_instance(base, {  # the second role group does not exist: an error each run
        **slapd_server.siegel_settings(org, base, f"{name}-signers=signer, {name}-nowhere=admin"),
        "SIEGEL_DIRECTORY_ENROL_GROUPS": f"{name}-enrol-pilot", "SIEGEL_TWOFACTOR_REQUIRED_ROLES": ""})
    inst.add_user(*ADMIN, "admin", signing_key=False)
    yield from inst.serving()


def test_sync_now_marks_directory_accounts_and_shows_the_last_run_and_its_errors(
        portal: SiegelInstance, slapd_server: SlapdServer, org: Org, browser: Any, shots: Shots,
        console_errors: list[str]) -> None:
    page = new_page(browser, console_errors)
    login(page, portal.url, ADMIN)
    page.get_by_role("link", name="Administration").first.click()
    page.get_by_role("link", name="Users").click()
    directory = page.locator("section[aria-labelledby='dir-title']")
    last_run = directory.locator("dt:text-is('Last run') + dd")
    before = last_run.inner_text()  # "–", or the server's own scheduled run at its start
    page.get_by_role("button", name="Synchronise now").click()
    done = page.get_by_role("status").inner_text()
    assert done.startswith("Synchronised: ") and done.endswith("; 1 errors."), done
    assert last_run.inner_text() not in (before, "–")
    for user in org.users:
        row = page.locator(f"tr[data-user='{user}']")
        assert "directory" in row.locator(".badge").inner_text() and "enabled" in row.inner_text(), user
    assert page.locator("tr[data-user='ada'] td").nth(2).inner_text() == "local"  # e-mail, role, source
    text = directory.inner_text()
    assert text.count("-nowhere' (directory.role_groups / enrol_groups) is not among the directory's groups") == 2, text
    check_page(page, console_errors)
    shots.take(page, "users-synchronised")

    slapd_server.set_disabled(org, org.users[1], True)
    page.get_by_label("full run").check()
    page.get_by_role("button", name="Synchronise now").click()
    assert re.search(r"\bdisabled 1\b", page.get_by_role("status").inner_text())
    assert "disabled" in page.locator(f"tr[data-user='{org.users[1]}'] td").nth(3).inner_text()
    page.context.close()


def test_groups_are_listed_with_their_source_members_and_what_they_give(
        portal: SiegelInstance, org: Org, browser: Any, shots: Shots, console_errors: list[str]) -> None:
    from server.db.models import Group, GroupMember, User

    engine = create_engine(f"sqlite:///{portal.data_dir / 'siegel.db'}")  # a local group: no service makes one
    with engine.begin() as conn:
        ada = conn.execute(User.__table__.select().where(User.__table__.c.name == ADMIN[0])).one()
        gid = conn.execute(Group.__table__.insert().values(name="Buchhaltung", source="local",
                                                           created_at=datetime.now(UTC))
                           .returning(Group.__table__.c.id)).scalar_one()
        conn.execute(GroupMember.__table__.insert().values(group_id=gid, user_id=ada.id))
    engine.dispose()
    name = org.dn.split(",")[0].split("=")[1]

    page = new_page(browser, console_errors)
    login(page, portal.url, ADMIN)
    page.goto(portal.url + "/portal/admin/users")
    page.get_by_role("button", name="Synchronise now").click()
    assert page.get_by_role("status").inner_text().startswith("Synchronised: ")
    groups = page.get_by_role("table", name=re.compile("^Groups: "))
    enabled = sum(1 for user in org.users if "enabled" in page.locator(f"tr[data-user='{user}'] td").nth(3).inner_text())
    signers = groups.locator(f"tr[data-group='{name}-signers']")
    assert signers.locator(".badge").inner_text() == "directory"  # all-staff, nested three levels down
    assert signers.locator(".members").inner_text() == f"{len(org.users)} ({enabled} enabled)"
    assert signers.locator(".gives").inner_text() == "role signer"
    pilot = groups.locator(f"tr[data-group='{name}-enrol-pilot']")
    assert pilot.locator(".badge").inner_text() == "directory"
    assert pilot.locator(".members").inner_text().startswith(f"{len(org.enrolled)} (")
    assert pilot.locator(".gives").inner_text() == "a signing certificate"
    local = groups.locator("tr[data-group='Buchhaltung']")
    assert local.locator(".badge").count() == 0 and local.locator("td").first.inner_text() == "local"
    assert local.locator(".members").inner_text() == "1 (1 enabled)" and local.locator(".gives").inner_text() == "–"
    assert groups.locator(f"tr[data-group='{name}-nowhere']").count() == 0  # not in the directory: not mirrored
    assert groups.locator(f"tr[data-group='{name}-admins']").count() == 0  # no setting names it: not mirrored
    check_page(page, console_errors)
    shots.take(page, "groups")

    page.goto(portal.url + "/portal/admin/users?lang=de")
    gruppen = page.get_by_role("table", name=re.compile("^Gruppen: "))
    assert gruppen.locator(f"tr[data-group='{name}-signers'] .gives").inner_text() == "Rolle signer"
    assert gruppen.locator("tr[data-group='Buchhaltung'] td").first.inner_text() == "lokal"
    page.context.close()
