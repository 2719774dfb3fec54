"""The CSC API server's domain (server.remote.csc_service) on SQLite and PostgreSQL with the session's
SoftHSM2 token and the internal PKI: login, credentials, SAD bound to the hashes (SCAL2), signHash, timestamps.

Each protection has a test that fails when it is removed: a wrong OTP or PIN gives no SAD, a SAD signs only its
hashes, at most numSignatures, only for its account and credential, never after its expiry; wrong PINs lock the
account (and then even the right one is refused); every refusal is an audit entry and no signature comes out.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, utils
from sqlalchemy import select

from server.db.models import AuditEntry, CscSad, CscToken
from server.errors import Code, SiegelError
from server.identity.twofactor import TwoFactorPolicy, TwoFactorService
from server.identity.users import LoginPolicy, Principal, UserService
from server.pki.tsa import TimestampAuthority
from server.remote.csc_service import (
    PURPOSE,
    CscError,
    CscPolicy,
    CscService,
    internal_timestamp,
    otp_binding,
)
from server.signing.keys import SigningKeys
from server.signing.keysource import DigestAlgorithm
from adapters.sms import HttpSmsGateway
from tests.fixtures.http_sink import HttpSink, http_sink  # noqa: F401 (the fixture)
from tests.fixtures.pki import Pki

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Mailbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def send(self, to: str, subject: str, body: str) -> None:
        self.sent.append((to, subject, body))

    def code(self) -> str:
        match = re.search(r"\b(\d{6})\b", self.sent[-1][2])
        assert match
        return match.group(1)


class World:
    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.clock = Clock()
        self.mail = Mailbox()
        self.users = UserService(pki.engine, pki.audit, 0, LoginPolicy(lockout_threshold=3, address_lockout_threshold=100),
                                 clock=self.clock)
        self.tf = TwoFactorService(pki.engine, pki.audit, self.users, b"k" * 32, TwoFactorPolicy(resend_seconds=0),
                                   mailer=self.mail, clock=self.clock)
        tsa = TimestampAuthority(pki.engine, pki.audit, pki.ca, lambda: pki.hsm, pki.settings.tsa)
        self.csc = CscService(pki.engine, pki.audit, self.users, self.tf, lambda: pki.hsm,
                              CscPolicy(sad_minutes=5, multisign=10), timestamp=internal_timestamp(tsa.respond),
                              clock=self.clock)

    def person(self, name: str) -> tuple[Principal, str]:
        p = self.users.add(name, f"{name}@example.com", "signer", PASSWORD)
        cert = self.pki.ca.issue_user(name)
        return p, cert.key_label

    def audit(self, action: str) -> list[dict[str, object]]:
        with self.pki.engine.connect() as conn:
            rows = conn.execute(select(AuditEntry.target, AuditEntry.details).where(AuditEntry.action == action)
                                .order_by(AuditEntry.seq)).all()
        return [{"target": r.target, **json.loads(r.details)} for r in rows]


@pytest.fixture
def world(pki: Pki) -> World:
    return World(pki)


def digests(*texts: str) -> list[bytes]:
    return [hashlib.sha256(t.encode()).digest() for t in texts]


def check(cert_der: bytes, digest: bytes, signature: bytes) -> None:
    key = x509.load_der_x509_certificate(cert_der).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(signature, digest, ec.ECDSA(utils.Prehashed(DigestAlgorithm.SHA256.hash())))


def authorize(w: World, p: Principal, label: str, hashes: list[bytes], n: int | None = None, *,
              pin: str = PASSWORD) -> str:
    w.csc.send_otp(p, label)
    return w.csc.authorize(p, label, n or len(hashes), hashes, DigestAlgorithm.SHA256, pin, w.mail.code(), None).sad


def test_login_token_is_stored_hashed_and_expires(world: World) -> None:
    p, _ = world.person("ada")
    token, seconds = world.csc.login("ada", PASSWORD, None)
    assert seconds == 3600 and world.csc.principal(token).user_id == p.user_id
    with world.pki.engine.connect() as conn:
        stored = conn.execute(select(CscToken.token_hash)).scalars().all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]
    with pytest.raises(CscError) as err:
        world.csc.login("ada", "wrong password!", None)
    assert (err.value.status, err.value.error) == (400, "authentication_error")
    with pytest.raises(CscError) as err:
        world.csc.principal("not-a-token")
    assert (err.value.status, err.value.error) == (401, "invalid_token")
    world.clock.now += timedelta(hours=2)
    with pytest.raises(CscError) as err:
        world.csc.principal(token)
    assert (err.value.status, err.value.error) == (401, "expired_token")


def test_happy_path_list_info_otp_authorize_sign_many_hashes(world: World) -> None:
    p, label = world.person("ada")
    _other, other_label = world.person("bob")
    SigningKeys(world.pki.engine, world.pki.audit, world.pki.ca).grant(other_label, "ada")
    assert world.csc.credentials(p) == [label, other_label]
    info = world.csc.credential_info(p, label, "chain", True)
    assert info["SCAL"] == "2" and info["authMode"] == "explicit" and info["auth"]["mode"] == "explicit"
    assert info["key"]["algo"][0] == ECDSA_SHA256 and info["key"]["len"] == 256
    assert info["PIN"]["presence"] == "true" and info["OTP"]["presence"] == "true"
    chain = [__import__("base64").b64decode(c) for c in info["cert"]["certificates"]]
    assert len(chain) == 3 and info["cert"]["validTo"].endswith("Z")
    hashes = digests("one", "two", "three")
    sad = authorize(world, p, label, hashes)
    assert world.mail.sent[-1][0] == "ada@example.com"
    with world.pki.engine.connect() as conn:
        row = conn.execute(select(CscSad.__table__)).one()
    assert row.sad_hash == hashlib.sha256(sad.encode()).hexdigest() and row.num_signatures == 3
    assert sorted(json.loads(row.hashes)) == sorted(h.hex() for h in hashes)
    assert world.csc.authorize_check(p, label, sad)["remainingSignatures"] == 3
    values = world.csc.sign_hash(p, label, sad, hashes, SHA256, ECDSA_SHA256)
    assert len(values) == 3
    for digest, value in zip(hashes, values):
        check(chain[0], digest, value)
    (entry,) = world.audit("csc.sign")
    assert entry["target"] == label and entry["hashes"] == [h.hex() for h in hashes]
    assert world.audit("csc.authorize")[0]["numSignatures"] == 3


def test_totp_authorizes_too_and_the_code_is_bound_to_the_hashes_when_named(world: World) -> None:
    p, label = world.person("ada")
    enrolment = world.tf.enrol_totp(p)
    totp = pyotp.parse_uri(enrolment.uri)
    world.tf.confirm_totp(p, totp.at(world.clock.now))
    world.clock.now += timedelta(seconds=30)
    hashes = digests("totp")
    sad = world.csc.authorize(p, label, 1, hashes, DigestAlgorithm.SHA256, PASSWORD, totp.at(world.clock.now), None).sad
    assert world.csc.sign_hash(p, label, sad, hashes, SHA256, ECDSA_SHA256)
    # A code sent for these hashes does not authorise other hashes.
    world.csc.send_otp(p, label, hashes=digests("bound"), algorithm=DigestAlgorithm.SHA256)
    with pytest.raises(CscError) as err:
        world.csc.authorize(p, label, 1, digests("other"), DigestAlgorithm.SHA256, PASSWORD, world.mail.code(), None)
    assert (err.value.status, err.value.error, err.value.description) == (400, "invalid_request", "The OTP is invalid")
    assert world.tf.verify_otp(p.user_id, world.mail.code(), purpose=PURPOSE,
                               binding=otp_binding(label, digests("bound"), DigestAlgorithm.SHA256))


def test_send_otp_by_sms_through_the_gateway_authorizes(world: World, http_sink: HttpSink) -> None:  # noqa: F811
    p, label = world.person("ada")
    with pytest.raises(SiegelError) as missing:  # no gateway configured: /csc/v2 answers 501 not_implemented
        world.csc.send_otp(p, label, "sms")
    assert missing.value.code is Code.NOT_SUPPORTED and "no SMS gateway" in missing.value.message
    world.tf.sms = HttpSmsGateway(http_sink.url, '{"to": "$to", "text": "$text"}', sender="SIEGEL")
    with pytest.raises(CscError) as err:
        world.csc.send_otp(p, label, "sms")
    assert "no SMS number" in err.value.description
    world.tf.set_phone("ada", "+4930123456")
    world.csc.send_otp(p, label, "sms")
    (got,) = http_sink.wait_for(1)
    assert got.json()["to"] == "+4930123456"
    code = re.search(r"\b(\d{6})\b", got.json()["text"]).group(1)  # type: ignore[union-attr]
    hashes = digests("by sms")
    sad = world.csc.authorize(p, label, 1, hashes, DigestAlgorithm.SHA256, PASSWORD, code, None).sad
    assert len(world.csc.sign_hash(p, label, sad, hashes, SHA256, ECDSA_SHA256)) == 1
    assert world.mail.sent == []  # the code went by SMS only


def test_wrong_otp_gives_no_sad(world: World) -> None:
    p, label = world.person("ada")
    world.csc.send_otp(p, label)
    wrong = "000000" if world.mail.code() != "000000" else "111111"
    with pytest.raises(CscError) as err:
        world.csc.authorize(p, label, 1, digests("x"), DigestAlgorithm.SHA256, PASSWORD, wrong, None)
    assert (err.value.status, err.value.error, err.value.description) == (400, "invalid_request", "The OTP is invalid")
    with world.pki.engine.connect() as conn:
        assert conn.execute(select(CscSad)).first() is None
    assert world.audit("csc.authorize_refused")[0]["reason"] == "wrong OTP"


def test_expired_sad_signs_nothing(world: World) -> None:
    p, label = world.person("ada")
    hashes = digests("late")
    sad = authorize(world, p, label, hashes)
    world.clock.now += timedelta(minutes=5, seconds=1)
    with pytest.raises(CscError) as err:
        world.csc.sign_hash(p, label, sad, hashes, SHA256, ECDSA_SHA256)
    assert (err.value.status, err.value.error, err.value.description) == (400, "invalid_request", "SAD expired")
    assert world.audit("csc.sign") == [] and world.audit("csc.sign_refused")[0]["reason"] == "SAD expired"


def test_sad_is_spent_after_num_signatures(world: World) -> None:
    p, label = world.person("ada")
    hashes = digests("a", "b")
    sad = authorize(world, p, label, hashes, 2)
    assert len(world.csc.sign_hash(p, label, sad, hashes[:1], SHA256, ECDSA_SHA256)) == 1
    with pytest.raises(CscError) as err:  # one signature left, two asked for
        world.csc.sign_hash(p, label, sad, hashes, SHA256, ECDSA_SHA256)
    assert err.value.description == "Invalid parameter SAD"
    assert len(world.csc.sign_hash(p, label, sad, hashes[1:], SHA256, ECDSA_SHA256)) == 1
    with pytest.raises(CscError) as err:
        world.csc.sign_hash(p, label, sad, hashes[1:], SHA256, ECDSA_SHA256)
    assert (err.value.error, err.value.description) == ("invalid_request", "Invalid parameter SAD")
    assert len(world.audit("csc.sign")) == 2 and len(world.audit("csc.sign_refused")) == 2


def test_sad_for_another_hash_or_algorithm(world: World) -> None:
    p, label = world.person("ada")
    sad = authorize(world, p, label, digests("authorised"))
    with pytest.raises(CscError) as err:
        world.csc.sign_hash(p, label, sad, digests("something else"), SHA256, ECDSA_SHA256)
    assert err.value.description == "Hash is not authorized by the SAD"
    with pytest.raises(CscError) as err:
        world.csc.sign_hash(p, label, sad, [hashlib.sha384(b"authorised").digest()], None, "1.2.840.10045.4.3.3")
    assert "another hash algorithm" in err.value.description
    assert world.audit("csc.sign") == []
    assert len(world.csc.sign_hash(p, label, sad, digests("authorised"), SHA256, ECDSA_SHA256)) == 1


def test_someone_elses_credential_or_sad(world: World) -> None:
    ada, ada_label = world.person("ada")
    bob, bob_label = world.person("bob")
    with pytest.raises(CscError) as err:
        world.csc.credential_info(ada, bob_label)
    assert (err.value.status, err.value.error, err.value.description) == (400, "invalid_request",
                                                                         "Invalid parameter credentialID")
    with pytest.raises(CscError) as err:
        world.csc.send_otp(ada, bob_label)
    assert err.value.description == "Invalid parameter credentialID"
    hashes = digests("x")
    sad = authorize(world, ada, ada_label, hashes)
    with pytest.raises(CscError) as err:  # bob presents ada's SAD
        world.csc.sign_hash(bob, ada_label, sad, hashes, SHA256, ECDSA_SHA256)
    assert err.value.description == "Invalid parameter credentialID"
    with pytest.raises(CscError) as err:  # ... or with his own credential
        world.csc.sign_hash(bob, bob_label, sad, hashes, SHA256, ECDSA_SHA256)
    assert err.value.description == "Invalid parameter SAD"
    assert world.audit("csc.sign") == [] and len(world.audit("csc.sign_refused")) == 2


def test_wrong_pin_repeatedly_locks_the_credential(world: World) -> None:
    p, label = world.person("ada")
    answers = []
    for _ in range(3):
        with pytest.raises(CscError) as err:
            world.csc.authorize(p, label, 1, digests("x"), DigestAlgorithm.SHA256, "wrong password!", "123456", None)
        answers.append((err.value.status, err.value.error, err.value.description))
    assert answers == [(400, "invalid_request", "The PIN is invalid")] * 2 + [(400, "invalid_request", "PIN locked")]
    world.csc.send_otp(p, label)
    with pytest.raises(CscError) as err:  # the right PIN and OTP, but locked
        world.csc.authorize(p, label, 1, digests("x"), DigestAlgorithm.SHA256, PASSWORD, world.mail.code(), None)
    assert (err.value.status, err.value.error, err.value.description) == (400, "invalid_request", "PIN locked")
    reasons = [e["reason"] for e in world.audit("csc.authorize_refused")]
    assert reasons == ["wrong PIN", "wrong PIN", "wrong PIN, account locked", "account locked"]
    with world.pki.engine.connect() as conn:
        assert conn.execute(select(CscSad)).first() is None


def test_parameters_are_checked_as_csc_says(world: World) -> None:
    p, label = world.person("ada")
    for n, text in ((0, "Invalid value for parameter numSignatures"), (11, "Numbers of signatures is too high"),
                    ("1", "Missing (or invalid type) integer parameter numSignatures")):
        with pytest.raises(CscError) as err:
            world.csc.authorize(p, label, n, digests("x"), DigestAlgorithm.SHA256, PASSWORD, "123456", None)
        assert err.value.description == text
    sad = authorize(world, p, label, digests("x"))
    with pytest.raises(CscError) as err:
        world.csc.sign_hash(p, label, sad, digests("x"), SHA256, "1.2.840.113549.1.1.11")  # RSA on an EC key
    assert err.value.description == "Invalid parameter signAlgo"
    with pytest.raises(CscError) as err:
        world.csc.sign_hash(p, label, sad, [b"short"], SHA256, ECDSA_SHA256)
    assert err.value.description == "Invalid digest value length"


def test_timestamp_from_the_internal_tsa(world: World) -> None:
    from asn1crypto import cms, tsp

    p, _ = world.person("ada")
    digest = digests("stamp me")[0]
    token = world.csc.timestamp(p, __import__("base64").b64encode(digest).decode(), SHA256, "0a1b2c")
    info = tsp.TSTInfo.load(cms.ContentInfo.load(token)["content"]["encap_content_info"]["content"].parsed.dump())
    assert info["message_imprint"]["hashed_message"].native == digest and info["nonce"].native == 0x0A1B2C
    with pytest.raises(CscError) as err:
        world.csc.timestamp(p, "AAAA", SHA256, None)
    assert err.value.description == "Invalid digest value length"


def test_oauth2_authorization_code_with_pkce_and_client_credentials(world: World) -> None:
    import base64
    import secrets

    from server.identity.apiclients import ApiClientService

    world.csc.policy = CscPolicy(redirect_uris=frozenset({"https://app.example/cb"}))
    ada, _ = world.person("ada")
    world.users.add("erp", "erp@example.com", "integration", PASSWORD)
    client = ApiClientService(world.users, world.pki.audit).create("erp")
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()

    def code(**kw: object) -> str:
        args: dict[str, object] = {"client_id": client.key, "redirect_uri": "https://app.example/cb", "scope": "service",
                                   "challenge": challenge, "method": "S256", **kw}
        return world.csc.oauth2_code("ada", PASSWORD, None, None, args["client_id"], args["redirect_uri"],
                                     args["scope"], args["challenge"], args["method"])

    for bad, text in (({"redirect_uri": "https://evil.example/cb"}, "Invalid parameter redirect_uri"),
                      ({"client_id": "ak_" + "0" * 32}, "Invalid parameter client_id"),
                      ({"method": "plain"}, "PKCE")):
        with pytest.raises(CscError) as err:
            code(**bad)
        assert err.value.description.startswith(text)
    with pytest.raises(CscError) as err:
        world.csc.oauth2_code("ada", "wrong password!", None, None, client.key, "https://app.example/cb", None,
                              challenge, "S256")
    assert err.value.error == "access_denied"

    form = {"grant_type": "authorization_code", "client_id": client.key, "redirect_uri": "https://app.example/cb"}
    first = code()
    with pytest.raises(CscError) as err:
        world.csc.oauth2_token({**form, "code": first, "code_verifier": "not-the-verifier"}, None, None)
    assert err.value.error == "invalid_grant" and err.value.description.startswith("PKCE")
    with pytest.raises(CscError) as err:  # the failed exchange used the code up
        world.csc.oauth2_token({**form, "code": first, "code_verifier": verifier}, None, None)
    assert err.value.error == "invalid_grant"
    second = code()
    token, _ = world.csc.oauth2_token({**form, "code": second, "code_verifier": verifier}, None, None)
    assert world.csc.principal(token).user_id == ada.user_id
    with pytest.raises(CscError) as err:
        world.csc.oauth2_token({**form, "code": second, "code_verifier": verifier}, None, None)
    assert (err.value.error, err.value.description) == ("invalid_grant", "Authorization code is invalid or expired")
    world.clock.now += timedelta(seconds=61)
    late = code()
    world.clock.now += timedelta(seconds=61)
    with pytest.raises(CscError) as err:
        world.csc.oauth2_token({**form, "code": late, "code_verifier": verifier}, None, None)
    assert err.value.error == "invalid_grant"

    token, _ = world.csc.oauth2_token({"grant_type": "client_credentials"}, (client.key, client.secret), None)
    assert world.csc.principal(token).name == "erp"
    with pytest.raises(CscError) as err:
        world.csc.oauth2_token({"grant_type": "client_credentials", "client_id": client.key,
                                "client_secret": "wrong"}, None, None)
    assert err.value.description == "Invalid parameter client_secret"


def test_oauth2_scope_credential_by_authorization_details_binds_the_token_like_a_sad(world: World) -> None:
    """authorization_details (RFC 9396) of type credential: the token signs those hashes for that account
    and credential, at most numSignatures, not after a SAD's lifetime; it is no service token."""
    import base64
    import secrets

    from server.identity.apiclients import ApiClientService

    world.csc.policy = CscPolicy(sad_minutes=5, multisign=10, redirect_uris=frozenset({"https://app.example/cb"}))
    ada, label = world.person("ada")
    bob, bob_label = world.person("bob")
    world.users.add("erp", "erp@example.com", "integration", PASSWORD)
    client = ApiClientService(world.users, world.pki.audit).create("erp")
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    hashes = digests("a", "b", "c")
    details = json.dumps([{"type": "credential", "credentialID": label, "numSignatures": 3,
                           "hashAlgorithmOID": SHA256,
                           "documentDigests": [{"hash": base64.b64encode(h).decode(), "label": "doc"} for h in hashes]}])

    def token_for(otp: str, credential_details: str = details) -> str:
        code = world.csc.oauth2_code("ada", PASSWORD, None, otp, client.key, "https://app.example/cb", None,
                                     challenge, "S256", {"authorization_details": credential_details})
        return world.csc.oauth2_token({"grant_type": "authorization_code", "client_id": client.key, "code": code,
                                       "redirect_uri": "https://app.example/cb", "code_verifier": verifier},
                                      None, None)[0]

    with pytest.raises(CscError) as err:  # no OTP: no code
        token_for("")
    assert (err.value.status, err.value.error, err.value.description) == (400, "invalid_request", "The OTP is invalid")
    with pytest.raises(CscError) as err:  # bob's credential is not ada's to authorise
        world.csc.send_otp(ada, label)
        token_for(world.mail.code(), details.replace(label, bob_label))
    assert err.value.description == "Invalid parameter credentialID"
    world.csc.send_otp(ada, label)
    token = token_for(world.mail.code())
    with pytest.raises(CscError) as err:
        world.csc.principal(token)
    assert (err.value.status, err.value.error) == (403, "insufficient_scope")
    with pytest.raises(CscError) as err:  # bob's SAD-less call cannot use ada's token as a SAD
        world.csc.sign_hash(bob, bob_label, token, hashes[:1], SHA256, ECDSA_SHA256)
    assert err.value.description == "Invalid parameter SAD"
    values = world.csc.sign_hash(ada, label, token, hashes[:2], SHA256, ECDSA_SHA256)
    cert = world.pki.hsm.certificate_chain(label)[0]
    for digest, value in zip(hashes[:2], values, strict=True):
        check(cert, digest, value)
    world.clock.now += timedelta(minutes=5, seconds=1)
    with pytest.raises(CscError) as err:  # the third signature, but after a SAD's lifetime
        world.csc.sign_hash(ada, label, token, hashes[2:], SHA256, ECDSA_SHA256)
    assert err.value.description == "SAD expired"
    assert len(world.audit("csc.sign")) == 1 and world.audit("csc.authorize")[0]["via"] == "oauth2 scope credential"


