"""The CSC API server's domain: access tokens, credentials, SAD, signing of hashes, timestamps.

Credentials are the users' HSM keys from the internal CA: a credential ID is the key label of a valid
user-signing certificate of the caller, or of one granted to it (``siegel key grant``, the same rule as
:class:`server.signing.keys.SigningKeys`); every other ID is "invalid", so a caller learns nothing about
keys it may not use.

Authorisation is explicit (SCAL2) unless ``csc.auth_mode`` is ``oauth2code``: ``credentials/authorize`` needs
the PIN, which is the account's password (checked by :meth:`UserService.authenticate`, counted towards the
lockout; a locked account is refused before the password is looked at), and an OTP (a code sent by
``credentials/sendOTP`` by e-mail or SMS, bound to the credential, or to the hashes when the client names them
there; or the account's TOTP), checked by :meth:`TwoFactorService.verify_otp` with the purpose ``csc``. The SAD
it returns has 256 random bits and is stored as its SHA-256, with the account, the credential, the exact hashes
(and their algorithm), numSignatures and its expiry (``csc.sad_minutes``). ``signatures/signHash`` signs only
those hashes, at most numSignatures in all (a conditional UPDATE, so concurrent calls cannot overspend it), only
for that account and credential, before the expiry. Access tokens (``auth/login``) are stored as SHA-256 too. An
OAuth2 authorization code of scope ``credential`` is bound the same way (PIN and OTP given at
``oauth2/authorize``); the token it is exchanged for stands for the SAD (a ``csc_sads`` row under the token's
SHA-256) and serves ``signatures/signHash`` only. With ``csc.auth_mode = "oauth2code"`` that is the only way:
credentials/info reports authMode ``oauth2code`` and ``credentials/authorize`` is refused (the CSC API leaves
such credentials to the OAuth2 flow); the user logs in at ``oauth2/authorize`` in the browser (a form: password,
and a code :meth:`CscService.oauth2_send_code` mails for exactly the hashes, or TOTP).

Every authorisation, signature and refusal is an audit entry naming the hashes (never a document: only
hashes reach this service). Errors are :class:`CscError` with the CSC API's ``error``,
``error_description`` and HTTP status.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from server.audit import AuditLog
from server.db.models import ApiClient, Certificate, CscSad, CscToken, KeyGrant, User
from server.errors import Code, SiegelError
from server.identity.policy import Action, allowed
from server.identity.users import Principal, Role, UserService, utc
from server.pki import profiles
from server.signing.keysource import DigestAlgorithm, SignatureScheme

log = logging.getLogger("siegel.csc")

PURPOSE = "csc"
OAUTH2CODE = "oauth2code"
"""The purpose of one-time codes that authorise CSC credentials (server.identity.twofactor)."""

HASH_OIDS: dict[str, DigestAlgorithm] = {
    "2.16.840.1.101.3.4.2.1": DigestAlgorithm.SHA256,
    "2.16.840.1.101.3.4.2.2": DigestAlgorithm.SHA384,
    "2.16.840.1.101.3.4.2.3": DigestAlgorithm.SHA512,
}
OID_OF_HASH = {v: k for k, v in HASH_OIDS.items()}
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"  # the hash comes from hashAlgorithmOID
EC_PUBLIC_KEY = "1.2.840.10045.2.1"
# signAlgo → (scheme, implied hash or None)
SIGN_ALGOS: dict[str, tuple[SignatureScheme, DigestAlgorithm | None]] = {
    "1.2.840.10045.4.3.2": (SignatureScheme.ECDSA, DigestAlgorithm.SHA256),
    "1.2.840.10045.4.3.3": (SignatureScheme.ECDSA, DigestAlgorithm.SHA384),
    "1.2.840.10045.4.3.4": (SignatureScheme.ECDSA, DigestAlgorithm.SHA512),
    EC_PUBLIC_KEY: (SignatureScheme.ECDSA, None),
    "1.2.840.113549.1.1.11": (SignatureScheme.RSA_PKCS1V15, DigestAlgorithm.SHA256),
    "1.2.840.113549.1.1.12": (SignatureScheme.RSA_PKCS1V15, DigestAlgorithm.SHA384),
    "1.2.840.113549.1.1.13": (SignatureScheme.RSA_PKCS1V15, DigestAlgorithm.SHA512),
    RSA_ENCRYPTION: (SignatureScheme.RSA_PKCS1V15, None),
}
CURVE_OIDS = {"secp256r1": "1.2.840.10045.3.1.7", "secp384r1": "1.3.132.0.34", "secp521r1": "1.3.132.0.35"}


class CscError(Exception):
    """A refusal as the CSC API specifies it: HTTP status, ``error`` and ``error_description``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def invalid(description: str) -> CscError:
    """HTTP 400 ``invalid_request``: what the CSC API answers for every refused parameter, a wrong PIN or OTP
    included (their ``error_description`` tells them apart)."""
    return CscError(400, "invalid_request", description)


PIN_INVALID = "The PIN is invalid"
OTP_INVALID = "The OTP is invalid"


