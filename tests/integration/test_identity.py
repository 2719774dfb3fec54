"""Lockout, password resets, API clients and account administration on SQLite and PostgreSQL.

Each protection has a test that fails when it is removed: the right password is refused while the
account (or the source address) is locked, without argon2id being run; a reset link works once and
not after its expiry; a revoked API client no longer authenticates.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, select, text

from adapters.mail import SmtpMailSender
from server.audit import AuditLog
from server.db.models import User
from server.errors import Code, SiegelError
from server.identity.apiclients import ApiClientService
from server.identity.users import LoginPolicy, Role, UserService, lock_seconds
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
BASE_URL = "https://siegel.example.com"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts argon2id verifications (every PasswordHasher.verify call)."""
    calls: list[int] = []
    original = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: Any, password: Any) -> bool:
        calls.append(1)
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    return calls


def service(engine: Engine, clock: Clock, mailer: Any = None, cache_seconds: float = 0, **policy: Any) -> UserService:
    return UserService(engine, AuditLog(engine), cache_seconds, LoginPolicy(**policy), mailer=mailer,
                       public_base_url=BASE_URL, clock=clock)


def failed_logins(engine: Engine, name: str) -> tuple[int, Any]:
    with engine.connect() as c:
        row = c.execute(select(User.failed_logins, User.locked_until).where(User.name == name)).one()
    return row[0], row[1]


def test_lock_seconds_double_from_the_threshold_up_to_the_cap() -> None:
    assert [lock_seconds(n, 3, 20) for n in range(1, 8)] == [0, 0, 2, 4, 8, 16, 20]
    assert lock_seconds(10_000, 1, 3600) == 3600


def test_a_locked_account_refuses_even_the_right_password_without_argon2(
        engine: Engine, clock: Clock, argon2_calls: list[int]) -> None:
    users = service(engine, clock, lockout_threshold=3)
    users.add("anna", "anna@example.com", "signer", PASSWORD)
    for _ in range(3):
        assert users.authenticate("anna", "wrong password", "10.0.0.1") is None
    assert len(argon2_calls) == 3
    count, locked_until = failed_logins(engine, "anna")
    assert count == 3 and locked_until is not None
    # The 4th attempt, with the right password, is refused and argon2id is not run.
    assert users.authenticate("anna", PASSWORD, "10.0.0.2") is None
    assert len(argon2_calls) == 3
    # Another worker (another service on the same database) sees the lock too.
    assert service(engine, clock).authenticate("anna", PASSWORD, "10.0.0.3") is None
    assert len(argon2_calls) == 3
    assert failed_logins(engine, "anna")[0] == 3, "attempts while locked are not counted"
    clock.advance(2.5)  # the 3rd failure locked for 2 s
    principal = users.authenticate("anna", PASSWORD, "10.0.0.2")
    assert principal is not None and principal.name == "anna" and principal.role is Role.SIGNER
    assert failed_logins(engine, "anna") == (0, None), "a success resets the account's count"
    with engine.connect() as c:
        assert c.execute(text("SELECT last_login_at FROM users WHERE name='anna'")).scalar_one() is not None


def test_the_delay_grows_with_each_further_failure_up_to_the_cap(engine: Engine, clock: Clock) -> None:
    users = service(engine, clock, lockout_threshold=2, lockout_max_seconds=10)
    users.add("bert", "bert@example.com", "signer", PASSWORD)
    assert users.authenticate("bert", "wrong 1") is None
    assert failed_logins(engine, "bert")[1] is None
    seen = []
    for _ in range(4):
        assert users.authenticate("bert", "wrong") is None
        locked_until = failed_logins(engine, "bert")[1]
        until = locked_until if locked_until.tzinfo else locked_until.replace(tzinfo=timezone.utc)
        seen.append((until - clock.now).total_seconds())
        clock.advance(seen[-1] + 0.5)
    assert seen == [2, 4, 8, 10]


def test_a_success_resets_the_count_of_the_account(engine: Engine, clock: Clock) -> None:
    users = service(engine, clock, lockout_threshold=3)
    users.add("carl", "carl@example.com", "signer", PASSWORD)
    for _ in range(2):
        assert users.authenticate("carl", "wrong") is None
    assert users.authenticate("carl", PASSWORD) is not None
    for _ in range(2):
        assert users.authenticate("carl", "wrong") is None
    assert failed_logins(engine, "carl") == (2, None)
    assert users.authenticate("carl", PASSWORD) is not None


