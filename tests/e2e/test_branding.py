"""Acceptance of company branding over a whole ``siegel serve``, a real SMTP server and headless Chromium.

Two brands on one server: ACME under http://127.0.0.1:PORT, Globex under http://localhost:PORT (the portal
picks the brand by the request's host). Shown here:
- the login page and the external signer's page (opened from the mailed link) look as each brand is configured:
  its logo is there and drawn, the header has its colour (sampled from the screenshot's pixels), the footer its
  links; the screenshots are kept under test-artifacts/;
- a workflow whose template has brand ACME mails from ACME's sender, with ACME's logo inline and links under
  ACME's base URL; the same template started by an API client of brand Globex mails as Globex;
- the PDF/A document signed through the external page with ACME's default stamp stays PDF/A and shows ACME's
  logo and colour (the page rendered by pdftoppm);
- a malicious SVG logo uploaded through the admin page is served without script, event handlers or outside
  references, and a page showing it runs nothing.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from PIL import Image

from tests.fixtures.browser import Shots, new_page
from tests.fixtures.pdfa import make_pdfa, pdfa_2b_text, pdfa_properties
from tests.fixtures.server import SiegelInstance, make_instance
from tests.e2e.test_workflows import PASSWORD, smtp  # noqa: F401 (smtp: a fixture)
from tests.fixtures.smtp import ReceivedMail, SmtpServer

pytestmark = pytest.mark.e2e
ACME = {"primary": (0xB7, 0x1C, 0x1C), "logo": (0x2E, 0x7D, 0x32)}  # red header, green logo
GLOBEX = {"primary": (0x15, 0x65, 0xC0), "logo": (0xEF, 0x6C, 0x00)}  # blue header, orange logo
BOX = (36, 36, 340, 80)  # the stamp on page 1: x, y, width, height in points


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


def _logo_png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (200, 80), colour).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Iterator[SiegelInstance]:
    base = tmp_path_factory.mktemp("branding")
    inst = make_instance(base, {
        "SIEGEL_MAIL_HOST": smtp.host, "SIEGEL_MAIL_PORT": str(smtp.port), "SIEGEL_MAIL_SENDER": "siegel@example.com",
        "SIEGEL_JOBS_POLL_SECONDS": "0.3", "SIEGEL_WORKFLOWS_MAIL_INTERVAL_SECONDS": "0.3"})
    inst.cli("user", "add", "chef", "--email", "chef@example.com", "--role", "admin", "--password-stdin",
             stdin=PASSWORD + "\n")
    for name, look, host, sender in (("acme", ACME, "127.0.0.1", "sign@acme.example"),
                                     ("globex", GLOBEX, "localhost", "docs@globex.example")):
        company = "ACME Bau GmbH" if name == "acme" else "Globex AG"
        inst.cli("brand", "set", name, "--company-name", company, "--primary-color", _hex(look["primary"]),
                 "--text-color", "#ffffff", "--public-base-url", f"http://{host}:{inst.port}",
                 "--imprint-url", f"https://{name}.example/imprint", "--privacy-url", f"https://{name}.example/privacy",
                 "--mail-from-name", f"{company} Signatur", "--mail-from-address", sender,
                 "--support-contact", f"support@{name}.example")
        (base / f"{name}.png").write_bytes(_logo_png(look["logo"]))
        inst.cli("brand", "logo", name, str(base / f"{name}.png"))
    yield from inst.serving()


def _pixel(png: bytes, x: int, y: int) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB").getpixel((x, y))  # type: ignore[return-value]


def _near(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b))


def watch(page: Any) -> list[str]:
    """The URLs the page failed to load (4xx, 5xx), Chromium's own /favicon.ico aside."""
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
    return failed


