"""The portal's admin pages in headless Chromium against a whole `siegel serve`: the workflow template editor
(a two-step four-eyes template made on the page, its steps ordered by their numbers, a wrong definition
refused with the problem named and nothing saved, an edit making version 2, and a workflow of it running
through both signers' inboxes); the dashboard's chart of signatures per day by format (inline SVG, counts
from the audit log) and the archive's state (counts, last collection and renewal); the remote signing accounts
(this server's own CSC API as one account, a service that does not answer as another); a disabled user
enabled again by its Enable button (CSRF-protected) who then logs in. Screenshots go to
test-artifacts/<test>/."""

from __future__ import annotations

import base64
import hashlib
import io
import time
from datetime import UTC, datetime
from typing import Any, Iterator

import pytest
import requests

from tests.e2e.test_portal import check_page, login
from tests.e2e.test_portal_inbox import add_accounts
from tests.fixtures.browser import Shots, new_page
from tests.fixtures.pdf import EmptyField, make_pdf
from tests.fixtures.ports import free_port
from tests.fixtures.server import SiegelInstance, make_instance

pytestmark = pytest.mark.e2e

ADMIN = ("ada", "ada-admin-password")
SIGNER = ("sam", "sam-signer-password")
OTHER = ("eve", "eve-signer-password")


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiegelInstance]:
    """A server whose admins log in with the password alone (the second factor is test_portal.py's)."""
    base = tmp_path_factory.mktemp("portal-admin")
    accounts = base / "remote-accounts.toml"
    accounts.write_text("")
    inst = make_instance(base, {"SIEGEL_TWOFACTOR_REQUIRED_ROLES": "",
                                "SIEGEL_REMOTE_SIGNING_ACCOUNTS_FILE": str(accounts),
                                "SIEGEL_REMOTE_SECRET_SELF": SIGNER[1], "SIEGEL_REMOTE_SECRET_DOWN": "unused"})
    accounts.write_text(  # this server's own CSC API as sam, and a port nobody listens on
        f'[[account]]\nname = "self"\nurl = "{inst.url}/csc/v2"\nauth = "basic"\nusername = "sam"\n'
        f'[[account]]\nname = "down"\nurl = "http://127.0.0.1:{free_port()}/csc/v2"\nauth = "basic"\n'
        'username = "nobody"\n')
    add_accounts(inst, {ADMIN: "admin", SIGNER: "signer", OTHER: "signer"})
    yield from inst.serving()


def fill_step(page: Any, row: int, **values: str) -> None:
    """Fill the editor's step row ``row`` (1-based): text fields by name, selects by value."""
    for key, value in values.items():
        control = page.locator(f"#step-{row}-{key}")
        if control.evaluate("e => e.tagName") == "SELECT":
            control.select_option(value)
        else:
            control.fill(value)


