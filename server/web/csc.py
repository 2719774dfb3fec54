"""The CSC API v2 server (``/csc/v2``): JSON over POST, its own authentication, CSC errors.

``auth/login`` takes HTTP Basic (a Siegel account, or an API client) and answers a bearer access token;
every other method but ``info`` needs ``Authorization: Bearer <token>``. So ``/csc`` is not behind the
HTTP Basic guard of server.web.auth (its ROUTES list the paths as PUBLIC for that reason); the role is
checked here (Action.REMOTE_SIGN). The CSC v1.0.4 paths that pyHanko's CSCSigner uses are served under
``/csc/v1`` by the same methods (v1 parameter names ``hash``/``hashAlgo``, PIN/OTP top-level).

``oauth2/authorize`` without HTTP Basic is the user's browser: a valid request gets a login page (name,
password, one-time code; "send me a code" mails one bound to the credential and exactly the hashes of scope
credential) that posts back to the same URL; a login that holds is a 303 to the registered redirect_uri
with code and state, a wrong password or code the page again with the reason.

Errors are CSC's: ``{"error": ..., "error_description": ...}`` with the status the specification gives.
All work runs off the reactor thread.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from twisted.internet import threads
from twisted.web import resource, server

from server import __version__
from server.errors import Code, SiegelError
from server.remote.csc_service import (
    PURPOSE,
    CscError,
    CscService,
    credential_request,
    decode_hashes,
    hash_algorithm,
    invalid,
)
from server.web.auth import client_address

log = logging.getLogger("siegel.csc")

METHODS_V2 = ["oauth2/authorize", "oauth2/token", "auth/login", "auth/revoke", "credentials/list", "credentials/info", "credentials/sendOTP",
              "credentials/authorize", "credentials/authorizeCheck", "signatures/signHash", "signatures/timestamp"]
METHODS_V1 = ["auth/login", "auth/revoke", "credentials/list", "credentials/info", "credentials/sendOTP",
              "credentials/authorize", "signatures/signHash", "signatures/timestamp"]
_STATUS = {Code.HSM_UNAVAILABLE: (503, "temporarily_unavailable"), Code.HSM_LOGIN: (503, "temporarily_unavailable"),
           Code.DATABASE: (503, "temporarily_unavailable"), Code.TSA_FAILED: (503, "temporarily_unavailable"),
           Code.NOT_SUPPORTED: (501, "not_implemented")}
PATHS = [f"/csc/{v}/{m}" for v in ("v1", "v2") for m in ["info", *METHODS_V2] if v == "v2" or "oauth2" not in m]
"""Every path this resource answers (POST); server.web.auth.ROUTES lists them as PUBLIC for the Basic guard."""


def _error(request: Any, status: int, error: str, description: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    if status == 401:
        request.setHeader(b"www-authenticate", b'Basic realm="Siegel CSC"' if error == "access_denied"
                          else f'Bearer error="{error}"'.encode())
    return json.dumps({"error": error, "error_description": description}).encode()


def _ok(request: Any, body: Any, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"cache-control", b"no-store")
    if status == 204:
        return b""
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body).encode()


@dataclass(frozen=True)
class _Page:
    """An HTML answer (the oauth2/authorize login page); ``form_target`` is the origin its form may lead to."""

    status: int
    body: str
    form_target: str


def _page_headers(request: Any, page: _Page) -> bytes:
    request.setResponseCode(page.status)
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    # form-action covers the redirect after the post (to the registered redirect_uri's origin)
    request.setHeader(b"content-security-policy", f"default-src 'none'; style-src 'self'; img-src 'self'; "
                      f"form-action 'self' {page.form_target}; frame-ancestors 'none'; base-uri 'none'".encode())
    request.setHeader(b"x-frame-options", b"DENY")
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")
    return page.body.encode("utf-8")


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise invalid(f"Invalid parameter {name}")
    return value


class CscApi(resource.Resource):
    """``/csc``: ``v2/<method>`` and ``v1/<method>``."""

    isLeaf = True

    def __init__(self, service: CscService, twofactor: Any = None, trusted_proxies: frozenset[str] = frozenset(),
                 public_base_url: str = "") -> None:
        super().__init__()
        self._service = service
        self._trusted = trusted_proxies
        self._base = public_base_url.rstrip("/")
        self._handlers: dict[str, Callable[[Any, dict[str, Any], str], Any]] = {
            "info": self._info, "auth/login": self._login, "auth/revoke": self._revoke,
            "credentials/list": self._list, "credentials/info": self._credential_info,
            "credentials/sendOTP": self._send_otp, "credentials/authorize": self._authorize,
            "credentials/authorizeCheck": self._authorize_check, "signatures/signHash": self._sign_hash,
            "signatures/timestamp": self._timestamp, "oauth2/authorize": self._oauth2_authorize,
            "oauth2/token": self._oauth2_token}

    def render(self, request: Any) -> Any:
        parts = [p.decode("latin-1") for p in request.postpath]
        version, method = (parts[0], "/".join(parts[1:])) if parts else ("", "")
        if version not in ("v1", "v2") or method not in self._handlers:
            return _error(request, 404, "invalid_request", f"no CSC API method {'/'.join(parts)!r}")
        verbs = (b"GET", b"POST") if method == "oauth2/authorize" else (b"POST",)  # POST: its login form
        if request.method not in verbs or (version == "v1" and method.startswith("oauth2/")):
            request.setHeader(b"allow", b", ".join(verbs))
            return _error(request, 405, "invalid_request", f"{method} is called with {verbs[0].decode()}")

        def form(source: bytes) -> dict[str, str]:
            return {k: v[-1] for k, v in parse_qs(source.decode("utf-8", "replace"), keep_blank_values=False).items()}

        def work() -> Any:
            raw = request.content.read() if request.content is not None else b""
            if method == "oauth2/authorize":  # the query; a POST is its login form
                return self._oauth2_authorize(request, form(request.uri.partition(b"?")[2]), version,
                                              form(raw) if request.method == b"POST" else None)
            if method.startswith("oauth2/"):  # OAuth2 token: a form body, not JSON
                return self._handlers[method](request, form(raw), version)
            try:
                body = json.loads(raw) if raw.strip() else {}
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise invalid("The request body must be a JSON object") from None
            if not isinstance(body, dict):
                raise invalid("The request body must be a JSON object")
            return self._handlers[method](request, body, version)

        def done(result: Any) -> None:
            if isinstance(result, _Page):
                self._write(request, _page_headers(request, result))
                return
            status, payload = result if isinstance(result, tuple) else (200, result)
            if status in (302, 303):
                request.setResponseCode(status)
                request.setHeader(b"location", payload.encode("utf-8"))
                request.setHeader(b"cache-control", b"no-store")
                self._write(request, b"")
                return
            self._write(request, _ok(request, payload, status))

        def failed(failure: Any) -> None:
            exc = failure.value
            if isinstance(exc, CscError):
                body = _error(request, exc.status, exc.error, exc.description)
            elif isinstance(exc, SiegelError):
                status, error = _STATUS.get(exc.code, (400, "invalid_request") if exc.kind.http_status < 500
                                            else (500, "server_error"))
                body = _error(request, status, error, exc.message)
            else:
                log.error("CSC %s failed", method, exc_info=(failure.type, failure.value, failure.getTracebackObject()))
                body = _error(request, 500, "server_error", "internal error")
            self._write(request, body)

        threads.deferToThread(work).addCallbacks(done, failed)
        return server.NOT_DONE_YET

    @staticmethod
    def _write(request: Any, body: bytes) -> None:
        if not request.finished and not request._disconnected:
            request.write(body)
            request.finish()

    # --- authentication ---------------------------------------------------------------------------

    @staticmethod
    def _token(request: Any) -> str:
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise CscError(401, "invalid_token", "Malformed authorization header: send Authorization: Bearer "
                                                 "<access token from auth/login>")
        return token.strip()

    def _principal(self, request: Any) -> Any:
        """The account of the request's access token of scope service."""
        principal = self._service.principal(self._token(request))
        request.principal = principal  # for the request log line
        return principal

    # --- methods ----------------------------------------------------------------------------------

    def _info(self, request: Any, body: dict[str, Any], version: str) -> Any:
        p = self._service.policy
        out: dict[str, Any] = {
            "specs": "2.0.0.2" if version == "v2" else "1.0.4.0", "name": p.name,
            "logo": f"{self._base}/portal/logo.png", "region": p.region, "lang": "en-US",
            "description": f"Siegel {__version__}: on-premise remote signing with the keys of the internal CA",
            "authType": ["basic", "oauth2code", "oauth2client"], "oauth2": f"{self._base}/csc/v2",
            "methods": METHODS_V2 if version == "v2" else METHODS_V1}
        if version == "v2":
            out["signAlgorithms"] = {"algos": ["1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4",
                                               "1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12",
                                               "1.2.840.113549.1.1.13", "1.2.840.113549.1.1.1"]}
            out["signature_formats"] = {"formats": [], "envelope_properties": []}  # no signatures/signDoc
            out["conformance_levels"] = []
        return out

    def _login(self, request: Any, body: dict[str, Any], version: str) -> Any:
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            raise CscError(401, "invalid_request", "Malformed authentication parameter")
        try:
            name, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise CscError(401, "invalid_request", "Malformed authentication parameter") from None
        if not sep or not name:
            raise invalid("Malformed username-password")
        otp = request.getHeader(b"x-siegel-otp")
        token, seconds = self._service.login(name, password, client_address(request, self._trusted),
                                             otp.decode("utf-8", "replace") if otp else None)
        return {"access_token": token, "token_type": "Bearer", "expires_in": seconds}

    @staticmethod
    def _basic(request: Any) -> tuple[str, str] | None:
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            name, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return None
        return (name, password) if sep and name else None

    def _oauth2_authorize(self, request: Any, query: dict[str, str], version: str,
                          posted: dict[str, str] | None = None) -> Any:
        """oauth2/authorize (response_type=code, PKCE S256): the user authenticates with HTTP Basic (and
        X-Siegel-OTP when the role needs it, and always for scope credential: the OTP for the hashes), 302 to
        the registered redirect_uri with code and state; or, in a browser (no Basic), at the login page
        (``posted``: its form), 303 there."""
        if query.get("response_type") != "code":
            raise CscError(400, "unsupported_response_type", "response_type must be code")
        request_args = (query.get("client_id"), query.get("redirect_uri"), query.get("scope"),
                        query.get("code_challenge"), query.get("code_challenge_method", "plain"))
        address = client_address(request, self._trusted)
        basic = self._basic(request) if posted is None else None
        if basic is not None:
            otp = request.getHeader(b"x-siegel-otp")
            code = self._service.oauth2_code(basic[0], basic[1], address,
                                             otp.decode("utf-8", "replace") if otp else None, *request_args, query)
            return 302, self._redirect(query, code)
        for_credential = self._service.oauth2_request(*request_args, query)  # a bad request gets no login page
        if posted is None:
            return self._login_page(query, for_credential, 200)
        name, password = posted.get("name", ""), posted.get("password", "")
        try:
            if posted.get("action") == "send":
                if not for_credential:
                    raise invalid("a code is sent for scope credential only (else: your authenticator app)")
                self._service.oauth2_send_code(name, password, address, query)
                return self._login_page(query, for_credential, 200, name, "A code was sent to your e-mail "
                                        "address. Enter it with your password.")
            code = self._service.oauth2_code(name, password, address, posted.get("otp") or None, *request_args,
                                             query)
        except CscError as exc:
            return self._login_page(query, for_credential, 403 if exc.status == 403 else 400, name,
                                    exc.description, error=True)
        return 303, self._redirect(query, code)

    @staticmethod
    def _redirect(query: dict[str, str], code: str) -> str:
        answer = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        uri = query["redirect_uri"]
        return uri + ("&" if "?" in uri else "?") + urlencode(answer)

    def _login_page(self, query: dict[str, str], for_credential: bool, status: int, name: str = "",
                    message: str | None = None, *, error: bool = False) -> _Page:
        """The login page of an oauth2/authorize request already checked: what is authorised (the credential,
        numSignatures and each hash for scope credential), the form, and ``message``."""
        e = html.escape
        client = e(query.get("client_id", ""))
        if for_credential:
            credential, number, hashes, algorithm = credential_request(query)
            title = f"Authorise {e(str(number))} signature{'s' if number != 1 else ''}"
            listed = "".join(f"<li><code>{base64.b64encode(h).decode()}</code></li>" for h in hashes)
            what = (f"<p>The application <code>{client}</code> asks to sign with your key <code>{e(str(credential))}"
                    f"</code>: at most {e(str(number))} signature(s) over exactly these {algorithm.value} hashes "
                    f"(base64), and nothing else:</p><ul class=\"hashes\">{listed}</ul>")
        else:
            title = "Sign in"
            what = f"<p>The application <code>{client}</code> asks to use the signing service for you.</p>"
        note = "" if message is None else \
            f'<p class="{"error" if error else "message"}" role="{"alert" if error else "status"}">{e(message)}</p>'
        send = ('<button type="submit" name="action" value="send" formnovalidate>Send me a code by e-mail</button>'
                if for_credential else "")
        action = e("/csc/v2/oauth2/authorize?" + urlencode(query))
        target = urlsplit(query["redirect_uri"])
        body = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · {e(self._service.policy.name)}</title>