def test_a_locked_address_refuses_every_account_from_it_without_argon2(
        engine: Engine, clock: Clock, argon2_calls: list[int]) -> None:
    users = service(engine, clock, lockout_threshold=100, address_lockout_threshold=4, failure_window_seconds=600)
    users.add("dora", "dora@example.com", "signer", PASSWORD)
    users.add("emil", "emil@example.com", "signer", PASSWORD)
    attacker, office = "192.0.2.7", "2001:db8::1"
    for name in ("dora", "nobody", "emil", "someone"):  # spraying over several names, known and unknown
        assert users.authenticate(name, "guess", attacker) is None
    assert len(argon2_calls) == 4
    assert users.authenticate("dora", PASSWORD, attacker) is None
    assert len(argon2_calls) == 4, "argon2id must not run for a locked address"
    assert users.authenticate("dora", PASSWORD, office) is not None, "other addresses are not locked"
    assert failed_logins(engine, "emil")[0] == 1 and failed_logins(engine, "emil")[1] is None
    with engine.connect() as c:
        count = c.execute(text("SELECT count FROM login_failures WHERE address = :a"), {"a": attacker}).scalar_one()
    assert count == 4
    clock.advance(3)  # the lock (2 s) is over; a success from the address does not reset its count
    assert users.authenticate("dora", PASSWORD, attacker) is not None
    assert users.authenticate("emil", "guess", attacker) is None  # 5th failure: locked for 4 s
    assert users.authenticate("emil", PASSWORD, attacker) is None
    clock.advance(601 + 4)  # the failures are forgotten after the window: the next one counts as the first
    assert users.authenticate("emil", "guess", attacker) is None
    assert users.authenticate("emil", PASSWORD, attacker) is not None
    with engine.connect() as c:
        count = c.execute(text("SELECT count FROM login_failures WHERE address = :a"), {"a": attacker}).scalar_one()
    assert count == 1


def test_password_length_policy(engine: Engine, clock: Clock) -> None:
    users = service(engine, clock, min_password_length=16)
    with pytest.raises(SiegelError) as err:
        users.add("fritz", "f@example.com", "signer", "fifteen chars!!")
    assert err.value.code is Code.BAD_REQUEST and "at least 16" in err.value.message
    users.add("fritz", "f@example.com", "signer", "sixteen chars!!!")
    with pytest.raises(SiegelError):
        service(engine, clock).add("gero", "g@example.com", "signer", "eleven char")  # default: 12


def _link(mail: Any) -> str:
    body = mail.message.get_content()
    found = re.search(r"https://siegel\.example\.com/portal/reset\?token=([A-Za-z0-9_-]+)", body)
    assert found, body
    return found.group(1)


def test_reset_link_is_mailed_works_once_and_stores_only_a_hash(
        engine: Engine, clock: Clock, smtp_server: SmtpServer) -> None:
    mailer = SmtpMailSender(smtp_server.host, smtp_server.port, "siegel@example.com", starttls=False)
    users = service(engine, clock, mailer, lockout_threshold=2)
    users.add("hanna", "hanna@example.com", "signer", PASSWORD)
    assert users.authenticate("hanna", "wrong") is None and users.authenticate("hanna", "wrong") is None  # locked
    assert users.start_reset("hanna@example.com") == 1
    (mail,) = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ("hanna@example.com",) and mail.message["From"] == "siegel@example.com"
    token = _link(mail)
    assert len(token) >= 22  # at least 128 random bits in base64url
    with engine.connect() as c:
        stored = c.execute(text("SELECT token_hash FROM password_resets")).scalars().all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]
    with pytest.raises(SiegelError) as err:
        users.complete_reset(token, "short")
    assert "password" in err.value.message  # refused before the token is used up
    principal = users.complete_reset(token, "a brand new password")
    assert principal.name == "hanna"
    assert users.authenticate("hanna", "a brand new password") is not None, "the reset lifts the lock"
    assert users.authenticate("hanna", PASSWORD) is None
    with pytest.raises(SiegelError) as err:
        users.complete_reset(token, "another new password")
    assert err.value.code is Code.BAD_REQUEST and "used or expired" in err.value.message
    assert users.authenticate("hanna", "a brand new password") is not None
    with engine.connect() as c:
        actions = [r[0] for r in c.execute(text("SELECT action FROM audit_log ORDER BY seq"))]
    assert actions.count("user.reset_requested") == 1 and actions.count("user.password_reset") == 1
    assert AuditLog(engine).verify()[1] is None


