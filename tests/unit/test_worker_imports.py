"""A worker imports what every request may need; the PDF-making libraries only when a PDF is made (issue #4)."""

from __future__ import annotations

import subprocess
import sys

from tests.fixtures.server import REPO

PDF_ONLY = ("fontTools", "uharfbuzz", "qrcode", "server.branding.pdf", "server.signing.stamp")


def test_the_worker_modules_leave_the_pdf_libraries_unloaded() -> None:
    """server.app and the web modules building the site (REST, portal, workflows) import none of the
    text-PDF and stamp libraries (~16 MB of a worker's RSS); making a report PDF loads them."""
    probe = ("import sys, server.app, server.serve, server.web.rest, server.web.portal.site, "
             "server.workflows.service\n"
             f"print(','.join(m for m in {PDF_ONLY!r} if m in sys.modules))\n"
             "import server.branding.report as r, server.branding.pdf\n"
             "print('fontTools' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=True)
    loaded, after = done.stdout.splitlines()
    assert loaded == ""
    assert after == "True"
