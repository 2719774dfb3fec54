"""API clients of ERP and DMS systems: a key and a secret with which a system authenticates (HTTP Basic
``key:secret``) as an integration account. The secret is shown once and stored as an argon2id hash;
:meth:`server.identity.users.UserService.authenticate` checks it (and caches it like a password)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from server.audit import AuditLog
from server.db.models import ApiClient, Brand, User
from server.errors import Code, SiegelError
from server.identity.users import API_KEY, Role, UserService, utc


@dataclass(frozen=True)
class NewClient:
    key: str
    secret: str  # shown once, never stored
    user: str


@dataclass(frozen=True)
class ClientInfo:
    key: str
    name: str | None
    user: str
    created_at: datetime
    revoked_at: datetime | None
    brand: str | None  # the brand of its stamps, reports and workflows (None: the default; server.branding)

    def public(self) -> dict[str, Any]:
        """As ``/api/v1/api-clients`` answers it."""
        return {"key": self.key, "name": self.name, "user": self.user, "brand": self.brand,
                "createdAt": self.created_at.isoformat(),
                "revokedAt": self.revoked_at.isoformat() if self.revoked_at else None}


class ApiClientService:
    def __init__(self, users: UserService, audit: AuditLog) -> None:
        self._users = users
        self._sessions = sessionmaker(users._engine, expire_on_commit=False)
        self._audit = audit

    def create(self, user_name: str, name: str | None = None, actor: str = "cli") -> NewClient:
        """A new key and secret for the integration account ``user_name``."""
        if name is not None and not (0 < len(name) <= 200):
            raise SiegelError(Code.BAD_REQUEST, "API client name: 1 to 200 characters")
        key = "ak_" + secrets.token_hex(16)
        secret = secrets.token_urlsafe(32)  # 256 random bits
        assert API_KEY.match(key)
        secret_hash = self._users.hash_secret(secret)
        with self._sessions.begin() as session:
            user = session.execute(select(User).where(User.name == user_name)).scalar_one_or_none()
            if user is None:
                raise SiegelError(Code.NOT_FOUND, f"no user named {user_name!r}")
            if user.role != Role.INTEGRATION.value:
                raise SiegelError(Code.BAD_REQUEST, f"user {user_name!r} has the role {user.role}: API clients act "
                                                    "as integration accounts (siegel user set-role NAME integration)")
            if user.disabled:
                raise SiegelError(Code.BAD_REQUEST, f"user {user_name!r} is disabled")
            session.add(ApiClient(client_key=key, name=name, secret_hash=secret_hash, user_id=user.id,
                                  created_at=self._users.clock()))
            self._audit.append_in(session, actor, "apiclient.create", key, user=user_name, name=name or "")
        return NewClient(key, secret, user_name)

    def revoke(self, key: str, actor: str = "cli") -> None:
        with self._sessions.begin() as session:
            client = session.execute(select(ApiClient).where(ApiClient.client_key == key)
                                     .with_for_update()).scalar_one_or_none()
            if client is None:
                raise SiegelError(Code.NOT_FOUND, f"no API client with the key {key!r}")
            if client.revoked_at is not None:
                raise SiegelError(Code.CONFLICT, f"the API client {key} is revoked already")
            client.revoked_at = self._users.clock()
            self._audit.append_in(session, actor, "apiclient.revoke", key)
        self._users.forget_cached()

    def list(self, key: str | None = None) -> list[ClientInfo]:
        """Every API client (``key``: only that one), oldest first."""
        query = (select(ApiClient, User.name, Brand.name).join(User, ApiClient.user_id == User.id)
                 .outerjoin(Brand, ApiClient.brand_id == Brand.id).order_by(ApiClient.created_at, ApiClient.id))
        with self._sessions() as session:
            rows = session.execute(query if key is None else query.where(ApiClient.client_key == key)).all()
        return [ClientInfo(c.client_key, c.name, user, utc(c.created_at), utc(c.revoked_at),  # type: ignore[arg-type]
                           brand) for c, user, brand in rows]
