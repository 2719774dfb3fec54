"""A client of one CSC API v2 remote signature service: service authorisation (``auth/login`` with HTTP
Basic, OAuth2 client credentials, or an OAuth2 authorization code with PKCE), ``credentials/list``,
``credentials/info``, ``credentials/sendOTP``, ``credentials/authorize`` (explicit: PIN and OTP, bound to
the exact hashes, SCAL2) and ``signatures/signHash`` (many hashes under one SAD).

Every call has a timeout; connection errors and 5xx answers are retried (``retries`` extra attempts), but a
``signatures/signHash`` only after ``credentials/authorizeCheck`` says its SAD still covers the hashes, so a
spent SAD is never sent again. Refusals name the service, the method and the service's ``error`` and
``error_description``. The calls block: run them off the reactor.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from cryptography import x509

from server.errors import Code, SiegelError
from server.remote.csc_service import OID_OF_HASH, SIGN_ALGOS
from server.signing.keysource import DigestAlgorithm, SignatureScheme

if TYPE_CHECKING:
    import requests

TOKEN_MARGIN_SECONDS = 30.0  # an access token is renewed this long before the service says it expires
CALLER_DESCRIPTIONS = frozenset({"The PIN is invalid", "The OTP is invalid"})  # CSC: invalid_request, HTTP 400
CALLER_ERRORS = frozenset({"invalid_pin", "invalid_otp"})  # the same as some services name them


class RemoteServiceError(SiegelError):
    """A CSC service refused or failed: its name, the method, the HTTP status, ``error`` and ``error_description``."""

    def __init__(self, service: str, method: str, status: int | None, error: str, description: str) -> None:
        code = Code.BAD_REQUEST if error in CALLER_ERRORS or description in CALLER_DESCRIPTIONS \
            else Code.REMOTE_SIGNING_FAILED
        where = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(code, f"remote signing service {service!r}, {method}: {error}: {description} ({where})")
        self.service = service
        self.method = method
        self.status = status
        self.error = error
        self.description = description

    @property
    def transient(self) -> bool:
        """No answer, or a 5xx: worth another attempt."""
        return self.status is None or self.status >= 500


@dataclass(frozen=True)
class RemoteAccount:
    """One configured remote signing account (an entry of ``remote_signing.accounts_file``)."""

    name: str
    url: str  # the service's CSC API base, e.g. https://rss.example/csc/v2
    auth: str  # basic (auth/login), oauth2client (client credentials) or oauth2code (PKCE, a user's browser)
    username: str  # basic: the account at the service; oauth2client / oauth2code: the client_id
    secret: str  # basic: its password; oauth2client: the client secret (from secret_file, never the TOML)
    ca_file: str | None = None  # PEM CA file the service's TLS certificate must chain to; None: the system store
    users: frozenset[str] = frozenset()  # Siegel accounts that may sign with it; empty: every signing account


@dataclass(frozen=True)
class CredentialInfo:
    """What ``credentials/info`` says about one credential."""

    credential_id: str
    chain: tuple[bytes, ...]  # DER, the signer's certificate first
    key_algorithms: tuple[str, ...]  # signAlgo OIDs the key offers
    key_status: str
    certificate_status: str
    scal: str  # "1" or "2"
    auth_mode: str  # implicit, explicit or oauth2code
    needs_pin: bool
    needs_otp: bool
    otp_type: str | None  # online (the service sends it: sendOTP) or offline (an app or token shows it)
    multisign: int
    description: str

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.chain[0])

    def sign_algo(self, scheme: SignatureScheme, digest: DigestAlgorithm) -> str:
        """The signAlgo OID for ``scheme`` over ``digest`` among those the key offers."""
        fitting = [oid for oid, (s, implied) in SIGN_ALGOS.items() if s is scheme and implied in (digest, None)
                   and oid in self.key_algorithms]
        fitting.sort(key=lambda oid: SIGN_ALGOS[oid][1] is None)  # the one naming the hash first
        if not fitting:
            raise SiegelError(Code.NOT_SUPPORTED, f"credential {self.credential_id!r} offers no {scheme.value} "
                                                  f"signature over {digest.value} (its algorithms: "
                                                  f"{', '.join(self.key_algorithms) or 'none'})")
        return fitting[0]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pkce_pair() -> tuple[str, str]:
    """An RFC 7636 code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    return verifier, challenge


