"""The portal's inbox in headless Chromium against a whole `siegel serve`: a due step's own page shows the
document with pdf.js and the signature's place highlighted (the step's field, found among the page's widgets,
or the template's page and box); a step that needs a second factor prompts for a code (a wrong one is refused
and nothing is signed, an e-mailed one signs into the field). Screenshots go to test-artifacts/<test>/."""

from __future__ import annotations

import base64
import io
from typing import Any, Iterator

import pytest
import requests

from tests.e2e.test_portal import check_page, login, mail, mailed_code  # noqa: F401 - mail: the SMTP fixture
from tests.fixtures.browser import Shots, new_page
from tests.fixtures.pdf import EmptyField, make_pdf
from tests.fixtures.server import SiegelInstance, make_instance
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.e2e

SIGNER = ("sam", "sam-signer-password")
OTHER = ("eve", "eve-signer-password")
CHEF = ("chef", "chef-template-password")
A4_HEIGHT = 842.0
WAIT = 60000  # ms: a loaded machine renders slowly, but every wait is for an element or state


def add_accounts(inst: SiegelInstance, accounts: dict[tuple[str, str], str]) -> None:
    """Each (name, password) with its role, an address name@example.com and a signing certificate."""
    for (name, password), role in accounts.items():
        inst.add_user(name, password, role)


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory, mail: SmtpServer) -> Iterator[SiegelInstance]:
    inst = make_instance(tmp_path_factory.mktemp("portal-inbox"), {
        "SIEGEL_TWOFACTOR_RESEND_SECONDS": "0", "SIEGEL_MAIL_HOST": mail.host, "SIEGEL_MAIL_PORT": str(mail.port),
        "SIEGEL_MAIL_SENDER": "siegel@example.com"})
    add_accounts(inst, {SIGNER: "signer", OTHER: "signer", CHEF: "template_manager"})
    yield from inst.serving()


def start_workflow(inst: SiegelInstance, name: str, step: dict[str, Any], pdf: bytes, document: str) -> int:
    """A one-step template made by the template manager, and a workflow of it started by the integration."""
    api = inst.url + "/api/v1/workflows"
    r = requests.post(api + "/templates", auth=CHEF, timeout=30, json={"name": name, "definition": {
        "starters": {"roles": ["integration"]}, "steps": [step]}})
    assert r.status_code == 201, r.text
    r = requests.post(api, auth=inst.auth, timeout=60, json={
        "template": r.json()["id"], "document": base64.b64encode(pdf).decode(), "documentName": document})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def highlight_box(page: Any, page_no: int) -> tuple[float, float, float, float, float]:
    """The highlight's left, top, width, height relative to page ``page_no``'s canvas, and the canvas' scale
    (CSS pixels per PDF point of an A4 page)."""
    mark = page.locator(f".pdf-page[data-page='{page_no}'] #field-highlight").bounding_box()
    canvas = page.locator(f".pdf-page[data-page='{page_no}'] canvas").bounding_box()
    assert mark is not None and canvas is not None
    return (mark["x"] - canvas["x"], mark["y"] - canvas["y"], mark["width"], mark["height"],
            canvas["height"] / A4_HEIGHT)


def assert_shows(box: tuple[float, float, float, float, float], rect: tuple[float, float, float, float]) -> None:
    """The highlight covers ``rect`` (llx, lly, urx, ury in points) to within a pixel and a half."""
    left, top, width, height, scale = box
    expected = (rect[0] * scale, (A4_HEIGHT - rect[3]) * scale, (rect[2] - rect[0]) * scale,
                (rect[3] - rect[1]) * scale)
    assert all(abs(a - b) < 1.5 for a, b in zip((left, top, width, height), expected)), (box, expected)


