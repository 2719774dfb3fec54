"""Branding of what a request gets outside a workflow, over a whole ``siegel serve`` with the two brands of
test_branding (ACME under http://127.0.0.1:PORT, Globex under http://localhost:PORT) and a real SMTP server:

- a PDF signed over REST or SOAP DSS by an API client of brand Globex carries Globex's default stamp (its logo
  drawn in the box, pdfimages lists it, pdfsig trusts the signature); signed with a password, no brand's logo;
- the validation report as PDF (REST ``Accept: application/pdf``, ``siegel verify --report-pdf``, the portal's
  download link) is PDF/A-2b and passes ``qpdf --check``, its text (pdftotext) gives the verdict and the signer,
  it shows the brand's logo and colour (rendered by pdftoppm), and the brand is the API client's, else the host's;
- password-reset and one-time-code mails come in the brand of the host the request came to: its sender, logo
  inline, company name and links under its base URL.
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from server.web.soap import DSS_NS
from server.xmlsafe import parse_xml
from tests.e2e.test_branding import ACME, BOX, GLOBEX, _near, _pixel, render, server  # noqa: F401 (server: a fixture)
from tests.e2e.test_dss_soap import SOAP_HEADERS, envelope
from tests.e2e.test_workflows import PASSWORD, smtp  # noqa: F401 (smtp: a fixture)
from tests.fixtures.browser import Shots, new_page
from tests.fixtures.pdf import make_pdf, nss_trusting, pdfsig
from tests.fixtures.pdfa import pdfa_2b_text
from tests.fixtures.server import SiegelInstance
from tests.fixtures.smtp import ReceivedMail, SmtpServer

pytestmark = pytest.mark.e2e
PADES_URI = "http://uri.etsi.org/19142/v1.1.1"
LOGO_SIZE = (200, 80)  # the brands' logos, as test_branding makes them


def base(server: SiegelInstance, brand: str) -> str:
    """The base URL of each brand's host."""
    return f"http://{'127.0.0.1' if brand == 'acme' else 'localhost'}:{server.port}"


def globex_client(server: SiegelInstance) -> tuple[str, str]:
    """A new API client (key, secret) of the integration account, of brand Globex."""
    created = server.cli("apiclient", "create", "--user", server.user, "--name", "DMS Globex").stdout
    key, secret = (re.search(rf"{label}:\s+(\S+)", created).group(1)  # type: ignore[union-attr]
                   for label in ("key", "secret"))
    server.cli("brand", "assign", "globex", "--client", key)
    return key, secret


def sign_rest(server: SiegelInstance, auth: tuple[str, str], pdf: bytes) -> bytes:
    x, y, w, h = BOX
    r = requests.post(server.url + "/api/v1/sign", params={"format": "pades", "page": 1, "x": x, "y": y, "w": w, "h": h},
                      data=pdf, headers={"content-type": "application/pdf"}, auth=auth, timeout=120)
    assert r.status_code == 200, r.text
    return r.content


def sign_soap(server: SiegelInstance, auth: tuple[str, str], pdf: bytes) -> bytes:
    x, y, w, h = BOX
    body = (f'<dss:SignRequest RequestID="brand-1"><dss:OptionalInputs><dss:SignatureType>{PADES_URI}'
            f'</dss:SignatureType><siegel:PdfSignature xmlns:siegel="urn:siegel:dss:1.0" Page="1" X="{x}" Y="{y}" '
            f'Width="{w}" Height="{h}"/></dss:OptionalInputs><dss:InputDocuments><dss:Document ID="d1">'
            f'<dss:Base64Data MimeType="application/pdf">{base64.b64encode(pdf).decode()}</dss:Base64Data>'
            "</dss:Document></dss:InputDocuments></dss:SignRequest>")
    r = requests.post(server.url + "/dss", data=envelope(body), headers=SOAP_HEADERS, auth=auth, timeout=120)
    assert r.status_code == 200, r.text
    answer = parse_xml(r.content, max_depth=64)
    assert answer.find(f".//{{{DSS_NS}}}ResultMajor").text.endswith(":Success"), r.text  # type: ignore[union-attr]
    return base64.b64decode(answer.find(f".//{{{DSS_NS}}}Base64Data").text)  # type: ignore[union-attr, arg-type]


def images(pdf: bytes, where: Path) -> list[tuple[int, int]]:
    """Width and height of every image pdfimages lists."""
    (where / "listed.pdf").write_bytes(pdf)
    done = subprocess.run(["pdfimages", "-list", "listed.pdf"], cwd=where, capture_output=True, text=True,
                          timeout=60, check=True)
    return [(int(cols[3]), int(cols[4])) for cols in (line.split() for line in done.stdout.splitlines()[2:])]


