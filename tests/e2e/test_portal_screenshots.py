"""The README's portal screenshots (tests/e2e/portal_screenshots.py) taken into a temporary folder from a whole
`siegel serve`: every one is a PNG of the viewport's size, not blank, different from the others and small, so
the script that regenerates docs/screenshots/ keeps working."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat

from tests.e2e.portal_screenshots import NAMES, VIEWPORT, running_portal, take_screenshots

pytestmark = pytest.mark.e2e


def test_screenshots_are_real_images_of_the_portals_pages(browser: Any, tmp_path: Path) -> None:
    out = tmp_path / "screenshots"
    with running_portal(tmp_path) as inst:
        shots = take_screenshots(browser, inst, out)
    assert [p.name for p in shots] == [f"{name}.png" for name in NAMES]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in shots)  # nothing else written
    digests = set()
    for path in shots:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == VIEWPORT, (path.name, image.format, image.size)
            grey = image.convert("L")
        assert ImageStat.Stat(grey).stddev[0] > 10, path.name  # not one flat colour
        assert path.stat().st_size < 200 * 1024, (path.name, path.stat().st_size)  # fit for the README
        digests.add(hashlib.sha256(grey.tobytes()).hexdigest())
    assert len(digests) == len(shots)  # each shows a page of its own