<link rel="stylesheet" href="/portal/static/portal.css">
</head>
<body>
<main id="main">
<h1>{title}</h1>
{what}
{note}
<form method="post" action="{action}" class="card narrow">
  <label for="name">Name</label>
  <input id="name" name="name" value="{e(name)}" autocomplete="username" required{"" if name else " autofocus"}>
  <label for="password">Password (your PIN)</label>
  <input id="password" name="password" type="password" autocomplete="current-password"
         required{" autofocus" if name else ""}>
  <label for="otp">One-time code (from the e-mail, or your authenticator app)</label>
  <input id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code">
  <button type="submit" name="action" value="authorize">Authorise</button>
  {send}
</form>
</main>
</body>
</html>
"""
        return _Page(status, body, f"{target.scheme}://{target.netloc}")

    def _oauth2_token(self, request: Any, form: dict[str, str], version: str) -> Any:
        token, seconds = self._service.oauth2_token(form, self._basic(request), client_address(request, self._trusted))
        return {"access_token": token, "token_type": "Bearer", "expires_in": seconds}

    def _revoke(self, request: Any, body: dict[str, Any], version: str) -> Any:
        principal = self._principal(request)
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise invalid("Missing (or invalid type) string parameter token")
        self._service.revoke(principal, token)
        return 204, None

    def _list(self, request: Any, body: dict[str, Any], version: str) -> Any:
        principal = self._principal(request)
        if body.get("userID") is not None:
            raise invalid("userID parameter MUST be null")
        ids = self._service.credentials(principal)
        out: dict[str, Any] = {"credentialIDs": ids}
        if version == "v2" and _flag(body, "credentialInfo", False):
            out["credentialInfos"] = [{"credentialID": c, **self._service.credential_info(
                principal, c, body.get("certificates", "single"), _flag(body, "certInfo", False),
                _flag(body, "authInfo", False))} for c in ids]
        if body.get("onlyValid") is True:
            out["onlyValid"] = True  # only valid, unrevoked certificates are listed anyway
        return out

    def _credential_info(self, request: Any, body: dict[str, Any], version: str) -> Any:
        principal = self._principal(request)
        return self._service.credential_info(principal, body.get("credentialID"), body.get("certificates", "single"),
                                             _flag(body, "certInfo", False), _flag(body, "authInfo", True))

    def _send_otp(self, request: Any, body: dict[str, Any], version: str) -> Any:
        principal = self._principal(request)
        hashes = algorithm = None
        if body.get("hashes") is not None:  # Siegel's extension: bind the code to the hashes as well
            hashes = decode_hashes(body["hashes"])
            algorithm = hash_algorithm(body.get("hashAlgorithmOID"))
        channel = body.get("channel", "email")
        self._service.send_otp(principal, body.get("credentialID"), channel if isinstance(channel, str) else "",
                               hashes, algorithm)
        return (204, None) if version == "v2" else (200, {})

    def _authorize(self, request: Any, body: dict[str, Any], version: str) -> Any:
        principal = self._principal(request)
        raw = body.get("hashes", body.get("hash"))
        hashes = decode_hashes(raw) if raw is not None else None
        oid = body.get("hashAlgorithmOID", body.get("hashAlgo"))
        algorithm = hash_algorithm(oid) if oid is not None else None
        if version == "v2" and hashes is not None and algorithm is None:
            raise invalid("Missing (or invalid type) string parameter hashAlgorithmOID")
        pin, otp = body.get("PIN"), body.get("OTP")
        auth_data = body.get("authData")
        if auth_data is not None:
            if not isinstance(auth_data, list) or not all(isinstance(a, dict) for a in auth_data):
                raise invalid("Invalid parameter authData")
            values = {a.get("id"): a.get("value") for a in auth_data}
            pin, otp = values.get("PIN", pin), values.get("OTP", otp)
        result = self._service.authorize(principal, body.get("credentialID"), body.get("numSignatures"), hashes,
                                         algorithm, pin, otp, client_address(request, self._trusted))
        return {"SAD": result.sad, "expiresIn": result.expires_in}

    def _authorize_check(self, request: Any, body: dict[str, Any], version: str) -> Any:
        principal = self._principal(request)
        return self._service.authorize_check(principal, body.get("credentialID"), body.get("SAD", body.get("handle")))

    def _sign_hash(self, request: Any, body: dict[str, Any], version: str) -> Any:
        """With a token of scope service and a SAD, or with a token of scope credential (it is the SAD)."""
        token = self._token(request)
        principal, scope = self._service.bearer(token)
        request.principal = principal
        sad = body.get("SAD")
        if sad is None and scope == "credential":
            sad = token
        raw = body.get("hashes", body.get("hash"))
        if raw is None:
            raise invalid("Missing (or invalid type) array parameter hash")
        hashes = decode_hashes(raw)
        if body.get("operationMode", "S") != "S":
            raise invalid("Invalid parameter operationMode (Siegel signs synchronously)")
        if body.get("signAlgoParams") is not None:
            raise invalid("Invalid parameter signAlgoParams (RSASSA-PSS is not offered)")
        values = self._service.sign_hash(principal, body.get("credentialID"), sad, hashes,
                                         body.get("hashAlgorithmOID", body.get("hashAlgo")), body.get("signAlgo"))
        return {"signatures": [base64.b64encode(v).decode("ascii") for v in values]}

    def _timestamp(self, request: Any, body: dict[str, Any], version: str) -> Any:
        principal = self._principal(request)
        token = self._service.timestamp(principal, body.get("hash"), body.get("hashAlgo"), body.get("nonce"))
        return {"timestamp": base64.b64encode(token).decode("ascii")}


__all__ = ["PATHS", "PURPOSE", "CscApi"]
