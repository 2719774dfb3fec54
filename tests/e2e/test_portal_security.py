"""Attacks on the portal's sessions against a whole `siegel serve`: CSRF (a POST without or with a wrong
token changes nothing), session fixation (a token planted before the login never becomes a session),
cross-user access (someone else's signed document, admin pages for a signer), idle and absolute expiry,
the security headers, Secure cookies under TLS, and an integration account kept out. Plain HTTP (requests)
plays the attacker's browser; a Chromium page checks that a page on another origin cannot post into a logged-in
session."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from sqlalchemy import select

from server.db import engine as db
from server.db.models import PortalSession, User
from server.web.portal.sessions import PortalSessions, token_hash
from tests.fixtures.browser import new_page
from tests.fixtures.pdf import make_pdf
from tests.e2e.test_tls import _serve_tls
from tests.fixtures.server import SiegelInstance, make_instance

pytestmark = pytest.mark.e2e

SAM = ("sam", "sam-signer-password")
EVE = ("eve", "eve-signer-password")


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiegelInstance]:
    inst = make_instance(tmp_path_factory.mktemp("portal-security"))
    for name, password in (SAM, EVE):
        inst.add_user(name, password, "signer")
    yield from inst.serving()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def logged_in(inst: SiegelInstance, who: tuple[str, str]) -> tuple[requests.Session, str]:
    """A session logged in through the login form, and the CSRF token of its pages."""
    s = requests.Session()
    form = s.get(inst.url + "/portal/login", timeout=10)
    r = s.post(inst.url + "/portal/login", data={"csrf": _csrf(form.text), "name": who[0], "password": who[1]},
               allow_redirects=False, timeout=30)
    assert r.status_code == 303 and r.headers["location"] == "/portal/", (r.status_code, r.text[:500])
    home = s.get(inst.url + "/portal/", timeout=10)
    assert home.status_code == 200 and f"{who[0]} (signer)" in home.text
    return s, _csrf(home.text)


def sign_pdf(inst: SiegelInstance, s: requests.Session, csrf: str) -> str:
    """The result path of a PDF signed through the portal's sign form."""
    r = s.post(inst.url + "/portal/sign", data={"csrf": csrf, "format": "auto", "level": "B-B"},
               files={"file": ("own.pdf", make_pdf(), "application/pdf")}, headers={"Accept": "application/json"},
               timeout=120)
    assert r.status_code == 200, r.text
    return str(r.json()["result"])


def test_headers_and_cookies(portal: SiegelInstance) -> None:
    r = requests.get(portal.url + "/portal/login", timeout=10)
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in r.text and " style=" not in r.text  # nothing inline
    assert re.search(r"siegel_csrf=[^;]+; Path=/portal; HttpOnly; SameSite=strict", r.headers["Set-Cookie"])
    s = requests.Session()
    form = s.get(portal.url + "/portal/login", timeout=10)
    login = s.post(portal.url + "/portal/login", data={"csrf": _csrf(form.text), "name": SAM[0], "password": SAM[1]},
                   allow_redirects=False, timeout=30)
    cookie = login.headers["Set-Cookie"]
    assert re.search(r"siegel_session=[A-Za-z0-9_-]{43}; Path=/portal; HttpOnly; SameSite=strict", cookie), cookie
    assert "Secure" not in cookie  # plain HTTP here; under TLS the flag is set (request.isSecure())
    static = requests.get(portal.url + "/portal/static/vendor/pdfjs/pdf.min.mjs", timeout=10)
    assert static.status_code == 200 and static.headers["Content-Type"].startswith("text/javascript")
    assert requests.get(portal.url + "/portal/static/", timeout=10).status_code == 404  # no directory listing
    assert requests.get(portal.url + "/portal/nothing-here", timeout=10).status_code == 404


def test_cookies_are_secure_under_tls(siegel_instance: SiegelInstance) -> None:
    siegel_instance.add_user(*SAM, "signer")
    _serve_tls(siegel_instance)
    url, s, trust = siegel_instance.url, requests.Session(), siegel_instance.verify
    form = s.get(url + "/portal/login", verify=trust, timeout=10)
    assert re.search(r"siegel_csrf=[^;]+; Path=/portal; Secure; HttpOnly; SameSite=strict", form.headers["Set-Cookie"])
    login = s.post(url + "/portal/login", data={"csrf": _csrf(form.text), "name": SAM[0], "password": SAM[1]},
                   allow_redirects=False, verify=trust, timeout=30)
    assert login.status_code == 303, login.text
    cookie = login.headers["Set-Cookie"]
    assert re.search(r"siegel_session=[A-Za-z0-9_-]{43}; Path=/portal; Secure; HttpOnly; SameSite=strict", cookie), cookie
    assert f"{SAM[0]} (signer)" in s.get(url + "/portal/", verify=trust, timeout=10).text