def check_look(page: Any, shots: Shots, name: str, look: dict[str, tuple[int, int, int]], company: str) -> bytes:
    """The page shows the brand: its logo loaded and drawn in its colour, the header in its colour, its footer."""
    logo = page.locator("#brand-logo")
    assert logo.get_attribute("alt") == company
    assert page.evaluate("document.getElementById('brand-logo').naturalWidth") == 200  # loaded, not broken
    path = shots.take(page, name, full_page=False)
    png = path.read_bytes()
    box = logo.bounding_box()
    assert box is not None
    assert _near(_pixel(png, int(box["x"] + box["width"] / 2), int(box["y"] + box["height"] / 2)), look["logo"])
    header = page.locator("header.top").bounding_box()
    assert header is not None
    assert _near(_pixel(png, int(header["x"] + header["width"] - 5), int(header["y"] + 3)), look["primary"])
    footer = page.locator("#brand-footer")
    assert company in footer.inner_text()
    assert footer.locator("a", has_text="Imprint").get_attribute("href").endswith(".example/imprint")
    return png


def test_the_login_page_looks_like_each_brand_under_its_own_host(server: SiegelInstance, browser: Any,
                                                                 shots: Shots, console_errors: list[str]) -> None:
    page = new_page(browser, console_errors)
    failed = watch(page)
    page.goto(f"http://127.0.0.1:{server.port}/portal/login")
    assert "ACME Bau GmbH" in page.title()
    acme = check_look(page, shots, "login-acme", ACME, "ACME Bau GmbH")
    page.goto(f"http://localhost:{server.port}/portal/login")
    assert "Globex AG" in page.title()
    globex = check_look(page, shots, "login-globex", GLOBEX, "Globex AG")
    assert acme != globex
    assert "Siegel" not in page.locator("header.top").inner_text()
    assert failed == []
    assert not [e for e in console_errors if "Content Security Policy" in e]  # brand.css, logo: our origin


def api(server: SiegelInstance, method: str, path: str, auth: tuple[str, str], **kwargs: Any) -> requests.Response:
    return requests.request(method, server.url + "/api/v1/workflows" + path, auth=auth, timeout=120, **kwargs)


def check_mail(mail: ReceivedMail, sender: str, base: str, look: dict[str, tuple[int, int, int]]) -> str:
    """The mail's sender, inline logo and links are the brand's; the link token."""
    message = mail.message
    assert message["From"].addresses[0].addr_spec == sender
    assert message["Subject"].startswith(("ACME Bau GmbH: ", "Globex AG: "))
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    links = re.findall(r"https?://[^\s<>\"']+", text)
    own = [link for link in links if not link.startswith(("https://acme.example", "https://globex.example"))]
    assert own and all(link.startswith(base + "/") for link in own), links
    assert f'href="{own[0].replace("&", "&amp;")}"' in html
    assert 'src="cid:brand-logo"' in html
    (logo,) = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert logo["Content-ID"] == "<brand-logo>"
    assert _near(_pixel(logo.get_content(), 100, 40), look["logo"])
    token = re.search(re.escape(base) + r"/portal/link\?token=([A-Za-z0-9_-]{43})", text)
    assert token, text
    return token.group(1)


