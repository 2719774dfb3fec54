"""Second factor pieces without a database: which roles are asked, the settings, the installation key, the SMS
gateway's body template and request (against the local HTTP sink), the route table entries, and the guard's
order: password first, the second factor only after a right password."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer

from adapters.sms import HttpSmsGateway
from server import config
from server.errors import Code, ConfigError, SiegelError
from server.identity.policy import Action, needs_second_factor
from server.identity.twofactor import (
    LoginOutcome,
    TwoFactorPolicy,
    binding_hash,
    load_or_create_key,
    normalise_recovery,
)
from server.identity.users import Principal, Role
from server.web import auth
from tests.fixtures.http_sink import HttpSink, http_sink  # noqa: F401


def who(role: Role) -> Principal:
    return Principal(3, f"{role.value}-user", role)


def test_which_roles_need_a_second_factor() -> None:
    admins = TwoFactorPolicy().required_roles
    assert admins == frozenset({"admin"})
    assert needs_second_factor(who(Role.ADMIN), admins)
    assert not needs_second_factor(who(Role.SIGNER), admins)
    everyone = frozenset(r.value for r in Role)
    assert not needs_second_factor(who(Role.INTEGRATION), everyone), "system accounts have no person to ask"
    assert needs_second_factor(Principal(3, "x", "root"), frozenset()), "an unknown role never skips it"  # type: ignore[arg-type]
    assert not needs_second_factor(who(Role.ADMIN), frozenset())


def test_settings_default_to_admins_and_refuse_system_roles(tmp_path: Path) -> None:
    s = config.load(data_dir=tmp_path, environ={})
    assert TwoFactorPolicy.from_settings(s.twofactor).required_roles == {"admin"}
    assert s.sms.url == "" and s.twofactor.key_file.startswith("secrets/")
    s = config.load(data_dir=tmp_path, environ={"SIEGEL_TWOFACTOR_REQUIRED_ROLES": "admin, signer"})
    assert TwoFactorPolicy.from_settings(s.twofactor).required_roles == {"admin", "signer"}
    with pytest.raises(ConfigError, match="twofactor.required_roles"):
        config.load(data_dir=tmp_path, environ={"SIEGEL_TWOFACTOR_REQUIRED_ROLES": "admin,integration"})
    with pytest.raises(ConfigError, match="sms.auth"):
        config.load(data_dir=tmp_path, environ={"SIEGEL_SMS_AUTH": "digest"})


def test_installation_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "twofactor.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    path.write_bytes(b"short")
    with pytest.raises(SiegelError) as err:
        load_or_create_key(path)
    assert err.value.code is Code.CONFIG


def test_recovery_codes_are_read_loosely_and_bindings_hashed() -> None:
    assert normalise_recovery("abcd-efgh ijkl-mnop") == "ABCDEFGHIJKLMNOP"
    assert binding_hash(None) is None
    assert binding_hash(b"a") != binding_hash(b"b") and len(binding_hash(b"a") or "") == 64


def test_sms_body_template_cannot_be_broken_by_the_message() -> None:
    gw = HttpSmsGateway("http://127.0.0.1:1/sms", '{"to": "$to", "msg": {"text": "Code: $text"}, "n": 1}',
                        sender="S")
    import json

    body = json.loads(gw.body("+4930123456", 'x", "evil": "1'))
    assert body == {"to": "+4930123456", "msg": {"text": 'Code: x", "evil": "1'}, "n": 1}
    with pytest.raises(SiegelError):
        HttpSmsGateway("http://127.0.0.1:1/sms", "not json")
    with pytest.raises(SiegelError):
        HttpSmsGateway("ftp://gateway/sms")
    with pytest.raises(SiegelError) as err:
        gw.send("+4930123456", "x")  # nothing listens on port 1
    assert "cannot be reached" in err.value.message


def test_sms_gateway_posts_json_with_basic_credentials(http_sink: HttpSink) -> None:  # noqa: F811
    gw = HttpSmsGateway(http_sink.url, auth="basic", username="siegel", secret="pw", sender="ACME")
    gw.send("+4930123456", "Siegel code: 123456")
    (got,) = http_sink.wait_for(1)
    assert got.headers["content-type"] == "application/json"
    assert got.headers["authorization"] == "Basic " + base64.b64encode(b"siegel:pw").decode()
    assert got.json() == {"to": "+4930123456", "text": "Siegel code: 123456", "from": "ACME"}


def test_the_2fa_routes_are_in_the_route_table() -> None:
    for path in ("/api/v1/2fa/totp", "/api/v1/2fa/totp/confirm", "/api/v1/2fa/recovery-codes", "/api/v1/2fa/otp"):
        assert auth.ROUTES[path] == {"POST": Action.SECOND_FACTOR}
    assert auth.ROUTES["/api/v1/2fa"] == {"DELETE": Action.SECOND_FACTOR}
    for path, methods in auth.PASSWORD_ONLY.items():
        assert set(methods) <= set(auth.ROUTES[path]), path
    assert dict(auth.PASSWORD_ONLY) == {"/api/v1/2fa/otp": {"POST"}}, "only asking for a code goes without one"


class _Users:
    """UserService stand-in: the password is right or not; the second factor service records its calls."""

    def __init__(self, right: bool, twofactor: Any) -> None:
        self.right = right
        self.twofactor = twofactor

    def authenticate(self, name: str, password: str, address: str | None) -> Principal | None:
        return who(Role.ADMIN) if self.right else None

    def cached(self, name: str, password: str) -> Principal | None:
        return None  # nothing verified moments ago: the guard takes the thread path


class _TwoFactor:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def required(self, principal: Principal) -> bool:
        return principal.role is Role.ADMIN

    def login(self, *args: Any) -> LoginOutcome:
        self.calls.append(args)
        return LoginOutcome(args[0], args[3] == "123456", args[3] is None, "")


def _check(monkeypatch: pytest.MonkeyPatch, right: bool, otp: bytes | None) -> tuple[Any, _TwoFactor]:
    monkeypatch.setattr(auth.threads, "deferToThread", lambda f, *a, **k: defer.maybeDeferred(f, *a, **k))
    tf = _TwoFactor()
    creds = auth.AddressedCredentials(b"ada", b"pw", "10.0.0.1")
    creds.otp = otp  # type: ignore[attr-defined]
    results: list[Any] = []
    auth.PasswordChecker(_Users(right, tf)).requestAvatarId(creds).addBoth(results.append)  # type: ignore[arg-type]
    return results[0], tf


def test_the_guard_checks_the_password_first_then_the_second_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    failure, tf = _check(monkeypatch, right=False, otp=b"123456")
    assert failure.check(auth.UnauthorizedLogin) and tf.calls == [], "no code is spent on a wrong password"
    outcome, tf = _check(monkeypatch, right=True, otp=b"123456")
    assert isinstance(outcome, LoginOutcome) and outcome.verified
    assert tf.calls[0][1:] == ("ada", "pw", "123456", "10.0.0.1")
    outcome, _ = _check(monkeypatch, right=True, otp=None)
    assert outcome.missing and not outcome.verified


def test_without_a_second_factor_only_asking_for_a_code_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from twisted.web import resource
    from twisted.web.test.requesthelper import DummyRequest

    class Inner(resource.Resource):
        isLeaf = True

        def render(self, request: Any) -> bytes:
            return b"served for " + request.principal.name.encode()

    def serve(outcome: LoginOutcome, path: bytes, method: bytes) -> tuple[int, bytes]:
        request = DummyRequest(path.lstrip(b"/").split(b"/"))
        request.path, request.method = path, method  # type: ignore[attr-defined]
        body = auth.second_factor_resource(Inner(), outcome).render(request)  # type: ignore[arg-type, call-arg, misc]
        return request.responseCode or 200, body

    ada = who(Role.ADMIN)
    missing = LoginOutcome(ada, False, True, "a second factor is needed")
    wrong = LoginOutcome(ada, False, False, "the second factor (X-Siegel-OTP) is wrong")
    assert serve(missing, b"/api/v1/2fa/otp", b"POST") == (200, b"served for admin-user")
    status, body = serve(missing, b"/api/v1/whoami", b"GET")
    assert status == 401 and b"a second factor is needed" in body
    assert serve(missing, b"/api/v1/2fa/otp", b"GET")[0] == 401
    assert serve(wrong, b"/api/v1/2fa/otp", b"POST")[0] == 401, "a wrong code is refused even there"
    assert serve(LoginOutcome(ada, True, False, ""), b"/api/v1/whoami", b"GET")[0] == 200
