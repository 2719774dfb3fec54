"""Visible signature appearances: templates named in the configuration, rendered as pyHanko stamp styles.

A template is one TOML file ``NAME.toml``: the shipped ones in ``config/appearances/``, the operator's in
the folder ``appearance.templates`` (inside the data directory), which add to and replace the shipped ones.
:func:`load_templates` reads and checks them all; :func:`choose_template` picks one by name (a request's,
else ``appearance.default``); :func:`stamp_style` turns a template and the values of one signature
(:class:`StampFields`) into the stamp style that pyHanko's ``PdfSigner`` draws (``stamp_style=``).

The stamp is a box filled with the background colour, the logo on the left, the text lines (in the
template's TrueType/OpenType font, embedded as a subset, so umlauts and ß render anywhere), a QR code to
the verification page on the right and a border. For PDF/A inputs (``pdfa=True``) a logo with an alpha
channel is flattened onto the background colour before it is embedded: the appearance then has no soft
mask, no transparency group and no constant alpha below 1.
"""

from __future__ import annotations

import re
import string
import tomllib
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any

import qrcode
from fontTools.ttLib import TTFont, TTLibError
from fontTools.ttLib.scaleUpem import scale_upem
from PIL import Image, UnidentifiedImageError
from pyhanko.pdf_utils import layout
from pyhanko.pdf_utils.content import ResourceType
from pyhanko.pdf_utils.font.api import FontEngineFactory
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.images import pil_image
from pyhanko.pdf_utils.qr import PdfStreamQRImage
from pyhanko.pdf_utils.text import TextBox, TextBoxStyle
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.stamp import BaseStamp, BaseStampStyle

from server.config import Settings
from server.errors import Code, ConfigError, SiegelError
from server.signing.order import StampBrand

SHIPPED = Path(__file__).resolve().parent.parent.parent / "config" / "appearances"
PLACEHOLDERS = ("signer", "date", "time", "reason", "location", "issuer", "serial")
OPTIONAL = ("reason", "location")  # a line naming one of these is left out when the signature has none
PADDING = 4.0  # points between the box's edge, the logo, the text and the QR code
BORDER_WIDTH = 1

Colour = tuple[float, float, float]


@dataclass(frozen=True)
class AppearanceTemplate:
    """How a visible signature looks; positions in points from the page's lower left corner."""

    name: str
    logo: Path | bytes | None  # PNG or JPEG (a file, or a brand's checked PNG)
    font: Path  # TrueType or OpenType
    font_size: int
    lines: tuple[str, ...]  # text lines with placeholders {signer} {date} {time} {reason} {location} {issuer} {serial}
    date_format: str  # strftime format of {date}
    time_format: str  # strftime format of {time}
    qr: bool  # a QR code pointing to the verification page
    background: Colour
    border: Colour | None  # None: no border
    text_colour: Colour
    default_page: int  # 1 = the first page, -1 = the last
    default_box: tuple[float, float, float, float]  # x, y, width, height


@dataclass(frozen=True)
class StampFields:
    """What one signature's stamp shows."""

    signer: str
    signed_at: datetime
    reason: str | None
    location: str | None
    issuer: str
    serial: str
    verify_url: str | None  # the verification page the QR code points to


_KEYS = {"logo": str, "font": str, "font_size": int, "lines": list, "date_format": str, "time_format": str,
         "qr": bool, "background": str, "border": str, "text_colour": str, "default_page": int,
         "default_box": list}


def load_templates(settings: Settings) -> dict[str, AppearanceTemplate]:
    """Every template by name: the shipped ones, replaced or added to by the operator's; the default must exist."""
    templates = _read_folder(SHIPPED)
    operator = settings.path(settings.appearance.templates)
    if operator.is_dir():
        templates.update(_read_folder(operator))
    if settings.appearance.default not in templates:
        raise ConfigError(f"setting appearance.default: there is no appearance template "
                          f"{settings.appearance.default!r} (known: {', '.join(sorted(templates))})")
    return templates


