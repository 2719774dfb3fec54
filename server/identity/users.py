"""User accounts with argon2id password hashes, and password authentication.

Verifying argon2id costs tens of milliseconds on purpose. ERP clients send HTTP Basic on every
request, so a verified credential is cached briefly, keyed by an HMAC (with a per-process random
key) of the name and the presented password: the cache never holds a password or a reusable hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from server.audit import AuditLog
from server.db.models import User
from server.errors import Code, SiegelError


class Role(str, Enum):
    ADMIN = "admin"
    SIGNER = "signer"
    INTEGRATION = "integration"


@dataclass(frozen=True)
class Principal:
    """Who a request acts for."""

    user_id: int
    name: str
    role: Role


_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,200}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8


class UserService:
    def __init__(self, engine: Engine, audit: AuditLog, cache_seconds: float = 60.0) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._audit = audit
        self._hasher = PasswordHasher()
        self._cache_seconds = cache_seconds
        self._cache_key = secrets.token_bytes(32)
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        self._lock = threading.Lock()
        # Unknown names are checked against this hash too, so timing does not reveal which names exist.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def add(self, name: str, email: str, role: str, password: str, actor: str = "cli") -> Principal:
        """Create an account; errors name the field that is wrong."""
        if not _NAME.match(name):
            raise SiegelError(Code.BAD_REQUEST, "user name: use 1-200 letters, digits or . _ @ -")
        if not _EMAIL.match(email):
            raise SiegelError(Code.BAD_REQUEST, f"e-mail address {email!r} is not of the form name@domain")
        try:
            role_value = Role(role)
        except ValueError:
            raise SiegelError(Code.BAD_REQUEST, f"role {role!r}: expected one of {', '.join(r.value for r in Role)}") from None
        if len(password) < MIN_PASSWORD:
            raise SiegelError(Code.BAD_REQUEST, f"password: at least {MIN_PASSWORD} characters are required")
        user = User(name=name, email=email, role=role_value.value, password_hash=self._hasher.hash(password),
                    disabled=False, created_at=datetime.now(timezone.utc))
        try:
            with self._sessions.begin() as session:
                session.add(user)
                session.flush()
                self._audit.append_in(session, actor, "user.add", name, role=role_value.value, email=email)
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

    def authenticate(self, name: str, password: str) -> Principal | None:
        """The account for a name and password, or None; cached briefly after a real verification."""
        key = hmac.new(self._cache_key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        with self._sessions() as session:
            user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
        stored = user.password_hash if user is not None and user.password_hash else self._dummy_hash
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or user.disabled or not user.password_hash:
            return None
        principal = Principal(user.id, user.name, Role(user.role))
        if self._cache_seconds > 0:
            with self._lock:
                if len(self._cache) > 10000:
                    self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                self._cache[key] = (now + self._cache_seconds, principal)
        return principal
