"""The admin portal's users page with a directory (a real slapd) in headless Chromium against a whole
`siegel serve`: "Synchronise now" imports the directory's accounts, which are marked as directory-sourced
(local ones as local); the last run and its errors (a role group the directory does not have) are shown; a
full run after an account was disabled in the directory shows it disabled. Screenshots go to
test-artifacts/<test>/."""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest

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
        "SIEGEL_TWOFACTOR_REQUIRED_ROLES": ""})
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