def test_admin_makes_a_four_eyes_template_that_then_runs(portal: SiegelInstance, browser: Any, shots: Shots,
                                                         console_errors: list[str]) -> None:
    page = new_page(browser, console_errors)
    login(page, portal.url, ADMIN)
    page.get_by_role("link", name="Administration").first.click()
    page.get_by_role("link", name="Workflow templates").click()
    page.get_by_role("link", name="New template").click()
    page.get_by_label("Name", exact=True).fill("Vier Augen")
    page.get_by_label("May start: roles").fill("integration")
    # Row 1 is numbered 2 and row 2 numbered 1: the numbers give the order, so "Prüfung" comes first.
    fill_step(page, 1, position="2", name="Freigabe", action="sign", kind="user", who=OTHER[0], level="B-B",
              field="Sig2", four_eyes="Prüfung")
    fill_step(page, 2, position="1", name="Prüfung", action="sign", kind="user", who=SIGNER[0], level="B-B",
              field="Sig1", four_eyes="Nachprüfung")  # not an earlier step: refused
    check_page(page, console_errors)
    page.get_by_role("button", name="Save the template").click()
    status = page.get_by_role("status").first.inner_text()
    assert "steps[1].fourEyesWith" in status and "'Nachprüfung' is not the name of an earlier step" in status, status
    assert requests.get(portal.url + "/api/v1/workflows/templates", auth=portal.auth, timeout=30).json()[
        "templates"] == []  # nothing saved
    assert page.locator("#step-1-name").input_value() == "Prüfung"  # the form again, in the order asked for
    assert page.locator("#step-2-name").input_value() == "Freigabe"
    page.locator("#step-1-four_eyes").fill("")
    page.get_by_role("button", name="Save the template").click()
    assert page.get_by_role("status").first.inner_text() == "Template Vier Augen created."
    assert page.locator("tr[data-template='Vier Augen'] td").inner_text() == "1"
    shots.take(page, "templates")

    # Edit: the steps come back in their order; a deadline on the second makes version 2.
    page.get_by_role("link", name="Vier Augen").click()
    assert [page.locator(f"#step-{n}-name").input_value() for n in (1, 2, 3)] == ["Prüfung", "Freigabe", ""]
    assert page.locator("#step-2-four_eyes").input_value() == "Prüfung"
    page.locator("#step-2-deadline").fill("48")
    page.locator("#step-1-auth").select_option("link")  # sam may act by the mailed link alone (or log in)
    check_page(page, console_errors)
    shots.take(page, "template-editor")
    page.get_by_role("button", name="Save the template").click()
    assert page.get_by_role("status").first.inner_text() == "Template Vier Augen saved as version 2."
    described = requests.get(portal.url + "/api/v1/workflows/templates", auth=portal.auth, timeout=30).json()
    (template,) = described["templates"]
    definition = requests.get(f"{portal.url}/api/v1/workflows/templates/{template['id']}", auth=portal.auth,
                              timeout=30).json()["definition"]
    assert [(s["name"], s["assignee"], s.get("fourEyesWith"), s.get("deadlineHours"), s.get("auth", "password"),
             s["signature"].get("field")) for s in definition["steps"]] == [
        ("Prüfung", {"user": "sam"}, None, None, "link", "Sig1"), ("Freigabe", {"user": "eve"}, "Prüfung", 48,
                                                                  "password", "Sig2")]
    assert definition["starters"]["roles"] == ["integration"]
    page.context.close()

    # The workflow runs: sam signs first, then eve, each from the inbox.
    pdf = make_pdf(fields=[EmptyField("Sig1", 0, (60, 100, 260, 160)), EmptyField("Sig2", 0, (320, 100, 520, 160))])
    r = requests.post(portal.url + "/api/v1/workflows", auth=portal.auth, timeout=60, json={
        "template": "Vier Augen", "document": base64.b64encode(pdf).decode(), "documentName": "bestellung.pdf"})
    assert r.status_code == 201, r.text
    workflow = r.json()["id"]
    for who, position in ((OTHER, None), (SIGNER, 1), (OTHER, 2)):
        signer = new_page(browser, console_errors)
        login(signer, portal.url, who)
        signer.goto(portal.url + "/portal/inbox")
        items = signer.locator(f"li[data-workflow='{workflow}']")
        if position is None:  # eve's step is not due before sam's
            assert items.count() == 0
        else:
            items.get_by_role("button", name="Sign").click()
            assert signer.get_by_role("status").inner_text() == f"Sign: step {position} of workflow {workflow} done."
        signer.context.close()
    status = requests.get(f"{portal.url}/api/v1/workflows/{workflow}", auth=portal.auth, timeout=30).json()
    assert status["state"] == "completed", status

    from pyhanko.pdf_utils.reader import PdfFileReader

    signed = requests.get(f"{portal.url}/api/v1/workflows/{workflow}/document", auth=portal.auth, timeout=30)
    signatures = PdfFileReader(io.BytesIO(signed.content)).embedded_signatures
    assert [(s.field_name, s.signer_cert.subject.native["common_name"]) for s in signatures] == [
        ("Sig1", "sam"), ("Sig2", "eve")]


def chart_numbers(page: Any, day: str) -> dict[str, int]:
    """The signature chart's numbers of ``day`` per format (its table)."""
    headers = page.locator("#signatures-chart thead th").all_text_contents()[1:]  # in a closed <details>
    cells = page.locator(f"#signatures-chart tbody tr:has(th:text-is('{day}')) td").all_text_contents()
    return dict(zip(headers, (int(c) for c in cells), strict=True))


