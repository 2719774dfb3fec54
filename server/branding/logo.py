"""Checking an uploaded logo: a PNG re-encoded from its pixels, or an SVG rebuilt from an allow-list, plus the PNG
that stamps and e-mails use.

- Size: at most ``max_bytes`` as uploaded.
- PNG: Pillow reads the header first (so a decompression bomb is refused before its pixels are decoded), the
  dimensions must lie within ``MIN_SIDE`` … ``max_width`` × ``max_height``, and the image is stored as a PNG
  written anew from its pixels: text chunks, ICC profiles and anything after IEND stay behind.
- SVG: parsed with :func:`server.xmlsafe.parse_xml` (no DTD, no entities, no network), then copied element by
  element: only SVG elements of :data:`ELEMENTS` and attributes of :data:`ATTRIBUTES`; an ``href`` only as a
  reference into the same document (``#id``), ``url(…)`` values only as ``url(#id)``; everything else
  (``script``, ``foreignObject``, ``style``, event handlers, external or ``data:`` references, comments,
  processing instructions) is dropped. The copy is rasterised with cairosvg for the PNG.

A logo therefore can neither run script in a page that shows it nor bring transparency groups, fonts or
external content into a PDF/A stamp (the stamp flattens the PNG, see server.signing.stamp).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from lxml import etree
from PIL import Image, UnidentifiedImageError

from server.errors import Code, SiegelError
from server.xmlsafe import parse_xml

PNG = "image/png"
SVG = "image/svg+xml"
MIN_SIDE = 16  # pixels (PNG) or user units (SVG) of the shorter side at least
RASTER_WIDTH = 600  # pixels of the PNG made from an SVG (the height keeps the aspect)
SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"

ELEMENTS = frozenset({
    "svg", "g", "defs", "title", "desc", "path", "rect", "circle", "ellipse", "line", "polyline", "polygon",
    "text", "tspan", "linearGradient", "radialGradient", "stop", "clipPath", "mask", "use", "symbol"})
ATTRIBUTES = frozenset({
    "id", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx", "ry", "fx", "fy", "width", "height", "d",
    "points", "viewBox", "preserveAspectRatio", "transform", "version", "fill", "fill-opacity", "fill-rule",
    "stroke", "stroke-width", "stroke-opacity", "stroke-linecap", "stroke-linejoin", "stroke-miterlimit",
    "stroke-dasharray", "stroke-dashoffset", "opacity", "clip-path", "clip-rule", "mask", "offset", "stop-color",
    "stop-opacity", "gradientUnits", "gradientTransform", "spreadMethod", "clipPathUnits", "maskUnits",
    "font-family", "font-size", "font-weight", "font-style", "text-anchor", "dominant-baseline", "letter-spacing",
    "href"})
_URL = re.compile(r"url\s*\(", re.IGNORECASE)
_LOCAL_URL = re.compile(r"^\s*url\(\s*#[A-Za-z_][\w.-]*\s*\)\s*$")
_LOCAL_HREF = re.compile(r"^#[A-Za-z_][\w.-]*$")
_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(px)?\s*$")


@dataclass(frozen=True)
class LogoLimits:
    max_bytes: int
    max_width: int
    max_height: int


@dataclass(frozen=True)
class CheckedLogo:
    """A logo that passed the checks: what the portal serves (``content``, ``mime_type``) and its PNG."""

    content: bytes
    mime_type: str
    png: bytes


def check_logo(data: bytes, limits: LogoLimits) -> CheckedLogo:
    """The logo in ``data`` (PNG or SVG, told by its bytes) checked and cleaned; BAD_REQUEST saying why not."""
    if not data:
        raise SiegelError(Code.BAD_REQUEST, "logo: the file is empty")
    if len(data) > limits.max_bytes:
        raise SiegelError(Code.BAD_REQUEST, f"logo: {len(data)} bytes, more than the {limits.max_bytes} allowed "
                                            "(setting branding.max_logo_bytes)")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        png = _check_png(data, limits)
        return CheckedLogo(png, PNG, png)
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        svg = sanitise_svg(data, limits)
        return CheckedLogo(svg, SVG, _rasterise(svg))
    raise SiegelError(Code.BAD_REQUEST, "logo: not a PNG or SVG file")


def _check_png(data: bytes, limits: LogoLimits) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise SiegelError(Code.BAD_REQUEST, "logo: not a PNG file")
            _check_size(image.width, image.height, limits, "pixels")
            image.load()
            pixels = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P", "PA") else "RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError) as exc:
        raise SiegelError(Code.BAD_REQUEST, f"logo: the PNG cannot be read ({exc})") from None
    out = io.BytesIO()
    pixels.save(out, "PNG", optimize=True)
    return out.getvalue()


def _check_size(width: float, height: float, limits: LogoLimits, unit: str) -> None:
    if min(width, height) < MIN_SIDE or width > limits.max_width or height > limits.max_height:
        raise SiegelError(Code.BAD_REQUEST, f"logo: {width:g} × {height:g} {unit}; allowed are {MIN_SIDE} to "
                                            f"{limits.max_width} × {limits.max_height} (settings "
                                            "branding.max_logo_width, branding.max_logo_height)")


def sanitise_svg(data: bytes, limits: LogoLimits) -> bytes:
    """An SVG rebuilt from the allowed elements and attributes of ``data`` (see the module's docstring)."""
    root = parse_xml(data, max_depth=64)
    if root.tag != f"{{{SVG_NS}}}svg":
        raise SiegelError(Code.BAD_REQUEST, "logo: the XML file is not an SVG image (root element svg in the "
                                            f"namespace {SVG_NS})")
    clean = _copy(root)
    assert clean is not None
    width, height = _dimensions(clean)
    _check_size(width, height, limits, "units")
    return etree.tostring(clean, xml_declaration=True, encoding="utf-8")


def _copy(element: etree._Element) -> etree._Element | None:
    if not isinstance(element.tag, str):  # comments, processing instructions
        return None
    namespace, _, name = element.tag[1:].partition("}") if element.tag.startswith("{") else ("", "", element.tag)
    if namespace != SVG_NS or name not in ELEMENTS:
        return None
    copy = etree.Element(f"{{{SVG_NS}}}{name}", nsmap={None: SVG_NS} if name == "svg" else None)
    for key, value in element.attrib.items():
        attribute = _attribute(key, value)
        if attribute is not None:
            copy.set(*attribute)
    copy.text = element.text if name in ("text", "tspan", "title", "desc") else None
    for child in element:
        kept = _copy(child)
        if kept is not None:
            kept.tail = child.tail if name in ("text", "tspan") else None
            copy.append(kept)
    return copy


def _attribute(key: str, value: str) -> tuple[str, str] | None:
    """The attribute as it may stay (``xlink:href`` becomes ``href``), or None."""
    if key.startswith("{"):
        namespace, _, name = key[1:].partition("}")
        if namespace != XLINK_NS or name != "href":
            return None
        key = "href"
    if key not in ATTRIBUTES:
        return None
    if key == "href":
        return (key, value) if _LOCAL_HREF.match(value.strip()) else None
    if _URL.search(value) and not _LOCAL_URL.match(value):
        return None
    return key, value


def _dimensions(svg: etree._Element) -> tuple[float, float]:
    """Width and height in user units: from width/height, else from the viewBox."""
    width, height = (_LENGTH.match(svg.get(n) or "") for n in ("width", "height"))
    if width and height:
        return float(width.group(1)), float(height.group(1))
    box = (svg.get("viewBox") or "").replace(",", " ").split()
    try:
        if len(box) == 4:
            return float(box[2]), float(box[3])
    except ValueError:
        pass
    raise SiegelError(Code.BAD_REQUEST, "logo: the SVG gives no size (width and height in px, or a viewBox)")


def _rasterise(svg: bytes) -> bytes:
    import cairosvg  # libcairo: loaded only when an SVG logo is uploaded

    try:
        return cairosvg.svg2png(bytestring=svg, output_width=RASTER_WIDTH, unsafe=False)
    except Exception as exc:  # noqa: BLE001 - cairosvg raises many kinds on odd input; the upload is refused
        raise SiegelError(Code.BAD_REQUEST, f"logo: the SVG cannot be drawn ({exc.__class__.__name__}: {exc})") from None
