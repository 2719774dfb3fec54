"""User accounts with argon2id password hashes, password authentication, lockout, password resets.

Verifying argon2id costs tens of milliseconds on purpose. ERP clients send HTTP Basic on every
request, so a verified credential is cached briefly, keyed by an HMAC (with a per-process random
key) of the name and the presented secret: the cache never holds a password or a reusable hash.
A cache hit needs no database: it proves the right secret was verified within
``auth.credential_cache_seconds``, so lockouts (which stop guessing) do not apply to it.

Lockout (:class:`LoginPolicy`): failed logins are counted in the database, per account
(``users.failed_logins``) and per source address (``login_failures``), so all workers and nodes
see them. From the ``lockout_threshold``-th failure of an account (``address_lockout_threshold``-th
of an address) on, each failure locks it for 2, 4, 8, ... seconds, at most ``lockout_max_seconds``.
While locked, every login answers "no" before argon2id runs (and is not counted). A successful login
resets the account's count; an address's count is forgotten ``failure_window_seconds`` after its
last failure (a success does not reset it: one valid account must not let an address go on guessing
others).

API clients (``server.identity.apiclients``) authenticate with key:secret through the same
:meth:`UserService.authenticate`, as the integration account they belong to.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Callable, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from server.audit import AuditLog
from server.db.models import ApiClient, DirectoryAccount, Group, GroupMember, LoginFailure, PasswordReset, User
from server.errors import Code, SiegelError
from server.identity.directory import AccountHook
from server.identity.mail import MailBrand, MailBrands, MailSender

log = logging.getLogger("siegel.identity")


PASSWORD_HASH = {"time_cost": 2, "memory_cost": 19 * 1024, "parallelism": 1}
"""argon2id as OWASP's cheat sheet has it (19 MiB, 2 passes, 1 lane): argon2-cffi's default of 64 MiB made
every cache miss of a worker 64 MiB larger for a moment. A hash carries its parameters, so older ones still
verify; a successful login stores the password's hash anew with these."""

class Role(str, Enum):
    ADMIN = "admin"
    AUDITOR = "auditor"
    TEMPLATE_MANAGER = "template_manager"
    SIGNER = "signer"
    INTEGRATION = "integration"


@dataclass(frozen=True)
class Principal:
    """Who a request acts for; ``client`` is the API client key when one authenticated."""

    user_id: int
    name: str
    role: Role
    client: str | None = None


@dataclass(frozen=True)
class UserInfo:
    """An account as ``siegel user list`` shows it."""

    id: int
    name: str
    email: str
    role: str
    source: str
    disabled: bool
    locked_until: datetime | None
    last_login_at: datetime | None


@dataclass(frozen=True)
class GroupInfo:
    """A group as the admin's users page lists it: ``source`` local or directory (``external_id`` the directory
    entry's GUID), and how many accounts are in it (``enabled`` of them not disabled)."""

    name: str
    source: str
    external_id: str | None
    members: int
    enabled: int


@dataclass(frozen=True)
class LoginPolicy:
    """Password and lockout rules (settings [auth])."""

    min_password_length: int = 12
    lockout_threshold: int = 5
    address_lockout_threshold: int = 20
    lockout_max_seconds: float = 3600.0
    failure_window_seconds: float = 86400.0
    reset_minutes: int = 30

    @classmethod
    def from_settings(cls, auth: Any) -> "LoginPolicy":
        return cls(min_password_length=auth.min_password_length, lockout_threshold=auth.lockout_threshold,
                   address_lockout_threshold=auth.address_lockout_threshold,
                   lockout_max_seconds=auth.lockout_max_seconds,
                   failure_window_seconds=auth.failure_window_seconds, reset_minutes=auth.reset_minutes)


def lock_seconds(failures: int, threshold: int, cap: float) -> float:
    """How long the ``failures``-th failure locks: 0 below ``threshold``, then 2, 4, 8, ... up to ``cap``."""
    n = failures - threshold + 1
    if threshold <= 0 or n <= 0:
        return 0.0
    return float(min(2 ** min(n, 40), cap))


class DirectoryBinder(Protocol):
    """Checks a directory account's password by binding to the directory (the directory adapter)."""

    def bind(self, user_name: str, external_id: str | None, password: str) -> bool: ...


