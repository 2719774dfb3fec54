"""WS-Security PasswordDigest and PasswordText against the database (SQLite and PostgreSQL): replayed nonces
are refused by a second service (another worker or node) too, Created outside the window is refused, a wrong
digest counts for the address lockout, digest secrets are stored encrypted and expired nonces are swept."""

from __future__ import annotations

import base64
import secrets
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from server.audit import AuditLog
from server.db.models import LoginFailure, WssDigestSecret
from server.identity.apiclients import ApiClientService
from server.identity.users import LoginPolicy, UserService
from server.identity.wssecurity import (
    PASSWORD_DIGEST,
    PASSWORD_TEXT,
    UsernameToken,
    WsSecurity,
    WssFault,
    WssPolicy,
    password_digest,
)

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def _setup(engine: Engine, tmp_path: Path, clock: Clock) -> tuple[UserService, WsSecurity, str, str]:
    users = UserService(engine, AuditLog(engine), 0, LoginPolicy(address_lockout_threshold=3), clock=clock)
    users.add("erp", "erp@example.com", "integration", "erp-password-long")
    client = ApiClientService(users, AuditLog(engine)).create("erp")
    wss = WsSecurity(users, tmp_path / "secrets" / "wss-digest.key", WssPolicy(300, 60), clock=clock)
    return users, wss, client.key, wss.new_digest_secret(client.key)


def digest_token(key: str, secret: str, created: datetime, nonce: bytes | None = None) -> UsernameToken:
    nonce = nonce or secrets.token_bytes(16)
    stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    return UsernameToken(key, password_digest(nonce, stamp, secret), PASSWORD_DIGEST,
                         base64.b64encode(nonce).decode(), None, stamp)


def test_digest_once_replay_refused_also_by_another_worker(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    users, wss, key, secret = _setup(engine, tmp_path, clock)
    token = digest_token(key, secret, clock.now - timedelta(seconds=5))
    principal = wss.authenticate(token, secure=False, address="10.0.0.1")
    assert principal.name == "erp" and principal.client == key
    other = WsSecurity(UserService(engine, AuditLog(engine), 0, clock=clock), tmp_path / "secrets" / "wss-digest.key",
                       clock=clock)
    for service in (wss, other):
        with pytest.raises(WssFault, match="used already"):
            service.authenticate(token, secure=False, address="10.0.0.1")
    # a new nonce works again
    assert wss.authenticate(digest_token(key, secret, clock.now), False, "10.0.0.1").name == "erp"


def test_created_outside_the_window_is_refused(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    _, wss, key, secret = _setup(engine, tmp_path, clock)
    with pytest.raises(WssFault, match="older than 300 s"):
        wss.authenticate(digest_token(key, secret, clock.now - timedelta(seconds=301)), False, None)
    with pytest.raises(WssFault, match="future"):
        wss.authenticate(digest_token(key, secret, clock.now + timedelta(seconds=61)), False, None)
    assert wss.authenticate(digest_token(key, secret, clock.now + timedelta(seconds=30)), False, None).name == "erp"
    assert wss.authenticate(digest_token(key, secret, clock.now - timedelta(seconds=299)), False, None).name == "erp"


def test_wrong_digest_counts_for_the_address_lockout(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    _, wss, key, secret = _setup(engine, tmp_path, clock)
    for attempt in range(3):
        with pytest.raises(WssFault, match="wrong digest"):
            wss.authenticate(digest_token(key, "not-the-secret", clock.now), False, "10.0.0.9")
    with engine.connect() as c:
        assert c.execute(select(LoginFailure.count).where(LoginFailure.address == "10.0.0.9")).scalar() == 3
    with pytest.raises(WssFault, match="locked"):  # the right digest from the locked address
        wss.authenticate(digest_token(key, secret, clock.now), False, "10.0.0.9")
    assert wss.authenticate(digest_token(key, secret, clock.now), False, "10.0.0.10").name == "erp"


def test_digest_secret_is_encrypted_revocation_and_replacement(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    users, wss, key, secret = _setup(engine, tmp_path, clock)
    key_file = tmp_path / "secrets" / "wss-digest.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with engine.connect() as c:
        sealed = c.execute(select(WssDigestSecret.secret_enc)).scalar_one()
    assert secret.encode() not in sealed
    newer = wss.new_digest_secret(key)
    with pytest.raises(WssFault):
        wss.authenticate(digest_token(key, secret, clock.now), False, None)
    assert wss.authenticate(digest_token(key, newer, clock.now), False, None).name == "erp"
    # Without the key file no digest is right.
    key_file.rename(tmp_path / "moved.key")
    with pytest.raises(WssFault):
        wss.authenticate(digest_token(key, newer, clock.now), False, None)
    (tmp_path / "moved.key").rename(key_file)
    ApiClientService(users, AuditLog(engine)).revoke(key)
    with pytest.raises(WssFault, match="revoked"):
        wss.authenticate(digest_token(key, newer, clock.now), False, None)


def test_password_text_needs_tls_and_checks_the_argon2_hash(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    _, wss, key, _ = _setup(engine, tmp_path, clock)
    good = UsernameToken("erp", "erp-password-long", PASSWORD_TEXT)
    with pytest.raises(WssFault, match="TLS"):
        wss.authenticate(good, secure=False, address=None)
    assert wss.authenticate(good, secure=True, address=None).name == "erp"
    with pytest.raises(WssFault):
        wss.authenticate(UsernameToken("erp", "wrong-password-x", PASSWORD_TEXT), secure=True, address=None)


def test_expired_nonces_are_swept(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    _, wss, key, secret = _setup(engine, tmp_path, clock)
    for _ in range(3):
        wss.authenticate(digest_token(key, secret, clock.now), False, None)
    assert wss.nonces() == 3
    clock.now += timedelta(seconds=359)
    assert wss.sweep(force=True) == 0
    clock.now += timedelta(seconds=2)
    assert wss.sweep(force=True) == 3 and wss.nonces() == 0


def test_accounts_that_need_a_second_factor_are_refused(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    users, wss, key, secret = _setup(engine, tmp_path, clock)
    users.add("boss", "boss@example.com", "admin", "boss-password-long")

    class AdminsNeedOne:
        def required(self, principal: object) -> bool:
            return getattr(principal, "role").value == "admin"

    users.twofactor = AdminsNeedOne()  # type: ignore[attr-defined]
    with pytest.raises(WssFault, match="second factor"):
        wss.authenticate(UsernameToken("boss", "boss-password-long", PASSWORD_TEXT), secure=True, address=None)
    assert wss.authenticate(digest_token(key, secret, clock.now), False, None).name == "erp"  # integration: none