def test_reset_link_expires(engine: Engine, clock: Clock, smtp_server: SmtpServer) -> None:
    mailer = SmtpMailSender(smtp_server.host, smtp_server.port, "siegel@example.com", starttls=False)
    users = service(engine, clock, mailer, reset_minutes=30)
    users.add("ida", "ida@example.com", "signer", PASSWORD)
    assert users.start_reset("ida") == 1
    assert users.start_reset("ida") == 0, "no second mail within a minute"
    clock.advance(29 * 60)
    assert users.start_reset("ida") == 1
    first, second = (_link(m) for m in smtp_server.wait_for(2))
    clock.advance(60 + 1)  # the first link is 30 min + 1 s old, the second 1 min + 1 s
    with pytest.raises(SiegelError) as err:
        users.complete_reset(first, "a brand new password")
    assert "expired" in err.value.message
    users.complete_reset(second, "a brand new password")
    with pytest.raises(SiegelError):
        users.complete_reset("not-a-token", "a brand new password")


def test_reset_requests_for_unknown_disabled_or_directory_accounts_send_nothing(
        engine: Engine, clock: Clock, smtp_server: SmtpServer) -> None:
    mailer = SmtpMailSender(smtp_server.host, smtp_server.port, "siegel@example.com", starttls=False)
    users = service(engine, clock, mailer)
    users.add("jan", "jan@example.com", "signer", PASSWORD)
    users.disable("jan")
    users.add("kai", "kai@example.com", "signer", None, source="directory", external_id="guid-kai")
    assert users.start_reset("nobody@example.com") == 0
    assert users.start_reset("jan") == 0
    assert users.start_reset("kai@example.com") == 0
    assert smtp_server.messages == []


def test_api_client_authenticates_as_its_integration_account(
        engine: Engine, clock: Clock, argon2_calls: list[int]) -> None:
    users = service(engine, clock, cache_seconds=60)
    clients = ApiClientService(users, AuditLog(engine))
    erp = users.add("erp", "erp@example.com", "integration", PASSWORD)
    users.add("lena", "lena@example.com", "signer", PASSWORD)
    with pytest.raises(SiegelError) as err:
        clients.create("lena")
    assert "integration" in err.value.message
    new = clients.create("erp", "SAP production")
    with engine.connect() as c:
        stored = c.execute(text("SELECT secret_hash FROM api_clients")).scalar_one()
    assert stored.startswith("$argon2id$") and new.secret not in stored
    principal = users.authenticate(new.key, new.secret, "10.1.1.1")
    assert principal is not None
    assert (principal.user_id, principal.name, principal.role, principal.client) == (erp.user_id, "erp",
                                                                                      Role.INTEGRATION, new.key)
    calls = len(argon2_calls)
    assert users.authenticate(new.key, new.secret, "10.1.1.1") == principal
    assert len(argon2_calls) == calls, "the verified-credential cache applies to API clients"
    assert users.authenticate(new.key, new.secret + "x", "10.1.1.1") is None
    assert users.authenticate("ak_" + "0" * 32, new.secret, "10.1.1.1") is None
    clients.revoke(new.key)
    assert users.authenticate(new.key, new.secret, "10.1.1.1") is None
    assert service(engine, clock).authenticate(new.key, new.secret) is None
    with pytest.raises(SiegelError) as err:
        clients.revoke(new.key)
    assert err.value.code is Code.CONFLICT
    (listed,) = clients.list()
    assert listed.key == new.key and listed.user == "erp" and listed.name == "SAP production"
    assert listed.revoked_at is not None
    with pytest.raises(SiegelError):
        users.add(new.key, "x@example.com", "signer", PASSWORD)  # no account may be named like a key


def test_disable_and_set_role_are_audited(engine: Engine, clock: Clock) -> None:
    users = service(engine, clock)
    users.add("mia", "mia@example.com", "signer", PASSWORD)
    assert users.set_role("mia", "auditor").role is Role.AUDITOR
    assert users.authenticate("mia", PASSWORD).role is Role.AUDITOR  # type: ignore[union-attr]
    assert users.disable("mia", "ldap-sync", reason="left the company") is True
    assert users.disable("mia") is False
    assert users.authenticate("mia", PASSWORD) is None
    with pytest.raises(SiegelError):
        users.set_role("mia", "superuser")
    (info,) = users.list()
    assert (info.name, info.role, info.disabled, info.source) == ("mia", "auditor", True, "local")
    with engine.connect() as c:
        rows = c.execute(text("SELECT actor, action, details FROM audit_log ORDER BY seq")).all()
    assert [r[1] for r in rows] == ["user.add", "user.set_role", "user.disable"]
    assert rows[2][0] == "ldap-sync" and "left the company" in rows[2][2]
    assert AuditLog(engine).verify()[1] is None
