"""Branded PDF/A-2b documents made of text lines (the certificate of completion, validation reports): A4 pages of
DejaVu Sans 9 pt (an embedded subset, so any text the font has glyphs for), lines wider than the page between
its margins wrapped at spaces (by the width the font measures), and on the first page a band in the brand's
colour along the top edge and its logo (flattened onto white: no transparency) top right. The first two lines
(company, heading) make the document's title."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from io import BytesIO

import uharfbuzz as hb
from PIL import Image
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.images import pil_image
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

from server.branding.pdfa import FONT, declare_pdfa
from server.signing.stamp import EmbeddedFont

A4 = (0.0, 0.0, 595.0, 842.0)
MARGIN = 50.0  # points left and right of the text
TOP = 800.0  # points: the first line's baseline
FONT_SIZE = 9
LEADING = 12.0
LINES_PER_PAGE = 60
LOGO_HEIGHT = 40.0  # points: the company logo on the first page (at most 200 wide)
BAND_HEIGHT = 10.0  # points: the band in the brand's colour above the logo
MISSING = "?"  # stands for a character the font has no glyph for (PDF/A forbids showing .notdef)


def _width(engine: GlyphAccumulator, text: str) -> float:
    """The width of ``text`` in points, shaped by HarfBuzz as ``engine.shape`` does (without adding its glyphs)."""
    if not text:
        return 0.0  # HarfBuzz gives no positions for nothing
    buffer = hb.Buffer()
    buffer.add_str(text)
    buffer.guess_segment_properties()
    hb.shape(engine.hb_font, buffer, engine.features)
    return sum(position.x_advance for position in buffer.glyph_positions) / engine.units_per_em * FONT_SIZE


def _fitting(engine: GlyphAccumulator, text: str, width: float, least: int) -> int:
    """The length of the longest start of ``text`` no wider than ``width``, at least ``least``: the bound doubled
    while the start fits, then bisected (a word of thousands of characters stays quick)."""
    bound = least
    while bound < len(text) and _width(engine, text[:bound]) <= width:
        bound = min(2 * bound, len(text))
    fits = bisect.bisect_right(range(least, bound + 1), width, key=lambda n: _width(engine, text[:n]))
    return max(least, least + fits - 1)


def _wrapped(engine: GlyphAccumulator, line: str, width: float) -> list[str]:
    """``line`` in pieces no wider than ``width``, broken at spaces (inside a word too long for a line),
    continuations indented as the line."""
    indent = line[:len(line) - len(line.lstrip(" "))]
    out: list[str] = []
    current = ""
    for word in line[len(indent):].split(" "):
        candidate = f"{current} {word}" if current else indent + word
        if current and _width(engine, candidate) > width:
            out.append(current)  # the word starts the next piece
            candidate = indent + word
        while (cut := _fitting(engine, candidate, width, len(indent) + 1)) < len(candidate):
            out.append(candidate[:cut])
            candidate = indent + candidate[cut:]
        current = candidate
    return out + [current]


def _rgb(colour: str) -> tuple[float, float, float]:
    """``#rrggbb`` (as the brand service keeps colours) as PDF fill values."""
    value = colour.lstrip("#")
    return tuple(int(value[i:i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def _logo(writer: PdfFileWriter, logo_png: bytes) -> tuple[generic.IndirectObject, bytes]:
    """The logo flattened onto white as an image XObject, and the commands drawing it top right."""
    with Image.open(BytesIO(logo_png)) as opened:
        rgba = opened.convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    width = min(LOGO_HEIGHT * flat.width / flat.height, 200.0)
    height = width * flat.height / flat.width
    return pil_image(flat, writer), b" q %g 0 0 %g %g %g cm /Logo Do Q" % (width, height, A4[2] - MARGIN - width,
                                                                           790.0)


def text_pdf(lines: Sequence[str], logo_png: bytes | None = None, colour: str | None = None) -> bytes:
    """The lines (one at least not empty) on A4 pages; on the first page the band in ``colour`` (``#rrggbb``,
    None: none) and the logo."""
    writer = PdfFileWriter(stream_xrefs=False)
    declare_pdfa(writer, 2, " - ".join(line for line in lines[:2] if line))
    engine = EmbeddedFont.of(FONT, FONT_SIZE).create_font_engine(writer)
    glyphs = engine.tt.getBestCmap()
    shown = ["".join(c if ord(c) in glyphs else MISSING for c in line) for line in lines]
    wrapped = [piece for line in shown for piece in _wrapped(engine, line, A4[2] - 2 * MARGIN)]
    font = engine.as_resource()
    for first in range(0, len(wrapped), LINES_PER_PAGE):
        content = b"BT /F1 %d Tf %g %g Td " % (FONT_SIZE, MARGIN, TOP)
        for line in wrapped[first:first + LINES_PER_PAGE]:
            shaped = engine.shape(line)  # ends where the line ends: back to the start of the next
            content += shaped.graphics_ops + b" %g %g Td " % (-shaped.x_advance * FONT_SIZE, -LEADING)
        content += b"ET"
        resources = generic.DictionaryObject({pdf_name("/Font"): generic.DictionaryObject({pdf_name("/F1"): font})})
        if first == 0 and colour is not None:
            content += b" q %.3f %.3f %.3f rg 0 %g %g %g re f Q" % (*_rgb(colour), A4[3] - BAND_HEIGHT, A4[2],
                                                                      BAND_HEIGHT)
        if first == 0 and logo_png is not None:
            image, drawn = _logo(writer, logo_png)
            resources[pdf_name("/XObject")] = generic.DictionaryObject({pdf_name("/Logo"): image})
            content += drawn
        writer.insert_page(PageObject(writer.add_object(generic.StreamObject(stream_data=content)), A4, resources))
    out = BytesIO()
    writer.write(out)
    return out.getvalue()
