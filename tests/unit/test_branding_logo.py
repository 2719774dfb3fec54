"""Logo checks (server.branding.logo): what a PNG or SVG upload becomes, and what is refused."""

from __future__ import annotations

import io

import pytest
from lxml import etree
from PIL import Image, PngImagePlugin

from server.branding.logo import PNG, SVG, LogoLimits, check_logo
from server.errors import SiegelError

LIMITS = LogoLimits(max_bytes=64 * 1024, max_width=2000, max_height=1000)


def png(width: int = 200, height: int = 80, text: dict[str, str] | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 40)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def test_a_png_is_written_anew_from_its_pixels() -> None:
    upload = png(text={"Comment": "<script>alert(1)</script>"}) + b"trailing bytes after IEND"
    logo = check_logo(upload, LIMITS)
    assert logo.mime_type == PNG and logo.png == logo.content
    assert b"script" not in logo.content and b"trailing" not in logo.content
    with Image.open(io.BytesIO(logo.content)) as image:
        assert image.size == (200, 80) and image.getpixel((5, 5))[:3] == (10, 120, 40)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"GIF89a" + b"\0" * 20, "not a PNG or SVG"),
    (png(8, 8), "16 to 2000"),
    (png(2100, 100), "16 to 2000"),
    (png()[:60], "cannot be read"),
    (b"<html><body>hi</body></html>", "not an SVG"),
    (b'<!DOCTYPE svg [<!ENTITY x "y">]><svg xmlns="http://www.w3.org/2000/svg"/>', "DOCTYPE"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', "gives no size"),
    (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 5000 10"/>', "16 to 2000"),
])
def test_refused_uploads_say_why(data: bytes, message: str) -> None:
    with pytest.raises(SiegelError) as caught:
        check_logo(data, LIMITS)
    assert message in caught.value.message


def test_an_upload_over_the_size_limit_is_refused() -> None:
    with pytest.raises(SiegelError, match="branding.max_logo_bytes"):
        check_logo(png(), LogoLimits(max_bytes=100, max_width=2000, max_height=1000))


EVIL = b"""<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"
  xmlns:ev="http://www.w3.org/2001/xml-events" width="200" height="80" onload="alert(1)">
  <!-- a comment --><?pi x?>
  <script type="text/javascript">alert(2)</script>
  <style>@import url(http://evil.example/a.css);</style>
  <defs><linearGradient id="g"><stop offset="0" stop-color="#fff"/></linearGradient></defs>
  <rect width="200" height="80" fill="url(#g)" stroke="url(http://evil.example/p)" onmouseover="alert(3)"
        style="fill:red" ev:event="click"/>
  <image xlink:href="http://evil.example/t.png" width="1" height="1"/>
  <use xlink:href="#g"/><use href="data:image/svg+xml,%3Csvg onload=alert(4)%3E"/>
  <animate attributeName="href" to="javascript:alert(5)"/>
  <set attributeName="onload" to="alert(6)"/>
  <foreignObject><iframe xmlns="http://www.w3.org/1999/xhtml" src="javascript:alert(7)"/></foreignObject>
  <text x="4" y="40">ACME<tspan fill="#000"> Bau</tspan></text>
</svg>"""


def test_a_malicious_svg_keeps_only_its_drawing() -> None:
    logo = check_logo(EVIL, LIMITS)
    assert logo.mime_type == SVG
    root = etree.fromstring(logo.content)
    tags = [etree.QName(e).localname for e in root.iter() if isinstance(e.tag, str)]
    assert tags == ["svg", "defs", "linearGradient", "stop", "rect", "use", "use", "text", "tspan"]
    attributes = {(etree.QName(e).localname, k) for e in root.iter() if isinstance(e.tag, str) for k in e.attrib}
    assert attributes == {("svg", "width"), ("svg", "height"), ("linearGradient", "id"), ("stop", "offset"),
                          ("stop", "stop-color"), ("rect", "width"), ("rect", "height"), ("rect", "fill"),
                          ("use", "href"), ("text", "x"), ("text", "y"), ("tspan", "fill")}
    assert root.find("{http://www.w3.org/2000/svg}use").get("href") == "#g"
    assert "".join(root.itertext()) == "ACME Bau"
    for bad in (b"script", b"alert", b"evil.example", b"javascript", b"data:", b"<!--", b"<?pi", b"xlink", b"style"):
        assert bad not in logo.content, bad
    with Image.open(io.BytesIO(logo.png)) as image:  # the PNG drawn from the clean copy
        assert image.format == "PNG" and image.size == (600, 240)
