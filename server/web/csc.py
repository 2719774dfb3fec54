"""The CSC API v2 server (``/csc/v2``): JSON over POST, its own authentication, CSC errors.

``auth/login`` takes HTTP Basic (a Siegel account, or an API client) and answers a bearer access token;
every other method but ``info`` needs ``Authorization: Bearer <token>``. So ``/csc`` is not behind the
HTTP Basic guard of server.web.auth (its ROUTES list the paths as PUBLIC for that reason); the role is
checked here (Action.REMOTE_SIGN). The CSC v1.0.4 paths that pyHanko's CSCSigner uses are served under
``/csc/v1`` by the same methods (v1 parameter names ``hash``/``hashAlgo``, PIN/OTP top-level).

Errors are CSC's: ``{"error": ..., "error_description": ...}`` with the status the specification gives.
All work runs off the reactor thread.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode

from twisted.internet import threads
from twisted.web import resource, server

from server import __version__
from server.errors import Code, SiegelError
from server.remote.csc_service import (
    PURPOSE,
    CscError,
    CscService,
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
        verb = b"GET" if method == "oauth2/authorize" else b"POST"
        if request.method != verb or (version == "v1" and method.startswith("oauth2/")):
            request.setHeader(b"allow", verb)
            return _error(request, 405, "invalid_request", f"{method} is called with {verb.decode()}")

        def work() -> Any:
            raw = request.content.read() if request.content is not None else b""
            if method.startswith("oauth2/"):  # OAuth2: query (authorize) or form body (token), not JSON
                source = request.uri.partition(b"?")[2] if method == "oauth2/authorize" else raw
                pairs = parse_qs(source.decode("utf-8", "replace"), keep_blank_values=False)
                return self._handlers[method](request, {k: v[-1] for k, v in pairs.items()}, version)
            try:
                body = json.loads(raw) if raw.strip() else {}
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise invalid("The request body must be a JSON object") from None
            if not isinstance(body, dict):
                raise invalid("The request body must be a JSON object")
            return self._handlers[method](request, body, version)

        def done(result: Any) -> None:
            status, payload = result if isinstance(result, tuple) else (200, result)
            if status == 302:
                request.setResponseCode(302)
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

    def _oauth2_authorize(self, request: Any, query: dict[str, str], version: str) -> Any:
        """GET oauth2/authorize (response_type=code, PKCE S256): the user authenticates with HTTP Basic here
        (and X-Siegel-OTP when the role needs it, and always for scope credential: the OTP for the hashes);
        302 to the registered redirect_uri with code and state."""
        if query.get("response_type") != "code":
            raise CscError(400, "unsupported_response_type", "response_type must be code")
        basic = self._basic(request)
        if basic is None:
            raise CscError(401, "access_denied", "the user did not authenticate (HTTP Basic)")
        otp = request.getHeader(b"x-siegel-otp")
        code = self._service.oauth2_code(basic[0], basic[1], client_address(request, self._trusted),
                                         otp.decode("utf-8", "replace") if otp else None, query.get("client_id"),
                                         query.get("redirect_uri"), query.get("scope"), query.get("code_challenge"),
                                         query.get("code_challenge_method", "plain"), query)
        answer = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        uri = query["redirect_uri"]
        return 302, uri + ("&" if "?" in uri else "?") + urlencode(answer)

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