def test_concurrent_sign_calls_never_overspend_a_sad(world: World) -> None:
    from concurrent.futures import ThreadPoolExecutor

    p, label = world.person("ada")
    hashes = digests("once")
    sad = authorize(world, p, label, hashes, 1)

    def attempt(_: int) -> str:
        try:
            world.csc.sign_hash(p, label, sad, hashes, SHA256, ECDSA_SHA256)
            return "signed"
        except CscError as exc:
            return exc.description

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert outcomes.count("signed") == 1, outcomes
    assert set(outcomes) == {"signed", "Invalid parameter SAD"}
    assert len(world.audit("csc.sign")) == 1


def test_roles_that_may_not_sign_get_no_token(world: World) -> None:
    world.users.add("audrey", "audrey@example.com", "auditor", PASSWORD)
    with pytest.raises(CscError) as err:
        world.csc.login("audrey", PASSWORD, None)
    assert (err.value.status, err.value.error) == (403, "access_denied")
    assert world.audit("csc.login_refused")[-1]["reason"] == "role may not sign"


def test_csc_auth_mode_oauth2code_reports_it_refuses_credentials_authorize_and_authorises_at_oauth2_authorize(
        world: World) -> None:
    """csc.auth_mode = oauth2code: credentials/info says authMode oauth2code (no PIN/OTP objects);
    credentials/authorize is refused with the right PIN (audited, no SAD, no PIN counted); the login page's
    "send me a code" needs the password and mails a code bound to exactly the requested hashes, which
    oauth2/authorize of scope credential takes for a code whose token signs those hashes and no other."""
    import base64
    import secrets

    from server.identity.apiclients import ApiClientService

    world.csc.policy = CscPolicy(sad_minutes=5, multisign=10, redirect_uris=frozenset({"https://app.example/cb"}),
                                 auth_mode="oauth2code")
    ada, label = world.person("ada")
    world.users.add("erp", "erp@example.com", "integration", PASSWORD)
    client = ApiClientService(world.users, world.pki.audit).create("erp")
    info = world.csc.credential_info(ada, label)
    assert (info["authMode"], info["auth"], info["SCAL"]) == ("oauth2code", {"mode": "oauth2code"}, "2")
    assert "PIN" not in info and "OTP" not in info
    hashes = digests("a", "b")
    world.csc.send_otp(ada, label)
    with pytest.raises(CscError) as err:
        world.csc.authorize(ada, label, 2, hashes, DigestAlgorithm.SHA256, PASSWORD, world.mail.code(), None)
    assert (err.value.status, err.value.error) == (400, "invalid_request") and "oauth2code" in err.value.description
    (refusal,) = world.audit("csc.authorize_refused")
    assert refusal["reason"] == "explicit authorisation of an oauth2code credential"
    assert refusal["hashes"] == sorted(h.hex() for h in hashes)
    with world.pki.engine.connect() as conn:
        assert conn.execute(select(CscSad)).first() is None

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {"credentialID": label, "numSignatures": "2", "hashAlgorithmOID": SHA256,
             "hashes": ",".join(base64.urlsafe_b64encode(h).rstrip(b"=").decode() for h in hashes)}
    assert world.csc.oauth2_request(client.key, "https://app.example/cb", "credential", challenge, "S256", query)
    with pytest.raises(CscError) as err:
        world.csc.oauth2_request(client.key, "https://app.example/cb", "credential", challenge, "S256",
                                 {**query, "hashes": "%%%"})
    assert err.value.description == "Invalid Base64 hash string parameter"
    sent = len(world.mail.sent)
    with pytest.raises(CscError) as err:
        world.csc.oauth2_send_code("ada", "wrong password!", None, query)
    assert err.value.error == "access_denied" and len(world.mail.sent) == sent
    world.csc.oauth2_send_code("ada", PASSWORD, None, query)
    code = world.csc.oauth2_code("ada", PASSWORD, None, world.mail.code(), client.key, "https://app.example/cb",
                                 "credential", challenge, "S256", query)
    token, seconds = world.csc.oauth2_token({"grant_type": "authorization_code", "client_id": client.key,
                                             "code": code, "redirect_uri": "https://app.example/cb",
                                             "code_verifier": verifier}, None, None)
    assert seconds == 300
    with pytest.raises(CscError) as err:
        world.csc.sign_hash(ada, label, token, digests("c"), SHA256, ECDSA_SHA256)
    assert err.value.description == "Hash is not authorized by the SAD"
    values = world.csc.sign_hash(ada, label, token, hashes, SHA256, ECDSA_SHA256)
    cert = world.pki.hsm.certificate_chain(label)[0]
    for digest, value in zip(hashes, values, strict=True):
        check(cert, digest, value)
