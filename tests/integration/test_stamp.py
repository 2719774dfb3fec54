"""Visible PAdES stamps from appearance templates, signed with users' HSM keys on SoftHSM2: where poppler
draws them (``pdftoppm``), what text they carry (``pdftotext``), that ``pdfsig`` finds the signature valid,
``qpdf --check`` the file sound, and that PDF/A-2b and PDF/A-3b inputs keep what makes them PDF/A."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import subprocess
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from fontTools.ttLib import TTFont
from PIL import Image, ImageChops
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields
from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner
from pyhanko.stamp import BaseStampStyle

from server.config import Settings, load
from server.errors import Code, ConfigError, SiegelError
from server.signing.cades import SigningKey
from server.signing.stamp import (
    AppearanceTemplate,
    StampFields,
    choose_template,
    load_templates,
    stamp_style,
    stamp_text,
)
from tests.fixtures.pdf import HsmPdfSigner
from tests.fixtures.pdfa import A4, FONT, make_pdfa, pdfa_properties
from tests.fixtures.pki import Pki, user_key

pytestmark = pytest.mark.integration

SIGNER = "Jürgen Weiß"
BOX = (120, 300, 340, 80)  # x, y, width, height in points: an empty part of the page
LOGO_TEAL = (0, 128, 128)  # the shipped logo's colour
VERIFY_URL = "https://siegel.example.com/portal/verify/4711"


def _sign(key: SigningKey, pdf: bytes, style: BaseStampStyle, box: tuple[int, int, int, int] = BOX,
          page: int = 1) -> bytes:
    """A PAdES B-B signature in a new visible field at ``box`` on ``page`` (1 = the first), drawn by ``style``."""
    x, y, w, h = box
    signer = PdfSigner(PdfSignatureMetadata(field_name="Signature1", md_algorithm="sha256",
                                            subfilter=fields.SigSeedSubFilter.PADES),
                       signer=HsmPdfSigner(key), stamp_style=style,
                       new_field_spec=fields.SigFieldSpec("Signature1", on_page=page - 1, box=(x, y, x + w, y + h)))
    out = asyncio.run(signer.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf))))
    return out.getvalue()


def _fields(key: SigningKey, reason: str | None = "Freigabe", location: str | None = "Köln",
            verify_url: str | None = None) -> StampFields:
    certificate = asn1_x509.Certificate.load(key.chain[0])
    return StampFields(signer=SIGNER, signed_at=datetime(2026, 12, 7, 9, 30, tzinfo=UTC), reason=reason,
                       location=location, issuer=certificate.issuer.native["common_name"],
                       serial=format(certificate.serial_number, "X"), verify_url=verify_url)


def _render(tmp_path: Path, pdf: bytes, name: str) -> Image.Image:
    """Page 1 at 72 dpi: one pixel per point, row 0 at the top of the page."""
    (tmp_path / f"{name}.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "72", "-png", "-f", "1", "-l", "1", "-singlefile", f"{name}.pdf", name],
                   cwd=tmp_path, check=True, timeout=60)
    return Image.open(tmp_path / f"{name}.png").convert("RGB")


def _pixel_box(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """A box in points from the lower left corner as pixel columns and rows (left, top, right, bottom)."""
    x, y, w, h = box
    return x, A4[3] - y - h, x + w, A4[3] - y


def _pdftotext(tmp_path: Path, pdf: bytes) -> str:
    (tmp_path / "text.pdf").write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", "text.pdf", "-"], cwd=tmp_path, capture_output=True, check=True,
                          timeout=60).stdout.decode()


def _pdfsig(tmp_path: Path, pdf: bytes) -> str:
    (tmp_path / "signed.pdf").write_bytes(pdf)
    done = subprocess.run(["pdfsig", "signed.pdf"], cwd=tmp_path, capture_output=True, timeout=60, check=False)
    return done.stdout.decode() + done.stderr.decode()


def _near(pixel: object, colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def _glyph_id(character: str) -> int:
    """The glyph of ``character`` in the templates' font (DejaVu Sans)."""
    with TTFont(FONT) as font:
        return font.getGlyphID(font.getBestCmap()[ord(character)])