def test_csrf_refused(portal: SiegelInstance, tmp_path: Path) -> None:
    # Anonymous forms: the token must equal the siegel_csrf cookie (double submit).
    r = requests.post(portal.url + "/portal/login", data={"name": SAM[0], "password": SAM[1]},
                      allow_redirects=False, timeout=30)
    assert r.status_code == 403 and "siegel_session" not in r.headers.get("Set-Cookie", "")
    s = requests.Session()
    s.get(portal.url + "/portal/login", timeout=10)
    r = s.post(portal.url + "/portal/login", data={"csrf": "x" * 43, "name": SAM[0], "password": SAM[1]},
               allow_redirects=False, timeout=30)
    assert r.status_code == 403 and "security token" in r.text

    s, csrf = logged_in(portal, SAM)
    other, other_csrf = logged_in(portal, EVE)
    for token in (None, "", "wrong", other_csrf):  # none, empty, made up, another session's
        data = {"format": "auto", "level": "B-B", **({"csrf": token} if token is not None else {})}
        r = s.post(portal.url + "/portal/sign", data=data, files={"file": ("a.pdf", make_pdf(), "application/pdf")},
                   timeout=60)
        assert r.status_code == 403, (token, r.status_code)
        r = s.post(portal.url + "/portal/logout", data=data, allow_redirects=False, timeout=10)
        assert r.status_code == 403
    assert s.get(portal.url + "/portal/", allow_redirects=False, timeout=10).status_code == 200  # still logged in
    # The header works as well as the field (the sign page's fetch sends it).
    assert sign_pdf(portal, s, csrf).startswith("/portal/sign/result/")
    r = s.post(portal.url + "/portal/logout", headers={"X-CSRF-Token": csrf}, allow_redirects=False, timeout=10)
    assert r.status_code == 303
    assert s.get(portal.url + "/portal/", allow_redirects=False, timeout=10).status_code == 303


def test_session_fixation_refused(portal: SiegelInstance) -> None:
    planted = "attacker-chosen-session-token-0123456789abcdef"
    s = requests.Session()
    s.cookies.set("siegel_session", planted, path="/portal")
    form = s.get(portal.url + "/portal/login", timeout=10)
    r = s.post(portal.url + "/portal/login", data={"csrf": _csrf(form.text), "name": SAM[0], "password": SAM[1]},
               allow_redirects=False, timeout=30)
    assert r.status_code == 303
    issued = r.cookies["siegel_session"]
    assert issued != planted
    assert requests.get(portal.url + "/portal/", cookies={"siegel_session": planted}, allow_redirects=False,
                        timeout=10).status_code == 303  # the planted token is no session
    # A token the attacker got from an earlier login of their own is replaced, and deleted, at the victim's login.
    attacker, _ = logged_in(portal, EVE)
    known = attacker.cookies["siegel_session"]
    victim = requests.Session()
    victim.cookies.set("siegel_session", known, path="/portal")
    form = victim.get(portal.url + "/portal/login", timeout=10)
    r = victim.post(portal.url + "/portal/login", data={"csrf": _csrf(form.text), "name": SAM[0], "password": SAM[1]},
                    allow_redirects=False, timeout=30)
    assert r.cookies["siegel_session"] not in (known, issued)
    assert attacker.get(portal.url + "/portal/", allow_redirects=False, timeout=10).status_code == 303
    engine = db.make_engine(f"sqlite:///{portal.data_dir / 'siegel.db'}")
    try:
        with engine.connect() as conn:
            stored = set(conn.execute(select(PortalSession.token_hash)).scalars())
        assert token_hash(r.cookies["siegel_session"]) in stored  # stored hashed ...
        assert r.cookies["siegel_session"] not in stored and token_hash(known) not in stored  # ... never plain
    finally:
        engine.dispose()