def test_step_page_highlights_the_field_and_asks_for_a_second_factor(
        portal: SiegelInstance, mail: SmtpServer, browser: Any, shots: Shots, console_errors: list[str]) -> None:
    first, second = (60, 700, 260, 760), (320, 90, 520, 150)
    pdf = make_pdf(pages=2, fields=[EmptyField("Sig1", 0, first), EmptyField("Sig2", 1, second)])
    workflow = start_workflow(portal, "Geschäftsführung", {
        "name": "Geschäftsführung", "assignee": {"user": SIGNER[0]}, "action": "sign", "auth": "password+2fa",
        "signature": {"level": "B-B", "field": "Sig2"}}, pdf, "vertrag.pdf")

    page = new_page(browser, console_errors)
    login(page, portal.url, SIGNER)  # the password alone: this session has no second factor
    page.get_by_role("link", name="Inbox").first.click()
    page.get_by_role("link", name="Review vertrag.pdf").click()
    page.wait_for_selector("#pages[data-highlighted]", state="attached", timeout=WAIT)
    assert page.locator("#pages").get_attribute("data-highlighted") == "2"  # the field is on page 2
    assert page.locator("#field-state").inner_text() == "Your signature goes into the field Sig2 on page 2 (highlighted)."
    assert page.locator("#field-highlight").count() == 1
    assert_shows(highlight_box(page, 2), second)
    check_page(page, console_errors)
    shots.take(page, "step-field-highlighted")

    # The step needs a second factor: a code is asked for; a wrong one is refused and nothing is signed.
    code = page.get_by_label("Code of your second factor (this step needs one)")
    code.fill("000000")
    page.get_by_role("button", name="Sign", exact=True).click()
    assert "wrong, used or expired" in page.get_by_role("status").first.inner_text()
    status = requests.get(f"{portal.url}/api/v1/workflows/{workflow}", auth=portal.auth, timeout=30).json()
    assert status["state"] == "running", status
    shots.take(page, "step-wrong-code")

    before = len(mail.messages)
    page.get_by_role("button", name="Send me a code by e-mail").click()
    assert "s***@example.com" in page.get_by_role("status").first.inner_text()
    page.get_by_label("Code of your second factor (this step needs one)").fill(mailed_code(mail, before + 1))
    page.get_by_role("button", name="Sign", exact=True).click()
    assert page.get_by_role("status").first.inner_text() == f"Sign: step 1 of workflow {workflow} done."
    status = requests.get(f"{portal.url}/api/v1/workflows/{workflow}", auth=portal.auth, timeout=30).json()
    assert status["state"] == "completed", status

    from pyhanko.pdf_utils.reader import PdfFileReader

    signed = requests.get(f"{portal.url}/api/v1/workflows/{workflow}/document", auth=portal.auth, timeout=30)
    (embedded,) = PdfFileReader(io.BytesIO(signed.content)).embedded_signatures
    assert embedded.field_name == "Sig2"  # the highlighted field is the one signed
    assert [round(float(v)) for v in embedded.sig_field["/Rect"]] == list(second)
    page.context.close()


def test_step_page_highlights_the_templates_box_and_hides_other_peoples_steps(
        portal: SiegelInstance, browser: Any, shots: Shots, console_errors: list[str]) -> None:
    box = (350.0, 60.0, 180.0, 50.0)  # x, y, width, height
    workflow = start_workflow(portal, "Freigabe unten", {
        "name": "Unterschrift", "assignee": {"user": SIGNER[0]}, "action": "sign",
        "signature": {"level": "B-B", "page": -1, "box": list(box)}}, make_pdf(pages=3), "angebot.pdf")

    page = new_page(browser, console_errors)
    login(page, portal.url, SIGNER)
    page.goto(f"{portal.url}/portal/inbox/{workflow}/1")
    page.wait_for_selector("#pages[data-highlighted]", state="attached", timeout=WAIT)
    assert page.locator("#pages").get_attribute("data-highlighted") == "3"  # page -1: the last one
    assert page.locator("#field-state").inner_text() == "Your signature goes on page 3 at the highlighted place."
    assert_shows(highlight_box(page, 3), (box[0], box[1], box[0] + box[2], box[1] + box[3]))
    check_page(page, console_errors)
    shots.take(page, "step-box-highlighted")
    page.context.close()

    other = new_page(browser, console_errors)
    login(other, portal.url, OTHER)
    assert other.goto(f"{portal.url}/portal/inbox/{workflow}/1").status == 404  # not waiting for eve
    assert "not waiting for you" in other.locator("main").inner_text()
    other.context.close()
