"""Accounts with argon2id hashes on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from server.audit import AuditLog
from server.errors import Code, SiegelError
from server.identity.users import Role, UserService

pytestmark = pytest.mark.integration


def test_add_and_authenticate(engine: Engine) -> None:
    users = UserService(engine, AuditLog(engine), cache_seconds=0)
    added = users.add("anna", "anna@example.com", "signer", "correct horse")
    assert added.role is Role.SIGNER
    assert users.authenticate("anna", "correct horse") == added
    assert users.authenticate("anna", "wrong horse") is None
    assert users.authenticate("nobody", "correct horse") is None
    with engine.connect() as c:
        stored = c.execute(text("SELECT password_hash FROM users WHERE name='anna'")).scalar_one()
        assert stored.startswith("$argon2id$") and "correct horse" not in stored
        actions = c.execute(text("SELECT action, target FROM audit_log")).all()
    assert ("user.add", "anna") in [tuple(a) for a in actions]
    assert AuditLog(engine).verify()[1] is None


@pytest.mark.parametrize("args, code, words", [
    (("bad name!", "a@example.com", "signer", "long enough pw"), Code.BAD_REQUEST, "user name"),
    (("bert", "not-an-address", "signer", "long enough pw"), Code.BAD_REQUEST, "e-mail"),
    (("bert", "b@example.com", "superuser", "long enough pw"), Code.BAD_REQUEST, "role"),
    (("bert", "b@example.com", "signer", "short"), Code.BAD_REQUEST, "password"),
])
def test_bad_input_is_refused_and_leaves_nothing(engine: Engine, args: tuple[str, ...], code: Code, words: str) -> None:
    users = UserService(engine, AuditLog(engine))
    with pytest.raises(SiegelError) as err:
        users.add(*args)
    assert err.value.code is code and words in err.value.message
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM users")).scalar_one() == 0
        assert c.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 0


def test_a_hash_with_older_parameters_verifies_and_is_stored_anew(engine: Engine) -> None:
    from argon2 import PasswordHasher, extract_parameters

    users = UserService(engine, AuditLog(engine), cache_seconds=0)
    users.add("olga", "olga@example.com", "signer", "correct horse")
    old = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4).hash("correct horse")  # argon2-cffi's default
    with engine.begin() as c:
        c.execute(text("UPDATE users SET password_hash = :h WHERE name = 'olga'"), {"h": old})
    assert users.authenticate("olga", "wrong horse") is None
    with engine.connect() as c:
        assert c.execute(text("SELECT password_hash FROM users WHERE name='olga'")).scalar_one() == old  # not on failure
    assert users.authenticate("olga", "correct horse") is not None
    with engine.connect() as c:
        stored = c.execute(text("SELECT password_hash FROM users WHERE name='olga'")).scalar_one()
    parameters = extract_parameters(stored)
    assert (parameters.memory_cost, parameters.time_cost, parameters.parallelism) == (19 * 1024, 2, 1)
    assert users.authenticate("olga", "correct horse") is not None

def test_duplicate_name_conflicts_without_partial_state(engine: Engine) -> None:
    users = UserService(engine, AuditLog(engine))
    users.add("carl", "c@example.com", "admin", "long enough pw")
    with pytest.raises(SiegelError) as err:
        users.add("carl", "c2@example.com", "admin", "long enough pw")
    assert err.value.code is Code.CONFLICT
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 1


def test_verified_credential_is_cached_briefly(engine: Engine) -> None:
    cached = UserService(engine, AuditLog(engine), cache_seconds=60)
    uncached = UserService(engine, AuditLog(engine), cache_seconds=0)
    cached.add("dora", "d@example.com", "integration", "first password")
    assert cached.authenticate("dora", "first password") is not None
    with engine.begin() as c:  # invalidate the stored hash behind the services' backs
        c.execute(text("UPDATE users SET password_hash = 'x' WHERE name = 'dora'"))
    assert cached.authenticate("dora", "first password") is not None, "the cache should answer"
    assert uncached.authenticate("dora", "first password") is None
    assert cached.authenticate("dora", "other password") is None, "the cache is keyed by the secret"
