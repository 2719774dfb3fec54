"""Remote signing with a credential of authMode oauth2code, end to end with two Siegel processes.

B is the CSC service with ``csc.auth_mode = oauth2code`` and A's callback registered as redirect URI; ada's key
at B is granted to B's integration account erp, whose API client A uses (remote account "b", OAuth2 client
credentials) to list and read the credential. A PDF is signed through A: A answers the authorization URL, which
is followed in headless Chromium; ada logs in at B's page (password, then the code B mails for exactly the
hashes); B sends the browser to A's callback, which answers the signed PDF; pdfsig accepts it with B's
certificate. Over HTTP, the callback's refusals: no code, a wrong, unknown or replayed state, an expired
operation, a forged code: named errors (problem JSON), nothing signed at B.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import create_engine, update

from adapters.remote_signing.client import CscClient, RemoteAccount, RemoteServiceError
from server.db.models import RemoteOperation
from server.signing.keysource import DigestAlgorithm
from tests.fixtures.browser import Shots, new_page
from tests.fixtures.pdf import make_pdf, nss_trusting, pdfsig
from tests.fixtures.server import SiegelInstance, make_instance
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.e2e

ADA = ("ada", "ada-password-123")
CALLBACK = "/api/v1/sign/remote/callback"


@pytest.fixture
def pair(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[tuple[SiegelInstance, SiegelInstance, str]]:
    """A and B running, and the credential (ada's key at B)."""
    b = make_instance(tmp_path / "b", {
        "SIEGEL_MAIL_HOST": smtp_server.host, "SIEGEL_MAIL_PORT": str(smtp_server.port),
        "SIEGEL_MAIL_SENDER": "siegel-b@example.com", "SIEGEL_TWOFACTOR_RESEND_SECONDS": "0",
        "SIEGEL_CSC_AUTH_MODE": "oauth2code"})
    b.cli("user", "add", ADA[0], "--email", "ada@example.com", "--role", "signer", "--password-stdin",
          stdin=ADA[1] + "\n")
    label = b.cli("ca", "issue", ADA[0]).stdout.split("key '", 1)[1].split("'", 1)[0]
    b.cli("key", "grant", label, b.user)  # erp (A's API client at B) may list and read it; ada authorises
    out = b.cli("apiclient", "create", "--user", b.user).stdout
    key = re.search(r"key:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    secret = re.search(r"secret:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    root_pem = tmp_path / "b-root.pem"
    root_pem.write_text(b.cli("ca", "export", "ROOT").stdout)
    accounts = tmp_path / "remote-accounts.toml"
    a = make_instance(tmp_path / "a", {"SIEGEL_REMOTE_SIGNING_ACCOUNTS_FILE": str(accounts),
                                       "SIEGEL_REMOTE_SECRET_B": secret,
                                       "SIEGEL_VALIDATION_TRUST_ROOTS": str(root_pem)})
    b.env["SIEGEL_CSC_OAUTH2_REDIRECT_URIS"] = a.url + CALLBACK
    accounts.write_text(f'[[account]]\nname = "b"\nurl = "{b.url}/csc/v2"\nauth = "oauth2client"\n'
                        f'username = "{key}"\n')
    b.start()
    a.start()
    try:
        yield a, b, label
    finally:
        for inst in (a, b):
            if inst.process is not None and inst.process.poll() is None:
                inst.stop()


def _start(a: SiegelInstance, credential: str, pdf: bytes) -> dict[str, Any]:
    """A PAdES B-T operation of A with the credential at B, waiting for the browser: its 202 answer."""
    started = requests.post(f"{a.url}/api/v1/sign?format=pades&level=B-T&remote=b&credential={credential}",
                            data=pdf, headers={"Content-Type": "application/pdf"}, auth=a.auth, timeout=120)
    assert started.status_code == 202, started.text
    pending: dict[str, Any] = started.json()
    assert pending["otpSent"] is False and pending["signatures"] == 1
    return pending


def _otp(smtp: SmtpServer, before: int) -> str:
    mail = smtp.wait_for(before + 1)[-1]
    assert "ada@example.com" in mail.message["To"]
    return re.search(r"\b(\d{6})\b", mail.text).group(1)  # type: ignore[union-attr]


def _problem(r: requests.Response, status: int, text: str) -> None:
    """A problem JSON answer of ``status`` whose detail says ``text``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    assert text in r.json()["detail"], r.json()


def _pdfsig(tmp_path: Path, signed: bytes) -> str:
    """pdfsig's report on ``signed`` with B's root as the only trust anchor."""
    nss = nss_trusting(tmp_path / "nss", tmp_path / "b-root.pem", "b-root")
    return pdfsig(nss, signed, tmp_path / "signed.pdf")


def test_a_pdf_is_signed_through_a_with_bs_oauth2code_credential_authorised_in_the_browser(
        pair: tuple[SiegelInstance, SiegelInstance, str], smtp_server: SmtpServer, browser: Any,
        console_errors: list[str], shots: Shots, tmp_path: Path) -> None:
    a, b, label = pair
    service = CscClient(RemoteAccount("b", f"{b.url}/csc/v2", "basic", ADA[0], ADA[1]), 10.0, 0)
    info = service.credential_info(label)
    assert (info.auth_mode, info.scal) == ("oauth2code", "2")
    with pytest.raises(RemoteServiceError, match="credentials/authorize: invalid_request: Invalid authMode"):
        service.authorize(label, [b"\x01" * 32], DigestAlgorithm.SHA256, ADA[1], "123456")

    pdf = make_pdf(text="oauth2code", padding=2048)
    pending = _start(a, label, pdf)
    url = pending["authorizationUrl"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(f"{b.url}/csc/v2/oauth2/authorize?") and query["scope"] == "credential"
    assert query["redirect_uri"] == a.url + CALLBACK and query["credentialID"] == label

    page = new_page(browser, console_errors)
    page.goto(url)
    assert page.locator("h1").inner_text() == "Authorise 1 signature"
    assert label in page.locator("main").inner_text()
    shots.take(page, "b-login")
    before = len(smtp_server.messages)
    page.fill("#name", ADA[0])
    page.fill("#password", "not-adas-password")
    page.click("button[value=send]")
    assert "did not authenticate" in page.locator("[role=alert]").inner_text()
    assert len(smtp_server.messages) == before  # no code for a wrong password
    page.fill("#password", ADA[1])
    page.click("button[value=send]")
    assert "A code was sent" in page.locator("[role=status]").inner_text()
    otp = _otp(smtp_server, before)
    page.fill("#password", ADA[1])
    page.fill("#otp", "000000" if otp != "000000" else "111111")
    page.click("button[value=authorize]")
    assert "The OTP is invalid" in page.locator("[role=alert]").inner_text()
    page.fill("#password", ADA[1])
    page.fill("#otp", otp)
    shots.take(page, "b-code")
    with page.expect_download() as download:  # A's callback answers the signed PDF as a file
        page.click("button[value=authorize]")
    landed = download.value.url
    assert landed.startswith(a.url + CALLBACK + "?") and "code=" in landed and f"state={query['state']}" in landed
    signed = Path(download.value.path()).read_bytes()
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
    page.context.close()

    assert signed[:len(pdf)] == pdf
    report = _pdfsig(tmp_path, signed)
    assert "Signature is Valid." in report and "Certificate is Trusted." in report, report
    name = x509.load_der_x509_certificate(info.chain[0]).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert f"Signer Certificate Common Name: {name}" in report, report  # ada's certificate of B's CA
    assert a.count("SELECT count(*) FROM remote_operations") == 0
    assert b.count("SELECT count(*) FROM audit_log WHERE action = 'csc.sign'") == 1
    replayed = requests.get(landed, timeout=60)  # the same redirect again: the operation is done
    _problem(replayed, 404, "no remote signing operation")
    assert b.count("SELECT count(*) FROM audit_log WHERE action = 'csc.sign'") == 1


def _code_at_b(url: str, smtp: SmtpServer) -> str:
    """ada's authorisation at B's login page over HTTP (the form's two posts): B's redirect to A's callback."""
    before = len(smtp.messages)
    sent = requests.post(url, data={"name": ADA[0], "password": ADA[1], "action": "send"}, timeout=60)
    assert sent.status_code == 200 and "A code was sent" in sent.text, sent.text
    done = requests.post(url, data={"name": ADA[0], "password": ADA[1], "otp": _otp(smtp, before),
                                    "action": "authorize"}, allow_redirects=False, timeout=60)
    assert done.status_code == 303, done.text
    return done.headers["Location"]


def test_the_callback_refuses_a_missing_code_a_wrong_or_replayed_state_an_expired_operation_and_a_forged_code(
        pair: tuple[SiegelInstance, SiegelInstance, str], smtp_server: SmtpServer) -> None:
    a, b, label = pair
    pending = _start(a, label, make_pdf(text="callback"))
    state = parse_qs(urlsplit(pending["authorizationUrl"]).query)["state"][0]
    operation = state.partition(".")[0]
    callback = a.url + CALLBACK
    _problem(requests.get(callback, timeout=30), 400, "needs code and state")
    _problem(requests.get(callback, params={"state": state}, timeout=30), 400, "needs code and state")
    _problem(requests.get(callback, params={"code": "c", "state": f"{operation}.not-the-nonce"}, timeout=30),
             404, "no remote signing operation waits")
    _problem(requests.get(callback, params={"code": "c", "state": "unknown.nonce"}, timeout=30),
             404, "no remote signing operation waits")
    _problem(requests.get(callback, params={"error": "access_denied", "error_description": "the user declined",
                                            "state": state}, timeout=30), 400, "access_denied: the user declined")
    assert a.count("SELECT count(*) FROM remote_operations") == 1  # none of these ended it

    landed = _code_at_b(pending["authorizationUrl"], smtp_server)
    assert landed.startswith(callback + "?") and f"state={state}" in landed
    engine = create_engine(f"sqlite:///{a.data_dir / 'siegel.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(update(RemoteOperation).where(RemoteOperation.id == operation)
                         .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    finally:
        engine.dispose()
    _problem(requests.get(landed, timeout=60), 409, "expired")
    assert a.count("SELECT count(*) FROM remote_operations") == 0
    _problem(requests.get(landed, timeout=60), 404, "no remote signing operation")  # replayed
    # B authorised, but A never redeemed the code: no credential token (it would be a csc_sads row), no signature
    assert b.count("SELECT count(*) FROM csc_sads") == 0
    assert b.count("SELECT count(*) FROM audit_log WHERE action = 'csc.sign'") == 0

    forged = _start(a, label, make_pdf(text="forged"))
    forged_state = parse_qs(urlsplit(forged["authorizationUrl"]).query)["state"][0]
    refused = requests.get(callback, params={"code": "forged-code", "state": forged_state}, timeout=60)
    _problem(refused, 502, "oauth2/token: invalid_grant: Authorization code is invalid or expired")
    assert a.count("SELECT count(*) FROM remote_operations") == 0  # a code the service refuses ends it
    assert b.count("SELECT count(*) FROM csc_sads") == 0
    assert b.count("SELECT count(*) FROM audit_log WHERE action = 'csc.sign'") == 0
