"""My workflows in headless Chromium against a whole `siegel serve`: a signer starts a workflow in the portal, the
confirmation links to My workflows, which shows it running with 0 of 1 steps done and no downloads; once the
assignee signed (REST), it shows it completed and the signed PDF (the REST document's bytes, pdfsig: a valid
signature) and the signed certificate of completion download; another signer sees none of it and gets 404 for
its downloads. German labels too; no console errors on the starter's pages. Screenshots go to test-artifacts/<test>/."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from tests.e2e.test_portal import check_page, drop_file, login
from tests.fixtures.browser import Shots, new_page
from tests.fixtures.pdf import EmptyField, make_pdf, nss_trusting_server, pdfsig
from tests.fixtures.server import SiegelInstance, make_instance

pytestmark = pytest.mark.e2e

STARTER = ("sam", "sam-signer-password")
OTHER = ("eve", "eve-signer-password")
CHEF = ("chef", "chef-template-password")


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiegelInstance]:
    inst = make_instance(tmp_path_factory.mktemp("portal-workflows"), {"SIEGEL_TWOFACTOR_REQUIRED_ROLES": ""})
    for (name, password), role in ((STARTER, "signer"), (OTHER, "signer"), (CHEF, "template_manager")):
        inst.add_user(name, password, role)
    yield from inst.serving()


@pytest.fixture(scope="module")
def nss(portal: SiegelInstance, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nss_trusting_server(tmp_path_factory.mktemp("nss"), portal.url)


def test_a_starter_follows_a_workflow_and_downloads_the_signed_document_and_certificate(
        portal: SiegelInstance, nss: Path, browser: Any, shots: Shots, console_errors: list[str],
        tmp_path: Path) -> None:
    api = portal.url + "/api/v1/workflows"
    r = requests.post(api + "/templates", auth=CHEF, timeout=30, json={"name": "Auftrag", "definition": {
        "starters": {"roles": ["signer"]}, "steps": [
            {"name": "Freigabe", "assignee": {"user": CHEF[0]}, "action": "sign",
             "signature": {"level": "B-B", "field": "Sig1"}}]}})
    assert r.status_code == 201, r.text
    order = tmp_path / "auftrag.pdf"
    order.write_bytes(make_pdf(fields=[EmptyField("Sig1", 0, (300, 100, 500, 160))]))

    page = new_page(browser, console_errors)
    login(page, portal.url, STARTER)
    page.get_by_role("link", name="Start a workflow").first.click()
    drop_file(page, order, "application/pdf")
    page.get_by_label("Template", exact=True).select_option(label="Auftrag")
    page.get_by_role("button", name="Start", exact=True).click()
    workflow = int(page.get_by_role("status").inner_text().split()[1])
    page.get_by_role("link", name="Follow it under My workflows.").click()
    assert page.url.endswith(f"/portal/workflows#workflow-{workflow}")
    row = page.locator(f"tr[data-workflow='{workflow}']")
    cells = row.locator("td")
    assert [cells.nth(i).inner_text() for i in (0, 1, 2, 3, 5)] == ["Auftrag", "auftrag.pdf", "running", "0 of 1", "–"]
    assert page.get_by_role("link", name="My workflows").get_attribute("aria-current") == "page"

    r = requests.post(f"{api}/{workflow}/steps/1", auth=CHEF, timeout=120, json={"action": "sign"})
    assert r.status_code == 200 and r.json()["state"] == "completed", r.text
    page.reload()
    assert [cells.nth(i).inner_text() for i in (2, 3)] == ["completed", "1 of 1"]
    check_page(page, console_errors)
    shots.take(page, "my-workflows")
    with page.expect_download() as download:
        row.get_by_role("link", name="Signed document").click()
    signed = Path(download.value.path()).read_bytes()
    assert download.value.suggested_filename == "auftrag.pdf"
    assert signed == requests.get(f"{api}/{workflow}/document", auth=STARTER, timeout=30).content != order.read_bytes()
    report = pdfsig(nss, signed, tmp_path / "signed.pdf")
    assert "Signature is Valid." in report and report.count("Signature #") == 1, report
    with page.expect_download() as download:
        row.get_by_role("link", name="Certificate of completion").click()
    certificate = Path(download.value.path()).read_bytes()
    assert download.value.suggested_filename == f"completion-{workflow}.pdf" and certificate.startswith(b"%PDF-")
    assert "Signature is Valid." in pdfsig(nss, certificate, tmp_path / "certificate.pdf")
    page.goto(portal.url + "/portal/workflows?lang=de")
    assert page.get_by_role("heading", level=1).inner_text() == "Meine Workflows"
    assert cells.nth(3).inner_text() == "1 von 1"
    assert row.get_by_role("link", name="Signiertes Dokument").is_visible()
    assert row.get_by_role("link", name="Abschlusszertifikat").is_visible()
    check_page(page, console_errors)
    page.context.close()
    assert not console_errors, console_errors

    other = new_page(browser, console_errors)
    login(other, portal.url, OTHER)
    assert other.goto(portal.url + "/portal/workflows").ok and not other.locator("tr[data-workflow]").count()
    assert other.locator("#my-workflows").inner_text().count("You have not started a workflow yet.") == 1
    for what in ("document", "certificate"):
        assert other.goto(f"{portal.url}/portal/workflows/{workflow}/{what}").status == 404, what
    assert other.goto(f"{portal.url}/portal/workflows/x/document").status == 404
    other.context.close()
