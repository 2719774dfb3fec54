"""Two-factor authentication against a running server: an admin (twofactor.required_roles = admin) is
refused with 401 on every protected route without a second factor while a signer is not asked; the admin
gets a first code by e-mail with the password alone, enrols TOTP (codes computed by pyotp from the URI),
uses recovery codes and SMS codes (local HTTP sink), every code once; wrong second factors lock the
account; DELETE /api/v1/2fa and `siegel user reset-2fa` remove the factors."""

from __future__ import annotations

import base64
import re
import time

import pyotp
import pytest
import requests

from server.web.auth import PASSWORD_ONLY, PUBLIC, ROUTES
from server.web.http import SOAP_PREFIXES
from tests.fixtures.http_sink import HttpSink, http_sink  # noqa: F401
from tests.fixtures.server import SiegelInstance
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.e2e

ADMIN = ("ada", "ada-admin-password")
SIGNER = ("sam", "sam-signer-password")


def _totp(uri: str) -> pyotp.TOTP:
    """The authenticator an app makes of the enrolment URI."""
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    return parsed


def _call(inst: SiegelInstance, method: str, path: str, auth: tuple[str, str], otp: str | None = None,
          **kw: object) -> requests.Response:
    headers = {"X-Siegel-OTP": otp} if otp is not None else {}
    return requests.request(method, inst.url + path, auth=auth, headers=headers, timeout=60, **kw)  # type: ignore[arg-type]


def _code(text: str) -> str:
    return re.search(r"\b(\d{6})\b", text).group(1)  # type: ignore[union-attr]