def _glyph_codes_of_the_appearance(pdf: bytes) -> list[int]:
    """The glyph ids that the signature field's appearance shows (Identity-H: two bytes each, 0 = .notdef)."""
    reader = PdfFileReader(BytesIO(pdf))
    (annot,) = [a.get_object() for a in reader.root["/Pages"]["/Kids"][0].get_object()["/Annots"]]
    appearance = annot["/AP"]["/N"].get_object()
    hex_strings = re.findall(rb"<([0-9a-fA-F]+)>", re.sub(rb"<<.*?>>", b"", appearance.data, flags=re.DOTALL))
    return [int(h[i:i + 4], 16) for h in hex_strings for i in range(0, len(h), 4)]


@pytest.fixture
def templates(pki: Pki) -> dict[str, AppearanceTemplate]:
    return load_templates(pki.settings)


def test_the_standard_stamp_fills_the_requested_box_with_logo_and_text_and_the_signature_is_valid(
        pki: Pki, templates: dict[str, AppearanceTemplate], tmp_path: Path) -> None:
    key = user_key(pki)
    document = make_pdfa(2)
    signed = _sign(key, document, stamp_style(templates["standard"], _fields(key), pdfa=False))

    changed = ImageChops.difference(_render(tmp_path, document, "before"), _render(tmp_path, signed, "after"))
    left, top, right, bottom = _pixel_box(BOX)
    drawn = changed.getbbox()
    assert drawn is not None
    assert left - 1 <= drawn[0] <= left + 1 and top - 1 <= drawn[1] <= top + 1, (drawn, BOX)  # the border
    assert right - 1 <= drawn[2] <= right + 1 and bottom - 1 <= drawn[3] <= bottom + 1, (drawn, BOX)

    after = _render(tmp_path, signed, "after")
    teal = [divmod(i, after.width)[::-1] for i, p in enumerate(after.get_flattened_data()) if _near(p, LOGO_TEAL)]
    assert len(teal) > 200
    assert all(left <= c <= left + BOX[3] and top <= r <= bottom for c, r in teal)  # the logo: the box's left square

    text = _pdftotext(tmp_path, signed)
    assert f"Digital signiert von {SIGNER}" in text and "Grund: Freigabe" in text and "Ort: Köln" in text
    assert "Datum: 07.12.2026 09:30:00 UTC" in text and "Aussteller: Siegel Issuing CA" in text
    assert f"Serien-Nr.: {_fields(key).serial}" in text
    glyphs = _glyph_codes_of_the_appearance(signed)
    assert {_glyph_id("ü"), _glyph_id("ß")} <= set(glyphs) and 0 not in glyphs  # drawn with their glyphs, no .notdef

    assert "Signature Validation: Signature is Valid." in _pdfsig(tmp_path, signed)


