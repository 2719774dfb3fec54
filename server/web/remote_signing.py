"""REST for signing with a credential of a remote CSC service (adapters.remote_signing).

``POST /api/v1/sign?...&remote=ACCOUNT&credential=ID`` starts the operation: with an OTP credential the
service sends the code and the answer is 202 with the operation id; ``POST /api/v1/sign/remote/authorize``
with ``{"operation", "pin", "otp"}`` then answers the signed document, ``POST /api/v1/sign/remote/cancel``
ends it. A credential whose authMode is ``oauth2code`` is authorised in the user's browser: the 202 carries
``authorizationUrl`` (the service's page for exactly these hashes), and the service sends the browser back to
``GET /api/v1/sign/remote/callback?code&state``, which answers the signed document. The callback is public:
the browser comes from the service without Siegel's credentials, and the ``state`` (operation id and a
nonce kept sealed with it, given only to the operation's owner) binds the operation and through it the user;
the code is useless without the PKCE verifier that never leaves Siegel. A credential without OTP (or an offline OTP sent along in ``X-Siegel-Remote-OTP``) signs in the
first request when ``X-Siegel-Remote-PIN`` is given. ``GET /api/v1/remote-signing/accounts``: the
administrators' overview.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from twisted.internet import threads
from twisted.web import resource

from server.errors import Code, SiegelError
from server.identity.policy import Action, require
from server.signing.engines import Signed
from server.signing.order import SignOrder
from server.web.http import json_response, render_deferred

if TYPE_CHECKING:
    from adapters.remote_signing.operations import Pending, RemoteSigning

Remote = Callable[[], "RemoteSigning"]
Answer = Callable[[Any, list[Signed]], bytes]


def _header(request: Any, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("utf-8", "replace") if value else None


def pending_body(request: Any, pending: Pending) -> bytes:
    return json_response(request, 202, {
        "operation": pending.operation, "state": "awaiting-otp", "account": pending.account,
        "credential": pending.credential, "signatures": pending.signatures, "otpSent": pending.otp_sent,
        "expires": pending.expires.isoformat(timespec="seconds"), "authorize": "/api/v1/sign/remote/authorize",
        **({"authorizationUrl": pending.authorization_url} if pending.authorization_url else {})})


def start_remote(request: Any, remote: Remote, order: SignOrder, account: str, credential: str,
                 answer: Answer) -> Any:
    """Phase 1 of ``POST /api/v1/sign`` with ``remote=``: 202 and the operation, or the signed document."""
    principal = request.principal
    require(principal, Action.REMOTE_SIGN)
    if not credential:
        raise SiegelError(Code.BAD_REQUEST, "remote=ACCOUNT needs credential=ID (see GET /api/v1/remote-signing/accounts)")
    pin, otp = _header(request, b"x-siegel-remote-pin"), _header(request, b"x-siegel-remote-otp")

    def done(result: Pending | list[Signed]) -> bytes:
        return answer(request, result) if isinstance(result, list) else pending_body(request, result)

    return threads.deferToThread(remote().start, principal.user_id, principal.name, order, account, credential,
                                 pin, otp).addCallback(done)


def _body(request: Any) -> dict[str, Any]:
    try:
        body = json.loads(request.content.read() or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("operation"), str):
        raise SiegelError(Code.BAD_REQUEST, 'the request body must be a JSON object with "operation" (the id '
                                            "POST /api/v1/sign answered with 202)")
    return body


class RemoteAuthorize(resource.Resource):
    """``POST /api/v1/sign/remote/authorize`` ``{"operation", "pin", "otp"}``: phase 2, the signed document."""

    isLeaf = True

    def __init__(self, remote: Remote, answer: Answer) -> None:
        super().__init__()
        self._remote = remote
        self._answer = answer

    def render_POST(self, request: Any) -> int:
        def work() -> Any:
            body = _body(request)
            pin, otp = body.get("pin"), body.get("otp")
            if not isinstance(pin, str) or not pin or (otp is not None and not isinstance(otp, str)):
                raise SiegelError(Code.BAD_REQUEST, '"pin" (and "otp", the code the service sent) must be strings')
            return threads.deferToThread(self._remote().authorize, request.principal.user_id, body["operation"],
                                         pin, otp).addCallback(lambda signed: self._answer(request, signed))

        return render_deferred(request, work)


class RemoteCallback(resource.Resource):
    """``GET /api/v1/sign/remote/callback?code&state`` (public, the service's redirect of an oauth2code
    operation): the code exchanged, phase 2, the signed document as a file (``attachment``: the browser saves
    it rather than showing it in a viewer); ``error`` from the service ends nothing."""

    isLeaf = True

    def __init__(self, remote: Remote, answer: Answer) -> None:
        super().__init__()
        self._remote = remote
        self._answer = answer

    def render_GET(self, request: Any) -> int:
        def work() -> Any:
            args = {k.decode("utf-8", "replace"): v[0].decode("utf-8", "replace") for k, v in request.args.items()}
            if "error" in args:
                raise SiegelError(Code.BAD_REQUEST, f"the remote signing service did not authorise: {args['error']}: "
                                                    f"{args.get('error_description', '')} (the operation still waits)")
            code, state = args.get("code"), args.get("state")
            if not code or not state:
                raise SiegelError(Code.BAD_REQUEST, "the callback needs code and state (the service's redirect)")
            return threads.deferToThread(self._remote().complete_code, state, code).addCallback(answer)

        def answer(signed: list[Signed]) -> bytes:
            request.setHeader(b"content-disposition",
                              f"attachment; filename*=UTF-8''{quote(signed[0].name)}".encode("ascii"))
            return self._answer(request, signed)

        return render_deferred(request, work)


class RemoteCancel(resource.Resource):
    """``POST /api/v1/sign/remote/cancel`` ``{"operation"}``: the operation ends, nothing is signed."""

    isLeaf = True

    def __init__(self, remote: Remote) -> None:
        super().__init__()
        self._remote = remote

    def render_POST(self, request: Any) -> int:
        def work() -> Any:
            operation = _body(request)["operation"]
            return threads.deferToThread(self._remote().cancel, request.principal.user_id, operation).addCallback(
                lambda _: json_response(request, 200, {"operation": operation, "state": "cancelled"}))

        return render_deferred(request, work)


class RemoteAccounts(resource.Resource):
    """``GET /api/v1/remote-signing/accounts``: every account, its credentials, certificates and counts."""

    isLeaf = True

    def __init__(self, overview: Callable[[], list[dict[str, Any]]]) -> None:
        super().__init__()
        self._overview = overview

    def render_GET(self, request: Any) -> int:
        return render_deferred(request, lambda: threads.deferToThread(self._overview).addCallback(
            lambda accounts: json_response(request, 200, {"accounts": accounts})))