class Hsm(Protocol):
    def sign_digest(self, key_label: str, digest: bytes, digest_algorithm: DigestAlgorithm | str,
                    scheme: SignatureScheme) -> bytes: ...

    def certificate_chain(self, key_label: str) -> list[bytes]: ...


class OtpVerifier(Protocol):
    def verify_otp(self, user_id: int, code: str, *, purpose: str = ..., binding: bytes | None = None) -> bool: ...

    def send_code(self, principal: Principal, channel: str, *, purpose: str = ..., binding: bytes | None = None
                  ) -> Any: ...

    def count_failure(self, user_id: int, address: str | None) -> None: ...

    def required(self, principal: Principal) -> bool: ...

    def login(self, principal: Principal, name: str, password: str, code: str | None, address: str | None) -> Any: ...


@dataclass(frozen=True)
class CscPolicy:
    """Settings [csc]."""

    name: str = "Siegel"
    region: str = "DE"
    token_minutes: int = 60
    sad_minutes: int = 5
    multisign: int = 100
    redirect_uris: frozenset[str] = frozenset()
    auth_mode: str = "explicit"  # or OAUTH2CODE: the credentials are authorised at oauth2/authorize only

    @classmethod
    def from_settings(cls, csc: Any) -> CscPolicy:
        return cls(csc.name, csc.region, csc.token_minutes, csc.sad_minutes, csc.multisign,
                   frozenset(u.strip() for u in csc.oauth2_redirect_uris.split(",") if u.strip()), csc.auth_mode)