def choose_template(templates: dict[str, AppearanceTemplate], name: str | None, *,
                    default: str) -> AppearanceTemplate:
    """The template a request names, else the default; an unknown name is the caller's error."""
    chosen = default if name is None else name
    if chosen not in templates:
        raise SiegelError(Code.BAD_REQUEST, f"there is no appearance template {chosen!r} "
                                            f"(known: {', '.join(sorted(templates))})")
    return templates[chosen]


def branded(template: AppearanceTemplate, brand: StampBrand) -> AppearanceTemplate:
    """The template with a brand's logo (where it has one) and its colour as the border."""
    return replace(template, logo=brand.logo_png or template.logo, border=_rgb(brand.colour))


def stamp_text(template: AppearanceTemplate, fields: StampFields) -> str:
    """The template's lines filled in with one signature's values, lines without their optional value left out."""
    values: dict[str, str | None] = {
        "signer": fields.signer, "date": fields.signed_at.strftime(template.date_format),
        "time": fields.signed_at.strftime(template.time_format), "reason": fields.reason,
        "location": fields.location, "issuer": fields.issuer, "serial": fields.serial}
    shown = [line for line in template.lines if all(values[name] for name in _placeholders(line) if name in OPTIONAL)]
    return "\n".join(line.format_map({k: v or "" for k, v in values.items()}) for line in shown)


def stamp_style(template: AppearanceTemplate, fields: StampFields, *, pdfa: bool) -> SiegelStampStyle:
    """The pyHanko stamp style of one signature; ``pdfa``: the appearance must not use transparency."""
    if template.qr and not fields.verify_url:
        raise SiegelError(Code.INTERNAL, f"appearance template {template.name!r} shows a QR code, "
                                         "but the signature has no verification URL")
    text_style = TextBoxStyle(font=EmbeddedFont.of(template.font, template.font_size),
                              font_size=template.font_size, leading=round(template.font_size * 1.25),
                              text_color=template.text_colour,
                              box_layout_rule=_TEXT_LAYOUT)
    logo = None if template.logo is None else _logo_image(template.logo, template.background, pdfa=pdfa)
    return SiegelStampStyle(border_width=BORDER_WIDTH if template.border else 0, border_color=template.border,
                            text=stamp_text(template, fields), text_box_style=text_style,
                            fill=template.background, logo=logo,
                            qr_url=fields.verify_url if template.qr else None)


_TEXT_LAYOUT = layout.SimpleBoxLayoutRule(x_align=layout.AxisAlignment.ALIGN_MIN,
                                          y_align=layout.AxisAlignment.ALIGN_MID,
                                          inner_content_scaling=layout.InnerScaling.SHRINK_TO_FIT)


@dataclass(frozen=True)
class EmbeddedFont(FontEngineFactory):
    """A TrueType/OpenType font program embedded as a subset, its glyphs in 1/1000 em.

    pyHanko writes a font's advance widths unscaled into the PDF's ``/W`` array, which counts in 1/1000
    em, so the glyphs of a font with another units-per-em (DejaVu Sans: 2048) overlap or drift apart;
    :func:`_font_program` therefore rescales every font to 1000 units per em first.
    """

    program: bytes
    font_size: int

    @classmethod
    def of(cls, path: Path, font_size: int) -> EmbeddedFont:
        """The font in a TrueType/OpenType file, rescaled once per process."""
        return cls(_font_program(path), font_size)

    def create_font_engine(self, writer: BasePdfFileWriter, obj_stream: Any = None) -> GlyphAccumulator:
        """A glyph accumulator of this font for one writer (in an object stream where the writer has them)."""
        if obj_stream is None and writer.stream_xrefs:
            obj_stream = writer.prepare_object_stream()
        return GlyphAccumulator(writer, BytesIO(self.program), self.font_size, obj_stream=obj_stream)


