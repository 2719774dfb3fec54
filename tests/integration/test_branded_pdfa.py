"""The branded text PDFs (server.branding.pdf) are PDF/A-2b: the certificate of completion of a real workflow,
signed, and the validation report of it in a brand with a half-transparent logo; DejaVu Sans embedded, so any
text (umlauts, ß, a dash) comes out as it went in, lines wrapped by their measured width."""

from __future__ import annotations

import re
import subprocess
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from server.branding.pdf import A4, MARGIN, text_pdf
from server.branding.report import report_lines
from server.branding.service import BrandInfo
from server.validation.report import to_json
from tests.fixtures.pdf import make_pdf
from tests.fixtures.pdfa import pdfa_2b_text, pdfa_properties
from tests.fixtures.http_sink import http_sink  # noqa: F401 (a fixture of world)
from tests.integration.test_workflows import SIGN, World, _contract, as_user, world  # noqa: F401 (world: a fixture)

pytestmark = pytest.mark.integration
NAME = "Vertrag Jürgen Weiß – Müller & Söhne.pdf"
BRAND = BrandInfo(id=1, name="mw", company_name="Müller & Weiß GmbH", primary_color="#6a1b9a",
                  accent_color="#000000", text_color="#ffffff", public_base_url="https://mw.example",
                  imprint_url="https://mw.example/impressum", privacy_url=None, mail_from_name="Müller & Weiß",
                  mail_from_address="sign@mw.example", support_contact="Jürgen Weiß <jw@mw.example>",
                  logo_type="image/png", logo_version="1", is_default=False)


def half_transparent_logo() -> bytes:
    out = BytesIO()
    Image.new("RGBA", (200, 80), (106, 27, 154, 128)).save(out, "PNG")
    return out.getvalue()


def widest_word(pdf: bytes, where: Path) -> float:
    """The right edge of the rightmost word pdftotext finds."""
    (where / "bbox.pdf").write_bytes(pdf)
    html = subprocess.run(["pdftotext", "-bbox", "bbox.pdf", "-"], cwd=where, capture_output=True, text=True,
                          timeout=60, check=True).stdout
    return max(float(x) for x in re.findall(r'xMax="([0-9.]+)"', html))


def test_the_signed_certificate_of_completion_and_its_validation_report_are_pdfa(world: World,
                                                                                 tmp_path: Path) -> None:
    anna = world.person("anna")
    template = _contract(world, [{"name": "Vertrieb", "assignee": {"user": "anna"}, "action": "sign",
                                  "signature": {**SIGN, "page": 1, "box": [50, 50, 200, 60]}}])
    wid = world.wf.start(world.admin, template, make_pdf(), NAME, {})["id"]
    world.wf.act(as_user(anna), wid, 1, "sign")
    certificate = world.wf.certificate(world.admin, wid)
    assert pdfa_properties(certificate)["revisions"] == 2  # signed by the workflow account
    text = pdfa_2b_text(certificate, tmp_path)
    assert f"Document: {NAME}" in text and "anna: sign at" in text, text
    assert pdfa_properties(certificate)["title"] == [f"Siegel - Certificate of completion - workflow {wid}"]

    report = to_json(world.verification.verify(certificate, name=NAME))
    assert report["passed"]
    report_pdf = text_pdf(report_lines(report, BRAND), half_transparent_logo(), BRAND.primary_color)
    assert pdfa_properties(report_pdf)["revisions"] == 1
    text = pdfa_2b_text(report_pdf, tmp_path)
    assert f"Validation report - {NAME}" in text and "Support: Jürgen Weiß <jw@mw.example>" in text, text
    assert "Signature 1: valid (TOTAL-PASSED)" in text and "system.workflows" in text, text
    assert widest_word(report_pdf, tmp_path) <= A4[2] - MARGIN


def test_long_lines_wrap_at_spaces_by_their_width_and_pages_follow(tmp_path: Path) -> None:
    words = [f"Wort{i}ßü" for i in range(60)]
    token = "0123456789abcdef" * 12  # no space in it: cut where the width ends
    pdf = text_pdf(["Müller & Weiß GmbH", "Bericht", "   Signer: Jürgen Weiß", "   " + " ".join(words),
                    "   " + token, "中"] + [f"Zeile {i}" for i in range(60)])
    text = pdfa_2b_text(pdf, tmp_path)
    assert "Signer: Jürgen Weiß" in text and "\f" in text.rstrip("\f")  # two pages
    found = re.findall(r"Wort\d+ßü", text)
    assert found == words, found  # every word whole, in order
    assert token in re.sub(r"\s", "", text)
    assert "?" in text.splitlines()  # no glyph in DejaVu Sans: shown as ?, never as .notdef
    lines_of_words = [line for line in text.splitlines() if "Wort" in line]
    assert len(lines_of_words) > 1 and all(line.startswith("   Wort") for line in lines_of_words), lines_of_words
    assert A4[2] - MARGIN - 40 < widest_word(pdf, tmp_path) <= A4[2] - MARGIN