def test_dashboard_charts_signatures_and_shows_the_archive(portal: SiegelInstance, browser: Any, shots: Shots,
                                                           console_errors: list[str]) -> None:
    today = datetime.now(UTC).date().isoformat()
    page = new_page(browser, console_errors)
    login(page, portal.url, ADMIN)
    page.get_by_role("link", name="Administration").first.click()
    before = chart_numbers(page, today)
    assert set(before) == {"asic", "cades", "pades", "xades"}
    for fmt, body, ctype in (("pades", make_pdf(), "application/pdf"), ("pades", make_pdf(pages=2), "application/pdf"),
                             ("xades", b"<doc>Bestellung</doc>", "application/xml")):
        r = requests.post(f"{portal.url}/api/v1/sign?format={fmt}&level=B-B", data=body, auth=portal.auth,
                          headers={"Content-Type": ctype}, timeout=120)
        assert r.status_code == 200, r.text
    aoid = portal.cli("archive", "add", "--hash", "sha256:" + hashlib.sha256(b"Rechnung 4711").hexdigest(),
                      "--as", portal.user).stdout.strip()
    portal.cli("archive", "evidence", aoid, "--as", portal.user, "-o", str(portal.data_dir.parent / "er.ers"))
    portal.cli("archive", "renew", "--timestamps", "--force")

    page.reload()
    after = chart_numbers(page, today)
    assert after == {**before, "pades": before["pades"] + 2, "xades": before["xades"] + 1}, (before, after)
    bars = page.locator("#signatures-chart rect.bar")
    titles = [bars.nth(i).get_attribute("data-title") for i in range(bars.count())]
    assert f"{today} pades: {after['pades']}" in titles and f"{today} xades: {after['xades']}" in titles, titles
    heights = {t: float(bars.nth(i).get_attribute("height")) for i, t in enumerate(titles)}
    pades, xades = heights[f"{today} pades: {after['pades']}"], heights[f"{today} xades: {after['xades']}"]
    assert abs(pades / xades - after["pades"] / after["xades"]) < 0.05, (pades, xades)  # bars to scale
    state = {k: page.locator(f"#archive-state dd[data-key='{k}']").inner_text() for k in
             ("objects", "items", "trees", "pending", "lastCollection", "lastRenewal", "nextTimestampRenewal",
              "nextHashTreeRenewal")}
    assert state["objects"] == "1" and state["items"] == "1" and state["pending"] == "0", state
    assert state["trees"] == "1 (1 current)", state
    assert state["nextTimestampRenewal"][:4].isdigit() and state["nextHashTreeRenewal"][:4].isdigit(), state
    assert state["lastCollection"].startswith(today) and state["lastRenewal"].startswith(today), state
    check_page(page, console_errors)
    shots.take(page, "dashboard")
    page.context.close()


def test_remote_signing_accounts(portal: SiegelInstance, browser: Any, shots: Shots,
                                 console_errors: list[str]) -> None:
    page = new_page(browser, console_errors)
    login(page, portal.url, ADMIN)
    page.get_by_role("link", name="Administration").first.click()
    page.get_by_role("link", name="Remote signing").click()
    own = page.locator("section[data-account='self']")
    (row,) = own.locator("tr[data-credential]").all()
    assert "CN=sam" in row.inner_text() and row.locator("td.ok").inner_text() == "valid"
    assert row.locator("td.signatures").inner_text() == "0"  # nothing signed through this account yet
    assert f"{portal.url}/csc/v2" in own.inner_text()
    down = page.locator("section[data-account='down']")
    assert down.locator(".remote-error").inner_text().startswith("The service did not answer:")
    check_page(page, console_errors)
    shots.take(page, "remote-accounts")
    page.context.close()


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile, linearly interpolated (what the duration chart shows), worked out here again."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def test_dashboard_charts_the_durations_of_completed_workflows(portal: SiegelInstance, browser: Any, shots: Shots,
                                                               console_errors: list[str]) -> None:
    r = requests.post(portal.url + "/api/v1/workflows/templates", auth=ADMIN, timeout=30, json={
        "name": "Dauer", "definition": {"starters": {"roles": ["integration"]}, "steps": [
            {"name": "Freigabe", "assignee": {"user": SIGNER[0]}, "action": "approve"}]}})
    assert r.status_code == 201, r.text
    started = []
    for _ in range(3):
        r = requests.post(portal.url + "/api/v1/workflows", auth=portal.auth, timeout=60, json={
            "template": "Dauer", "document": base64.b64encode(make_pdf()).decode(), "documentName": "antrag.pdf"})
        assert r.status_code == 201, r.text
        started.append(r.json()["id"])
    running = requests.post(portal.url + "/api/v1/workflows", auth=portal.auth, timeout=60, json={
        "template": "Dauer", "document": base64.b64encode(make_pdf()).decode(), "documentName": "offen.pdf"})
    assert running.status_code == 201, running.text  # not completed: not in the chart
    seconds = []
    for n, workflow in enumerate(started):
        time.sleep(1.5 * n)  # 0, 1.5, 3 s later: three different durations
        r = requests.post(f"{portal.url}/api/v1/workflows/{workflow}/steps/1", auth=SIGNER, timeout=60,
                          json={"action": "approve"})
        assert r.status_code == 200, r.text
        status = requests.get(f"{portal.url}/api/v1/workflows/{workflow}", auth=portal.auth, timeout=30).json()
        assert status["state"] == "completed", status
        seconds.append((datetime.fromisoformat(status["finished"]) - datetime.fromisoformat(status["created"]))
                       .total_seconds())

    page = new_page(browser, console_errors)
    located: list[tuple[str, str]] = []  # (text, the URL it is about) of each console error
    page.on("console", lambda m: located.append((m.text, m.location.get("url", ""))) if m.type == "error" else None)
    login(page, portal.url, ADMIN)
    page.get_by_role("link", name="Administration").first.click()
    chart = page.locator("#durations-chart")
    svg = chart.get_by_role("img")  # the legend's swatches are aria-hidden
    assert svg.get_attribute("aria-labelledby") == "durations-chart-title"
    title = svg.locator("title").first.text_content()  # the chart's accessible name
    assert "median and 90th percentile of the time from start to completion" in title, title
    bars = {(b.get_attribute("data-category"), b.get_attribute("data-series")): b
            for b in chart.locator("rect.bar").all()}
    median, p90 = bars[("Dauer (3)", "Median")], bars[("Dauer (3)", "90th percentile")]
    assert float(median.get_attribute("data-value")) == pytest.approx(percentile(seconds, 50), abs=0.06), seconds
    assert float(p90.get_attribute("data-value")) == pytest.approx(percentile(seconds, 90), abs=0.06), seconds
    assert median.get_attribute("data-title").endswith(" s") and median.locator("title").text_content().startswith(
        "Dauer (3) Median: ")
    ratio = float(p90.get_attribute("height")) / float(median.get_attribute("height"))
    assert ratio == pytest.approx(percentile(seconds, 90) / percentile(seconds, 50), rel=0.1)  # bars to scale
    rows = chart.locator("tbody tr:has(th:text-is('Dauer (3)')) td").all_text_contents()
    assert rows == [median.get_attribute("data-value"), p90.get_attribute("data-value")]
    check_page(page, console_errors)
    shots.take(page, "dashboard-durations")
    assert not console_errors, located
    page.context.close()

    signer = new_page(browser, [])  # the workflow pages are the admin's: a signer is refused both
    login(signer, portal.url, SIGNER)
    for path in ("/portal/admin/workflows", f"/portal/admin/workflows/{started[0]}"):
        response = signer.goto(portal.url + path)
        assert response is not None and response.status == 403, (path, response and response.status)
    signer.context.close()


