"""Server-side portal sessions and the documents signed in the portal (tables of migration 0013).

A session is named by a 256-bit random token that only the browser's cookie holds; the table keeps its
SHA-256, so a copy of the database does not let anyone in. A login always makes a new session (the one the
browser came with, if any, is deleted): a token planted before the login never becomes authenticated
(no session fixation). A login that needs a second factor first gets a short ``second-factor`` session;
the factor given, that one is deleted and a ``full`` one made with a new token. Each session has its own
CSRF token, an idle expiry (``portal.idle_minutes`` after its last request) and an absolute one.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Callable

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import sessionmaker

from server.db.models import PortalResult, PortalSession, User
from server.errors import Code, SiegelError
from server.identity.users import Principal, Role, utc

FULL = "full"
SECOND_FACTOR = "second-factor"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True)
class Session:
    """A live session as the pages see it."""

    token: str
    principal: Principal
    csrf_token: str
    stage: str
    second_factor: bool  # a second factor was given at login or since


@dataclass(frozen=True)
class Result:
    """A document signed in the portal and the report on it."""

    id: str
    user_id: int
    name: str
    mime_type: str
    content: bytes
    report: dict[str, Any]
    created_at: datetime


class PortalSessions:
    def __init__(self, engine: Engine, idle: timedelta, absolute: timedelta, pending: timedelta,
                 result_lifetime: timedelta, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._idle = idle
        self._absolute = absolute
        self._pending = pending
        self._result_lifetime = result_lifetime
        self.clock = clock

    def create(self, principal: Principal, stage: str, second_factor: bool, replaces: str | None = None) -> Session:
        """A new session with a fresh token and CSRF token; the session ``replaces`` names is deleted."""
        token, now = secrets.token_urlsafe(32), self.clock()
        lifetime = self._pending if stage == SECOND_FACTOR else self._absolute
        row = PortalSession(token_hash=token_hash(token), user_id=principal.user_id,
                            csrf_token=secrets.token_urlsafe(32), stage=stage, second_factor=second_factor,
                            created_at=now, last_seen_at=now, expires_at=now + lifetime)
        with self._sessions.begin() as db:
            if replaces:
                db.execute(delete(PortalSession).where(PortalSession.token_hash == token_hash(replaces)))
            db.add(row)
        return Session(token, principal, row.csrf_token, stage, second_factor)

    def find(self, token: str | None) -> Session | None:
        """The live session of ``token`` (its last request now), None when unknown, expired or its account
        is disabled; an expired one is deleted."""
        if not token or len(token) > 100:
            return None
        key, now = token_hash(token), self.clock()
        with self._sessions.begin() as db:
            row = db.get(PortalSession, key)
            if row is None:
                return None
            user = db.get(User, row.user_id)
            idle_end = utc(row.last_seen_at) + self._idle  # type: ignore[operator]
            if user is None or user.disabled or utc(row.expires_at) <= now or idle_end <= now:  # type: ignore[operator]
                db.delete(row)
                return None
            db.execute(update(PortalSession).where(PortalSession.token_hash == key).values(last_seen_at=now))
            return Session(token, Principal(user.id, user.name, Role(user.role)), row.csrf_token, row.stage,
                           row.second_factor)

    def mark_second_factor(self, session: Session) -> Session:
        """The session's account gave a second factor now (e.g. a code to enrol an authenticator)."""
        with self._sessions.begin() as db:
            db.execute(update(PortalSession).where(PortalSession.token_hash == token_hash(session.token))
                       .values(second_factor=True))
        return Session(session.token, session.principal, session.csrf_token, session.stage, True)

    def end(self, token: str | None) -> None:
        if token:
            with self._sessions.begin() as db:
                db.execute(delete(PortalSession).where(PortalSession.token_hash == token_hash(token)))

    def sweep(self) -> None:
        """The job "portal-sessions": expired sessions and results go."""
        now = self.clock()
        with self._sessions.begin() as db:
            db.execute(delete(PortalSession).where((PortalSession.expires_at <= now)
                                                   | (PortalSession.last_seen_at <= now - self._idle)))
            db.execute(delete(PortalResult).where(PortalResult.expires_at <= now))

    # --- signed documents -------------------------------------------------------------------------------

    def keep_result(self, user_id: int, name: str, mime_type: str, content: bytes, report: dict[str, Any]) -> str:
        """Keep a signed document for its signer; returns its id (128 random bits)."""
        ident, now = secrets.token_hex(16), self.clock()
        with self._sessions.begin() as db:
            db.add(PortalResult(id=ident, user_id=user_id, name=name[:255], mime_type=mime_type[:100], content=content,
                                report=json.dumps(report), created_at=now, expires_at=now + self._result_lifetime))
        return ident

    def result(self, ident: str) -> Result:
        """The kept document ``ident`` (the caller checks whose it is); NOT_FOUND when unknown or expired."""
        with self._sessions() as db:
            row = db.execute(select(PortalResult).where(PortalResult.id == ident[:32])).scalar_one_or_none()
        if row is None or utc(row.expires_at) <= self.clock():  # type: ignore[operator]
            raise SiegelError(Code.NOT_FOUND, "no such signed document (they are kept for a limited time)")
        return Result(row.id, row.user_id, row.name, row.mime_type, row.content, json.loads(row.report),
                      utc(row.created_at))  # type: ignore[arg-type]
