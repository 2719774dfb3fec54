"""WS-Security UsernameToken (OASIS WSS UsernameToken Profile 1.1) on every SOAP endpoint.

A SOAP request may carry ``soap:Header/wsse:Security/wsse:UsernameToken`` instead of HTTP Basic. The
guard (:mod:`server.web.auth`) reads it for every path under ``SOAP_PREFIXES`` with :func:`token_of` from the
one scan of the request's start (:mod:`server.web.soap_prefix`, which also finds the DSS operation; a DOCTYPE
stops it) and checks it here:

- ``wsse:Password Type="…#PasswordText"`` (also the default when Type is absent): accepted only on a TLS
  connection (``request.isSecure()``); checked like HTTP Basic by
  :meth:`server.identity.users.UserService.authenticate` against the argon2id hash, with its lockout.
- ``…#PasswordDigest``: ``Base64(SHA-1(nonce + created + secret))`` with ``wsse:Nonce`` (Base64) and
  ``wsu:Created``. Created must lie within ``wssecurity.created_window_seconds`` before now and at most
  ``wssecurity.future_skew_seconds`` after it. Each nonce (per user name) is accepted once: its SHA-256 is
  stored in ``wss_nonces`` with the time its Created leaves the window, so all workers and nodes see it;
  expired rows are swept. A digest needs the plain secret on the server, which an argon2id hash cannot
  give: only API clients that were given a *digest secret* (``siegel apiclient digest-secret KEY``) can
  use it. That secret is separate from the client's Basic secret, shown once, and stored encrypted with
  AES-256-GCM under the key in ``secrets/wss-digest.key`` (0600; copy it to every node). The user name is
  the API client key.

A wrong or unknown credential counts as a failed login of the source address (the lockout per address
applies, and a locked address is refused before any check); a replayed nonce or a stale Created is refused
without counting (it proves nothing about a guessed secret). Failures are SOAP faults whose faultcode is
``wsse:FailedAuthentication`` or ``wsse:InvalidSecurityToken`` (or ``wsse:UnsupportedSecurityToken``),
with the DSS Result (RequesterError / AuthenticationError) in the detail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from server.db.models import ApiClient, User, WssDigestSecret, WssNonce
from server.errors import Code, SiegelError
from server.identity.users import API_KEY, Principal, Role, UserService
from server.web.soap import SOAP11_ENV, dss_result, soap_envelope
from server.web.soap_prefix import WSSE, SoapPrefix, scan_soap

log = logging.getLogger("siegel.wssecurity")

WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
PASSWORD_TEXT = _PROFILE + "#PasswordText"
PASSWORD_DIGEST = _PROFILE + "#PasswordDigest"
BASE64_BINARY = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"

FAILED_AUTHENTICATION = "FailedAuthentication"
INVALID_SECURITY_TOKEN = "InvalidSecurityToken"
UNSUPPORTED_SECURITY_TOKEN = "UnsupportedSecurityToken"
KEY_FILE = "secrets/wss-digest.key"
SWEEP_SECONDS = 60.0


class WssFault(Exception):
    """A refused UsernameToken: the wsse fault code (local name) and a message for the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def fault_envelope(fault: WssFault) -> bytes:
    """A SOAP 1.1 fault: faultcode ``wsse:<code>``, the message, and the DSS Result in the detail."""
    error = SiegelError(Code.UNAUTHENTICATED, fault.message)
    envelope, body = soap_envelope()
    element = etree.SubElement(body, f"{{{SOAP11_ENV}}}Fault", nsmap={"wsse": WSSE})
    etree.SubElement(element, "faultcode").text = f"wsse:{fault.code}"
    etree.SubElement(element, "faultstring").text = fault.message
    etree.SubElement(element, "detail").append(dss_result(error.kind.major, error.result_minor, fault.message))
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


# --- reading the token ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UsernameToken:
    username: str
    password: str
    password_type: str
    nonce: str | None = None  # as sent (Base64)
    nonce_encoding: str | None = None
    created: str | None = None  # as sent


def token_of(prefix: SoapPrefix) -> UsernameToken | None:
    """The UsernameToken of a scanned SOAP request; None without a wsse:Security header. Raises WssFault
    for a Security header without a usable UsernameToken."""
    if not prefix.security:
        return None
    if prefix.tokens != 1:
        raise WssFault(UNSUPPORTED_SECURITY_TOKEN if prefix.tokens == 0 else INVALID_SECURITY_TOKEN,
                       "the wsse:Security header must hold exactly one wsse:UsernameToken "
                       f"(it holds {prefix.tokens})")
    if prefix.repeated is not None:
        raise WssFault(INVALID_SECURITY_TOKEN,
                       f"the UsernameToken holds {etree.QName(prefix.repeated).localname} twice")
    f = prefix.fields
    username, password = f.get(f"{{{WSSE}}}Username"), f.get(f"{{{WSSE}}}Password")
    if not username or password is None:
        raise WssFault(INVALID_SECURITY_TOKEN, "the UsernameToken needs a wsse:Username and a wsse:Password")
    password_type = prefix.attrs[f"{{{WSSE}}}Password"].get("Type") or PASSWORD_TEXT
    nonce_attrs = prefix.attrs.get(f"{{{WSSE}}}Nonce", {})
    return UsernameToken(username, password, password_type, f.get(f"{{{WSSE}}}Nonce"),
                         nonce_attrs.get("EncodingType"), f.get(f"{{{WSU}}}Created"))


