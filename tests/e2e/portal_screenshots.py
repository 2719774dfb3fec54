"""The README's screenshots of the portal, taken in headless Chromium from a whole `siegel serve` set up with
the e2e fixtures: the login page, a signer's inbox, a step's page with its signature field highlighted, the
page to sign one's own PDF with the signature box dragged onto it, and the admin dashboard's charts (signatures
per day, workflow durations).

Regenerate the committed ones with ``.venv/bin/python -m tests.e2e.portal_screenshots`` (writes
docs/screenshots/*.png); tests/e2e/test_portal_screenshots.py runs the same code into a temporary folder."""

from __future__ import annotations

import base64
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import requests

from tests.e2e.test_portal import check_page, login
from tests.e2e.test_portal_inbox import CHEF, WAIT, add_accounts, start_workflow
from tests.fixtures.browser import REPO, launch, new_page
from tests.fixtures.pdf import EmptyField, make_pdf
from tests.fixtures.server import SiegelInstance, make_instance

ADMIN = ("ada", "ada-admin-password")
SIGNER = ("sam", "sam-signer-password")
VIEWPORT = (1280, 800)  # every screenshot is one viewport of this size (CSS pixels, scale 1)
NAMES = ("login", "inbox", "step", "sign", "dashboard", "durations")  # the PNGs, in the order taken
OUT = REPO / "docs" / "screenshots"


@contextlib.contextmanager
def running_portal(base: Path) -> Iterator[SiegelInstance]:
    """A started server under ``base`` with an admin, a signer and a template manager (password logins)."""
    inst = make_instance(base, {"SIEGEL_TWOFACTOR_REQUIRED_ROLES": ""})
    add_accounts(inst, {ADMIN: "admin", SIGNER: "signer", CHEF: "template_manager"})
    inst.start()
    try:
        yield inst
    finally:
        inst.stop()


def seed(inst: SiegelInstance) -> None:
    """Two workflow steps waiting for the signer (one with a field, one with a box), signatures of three
    formats for the dashboard's chart, and approvals of two templates completed after a few seconds each for
    the duration chart."""
    start_workflow(inst, "Rahmenvertrag", {
        "name": "Geschäftsführung", "assignee": {"user": SIGNER[0]}, "action": "sign",
        "signature": {"level": "B-B", "field": "Unterschrift"}},
        make_pdf(fields=[EmptyField("Unterschrift", 0, (320, 560, 540, 630))]), "rahmenvertrag.pdf")
    start_workflow(inst, "Angebot", {
        "name": "Vertrieb", "assignee": {"user": SIGNER[0]}, "action": "sign",
        "signature": {"level": "B-B", "page": -1, "box": [350, 60, 180, 50]}}, make_pdf(pages=2), "angebot.pdf")
    for fmt, body, ctype in (("pades", make_pdf(), "application/pdf"), ("pades", make_pdf(pages=2), "application/pdf"),
                             ("xades", b"<doc>Bestellung</doc>", "application/xml"),
                             ("cades", b"Rechnung 4711", "application/octet-stream")):
        r = requests.post(f"{inst.url}/api/v1/sign?format={fmt}&level=B-B", data=body, auth=inst.auth,
                          headers={"Content-Type": ctype}, timeout=120)
        assert r.status_code == 200, r.text
    api = inst.url + "/api/v1/workflows"
    for name, delays in (("Urlaubsantrag", (0.5, 1.5, 2.0, 4.0)), ("Bestellfreigabe", (1.0, 2.5))):
        r = requests.post(api + "/templates", auth=CHEF, timeout=30, json={"name": name, "definition": {
            "starters": {"roles": ["integration"]}, "steps": [
                {"name": "Freigabe", "assignee": {"user": SIGNER[0]}, "action": "approve"}]}})
        assert r.status_code == 201, r.text
        started = []
        for _ in delays:
            r = requests.post(api, auth=inst.auth, timeout=60, json={
                "template": name, "document": base64.b64encode(make_pdf()).decode(), "documentName": "antrag.pdf"})
            assert r.status_code == 201, r.text
            started.append((time.monotonic(), r.json()["id"]))
        for delay, (at, workflow) in zip(delays, started):
            time.sleep(max(0.0, at + delay - time.monotonic()))
            r = requests.post(f"{api}/{workflow}/steps/1", auth=SIGNER, timeout=60, json={"action": "approve"})
            assert r.status_code == 200, r.text


def shoot(page: Any, out: Path, name: str, errors: list[str]) -> Path:
    """One viewport of ``page`` as ``out/name.png``, its colours reduced (Pillow) to keep the file small."""
    from PIL import Image

    check_page(page, errors)
    path = out / f"{name}.png"
    page.screenshot(path=str(path))
    Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)
    return path


def centre(page: Any, selector: str) -> None:
    """Scroll so that the element ``selector`` is in the middle of the viewport."""
    page.locator(selector).evaluate("e => e.scrollIntoView({block: 'center'})")


def take_screenshots(browser: Any, inst: SiegelInstance, out: Path) -> list[Path]:
    """Seed ``inst`` and save the screenshots named in :data:`NAMES` into ``out``."""
    seed(inst)
    out.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    viewport = {"width": VIEWPORT[0], "height": VIEWPORT[1]}
    page = new_page(browser, errors)
    page.set_viewport_size(viewport)
    page.goto(inst.url + "/portal/login")
    shots = [shoot(page, out, "login", errors)]

    login(page, inst.url, SIGNER)
    page.get_by_role("link", name="Inbox").first.click()
    page.wait_for_selector("li[data-workflow]", timeout=WAIT)
    shots.append(shoot(page, out, "inbox", errors))
    page.get_by_role("link", name="Review rahmenvertrag.pdf").click()
    page.wait_for_selector("#pages[data-highlighted]", state="attached", timeout=WAIT)
    centre(page, "#field-highlight")
    shots.append(shoot(page, out, "step", errors))

    document = inst.data_dir.parent / "vertrag.pdf"
    document.write_bytes(make_pdf())
    page.get_by_role("link", name="Sign a document").first.click()
    page.get_by_label("File").set_input_files(str(document))
    page.wait_for_selector("#pages[data-rendered='1']", timeout=WAIT)
    box = page.locator("#sigbox").bounding_box()
    target = page.locator(".pdf-page[data-page='1'] canvas").bounding_box()
    assert box is not None and target is not None
    page.mouse.move(box["x"] + 10, box["y"] + 10)
    page.mouse.down()
    page.mouse.move(target["x"] + target["width"] * 0.55, target["y"] + target["height"] * 0.25, steps=12)
    page.mouse.up()
    centre(page, "#sigbox")
    shots.append(shoot(page, out, "sign", errors))
    page.context.close()

    page = new_page(browser, errors)
    page.set_viewport_size(viewport)
    login(page, inst.url, ADMIN)
    page.get_by_role("link", name="Administration").first.click()
    page.locator("#signatures-chart").scroll_into_view_if_needed()
    shots.append(shoot(page, out, "dashboard", errors))
    centre(page, "#durations-chart")
    shots.append(shoot(page, out, "durations", errors))
    page.context.close()
    return shots


def main() -> None:
    """Regenerate docs/screenshots/*.png."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="siegel-screenshots-") as base, running_portal(Path(base)) as inst, \
            sync_playwright() as p:
        browser = launch(p)
        try:
            for path in take_screenshots(browser, inst, OUT):
                print(f"{path.relative_to(REPO)}: {path.stat().st_size // 1024} KiB")
        finally:
            browser.close()


if __name__ == "__main__":
    main()
