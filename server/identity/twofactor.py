"""Second factors: TOTP (RFC 6238), recovery codes, and one-time codes sent by e-mail or SMS.

Storage (tables of migration 0008):

* ``twofactor``, one row per account: the TOTP secret encrypted with AES-256-GCM under the
  installation key (``twofactor.key_file``, 32 random bytes created with mode 0600 on first use;
  the account id is the associated data, so a ciphertext copied to another account does not decrypt),
  the last TOTP time step accepted (a code is accepted once: a step at or before it is refused, the
  update is conditional so two workers cannot both accept it), the SMS number, and the wrong second
  factors in a row (so that a correct password, which resets ``users.failed_logins``, cannot reset the
  count of OTP guesses).
* ``recovery_codes``: 10 codes of 80 random bits each (16 base32 characters), shown once, stored as
  SHA-256. 80 random bits cannot be found from their hash by brute force, so a slow hash (argon2id)
  adds nothing but would cost ten argon2id runs per attempt; a code is looked up by its hash and
  used up by a conditional update (single use).
* ``otp_codes``: sent 6-digit codes as HMAC-SHA256 under the installation key (a leaked table does
  not give them away by trying all 10^6), with channel, purpose, the SHA-256 of what they are bound
  to, expiry and failed attempts. Sending a code supersedes the account's open codes of the same
  purpose; a code is refused after ``code_attempts`` wrong tries.

:meth:`TwoFactorService.verify_otp` checks a code for a purpose and an optional binding (the Remote
signing issue binds codes to the hashes signed); :meth:`TwoFactorService.login` is what the HTTP
guard asks after the password was verified: it honours the lockout, counts wrong codes towards it,
and caches a verified (name, password, code) briefly, never beyond the code's validity.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import sessionmaker

from server.audit import AuditLog
from server.db.models import LoginFailure, OtpCode, RecoveryCode, TwoFactor, User
from server.errors import Code, SiegelError
from server.identity.mail import MailSender
from server.identity.users import Principal, UserService, utc

log = logging.getLogger("siegel.identity")

TOTP_PERIOD = 30
TOTP_DIGITS = 6
RECOVERY_CODES = 10
LOGIN = "login"
"""The purpose of codes that authenticate a request (the X-Siegel-OTP header)."""
CHANNELS = ("email", "sms")
_SIX = re.compile(r"^[0-9]{6}$")
_RECOVERY = re.compile(r"^[A-Z2-7]{16}$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")  # E.164
_PURPOSE = re.compile(r"^[a-z0-9_.:-]{1,64}$")


class SmsSender(Protocol):
    """What the identity domain needs to send a text message; ``adapters/sms`` implements it."""

    def send(self, to: str, text: str) -> None:
        """Hand ``text`` to the gateway for ``to`` (E.164); raise SiegelError when it cannot."""
        ...


@dataclass(frozen=True)
class TwoFactorPolicy:
    """Settings [twofactor]."""

    required_roles: frozenset[str] = frozenset({"admin"})
    issuer: str = "Siegel"
    totp_window: int = 1  # time steps accepted either side of now (clock drift)
    code_minutes: int = 10  # how long a sent code stays valid
    code_attempts: int = 5  # wrong tries before a sent code is dead
    resend_seconds: int = 30  # a second code on one channel within this time is refused

    @classmethod
    def from_settings(cls, tf: Any) -> TwoFactorPolicy:
        return cls(required_roles=frozenset(r.strip() for r in tf.required_roles.split(",") if r.strip()),
                   issuer=tf.issuer, totp_window=tf.totp_window, code_minutes=tf.code_minutes,
                   code_attempts=tf.code_attempts, resend_seconds=tf.resend_seconds)


@dataclass(frozen=True)
class Enrolment:
    """A new, not yet confirmed TOTP secret: the otpauth:// URI and its QR code (PNG)."""

    uri: str
    qr_png: bytes


@dataclass(frozen=True)
class SentCode:
    channel: str
    destination: str  # masked
    expires_at: datetime


@dataclass(frozen=True)
class Status:
    totp: bool  # a confirmed TOTP secret
    totp_pending: bool  # enrolled, not yet confirmed
    recovery_codes_left: int
    phone: str | None  # masked


