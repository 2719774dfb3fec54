"""Second factors on SQLite and PostgreSQL: TOTP (codes computed by pyotp from the enrolment URI), recovery
codes, e-mail codes through a real SMTP server, SMS codes through a local HTTP sink, and the guard's step
(:meth:`TwoFactorService.login`) with the lockout.

Each protection has a test that fails when it is removed: a TOTP code is accepted once (the last accepted
time step is remembered), a wrong code is refused, a recovery code works once, a sent code dies after its
expiry and after ``code_attempts`` wrong tries, a code bound to data is refused for other data, and wrong
second factors lock the account although the password is right.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import Engine, select

from adapters.mail import SmtpMailSender
from adapters.sms import HttpSmsGateway
from server.audit import AuditLog
from server.db.models import OtpCode, RecoveryCode, TwoFactor, User
from server.errors import Code, SiegelError
from server.identity.twofactor import LOGIN, TwoFactorPolicy, TwoFactorService
from server.identity.users import LoginPolicy, Principal, UserService
from tests.fixtures.http_sink import HttpSink, http_sink  # noqa: F401
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


def _totp(uri: str) -> pyotp.TOTP:
    """The authenticator an app makes of the enrolment URI."""
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    return parsed


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 12, 0, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def build(engine: Engine, clock: Clock, mailer: object = None, sms: object = None, **policy: object
          ) -> tuple[UserService, TwoFactorService]:
    audit = AuditLog(engine)
    users = UserService(engine, audit, 0, LoginPolicy(lockout_threshold=3, address_lockout_threshold=100),
                        clock=clock)
    tf = TwoFactorService(engine, audit, users, b"k" * 32, TwoFactorPolicy(**policy),  # type: ignore[arg-type]
                          mailer=mailer, sms=sms, cache_seconds=60, clock=clock)  # type: ignore[arg-type]
    return users, tf


def enrolled(users: UserService, tf: TwoFactorService, clock: Clock, name: str = "ada") -> tuple[Principal, pyotp.TOTP]:
    p = users.add(name, f"{name}@example.com", "admin", PASSWORD)
    e = tf.enrol_totp(p)
    assert e.uri.startswith("otpauth://totp/") and "issuer=Siegel" in e.uri
    assert e.qr_png.startswith(b"\x89PNG\r\n\x1a\n")
    totp = _totp(e.uri)
    codes = tf.confirm_totp(p, totp.at(clock.now))
    assert codes is not None and len(codes) == 10
    clock.advance(30)  # the confirming code's step is used up
    return p, totp


def test_totp_code_from_the_enrolment_uri_is_accepted_once(engine: Engine, clock: Clock) -> None:
    users, tf = build(engine, clock)
    p, totp = enrolled(users, tf, clock)
    code = totp.at(clock.now)
    assert tf.verify_otp(p.user_id, code)
    assert not tf.verify_otp(p.user_id, code), "the same code twice"
    clock.advance(20)  # still within the window (±1 step): the code would be valid, but it is used
    assert not tf.verify_otp(p.user_id, code)
    # an earlier step's code is refused too once a later step was accepted
    clock.advance(30)
    older = totp.at(clock.now - timedelta(seconds=30))
    assert not tf.verify_otp(p.user_id, older)
    assert tf.verify_otp(p.user_id, totp.at(clock.now))
    with engine.connect() as c:
        secret = c.execute(select(TwoFactor.totp_secret).where(TwoFactor.user_id == p.user_id)).scalar_one()
    assert secret is not None and totp.secret.encode() not in secret and len(secret) > 12  # stored encrypted


def test_wrong_and_unconfirmed_totp_codes_are_refused(engine: Engine, clock: Clock) -> None:
    users, tf = build(engine, clock)
    p = users.add("bob", "bob@example.com", "admin", PASSWORD)
    totp = _totp(tf.enrol_totp(p).uri)
    assert not tf.verify_otp(p.user_id, totp.at(clock.now)), "not confirmed yet"
    with pytest.raises(SiegelError) as err:
        tf.confirm_totp(p, f"{(int(totp.at(clock.now)) + 1) % 10 ** 6:06d}")
    assert err.value.code is Code.BAD_REQUEST
    tf.confirm_totp(p, totp.at(clock.now))
    clock.advance(30)
    right = totp.at(clock.now)
    assert not tf.verify_otp(p.user_id, f"{(int(right) + 1) % 10 ** 6:06d}")
    assert not tf.verify_otp(p.user_id, totp.at(clock.now + timedelta(seconds=120))), "outside the window"
    assert tf.verify_otp(p.user_id, right)
    with pytest.raises(SiegelError) as err:
        tf.enrol_totp(p)
    assert err.value.code is Code.CONFLICT, "a confirmed authenticator is not silently replaced"


def test_a_recovery_code_works_once_and_a_new_set_replaces_the_old(engine: Engine, clock: Clock) -> None:
    users, tf = build(engine, clock)
    p, _ = enrolled(users, tf, clock)
    codes = tf.new_recovery_codes(p)
    assert len(codes) == 10 and len(set(codes)) == 10 and all(re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", c)
                                                             for c in codes)
    with engine.connect() as c:
        stored = set(c.execute(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == p.user_id)).scalars())
    assert len(stored) == 10 and not any(code.replace("-", "") in h for code in codes for h in stored)
    assert tf.verify_otp(p.user_id, codes[0].lower().replace("-", " "))  # typed loosely
    assert not tf.verify_otp(p.user_id, codes[0]), "single use"
    assert tf.status(p.user_id).recovery_codes_left == 9
    fresh = tf.new_recovery_codes(p)
    assert not tf.verify_otp(p.user_id, codes[1]), "the old set stopped working"
    assert tf.verify_otp(p.user_id, fresh[1])
    assert not tf.verify_otp(p.user_id, fresh[2], purpose="remote_sign"), "recovery codes only log in"


def test_email_code_through_smtp_expiry_and_attempt_limit(engine: Engine, clock: Clock, smtp_server: SmtpServer) -> None:
    mailer = SmtpMailSender(smtp_server.host, smtp_server.port, "siegel@example.com", False)
    users, tf = build(engine, clock, mailer=mailer, code_minutes=10, code_attempts=3, resend_seconds=30)
    p = users.add("cleo", "cleo@example.com", "admin", PASSWORD)

    def mailed(n: int) -> str:
        mail = smtp_server.wait_for(n)[n - 1]
        assert mail.rcpt_tos == ("cleo@example.com",)
        return re.search(r"\b(\d{6})\b", mail.message.get_content()).group(1)  # type: ignore[union-attr]

    sent = tf.send_code(p, "email")
    assert sent.channel == "email" and sent.destination == "c***@example.com"
    code = mailed(1)
    with engine.connect() as c:
        assert code not in str(c.execute(select(OtpCode.code_hash)).scalar_one())
    assert tf.verify_otp(p.user_id, code)
    assert not tf.verify_otp(p.user_id, code), "used once"

    with pytest.raises(SiegelError) as err:
        tf.send_code(p, "email")
    assert err.value.code is Code.CONFLICT, "a second code within resend_seconds"

    clock.advance(31)
    tf.send_code(p, "email")
    code = mailed(2)
    clock.advance(10 * 60 + 1)
    assert not tf.verify_otp(p.user_id, code), "expired"

    tf.send_code(p, "email")
    code = mailed(3)
    wrong = f"{(int(code) + 1) % 10 ** 6:06d}"
    for _ in range(3):
        assert not tf.verify_otp(p.user_id, wrong)
    assert not tf.verify_otp(p.user_id, code), "dead after code_attempts wrong tries"

    clock.advance(31)
    tf.send_code(p, "email")
    first = mailed(4)
    clock.advance(31)
    tf.send_code(p, "email")
    second = mailed(5)
    assert not tf.verify_otp(p.user_id, first), "a new code supersedes the open one"
    assert tf.verify_otp(p.user_id, second)


def test_sms_code_through_the_http_gateway(engine: Engine, clock: Clock, http_sink: HttpSink) -> None:  # noqa: F811
    gateway = HttpSmsGateway(http_sink.url, '{"messages": [{"to": "$to", "body": "$text"}], "from": "$sender"}',
                             sender="SIEGEL", auth="bearer", secret="tok-123")
    users, tf = build(engine, clock, sms=gateway)
    p = users.add("dora", "dora@example.com", "signer", PASSWORD)
    with pytest.raises(SiegelError) as err:
        tf.send_code(p, "sms")
    assert err.value.code is Code.BAD_REQUEST and "no SMS number" in err.value.message
    with pytest.raises(SiegelError):
        tf.set_phone("dora", "0301234")  # not E.164
    tf.set_phone("dora", "+4930123456")
    assert tf.send_code(p, "sms").destination.endswith("456")
    (got,) = http_sink.wait_for(1)
    assert got.path == "/sms" and got.headers["authorization"] == "Bearer tok-123"
    body = got.json()
    assert body["from"] == "SIEGEL" and body["messages"][0]["to"] == "+4930123456"
    code = re.search(r"\b(\d{6})\b", body["messages"][0]["body"]).group(1)  # type: ignore[union-attr]
    assert not tf.verify_otp(p.user_id, code, purpose="remote_sign"), "a login code is not for other purposes"
    assert tf.verify_otp(p.user_id, code)
    assert not tf.verify_otp(p.user_id, code)

    http_sink.status = 500
    clock.advance(31)
    with pytest.raises(SiegelError) as err:
        tf.send_code(p, "sms")
    assert "HTTP 500" in err.value.message


def test_a_bound_code_is_accepted_only_for_its_purpose_and_binding(engine: Engine, clock: Clock,
                                                                    smtp_server: SmtpServer) -> None:
    mailer = SmtpMailSender(smtp_server.host, smtp_server.port, "siegel@example.com", False)
    users, tf = build(engine, clock, mailer=mailer)
    p, totp = enrolled(users, tf, clock)
    hashes = b"\x01" * 32 + b"\x02" * 32
    tf.send_code(p, "email", purpose="remote_sign", binding=hashes)
    code = re.search(r"\b(\d{6})\b", smtp_server.wait_for(1)[0].message.get_content()).group(1)  # type: ignore[union-attr]
    with engine.connect() as c:
        row = c.execute(select(OtpCode.purpose, OtpCode.binding_hash)).one()
    assert row.purpose == "remote_sign" and row.binding_hash is not None
    assert not tf.verify_otp(p.user_id, code), "not a login code"
    assert not tf.verify_otp(p.user_id, code, purpose="remote_sign", binding=b"\x03" * 64), "other hashes"
    assert not tf.verify_otp(p.user_id, totp.at(clock.now), purpose="remote_sign", binding=hashes), \
        "a TOTP code carries no binding"
    assert tf.verify_otp(p.user_id, code, purpose="remote_sign", binding=hashes)


def test_login_step_counts_wrong_second_factors_towards_the_lockout(engine: Engine, clock: Clock) -> None:
    users, tf = build(engine, clock)
    p, totp = enrolled(users, tf, clock)
    missing = tf.login(p, "ada", PASSWORD, None, "10.0.0.9")
    assert missing is not None and missing.missing and not missing.verified
    for i in range(3):  # lockout_threshold = 3; the right password each time resets users.failed_logins
        assert users.authenticate("ada", PASSWORD, "10.0.0.9") is not None, f"password still fine before {i}"
        wrong = f"{(int(totp.at(clock.now)) + 1) % 10 ** 6:06d}"
        outcome = tf.login(p, "ada", PASSWORD, wrong, "10.0.0.9")
        assert outcome is not None and not outcome.verified and not outcome.missing
    with engine.connect() as c:
        count, until = c.execute(select(User.failed_logins, User.locked_until).where(User.id == p.user_id)).one()
    assert count == 3 and until is not None
    assert users.authenticate("ada", PASSWORD, "10.0.0.9") is None, "locked by wrong second factors"
    assert tf.login(p, "ada", PASSWORD, totp.at(clock.now), "10.0.0.9") is None, "no OTP check while locked"
    clock.advance(3)
    assert users.authenticate("ada", PASSWORD, "10.0.0.9") is not None
    ok = tf.login(p, "ada", PASSWORD, totp.at(clock.now), "10.0.0.9")
    assert ok is not None and ok.verified
    with engine.connect() as c:
        assert c.execute(select(User.failed_logins).where(User.id == p.user_id)).scalar_one() == 0
        assert c.execute(select(TwoFactor.otp_failures).where(TwoFactor.user_id == p.user_id)).scalar_one() == 0


def test_a_verified_pair_is_cached_only_within_the_codes_validity(engine: Engine, clock: Clock) -> None:
    users, tf = build(engine, clock)
    p, totp = enrolled(users, tf, clock)
    code = totp.at(clock.now)
    assert tf.login(p, "ada", PASSWORD, code, None).verified  # type: ignore[union-attr]
    assert tf.login(p, "ada", PASSWORD, code, None).verified, "the same request again: cached"  # type: ignore[union-attr]
    assert not tf.login(p, "ada", "other password", code, None).verified, "the pair, not the code"  # type: ignore[union-attr]
    assert tf._cache and all(exp - now <= 90 for exp, now in
                             ((e, __import__("time").monotonic()) for e, _ in tf._cache.values()))
    codes = tf.new_recovery_codes(p)
    assert tf.login(p, "ada", PASSWORD, codes[0], None).verified  # type: ignore[union-attr]
    assert not tf.login(p, "ada", PASSWORD, codes[0], None).verified, "a recovery code is never cached"  # type: ignore[union-attr]


def test_reset_removes_every_factor(engine: Engine, clock: Clock) -> None:
    users, tf = build(engine, clock)
    p, totp = enrolled(users, tf, clock)
    codes = tf.new_recovery_codes(p)
    tf.reset("ada", "cli")
    assert not tf.verify_otp(p.user_id, totp.at(clock.now)) and not tf.verify_otp(p.user_id, codes[0])
    status = tf.status(p.user_id)
    assert not status.totp and status.recovery_codes_left == 0
    totp2 = _totp(tf.enrol_totp(p).uri)  # enrols again
    tf.confirm_totp(p, totp2.at(clock.now))
    assert tf.status(p.user_id).totp
    with pytest.raises(SiegelError):
        tf.reset("nobody", "cli")
    assert LOGIN == "login"


def test_sweep_removes_sent_codes_a_day_after_expiry(engine: Engine, clock: Clock, smtp_server: SmtpServer) -> None:
    mailer = SmtpMailSender(smtp_server.host, smtp_server.port, "siegel@example.com", False)
    users, tf = build(engine, clock, mailer=mailer)
    p = users.add("eve", "eve@example.com", "signer", PASSWORD)
    tf.send_code(p, "email")
    tf.sweep()
    with engine.connect() as c:
        assert len(c.execute(select(OtpCode.id)).all()) == 1
    clock.advance(86400 + 11 * 60)
    tf.sweep()
    with engine.connect() as c:
        assert c.execute(select(OtpCode.id)).all() == []