def test_admin_enables_a_disabled_user_who_then_logs_in_again(portal: SiegelInstance, browser: Any, shots: Shots,
                                                              console_errors: list[str]) -> None:
    """The users page's Enable button of a disabled account (a form with the session's CSRF token; the same
    POST without it is refused and changes nothing); the account logs in again afterwards."""
    dan = ("dan", "dan-signer-password")
    portal.add_user(*dan, "signer", signing_key=False)
    page = new_page(browser, console_errors)
    login(page, portal.url, ADMIN)
    page.goto(portal.url + "/portal/admin/users")
    row = page.locator("tr[data-user='dan']")
    row.get_by_role("button", name="Disable dan").click()
    assert page.get_by_role("status").inner_text() == "User dan disabled."
    other = new_page(browser, console_errors)
    login(other, portal.url, dan)
    assert "/portal/login" in other.url

    for token in (None, "wrong"):  # the admin's session, but no or a made-up security token
        refused = page.request.post(portal.url + "/portal/admin/users/enable",
                                    form={"name": "dan", **({"csrf": token} if token is not None else {})})
        assert refused.status == 403, (token, refused.status)
    page.reload()
    assert row.locator("td").nth(3).inner_text() == "disabled"
    assert row.get_by_role("button", name="Disable dan").count() == 0
    check_page(page, console_errors)
    shots.take(page, "user-disabled")
    row.get_by_role("button", name="Enable dan").click()
    assert page.get_by_role("status").inner_text() == "User dan enabled."
    assert row.locator("td").nth(3).inner_text() == "enabled"
    assert row.get_by_role("button", name="Enable dan").count() == 0
    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Action (starts with)").fill("user.enable")
    page.get_by_role("button", name="Filter").click()
    (entry,) = page.locator("#audit tbody tr").all()
    assert "ada" in entry.inner_text() and "dan" in entry.inner_text(), entry.inner_text()
    page.context.close()

    login(other, portal.url, dan)
    assert other.url == portal.url + "/portal/" and "dan (signer)" in other.locator(".who").inner_text()
    other.context.close()
