"""A worker imports what every request may need; the PDF-making libraries only when a PDF is made (issue #4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fixtures.server import REPO, make_instance

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


IDLE_UNNEEDED = ("spyne", "pytz", "requests")


def test_an_idle_worker_leaves_spyne_and_requests_unloaded(tmp_path: Path) -> None:
    """A worker's setup (services, scheduled jobs, the URL tree) with a remote signing account configured
    imports neither spyne (/soap/admin, built on its first request) nor requests (the CSC client's session,
    made on its first call): ~9 MB of an idle worker's RSS."""
    accounts = tmp_path / "remote-accounts.toml"
    accounts.write_text('[[account]]\nname = "q"\nurl = "https://rss.invalid/csc/v2"\nauth = "basic"\n'
                        'username = "ada"\n')
    inst = make_instance(tmp_path, {"SIEGEL_REMOTE_SIGNING_ACCOUNTS_FILE": str(accounts),
                                    "SIEGEL_REMOTE_SECRET_Q": "secret"})
    probe = ("import sys\n"
             "from server.app import build_root, build_services, scheduled_jobs\n"
             "from server.config import load\n"
             "services = build_services(load())\n"
             "scheduled_jobs(services)\n"
             "build_root(services)\n"
             "print(sorted(services.remote_signing.clients))\n"
             f"print(','.join(m for m in {IDLE_UNNEEDED!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=inst.env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    clients, loaded = done.stdout.splitlines()
    assert clients == "['q']"
    assert loaded == ""