@dataclass(frozen=True)
class LoginOutcome:
    """What the guard makes of a request of an account that needs a second factor."""

    principal: Principal
    verified: bool  # a valid second factor came with the request
    missing: bool  # none came (a wrong one: verified and missing are both False)
    detail: str


def load_or_create_key(path: Path) -> bytes:
    """The installation's 2FA key (32 bytes) from ``path``, created with mode 0600 when missing."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return load_or_create_key(path)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
        return key
    if len(data) != 32:
        raise SiegelError(Code.CONFIG, f"twofactor.key_file {path}: expected 32 bytes, found {len(data)}")
    return data


def _mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def _mask_phone(number: str) -> str:
    return "*" * max(len(number) - 3, 0) + number[-3:]


def normalise_recovery(code: str) -> str:
    return code.replace("-", "").replace(" ", "").upper()


def _format_recovery(raw: str) -> str:
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def binding_hash(binding: bytes | None) -> str | None:
    return hashlib.sha256(binding).hexdigest() if binding is not None else None


def qr_png(uri: str) -> bytes:
    import qrcode

    image = qrcode.make(uri, box_size=6, border=2)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class TwoFactorService:
    def __init__(self, engine: Engine, audit: AuditLog, users: UserService, key: bytes,
                 policy: TwoFactorPolicy | None = None, mailer: MailSender | None = None,
                 sms: SmsSender | None = None, cache_seconds: float = 60.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._audit = audit
        self._users = users
        self._key = key
        self._aead = AESGCM(hashlib.sha256(b"siegel totp secret\0" + key).digest())
        self._code_key = hashlib.sha256(b"siegel sent code\0" + key).digest()
        self.policy = policy or TwoFactorPolicy()
        self.mailer = mailer
        self.sms = sms
        self._cache_seconds = cache_seconds
        self._cache_key = secrets.token_bytes(32)
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        self._lock = threading.Lock()
        self.clock = clock

    # --- policy ---------------------------------------------------------------------------------

    def required(self, principal: Principal) -> bool:
        """Whether requests of ``principal`` need a second factor (setting twofactor.required_roles)."""
        from server.identity.policy import needs_second_factor

        return needs_second_factor(principal, self.policy.required_roles)

    def status(self, user_id: int) -> Status:
        with self._sessions() as session:
            row = session.get(TwoFactor, user_id)
            left = len(session.execute(select(RecoveryCode.id).where(
                RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))).all())
        return Status(totp=row is not None and row.totp_confirmed_at is not None,
                      totp_pending=row is not None and row.totp_secret is not None and row.totp_confirmed_at is None,
                      recovery_codes_left=left, phone=_mask_phone(row.phone) if row and row.phone else None)

    # --- TOTP -----------------------------------------------------------------------------------

    def _encrypt(self, user_id: int, secret: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, secret.encode("ascii"), f"totp:{user_id}".encode())

    def _decrypt(self, user_id: int, blob: bytes) -> str:
        try:
            return self._aead.decrypt(blob[:12], blob[12:], f"totp:{user_id}".encode()).decode("ascii")
        except (InvalidTag, ValueError):
            raise SiegelError(Code.INTERNAL, f"the TOTP secret of account {user_id} does not decrypt with "
                                             "the installation key (twofactor.key_file replaced?)") from None

    def _row(self, session: Any, user_id: int, lock: bool = False) -> TwoFactor:
        query = select(TwoFactor).where(TwoFactor.user_id == user_id)
        row = session.execute(query.with_for_update() if lock else query).scalar_one_or_none()
        if row is None:
            row = TwoFactor(user_id=user_id, otp_failures=0, updated_at=self.clock())
            session.add(row)
            session.flush()
        return row

    def enrol_totp(self, principal: Principal) -> Enrolment:
        """A new TOTP secret for ``principal`` (replacing one not yet confirmed); active after
        :meth:`confirm_totp`. CONFLICT when a confirmed one exists: remove it first."""
        secret = pyotp.random_base32(32)  # 160 bits, as RFC 4226 recommends
        now = self.clock()
        with self._sessions.begin() as session:
            row = self._row(session, principal.user_id, lock=True)
            if row.totp_confirmed_at is not None:
                raise SiegelError(Code.CONFLICT, "a TOTP authenticator is active already; remove the second "
                                                 "factor (DELETE /api/v1/2fa) before enrolling another")
            row.totp_secret = self._encrypt(principal.user_id, secret)
            row.totp_created_at = now
            row.totp_last_step = None
            row.updated_at = now
            self._audit.append_in(session, principal.name, "2fa.totp_enrol", principal.name)
        uri = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD).provisioning_uri(
            name=principal.name, issuer_name=self.policy.issuer)
        return Enrolment(uri, qr_png(uri))

    def confirm_totp(self, principal: Principal, code: str) -> list[str] | None:
        """Activate the enrolled secret with a first valid code; returns a first set of recovery codes
        when the account has none left (else None). BAD_REQUEST for a wrong code."""
        with self._sessions() as session:
            row = session.get(TwoFactor, principal.user_id)
        if row is None or row.totp_secret is None:
            raise SiegelError(Code.CONFLICT, "no TOTP enrolment to confirm: POST /api/v1/2fa/totp first")
        if row.totp_confirmed_at is not None:
            raise SiegelError(Code.CONFLICT, "the TOTP authenticator is confirmed already")
        if self._totp(principal.user_id, code.strip(), confirmed_only=False) is None:
            raise SiegelError(Code.BAD_REQUEST, "the code does not match the enrolled authenticator "
                                                "(or was used already); try the next one")
        with self._sessions.begin() as session:
            session.execute(update(TwoFactor).where(TwoFactor.user_id == principal.user_id)
                            .values(totp_confirmed_at=self.clock(), updated_at=self.clock()))
            self._audit.append_in(session, principal.name, "2fa.totp_confirm", principal.name)
        if self.status(principal.user_id).recovery_codes_left == 0:
            return self.new_recovery_codes(principal)
        return None

    def _totp(self, user_id: int, code: str, confirmed_only: bool = True) -> float | None:
        """Seconds the accepted TOTP code stays valid (end of its window), None when refused."""
        if not _SIX.match(code):
            return None
        with self._sessions() as session:
            row = session.get(TwoFactor, user_id)
        if row is None or row.totp_secret is None or (confirmed_only and row.totp_confirmed_at is None):
            return None
        totp = pyotp.TOTP(self._decrypt(user_id, row.totp_secret), digits=TOTP_DIGITS, interval=TOTP_PERIOD)
        now = self.clock().timestamp()
        now_step = int(now) // TOTP_PERIOD
        last = row.totp_last_step
        for step in range(now_step - self.policy.totp_window, now_step + self.policy.totp_window + 1):
            if last is not None and step <= last:
                continue
            if hmac.compare_digest(totp.generate_otp(step), code):
                with self._engine.begin() as conn:  # accepted once: only if no one took this step or a later one
                    taken = conn.execute(update(TwoFactor).where(
                        TwoFactor.user_id == user_id,
                        (TwoFactor.totp_last_step.is_(None)) | (TwoFactor.totp_last_step < step))
                        .values(totp_last_step=step)).rowcount
                if taken != 1:
                    return None
                return max((step + self.policy.totp_window + 1) * TOTP_PERIOD - now, 0.0)
        return None

    # --- recovery codes -------------------------------------------------------------------------

    def new_recovery_codes(self, principal: Principal) -> list[str]:
        """Ten new recovery codes (the old ones stop working); shown once, stored as SHA-256."""
        raws = [base64.b32encode(secrets.token_bytes(10)).decode("ascii") for _ in range(RECOVERY_CODES)]
        now = self.clock()
        with self._sessions.begin() as session:
            session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == principal.user_id))
            for raw in raws:
                session.add(RecoveryCode(user_id=principal.user_id, code_hash=_sha256(raw), created_at=now))
            self._audit.append_in(session, principal.name, "2fa.recovery_codes", principal.name, count=len(raws))
        return [_format_recovery(raw) for raw in raws]

    def _recovery(self, user_id: int, code: str) -> float | None:
        """0.0 (valid no longer: single use) when the recovery code is accepted, None when refused."""
        raw = normalise_recovery(code)
        if not _RECOVERY.match(raw):
            return None
        with self._engine.begin() as conn:
            used = conn.execute(update(RecoveryCode).where(
                RecoveryCode.user_id == user_id, RecoveryCode.code_hash == _sha256(raw),
                RecoveryCode.used_at.is_(None)).values(used_at=self.clock())).rowcount
        if used != 1:
            return None
        log.warning("account %d used a recovery code", user_id)
        return 0.0

    # --- sent codes (e-mail, SMS) ---------------------------------------------------------------

    def _code_hash(self, user_id: int, code: str) -> str:
        return hmac.new(self._code_key, f"{user_id}\0{code}".encode(), hashlib.sha256).hexdigest()

    def set_phone(self, name: str, phone: str | None, actor: str = "cli") -> None:
        """The account's SMS number (E.164, e.g. +4930123456), or None to remove it."""
        if phone is not None and not _PHONE.match(phone):
            raise SiegelError(Code.BAD_REQUEST, f"phone number {phone!r}: expected E.164 such as +4930123456")
        principal = self._users.find(name)
        with self._sessions.begin() as session:
            row = self._row(session, principal.user_id, lock=True)
            row.phone = phone
            row.updated_at = self.clock()
            self._audit.append_in(session, actor, "2fa.set_phone", name, removed=phone is None)

    def send_code(self, principal: Principal, channel: str, *, purpose: str = LOGIN,
                  binding: bytes | None = None, host: str | None = None) -> SentCode:
        """Send a 6-digit code to the account's e-mail address or SMS number, valid for
        ``code_minutes`` for ``purpose`` (and ``binding``); older open codes of that purpose die. The mail is
        in the brand of the principal's API client, else of ``host`` (the request's)."""
        if channel not in CHANNELS:
            raise SiegelError(Code.BAD_REQUEST, f"channel {channel!r}: expected email or sms")
        if not _PURPOSE.match(purpose):
            raise SiegelError(Code.BAD_REQUEST, f"purpose {purpose!r}: 1-64 of a-z 0-9 _ . : -")
        now = self.clock()
        with self._sessions() as session:
            user = session.get(User, principal.user_id)
            row = session.get(TwoFactor, principal.user_id)
        if user is None or user.disabled:
            raise SiegelError(Code.NOT_FOUND, f"no enabled account {principal.name!r}")
        if channel == "email":
            if self.mailer is None:
                raise SiegelError(Code.NOT_SUPPORTED, "no mail sender is configured (settings [mail])")
            to, shown = user.email, _mask_email(user.email)
        else:
            if self.sms is None:
                raise SiegelError(Code.NOT_SUPPORTED, "no SMS gateway is configured (settings [sms])")
            if row is None or not row.phone:
                raise SiegelError(Code.BAD_REQUEST, f"account {principal.name!r} has no SMS number "
                                                    "(siegel user set-phone)")
            to, shown = row.phone, _mask_phone(row.phone)
        code = f"{secrets.randbelow(10 ** 6):06d}"
        expires = now + timedelta(minutes=self.policy.code_minutes)
        with self._sessions.begin() as session:
            recent = session.execute(select(OtpCode.id).where(
                OtpCode.user_id == principal.user_id, OtpCode.channel == channel,
                OtpCode.created_at > now - timedelta(seconds=self.policy.resend_seconds))).first()
            if recent is not None:
                raise SiegelError(Code.CONFLICT, f"a code went out by {channel} less than "
                                                 f"{self.policy.resend_seconds} s ago; use that one or wait")
            session.execute(update(OtpCode).where(OtpCode.user_id == principal.user_id, OtpCode.purpose == purpose,
                                                  OtpCode.used_at.is_(None)).values(used_at=now))
            session.add(OtpCode(user_id=principal.user_id, channel=channel, purpose=purpose,
                                binding_hash=binding_hash(binding), code_hash=self._code_hash(principal.user_id, code),
                                created_at=now, expires_at=expires, attempts=0))
            self._audit.append_in(session, principal.name, "2fa.code_sent", principal.name, channel=channel,
                                  purpose=purpose)
        minutes = self.policy.code_minutes
        if channel == "email":
            assert self.mailer is not None
            brand = self._users.mail_brand(principal.client, host)
            brand.send(self.mailer, to, f"{brand.company}: your code {code}",
                       f"Hello {user.display_name or user.name},\n\nyour {brand.company} one-time code is\n\n"
                       f"    {code}\n\nIt is valid for {minutes} minutes and works once. If you did not ask for it, "
                       "someone knows your password: change it and tell your administrator.\n")
        else:
            assert self.sms is not None
            self.sms.send(to, f"Siegel code: {code} (valid {minutes} min, once)")
        return SentCode(channel, shown, expires)

    def _sent(self, user_id: int, code: str, purpose: str, binding: bytes | None) -> float | None:
        """Seconds the accepted sent code would have stayed valid, None when refused."""
        if not _SIX.match(code):
            return None
        now = self.clock()
        wanted = binding_hash(binding)
        with self._engine.begin() as conn:
            live = conn.execute(select(OtpCode.id, OtpCode.code_hash, OtpCode.binding_hash, OtpCode.expires_at).where(
                OtpCode.user_id == user_id, OtpCode.purpose == purpose, OtpCode.used_at.is_(None),
                OtpCode.attempts < self.policy.code_attempts)).all()
            live = [r for r in live if utc(r.expires_at) > now and r.binding_hash == wanted]  # type: ignore[operator]
            given = self._code_hash(user_id, code)
            for r in live:
                if hmac.compare_digest(r.code_hash, given):
                    used = conn.execute(update(OtpCode).where(OtpCode.id == r.id, OtpCode.used_at.is_(None))
                                        .values(used_at=now)).rowcount
                    return (utc(r.expires_at) - now).total_seconds() if used == 1 else None  # type: ignore[operator]
            if live:
                conn.execute(update(OtpCode).where(OtpCode.id.in_([r.id for r in live]))
                             .values(attempts=OtpCode.attempts + 1))
        return None

    # --- verification ---------------------------------------------------------------------------

    def verify_otp(self, user_id: int, code: str, *, purpose: str = LOGIN, binding: bytes | None = None) -> bool:
        """Whether ``code`` is a valid second factor of the account for ``purpose``; a code is used up
        by its acceptance. Without ``binding``: an unused TOTP code (confirmed authenticator), a sent code
        of that purpose without binding, or (for logins) an unused recovery code. With ``binding``: only a
        sent code of that purpose bound to exactly these bytes (TOTP and recovery codes carry no binding)."""
        return self._accept(user_id, code, purpose, binding) is not None

    def _accept(self, user_id: int, code: str, purpose: str, binding: bytes | None) -> float | None:
        """Seconds the accepted code stays valid, None when it is refused."""
        code = (code or "").strip()
        if not code or len(code) > 64:
            return None
        if binding is not None:
            return self._sent(user_id, code, purpose, binding)
        if _SIX.match(code):
            seconds = self._totp(user_id, code)
            return seconds if seconds is not None else self._sent(user_id, code, purpose, None)
        return self._recovery(user_id, code) if purpose == LOGIN else None

    def login(self, principal: Principal, name: str, password: str, code: str | None,
              address: str | None) -> LoginOutcome | None:
        """The guard's second step, after the password of ``principal`` was verified: None when the
        account or the address is locked (refused like a wrong password), else the outcome. A wrong code
        counts as a failed login (account and address lockout)."""
        if not code:
            return LoginOutcome(principal, False, True, "a second factor is needed: send the X-Siegel-OTP header "
                                "with a TOTP code, a recovery code, or a code from POST /api/v1/2fa/otp")
        key = hmac.new(self._cache_key, f"{name}\0{password}\0{code}".encode(), hashlib.sha256).digest()
        mono = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > mono:
                return LoginOutcome(hit[1], True, False, "")
        valid = self.check_login_code(principal, code, address)
        if valid is None:
            return None
        if valid is False:
            return LoginOutcome(principal, False, False, "the second factor (X-Siegel-OTP) is wrong, used or expired")
        seconds = min(valid, self._cache_seconds)  # never beyond the code's validity
        if seconds > 0:
            with self._lock:
                if len(self._cache) > 10000:
                    self._cache = {k: v for k, v in self._cache.items() if v[0] > mono}
                self._cache[key] = (mono + seconds, principal)
        return LoginOutcome(principal, True, False, "")

    def check_login_code(self, principal: Principal, code: str, address: str | None) -> float | bool | None:
        """The second factor of a login whose password was verified (the guard's, the portal's): None when
        the account or the address is locked, False for a wrong code (counted as a failed login), else the
        seconds the accepted code stays valid (it is used up)."""
        now = self.clock()
        with self._sessions() as session:
            locked = utc(session.execute(select(User.locked_until).where(User.id == principal.user_id)).scalar())
            address_locked = utc(session.execute(select(LoginFailure.locked_until).where(
                LoginFailure.address == address)).scalar()) if address else None
        if (locked is not None and locked > now) or (address_locked is not None and address_locked > now):
            return None
        valid = self._accept(principal.user_id, code, LOGIN, None)
        if valid is None:
            self.count_failure(principal.user_id, address)
            return False
        with self._engine.begin() as conn:
            conn.execute(update(TwoFactor).where(TwoFactor.user_id == principal.user_id).values(otp_failures=0))
            conn.execute(update(User).where(User.id == principal.user_id).values(failed_logins=0))
        return valid

    def count_failure(self, user_id: int, address: str | None) -> None:
        """A wrong second factor: one more failed login. The account's count goes on from the wrong codes
        in a row, whatever a correct password reset it to."""
        now = self.clock()
        with self._engine.begin() as conn:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            stmt = insert(TwoFactor).values(user_id=user_id, otp_failures=1, updated_at=now)
            stmt = stmt.on_conflict_do_update(index_elements=[TwoFactor.user_id],
                                              set_={"otp_failures": TwoFactor.otp_failures + 1})
            conn.execute(stmt)
            n = conn.execute(select(TwoFactor.otp_failures).where(TwoFactor.user_id == user_id)).scalar_one()
            conn.execute(update(User).where(User.id == user_id, User.failed_logins < n - 1).values(failed_logins=n - 1))
        self._users.count_failed_login(user_id, address)
        log.info("wrong second factor for account %d (%d in a row)", user_id, n)

    def sweep(self) -> None:
        """The scheduled job "twofactor-codes": sent codes a day past their expiry go."""
        with self._engine.begin() as conn:
            conn.execute(delete(OtpCode).where(OtpCode.expires_at < self.clock() - timedelta(days=1)))

    # --- removal --------------------------------------------------------------------------------

    def remove(self, principal: Principal, actor: str | None = None) -> None:
        """Remove the account's TOTP authenticator and recovery codes (sent codes die too)."""
        self._remove(principal.user_id, principal.name, actor or principal.name, "2fa.remove")

    def reset(self, name: str, actor: str = "cli") -> None:
        """``siegel user reset-2fa``: an administrator removes an account's second factors (lost phone)."""
        with self._sessions() as session:
            user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
        if user is None:
            raise SiegelError(Code.NOT_FOUND, f"no user named {name!r}")
        self._remove(user.id, name, actor, "2fa.reset")

    def _remove(self, user_id: int, name: str, actor: str, action: str) -> None:
        now = self.clock()
        with self._sessions.begin() as session:
            session.execute(update(TwoFactor).where(TwoFactor.user_id == user_id).values(
                totp_secret=None, totp_created_at=None, totp_confirmed_at=None, totp_last_step=None,
                otp_failures=0, updated_at=now))
            session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
            session.execute(update(OtpCode).where(OtpCode.user_id == user_id, OtpCode.used_at.is_(None))
                            .values(used_at=now))
            self._audit.append_in(session, actor, action, name)
        self.forget_cached()

    def forget_cached(self) -> None:
        with self._lock:
            self._cache.clear()


def describe(enrolment: Enrolment) -> dict[str, str]:
    """The JSON answer of an enrolment."""
    return {"uri": enrolment.uri, "qrPng": base64.b64encode(enrolment.qr_png).decode("ascii"),
            "qrDataUri": "data:image/png;base64," + base64.b64encode(enrolment.qr_png).decode("ascii"),
            "next": "POST /api/v1/2fa/totp/confirm with {\"code\": \"<the first code the authenticator shows>\"}"}


