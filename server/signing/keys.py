"""Which key a caller signs with: its own (the newest valid user-signing certificate's key) or a
key label granted to it (``siegel key grant``); every other label is refused as not found, so a
caller learns nothing about keys it may not use."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session, sessionmaker

from server.audit import AuditLog
from server.db.models import Certificate, KeyGrant, User
from server.errors import Code, SiegelError
from server.pki import profiles
from server.pki.ca import CertificateAuthorityService


class SigningKeys:
    def __init__(self, engine: Engine, audit: AuditLog, ca: CertificateAuthorityService) -> None:
        self._engine = engine
        self._audit = audit
        self._ca = ca
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def key_for(self, user_id: int, key_name: str | None) -> str:
        """The key label ``user_id`` signs with when asking for ``key_name`` (None: its own key)."""
        if key_name is None:
            return self._ca.signing_key_of(user_id)
        now = datetime.now(timezone.utc)
        with self._engine.connect() as conn:
            owner = conn.execute(select(Certificate.user_id).where(
                Certificate.key_label == key_name, Certificate.profile == profiles.USER_SIGNING.name,
                Certificate.revoked_at.is_(None), Certificate.not_after > now).limit(1)).scalar_one_or_none()
            granted = owner is not None and (owner == user_id or conn.execute(select(KeyGrant.user_id).where(
                KeyGrant.key_label == key_name, KeyGrant.user_id == user_id)).first() is not None)
        if not granted:
            raise SiegelError(Code.KEY_NOT_FOUND, f"no key {key_name!r} this account may sign with "
                                                  "(its own key, or one granted with `siegel key grant`)")
        return key_name

    def grant(self, key_label: str, user_name: str, actor: str = "cli") -> None:
        """Let ``user_name`` sign with ``key_label`` (the key of a valid user-signing certificate)."""
        with self._sessions.begin() as session:
            user = self._user(session, user_name)
            if session.execute(select(Certificate.serial).where(
                    Certificate.key_label == key_label, Certificate.profile == profiles.USER_SIGNING.name,
                    Certificate.revoked_at.is_(None))).first() is None:
                raise SiegelError(Code.NOT_FOUND, f"no signing certificate with the key {key_label!r} "
                                                  "(see `siegel ca list`)")
            if session.get(KeyGrant, (key_label, user.id)) is None:
                session.add(KeyGrant(key_label=key_label, user_id=user.id, granted_at=datetime.now(timezone.utc),
                                     granted_by=actor))
                self._audit.append_in(session, actor, "key.grant", key_label, user=user_name)

    def revoke(self, key_label: str, user_name: str, actor: str = "cli") -> None:
        with self._sessions.begin() as session:
            user = self._user(session, user_name)
            if session.execute(delete(KeyGrant).where(KeyGrant.key_label == key_label,
                                                      KeyGrant.user_id == user.id)).rowcount != 1:
                raise SiegelError(Code.NOT_FOUND, f"{user_name} has no grant for the key {key_label!r}")
            self._audit.append_in(session, actor, "key.revoke-grant", key_label, user=user_name)

    def grants(self) -> list[tuple[str, str, datetime]]:
        """(key label, account name, granted at) of every grant."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(KeyGrant.key_label, User.name, KeyGrant.granted_at)
                                .join(User, User.id == KeyGrant.user_id).order_by(KeyGrant.key_label, User.name))
            return [(r[0], r[1], r[2]) for r in rows]

    @staticmethod
    def _user(session: Session, name: str) -> User:
        user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
        if user is None:
            raise SiegelError(Code.NOT_FOUND, f"no account {name!r}")
        return user