@dataclass(frozen=True)
class SiegelStampStyle(BaseStampStyle):
    """A stamp style with every value already filled in (pyHanko's text parameters are not used)."""

    text: str = ""
    text_box_style: TextBoxStyle = field(default_factory=TextBoxStyle)
    fill: Colour = (1.0, 1.0, 1.0)
    logo: Image.Image | None = None  # RGB, or RGBA where transparency is allowed
    qr_url: str | None = None

    def create_stamp(self, writer: BasePdfFileWriter, box: layout.BoxConstraints,
                     text_params: dict[str, Any]) -> SiegelStamp:
        """The appearance of one signature field of the size ``box``."""
        return SiegelStamp(writer, self, box)


class SiegelStamp(BaseStamp):
    """Fill, logo, text and QR code laid out left to right inside the box."""

    style: SiegelStampStyle

    def _render_inner_content(self) -> list[bytes]:
        width, height = self.box.width, self.box.height
        inner = height - 2 * PADDING
        commands = [b"%g %g %g rg 0 0 %g %g re f" % (*self.style.fill, width, height)]
        left, right = PADDING, width - PADDING
        if self.style.logo is not None:
            logo_width = min(inner * self.style.logo.width / self.style.logo.height, width / 3)
            commands.append(self._logo(left, logo_width, inner))
            left += logo_width + PADDING
        if self.style.qr_url is not None:
            commands.append(self._qr(right - inner, inner))
            right -= inner + PADDING
        commands.append(self._text(left, max(right - left, 1.0), inner))
        return commands

    def _logo(self, x: float, width: float, height: float) -> bytes:
        """The logo scaled into ``width`` × ``height`` (aspect kept), vertically centred."""
        image = self.style.logo
        assert image is not None and self.writer is not None
        scale = min(width / image.width, height / image.height)
        w, h = image.width * scale, image.height * scale
        self.set_resource(ResourceType.XOBJECT, pdf_name("/Logo"), pil_image(image, self.writer))
        return b"q %g 0 0 %g %g %g cm /Logo Do Q" % (w, h, x, PADDING + (height - h) / 2)

    def _qr(self, x: float, size: float) -> bytes:
        """The QR code of the verification URL as filled rectangles, ``size`` points square."""
        code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
        code.add_data(self.style.qr_url)
        code.make()
        drawing = code.make_image(image_factory=PdfStreamQRImage).render_command_stream()
        natural = (code.modules_count + 2 * code.border) * code.box_size
        return b"q %g 0 0 %g %g %g cm %s Q" % (size / natural, size / natural, x, PADDING, drawing)

    def _text(self, x: float, width: float, height: float) -> bytes:
        """The text lines left-aligned in ``width`` × ``height``, shrunk if they do not fit."""
        box = TextBox(self.style.text_box_style, writer=self.writer, resources=self.resources,
                      box=layout.BoxConstraints(width, height))
        box.content = self.style.text
        return b"q 1 0 0 1 %g %g cm %s Q" % (x, PADDING, box.render())


def _logo_image(logo: Path | bytes, background: Colour, *, pdfa: bool) -> Image.Image:
    """The logo as RGB, or RGBA if it has transparency that may stay; otherwise flattened onto ``background``."""
    with Image.open(BytesIO(logo) if isinstance(logo, bytes) else logo) as opened:
        rgba = opened.convert("RGBA")
    if not pdfa and rgba.getchannel("A").getextrema() != (255, 255):
        return rgba
    ground = Image.new("RGBA", rgba.size, tuple(round(c * 255) for c in background) + (255,))
    return Image.alpha_composite(ground, rgba).convert("RGB")


def _placeholders(line: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(line) if name is not None]


def _read_folder(folder: Path) -> dict[str, AppearanceTemplate]:
    return {path.stem: _read_template(path) for path in sorted(folder.glob("*.toml"))}


