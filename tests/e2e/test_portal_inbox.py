"""The portal's inbox in headless Chromium against a whole `siegel serve`: a due step's own page shows the
document with pdf.js and the signature's place highlighted (the step's field, found among the page's widgets,
or the template's page and box, with no box to drag); where the template fixes neither, the signer drags the
signature box onto a page and the signature lands there (pdfsig, and a page rendered by pdftoppm changed only
inside the box); a step that needs a second factor prompts for a code (a wrong one is refused and nothing is
signed, an e-mailed one signs into the field). Screenshots go to test-artifacts/<test>/."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from tests.e2e.test_portal import (A4_HEIGHT, check_page, login, mail, mailed_code, nss, rendered,  # noqa: F401 - fixtures
                                   stamped_in_box)
from tests.fixtures.browser import Shots, new_page
from tests.fixtures.pdf import EmptyField, make_pdf, pdfsig
from tests.fixtures.server import SiegelInstance, make_instance
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.e2e

SIGNER = ("sam", "sam-signer-password")
OTHER = ("eve", "eve-signer-password")
CHEF = ("chef", "chef-template-password")
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
    assert page.locator("#sigbox, #placement").count() == 0  # the field is fixed: nothing to drag
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
    assert page.locator("#sigbox, #placement").count() == 0  # the template's box: nothing to drag
    check_page(page, console_errors)
    shots.take(page, "step-box-highlighted")
    page.context.close()

    other = new_page(browser, console_errors)
    login(other, portal.url, OTHER)
    assert other.goto(f"{portal.url}/portal/inbox/{workflow}/1").status == 404  # not waiting for eve
    assert "not waiting for you" in other.locator("main").inner_text()
    other.context.close()


def test_step_without_a_field_is_signed_where_the_signer_drags_the_box(
        portal: SiegelInstance, nss: Path, browser: Any, shots: Shots, console_errors: list[str],
        tmp_path: Path) -> None:
    original = tmp_path / "auftrag.pdf"
    original.write_bytes(make_pdf(pages=3))
    workflow = start_workflow(portal, "Freie Unterschrift", {
        "name": "Auftraggeber", "assignee": {"user": SIGNER[0]}, "action": "sign", "signature": {"level": "B-B"}},
        original.read_bytes(), "auftrag.pdf")

    page = new_page(browser, console_errors)
    page.set_viewport_size({"width": 1280, "height": 3200})  # all three pages in view while dragging
    login(page, portal.url, SIGNER)
    page.goto(f"{portal.url}/portal/inbox/{workflow}/1")
    page.wait_for_selector("#pages[data-rendered='3']", state="attached", timeout=WAIT)
    assert page.locator("#field-highlight").count() == 0  # nothing fixed, nothing highlighted

    # A position that is no page is refused with the step page again; nothing is signed.
    page.get_by_role("textbox", name="Page", exact=True).fill("0")
    page.locator("#x").fill("100")
    page.locator("#y").fill("100")
    page.get_by_role("button", name="Sign", exact=True).click()
    assert "whole page number" in page.get_by_role("status").first.inner_text()
    status = requests.get(f"{portal.url}/api/v1/workflows/{workflow}", auth=portal.auth, timeout=30).json()
    assert status["state"] == "running", status
    page.wait_for_selector("#pages[data-rendered='3']", state="attached", timeout=WAIT)

    # Drag the box from its tray onto page 2: its upper left corner 120 px right of and 200 px below the page's.
    box = page.locator("#sigbox").bounding_box()
    target = page.locator(".pdf-page[data-page='2'] canvas").bounding_box()
    page.mouse.move(box["x"] + 10, box["y"] + 10)
    page.mouse.down()
    page.mouse.move(target["x"] + 130, target["y"] + 210, steps=12)
    page.mouse.up()
    scale = target["height"] / A4_HEIGHT
    assert page.get_by_role("textbox", name="Page", exact=True).input_value() == "2"
    x, y = float(page.locator("#x").input_value()), float(page.locator("#y").input_value())
    w, h = float(page.locator("#w").input_value()), float(page.locator("#h").input_value())
    assert abs(x - 120 / scale) < 2 and abs(y - (A4_HEIGHT - 200 / scale - h)) < 2, (x, y, scale)
    assert page.locator(".pdf-page[data-page='2'] #sigbox").count() == 1
    assert page.locator("#placement-state").inner_text() == f"Signature box on page 2 at x {x:.0f}, y {y:.0f} (points)."
    check_page(page, console_errors)
    shots.take(page, "step-box-dragged")

    page.get_by_role("button", name="Sign", exact=True).click()
    assert page.get_by_role("status").first.inner_text() == f"Sign: step 1 of workflow {workflow} done."
    status = requests.get(f"{portal.url}/api/v1/workflows/{workflow}", auth=portal.auth, timeout=30).json()
    assert status["state"] == "completed", status
    signed = tmp_path / "signed.pdf"
    signed.write_bytes(requests.get(f"{portal.url}/api/v1/workflows/{workflow}/document", auth=portal.auth,
                                    timeout=30).content)
    assert signed.read_bytes().startswith(original.read_bytes())  # an incremental update
    done = pdfsig(nss, signed.read_bytes(), signed)
    assert "Signature is Valid." in done and "Certificate is Trusted." in done, done

    # The stamp is where the box was dropped: page 2 changed inside the box only, pages 1 and 3 not at all.
    from PIL import ImageChops

    after, before, pixels = stamped_in_box(signed, original, 2, (x, y, w, h), tmp_path)
    changed = ImageChops.difference(after, before).getbbox()
    assert changed is not None and changed[0] >= pixels[0] - 1 and changed[1] >= pixels[1] - 1 and (
        changed[2] <= pixels[2] + 1 and changed[3] <= pixels[3] + 1), (changed, pixels)
    for other in (1, 3):
        assert rendered(signed, other, tmp_path / f"p{other}a").tobytes() == rendered(
            original, other, tmp_path / f"p{other}b").tobytes()
    page.context.close()