def read_token(content: Any) -> UsernameToken | None:
    """:func:`token_of` the SOAP request in ``content`` (a file, read and rewound)."""
    return token_of(scan_soap(content))


def password_digest(nonce: bytes, created: str, secret: str) -> str:
    """Base64(SHA-1(nonce + created + secret)), UsernameToken Profile 1.1 section 3.1."""
    return base64.b64encode(hashlib.sha1(nonce + created.encode("utf-8") + secret.encode("utf-8")).digest()).decode()


def parse_created(text: str) -> datetime:
    """An xs:dateTime with a time zone (Z or ±hh:mm), as UTC."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise WssFault(INVALID_SECURITY_TOKEN, f"wsu:Created {text!r} is not an xs:dateTime") from None
    if parsed.tzinfo is None:
        raise WssFault(INVALID_SECURITY_TOKEN, f"wsu:Created {text!r} has no time zone (use UTC, ending in Z)")
    return parsed.astimezone(timezone.utc)


# --- the digest secrets -----------------------------------------------------------------------------------

class DigestKey:
    """The AES-256-GCM key that encrypts PasswordDigest secrets (``secrets/wss-digest.key``, 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, create: bool = False) -> AESGCM | None:
        if not self.path.exists():
            if not create:
                return None
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(AESGCM.generate_key(bit_length=256))
        key = self.path.read_bytes()
        if len(key) != 32:
            raise SiegelError(Code.CONFIG, f"{self.path}: expected a 32-byte AES key")
        return AESGCM(key)

    @staticmethod
    def seal(aead: AESGCM, client_key: str, secret: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + aead.encrypt(nonce, secret.encode("utf-8"), client_key.encode("ascii"))

    @staticmethod
    def open(aead: AESGCM, client_key: str, sealed: bytes) -> str:
        return aead.decrypt(sealed[:12], sealed[12:], client_key.encode("ascii")).decode("utf-8")


@dataclass(frozen=True)
class WssPolicy:
    created_window_seconds: float = 300.0
    future_skew_seconds: float = 60.0

    @classmethod
    def from_settings(cls, wss: Any) -> "WssPolicy":
        return cls(wss.created_window_seconds, wss.future_skew_seconds)


class WsSecurity:
    """Checks UsernameTokens; issues and stores API clients' digest secrets."""

    def __init__(self, users: UserService, key_file: Path, policy: WssPolicy | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._users = users
        self._engine = users._engine
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._key = DigestKey(key_file)
        self.policy = policy or WssPolicy()
        self.clock = clock or users.clock
        self._swept = 0.0
        self._lock = threading.Lock()

    # --- administration -----------------------------------------------------------------------------

    def new_digest_secret(self, client_key: str, actor: str = "cli") -> str:
        """A new PasswordDigest secret for the API client ``client_key`` (replacing an earlier one); shown once."""
        aead = self._key.load(create=True)
        assert aead is not None
        secret = secrets.token_urlsafe(32)
        with self._sessions.begin() as session:
            client = session.execute(select(ApiClient).where(ApiClient.client_key == client_key)).scalar_one_or_none()
            if client is None:
                raise SiegelError(Code.NOT_FOUND, f"no API client with the key {client_key!r}")
            if client.revoked_at is not None:
                raise SiegelError(Code.CONFLICT, f"the API client {client_key} is revoked")
            row = session.get(WssDigestSecret, client.id)
            if row is None:
                session.add(WssDigestSecret(client_id=client.id, secret_enc=DigestKey.seal(aead, client_key, secret),
                                            created_at=self.clock()))
            else:
                row.secret_enc = DigestKey.seal(aead, client_key, secret)
                row.created_at = self.clock()
            self._users._audit.append_in(session, actor, "apiclient.digest_secret", client_key)
        return secret

    # --- authentication ----------------------------------------------------------------------------

    def authenticate(self, token: UsernameToken, secure: bool, address: str | None) -> Principal:
        """The account ``token`` proves, or WssFault. Runs off the reactor thread (database, argon2id). An
        account whose role needs a second factor (twofactor.required_roles) is refused: a token carries none."""
        principal = self._authenticate(token, secure, address)
        twofactor = getattr(self._users, "twofactor", None)  # set by the wiring (server.app)
        if twofactor is not None and twofactor.required(principal):
            raise WssFault(FAILED_AUTHENTICATION, f"the account {principal.name} needs a second factor, which a "
                                                  "UsernameToken does not carry: use HTTP Basic with X-Siegel-OTP")
        return principal

    def _authenticate(self, token: UsernameToken, secure: bool, address: str | None) -> Principal:
        if token.password_type == PASSWORD_TEXT:
            if not secure:
                raise WssFault(FAILED_AUTHENTICATION, "PasswordText is accepted over TLS (https) only: use https, "
                                                      "or a PasswordDigest with Nonce and Created")
            principal = self._users.authenticate(token.username, token.password, address)
            if principal is None:
                raise WssFault(FAILED_AUTHENTICATION, "unknown user, wrong password, or locked")
            return principal
        if token.password_type != PASSWORD_DIGEST:
            raise WssFault(UNSUPPORTED_SECURITY_TOKEN, f"wsse:Password Type {token.password_type!r}: expected "
                                                       "#PasswordText or #PasswordDigest")
        return self._digest(token, address)

    def _digest(self, token: UsernameToken, address: str | None) -> Principal:
        if not token.nonce or not token.created:
            raise WssFault(INVALID_SECURITY_TOKEN, "a PasswordDigest needs wsse:Nonce and wsu:Created")
        if token.nonce_encoding not in (None, BASE64_BINARY):
            raise WssFault(INVALID_SECURITY_TOKEN, f"wsse:Nonce EncodingType {token.nonce_encoding!r}: "
                                                   "expected #Base64Binary")
        try:
            nonce = base64.b64decode(token.nonce, validate=True)
        except ValueError:
            raise WssFault(INVALID_SECURITY_TOKEN, "wsse:Nonce is not Base64") from None
        if not 8 <= len(nonce) <= 256:
            raise WssFault(INVALID_SECURITY_TOKEN, "wsse:Nonce: 8 to 256 bytes")
        created = parse_created(token.created)
        now = self.clock()
        p = self.policy
        if created > now + timedelta(seconds=p.future_skew_seconds):
            raise WssFault(FAILED_AUTHENTICATION, "wsu:Created lies in the future (check the client's clock)")
        if created < now - timedelta(seconds=p.created_window_seconds):
            raise WssFault(FAILED_AUTHENTICATION, f"wsu:Created is older than {p.created_window_seconds:g} s: "
                                                  "the message expired")
        with self._sessions() as session:
            if self._users._address_locked(session, address, now):
                raise WssFault(FAILED_AUTHENTICATION, "unknown user, wrong password, or locked")
            row = (session.execute(select(ApiClient, User, WssDigestSecret)
                                   .join(User, ApiClient.user_id == User.id)
                                   .join(WssDigestSecret, WssDigestSecret.client_id == ApiClient.id)
                                   .where(ApiClient.client_key == token.username)).first()
                   if API_KEY.match(token.username) else None)
        aead = self._key.load()
        secret = None
        if row is not None and aead is not None:
            try:
                secret = DigestKey.open(aead, token.username, row[2].secret_enc)
            except (InvalidTag, ValueError, UnicodeDecodeError):  # a key file from elsewhere: no digest is right
                log.error("the PasswordDigest secret of %s does not decrypt with %s", token.username, self._key.path)
        expected = password_digest(nonce, token.created, secret if secret is not None else secrets.token_urlsafe(32))
        if not hmac.compare_digest(expected.encode(), token.password.strip().encode()) or secret is None:
            self._users._failed(None, address, now)  # counts for the source address, like a wrong Basic secret
            raise WssFault(FAILED_AUTHENTICATION, "unknown API client, no digest secret, or wrong digest")
        client, user = row[0], row[1]  # type: ignore[index]
        if client.revoked_at is not None or user.disabled:
            raise WssFault(FAILED_AUTHENTICATION, "the API client is revoked or its account disabled")
        self._remember_nonce(token.username, nonce, created, now)
        return Principal(user.id, user.name, Role(user.role), client.client_key)

    def _remember_nonce(self, username: str, nonce: bytes, created: datetime, now: datetime) -> None:
        """Store the nonce once; a second time is a replay. Expired nonces are swept now and then."""
        digest = hashlib.sha256(username.encode("utf-8") + b"\0" + nonce).hexdigest()
        expires = max(created, now) + timedelta(seconds=self.policy.created_window_seconds
                                                + self.policy.future_skew_seconds)
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(WssNonce).values(nonce_hash=digest, expires_at=expires))
        except IntegrityError:
            raise WssFault(FAILED_AUTHENTICATION, "this wsse:Nonce was used already: a replayed message") from None
        self.sweep(now)

    def sweep(self, now: datetime | None = None, force: bool = False) -> int:
        """Delete the nonces whose Created left the window (at most every SWEEP_SECONDS unless ``force``)."""
        mono = time.monotonic()
        with self._lock:
            if not force and mono - self._swept < SWEEP_SECONDS:
                return 0
            self._swept = mono
        with self._engine.begin() as conn:
            return conn.execute(delete(WssNonce).where(WssNonce.expires_at < (now or self.clock()))).rowcount

    def nonces(self) -> int:
        """How many nonces are stored (for tests)."""
        with self._sessions() as session:
            return len(session.execute(select(WssNonce.nonce_hash)).all())