def test_second_factor_over_http(siegel_instance: SiegelInstance, smtp_server: SmtpServer,
                                 http_sink: HttpSink) -> None:  # noqa: F811
    inst = siegel_instance
    inst.env.update({"SIEGEL_AUTH_CREDENTIAL_CACHE_SECONDS": "0", "SIEGEL_AUTH_LOCKOUT_THRESHOLD": "3",
                     "SIEGEL_AUTH_ADDRESS_LOCKOUT_THRESHOLD": "100", "SIEGEL_TWOFACTOR_REQUIRED_ROLES": "admin",
                     "SIEGEL_TWOFACTOR_RESEND_SECONDS": "0", "SIEGEL_MAIL_HOST": smtp_server.host,
                     "SIEGEL_MAIL_PORT": str(smtp_server.port), "SIEGEL_MAIL_SENDER": "siegel@example.com",
                     "SIEGEL_SMS_URL": http_sink.url})
    for (name, password), role in ((ADMIN, "admin"), (SIGNER, "signer")):
        inst.cli("user", "add", name, "--email", f"{name}@example.com", "--role", role, "--password-stdin",
                 stdin=password + "\n")
    inst.cli("user", "set-phone", "ada", "+4930123456")
    inst.start()

    # Without a second factor the admin gets 401 on every protected route (but the password-only one).
    for path, methods in ROUTES.items():
        for method, permission in methods.items():
            if permission == PUBLIC or method in PASSWORD_ONLY.get(path, ()):
                continue
            r = _call(inst, method, path, ADMIN, data=b"<x/>" if path.encode().startswith(SOAP_PREFIXES) else b"{}")
            assert r.status_code == 401, (method, path, r.status_code, r.text[:300])
            if path.encode().startswith(SOAP_PREFIXES):  # a SOAP fault with the DSS Result
                assert r.headers["Content-Type"].startswith("text/xml") and "AuthenticationError" in r.text
            else:
                assert r.headers["Content-Type"] == "application/problem+json", (path, r.headers)
                assert "second factor" in r.json()["detail"]
    wrong_password = _call(inst, "GET", "/api/v1/whoami", ("ada", "not the password"), otp="123456")
    assert wrong_password.status_code == 401 and "second factor" not in wrong_password.text
    # A signer is not asked.
    assert _call(inst, "GET", "/api/v1/whoami", SIGNER).json()["role"] == "signer"

    # A first code by e-mail, with the password alone; it works once.
    r = _call(inst, "POST", "/api/v1/2fa/otp", ADMIN, json={"channel": "email"})
    assert r.status_code == 202 and r.json()["to"] == "a***@example.com", r.text
    (mail,) = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ("ada@example.com",)
    code = _code(mail.text)
    assert _call(inst, "GET", "/api/v1/whoami", ADMIN, otp=code).json()["name"] == "ada"
    again = _call(inst, "GET", "/api/v1/whoami", ADMIN, otp=code)
    assert again.status_code == 401 and "wrong, used or expired" in again.json()["detail"]

    # Enrol TOTP (each request with a fresh e-mailed code), confirm with pyotp's code from the URI.
    def mailed() -> str:
        n = len(smtp_server.messages) + 1
        assert _call(inst, "POST", "/api/v1/2fa/otp", ADMIN, json={"channel": "email"}).status_code == 202
        return _code(smtp_server.wait_for(n)[-1].text)

    enrolled = _call(inst, "POST", "/api/v1/2fa/totp", ADMIN, otp=mailed())
    assert enrolled.status_code == 200, enrolled.text
    assert base64.b64decode(enrolled.json()["qrPng"]).startswith(b"\x89PNG")
    totp = _totp(enrolled.json()["uri"])
    confirmed = _call(inst, "POST", "/api/v1/2fa/totp/confirm", ADMIN, otp=mailed(), json={"code": totp.now()})
    assert confirmed.status_code == 200, confirmed.text
    recovery = confirmed.json()["recoveryCodes"]
    assert len(recovery) == 10

    code = totp.at(time.time() + 30)  # the next step's code: inside the window, after the confirming step
    assert _call(inst, "GET", "/api/v1/whoami", ADMIN, otp=code).status_code == 200
    assert _call(inst, "GET", "/api/v1/whoami", ADMIN, otp=code).status_code == 401, "the same code twice"
    assert _call(inst, "GET", "/api/v1/whoami", ADMIN, otp=f"{(int(code) + 1) % 10 ** 6:06d}").status_code == 401

    # A recovery code works once.
    assert _call(inst, "GET", "/api/v1/whoami", ADMIN, otp=recovery[0]).status_code == 200
    assert _call(inst, "GET", "/api/v1/whoami", ADMIN, otp=recovery[0]).status_code == 401
    fresh = _call(inst, "POST", "/api/v1/2fa/recovery-codes", ADMIN, otp=recovery[1])
    assert fresh.status_code == 200 and len(fresh.json()["recoveryCodes"]) == 10
    assert _call(inst, "GET", "/api/v1/whoami", ADMIN, otp=recovery[2]).status_code == 401, "old set replaced"

    # An SMS code through the gateway (the local HTTP sink).
    r = _call(inst, "POST", "/api/v1/2fa/otp", ADMIN, json={"channel": "sms"})
    assert r.status_code == 202 and r.json()["to"].endswith("456"), r.text
    (sms,) = http_sink.wait_for(1)
    assert sms.json()["to"] == "+4930123456"
    assert _call(inst, "GET", "/api/v1/whoami", ADMIN, otp=_code(sms.json()["text"])).status_code == 200

    # Lockout: three wrong second factors (right password) lock the account; then even a valid code is refused.
    for _ in range(3):
        assert _call(inst, "GET", "/api/v1/whoami", ADMIN, otp="000000").status_code == 401
    locked = _call(inst, "GET", "/api/v1/whoami", ADMIN, otp=fresh.json()["recoveryCodes"][0])
    assert locked.status_code == 401 and "second factor" not in locked.text
    time.sleep(2.5)
    assert _call(inst, "GET", "/api/v1/whoami", ADMIN, otp=fresh.json()["recoveryCodes"][0]).status_code == 200

    # DELETE needs a valid second factor; then TOTP codes no longer work.
    gone = _call(inst, "DELETE", "/api/v1/2fa", ADMIN, otp=fresh.json()["recoveryCodes"][1])
    assert gone.status_code == 200, gone.text
    assert _call(inst, "GET", "/api/v1/whoami", ADMIN, otp=fresh.json()["recoveryCodes"][2]).status_code == 401

    # A signer (not asked at login) may enrol too, but not with the password alone: a password thief could
    # otherwise plant an authenticator of his own. The e-mailed code proves the mailbox on record.
    refused = _call(inst, "POST", "/api/v1/2fa/totp", SIGNER)
    assert refused.status_code == 401 and "second factor" in refused.json()["detail"]
    n = len(smtp_server.messages) + 1
    assert _call(inst, "POST", "/api/v1/2fa/otp", SIGNER, json={"channel": "email"}).status_code == 202
    signer_code = _code(smtp_server.wait_for(n)[-1].text)
    signer_totp = _totp(_call(inst, "POST", "/api/v1/2fa/totp", SIGNER, otp=signer_code).json()["uri"])
    assert _call(inst, "POST", "/api/v1/2fa/totp/confirm", SIGNER, json={"code": signer_totp.now()}).status_code == 200
    assert _call(inst, "DELETE", "/api/v1/2fa", SIGNER).status_code == 401, "removing needs a code"
    assert _call(inst, "POST", "/api/v1/2fa/recovery-codes", SIGNER).status_code == 401
    assert _call(inst, "GET", "/api/v1/whoami", SIGNER).status_code == 200, "still not asked at login"
    assert "removed" in inst.cli("user", "reset-2fa", "sam").stdout
    assert _call(inst, "DELETE", "/api/v1/2fa", SIGNER, otp=signer_totp.at(time.time() + 30)).status_code == 401, \
        "after reset-2fa the old authenticator's codes are worthless"
    assert "intact" in inst.cli("audit", "verify").stdout
    assert inst.stop() == 0