def test_cross_user_access_refused(portal: SiegelInstance, browser: Any,
                                   console_errors: list[str]) -> None:
    sam, sam_csrf = logged_in(portal, SAM)
    result = sign_pdf(portal, sam, sam_csrf)
    assert sam.get(portal.url + result + "/document", timeout=10).content.startswith(b"%PDF-")
    eve, eve_csrf = logged_in(portal, EVE)
    for suffix in ("", "/document", "/report"):
        r = eve.get(portal.url + result + suffix, allow_redirects=False, timeout=10)
        assert r.status_code == 403 and b"%PDF" not in r.content, (suffix, r.status_code)
        anonymous = requests.get(portal.url + result + suffix, allow_redirects=False, timeout=10)
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/portal/login")
    assert eve.get(portal.url + "/portal/sign/result/" + "0" * 32, timeout=10).status_code == 404
    # Admin pages for a signer: 403 for reading and for changing; nothing is created.
    for path in ("/portal/admin", "/portal/admin/users", "/portal/admin/certificates", "/portal/admin/audit"):
        assert eve.get(portal.url + path, timeout=10).status_code == 403, path
    r = eve.post(portal.url + "/portal/admin/users", data={"csrf": eve_csrf, "name": "mallory", "email": "m@example.com",
                                                          "role": "admin", "password": "mallory-password"}, timeout=10)
    assert r.status_code == 403
    engine = db.make_engine(f"sqlite:///{portal.data_dir / 'siegel.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(select(User.id).where(User.name == "mallory")).first() is None
    finally:
        engine.dispose()
    # An integration (system) account may not use the portal at all.
    s = requests.Session()
    form = s.get(portal.url + "/portal/login", timeout=10)
    r = s.post(portal.url + "/portal/login", data={"csrf": _csrf(form.text), "name": portal.user,
                                                   "password": portal.password}, allow_redirects=False, timeout=30)
    assert r.status_code == 403 and "siegel_session" not in r.headers.get("Set-Cookie", "")

    # A page of another origin posting a form into the portal: SameSite=Strict keeps the cookie away, and the
    # token is missing anyway; sam stays logged in and nothing happens.
    page = new_page(browser, console_errors)
    page.goto(portal.url + "/portal/login")
    page.get_by_label("User name").fill(SAM[0])
    page.get_by_label("Password").fill(SAM[1])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(portal.url + "/portal/")
    evil = portal.url.replace("127.0.0.1", "localhost")  # another origin (and site) on the same server
    page.route(evil + "/evil", lambda route: route.fulfill(
        body=f'<form id="f" method="post" action="{portal.url}/portal/logout"></form>', content_type="text/html"))
    page.goto(evil + "/evil")
    with page.expect_navigation():
        page.evaluate("document.getElementById('f').submit()")
    assert page.url == portal.url + "/portal/logout"
    assert page.goto(portal.url + "/portal/").url == portal.url + "/portal/"  # still logged in
    page.context.close()


def test_idle_and_absolute_expiry(portal: SiegelInstance) -> None:
    s, _ = logged_in(portal, SAM)
    token = s.cookies["siegel_session"]
    engine = db.make_engine(f"sqlite:///{portal.data_dir / 'siegel.db'}")
    try:
        later = PortalSessions(engine, timedelta(minutes=30), timedelta(hours=12), timedelta(minutes=5),
                               timedelta(hours=1), clock=lambda: datetime.now(UTC) + timedelta(minutes=31))
        assert later.find(token) is None  # idle for more than portal.idle_minutes: ended and deleted
        assert s.get(portal.url + "/portal/", allow_redirects=False, timeout=10).status_code == 303
        s, _ = logged_in(portal, SAM)
        token = s.cookies["siegel_session"]
        busy = datetime.now(UTC) + timedelta(hours=12, minutes=1)
        with engine.begin() as conn:  # active all the time: only the absolute expiry ends it
            conn.execute(PortalSession.__table__.update().where(PortalSession.token_hash == token_hash(token))
                         .values(last_seen_at=busy - timedelta(minutes=1)))
        assert PortalSessions(engine, timedelta(minutes=30), timedelta(hours=12), timedelta(minutes=5),
                              timedelta(hours=1), clock=lambda: busy).find(token) is None
        assert s.get(portal.url + "/portal/", allow_redirects=False, timeout=10).status_code == 303
    finally:
        engine.dispose()