def render(pdf: bytes, tmp_path: Path) -> Image.Image:
    """Page 1 rendered by pdftoppm at 72 dpi (one pixel per point)."""
    (tmp_path / "signed.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "72", "-f", "1", "-l", "1", "-png", "-singlefile", "signed.pdf", "page"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=60)
    return Image.open(tmp_path / "page.png").convert("RGB")


def test_a_workflow_of_each_brand_mails_and_signs_in_that_brand(server: SiegelInstance, smtp: SmtpServer,
                                                                browser: Any, shots: Shots,
                                                                console_errors: list[str], tmp_path: Path) -> None:
    chef = ("chef", PASSWORD)
    definition = {"starters": {"roles": ["integration", "admin"]}, "steps": [
        {"name": "Partner", "assignee": {"external": "{{partner}}"}, "action": "sign",
         "signature": {"level": "B-T", "page": 1, "box": list(BOX)}}]}
    r = api(server, "POST", "/templates", chef, json={"name": "Auftrag", "definition": definition})
    assert r.status_code == 201, r.text
    server.cli("brand", "assign", "acme", "--template", "Auftrag")
    created = server.cli("apiclient", "create", "--user", server.user, "--name", "DMS Globex").stdout
    key, secret = (re.search(rf"{label}:\s+(\S+)", created).group(1)  # type: ignore[union-attr]
                   for label in ("key", "secret"))
    server.cli("brand", "assign", "globex", "--client", key)
    document = make_pdfa(2)

    def start(auth: tuple[str, str], partner: str) -> int:
        r = api(server, "POST", "", auth, json={"template": "Auftrag", "documentName": "auftrag.pdf",
                                               "document": base64.b64encode(document).decode(),
                                               "variables": {"partner": partner}})
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    acme_id = start(server.auth, "kunde@acme-partner.example")  # the template's brand
    globex_id = start((key, secret), "kunde@globex-partner.example")  # the API client's brand wins
    acme_mail = smtp.mail_to("kunde@acme-partner.example", "please sign")
    globex_mail = smtp.mail_to("kunde@globex-partner.example", "please sign")
    acme_token = check_mail(acme_mail, "sign@acme.example", f"http://127.0.0.1:{server.port}", ACME)
    globex_token = check_mail(globex_mail, "docs@globex.example", f"http://localhost:{server.port}", GLOBEX)

    page = new_page(browser, console_errors)
    failed = watch(page)
    page.goto(f"http://localhost:{server.port}/portal/link?token={globex_token}")
    page.wait_for_selector("#pdf-pages[data-rendered='1'] canvas")
    globex_shot = check_look(page, shots, "external-globex", GLOBEX, "Globex AG")
    page.goto(f"http://127.0.0.1:{server.port}/portal/link?token={acme_token}")
    page.wait_for_selector("#pdf-pages[data-rendered='1'] canvas")  # the person sees the document
    acme_shot = check_look(page, shots, "external-acme", ACME, "ACME Bau GmbH")
    assert acme_shot != globex_shot
    assert "ACME Bau GmbH" in page.locator("main").inner_text()
    page.click("#act")
    page.wait_for_selector("#done")
    assert "ACME Bau GmbH" in page.locator("#done").inner_text()
    shots.take(page, "external-acme-done", full_page=False)
    assert failed == []
    assert not [e for e in console_errors if "Content Security Policy" in e]

    status = api(server, "GET", f"/{acme_id}", server.auth).json()
    assert status["state"] == "completed", status
    assert api(server, "GET", f"/{globex_id}", server.auth).json()["state"] == "running"
    signed = api(server, "GET", f"/{acme_id}/document", server.auth).content
    before, after = pdfa_properties(document), pdfa_properties(signed)
    assert before["output_intents"] == after["output_intents"] == [("/GTS_PDFA1", "sRGB IEC61966-2.1", 3)]
    assert (after["pdfaid_part"], after["pdfaid_conformance"]) == ("2", "B")
    assert after["unembedded_fonts"] == [] and after["new_transparency"] == []
    assert signed.startswith(document)  # an incremental update

    image = render(signed, tmp_path)
    image.save(shots.folder / "signed-page.png")
    x, y, w, h = BOX
    top = 842 - (y + h)  # pdftoppm's y runs down
    logo_pixels = [image.getpixel((px, top + h // 2)) for px in range(x + 8, x + 100, 4)]
    assert sum(_near(p, ACME["logo"], 30) for p in logo_pixels) >= len(logo_pixels) * 0.8, logo_pixels
    border = [image.getpixel((x + w // 2, row)) for row in (top - 1, top, top + 1)]
    assert any(_near(p, ACME["primary"], 60) for p in border), border  # the border in ACME's colour
    completion = api(server, "GET", f"/{acme_id}/certificate", server.auth)
    assert completion.status_code == 200, completion.text
    assert "ACME Bau GmbH" in pdfa_2b_text(completion.content, tmp_path)
    page_one = render(completion.content, tmp_path)
    corner = [page_one.getpixel((px, 842 - 810)) for px in range(445, 545, 5)]
    assert sum(_near(p, ACME["logo"], 30) for p in corner) >= len(corner) * 0.8, corner


EVIL_SVG = b"""<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="200" height="80"
     onload="alert('onload')">
  <script>alert('script')</script>
  <style>rect { fill: url(http://evil.example/x) }</style>
  <rect width="200" height="80" fill="#6a1b9a" onclick="alert('click')" style="fill:url(http://evil.example/y)"/>
  <image xlink:href="http://evil.example/track.png" width="10" height="10"/>
  <image href="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9ImFsZXJ0KDEpIi8+" width="10" height="10"/>
  <use xlink:href="http://evil.example/sprite.svg#a"/>
  <a href="javascript:alert('link')"><text x="5" y="40">x</text></a>
  <foreignObject width="100" height="100"><div xmlns="http://www.w3.org/1999/xhtml">
    <script>alert('foreign')</script></div></foreignObject>
</svg>"""


def test_a_malicious_svg_logo_is_neutralised(server: SiegelInstance, browser: Any, shots: Shots,
                                             console_errors: list[str]) -> None:
    server.cli("brand", "set", "evil", "--company-name", "Evil Corp", "--public-base-url", "http://evil.localhost")
    page = new_page(browser, console_errors)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"http://127.0.0.1:{server.port}/portal/login")
    page.fill("#name", "chef")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"http://127.0.0.1:{server.port}/portal/admin")
    page.get_by_role("link", name="Brands").click()  # the admin menu leads there
    page.wait_for_url("**/portal/admin/brands")
    page.fill("#logo-name", "evil")
    page.set_input_files("#logo-file", files=[{"name": "logo.svg", "mimeType": "image/svg+xml", "buffer": EVIL_SVG}])
    page.click("#logo-form button[type=submit]")
    assert "evil" in page.locator("[role=status]").inner_text()
    shots.take(page, "admin-brands")

    served = requests.get(f"{server.url}/portal/brand/logo", params={"b": "evil"}, timeout=10)
    assert served.headers["content-type"] == "image/svg+xml"
    assert "sandbox" in served.headers["content-security-policy"]
    body = served.content.lower()
    for bad in (b"script", b"onload", b"onclick", b"evil.example", b"javascript", b"data:", b"foreignobject",
                b"style", b"<image", b"xlink"):
        assert bad not in body, bad
    assert b'fill="#6a1b9a"' in body  # the drawing itself stays
    page.goto(f"{server.url}/portal/brand/logo?b=evil")  # opened on its own, too
    page.goto(f"http://127.0.0.1:{server.port}/portal/admin/brands")
    assert page.evaluate("document.querySelector('tr[data-brand=evil] img').naturalWidth") == 200
    assert dialogs == []

    refused = server.cli("brand", "logo", "evil", str(Path(__file__)), check=False)  # not an image
    assert refused.returncode != 0 and "not a PNG or SVG" in refused.stderr


def test_the_admin_page_creates_and_changes_a_brand(server: SiegelInstance, browser: Any, shots: Shots,
                                                    console_errors: list[str]) -> None:
    """The dashboard's brand form: a new brand with its fields, a wrong colour refused naming the field."""
    page = new_page(browser, console_errors)
    page.goto(f"http://127.0.0.1:{server.port}/portal/login")
    page.fill("#name", "chef")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"http://127.0.0.1:{server.port}/portal/admin/brands")
    values = {"company_name": "Initech AG", "primary_color": "#123456", "public_base_url": "https://sign.initech.example",
              "mail_from_address": "sign@initech.example", "imprint_url": "https://initech.example/impressum"}
    page.fill("#brand-name", "initech")
    for field, value in values.items():
        page.fill(f"#brand-{field}", value)
    page.click("#brand-form button[type=submit]")
    assert "initech" in page.locator("[role=status]").inner_text()
    assert "Initech AG" in page.locator("tr[data-brand=initech]").inner_text()
    shown = json.loads(server.cli("brand", "show", "initech").stdout)
    assert {field: shown[field] for field in values} == values

    page.fill("#brand-name", "initech")
    page.fill("#brand-primary_color", "blue")
    page.click("#brand-form button[type=submit]")
    assert "primary_color" in page.locator("[role=status], [role=alert]").first.inner_text()
    assert json.loads(server.cli("brand", "show", "initech").stdout)["primary_color"] == "#123456"  # unchanged