_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,200}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
API_KEY = re.compile(r"^ak_[0-9a-f]{32}$")
"""The form of API client keys; no account may be named like one."""
MIN_PASSWORD = LoginPolicy.min_password_length
RESET_PATH = "/portal/reset"
RESET_RESEND_SECONDS = 60  # a second reset mail for one account within this time is not sent


def utc(value: datetime | None) -> datetime | None:
    """A database time as an aware UTC datetime (SQLite hands back naive ones)."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class UserService:
    def __init__(self, engine: Engine, audit: AuditLog, cache_seconds: float = 60.0,
                 policy: LoginPolicy | None = None, mailer: MailSender | None = None,
                 public_base_url: str = "http://127.0.0.1:8080",
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 directory: DirectoryBinder | None = None) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._audit = audit
        self._hasher = PasswordHasher(**PASSWORD_HASH)
        self._cache_seconds = cache_seconds
        self._cache_key = secrets.token_bytes(32)
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        self._lock = threading.Lock()
        self.policy = policy or LoginPolicy()
        self.mailer = mailer
        self.public_base_url = public_base_url.rstrip("/")
        self.clock = clock
        self.directory = directory  # set by the wiring when directory users log in by binding
        self.mail_brands: MailBrands | None = None  # set by the wiring: the brand of mails to account holders
        # set by the wiring: the directory sync's on_enable hook (server.workflows.flags.clear_enabled_in), so that
        # an administrator's enable clears the workflow flags of the account as the sync's does
        self.on_enable: AccountHook | None = None
        # Unknown names are checked against this hash too, so timing does not reveal which names exist.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    # --- accounts -------------------------------------------------------------------------------

    def check_password(self, password: str) -> None:
        """Raise BAD_REQUEST when ``password`` breaks the length policy."""
        if len(password) < self.policy.min_password_length:
            raise SiegelError(Code.BAD_REQUEST, f"password: at least {self.policy.min_password_length} "
                                                "characters are required (setting auth.min_password_length)")
        if len(password) > 1024:
            raise SiegelError(Code.BAD_REQUEST, "password: at most 1024 characters")

    def hash_secret(self, secret: str) -> str:
        return self._hasher.hash(secret)

    def add(self, name: str, email: str, role: str, password: str | None, actor: str = "cli", *,
            source: str = "local", external_id: str | None = None, display_name: str | None = None) -> Principal:
        """Create an account; errors name the field that is wrong. Directory accounts have no password."""
        if not _NAME.match(name) or API_KEY.match(name):
            raise SiegelError(Code.BAD_REQUEST, "user name: use 1-200 letters, digits or . _ @ - "
                                                "(and not the form ak_<hex> of API client keys)")
        if not _EMAIL.match(email):
            raise SiegelError(Code.BAD_REQUEST, f"e-mail address {email!r} is not of the form name@domain")
        role_value = parse_role(role)
        if source not in ("local", "directory"):
            raise SiegelError(Code.BAD_REQUEST, f"source {source!r}: expected local or directory")
        if source == "local" or password is not None:
            if password is None:
                raise SiegelError(Code.BAD_REQUEST, "password: a local account needs one")
            self.check_password(password)
        user = User(name=name, email=email, role=role_value.value,
                    password_hash=self._hasher.hash(password) if password is not None else None,
                    disabled=False, created_at=self.clock(), source=source, external_id=external_id,
                    display_name=display_name, failed_logins=0)
        try:
            with self._sessions.begin() as session:
                session.add(user)
                session.flush()
                self._audit.append_in(session, actor, "user.add", name, role=role_value.value, email=email,
                                      source=source)
        except IntegrityError:
            raise SiegelError(Code.CONFLICT, f"user {name!r} exists already") from None
        return Principal(user.id, user.name, role_value)

    def find(self, name: str) -> Principal:
        """The enabled account named ``name``."""
        with self._sessions() as session:
            user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
        if user is None:
            raise SiegelError(Code.NOT_FOUND, f"no user named {name!r} (add it with `siegel user add`)")
        if user.disabled:
            raise SiegelError(Code.BAD_REQUEST, f"user {name!r} is disabled")
        return Principal(user.id, user.name, Role(user.role))

    def list(self) -> list[UserInfo]:
        with self._sessions() as session:
            users = session.execute(select(User).order_by(User.name)).scalars().all()
        return [UserInfo(u.id, u.name, u.email, u.role, u.source, u.disabled, utc(u.locked_until),
                         utc(u.last_login_at)) for u in users]

    def groups(self) -> list[GroupInfo]:
        """Every group, local and directory-sourced (those the directory sync mirrors), by name."""
        enabled = func.count(case((User.disabled.is_(False), User.id)))
        with self._sessions() as session:
            rows = session.execute(
                select(Group.name, Group.source, Group.external_id, func.count(User.id), enabled)
                .outerjoin(GroupMember, GroupMember.group_id == Group.id)
                .outerjoin(User, User.id == GroupMember.user_id)
                .group_by(Group.id, Group.name, Group.source, Group.external_id).order_by(Group.name)).all()
        return [GroupInfo(*row) for row in rows]

    def disable(self, name: str, actor: str = "cli", reason: str = "") -> bool:
        """Disable the account ``name`` (audited); its certificates, grants and API clients stay as they are,
        but none of them authenticates any more. False when it was disabled already."""
        with self._sessions.begin() as session:
            user = session.execute(select(User).where(User.name == name).with_for_update()).scalar_one_or_none()
            if user is None:
                raise SiegelError(Code.NOT_FOUND, f"no user named {name!r}")
            if user.disabled:
                return False
            user.disabled = True
            details = {"reason": reason} if reason else {}
            self._audit.append_in(session, actor, "user.disable", name, **details)
        self.forget_cached()
        return True

    def enable(self, name: str, actor: str = "cli") -> bool:
        """Enable the disabled account ``name`` again (audited ``user.enable``); in the same transaction the
        ``on_enable`` hook clears the flags of its pending workflow assignments, as the directory sync's enable
        does (its entries audited under ``actor``). A directory account is no longer marked as disabled by the
        sync, so a later disable by an administrator sticks. False when it was enabled already."""
        with self._sessions.begin() as session:
            user = session.execute(select(User).where(User.name == name).with_for_update()).scalar_one_or_none()
            if user is None:
                raise SiegelError(Code.NOT_FOUND, f"no user named {name!r}")
            if not user.disabled:
                return False
            user.disabled = False
            session.execute(update(DirectoryAccount).where(DirectoryAccount.user_id == user.id)
                            .values(disabled_by_sync=False))
            self._audit.append_in(session, actor, "user.enable", name)
            if self.on_enable is not None:
                session.flush()
                entries = self.on_enable(session.connection(), {user.id}, self.clock())
                self._audit.append_many_in(session, [(actor, action, target, details)
                                                     for _, action, target, details in entries])
        self.forget_cached()
        return True

    def set_role(self, name: str, role: str, actor: str = "cli") -> Principal:
        role_value = parse_role(role)
        with self._sessions.begin() as session:
            user = session.execute(select(User).where(User.name == name).with_for_update()).scalar_one_or_none()
            if user is None:
                raise SiegelError(Code.NOT_FOUND, f"no user named {name!r}")
            before = user.role
            user.role = role_value.value
            self._audit.append_in(session, actor, "user.set_role", name, role=role_value.value, previous=before)
        self.forget_cached()
        return Principal(user.id, user.name, role_value)

    def forget_cached(self) -> None:
        """Drop this process's verified-credential cache (after a change of accounts or clients). Other
        processes keep theirs for at most ``auth.credential_cache_seconds``."""
        with self._lock:
            self._cache.clear()

    # --- authentication -------------------------------------------------------------------------

    def _credential_key(self, name: str, password: str) -> bytes:
        return hmac.new(self._cache_key, f"{name}\0{password}".encode(), hashlib.sha256).digest()

    def cached(self, name: str, password: str) -> Principal | None:
        """The account of a credential verified within ``auth.credential_cache_seconds``, else None;
        never blocks (no database, no argon2id), so the reactor thread may ask."""
        key = self._credential_key(name, password)
        with self._lock:
            hit = self._cache.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def authenticate(self, name: str, password: str, address: str | None = None) -> Principal | None:
        """The account for a name (or API client key) and password from ``address``, or None; cached briefly
        after a real verification; refused without argon2id while the account or the address is locked."""
        key, mono = self._credential_key(name, password), time.monotonic()
        hit = self.cached(name, password)
        if hit is not None:
            return hit
        now = self.clock()
        with self._sessions() as session:
            blocked = self._address_locked(session, address, now)
            if API_KEY.match(name):
                row = session.execute(select(ApiClient, User).join(User, ApiClient.user_id == User.id)
                                      .where(ApiClient.client_key == name)).first()
                client, user = (row[0], row[1]) if row is not None else (None, None)
            else:
                client = None
                user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
        if blocked:
            return None
        if client is None and user is not None and (utc(user.locked_until) or now) > now:
            return None
        if client is None and user is not None and user.source == "directory":
            return self._directory_login(user, password, address, now, key, mono)
        stored = (client.secret_hash if client is not None
                  else user.password_hash if user is not None and user.password_hash else self._dummy_hash)
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            self._failed(user.id if user is not None and client is None else None, address, now)
            return None
        if user is None or user.disabled or (client is None and not user.password_hash):
            return None
        if client is not None and client.revoked_at is not None:
            return None
        principal = Principal(user.id, user.name, Role(user.role), client.client_key if client else None)
        if client is None:
            self._succeeded(user.id, now)
        if self._hasher.check_needs_rehash(stored):  # made with other parameters: the hash each carries
            self._rehash(client.id if client is not None else None, user.id, password)
        return self._remember(key, mono, principal)

    def _rehash(self, client_id: int | None, user_id: int, secret: str) -> None:
        """Store a verified secret's hash anew with the current parameters (:data:`PASSWORD_HASH`)."""
        new_hash = self._hasher.hash(secret)  # before the transaction: no write lock held while argon2id runs
        with self._engine.begin() as conn:
            if client_id is not None:
                conn.execute(update(ApiClient).where(ApiClient.id == client_id).values(secret_hash=new_hash))
            else:
                conn.execute(update(User).where(User.id == user_id).values(password_hash=new_hash))

    def _directory_login(self, user: User, password: str, address: str | None, now: datetime, key: bytes,
                         mono: float) -> Principal | None:
        if self.directory is None or user.disabled:
            return None
        try:
            bound = bool(password) and self.directory.bind(user.name, user.external_id, password)
        except SiegelError as exc:
            if exc.code is not Code.DIRECTORY_UNAVAILABLE:
                raise
            # Not the user's failure: no lockout count; refused until the directory answers again.
            log.warning("directory login refused", extra={"fields": {"user": user.name, "error": exc.message}})
            return None
        if not bound:
            self._failed(user.id, address, now)
            return None
        self._succeeded(user.id, now)
        return self._remember(key, mono, Principal(user.id, user.name, Role(user.role)))

    def _remember(self, key: bytes, mono: float, principal: Principal) -> Principal:
        if self._cache_seconds > 0:
            with self._lock:
                if len(self._cache) > 10000:
                    self._cache = {k: v for k, v in self._cache.items() if v[0] > mono}
                self._cache[key] = (mono + self._cache_seconds, principal)
        return principal

    @staticmethod
    def _address_locked(session: Any, address: str | None, now: datetime) -> bool:
        if not address:
            return False
        until = session.execute(select(LoginFailure.locked_until).where(LoginFailure.address == address)).scalar()
        return until is not None and utc(until) > now  # type: ignore[operator]

    def _failed(self, user_id: int | None, address: str | None, now: datetime) -> None:
        """Count a failed login for the account and the address, locking them from the thresholds on."""
        p = self.policy
        with self._engine.begin() as conn:
            if user_id is not None:
                count = conn.execute(update(User).where(User.id == user_id)
                                     .values(failed_logins=User.failed_logins + 1)
                                     .returning(User.failed_logins)).scalar_one()
                seconds = lock_seconds(count, p.lockout_threshold, p.lockout_max_seconds)
                if seconds:
                    conn.execute(update(User).where(User.id == user_id)
                                 .values(locked_until=now + timedelta(seconds=seconds)))
                    log.warning("account %d locked for %g s after %d failed logins", user_id, seconds, count)
            if address:
                insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
                stale = now - timedelta(seconds=p.failure_window_seconds)
                stmt = insert(LoginFailure).values(address=address[:64], count=1, last_failure_at=now)
                stmt = stmt.on_conflict_do_update(index_elements=[LoginFailure.address], set_={
                    "count": case((LoginFailure.last_failure_at < stale, 1), else_=LoginFailure.count + 1),
                    "last_failure_at": now}).returning(LoginFailure.count)
                count = conn.execute(stmt).scalar_one()
                seconds = lock_seconds(count, p.address_lockout_threshold, p.lockout_max_seconds)
                if seconds:
                    conn.execute(update(LoginFailure).where(LoginFailure.address == address[:64])
                                 .values(locked_until=now + timedelta(seconds=seconds)))
                    log.warning("address %s locked for %g s after %d failed logins", address, seconds, count)

    def count_failed_login(self, user_id: int | None, address: str | None) -> None:
        """Count a failed login decided elsewhere (a wrong second factor) towards the lockouts."""
        self._failed(user_id, address, self.clock())

    def _succeeded(self, user_id: int, now: datetime) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(User).where(User.id == user_id)
                         .values(failed_logins=0, locked_until=None, last_login_at=now))

    # --- password reset -------------------------------------------------------------------------

    def mail_brand(self, client: str | None, host: str | None) -> MailBrand:
        """The brand of a mail to an account holder for a request of API client ``client`` to ``host``
        (without brands wired: Siegel, links under public_base_url, plain text)."""
        if self.mail_brands is None:
            return MailBrand("Siegel", self.public_base_url)
        return self.mail_brands(client, host)

    def start_reset(self, name_or_email: str, host: str | None = None) -> int:
        """E-mail a single-use reset link to the enabled local account(s) named so or with this address, in
        the brand of the host the request came to. Says nothing about whether one exists (callers answer the
        same either way); returns the number of mails sent, for tests and logs only."""
        needle = name_or_email.strip()
        if not needle or len(needle) > 320:
            return 0
        now = self.clock()
        sent = 0
        with self._sessions() as session:
            users = session.execute(select(User).where((User.name == needle) | (User.email == needle))).scalars().all()
        for user in users:
            if user.disabled or user.source != "local":
                continue
            token = secrets.token_urlsafe(32)  # 256 random bits
            with self._sessions.begin() as session:
                recent = session.execute(select(PasswordReset.id).where(
                    PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None),
                    PasswordReset.created_at > now - timedelta(seconds=RESET_RESEND_SECONDS))).first()
                if recent is not None:
                    continue
                session.add(PasswordReset(token_hash=_token_hash(token), user_id=user.id, created_at=now,
                                          expires_at=now + timedelta(minutes=self.policy.reset_minutes)))
                self._audit.append_in(session, "anonymous", "user.reset_requested", user.name)
            if self.mailer is None:
                log.error("password reset for %s requested, but no mail sender is configured", user.name)
                continue
            brand = self.mail_brand(None, host)
            link = f"{brand.base_url}{RESET_PATH}?token={token}"
            brand.send(self.mailer, user.email, f"{brand.company}: reset your password",
                       f"Hello {user.display_name or user.name},\n\n"
                       f"someone asked to reset the password of the {brand.company} account {user.name}.\n"
                       f"To choose a new password, open this link within {self.policy.reset_minutes} "
                       f"minutes:\n\n{link}\n\nThe link works once. If you did not ask for this, "
                       "ignore this message; your password stays as it is.\n")
            sent += 1
        return sent

    def complete_reset(self, token: str, new_password: str) -> Principal:
        """Set the password of the account a valid, unused, unexpired reset token belongs to; the token (and
        every other open token of the account) is used up, the lockout of the account lifted."""
        invalid = SiegelError(Code.BAD_REQUEST, "the password reset link is invalid, used or expired: "
                                                "ask for a new one")
        if not token or len(token) > 200:
            raise invalid
        self.check_password(new_password)
        now = self.clock()
        new_hash = self._hasher.hash(new_password)
        with self._sessions.begin() as session:
            reset = session.execute(select(PasswordReset).where(
                PasswordReset.token_hash == _token_hash(token))).scalar_one_or_none()
            if reset is None or reset.used_at is not None or utc(reset.expires_at) <= now:  # type: ignore[operator]
                raise invalid
            used = session.execute(update(PasswordReset).where(PasswordReset.id == reset.id,
                                                               PasswordReset.used_at.is_(None))
                                   .values(used_at=now)).rowcount
            user = session.get(User, reset.user_id)
            if used != 1 or user is None or user.disabled or user.source != "local":
                raise invalid
            session.execute(update(PasswordReset).where(PasswordReset.user_id == user.id,
                                                        PasswordReset.used_at.is_(None)).values(used_at=now))
            user.password_hash = new_hash
            user.failed_logins = 0
            user.locked_until = None
            self._audit.append_in(session, user.name, "user.password_reset", user.name)
        self.forget_cached()
        return Principal(user.id, user.name, Role(user.role))


def parse_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise SiegelError(Code.BAD_REQUEST, f"role {role!r}: expected one of {', '.join(r.value for r in Role)}") from None