@pytest.mark.parametrize("part", [2, 3])
def test_a_pdfa_input_stays_pdfa_after_signing(pki: Pki, templates: dict[str, AppearanceTemplate], tmp_path: Path,
                                               part: int) -> None:
    key = user_key(pki)
    document = make_pdfa(part)
    before = pdfa_properties(document)
    signed = _sign(key, document, stamp_style(templates["standard"], _fields(key), pdfa=True))
    after = pdfa_properties(signed)

    assert before["output_intents"] == after["output_intents"] == [("/GTS_PDFA1", "sRGB IEC61966-2.1", 3)]
    assert (after["pdfaid_part"], after["pdfaid_conformance"]) == (str(part), "B")
    assert after["unembedded_fonts"] == []
    assert after["new_transparency"] == []
    assert after["revisions"] == 2  # an incremental update: the PDF/A original is left byte for byte
    assert signed.startswith(document)
    (flags,) = after["annotation_flags"]
    assert flags & 4 and not flags & (1 | 2 | 32)  # the widget prints; it is not invisible, hidden or NoView

    (tmp_path / "signed.pdf").write_bytes(signed)
    check = subprocess.run(["qpdf", "--check", "signed.pdf"], cwd=tmp_path, capture_output=True, timeout=60,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Signature Validation: Signature is Valid." in _pdfsig(tmp_path, signed)


def test_without_pdfa_the_transparent_logo_keeps_its_soft_mask(
        pki: Pki, templates: dict[str, AppearanceTemplate]) -> None:
    key = user_key(pki)
    signed = _sign(key, make_pdfa(2), stamp_style(templates["standard"], _fields(key), pdfa=False))
    assert [t.split(": ")[1] for t in pdfa_properties(signed)["new_transparency"]] == ["/SMask"]


def test_templates_are_chosen_by_name_and_an_unknown_name_is_refused(
        pki: Pki, templates: dict[str, AppearanceTemplate], tmp_path: Path) -> None:
    assert choose_template(templates, None, default=pki.settings.appearance.default).name == "standard"
    compact = choose_template(templates, "compact", default="standard")
    key = user_key(pki)
    document = make_pdfa(2)
    box = (300, 500, round(compact.default_box[2]), round(compact.default_box[3]))
    signed = _sign(key, document, stamp_style(compact, _fields(key), pdfa=True), box=box)
    text = _pdftotext(tmp_path, signed)
    assert f"Signiert: {SIGNER}" in text and "07.12.2026 09:30 UTC" in text and "Grund" not in text

    changed = ImageChops.difference(_render(tmp_path, document, "before"), _render(tmp_path, signed, "after"))
    drawn = changed.getbbox()
    left, top, right, bottom = _pixel_box(box)
    assert drawn is not None and left - 1 <= drawn[0] and top - 1 <= drawn[1] and drawn[2] <= right + 1 \
        and drawn[3] <= bottom + 1
    after = _render(tmp_path, signed, "after")
    assert not any(_near(p, LOGO_TEAL) for p in after.get_flattened_data())  # compact has no logo

    with pytest.raises(SiegelError) as caught:
        choose_template(templates, "fancy", default="standard")
    assert caught.value.code is Code.BAD_REQUEST
    assert "'fancy'" in caught.value.message and "compact, standard" in caught.value.message


def test_a_qr_template_draws_the_code_right_of_the_text(
        pki: Pki, templates: dict[str, AppearanceTemplate], tmp_path: Path) -> None:
    key = user_key(pki)
    with_qr = dataclasses.replace(templates["standard"], qr=True)
    with pytest.raises(SiegelError) as caught:
        stamp_style(with_qr, _fields(key), pdfa=True)
    assert "verification URL" in caught.value.message

    document = make_pdfa(2)
    signed = _sign(key, document, stamp_style(with_qr, _fields(key, verify_url=VERIFY_URL), pdfa=True))
    after = _render(tmp_path, signed, "after")
    _, top, right, bottom = _pixel_box(BOX)
    square = after.crop((right - BOX[3] + 6, top + 6, right - 6, bottom - 6)).convert("L")
    dark = sum(square.histogram()[:100]) / (square.width * square.height)
    assert 0.3 < dark < 0.7, dark  # QR modules: about half dark
    assert pdfa_properties(signed)["new_transparency"] == []
    assert "Signature Validation: Signature is Valid." in _pdfsig(tmp_path, signed)


# ---------------------------------------------------------------- templates without signing


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load(data_dir=tmp_path / "var", environ={})


def test_lines_without_their_optional_value_are_left_out(settings: Settings) -> None:
    fields = StampFields(SIGNER, datetime(2026, 12, 7, 9, 30, tzinfo=UTC), None, None, "Siegel Issuing CA", "1F",
                         None)
    assert stamp_text(load_templates(settings)["standard"], fields).splitlines() == [
        f"Digital signiert von {SIGNER}", "Datum: 07.12.2026 09:30:00 UTC", "Aussteller: Siegel Issuing CA",
        "Serien-Nr.: 1F"]

OPERATOR_TEMPLATE = """
logo = ""
font = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
font_size = 10
lines = ["Gezeichnet {signer}"]
date_format = "%Y-%m-%d"
time_format = "%H:%M"
qr = true
background = "#FFFFEE"
border = ""
text_colour = "#202020"
default_page = 2
default_box = [10, 20, 200, 50]
"""


def _settings_with(settings: Settings, **appearance: str) -> Settings:
    return dataclasses.replace(settings, appearance=dataclasses.replace(settings.appearance, **appearance))


def test_operator_templates_replace_and_add_to_the_shipped_ones(settings: Settings) -> None:
    folder = settings.path(settings.appearance.templates)
    folder.mkdir(parents=True)
    (folder / "compact.toml").write_text(OPERATOR_TEMPLATE, encoding="utf-8")
    (folder / "amt.toml").write_text(OPERATOR_TEMPLATE.replace("Gezeichnet", "Im Auftrag"), encoding="utf-8")
    templates = load_templates(_settings_with(settings, default="amt"))
    assert sorted(templates) == ["amt", "compact", "standard"]
    assert templates["compact"].lines == ("Gezeichnet {signer}",) and templates["compact"].qr
    assert templates["compact"].border is None and templates["compact"].default_page == 2
    assert templates["compact"].background == (1.0, 1.0, 238 / 255)
    assert templates["amt"].lines == ("Im Auftrag {signer}",)
    assert templates["standard"].logo is not None and templates["standard"].logo.name == "siegel-logo.png"


@pytest.mark.parametrize(("change", "message"), [
    (("qr = true", "qr = 1"), "qr is not bool"),
    (('lines = ["Gezeichnet {signer}"]', 'lines = ["{signer} {rank}"]'), "unknown placeholders ['rank']"),
    (('border = ""', 'border = "red"'), "border is a colour #RRGGBB"),
    (("default_page = 2", "default_page = 0"), "default_page counts from 1 (or is -1, the last page)"),
    (("default_box = [10, 20, 200, 50]", "default_box = [10, 20, 200]"), "default_box is [x, y, width, height]"),
    (('logo = ""', 'logo = "missing.png"'), "is not a readable image"),
    (('font = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"', 'font = "amt.toml"'), "is not a readable TrueType"),
    (("qr = true", "qr = true\nshadow = true"), "unknown keys ['shadow']"),
])
def test_a_broken_operator_template_is_a_configuration_error_naming_the_file(
        settings: Settings, change: tuple[str, str], message: str) -> None:
    folder = settings.path(settings.appearance.templates)
    folder.mkdir(parents=True)
    (folder / "amt.toml").write_text(OPERATOR_TEMPLATE.replace(*change), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_templates(settings)
    assert str(folder / "amt.toml") in caught.value.message and message in caught.value.message


def test_a_default_template_that_does_not_exist_is_a_configuration_error(settings: Settings) -> None:
    with pytest.raises(ConfigError) as caught:
        load_templates(_settings_with(settings, default="amt"))
    assert "appearance.default" in caught.value.message and "compact, standard" in caught.value.message


def test_a_brands_default_stamp_links_its_qr_code_under_the_brands_base_url(
        pki: Pki, templates: dict[str, AppearanceTemplate]) -> None:
    """The QR code of a branded default stamp points to the brand's verification page; unbranded, to the
    instance's."""
    from server.signing.engines import VERIFY_PATH, Appearances, pades_options
    from server.signing.levels import Level, Packaging
    from server.signing.order import Document, Format, PdfOptions, SignOrder, StampBrand

    known = Appearances({**templates, "standard": dataclasses.replace(templates["standard"], qr=True)}, "standard",
                        VERIFY_URL)
    pdf = make_pdfa(2)
    brand = StampBrand(None, "#b71c1c", "https://sign.acme.example")
    chain = user_key(pki).chain

    def qr_url(options: PdfOptions) -> str | None:
        order = SignOrder(Format.PADES, Level.B_B, Packaging.ENVELOPED, (Document("a.pdf", pdf),), pdf=options)
        stamp = pades_options(chain, order, pdf, lambda: known).stamp
        assert stamp is not None
        return stamp.qr_url

    assert qr_url(PdfOptions(brand=brand)) == "https://sign.acme.example" + VERIFY_PATH
    assert qr_url(PdfOptions()) == VERIFY_URL