def stamp_shows(pdf: bytes, where: Path, look: dict[str, tuple[int, int, int]]) -> bool:
    """The stamp's box on page 1 shows the logo of ``look`` (most of a row through its middle)."""
    image = render(pdf, where)
    x, y, w, h = BOX
    top = 842 - (y + h)
    row = [image.getpixel((px, top + h // 2)) for px in range(x + 8, x + 100, 4)]
    return sum(_near(p, look["logo"], 30) for p in row) >= len(row) * 0.8


def check_report(pdf: bytes, where: Path, company: str, look: dict[str, tuple[int, int, int]]) -> str:
    """The report PDF is PDF/A-2b, sound and in the brand: its company name, logo (top right) and colour (top
    band)."""
    text = pdfa_2b_text(pdf, where)
    assert company in text, text
    assert LOGO_SIZE in images(pdf, where)
    page = render(pdf, where)
    corner = [page.getpixel((px, 842 - 810)) for px in range(450, 540, 5)]
    assert sum(_near(p, look["logo"], 30) for p in corner) >= len(corner) * 0.8, corner
    assert _near(page.getpixel((300, 4)), look["primary"], 30), page.getpixel((300, 4))
    return text


def verify_pdf(url: str, auth: tuple[str, str], signed: bytes) -> bytes:
    r = requests.post(url + "/api/v1/verify", data=signed, auth=auth, headers={"accept": "application/pdf"},
                      timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    return r.content


def test_api_clients_brand_stamps_and_reports_are_branded(server: SiegelInstance, browser: Any, shots: Shots,
                                                          console_errors: list[str], tmp_path: Path) -> None:
    client = globex_client(server)
    document = make_pdf()
    by_client = sign_rest(server, client, document)
    plain = sign_rest(server, server.auth, document)  # the same account with its password: no brand
    over_soap = sign_soap(server, client, document)
    assert stamp_shows(by_client, tmp_path, GLOBEX) and stamp_shows(over_soap, tmp_path, GLOBEX)
    assert not stamp_shows(plain, tmp_path, GLOBEX) and not stamp_shows(plain, tmp_path, ACME)
    assert LOGO_SIZE in images(by_client, tmp_path) and LOGO_SIZE not in images(plain, tmp_path)
    root = x509.load_der_x509_certificate(requests.get(server.url + "/ca/ROOT.crt", timeout=10).content)
    (tmp_path / "root.pem").write_bytes(root.public_bytes(Encoding.PEM))
    nss = nss_trusting(tmp_path, tmp_path / "root.pem")
    for signed in (by_client, over_soap):
        done = pdfsig(nss, signed, tmp_path / "signed.pdf")
        assert "Signature is Valid." in done and "Certificate is Trusted." in done, done

    (signature,) = requests.post(server.url + "/api/v1/verify", data=by_client, auth=server.auth,
                                 timeout=120).json()["signatures"]
    signer = signature["signer"]
    assert signer and signature["indication"] == "TOTAL-PASSED"

    # REST: the API client's brand, wherever the request goes; with a password, the host's brand.
    text = check_report(verify_pdf(base(server, "acme"), client, by_client), tmp_path, "Globex AG", GLOBEX)
    assert "Result: every signature is valid (1 signature)" in text
    assert "Signature 1: valid (TOTAL-PASSED)" in text and signer in text.replace("\n", ""), text
    assert "Format and level: PAdES B-T" in text and "Imprint: https://globex.example/imprint" in text, text
    check_report(verify_pdf(base(server, "acme"), server.auth, by_client), tmp_path, "ACME Bau GmbH", ACME)
    check_report(verify_pdf(base(server, "globex"), server.auth, by_client), tmp_path, "Globex AG", GLOBEX)
    marker = b"Rahmenvertrag zwischen der Muster GmbH"
    assert by_client.count(marker) == 1
    tampered = by_client.replace(marker, marker.replace(b"Muster", b"Meyer "))
    text = check_report(verify_pdf(base(server, "acme"), server.auth, tampered), tmp_path, "ACME Bau GmbH", ACME)
    assert "NOT every signature is valid" in text and "INVALID (TOTAL-FAILED" in text, text

    # CLI: the brand named, else the default brand (no brand is marked default here: the built-in one, no logo).
    (tmp_path / "in.pdf").write_bytes(by_client)
    server.cli("verify", str(tmp_path / "in.pdf"), "--report-pdf", str(tmp_path / "cli.pdf"), "--brand", "acme")
    text = check_report((tmp_path / "cli.pdf").read_bytes(), tmp_path, "ACME Bau GmbH", ACME)
    assert "Signature 1: valid (TOTAL-PASSED)" in text and signer in text.replace("\n", "")
    unknown = server.cli("verify", str(tmp_path / "in.pdf"), "--report-pdf", str(tmp_path / "no.pdf"), "--brand",
                         "nobody", check=False)
    assert unknown.returncode != 0 and "no brand 'nobody'" in unknown.stderr
    assert not (tmp_path / "no.pdf").exists()
    server.cli("verify", str(tmp_path / "in.pdf"), "--report-pdf", str(tmp_path / "default.pdf"))
    assert "every signature is valid" in pdfa_2b_text((tmp_path / "default.pdf").read_bytes(), tmp_path)

    # Portal: the report on the page and its PDF for download, in the brand of the page's host.
    page = new_page(browser, console_errors)
    page.goto(base(server, "globex") + "/portal/login")
    page.fill("#name", "chef")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.goto(base(server, "globex") + "/portal/verify")
    page.set_input_files("#file", str(tmp_path / "in.pdf"))
    page.get_by_role("button", name="Verify").click()
    assert page.locator("#verdict").inner_text() == "All signatures are valid."
    shots.take(page, "verify-report-globex")
    with page.expect_download() as download:
        page.click("#report-pdf")
    assert download.value.suggested_filename == "in-report.pdf"
    text = check_report(Path(download.value.path()).read_bytes(), tmp_path, "Globex AG", GLOBEX)
    assert "Signature 1: valid (TOTAL-PASSED)" in text and signer in text.replace("\n", "")
    elsewhere = requests.get(base(server, "globex") + page.locator("#report-pdf").get_attribute("href"),
                             auth=server.auth, allow_redirects=False, timeout=30)
    assert elsewhere.status_code in (303, 401, 403, 404)  # only the session that verified gets it
    assert not [e for e in console_errors if "Content Security Policy" in e]
    page.context.close()


def check_branded(mail: ReceivedMail, brand: str, server: SiegelInstance, subject: str) -> str:
    """The mail is in ``brand``'s look: sender, subject, company name, logo inline, links under its base URL;
    its plain text."""
    company, sender, look = {"acme": ("ACME Bau GmbH", "sign@acme.example", ACME),
                             "globex": ("Globex AG", "docs@globex.example", GLOBEX)}[brand]
    message = mail.message
    assert message["From"].addresses[0].addr_spec == sender
    assert message["Subject"].startswith(f"{company}: {subject}"), message["Subject"]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert company in text and "Siegel" not in text, text
    assert 'src="cid:brand-logo"' in html
    (logo,) = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert _near(_pixel(logo.get_content(), 100, 40), look["logo"])
    own = [link for link in re.findall(r"https?://[^\s<>\"']+", text) if ".example/" not in link]
    assert all(link.startswith(base(server, brand) + "/") for link in own), own
    return text


def test_password_reset_and_code_mails_are_in_the_brand_of_the_host(server: SiegelInstance, smtp: SmtpServer,
                                                                    browser: Any, console_errors: list[str]) -> None:
    for name in ("ada", "bob"):
        server.add_user(name, PASSWORD, "signer", signing_key=False)
    before = len(smtp.messages)
    r = requests.post(base(server, "globex") + "/api/v1/password-reset", json={"user": "ada"}, timeout=30)
    assert r.status_code == 202, r.text
    text = check_branded(smtp.mail_to("ada@example.com", "reset your password", since=before), "globex", server,
                         "reset your password")
    assert re.search(re.escape(base(server, "globex")) + r"/portal/reset\?token=[A-Za-z0-9_-]{43}", text), text

    page = new_page(browser, console_errors)
    page.goto(base(server, "acme") + "/portal/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("User name or e-mail address").fill("bob")
    page.get_by_role("button", name="Send a reset link").click()
    assert "a reset link is on its way" in page.get_by_role("status").inner_text()
    page.context.close()
    text = check_branded(smtp.mail_to("bob@example.com", "reset your password", since=before), "acme", server,
                         "reset your password")
    reset = re.search(re.escape(base(server, "acme")) + r"/portal/reset\?token=[A-Za-z0-9_-]{43}", text)
    assert reset, text
    assert requests.get(reset.group(0), timeout=30).status_code == 200  # the link opens the reset page

    for name, brand in (("ada", "globex"), ("bob", "acme")):
        r = requests.post(base(server, brand) + "/api/v1/2fa/otp", json={"channel": "email"},
                          auth=(name, PASSWORD), timeout=30)
        assert r.status_code == 202, r.text
        text = check_branded(smtp.mail_to(f"{name}@example.com", "your code", since=before), brand, server,
                             "your code")
        assert re.search(r"\b\d{6}\b", text), text
