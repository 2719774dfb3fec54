"""``/api/v1/2fa``: one's own second factors (authenticated; the route table gives each Action.SECOND_FACTOR).

* ``POST /2fa/totp``: enrol a TOTP authenticator: ``{"uri": "otpauth://...", "qrPng": "<base64 PNG>"}``
  (the secret is shown only in this answer).

``POST /2fa/totp``, ``POST /2fa/recovery-codes`` and ``DELETE /2fa`` need a valid second factor in the
request (X-Siegel-OTP; the guard checked it for roles that need one, this module for the others), so a
password alone can neither plant an authenticator nor take one away: a first enrolment uses a code from
``POST /2fa/otp``, which goes to the e-mail address (or SMS number) on record.
* ``POST /2fa/totp/confirm`` ``{"code": "123456"}``: activate it with a first code; the first set of
  recovery codes comes with the answer when the account has none.
* ``POST /2fa/recovery-codes``: ten new recovery codes (the old ones stop working), shown once.
* ``POST /2fa/otp`` ``{"channel": "email" | "sms"}``: send a one-time code (202); works with the
  password alone (server.web.auth.PASSWORD_ONLY), so an account that needs a second factor can get one.
* ``DELETE /2fa``: remove the TOTP authenticator and recovery codes.
* ``GET`` is not offered; the state is in ``POST /2fa/...`` answers and ``siegel user list``.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import threads
from twisted.web import resource

from server.errors import Code, SiegelError
from server.identity.twofactor import LOGIN, TwoFactorService, describe
from server.web.auth import client_address
from server.web.http import json_response, render_deferred


def _body(request: Any) -> dict[str, Any]:
    raw = request.content.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise SiegelError(Code.BAD_REQUEST, "the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise SiegelError(Code.BAD_REQUEST, "the request body must be a JSON object")
    return body


def require_factor(service: TwoFactorService, request: Any, what: str) -> None:
    """Raise UNAUTHENTICATED (401) unless this request carries a valid second factor; a wrong one is a
    failed login. Runs off the reactor thread."""
    if getattr(request, "second_factor", False):  # verified by the guard for this request
        return
    principal = request.principal
    code = request.getHeader(b"x-siegel-otp")
    if code and service.verify_otp(principal.user_id, code.decode("utf-8", "replace"), purpose=LOGIN):
        return
    if code:
        service.count_failure(principal.user_id, client_address(request))
    raise SiegelError(Code.UNAUTHENTICATED, f"{what} needs a valid second factor: send the X-Siegel-OTP header "
                                            "(a TOTP or recovery code, or a code from POST /api/v1/2fa/otp)")


class _Leaf(resource.Resource):
    isLeaf = True

    def __init__(self, service: TwoFactorService) -> None:
        super().__init__()
        self._tf = service


class TotpConfirm(_Leaf):
    def render_POST(self, request: Any) -> Any:
        def start() -> Any:
            code = _body(request).get("code")
            if not isinstance(code, str):
                raise SiegelError(Code.BAD_REQUEST, "code: the 6 digits the authenticator shows")

            def done(codes: list[str] | None) -> bytes:
                answer: dict[str, Any] = {"status": "active"}
                if codes is not None:
                    answer["recoveryCodes"] = codes
                return json_response(request, 200, answer)

            return threads.deferToThread(self._tf.confirm_totp, request.principal, code).addCallback(done)

        return render_deferred(request, start)


class Totp(resource.Resource):
    def __init__(self, service: TwoFactorService) -> None:
        super().__init__()
        self._tf = service
        self.putChild(b"confirm", TotpConfirm(service))

    def render_POST(self, request: Any) -> Any:
        def enrol() -> Any:
            require_factor(self._tf, request, "enrolling an authenticator")
            return self._tf.enrol_totp(request.principal)

        return render_deferred(request, lambda: threads.deferToThread(enrol)
                               .addCallback(lambda e: json_response(request, 200, describe(e))))


class RecoveryCodes(_Leaf):
    def render_POST(self, request: Any) -> Any:
        def renew() -> list[str]:
            require_factor(self._tf, request, "new recovery codes")
            return self._tf.new_recovery_codes(request.principal)

        return render_deferred(request, lambda: threads.deferToThread(renew)
                               .addCallback(lambda codes: json_response(request, 200, {
                                   "recoveryCodes": codes, "detail": "each works once; they are shown only now, "
                                                                      "the earlier codes no longer work"})))


class SendCode(_Leaf):
    def render_POST(self, request: Any) -> Any:
        def start() -> Any:
            channel = _body(request).get("channel", "email")
            if channel not in ("email", "sms"):
                raise SiegelError(Code.BAD_REQUEST, "channel: email or sms")
            host = (request.getHeader(b"host") or b"").decode("latin-1")  # the mail is in its brand
            return threads.deferToThread(self._tf.send_code, request.principal, channel, purpose=LOGIN,
                                         host=host).addCallback(
                lambda sent: json_response(request, 202, {"channel": sent.channel, "to": sent.destination,
                                                          "expires": sent.expires_at.isoformat()}))

        return render_deferred(request, start)


class TwoFactorRoot(resource.Resource):
    """``/api/v1/2fa``."""

    def __init__(self, service: TwoFactorService) -> None:
        super().__init__()
        self._tf = service
        self.putChild(b"totp", Totp(service))
        self.putChild(b"recovery-codes", RecoveryCodes(service))
        self.putChild(b"otp", SendCode(service))

    def render_DELETE(self, request: Any) -> Any:
        def remove() -> None:
            require_factor(self._tf, request, "removing the second factor")
            self._tf.remove(request.principal)

        return render_deferred(request, lambda: threads.deferToThread(remove).addCallback(
            lambda _: json_response(request, 200, {"status": "removed"})))