@dataclass(frozen=True)
class Authorization:
    sad: str
    expires_in: int


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def decode_hashes(values: Any, what: str = "hashes") -> list[bytes]:
    """The list of base64 hashes of a request (CSC: "Invalid Base64 hash string parameter")."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise invalid(f"Missing (or invalid type) array parameter {what}")
    if not values:
        raise invalid("Empty hash array")
    out = []
    for v in values:
        try:
            out.append(base64.b64decode(v.replace("-", "+").replace("_", "/") + "=" * (-len(v) % 4), validate=True))
        except (binascii.Error, ValueError):
            raise invalid("Invalid Base64 hash string parameter") from None
    return out


def hash_algorithm(oid: Any, what: str = "hashAlgorithmOID") -> DigestAlgorithm:
    if not isinstance(oid, str):
        raise invalid(f"Missing (or invalid type) string parameter {what}")
    if oid not in HASH_OIDS:
        raise invalid(f"Invalid parameter {what}")
    return HASH_OIDS[oid]


def credential_request(query: Mapping[str, str]) -> tuple[Any, Any, list[bytes], DigestAlgorithm]:
    """credentialID, numSignatures, hashes and their algorithm of an oauth2/authorize request of scope
    credential: the query parameters (``hashes`` base64url, comma-separated) or ``authorization_details``
    (RFC 9396, one entry of type credential with ``documentDigests``)."""
    raw = query.get("authorization_details")
    if raw is not None:
        try:
            details = json.loads(raw)
        except (ValueError, RecursionError):
            raise invalid("Invalid parameter authorization_details") from None
        entries = [d for d in details if isinstance(d, dict) and d.get("type") == "credential"] \
            if isinstance(details, list) else []
        if len(entries) != 1:
            raise invalid("Invalid parameter authorization_details (one entry of type credential)")
        entry = entries[0]
        digests = entry.get("documentDigests")
        if not isinstance(digests, list) or not all(isinstance(d, dict) for d in digests):
            raise invalid("Missing (or invalid type) array parameter documentDigests")
        hashes = decode_hashes([d.get("hash") for d in digests], "documentDigests")
        return entry.get("credentialID"), entry.get("numSignatures", len(hashes)), hashes, \
            hash_algorithm(entry.get("hashAlgorithmOID"))
    number = query.get("numSignatures")
    num_signatures: Any = int(number) if number is not None and number.isdigit() else number
    listed = query.get("hashes")
    hashes = decode_hashes(listed.split(",") if listed else None)
    return query.get("credentialID"), num_signatures, hashes, hash_algorithm(query.get("hashAlgorithmOID"))


def otp_binding(credential_id: str, hashes: list[bytes] | None = None, algorithm: DigestAlgorithm | None = None) -> bytes:
    """What a sent CSC code is bound to: the credential, and the hashes when the client named them."""
    base = b"csc\0" + credential_id.encode("utf-8")
    if hashes is None:
        return base
    return base + b"\0" + str(algorithm or "").encode() + b"\0" + b"".join(sorted(hashes))


class CscService:
    def __init__(self, engine: Engine, audit: AuditLog, users: UserService, twofactor: OtpVerifier,
                 hsm: Callable[[], Hsm], policy: CscPolicy | None = None,
                 timestamp: Callable[[bytes, DigestAlgorithm, int | None], bytes] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._audit = audit
        self._users = users
        self._twofactor = twofactor
        self._hsm = hsm
        self.policy = policy or CscPolicy()
        self._timestamp = timestamp
        self.clock = clock

    # --- service authorisation --------------------------------------------------------------------

    def login(self, name: str, password: str, address: str | None, otp: str | None = None) -> tuple[str, int]:
        """auth/login with HTTP Basic: a short-lived access token (stored as its SHA-256)."""
        principal = self._users.authenticate(name, password, address)
        if principal is not None and self._twofactor.required(principal):
            outcome = self._twofactor.login(principal, name, password, otp, address)
            if outcome is None or not outcome.verified:
                self._audit.append("anonymous", "csc.login_refused", name, reason="second factor missing or wrong")
                raise CscError(400, "authentication_error", "An error occurred during authentication process "
                                    "(this account needs a second factor in the X-Siegel-OTP header)")
        if principal is None:
            self._audit.append("anonymous", "csc.login_refused", name[:200], reason="wrong name or password, or locked")
            raise CscError(400, "authentication_error", "An error occurred during authentication process")
        return self._issue(principal, principal.client, "auth/login")

    def _issue(self, principal: Principal, client_id: str | None, how: str, credential: Any = None) -> tuple[str, int]:
        """A bearer access token for ``principal`` (stored as its SHA-256), audited. With ``credential`` (the
        code's row of scope credential) the token stands for a SAD of its binding, as long as a SAD lives."""
        if not allowed(principal, Action.REMOTE_SIGN):
            self._audit.append(principal.name, "csc.login_refused", principal.name, reason="role may not sign")
            raise CscError(403, "access_denied", f"the role {principal.role.value} may not sign remotely")
        token = secrets.token_urlsafe(32)
        now = self.clock()
        seconds = (self.policy.sad_minutes if credential is not None else self.policy.token_minutes) * 60
        binding = {} if credential is None else {
            "scope": "credential", "credential_id": credential.credential_id,
            "num_signatures": credential.num_signatures, "hash_algorithm": credential.hash_algorithm,
            "hashes": credential.hashes}
        with self._engine.begin() as conn:
            conn.execute(insert(CscToken).values(
                token_hash=_sha256(token), user_id=principal.user_id, kind="access", client_id=client_id,
                created_at=now, expires_at=now + timedelta(seconds=seconds), **binding))
            self._audit.append_many_in(conn, [(principal.name, "csc.login", principal.name,
                                               {"expires_in": seconds, "via": how, "client": client_id,
                                                "scope": binding.get("scope", "service")})])
            if credential is not None:
                self._sad_row(conn, token, principal, credential.credential_id, HASH_OIDS[credential.hash_algorithm],
                              json.loads(credential.hashes), credential.num_signatures, now, seconds,
                              "oauth2 scope credential")
        return token, seconds

    # --- OAuth2 (authorization code with PKCE, client credentials), scopes "service" and "credential" ------

    def oauth2_code(self, name: str, password: str, address: str | None, otp: str | None, client_id: Any,
                    redirect_uri: Any, scope: Any, challenge: Any, method: Any,
                    query: Mapping[str, str] | None = None) -> str:
        """oauth2/authorize: the user (HTTP Basic) grants the API client ``client_id`` a code (60 s, once)
        for ``redirect_uri`` (one of csc.oauth2_redirect_uris), bound to the PKCE S256 ``challenge``.

        Scope ``credential`` (or ``authorization_details`` of type credential): the code, and the token it is
        exchanged for, authorise exactly the hashes named in ``query`` for one credential, at most
        numSignatures times (SCAL2, as a SAD); the user gives the PIN (the password) and an OTP
        (``otp``) for them here."""
        query = query or {}
        for_credential = self.oauth2_request(client_id, redirect_uri, scope, challenge, method, query)
        principal = self._users.authenticate(name, password, address)
        if principal is not None and not for_credential and self._twofactor.required(principal):
            outcome = self._twofactor.login(principal, name, password, otp, address)
            principal = principal if outcome is not None and outcome.verified else None
        if principal is None:
            self._audit.append("anonymous", "csc.login_refused", name[:200], reason="oauth2/authorize: wrong credentials")
            raise CscError(401, "access_denied", "the user did not authenticate")
        if not allowed(principal, Action.REMOTE_SIGN):
            raise CscError(403, "access_denied", f"the role {principal.role.value} may not sign remotely")
        binding: dict[str, Any] = {}
        if for_credential:
            credential_id, num_signatures, hashes, algorithm = credential_request(query)
            label, hex_hashes = self._bound(principal, credential_id, num_signatures, hashes, algorithm)
            wrong = self._check_otp(principal, label, hashes, algorithm, otp, address)  # the password was the PIN
            if wrong is not None:
                raise self._refused(principal, label, hex_hashes, num_signatures, invalid(OTP_INVALID),
                                    f"oauth2/authorize: {wrong}")
            binding = {"scope": "credential", "credential_id": label, "num_signatures": num_signatures,
                       "hash_algorithm": OID_OF_HASH[algorithm], "hashes": json.dumps(hex_hashes)}
        code = secrets.token_urlsafe(32)
        now = self.clock()
        with self._engine.begin() as conn:
            conn.execute(insert(CscToken).values(
                token_hash=_sha256(code), user_id=principal.user_id, kind="code", client_id=client_id,
                redirect_uri=redirect_uri, code_challenge=challenge, created_at=now,
                expires_at=now + timedelta(seconds=60), **binding))
            self._audit.append_many_in(conn, [(principal.name, "csc.oauth2_code", principal.name, {
                "client": client_id, "scope": binding.get("scope", "service"),
                **({"credential": binding["credential_id"], "hashes": json.loads(binding["hashes"]),
                    "numSignatures": binding["num_signatures"]} if binding else {})})])
        return code

    def oauth2_request(self, client_id: Any, redirect_uri: Any, scope: Any, challenge: Any, method: Any,
                       query: Mapping[str, str]) -> bool:
        """The checks of an oauth2/authorize request before anyone logs in (the login page is shown only for
        a valid one, and never redirects elsewhere than a registered URI); True for scope credential (its
        parameters checked as well)."""
        if not isinstance(client_id, str) or not self._client_exists(client_id):
            raise invalid("Invalid parameter client_id")
        if not isinstance(redirect_uri, str) or redirect_uri not in self.policy.redirect_uris:
            raise invalid("Invalid parameter redirect_uri (not registered in csc.oauth2_redirect_uris)")
        for_credential = scope == "credential" or (scope is None and "authorization_details" in query)
        if scope not in (None, "service", "credential"):
            raise CscError(400, "invalid_scope", "the scopes offered are service and credential")
        if method != "S256" or not isinstance(challenge, str) or not 43 <= len(challenge) <= 128:
            raise invalid("PKCE: code_challenge and code_challenge_method=S256 are required")
        if for_credential:
            credential_request(query)
        return for_credential

    def oauth2_send_code(self, name: str, password: str, address: str | None, query: Mapping[str, str]) -> Any:
        """The login page's "send me a code": after the password (the PIN, counted towards the lockout), a code
        by e-mail bound to the credential and exactly the hashes of the oauth2/authorize request ``query``."""
        principal = self._users.authenticate(name, password, address)
        if principal is None:
            self._audit.append("anonymous", "csc.login_refused", name[:200],
                               reason="oauth2/authorize: wrong credentials (code not sent)")
            raise CscError(401, "access_denied", "the user did not authenticate")
        credential_id, _, hashes, algorithm = credential_request(query)
        return self.send_otp(principal, credential_id, "email", hashes, algorithm)

    def _client_exists(self, client_id: str) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(select(ApiClient.id).where(ApiClient.client_key == client_id,
                                                           ApiClient.revoked_at.is_(None))).first() is not None

    def oauth2_token(self, form: dict[str, str], basic: tuple[str, str] | None, address: str | None) -> tuple[str, int]:
        """oauth2/token: authorization_code (with the PKCE code_verifier) or client_credentials."""
        grant = form.get("grant_type")
        client_id = form.get("client_id") or (basic[0] if basic else None)
        if not grant:
            raise invalid("Missing parameter grant_type")
        if not client_id:
            raise invalid("Missing parameter client_id")
        if grant == "client_credentials":
            secret = form.get("client_secret") or (basic[1] if basic else None)
            if not secret:
                raise invalid("Client authorization required")
            principal = self._users.authenticate(client_id, secret, address)
            if principal is None or principal.client != client_id:
                raise invalid("Invalid parameter client_secret")
            return self._issue(principal, client_id, "oauth2 client_credentials")
        if grant != "authorization_code":
            raise invalid("Invalid parameter grant_type")
        code = form.get("code")
        if not code:
            raise invalid("Missing parameter code")
        now = self.clock()
        with self._engine.begin() as conn:  # single use: only one exchange takes the code
            row = conn.execute(select(CscToken.user_id, CscToken.client_id, CscToken.redirect_uri,
                                      CscToken.code_challenge, CscToken.expires_at, CscToken.scope,
                                      CscToken.credential_id, CscToken.num_signatures, CscToken.hash_algorithm,
                                      CscToken.hashes)
                               .where(CscToken.token_hash == _sha256(code), CscToken.kind == "code")).first()
            taken = conn.execute(update(CscToken).where(CscToken.token_hash == _sha256(code), CscToken.kind == "code",
                                                        CscToken.revoked_at.is_(None)).values(revoked_at=now)).rowcount
        if row is None or taken != 1 or utc(row.expires_at) <= now:  # type: ignore[operator]
            raise CscError(400, "invalid_grant", "Authorization code is invalid or expired")
        if row.client_id != client_id:
            raise invalid("Invalid parameter client_id")
        if form.get("redirect_uri") != row.redirect_uri:
            raise CscError(400, "invalid_grant", "redirect_uri parameter does not match")
        verifier = form.get("code_verifier") or ""
        expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("utf-8")).digest()).rstrip(b"=").decode()
        if not verifier or not secrets.compare_digest(expected, row.code_challenge or ""):
            raise CscError(400, "invalid_grant", "PKCE: the code_verifier does not match the code_challenge")
        with self._engine.connect() as conn:
            user = conn.execute(select(User.name, User.role, User.disabled).where(User.id == row.user_id)).first()
        if user is None or user.disabled:
            raise CscError(400, "invalid_grant", "Authorization code is invalid or expired")
        return self._issue(Principal(row.user_id, user.name, Role(user.role)), client_id, "oauth2 authorization_code",
                           row if row.scope == "credential" else None)

    def principal(self, token: str) -> Principal:
        """The account of a bearer token of scope service; 401 invalid_token / expired_token otherwise, 403
        insufficient_scope for a token of scope credential (it only signs its hashes: signatures/signHash)."""
        principal, scope = self.bearer(token)
        if scope == "credential":
            raise CscError(403, "insufficient_scope", "an access token of scope credential authorises "
                                                      "signatures/signHash only")
        return principal

    def bearer(self, token: str) -> tuple[Principal, str]:
        """The account and the scope (service or credential) of a bearer token."""
        now = self.clock()
        with self._engine.connect() as conn:
            row = conn.execute(select(CscToken.user_id, CscToken.expires_at, CscToken.revoked_at, CscToken.scope,
                                      User.name, User.role, User.disabled).join(User, User.id == CscToken.user_id)
                               .where(CscToken.token_hash == _sha256(token), CscToken.kind == "access")).first()
        if row is None or row.disabled:
            raise CscError(401, "invalid_token", "The access token is not valid")
        if row.revoked_at is not None or utc(row.expires_at) <= now:  # type: ignore[operator]
            raise CscError(401, "expired_token", "The access token is expired or has been revoked")
        principal = Principal(row.user_id, row.name, Role(row.role))
        if not allowed(principal, Action.REMOTE_SIGN):
            raise CscError(403, "access_denied", f"the role {principal.role.value} may not sign remotely")
        return principal, row.scope or "service"

    def revoke(self, principal: Principal, token: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(CscToken).where(CscToken.token_hash == _sha256(token),
                                                CscToken.user_id == principal.user_id)
                         .values(revoked_at=self.clock()))

    # --- credentials ------------------------------------------------------------------------------

    def credentials(self, principal: Principal) -> list[str]:
        """Key labels of the caller's valid user-signing certificates, then of those granted to it."""
        now = self.clock()
        valid = (Certificate.profile == profiles.USER_SIGNING.name, Certificate.revoked_at.is_(None),
                 Certificate.not_after > now)
        with self._engine.connect() as conn:
            own = conn.execute(select(Certificate.key_label).where(Certificate.user_id == principal.user_id, *valid)
                               .order_by(Certificate.not_after.desc())).scalars().all()
            granted = conn.execute(select(Certificate.key_label).join(KeyGrant, KeyGrant.key_label == Certificate.key_label)
                                   .where(KeyGrant.user_id == principal.user_id, *valid)
                                   .order_by(Certificate.key_label)).scalars().all()
        out: list[str] = []
        for label in [*own, *granted]:
            if label not in out:
                out.append(label)
        return out

    def _certificate(self, principal: Principal, credential_id: Any) -> Certificate:
        """The newest valid certificate of a credential the caller may use; "Invalid parameter credentialID"."""
        if not isinstance(credential_id, str) or not credential_id:
            raise invalid("Missing (or invalid type) string parameter credentialID")
        if credential_id not in self.credentials(principal):
            raise invalid("Invalid parameter credentialID")
        with Session(self._engine) as session:
            row = session.execute(select(Certificate).where(
                Certificate.key_label == credential_id, Certificate.profile == profiles.USER_SIGNING.name,
                Certificate.revoked_at.is_(None)).order_by(Certificate.not_after.desc()).limit(1)).scalars().first()
            if row is None:
                raise invalid("Invalid parameter credentialID")
            session.expunge(row)
        return row

    def credential_info(self, principal: Principal, credential_id: Any, certificates: Any = "single",
                        cert_info: bool = False, auth_info: bool = True) -> dict[str, Any]:
        """credentials/info: key (algorithm OIDs, length, curve), certificate(s), SCAL 2, explicit PIN + OTP
        (or authMode oauth2code: csc.auth_mode)."""
        if certificates not in ("none", "single", "chain"):
            raise invalid("Invalid parameter certificates")
        cert = self._certificate(principal, credential_id)
        parsed = x509.load_der_x509_certificate(cert.der)
        key = parsed.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey):
            algos = ["1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4", EC_PUBLIC_KEY]
            key_part: dict[str, Any] = {"status": "enabled", "algo": algos, "len": key.curve.key_size,
                                        "curve": CURVE_OIDS.get(key.curve.name, key.curve.name)}
        elif isinstance(key, rsa.RSAPublicKey):
            algos = ["1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13", RSA_ENCRYPTION]
            key_part = {"status": "enabled", "algo": algos, "len": key.key_size}
        else:  # pragma: no cover - the CA issues only RSA and EC keys
            raise CscError(500, "server_error", "the credential's key is neither RSA nor EC")
        chain = [cert.der] if certificates == "single" else [] if certificates == "none" else \
            self._chain(cert)
        cert_part: dict[str, Any] = {"status": "valid", "certificates": [base64.b64encode(c).decode() for c in chain]}
        if cert_info:
            cert_part.update({"issuerDN": parsed.issuer.rfc4514_string(), "serialNumber": format(parsed.serial_number, "X"),
                              "subjectDN": parsed.subject.rfc4514_string(),
                              "validFrom": parsed.not_valid_before_utc.strftime("%Y%m%d%H%M%SZ"),
                              "validTo": parsed.not_valid_after_utc.strftime("%Y%m%d%H%M%SZ")})
        out: dict[str, Any] = {
            "description": f"Signing key {cert.key_label} of {cert.subject}", "key": key_part, "cert": cert_part,
            "SCAL": "2", "multisign": self.policy.multisign, "lang": "en-US"}
        if self.policy.auth_mode == OAUTH2CODE:  # PIN and OTP are asked at oauth2/authorize, not by the client
            out["authMode"] = OAUTH2CODE
            if auth_info:
                out["auth"] = {"mode": OAUTH2CODE}
            return out
        pin = {"presence": "true", "format": "A", "label": "Password",
               "description": "The password of your Siegel account"}
        otp = {"presence": "true", "type": "online", "format": "N", "label": "One-time code",
               "description": "A code from credentials/sendOTP (e-mail or SMS) or your authenticator app (TOTP)"}
        out.update({"authMode": "explicit", "PIN": pin, "OTP": otp})  # as CSC v1 names them
        if auth_info:
            out["auth"] = {"mode": "explicit", "expression": "PIN AND OTP", "objects": [
                {"type": "Password", "id": "PIN", "format": "A", "label": pin["label"], "description": pin["description"]},
                {"type": "Password", "id": "OTP", "format": "N", "label": otp["label"], "description": otp["description"]}]}
        return out

    def _chain(self, cert: Certificate) -> list[bytes]:
        chain = self._hsm().certificate_chain(cert.key_label)
        if not chain or chain[0] != cert.der:
            chain = [cert.der, *[c for c in chain if c != cert.der]]
        return chain

    # --- credential authorisation -----------------------------------------------------------------

    def send_otp(self, principal: Principal, credential_id: Any, channel: str = "email",
                 hashes: list[bytes] | None = None, algorithm: DigestAlgorithm | None = None) -> Any:
        """credentials/sendOTP: a code by e-mail (default) or SMS, bound to the credential (and the hashes)."""
        cert = self._certificate(principal, credential_id)
        if channel not in ("email", "sms"):
            raise invalid("Invalid parameter channel (email or sms)")
        try:
            return self._twofactor.send_code(principal, channel, purpose=PURPOSE,
                                             binding=otp_binding(cert.key_label, hashes, algorithm))
        except SiegelError as exc:
            if exc.code in (Code.CONFLICT, Code.BAD_REQUEST):
                raise invalid(exc.message) from None
            raise

    def _locked(self, user_id: int) -> bool:
        with self._engine.connect() as conn:
            until = utc(conn.execute(select(User.locked_until).where(User.id == user_id)).scalar())
        return until is not None and until > self.clock()

    def _bound(self, principal: Principal, credential_id: Any, num_signatures: Any, hashes: list[bytes] | None,
               algorithm: DigestAlgorithm | None) -> tuple[str, list[str]]:
        """What an authorisation binds (SCAL2): the credential's label and the exact hashes (hex, sorted)."""
        label = self._certificate(principal, credential_id).key_label
        if isinstance(num_signatures, bool) or not isinstance(num_signatures, int):
            raise invalid("Missing (or invalid type) integer parameter numSignatures")
        if num_signatures < 1:
            raise invalid("Invalid value for parameter numSignatures")
        if num_signatures > self.policy.multisign:
            raise invalid("Numbers of signatures is too high")
        if hashes is None:
            raise invalid("Missing (or invalid type) array parameter hashes (SCAL2: the SAD is bound to the hashes)")
        if len(hashes) > num_signatures:
            raise invalid("Invalid parameter hashes: more hashes than numSignatures")
        if algorithm is not None and any(len(h) != algorithm.size for h in hashes):
            raise invalid("Invalid digest value length")
        return label, sorted({h.hex() for h in hashes})

    def _refused(self, principal: Principal, label: str, hex_hashes: list[str], num_signatures: int,
                 error: CscError, reason: str) -> CscError:
        self._audit.append(principal.name, "csc.authorize_refused", label, reason=reason, hashes=hex_hashes,
                           numSignatures=num_signatures)
        return error

    def _check_otp(self, principal: Principal, label: str, hashes: list[bytes], algorithm: DigestAlgorithm | None,
                   otp: Any, address: str | None) -> str | None:
        """None when ``otp`` is a code of the account for this credential (or these hashes), else the reason."""
        code = otp if isinstance(otp, str) else ""
        if code and any(self._twofactor.verify_otp(principal.user_id, code, purpose=PURPOSE, binding=b)
                        for b in (otp_binding(label, hashes, algorithm), otp_binding(label), None)):
            return None
        if code:
            self._twofactor.count_failure(principal.user_id, address)
        return "wrong OTP" if code else "no OTP"

    def _sad_row(self, conn: Any, secret: str, principal: Principal, label: str, algorithm: DigestAlgorithm | None,
                 hex_hashes: list[str], num_signatures: int, now: datetime, seconds: int, via: str) -> None:
        """The SAD (or the credential-scope token standing for it) as its SHA-256, and its audit entry."""
        conn.execute(insert(CscSad).values(
            sad_hash=_sha256(secret), user_id=principal.user_id, credential_id=label,
            hash_algorithm=OID_OF_HASH[algorithm] if algorithm else None, hashes=json.dumps(hex_hashes),
            num_signatures=num_signatures, used=0, created_at=now, expires_at=now + timedelta(seconds=seconds)))
        self._audit.append_many_in(conn, [(principal.name, "csc.authorize", label, {
            "numSignatures": num_signatures, "hashes": hex_hashes,
            "hashAlgorithm": str(algorithm) if algorithm else None, "expires_in": seconds, "via": via})])

    def authorize(self, principal: Principal, credential_id: Any, num_signatures: Any, hashes: list[bytes] | None,
                  algorithm: DigestAlgorithm | None, pin: Any, otp: Any, address: str | None) -> Authorization:
        """credentials/authorize (explicit, SCAL2): PIN = the account's password, OTP; a SAD for the hashes.
        Refused for credentials of authMode oauth2code (before any PIN is looked at)."""
        if self.policy.auth_mode == OAUTH2CODE:
            label = self._certificate(principal, credential_id).key_label
            number = num_signatures if isinstance(num_signatures, int) else 0
            raise self._refused(principal, label, sorted({h.hex() for h in hashes or []}), number,
                                invalid("Invalid authMode for credentials/authorize: the credential's authMode is "
                                        "oauth2code (authorise at oauth2/authorize with scope credential)"),
                                "explicit authorisation of an oauth2code credential")
        label, hex_hashes = self._bound(principal, credential_id, num_signatures, hashes, algorithm)
        assert hashes is not None

        def refuse(error: CscError, reason: str) -> CscError:
            return self._refused(principal, label, hex_hashes, num_signatures, error, reason)

        if self._locked(principal.user_id):
            raise refuse(invalid("PIN locked"), "account locked")
        if not isinstance(pin, str) or not pin:
            raise refuse(invalid(PIN_INVALID), "no PIN")
        if self._users.authenticate(principal.name, pin, address) is None:
            if self._locked(principal.user_id):
                raise refuse(invalid("PIN locked"), "wrong PIN, account locked")
            raise refuse(invalid(PIN_INVALID), "wrong PIN")
        wrong = self._check_otp(principal, label, hashes, algorithm, otp, address)
        if wrong is not None:
            raise refuse(invalid(OTP_INVALID), wrong)
        sad = secrets.token_urlsafe(32)  # 256 random bits
        seconds = self.policy.sad_minutes * 60
        with self._engine.begin() as conn:
            self._sad_row(conn, sad, principal, label, algorithm, hex_hashes, num_signatures, self.clock(), seconds,
                          "credentials/authorize")
        return Authorization(sad, seconds)

    def authorize_check(self, principal: Principal, credential_id: Any, sad: Any) -> dict[str, Any]:
        """credentials/authorizeCheck (Siegel authorises synchronously): the state of a SAD of the caller."""
        label = self._certificate(principal, credential_id).key_label
        row = self._sad(principal, label, sad)
        left = row.num_signatures - row.used
        return {"SAD": sad, "expiresIn": max(int((utc(row.expires_at) - self.clock()).total_seconds()), 0),  # type: ignore[operator]
                "remainingSignatures": left}

    def _sad(self, principal: Principal, label: str, sad: Any) -> Any:
        if not isinstance(sad, str) or not sad:
            raise invalid("Missing (or invalid type) string parameter SAD")
        with Session(self._engine) as session:
            row = session.execute(select(CscSad).where(CscSad.sad_hash == _sha256(sad))).scalars().first()
            if row is not None:
                session.expunge(row)
        if row is None or row.user_id != principal.user_id or row.credential_id != label:
            raise invalid("Invalid parameter SAD")
        if utc(row.expires_at) <= self.clock():  # type: ignore[operator]
            raise invalid("SAD expired")
        if row.used >= row.num_signatures:
            raise invalid("Invalid parameter SAD")
        return row

    # --- signing --------------------------------------------------------------------------------

    def sign_hash(self, principal: Principal, credential_id: Any, sad: Any, hashes: list[bytes],
                  hash_oid: Any, sign_algo: Any) -> list[bytes]:
        """signatures/signHash: one signature per hash (same order), as the SAD allows."""
        label = credential_id if isinstance(credential_id, str) else ""

        def refused(error: CscError, reason: str) -> CscError:
            self._audit.append(principal.name, "csc.sign_refused", label[:200], reason=reason,
                               hashes=[h.hex() for h in hashes])
            return error

        try:
            cert = self._certificate(principal, credential_id)
            if not isinstance(sign_algo, str):
                raise invalid("Missing (or invalid type) string parameter signAlgo")
            if sign_algo not in SIGN_ALGOS:
                raise invalid("Invalid parameter signAlgo")
            scheme, implied = SIGN_ALGOS[sign_algo]
            key = x509.load_der_x509_certificate(cert.der).public_key()
            if (scheme is SignatureScheme.ECDSA) != isinstance(key, ec.EllipticCurvePublicKey):
                raise invalid("Invalid parameter signAlgo")
            given = hash_algorithm(hash_oid) if hash_oid is not None else None
            if implied is not None and given is not None and given is not implied:
                raise invalid("String parameter hashAlgorithmOID contradicts with signAlgo parameter")
            row = self._sad(principal, cert.key_label, sad)
            bound_algorithm = HASH_OIDS.get(row.hash_algorithm or "")
            algorithm = implied or given or bound_algorithm
            if algorithm is None:
                raise invalid("Missing (or invalid type) string parameter hashAlgorithmOID")
            if bound_algorithm is not None and algorithm is not bound_algorithm:
                raise invalid("Invalid parameter hashAlgorithmOID: the SAD was issued for another hash algorithm")
            if any(len(h) != algorithm.size for h in hashes):
                raise invalid("Invalid digest value length")
            bound = set(json.loads(row.hashes))
            if any(h.hex() not in bound for h in hashes):
                raise invalid("Hash is not authorized by the SAD")
            if certificate_expired(cert, self.clock()):
                raise invalid(f"Signing certificate '{cert.subject}' is expired")
        except CscError as exc:
            raise refused(exc, exc.description) from None
        n = len(hashes)
        try:
            hsm = self._hsm()
            values = [hsm.sign_digest(cert.key_label, h, algorithm, scheme) for h in hashes]
        except Exception:
            self._audit.append(principal.name, "csc.sign_failed", cert.key_label, hashes=[h.hex() for h in hashes])
            raise
        # The values leave only if this one transaction spends the SAD (never beyond numSignatures, even
        # concurrently: the conditional UPDATE) and writes the audit entry; otherwise they are dropped.
        with self._engine.begin() as conn:
            spent = conn.execute(update(CscSad).where(
                CscSad.sad_hash == row.sad_hash, CscSad.used + n <= CscSad.num_signatures,
                CscSad.expires_at > self.clock()).values(used=CscSad.used + n)).rowcount
            if spent == 1:
                self._audit.append_many_in(conn, [(principal.name, "csc.sign", cert.key_label, {
                    "hashes": [h.hex() for h in hashes], "hashAlgorithm": str(algorithm), "signAlgo": sign_algo,
                    "serial": cert.serial})])
        if spent != 1:
            raise refused(invalid("Invalid parameter SAD"), f"the SAD does not cover {n} more signatures")
        return values

    def timestamp(self, principal: Principal, hash_b64: Any, hash_oid: Any, nonce: Any) -> bytes:
        """signatures/timestamp: an RFC 3161 token over the hash from the configured TSA."""
        if not isinstance(hash_b64, str):
            raise invalid("Missing (or invalid type) string parameter hash")
        if not hash_b64:
            raise invalid("Empty hash parameter")
        digest = decode_hashes([hash_b64], "hash")[0]
        algorithm = hash_algorithm(hash_oid, "hashAlgo")
        if len(digest) != algorithm.size:
            raise invalid("Invalid digest value length")
        number: int | None = None
        if nonce is not None:
            try:
                number = int(str(nonce), 16)
            except ValueError:
                raise invalid("Invalid parameter nonce") from None
        if self._timestamp is None:
            raise CscError(501, "not_implemented", "no TSA is configured")
        token = self._timestamp(digest, algorithm, number)
        self._audit.append(principal.name, "csc.timestamp", "", hash=digest.hex(), hashAlgorithm=str(algorithm))
        return token


def certificate_expired(cert: Certificate, now: datetime) -> bool:
    return utc(cert.not_after) <= now  # type: ignore[operator]


def internal_timestamp(respond: Callable[[bytes], Any]) -> Callable[[bytes, DigestAlgorithm, int | None], bytes]:
    """A timestamp function over our TSA's ``respond(TimeStampReq DER) -> TsaReply``."""
    from asn1crypto import tsp

    def stamp(digest: bytes, algorithm: DigestAlgorithm, nonce: int | None) -> bytes:
        fields: dict[str, Any] = {"version": 1, "message_imprint": {
            "hash_algorithm": {"algorithm": str(algorithm)}, "hashed_message": digest}, "cert_req": True}
        if nonce is not None:
            fields["nonce"] = nonce
        reply = respond(tsp.TimeStampReq(fields).dump())
        resp = tsp.TimeStampResp.load(reply.der)
        if resp["status"]["status"].native not in ("granted", "granted_with_mods"):
            raise SiegelError(Code.TSA_FAILED, f"the TSA refused: {reply.problem}")
        return resp["time_stamp_token"].dump()  # type: ignore[no-any-return]

    return stamp