class CscClient:
    def __init__(self, account: RemoteAccount, timeout: float, retries: int) -> None:
        self.account = account
        self.timeout = timeout
        self.retries = retries
        self._http: requests.Session | None = None  # made on the first call: an idle worker needs no requests
        self._http_lock = threading.Lock()
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # access token and when (monotonic) to renew it

    @property
    def _base(self) -> str:
        return self.account.url.rstrip("/")

    # --- transport --------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        """The HTTP session to the service, made (and requests imported, ~4.6 MB) on the first call."""
        import requests

        with self._http_lock:
            if self._http is None:
                self._http = requests.Session()
                self._http.verify = self.account.ca_file or True
            return self._http

    def _once(self, method: str, json_body: dict[str, Any] | None, form: dict[str, str] | None,
              basic: tuple[str, str] | None, bearer: bool | str) -> Any:
        headers = {"Accept": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer if isinstance(bearer, str) else self._access_token()}"
        import requests

        http = self._session()
        try:
            response = http.post(f"{self._base}/{method}", json=json_body if form is None else None,
                                 data=form, auth=basic, headers=headers, timeout=self.timeout, allow_redirects=False)
        except requests.Timeout:
            raise RemoteServiceError(self.account.name, method, None, "timeout",
                                     f"no answer within {self.timeout:g} s") from None
        except requests.RequestException as exc:
            raise RemoteServiceError(self.account.name, method, None, "unreachable",
                                     f"{type(exc).__name__}: {exc}") from None
        if response.status_code == 204:
            return {}
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            description = body.get("error_description") if isinstance(body, dict) else None
            raise RemoteServiceError(self.account.name, method, response.status_code,
                                     str(error or "http_error"),
                                     str(description or response.reason or "the answer is not a JSON object"))
        return body

    def _call(self, method: str, json_body: dict[str, Any] | None = None, *, form: dict[str, str] | None = None,
              basic: tuple[str, str] | None = None, bearer: bool | str = True, retry: bool = True) -> Any:
        """One CSC method; transient failures retried when ``retry``; an expired token renewed once
        (``bearer``: True for the account's token, or a given token, e.g. one of scope credential)."""
        attempts = self.retries + 1 if retry else 1
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._once(method, json_body, form, basic, bearer)
            except RemoteServiceError as exc:
                if bearer is True and exc.status == 401 and not renewed:
                    renewed = True
                    with self._lock:
                        self._token = None
                    continue
                if not exc.transient or attempt >= attempts:
                    raise
            time.sleep(min(0.2 * attempt, 2.0))

    def _access_token(self) -> str:
        with self._lock:
            if self._token is not None and self._token[1] > time.monotonic():
                return self._token[0]
        a = self.account
        if a.auth == "basic":
            answer = self._call("auth/login", {}, basic=(a.username, a.secret), bearer=False)
        elif a.auth == "oauth2client":
            answer = self._call("oauth2/token", form={"grant_type": "client_credentials", "client_id": a.username,
                                                      "client_secret": a.secret}, bearer=False)
        else:
            raise SiegelError(Code.CONFLICT, f"remote signing account {a.name!r} signs in with an OAuth2 "
                                             "authorization code: a user has to authorise it first "
                                             "(authorization_url, then exchange_code)")
        return self._keep_token(answer, "auth/login" if a.auth == "basic" else "oauth2/token")

    def _keep_token(self, answer: dict[str, Any], method: str) -> str:
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise RemoteServiceError(self.account.name, method, 200, "invalid_response", "no access_token")
        expires = answer.get("expires_in", 3600)
        seconds = float(expires) if isinstance(expires, int | float) else 3600.0
        with self._lock:
            self._token = (token, time.monotonic() + max(seconds - TOKEN_MARGIN_SECONDS, 1.0))
        return token

    # --- OAuth2 authorization code with PKCE (RFC 7636) -------------------------------------------

    def authorization_url(self, redirect_uri: str, state: str, challenge: str, *, scope: str = "service",
                          credential_id: str | None = None, hashes: Sequence[bytes] = (),
                          digest: DigestAlgorithm | None = None) -> str:
        """Where the user's browser goes to authorise this client: scope ``service``, or ``credential`` for
        one credential and the exact hashes (the token then stands for the SAD)."""
        query = {"response_type": "code", "client_id": self.account.username, "redirect_uri": redirect_uri,
                 "scope": scope, "code_challenge": challenge, "code_challenge_method": "S256", "state": state}
        if scope == "credential":
            if credential_id is None or not hashes or digest is None:
                raise SiegelError(Code.BAD_REQUEST, "scope credential needs the credential, the hashes and their "
                                                    "algorithm")
            query.update({"credentialID": credential_id, "numSignatures": str(len(hashes)),
                          "hashes": ",".join(base64.urlsafe_b64encode(h).rstrip(b"=").decode() for h in hashes),
                          "hashAlgorithmOID": OID_OF_HASH[digest]})
        return f"{self._base}/oauth2/authorize?{urlencode(query)}"

    def exchange_code(self, code: str, verifier: str, redirect_uri: str, *, keep: bool = True) -> str:
        """The access token for an authorization code and the PKCE verifier it was asked with: kept for the
        calls of this account (scope service), or only returned (``keep=False``: scope credential, a token
        that stands for the SAD of its hashes in :meth:`sign_hash`)."""
        answer = self._call("oauth2/token", form={
            "grant_type": "authorization_code", "code": code, "code_verifier": verifier,
            "client_id": self.account.username, "redirect_uri": redirect_uri,
            **({"client_secret": self.account.secret} if self.account.secret else {})}, bearer=False, retry=False)
        if keep:
            return self._keep_token(answer, "oauth2/token")
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise RemoteServiceError(self.account.name, "oauth2/token", 200, "invalid_response", "no access_token")
        return token

    # --- methods ----------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return self._call("info", {}, bearer=False)  # type: ignore[no-any-return]

    def credentials(self) -> list[str]:
        answer = self._call("credentials/list", {})
        ids = answer.get("credentialIDs")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise RemoteServiceError(self.account.name, "credentials/list", 200, "invalid_response",
                                     "no credentialIDs list")
        return ids

    def credential_info(self, credential_id: str) -> CredentialInfo:
        answer = self._call("credentials/info", {"credentialID": credential_id, "certificates": "chain",
                                                 "certInfo": True, "authInfo": True})
        return _credential(self.account.name, credential_id, answer)

    def send_otp(self, credential_id: str) -> None:
        """credentials/sendOTP: the service sends the user a one-time code (online OTP)."""
        self._call("credentials/sendOTP", {"credentialID": credential_id}, retry=False)

    def authorize(self, credential_id: str, hashes: Sequence[bytes], digest: DigestAlgorithm, pin: str | None,
                  otp: str | None) -> str:
        """credentials/authorize (explicit): a SAD for exactly ``hashes``; never retried (an OTP is used once)."""
        auth_data = [{"id": k, "value": v} for k, v in (("PIN", pin), ("OTP", otp)) if v]
        answer = self._call("credentials/authorize", {
            "credentialID": credential_id, "numSignatures": len(hashes), "hashes": [_b64(h) for h in hashes],
            "hashAlgorithmOID": OID_OF_HASH[digest], "authData": auth_data}, retry=False)
        sad = answer.get("SAD")
        if not isinstance(sad, str) or not sad:
            raise RemoteServiceError(self.account.name, "credentials/authorize", 200, "invalid_response", "no SAD")
        return sad

    def sign_hash(self, credential_id: str, sad: str | None, hashes: Sequence[bytes], digest: DigestAlgorithm,
                  sign_algo: str, *, credential_token: str | None = None) -> list[bytes]:
        """signatures/signHash: one value per hash, in order, under a SAD, or under a ``credential_token``
        (OAuth2 scope credential, in place of the SAD). A transient failure is retried only while
        ``credentials/authorizeCheck`` shows the SAD unspent for these hashes (never under a token)."""
        body = {"credentialID": credential_id, "hashes": [_b64(h) for h in hashes],
                "hashAlgorithmOID": OID_OF_HASH[digest], "signAlgo": sign_algo, **({"SAD": sad} if sad else {})}
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = self._call("signatures/signHash", body, bearer=credential_token or True, retry=False)
                break
            except RemoteServiceError as exc:
                if not exc.transient or attempt > self.retries or sad is None \
                        or not self._sad_covers(credential_id, sad, len(hashes)):
                    raise
            time.sleep(min(0.2 * attempt, 2.0))
        values = answer.get("signatures")
        if not isinstance(values, list) or len(values) != len(hashes) or not all(isinstance(v, str) for v in values):
            raise RemoteServiceError(self.account.name, "signatures/signHash", 200, "invalid_response",
                                     f"expected {len(hashes)} signatures, got {values!r:.80}")
        try:
            return [base64.b64decode(v, validate=True) for v in values]
        except ValueError:
            raise RemoteServiceError(self.account.name, "signatures/signHash", 200, "invalid_response",
                                     "a signature is not base64") from None

    def _sad_covers(self, credential_id: str, sad: str, count: int) -> bool:
        """Whether the service says the SAD can still make ``count`` signatures (False when it cannot tell)."""
        try:
            answer = self._call("credentials/authorizeCheck", {"credentialID": credential_id, "SAD": sad})
        except RemoteServiceError:
            return False
        left = answer.get("remainingSignatures")
        return isinstance(left, int) and left >= count


