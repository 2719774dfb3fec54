"""Branded PDF documents made of text lines (the certificate of completion, validation reports): A4 pages of
Helvetica 9 pt (WinAnsi), lines longer than :data:`WRAP` characters wrapped, and on the first page a band in the
brand's colour along the top edge and its logo (flattened onto white) top right."""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO

from PIL import Image
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.images import pil_image
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

A4 = (0.0, 0.0, 595.0, 842.0)
LINES_PER_PAGE = 60
LOGO_HEIGHT = 40.0  # points: the company logo on the first page (at most 200 wide)
BAND_HEIGHT = 10.0  # points: the band in the brand's colour above the logo
WRAP = 100  # characters per line of Helvetica 9 pt on A4 with 50 pt margins


def _text(value: str) -> bytes:
    raw = value.encode("cp1252", "replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _wrapped(lines: Sequence[str]) -> list[str]:
    return [chunk for line in lines for chunk in ([line[i:i + WRAP] for i in range(0, len(line), WRAP)] or [""])]


def _rgb(colour: str) -> tuple[float, float, float]:
    """``#rrggbb`` (as the brand service keeps colours) as PDF fill values."""
    value = colour.lstrip("#")
    return tuple(int(value[i:i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def text_pdf(lines: Sequence[str], logo_png: bytes | None = None, colour: str | None = None) -> bytes:
    """The lines on A4 pages; on the first page the band in ``colour`` (``#rrggbb``, None: none) and the logo."""
    writer = PdfFileWriter(stream_xrefs=False)
    font = writer.add_object(generic.DictionaryObject({
        pdf_name("/Type"): pdf_name("/Font"), pdf_name("/Subtype"): pdf_name("/Type1"),
        pdf_name("/BaseFont"): pdf_name("/Helvetica"), pdf_name("/Encoding"): pdf_name("/WinAnsiEncoding")}))
    wrapped = _wrapped(lines)
    for first in range(0, len(wrapped), LINES_PER_PAGE):
        content = b"BT /F1 9 Tf 12 TL 50 800 Td " + b" ".join(
            b"(" + _text(line) + b") Tj T*" for line in wrapped[first:first + LINES_PER_PAGE]) + b" ET"
        resources = generic.DictionaryObject({pdf_name("/Font"): generic.DictionaryObject({pdf_name("/F1"): font})})
        if first == 0 and colour is not None:
            content += b" q %.3f %.3f %.3f rg 0 %g %g %g re f Q" % (*_rgb(colour), A4[3] - BAND_HEIGHT, A4[2],
                                                                      BAND_HEIGHT)
        if first == 0 and logo_png is not None:
            with Image.open(BytesIO(logo_png)) as opened:
                rgba = opened.convert("RGBA")
            flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
            height = LOGO_HEIGHT
            width = min(height * flat.width / flat.height, 200.0)
            height = width * flat.height / flat.width
            resources[pdf_name("/XObject")] = generic.DictionaryObject({pdf_name("/Logo"): pil_image(flat, writer)})
            content += b" q %g 0 0 %g %g %g cm /Logo Do Q" % (width, height, float(A4[2]) - 50 - width, 790.0)
        writer.insert_page(PageObject(writer.add_object(generic.StreamObject(stream_data=content)), A4, resources))
    out = BytesIO()
    writer.write(out)
    return out.getvalue()
