"""The web portal in headless Chromium (Debian's /usr/bin/chromium through Playwright) against a whole
`siegel serve`: login with a second factor (an e-mailed code, then a TOTP authenticator enrolled from the
QR page's secret), signing one's own PDF by dragging the signature box onto a page (checked with pdfsig
and a page rendered by pdftoppm), an admin creating a user, issuing a certificate and reading the audit
log, the verify page failing a tampered PDF, German and English, labelled controls, no CSP violation.
Screenshots of every page go to test-artifacts/<test>/."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pyotp
import pytest
import requests

from server.web.portal import i18n
from tests.fixtures.browser import Shots, new_page
from tests.fixtures.pdf import EmptyField, make_pdf, nss_trusting_server, pdfsig
from tests.fixtures.server import SiegelInstance, make_instance
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.e2e

ADMIN = ("ada", "ada-admin-password")
SIGNER = ("sam", "sam-signer-password")
OTHER = ("eve", "eve-signer-password")
ROOT = ("root", "root-admin-password")  # a second admin that always logs in with an e-mailed code
CHEF = ("chef", "chef-template-password")


@pytest.fixture(scope="module")
def mail() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory, mail: SmtpServer) -> Iterator[SiegelInstance]:
    """A server whose admins need a second factor; two signers and two admins, each with a signing key."""
    inst = make_instance(tmp_path_factory.mktemp("portal"), {
        "SIEGEL_TWOFACTOR_REQUIRED_ROLES": "admin", "SIEGEL_TWOFACTOR_RESEND_SECONDS": "0",
        "SIEGEL_MAIL_HOST": mail.host, "SIEGEL_MAIL_PORT": str(mail.port), "SIEGEL_MAIL_SENDER": "siegel@example.com"})
    for (name, password), role in ((ADMIN, "admin"), (ROOT, "admin"), (SIGNER, "signer"), (OTHER, "signer"),
                                   (CHEF, "template_manager")):
        inst.add_user(name, password, role)
    yield from inst.serving()


@pytest.fixture(scope="module")
def nss(portal: SiegelInstance, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An NSS database trusting the server's root CA, for pdfsig."""
    return nss_trusting_server(tmp_path_factory.mktemp("nss"), portal.url)


# --- helpers -------------------------------------------------------------------------------------------------

def mailed_code(mail: SmtpServer, count: int) -> str:
    """The 6-digit code in the ``count``-th message received."""
    message = mail.wait_for(count)[count - 1].message
    body = message.get_body(("plain",))
    assert body is not None
    return re.search(r"\b(\d{6})\b", body.get_content()).group(1)  # type: ignore[union-attr]


def check_page(page: Any, errors: list[str]) -> None:
    """Every visible control has a label, and nothing was refused by the Content-Security-Policy."""
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter(e => e.type !== 'hidden' && !e.hidden && e.offsetParent !== null)
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !(e.tagName === 'BUTTON' && e.textContent.trim()))
        .map(e => e.outerHTML)""")
    assert not unlabelled, unlabelled
    assert not [e for e in errors if "Content Security Policy" in e or "Refused to" in e], errors


def login(page: Any, url: str, who: tuple[str, str], code: str | None = None) -> None:
    """Log in with the password; fill ``code`` in on the second-factor page when given."""
    page.goto(url + "/portal/login")
    page.get_by_label("User name").fill(who[0])
    page.get_by_label("Password").fill(who[1])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    if code is not None:
        assert "/portal/2fa" in page.url, page.url
        page.get_by_label("Code").fill(code)
        page.get_by_role("button", name="Confirm").click()
        page.wait_for_load_state()


def login_with_mailed_code(page: Any, url: str, who: tuple[str, str], mail: SmtpServer) -> None:
    login(page, url, who)
    assert "/portal/2fa" in page.url, page.url
    before = len(mail.messages)
    page.get_by_role("button", name="Send me a code by e-mail").click()
    page.wait_for_load_state()
    page.get_by_label("Code").fill(mailed_code(mail, before + 1))
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(url + "/portal/")


def session_cookie(page: Any) -> dict[str, Any]:
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "siegel_session"]
    return cookie  # type: ignore[no-any-return]


def drop_file(page: Any, path: Path, mime: str) -> None:
    """Drop ``path`` on the page's drop zone as a browser's drag and drop does: a DataTransfer holding the file.
    Only once the page's module scripts ran (before DOMContentLoaded): before, nothing listens for the drop."""
    page.wait_for_load_state("domcontentloaded")
    page.locator(".drop").evaluate("""(zone, [name, mime, b64]) => {
        const data = new DataTransfer();
        data.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], name, { type: mime }));
        for (const type of ["dragover", "drop"]) {
          zone.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
        }
    }""", [path.name, mime, base64.b64encode(path.read_bytes()).decode()])