def _read_template(path: Path) -> AppearanceTemplate:
    """One template file, every key checked; relative paths are taken from the file's folder."""
    def fail(message: str) -> ConfigError:
        return ConfigError(f"appearance template {path}: {message}")

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise fail(f"cannot be read: {exc}") from None
    if not re.fullmatch(r"[A-Za-z0-9_-]+", path.stem):
        raise fail("the file name is the template's name: letters, digits, - and _")
    unknown, missing = set(raw) - set(_KEYS), set(_KEYS) - set(raw)
    if unknown or missing:
        raise fail(f"unknown keys {sorted(unknown)}, missing keys {sorted(missing)} (keys: {', '.join(_KEYS)})")
    for key, typ in _KEYS.items():
        if not isinstance(raw[key], typ) or typ is int and isinstance(raw[key], bool):
            raise fail(f"{key} is not {typ.__name__}")
    lines = tuple(raw["lines"])
    if not lines or not all(isinstance(line, str) for line in lines):
        raise fail("lines is a list of one or more strings")
    for line in lines:
        try:
            names = _placeholders(line)
        except ValueError as exc:
            raise fail(f"line {line!r}: {exc}") from None
        if bad := [n for n in names if n not in PLACEHOLDERS]:
            raise fail(f"line {line!r} has unknown placeholders {bad} (known: {', '.join(PLACEHOLDERS)})")
    box = raw["default_box"]
    if len(box) != 4 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box) \
            or box[2] <= 2 * PADDING or box[3] <= 2 * PADDING:
        raise fail(f"default_box is [x, y, width, height] in points, width and height over {2 * PADDING:g}")
    if raw["default_page"] < 1 and raw["default_page"] != -1:
        raise fail("default_page counts from 1 (or is -1, the last page)")
    if not 4 <= raw["font_size"] <= 72:
        raise fail("font_size is from 4 to 72 points")
    return AppearanceTemplate(
        name=path.stem, logo=_check_logo(path, raw["logo"]) if raw["logo"] else None,
        font=_check_font(path, raw["font"]), font_size=raw["font_size"], lines=lines,
        date_format=raw["date_format"], time_format=raw["time_format"], qr=raw["qr"],
        background=_colour(path, "background", raw["background"]),
        border=_colour(path, "border", raw["border"]) if raw["border"] else None,
        text_colour=_colour(path, "text_colour", raw["text_colour"]),
        default_page=raw["default_page"], default_box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])))


def _check_logo(template: Path, value: str) -> Path:
    path = template.parent / value
    try:
        with Image.open(path) as image:
            kind = image.format
    except (OSError, UnidentifiedImageError):
        raise ConfigError(f"appearance template {template}: logo {path} is not a readable image") from None
    if kind not in ("PNG", "JPEG"):
        raise ConfigError(f"appearance template {template}: logo {path} is {kind}, not PNG or JPEG")
    return path


def _check_font(template: Path, value: str) -> Path:
    path = template.parent / value
    try:
        _font_program(path)
    except (OSError, TTLibError):
        raise ConfigError(f"appearance template {template}: font {path} is not a readable TrueType or "
                          "OpenType font") from None
    return path


@lru_cache(maxsize=16)
def _font_program(path: Path) -> bytes:
    """The font file with 1000 units per em (see :class:`EmbeddedFont`) and without FontForge's FFTM table
    (the subsetter warns on every signature that it cannot subset it), read once per process."""
    with TTFont(path) as font:
        if "FFTM" in font:
            del font["FFTM"]
        if font["head"].unitsPerEm != 1000:
            scale_upem(font, 1000)
        out = BytesIO()
        font.save(out)
    return out.getvalue()


def _colour(template: Path, key: str, value: str) -> Colour:
    if not re.fullmatch(r"#[0-9A-Fa-f]{6}", value):
        raise ConfigError(f"appearance template {template}: {key} is a colour #RRGGBB, not {value!r}")
    return _rgb(value)


def _rgb(value: str) -> Colour:
    """#rrggbb as pyHanko's RGB floats."""
    return (int(value[1:3], 16) / 255, int(value[3:5], 16) / 255, int(value[5:7], 16) / 255)