def _credential(service: str, credential_id: str, answer: dict[str, Any]) -> CredentialInfo:
    """credentials/info of CSC v2 (``auth.mode``, ``auth.objects``), or the v1 names (``authMode``, ``PIN``, ``OTP``)."""
    def bad(what: str) -> RemoteServiceError:
        return RemoteServiceError(service, "credentials/info", 200, "invalid_response", what)

    key, cert = answer.get("key"), answer.get("cert")
    if not isinstance(key, dict) or not isinstance(cert, dict):
        raise bad("no key or cert object")
    try:
        chain = tuple(base64.b64decode(c, validate=True) for c in cert.get("certificates") or [])
        if chain:
            x509.load_der_x509_certificate(chain[0])
    except ValueError:
        raise bad("cert.certificates holds something other than base64 DER certificates") from None
    if not chain:
        raise bad("no certificate (asked with certificates=chain)")
    auth = answer.get("auth") if isinstance(answer.get("auth"), dict) else {}
    mode = str(auth.get("mode") or answer.get("authMode") or "explicit")
    objects = {str(o.get("id", "")).upper(): o for o in auth.get("objects") or [] if isinstance(o, dict)}
    pin_v1 = answer.get("PIN") if isinstance(answer.get("PIN"), dict) else {}
    otp_v1 = answer.get("OTP") if isinstance(answer.get("OTP"), dict) else {}
    needs_pin = "PIN" in objects or pin_v1.get("presence") == "true"
    needs_otp = "OTP" in objects or otp_v1.get("presence") == "true"
    otp_type = otp_v1.get("type") or ("online" if needs_otp else None)
    multisign = answer.get("multisign", 1)
    return CredentialInfo(credential_id, chain, tuple(str(a) for a in key.get("algo") or []),
                          str(key.get("status", "enabled")), str(cert.get("status", "valid")),
                          str(answer.get("SCAL", "1")), mode, needs_pin, needs_otp,
                          str(otp_type) if otp_type else None, multisign if isinstance(multisign, int) else 1,
                          str(answer.get("description", "")))


def certificate_validity(info: CredentialInfo) -> dict[str, str]:
    """Subject, issuer and validity of the credential's certificate (for the admin overview)."""
    c = info.certificate
    now = datetime.now(UTC)
    state = "valid" if c.not_valid_before_utc <= now < c.not_valid_after_utc else "expired" \
        if now >= c.not_valid_after_utc else "not yet valid"
    return {"subject": c.subject.rfc4514_string(), "issuer": c.issuer.rfc4514_string(),
            "serial": format(c.serial_number, "x"), "notBefore": c.not_valid_before_utc.isoformat(),
            "notAfter": c.not_valid_after_utc.isoformat(), "validity": state}