def drawn_over(pdf: bytes) -> bytes:
    """``pdf`` with a blue box drawn on page 1 in an incremental update: a change after signing."""
    from io import BytesIO

    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    writer.add_stream_to_page(0, writer.add_object(generic.StreamObject(stream_data=b"0 0 1 rg 100 500 200 50 re f")))
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def signed_rest(inst: SiegelInstance, pdf: bytes) -> bytes:
    r = requests.post(inst.url + "/api/v1/sign?format=pades&level=B-B", data=pdf, auth=inst.auth,
                      headers={"Content-Type": "application/pdf"}, timeout=120)
    assert r.status_code == 200, r.text
    return r.content


A4_HEIGHT = 842.0  # points


def rendered(pdf: Path, page_no: int, out: Path) -> Any:
    """Page ``page_no`` of ``pdf`` rendered by pdftoppm at 72 dpi (one pixel per point), as an RGB image."""
    from PIL import Image

    subprocess.run(["pdftoppm", "-r", "72", "-f", str(page_no), "-l", str(page_no), "-png", "-singlefile",
                    str(pdf), str(out)], check=True, capture_output=True, timeout=60)
    return Image.open(f"{out}.png").convert("RGB")


def ink(image: Any, box: tuple[int, int, int, int]) -> float:
    """The share of non-white pixels inside ``box`` (left, top, right, bottom in pixels)."""
    region = image.crop(box)
    pixels = list(region.getdata())
    return sum(1 for p in pixels if min(p) < 200) / max(len(pixels), 1)


