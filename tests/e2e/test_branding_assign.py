"""Choosing brands outside the CLI, over a whole ``siegel serve`` with the two brands of test_branding (ACME under
http://127.0.0.1:PORT, Globex under http://localhost:PORT):

- REST: a workflow template's brand (POST/PUT ``/api/v1/workflows/templates``) and an API client's
  (``PUT /api/v1/api-clients/{key}``); an unknown brand is 404 naming it and changes nothing;
- the API client's brand on the stamp of a two-step signature (``/sign/prepare`` draws it, ``/complete`` signs);
- the admin dashboard: the template editor's and the API clients page's brand selects (CSRF as every form);
- the portal's sign result page: the validation report as the branded PDF, besides the JSON.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import Encoding

from tests.e2e.test_branding import BOX, GLOBEX, api, server  # noqa: F401 (server: a fixture)
from tests.e2e.test_branding_reports import LOGO_SIZE, base, check_report, images, stamp_shows
from tests.e2e.test_rest_sign import _outside_ca
from tests.e2e.test_workflows import PASSWORD, smtp  # noqa: F401 (smtp: a fixture)
from tests.fixtures.browser import Shots, new_page
from tests.fixtures.pdf import make_pdf
from tests.fixtures.server import SiegelInstance

pytestmark = pytest.mark.e2e
CHEF = ("chef", PASSWORD)
DEFINITION = {"starters": {"roles": ["integration", "admin"]}, "steps": [
    {"name": "Freigabe", "assignee": {"user": "chef"}, "action": "approve"}]}


def new_client(server: SiegelInstance, name: str) -> tuple[str, str]:
    """A new API client (key, secret) of the integration account, without a brand."""
    created = server.cli("apiclient", "create", "--user", server.user, "--name", name).stdout
    key, secret = (re.search(rf"{label}:\s+(\S+)", created).group(1)  # type: ignore[union-attr]
                   for label in ("key", "secret"))
    return key, secret


def clients(server: SiegelInstance, auth: tuple[str, str] = CHEF) -> requests.Response:
    return requests.get(server.url + "/api/v1/api-clients", auth=auth, timeout=30)


def brand_of_client(server: SiegelInstance, key: str) -> str | None:
    (found,) = [c for c in clients(server).json()["clients"] if c["key"] == key]
    return found["brand"]  # type: ignore[no-any-return]


def put_client(server: SiegelInstance, key: str, body: Any, auth: tuple[str, str] = CHEF) -> requests.Response:
    return requests.put(f"{server.url}/api/v1/api-clients/{key}", json=body, auth=auth, timeout=30)


def test_rest_gives_templates_and_api_clients_a_brand_and_refuses_an_unknown_one(server: SiegelInstance) -> None:
    r = api(server, "POST", "/templates", CHEF, json={"name": "Rahmen", "definition": DEFINITION, "brand": "acme"})
    assert r.status_code == 201, r.text
    template = r.json()
    assert (template["brand"], template["version"]) == ("acme", 1)
    path = f"/templates/{template['id']}"

    changed = {**DEFINITION, "description": "neu"}
    r = api(server, "PUT", path, CHEF, json={"definition": changed, "brand": "nobody"})
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert "'nobody'" in r.json()["detail"], r.text
    r = api(server, "GET", path, CHEF)
    assert (r.json()["brand"], r.json()["currentVersion"]) == ("acme", 1)  # neither brand nor version changed
    assert r.json()["definition"]["description"] == ""

    r = api(server, "PUT", path, CHEF, json={"brand": "globex"})  # the brand alone: no new version
    assert r.status_code == 200 and (r.json()["brand"], r.json()["currentVersion"]) == ("globex", 1), r.text
    r = api(server, "PUT", path, CHEF, json={"definition": changed})  # the definition alone keeps the brand
    assert (r.json()["brand"], r.json()["currentVersion"]) == ("globex", 2), r.text
    r = api(server, "PUT", path, CHEF, json={"brand": None})
    assert r.status_code == 200 and r.json()["brand"] is None, r.text
    assert api(server, "PUT", path, CHEF, json={"brand": 7}).status_code == 400
    assert api(server, "PUT", path, CHEF, json={}).status_code == 400
    r = api(server, "POST", "/templates", CHEF, json={"name": "Geist", "definition": DEFINITION, "brand": "nobody"})
    assert r.status_code == 404 and "'nobody'" in r.json()["detail"], r.text
    assert "Geist" not in [t["name"] for t in api(server, "GET", "/templates", CHEF).json()["templates"]]

    key, secret = new_client(server, "DMS Tochter")
    assert brand_of_client(server, key) is None
    r = put_client(server, key, {"brand": "globex"})
    assert r.status_code == 200 and (r.json()["key"], r.json()["brand"]) == (key, "globex"), r.text
    r = put_client(server, key, {"brand": "nobody"})
    assert r.status_code == 404 and "'nobody'" in r.json()["detail"], r.text
    assert brand_of_client(server, key) == "globex"
    missing = "ak_" + "0" * 32
    r = put_client(server, missing, {"brand": "acme"})
    assert r.status_code == 404 and missing in r.json()["detail"], r.text
    assert put_client(server, "not-a-key", {"brand": "acme"}).status_code == 400
    assert put_client(server, key, {}).status_code == 400
    assert put_client(server, key, {"brand": "acme"}, auth=(key, secret)).status_code == 403  # not an admin
    assert clients(server, (key, secret)).status_code == 403
    assert brand_of_client(server, key) == "globex"


def sign_two_step(server: SiegelInstance, auth: tuple[str, str], pdf: bytes) -> bytes:
    """``pdf`` signed (PAdES B-B, the stamp at BOX) with a key outside Siegel through prepare and complete."""
    key, leaf, root = _outside_ca()
    x, y, w, h = BOX
    r = requests.post(server.url + "/api/v1/sign/prepare", auth=auth, timeout=120,
                      params={"page": 1, "x": x, "y": y, "w": w, "h": h},
                      json={"format": "pades", "level": "B-B", "document": base64.b64encode(pdf).decode(),
                            "mimeType": "application/pdf",
                            "certificateChain": [base64.b64encode(c.public_bytes(Encoding.DER)).decode()
                                                 for c in (leaf, root)]})
    assert r.status_code == 200, r.text
    to_sign = base64.b64decode(r.json()["digestToSign"])
    value = key.sign(to_sign, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    r = requests.post(server.url + "/api/v1/sign/complete", auth=auth, timeout=120,
                      json={"stateId": r.json()["stateId"], "signatureValue": base64.b64encode(value).decode()})
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf", r.text
    return r.content


def test_the_api_clients_brand_is_on_a_two_step_stamp(server: SiegelInstance, tmp_path: Path) -> None:
    key, secret = new_client(server, "DMS Karte")
    assert put_client(server, key, {"brand": "globex"}).status_code == 200
    document = make_pdf()
    branded = sign_two_step(server, (key, secret), document)
    plain = sign_two_step(server, server.auth, document)  # the same account with its password: no brand
    assert stamp_shows(branded, tmp_path, GLOBEX) and LOGO_SIZE in images(branded, tmp_path)
    assert not stamp_shows(plain, tmp_path, GLOBEX) and LOGO_SIZE not in images(plain, tmp_path)


def login(page: Any, url: str) -> None:
    page.goto(url + "/portal/login")
    page.fill("#name", CHEF[0])
    page.fill("#password", CHEF[1])
    page.click("button[type=submit]")
    page.wait_for_url("**/portal/**")


def test_the_admin_pages_choose_the_brand_of_a_template_and_of_an_api_client(
        server: SiegelInstance, browser: Any, shots: Shots, console_errors: list[str]) -> None:
    r = api(server, "POST", "/templates", CHEF, json={"name": "Editor", "definition": DEFINITION})
    assert r.status_code == 201 and r.json()["brand"] is None, r.text
    template = r.json()["id"]
    key, _ = new_client(server, "DMS Admin")
    page = new_page(browser, console_errors)
    login(page, server.url)

    page.goto(f"{server.url}/portal/admin/templates/{template}")
    brand = page.get_by_label("Brand (pages, e-mails and stamps of its workflows)")
    assert brand.input_value() == ""
    brand.select_option("acme")
    page.get_by_role("button", name="Save the template").click()
    assert "saved as version 2" in page.get_by_role("status").inner_text()
    assert api(server, "GET", f"/templates/{template}", CHEF).json()["brand"] == "acme"
    page.goto(f"{server.url}/portal/admin/templates/{template}")
    assert page.get_by_label("Brand (pages, e-mails and stamps of its workflows)").input_value() == "acme"
    shots.take(page, "template-brand")

    page.get_by_role("link", name="API clients").click()
    row = page.locator(f"tr[data-client='{key}']")
    row.get_by_label(f"Brand of {key}").select_option("globex")
    row.get_by_role("button", name="Set the brand").click()
    assert f"API client {key}: brand globex." in page.get_by_role("status").inner_text()
    assert brand_of_client(server, key) == "globex"
    assert page.locator(f"tr[data-client='{key}']").get_by_label(f"Brand of {key}").input_value() == "globex"
    shots.take(page, "clients-brand")

    # A brand the select does not offer (a form sent by hand) is named, and nothing changes.
    csrf = page.locator(f"tr[data-client='{key}'] input[name=csrf]").input_value()
    r = page.request.post(server.url + "/portal/admin/clients/brand", form={"csrf": csrf, "key": key,
                                                                            "brand": "nobody"})
    assert r.status == 404 and "nobody" in r.text()
    r = page.request.post(server.url + "/portal/admin/clients/brand", form={"key": key, "brand": "acme"})
    assert r.status == 403  # no CSRF token
    assert brand_of_client(server, key) == "globex"
    assert not [e for e in console_errors if "Content Security Policy" in e]
    page.context.close()


def test_the_sign_result_page_offers_the_report_as_a_branded_pdf(
        server: SiegelInstance, browser: Any, shots: Shots, console_errors: list[str], tmp_path: Path) -> None:
    server.cli("ca", "issue", "chef")
    (tmp_path / "vertrag.pdf").write_bytes(make_pdf())
    page = new_page(browser, console_errors)
    globex = base(server, "globex")
    login(page, globex)
    page.goto(globex + "/portal/sign")
    page.get_by_label("File").set_input_files(str(tmp_path / "vertrag.pdf"))
    page.get_by_role("button", name="Sign", exact=True).click()
    page.wait_for_url("**/portal/sign/result/*", timeout=120000)
    assert page.locator("#verdict").inner_text() == "All signatures are valid."
    shots.take(page, "sign-result-globex")
    with page.expect_download() as download:
        page.locator("#download-report-pdf").click()
    assert download.value.suggested_filename == "vertrag-signed-report.pdf"
    text = check_report(Path(download.value.path()).read_bytes(), tmp_path, "Globex AG", GLOBEX)
    assert "Signature 1: valid (TOTAL-PASSED)" in text, text
    href = page.locator("#download-report-pdf").get_attribute("href")
    other = requests.get(globex + href, auth=server.auth, allow_redirects=False, timeout=30)
    assert other.status_code in (303, 401, 403, 404)  # only the signer's session gets it
    page.context.close()