def stamped_in_box(signed: Path, original: Path, page_no: int, box: tuple[float, float, float, float],
                   work: Path) -> tuple[Any, Any, tuple[int, int, int, int]]:
    """Check that the one signature field of ``signed`` has the rectangle ``box`` (x, y, width, height in points
    from the bottom left, on an A4 page) and that its stamp put ink there, where ``original`` had none; the
    page rendered after and before, and the box in pixels (left, top, right, bottom)."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    x, y, w, h = box
    with signed.open("rb") as f:
        (embedded,) = PdfFileReader(f).embedded_signatures
        rect = [float(v) for v in embedded.sig_field["/Rect"]]
    assert [round(v) for v in rect] == [round(x), round(y), round(x + w), round(y + h)], rect
    pixels = (round(x), round(A4_HEIGHT - y - h), round(x + w), round(A4_HEIGHT - y))  # 72 dpi: a pixel a point
    after, before = rendered(signed, page_no, work / "after"), rendered(original, page_no, work / "before")
    assert ink(before, pixels) == 0.0
    assert ink(after, pixels) > 0.02, ink(after, pixels)
    return after, before, pixels


# --- tests ---------------------------------------------------------------------------------------------------

def test_login_with_second_factor_and_totp_enrolment(portal: SiegelInstance, mail: SmtpServer, browser: Any,
                                                     shots: Shots, console_errors: list[str]) -> None:
    page = new_page(browser, console_errors)
    page.goto(portal.url + "/portal/")
    assert page.url.startswith(portal.url + "/portal/login"), page.url  # not logged in: the login page
    check_page(page, console_errors)
    shots.take(page, "login")

    login(page, portal.url, ("ada", "not the password"))
    assert page.get_by_role("status").inner_text().startswith("Wrong user name or password")

    # The admin's password is right: a short second-factor session, then a code sent by e-mail.
    login(page, portal.url, ADMIN)
    assert "/portal/2fa" in page.url
    pending = session_cookie(page)
    assert pending["httpOnly"] and pending["sameSite"] == "Strict" and pending["path"] == "/portal"
    assert page.goto(portal.url + "/portal/admin").url.startswith(portal.url + "/portal/login")  # not yet
    login(page, portal.url, ADMIN)
    pending = session_cookie(page)
    page.get_by_label("Code").fill("000000")
    page.get_by_role("button", name="Confirm").click()
    assert "wrong, used or expired" in page.get_by_role("status").inner_text()
    page.get_by_role("button", name="Send me a code by e-mail").click()
    assert "a***@example.com" in page.get_by_role("status").inner_text()
    check_page(page, console_errors)
    shots.take(page, "second-factor")
    page.get_by_label("Code").fill(mailed_code(mail, len(mail.messages)))
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(portal.url + "/portal/")
    full = session_cookie(page)
    assert full["value"] != pending["value"]  # rotated when the second factor was given
    assert requests.get(portal.url + "/portal/", cookies={"siegel_session": pending["value"]},
                        allow_redirects=False, timeout=10).status_code == 303  # the pending token is dead
    check_page(page, console_errors)
    shots.take(page, "home")

    # Enrol an authenticator: QR code and secret, confirmed with a first code; recovery codes shown once.
    page.get_by_role("link", name="Security").first.click()
    page.get_by_role("button", name="Set up an authenticator app").click()
    qr = page.get_by_role("img", name="QR code of the authenticator secret")
    assert qr.get_attribute("src").startswith("data:image/png;base64,")
    assert qr.evaluate("img => img.naturalWidth") > 100
    totp = pyotp.TOTP(page.locator("#totp-secret").inner_text())
    check_page(page, console_errors)
    shots.take(page, "totp-enrolment")
    page.get_by_label("First code from the app").fill(totp.now())
    page.get_by_role("button", name="Activate").click()
    assert page.locator("#totp-state").inner_text() == "active"
    codes = page.locator("#recovery-codes li").all_inner_texts()
    assert len(codes) == 10 and len(set(codes)) == 10
    shots.take(page, "recovery-codes")

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(portal.url + "/portal/login")
    assert requests.get(portal.url + "/portal/", cookies={"siegel_session": full["value"]},
                        allow_redirects=False, timeout=10).status_code == 303  # logged out: the token is dead

    # Next login: password, then the authenticator's code (the next time step: each is accepted once).
    login(page, portal.url, ADMIN, code=totp.at(int(time.time()) + 30))
    assert page.url == portal.url + "/portal/"
    assert "ada (admin)" in page.locator(".who").inner_text()
    # A recovery code works once as well.
    page.get_by_role("button", name="Log out").click()
    login(page, portal.url, ADMIN, code=codes[0])
    assert page.url == portal.url + "/portal/"
    page.get_by_role("button", name="Log out").click()
    login(page, portal.url, ADMIN, code=codes[0])
    assert "wrong, used or expired" in page.get_by_role("status").inner_text()
    page.context.close()


def test_sign_own_pdf_by_dragging_the_box_onto_a_page(portal: SiegelInstance, nss: Path, browser: Any,
                                                       shots: Shots, console_errors: list[str],
                                                       tmp_path: Path) -> None:
    original = tmp_path / "vertrag.pdf"
    original.write_bytes(make_pdf(pages=2))
    page = new_page(browser, console_errors)
    login(page, portal.url, SIGNER)
    page.get_by_role("link", name="Sign a document").first.click()
    drop_file(page, original, "application/pdf")  # dragged onto the page from the file manager
    assert page.get_by_label("File").evaluate("input => input.files[0].name") == "vertrag.pdf"
    page.wait_for_selector("#pages[data-rendered='2']", timeout=30000)  # both pages drawn by pdf.js

    # Drag the box from its tray onto page 2: its upper left corner 100 px right of and 150 px below the page's.
    box = page.locator("#sigbox").bounding_box()
    target = page.locator(".pdf-page[data-page='2'] canvas").bounding_box()
    grab = (box["x"] + 10, box["y"] + 10)
    page.mouse.move(*grab)
    page.mouse.down()
    page.mouse.move(target["x"] + 110, target["y"] + 160, steps=12)
    page.mouse.up()
    scale = target["width"] / 595.0  # A4: 595 x 842 points
    assert page.get_by_role("textbox", name="Page", exact=True).input_value() == "2"
    x, y = float(page.locator("#x").input_value()), float(page.locator("#y").input_value())
    w, h = float(page.locator("#w").input_value()), float(page.locator("#h").input_value())
    assert abs(x - 100 / scale) < 2 and abs(y - (842 - 150 / scale - h)) < 2, (x, y, scale)
    # The arrow keys move it too (5 points a press).
    page.locator("#sigbox").press("ArrowRight")
    page.locator("#sigbox").press("ArrowUp")
    x, y = x + 5, y + 5
    assert abs(float(page.locator("#x").input_value()) - x) < 0.2
    assert abs(float(page.locator("#y").input_value()) - y) < 0.2
    check_page(page, console_errors)
    shots.take(page, "sign-placed")

    page.get_by_role("button", name="Sign", exact=True).click()
    page.wait_for_url("**/portal/sign/result/*", timeout=120000)
    assert page.locator("#verdict").inner_text() == "All signatures are valid."
    assert "PAdES B-T" in page.locator(".signature").inner_text()
    check_page(page, console_errors)
    shots.take(page, "signed")
    with page.expect_download() as download:
        page.locator("#download-document").click()
    signed = tmp_path / "signed.pdf"
    download.value.save_as(signed)
    with page.expect_download() as download:
        page.locator("#download-report").click()
    report = json.loads(Path(download.value.path()).read_text())
    assert report["passed"] and report["signatures"][0]["indication"] == "TOTAL-PASSED"
    assert signed.read_bytes().startswith(original.read_bytes())  # an incremental update

    done = pdfsig(nss, signed.read_bytes(), signed)
    assert "Signature is Valid." in done and "Certificate is Trusted." in done, done

    # The stamp is where the box was: ink inside the box on page 2, none there before; page 1 unchanged.
    after, before, pixels = stamped_in_box(signed, original, 2, (x, y, w, h), tmp_path)
    outside = (pixels[0], pixels[3] + 20, pixels[2], pixels[3] + 80)  # just below the box
    assert ink(after, outside) == ink(before, outside) == 0.0
    assert list(rendered(signed, 1, tmp_path / "p1a").getdata()) == list(
        rendered(original, 1, tmp_path / "p1b").getdata())
    page.context.close()


def test_admin_creates_a_user_issues_a_certificate_and_reads_the_audit_log(
        portal: SiegelInstance, mail: SmtpServer, browser: Any, shots: Shots,
        console_errors: list[str]) -> None:
    page = new_page(browser, console_errors)
    login_with_mailed_code(page, portal.url, ROOT, mail)
    page.get_by_role("link", name="Administration").first.click()
    assert page.locator("#health-status").inner_text() == "available"
    assert page.locator("#exp-title").inner_text() == "Expiring within 30 days"  # the certificates soon due
    check_page(page, console_errors)
    shots.take(page, "dashboard")

    page.get_by_role("link", name="Users").click()
    page.get_by_label("Name", exact=True).fill("nina")
    page.get_by_label("Display name").fill("Nina Neu")
    page.get_by_label("E-mail").fill("nina@example.com")
    page.get_by_label("Role", exact=True).select_option("signer")
    page.get_by_label("Password (at least 12 characters)").fill("nina-new-password")
    page.get_by_role("button", name="Create").click()
    assert page.get_by_role("status").inner_text() == "User nina created."
    row = page.locator("tr[data-user='nina']")
    assert "signer" in row.inner_text() and "enabled" in row.inner_text()
    check_page(page, console_errors)
    shots.take(page, "users")
    # The same name again: the service says why, nothing changes.
    page.get_by_label("Name", exact=True).fill("nina")
    page.get_by_label("E-mail").fill("nina2@example.com")
    page.get_by_label("Password (at least 12 characters)").fill("nina-new-password")
    page.get_by_role("button", name="Create").click()
    assert "exists already" in page.get_by_role("status").inner_text()

    page.get_by_role("link", name="Certificates").click()
    page.get_by_label("For user").select_option("nina")
    page.get_by_role("button", name="Issue a signing certificate").click()
    assert re.match(r"Certificate [0-9a-f]+ issued for nina\.", page.get_by_role("status").inner_text())
    assert "CN=nina" in page.locator("#certificates").inner_text()
    shots.take(page, "certificates")
    serial = page.get_by_role("status").inner_text().split()[1]
    row = page.locator("#certificates tr", has=page.locator(f"code:text-is('{serial}')"))
    row.get_by_label("Reason").select_option("keyCompromise")
    row.get_by_role("button", name="Revoke").click()
    assert page.get_by_role("status").inner_text() == f"Certificate {serial} revoked."
    assert "revoked (keyCompromise)" in page.locator("#certificates tr", has=page.locator(
        f"code:text-is('{serial}')")).inner_text()

    # The new account logs in and signs nothing yet; then the admin disables it and it cannot log in.
    other = new_page(browser, console_errors)
    login(other, portal.url, ("nina", "nina-new-password"))
    assert other.url == portal.url + "/portal/" and "nina (signer)" in other.locator(".who").inner_text()
    page.get_by_role("link", name="Users").click()
    page.get_by_label("Role of nina").select_option("auditor")
    page.locator("tr[data-user='nina']").get_by_role("button", name="Set role").click()
    assert page.get_by_role("status").inner_text() == "nina now has the role auditor."
    assert page.locator("tr[data-user='nina'] td").nth(1).inner_text() == "auditor"  # e-mail, role, ...
    page.get_by_role("button", name="Disable nina").click()
    assert page.get_by_role("status").inner_text() == "User nina disabled."
    assert other.goto(portal.url + "/portal/sign").url.startswith(portal.url + "/portal/login")  # session ended
    login(other, portal.url, ("nina", "nina-new-password"))
    assert "/portal/login" in other.url
    other.context.close()

    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Action (starts with)").fill("user.")
    page.get_by_role("button", name="Filter").click()
    table = page.locator("#audit").inner_text()
    assert "user.add" in table and "user.disable" in table and "nina" in table and "ca.issue" not in table
    page.get_by_role("link", name="Check the integrity of the whole log").click()
    assert re.match(r"The hash chain of all \d+ entries is intact\.", page.locator("#audit-check").inner_text())
    check_page(page, console_errors)
    shots.take(page, "audit")
    page.context.close()


def test_verify_page_reports_a_tampered_pdf_as_failed(portal: SiegelInstance, browser: Any, shots: Shots,
                                                      console_errors: list[str], tmp_path: Path) -> None:
    signed = signed_rest(portal, make_pdf())
    text = b"Rahmenvertrag zwischen der Muster GmbH"
    assert signed.count(text) == 1  # the page's text, inside the signed byte range
    (tmp_path / "good.pdf").write_bytes(signed)
    (tmp_path / "tampered.pdf").write_bytes(signed.replace(text, text.replace(b"Muster", b"Meyer ")))
    (tmp_path / "drawn-over.pdf").write_bytes(drawn_over(signed))
    page = new_page(browser, console_errors)
    login(page, portal.url, OTHER)
    page.get_by_role("link", name="Verify").first.click()
    page.get_by_label("File").set_input_files(str(tmp_path / "good.pdf"))
    page.get_by_role("button", name="Verify").click()
    assert page.locator("#verdict").inner_text() == "All signatures are valid."
    facts = page.locator(".signature").inner_text()  # who, when, level, what is covered, what changed since
    assert re.search(rf"Who\n[^\n]*\b{portal.user}\b", facts) and "When (claimed)\n20" in facts, facts
    assert "Format and level\nPAdES B-B" in facts and "the whole document" in facts, facts
    assert "nothing was changed after signing" in facts, facts
    page.get_by_label("File").set_input_files(str(tmp_path / "drawn-over.pdf"))
    page.get_by_role("button", name="Verify").click()
    assert page.locator("#verdict").inner_text() == "Not all signatures are valid."
    facts = page.locator(".signature").inner_text()
    assert "modified after signing: a later revision changes the document" in facts, facts
    page.get_by_label("File").set_input_files(str(tmp_path / "tampered.pdf"))
    page.get_by_role("button", name="Verify").click()
    assert page.locator("#verdict").inner_text() == "Not all signatures are valid."
    signature = page.locator(".signature").inner_text()
    assert "failed" in signature and "nothing (the signature failed)" in signature, signature
    check_page(page, console_errors)
    shots.take(page, "verify-tampered")
    page.context.close()


def test_german_and_english(portal: SiegelInstance, browser: Any, shots: Shots,
                            console_errors: list[str]) -> None:
    assert set(i18n.catalogue("de")) == set(i18n.catalogue("en"))
    page = new_page(browser, console_errors, locale="de-DE")  # Accept-Language: de-DE
    page.goto(portal.url + "/portal/login")
    assert page.locator("html").get_attribute("lang") == "de"
    assert page.get_by_role("heading", level=1).inner_text() == "Anmelden"
    # Keyboard only: the name field has the focus, Tab goes on to the password, Enter sends the form.
    assert page.evaluate("document.activeElement.id") == "name"
    page.keyboard.type(SIGNER[0])
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(SIGNER[1])
    page.keyboard.press("Enter")
    page.wait_for_url(portal.url + "/portal/")
    assert page.get_by_role("heading", level=1).inner_text() == "Willkommen, sam"
    shots.take(page, "home-de")
    page.get_by_role("link", name="English").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Welcome, sam"
    page.goto(portal.url + "/portal/verify")  # remembered (cookie), whatever the browser asks for
    assert page.get_by_role("heading", level=1).inner_text() == "Verify a signed file"
    page.context.close()


def test_inbox_signs_a_pending_workflow_step(portal: SiegelInstance, browser: Any, shots: Shots,
                                            console_errors: list[str], tmp_path: Path) -> None:
    api = portal.url + "/api/v1/workflows"
    r = requests.post(api + "/templates", auth=CHEF, timeout=30, json={"name": "Rahmenvertrag", "definition": {
        "starters": {"roles": ["integration"]}, "steps": [
            {"name": "Vertrieb", "assignee": {"user": SIGNER[0]}, "action": "sign",
             "signature": {"level": "B-B", "field": "Sig1"}}]}})
    assert r.status_code == 201, r.text
    pdf = make_pdf(fields=[EmptyField("Sig1", 0, (300, 100, 500, 160))])
    r = requests.post(api, auth=portal.auth, timeout=60, json={
        "template": r.json()["id"], "document": base64.b64encode(pdf).decode(), "documentName": "rahmenvertrag.pdf"})
    assert r.status_code == 201, r.text
    workflow = r.json()["id"]

    page = new_page(browser, console_errors)
    login(page, portal.url, SIGNER)
    page.get_by_role("link", name="Inbox").first.click()
    item = page.locator(f"li[data-workflow='{workflow}'][data-step='1']")
    assert "rahmenvertrag.pdf" in item.inner_text() and "erp" in item.inner_text()
    with page.expect_download() as download:  # the document as it waits for the signature
        item.get_by_role("link", name="Open rahmenvertrag.pdf").click(modifiers=["Alt"])
    assert Path(download.value.path()).read_bytes() == pdf
    check_page(page, console_errors)
    shots.take(page, "inbox")
    # Another signer sees nothing of it and cannot act on it.
    other = new_page(browser, console_errors)
    login(other, portal.url, OTHER)
    assert other.goto(portal.url + "/portal/inbox").ok and not other.locator("li[data-workflow]").count()
    assert other.goto(portal.url + f"/portal/inbox/{workflow}/document").status == 404  # the service hides it
    other.context.close()

    item.get_by_role("button", name="Sign").click()
    assert page.get_by_role("status").inner_text() == f"Sign: step 1 of workflow {workflow} done."
    assert page.locator("#inbox-empty").is_visible()
    status = requests.get(f"{api}/{workflow}", auth=portal.auth, timeout=30).json()
    assert status["state"] == "completed", status
    page.context.close()


def test_password_reset_from_the_mailed_link(portal: SiegelInstance, mail: SmtpServer, browser: Any,
                                             shots: Shots, console_errors: list[str]) -> None:
    page = new_page(browser, console_errors)
    page.goto(portal.url + "/portal/login")
    page.get_by_role("link", name="Forgot your password?").click()
    check_page(page, console_errors)
    shots.take(page, "forgot")
    before = len(mail.messages)
    page.get_by_label("User name or e-mail address").fill("eve@example.com")
    page.get_by_role("button", name="Send a reset link").click()
    assert "a reset link is on its way" in page.get_by_role("status").inner_text()
    reset = mail.mail_to("eve@example.com", "reset your password", since=before)
    body = reset.text  # type: ignore[union-attr]
    link = re.search(r"(http://\S+/portal/reset\?token=[A-Za-z0-9_-]+)", body).group(1)  # type: ignore[union-attr]
    page.goto(link)
    check_page(page, console_errors)
    shots.take(page, "reset")
    page.get_by_label("New password (at least 12 characters)").fill("eve-second-password")
    page.get_by_label("New password again").fill("eve-other-password!")
    page.get_by_role("button", name="Set the password").click()
    assert page.get_by_role("status").inner_text() == "The two passwords differ."
    page.get_by_label("New password (at least 12 characters)").fill("eve-second-password")
    page.get_by_label("New password again").fill("eve-second-password")
    page.get_by_role("button", name="Set the password").click()
    assert page.get_by_role("status").inner_text() == "Your password is changed. Log in with it."
    login(page, portal.url, OTHER)  # the old password no longer works
    assert "/portal/login" in page.url
    login(page, portal.url, ("eve", "eve-second-password"))
    assert page.url == portal.url + "/portal/"
    page.goto(link)  # the link works once
    page.get_by_label("New password (at least 12 characters)").fill("eve-third-password!")
    page.get_by_label("New password again").fill("eve-third-password!")
    page.get_by_role("button", name="Set the password").click()
    assert "invalid, used or expired" in page.get_by_role("status").inner_text()
    page.context.close()


def test_start_a_workflow_by_dropping_a_pdf(portal: SiegelInstance, browser: Any, shots: Shots,
                                            console_errors: list[str], tmp_path: Path) -> None:
    api = portal.url + "/api/v1/workflows"
    for name, starters in (("Einkauf", ["signer"]), ("Nur ERP", ["integration"])):
        r = requests.post(api + "/templates", auth=CHEF, timeout=30, json={"name": name, "definition": {
            "starters": {"roles": starters}, "steps": [
                {"name": "Prüfung", "assignee": {"user": CHEF[0]}, "action": "approve"},
                {"name": "Kopie", "assignee": {"external": "{{partner}}"}, "action": "copy"}]}})
        assert r.status_code == 201, r.text
    order = tmp_path / "bestellung.pdf"
    order.write_bytes(make_pdf())
    page = new_page(browser, console_errors)
    login(page, portal.url, SIGNER)
    page.get_by_role("link", name="Start a workflow").first.click()
    for template, variables, refused in (
            ("Einkauf", "partner", "partner: expected name = value"),  # not name = value: nothing starts
            ("Nur ERP", "partner = lieferant@example.org", "sam may not start the workflow template 'Nur ERP'")):
        drop_file(page, order, "application/pdf")
        page.get_by_label("Template", exact=True).select_option(label=template)
        page.get_by_label("Values for the template").fill(variables)
        page.get_by_role("button", name="Start", exact=True).click()
        assert page.get_by_role("status").inner_text() == refused
    assert requests.get(api + "/inbox", auth=CHEF, timeout=30).json()["steps"] == []
    drop_file(page, order, "application/pdf")
    page.get_by_label("Template", exact=True).select_option(label="Einkauf")
    page.get_by_label("Values for the template").fill("partner = lieferant@example.org")
    check_page(page, console_errors)
    shots.take(page, "start-workflow")
    page.get_by_role("button", name="Start", exact=True).click()
    started = re.fullmatch(r"Workflow (\d+) \(Einkauf\) started\.", page.get_by_role("status").inner_text())
    assert started, page.get_by_role("status").inner_text()
    workflow = int(started.group(1))
    (due,) = requests.get(api + "/inbox", auth=CHEF, timeout=30).json()["steps"]
    assert (due["workflow"], due["step"], due["sender"]) == (workflow, 1, SIGNER[0])
    status = requests.get(f"{api}/{workflow}", auth=CHEF, timeout=30).json()
    assert status["documentName"] == "bestellung.pdf" and status["startedBy"] == SIGNER[0], status
    assert status["steps"][1]["assignees"][0]["email"] == "lieferant@example.org", status
    assert requests.get(f"{api}/{workflow}/document", auth=CHEF, timeout=30).content == order.read_bytes()
    page.context.close()
