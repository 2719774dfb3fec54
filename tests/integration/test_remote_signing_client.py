"""The remote signing client against a tiny CSC service over real HTTP, for what a correct service (Siegel's own
/csc/v2, tests/e2e/test_remote_signing.py) never does: a signature value that is not the credential's
signature, a transient 503, refusals with their error_description. The fake signs with the real HSM key
of the test PKI; only its misbehaviour is made up. Operations wait in the test PKI's database (SQLite and
PostgreSQL): another RemoteSigning on the same database (another worker, a restart) finishes them, and of
concurrent authorisations one signs."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
from sqlalchemy import func, select, update

from adapters.remote_signing.client import CscClient, RemoteAccount, RemoteServiceError
from adapters.remote_signing.operations import RemoteSigning, StateSeal
from adapters.remote_signing.overview import accounts_overview
from server.db.models import AuditEntry, RemoteOperation, User
from server.errors import Code, SiegelError
from server.signing.cades import SigningKey
from server.signing.keys import SigningKeys
from server.signing.keysource import SignatureScheme, verify_value
from server.signing.levels import Level, Packaging
from server.signing.service import SigningService
from server.signing.order import Document, Format, SignOrder
from tests.fixtures.pki import Pki, user_key

PIN, OTP = "pin-1234", "424242"
CALLBACK = "https://siegel.example/api/v1/sign/remote/callback"
QUOTA = {"quota": {"signatures": 1000, "used": 12}, "terms": "https://qtsp.example/terms"}  # non-standard info fields
INSTALLATION_KEY = bytes(range(32))  # every worker of one installation reads the same twofactor.key_file


class FakeCsc:
    """A CSC v2 service: ``faults`` maps a method to the statuses it answers first (e.g. [503]);
    ``wrong_value`` makes signHash sign another hash than asked; ``stalls`` are seconds the next signHash
    calls wait before they answer; ``mode`` is the credential's authMode (oauth2code: :meth:`authorize_in_browser`
    stands for the user at the service's page, oauth2/token checks the PKCE verifier, the token signs only its
    hashes)."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.calls: Counter[str] = Counter()
        self.faults: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.wrong_value = False
        self.stalls: list[float] = []
        self.remaining = 0
        self.mode = "explicit"
        self.codes: dict[str, tuple[str, list[str]]] = {}  # code: PKCE challenge, the authorised hashes
        self.tokens: dict[str, list[str]] = {}  # scope credential token: the hashes it may still sign
        self.bearer = ""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                method = self.path.removeprefix("/csc/v2/")
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = dict(parse_qsl(raw.decode())) if method == "oauth2/token" else json.loads(raw or b"{}")
                fake.calls[method] += 1
                fake.bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if fake.faults.get(method):
                    status, answer = fake.faults[method].pop(0)
                else:
                    status, answer = fake.answer(method, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/csc/v2"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, method: str, body: dict[str, Any]) -> tuple[int, Any]:
        if method == "info":
            return 200, {"name": "Fake QTSP", "specs": "2.0.0.0", "region": "DE", "description": "a test service",
                         **QUOTA}
        if method == "auth/login":
            return 200, {"access_token": "token-1", "expires_in": 3600}
        if method == "credentials/list":
            return 200, {"credentialIDs": ["cred-1"]}
        if method == "credentials/info":
            return 200, {"key": {"status": "enabled", "algo": ["1.2.840.10045.4.3.2"], "len": 256},
                         "cert": {"status": "valid", "certificates": [base64.b64encode(c).decode() for c in self.key.chain]},
                         "SCAL": "2", "multisign": 10, "auth": {"mode": self.mode, "objects": [
                             {"type": "Password", "id": "PIN"}, {"type": "Password", "id": "OTP"}]}}
        if method == "credentials/sendOTP":
            return 200, {}
        if method == "credentials/authorize":
            values = {a["id"]: a["value"] for a in body["authData"]}
            if values.get("PIN") != PIN:
                return 400, {"error": "invalid_request", "error_description": "The PIN is invalid"}  # CSC v2
            self.remaining = body["numSignatures"]
            return 200, {"SAD": "sad-1", "expiresIn": 300}
        if method == "credentials/authorizeCheck":
            return 200, {"remainingSignatures": self.remaining}
        if method == "oauth2/token":
            challenge, hashes = self.codes.pop(body.get("code", ""), ("", []))
            verifier = body.get("code_verifier", "").encode()
            if not hashes or base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode() != challenge:
                return 400, {"error": "invalid_grant", "error_description": "Authorization code is invalid or expired"}
            token = f"credential-token-{len(self.tokens)}"
            self.tokens[token] = hashes
            return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 300}
        if method == "signatures/signHash" and self.bearer in self.tokens:
            allowed = self.tokens.pop(self.bearer)
            if "SAD" in body or sorted(base64.b64decode(h) for h in body["hashes"]) != sorted(
                    base64.urlsafe_b64decode(h + "==") for h in allowed):
                return 400, {"error": "invalid_request", "error_description": "Hash is not authorized by the SAD"}
        if method == "signatures/signHash":
            if self.stalls:
                time.sleep(self.stalls.pop(0))
            hashes = [base64.b64decode(h) for h in body["hashes"]]
            if self.wrong_value:
                hashes = [hashlib.sha256(h).digest() for h in hashes]
            self.remaining -= len(hashes)
            return 200, {"signatures": [base64.b64encode(self.key.source.sign_digest(
                self.key.label, h, "sha256", SignatureScheme.ECDSA)).decode() for h in hashes]}
        return 404, {"error": "invalid_request", "error_description": f"no method {method}"}

    def authorize_in_browser(self, url: str) -> dict[str, str]:
        """The user authorises at the service's oauth2/authorize page: the query, and the code it redirects with."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        code = f"code-{len(self.codes)}-{len(self.tokens)}"
        self.codes[code] = (query["code_challenge"], query["hashes"].split(","))
        return {**query, "code": code}


@pytest.fixture
def fake(pki: Pki) -> Iterator[FakeCsc]:
    service = FakeCsc(user_key(pki))
    try:
        yield service
    finally:
        service.server.shutdown()


def _client(fake: FakeCsc, retries: int = 2) -> CscClient:
    return CscClient(RemoteAccount("fake", fake.url, "basic", "acme", "secret"), timeout=5.0, retries=retries)


@pytest.fixture
def remote_for(pki: Pki, fake: FakeCsc) -> Callable[..., tuple[RemoteSigning, int]]:
    """A RemoteSigning on the fake with the real signing service and the test PKI's database; anna's id."""
    with pki.engine.connect() as conn:
        anna = conn.execute(select(User.id).where(User.name == "anna")).scalar_one()
    signing = SigningService(pki.settings, pki.engine, pki.ca, lambda: pki.hsm, pki.audit,
                             SigningKeys(pki.engine, pki.audit, pki.ca), lambda: ())

    def make(client: CscClient | None = None, minutes: float = 1, key: bytes = INSTALLATION_KEY,
             lease: float = 60.0) -> tuple[RemoteSigning, int]:
        return RemoteSigning({"fake": client or _client(fake)}, signing, pki.engine, pki.audit, minutes, 5, key,
                             lease, callback_url=CALLBACK), anna

    return make


def _pending_rows(pki: Pki) -> int:
    with pki.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(RemoteOperation)).scalar_one()


ORDER = SignOrder(Format.CADES, Level.B_B, Packaging.DETACHED,
                  (Document("one.txt", content=b"first"), Document("two.txt", content=b"second")))


def test_both_documents_signed_under_one_authorisation(fake: FakeCsc, remote_for: Any, pki: Pki) -> None:
    remote, anna = remote_for()
    signed = remote.start(anna, "anna", ORDER, "fake", "cred-1", pin=PIN, otp=OTP)
    assert isinstance(signed, list) and [s.name for s in signed] == ["one.txt", "two.txt"]
    assert fake.calls["credentials/authorize"] == 1 and fake.calls["signatures/signHash"] == 1
    assert all(s.data[:1] == b"\x30" for s in signed)
    assert _pending_rows(pki) == 0  # signed in the first request: no row was needed


def test_a_wrong_signature_value_is_refused_and_nothing_is_signed(fake: FakeCsc, remote_for: Any) -> None:
    fake.wrong_value = True
    remote, anna = remote_for()
    with pytest.raises(SiegelError) as caught:
        remote.start(anna, "anna", ORDER, "fake", "cred-1", pin=PIN, otp=OTP)
    assert caught.value.code is Code.REMOTE_SIGNING_FAILED
    assert "'fake' returned a signature value (#1 of 2) that does not verify" in caught.value.message
    assert "nothing was signed" in caught.value.message
    assert fake.calls["signatures/signHash"] == 1


def test_a_transient_503_is_retried_and_signhash_only_while_the_sad_is_unspent(fake: FakeCsc, remote_for: Any) -> None:
    unavailable = (503, {"error": "temporarily_unavailable", "error_description": "HSM busy"})
    fake.faults = {"credentials/list": [unavailable], "signatures/signHash": [unavailable]}
    client = _client(fake)
    assert client.credentials() == ["cred-1"] and fake.calls["credentials/list"] == 2
    remote, anna = remote_for(client)
    signed = remote.start(anna, "anna", ORDER, "fake", "cred-1", pin=PIN, otp=OTP)
    assert isinstance(signed, list) and len(signed) == 2
    assert fake.calls["signatures/signHash"] == 2 and fake.calls["credentials/authorizeCheck"] == 1

    fake.remaining = 0  # the service says the SAD is spent: the failed signHash is not sent again
    fake.faults = {"signatures/signHash": [unavailable]}
    with pytest.raises(RemoteServiceError) as caught:
        client.sign_hash("cred-1", "sad-1", [bytes(32)], ORDER.digest, "1.2.840.10045.4.3.2")
    assert fake.calls["signatures/signHash"] == 3 and caught.value.status == 503


def test_errors_name_the_service_its_error_and_error_description(fake: FakeCsc) -> None:
    client = _client(fake, retries=1)
    with pytest.raises(RemoteServiceError) as caught:
        client.authorize("cred-1", [bytes(32)], ORDER.digest, "wrong", OTP)
    assert caught.value.code is Code.BAD_REQUEST
    assert caught.value.message == ("remote signing service 'fake', credentials/authorize: invalid_request: "
                                    "The PIN is invalid (HTTP 400)")
    assert fake.calls["credentials/authorize"] == 1  # an authorisation is never retried
    down = (503, {"error": "temporarily_unavailable", "error_description": "maintenance until 06:00"})
    fake.faults = {"credentials/list": [down, down]}
    with pytest.raises(RemoteServiceError) as caught:
        client.credentials()
    assert caught.value.code is Code.REMOTE_SIGNING_FAILED and fake.calls["credentials/list"] == 2
    assert "temporarily_unavailable: maintenance until 06:00 (HTTP 503)" in caught.value.message


def test_a_service_that_does_not_answer_in_time_is_named_and_nothing_is_signed(fake: FakeCsc, remote_for: Any,
                                                                              pki: Pki) -> None:
    fake.stalls = [2.0, 2.0]  # signHash answers later than the client waits, also when retried
    remote, anna = remote_for(CscClient(RemoteAccount("fake", fake.url, "basic", "acme", "secret"), timeout=0.5,
                                        retries=1))
    with pytest.raises(RemoteServiceError) as caught:
        remote.start(anna, "anna", ORDER, "fake", "cred-1", pin=PIN, otp=OTP)
    assert caught.value.code is Code.REMOTE_SIGNING_FAILED and caught.value.status is None
    assert caught.value.message == ("remote signing service 'fake', signatures/signHash: timeout: no answer within "
                                    "0.5 s (no answer)")
    assert fake.calls["signatures/signHash"] == 2 and fake.calls["credentials/authorizeCheck"] == 1
    assert _signed_audit(pki) == 0 and _pending_rows(pki) == 0


def test_the_admin_overview_shows_credentials_validity_signatures_made_and_the_services_quota(
        fake: FakeCsc, remote_for: Any, pki: Pki) -> None:
    remote, anna = remote_for()
    assert accounts_overview(remote.clients, pki.engine)[0]["credentials"][0]["signaturesBySiegel"] == 0
    remote.start(anna, "anna", ORDER, "fake", "cred-1", pin=PIN, otp=OTP)
    (entry,) = accounts_overview(remote.clients, pki.engine)
    assert entry["error"] is None and entry["service"]["name"] == "Fake QTSP", entry
    assert {k: entry[k] for k in QUOTA} == QUOTA
    (credential,) = entry["credentials"]
    assert (credential["id"], credential["scal"], credential["authMode"], credential["otp"]) == \
        ("cred-1", "2", "explicit", "online")
    assert credential["validity"] == "valid" and credential["notAfter"] and credential["subject"]
    assert credential["signaturesBySiegel"] == 2  # one per document signed through Siegel
    down = (503, {"error": "temporarily_unavailable", "error_description": "maintenance"})
    fake.faults = {"info": [down] * 3}
    (entry,) = accounts_overview(remote.clients, pki.engine)
    assert "'fake', info: temporarily_unavailable: maintenance (HTTP 503)" in entry["error"]


def test_the_returned_values_verify_with_the_credentials_certificate(fake: FakeCsc) -> None:
    client = _client(fake)
    info = client.credential_info("cred-1")
    assert info.scal == "2" and info.needs_pin and info.needs_otp and info.otp_type == "online"
    digest = hashlib.sha256(b"data").digest()
    sad = client.authorize("cred-1", [digest], ORDER.digest, PIN, OTP)
    (value,) = client.sign_hash("cred-1", sad, [digest], ORDER.digest, info.sign_algo(SignatureScheme.ECDSA, ORDER.digest))
    assert verify_value(info.chain[0], b"data", value, ORDER.digest)


def test_an_operation_waits_for_the_otp_in_the_database_and_expires(fake: FakeCsc, remote_for: Any, pki: Pki) -> None:
    remote, anna = remote_for(minutes=0.02)
    pending = remote.start(anna, "anna", ORDER, "fake", "cred-1")
    assert not isinstance(pending, list) and pending.signatures == 2 and pending.otp_sent
    assert fake.calls["credentials/sendOTP"] == 1 and fake.calls["credentials/authorize"] == 0
    with pki.engine.connect() as conn:
        (row,) = conn.execute(select(RemoteOperation)).all()
    assert row.status == "awaiting-otp" and len(json.loads(row.hashes)) == 2 and PIN not in row.states
    with pytest.raises(SiegelError) as other:
        remote.authorize(anna + 1000, pending.operation, PIN, OTP)  # someone else's operation is unknown to them
    assert other.value.code is Code.NOT_FOUND
    time.sleep(1.5)
    with pytest.raises(SiegelError) as late:
        remote.authorize(anna, pending.operation, PIN, OTP)
    assert late.value.code is Code.CONFLICT and "expired" in late.value.message
    assert fake.calls["credentials/authorize"] == 0 and fake.calls["signatures/signHash"] == 0
    assert _pending_rows(pki) == 0


def test_a_wrong_pin_keeps_the_operation_waiting_and_another_instance_finishes_it(
        fake: FakeCsc, remote_for: Any, pki: Pki) -> None:
    first, anna = remote_for()
    pending = first.start(anna, "anna", ORDER, "fake", "cred-1")
    assert not isinstance(pending, list)
    with pytest.raises(RemoteServiceError) as wrong:
        first.authorize(anna, pending.operation, "not-the-pin", OTP)
    assert wrong.value.code is Code.BAD_REQUEST and wrong.value.description == "The PIN is invalid"
    second, _ = remote_for()  # another worker (or the same after a restart): only the database is shared
    signed = second.authorize(anna, pending.operation, PIN, OTP)
    assert [s.name for s in signed] == ["one.txt", "two.txt"] and fake.calls["signatures/signHash"] == 1
    assert _pending_rows(pki) == 0
    with pki.engine.connect() as conn:
        audited = conn.execute(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "sign.cades")).scalar_one()
    assert audited == 2
    with pytest.raises(SiegelError) as again:
        first.authorize(anna, pending.operation, PIN, OTP)
    assert again.value.code is Code.NOT_FOUND


def test_concurrent_authorisations_of_one_operation_sign_once(fake: FakeCsc, remote_for: Any) -> None:
    remote, anna = remote_for()
    pending = remote.start(anna, "anna", ORDER, "fake", "cred-1")
    assert not isinstance(pending, list)
    outcomes: list[object] = []
    barrier = threading.Barrier(4)

    def attempt() -> None:
        other, _ = remote_for()
        barrier.wait()
        try:
            outcomes.append(other.authorize(anna, pending.operation, PIN, OTP))
        except SiegelError as exc:
            outcomes.append(exc.code)

    workers = [threading.Thread(target=attempt) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    signed = [o for o in outcomes if isinstance(o, list)]
    assert len(signed) == 1 and len(outcomes) == 4
    assert all(o in (Code.CONFLICT, Code.NOT_FOUND) for o in outcomes if not isinstance(o, list)), outcomes
    assert fake.calls["credentials/authorize"] == 1 and fake.calls["signatures/signHash"] == 1


def test_a_cancelled_operation_is_gone(fake: FakeCsc, remote_for: Any, pki: Pki) -> None:
    remote, anna = remote_for()
    pending = remote.start(anna, "anna", ORDER, "fake", "cred-1")
    assert not isinstance(pending, list)
    remote.cancel(anna, pending.operation)
    assert _pending_rows(pki) == 0
    with pytest.raises(SiegelError) as late:
        remote.authorize(anna, pending.operation, PIN, OTP)
    assert late.value.code is Code.NOT_FOUND and fake.calls["credentials/authorize"] == 0


def _signed_audit(pki: Pki) -> int:
    with pki.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "sign.cades")).scalar_one()


def _as_if_a_worker_died(pki: Pki, operation: str, lease_until: datetime) -> None:
    """The row as a worker leaves it that took the operation and died before it finished."""
    with pki.engine.begin() as conn:
        conn.execute(update(RemoteOperation).where(RemoteOperation.id == operation).values(
            status="signing", taker="a-dead-worker", lease_until=lease_until))


def test_a_dead_workers_operation_is_taken_over_once_its_lease_ran_out(fake: FakeCsc, remote_for: Any,
                                                                        pki: Pki) -> None:
    remote, anna = remote_for()
    pending = remote.start(anna, "anna", ORDER, "fake", "cred-1")
    assert not isinstance(pending, list)
    _as_if_a_worker_died(pki, pending.operation, datetime.now(UTC) + timedelta(minutes=1))
    with pytest.raises(SiegelError) as busy:  # the lease still runs: it might be alive
        remote.authorize(anna, pending.operation, PIN, OTP)
    assert busy.value.code is Code.CONFLICT and "its lease runs until" in busy.value.message
    with pytest.raises(SiegelError):
        remote.cancel(anna, pending.operation)
    assert fake.calls["credentials/authorize"] == 0 and _pending_rows(pki) == 1

    _as_if_a_worker_died(pki, pending.operation, datetime.now(UTC) - timedelta(seconds=1))
    other, _ = remote_for()
    signed = other.authorize(anna, pending.operation, PIN, OTP)
    assert [s.name for s in signed] == ["one.txt", "two.txt"] and fake.calls["signatures/signHash"] == 1
    assert _pending_rows(pki) == 0 and _signed_audit(pki) == 2


def test_a_stale_signing_operation_can_be_cancelled(fake: FakeCsc, remote_for: Any, pki: Pki) -> None:
    remote, anna = remote_for()
    pending = remote.start(anna, "anna", ORDER, "fake", "cred-1")
    assert not isinstance(pending, list)
    _as_if_a_worker_died(pki, pending.operation, datetime.now(UTC) - timedelta(seconds=1))
    remote.cancel(anna, pending.operation)
    assert _pending_rows(pki) == 0 and fake.calls["credentials/authorize"] == 0


def test_a_worker_whose_lease_ran_out_hands_out_nothing_once_another_took_over(
        fake: FakeCsc, remote_for: Any, pki: Pki) -> None:
    """The slow worker's signHash outlasts its lease; another authorisation takes the operation over and
    signs; the slow one finds its claim gone and hands out nothing: one signed result, one audit entry per
    document."""
    slow, anna = remote_for(lease=1.0)
    pending = slow.start(anna, "anna", ORDER, "fake", "cred-1")
    assert not isinstance(pending, list)
    fake.stalls = [3.0]
    outcome: list[object] = []

    def first() -> None:
        try:
            outcome.append(slow.authorize(anna, pending.operation, PIN, OTP))
        except SiegelError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=first)
    worker.start()
    time.sleep(1.5)  # the slow worker waits in signHash, its lease has run out
    taker, _ = remote_for()
    signed = taker.authorize(anna, pending.operation, PIN, OTP)
    worker.join(30)
    (lost,) = outcome
    assert isinstance(lost, SiegelError) and lost.code is Code.CONFLICT, lost
    assert "taken over by another authorisation" in lost.message and "nothing was signed here" in lost.message
    assert [s.name for s in signed] == ["one.txt", "two.txt"]
    assert fake.calls["signatures/signHash"] == 2  # the service signed for both; one result was handed out
    assert _pending_rows(pki) == 0 and _signed_audit(pki) == 2


def test_the_waiting_documents_are_encrypted_in_the_database(fake: FakeCsc, remote_for: Any, pki: Pki) -> None:
    content = b"Geheimvertrag-remote-at-rest " * 40
    order = SignOrder(Format.CADES, Level.B_B, Packaging.ENVELOPING, (Document("contract.txt", content=content),))
    remote, anna = remote_for()
    pending = remote.start(anna, "anna", order, "fake", "cred-1")
    assert not isinstance(pending, list)
    with pki.engine.connect() as conn:
        (row,) = conn.execute(select(RemoteOperation)).all()
    inside = StateSeal(INSTALLATION_KEY).open(row.id, row.states)
    assert base64.b64encode(content).decode() in inside  # the state does carry the document (enveloping)
    for shown in (content, base64.b64encode(content), content.hex().encode(), b"Geheimvertrag"):
        assert shown.decode() not in row.states
    with pytest.raises(SiegelError) as moved:  # the state is bound to its operation id
        StateSeal(INSTALLATION_KEY).open("another-operation", row.states)
    assert moved.value.code is Code.CONFLICT

    stranger, _ = remote_for(key=bytes(32))  # a worker with another installation key cannot read it
    with pytest.raises(SiegelError) as unreadable:
        stranger.authorize(anna, pending.operation, PIN, OTP)
    assert unreadable.value.code is Code.CONFLICT and "installation key" in unreadable.value.message
    assert fake.calls["credentials/authorize"] == 0 and _pending_rows(pki) == 0


def test_cades_enveloping_and_b_lta_are_prepared_remotely_and_a_digest_b_lta_is_refused_by_name(
        fake: FakeCsc, remote_for: Any) -> None:
    remote, anna = remote_for()
    content = b"enveloped content"
    enveloping = SignOrder(Format.CADES, Level.B_B, Packaging.ENVELOPING, (Document("e.txt", content=content),))
    (signed,) = remote.start(anna, "anna", enveloping, "fake", "cred-1", pin=PIN, otp=OTP)  # type: ignore[misc]
    assert content in signed.data and signed.mime_type.startswith("application/pkcs7-mime")
    digest_only = SignOrder(Format.CADES, Level.B_LTA, Packaging.DETACHED, (Document(
        "d.txt", digest=hashlib.sha256(content).digest(), digest_algorithm=ORDER.digest),))
    with pytest.raises(SiegelError) as refused:
        remote.start(anna, "anna", digest_only, "fake", "cred-1", pin=PIN, otp=OTP)
    assert refused.value.code is Code.NOT_SUPPORTED and "B-LTA over a digest alone" in refused.value.message


def test_an_oauth2code_credential_is_authorised_in_the_browser_for_exactly_its_hashes_and_signed_by_the_callback(
        fake: FakeCsc, remote_for: Any, pki: Pki) -> None:
    """authMode oauth2code: start answers an authorization URL (scope credential, the credential, numSignatures,
    the prepared hashes, PKCE S256, state = operation and nonce); neither credentials/authorize nor sendOTP is
    called (a PIN given is not used); a wrong nonce or a PIN authorisation is refused and the operation waits;
    the callback's code, exchanged with the sealed verifier, signs once; the state is spent."""
    fake.mode = "oauth2code"
    remote, anna = remote_for()
    before = _signed_audit(pki)
    pending = remote.start(anna, "anna", ORDER, "fake", "cred-1", pin=PIN, otp=OTP)
    assert not isinstance(pending, list) and pending.authorization_url and not pending.otp_sent
    with pki.engine.connect() as conn:
        (row,) = conn.execute(select(RemoteOperation)).all()
    page = fake.authorize_in_browser(pending.authorization_url)
    assert pending.authorization_url.startswith(fake.url + "/oauth2/authorize?")
    assert (page["scope"], page["credentialID"], page["numSignatures"], page["code_challenge_method"],
            page["redirect_uri"], page["response_type"]) == ("credential", "cred-1", "2", "S256", CALLBACK, "code")
    assert [base64.urlsafe_b64decode(h + "==").hex() for h in page["hashes"].split(",")] == json.loads(row.hashes)
    operation, _, nonce = page["state"].partition(".")
    assert operation == pending.operation and nonce and nonce not in row.states and len(page["code_challenge"]) == 43
    assert fake.calls["credentials/authorize"] == 0 and fake.calls["credentials/sendOTP"] == 0

    with pytest.raises(SiegelError) as forged:
        remote.complete_code(f"{operation}.not-the-nonce", page["code"])
    assert forged.value.code is Code.NOT_FOUND
    with pytest.raises(SiegelError) as by_pin:
        remote.authorize(anna, operation, PIN, OTP)
    assert by_pin.value.code is Code.BAD_REQUEST and "authorization URL" in by_pin.value.message
    assert _pending_rows(pki) == 1 and fake.calls["oauth2/token"] == 0

    signed = remote.complete_code(page["state"], page["code"])
    assert [s.name for s in signed] == ["one.txt", "two.txt"] and all(s.data[:1] == b"\x30" for s in signed)
    assert fake.calls["oauth2/token"] == 1 and fake.calls["signatures/signHash"] == 1 and not fake.tokens
    assert _pending_rows(pki) == 0 and _signed_audit(pki) == before + 2
    with pytest.raises(SiegelError) as again:
        remote.complete_code(page["state"], page["code"])
    assert again.value.code is Code.NOT_FOUND and fake.calls["signatures/signHash"] == 1


def test_an_oauth2code_operation_whose_code_is_refused_ends_and_a_wrong_value_under_the_token_is_refused(
        fake: FakeCsc, remote_for: Any, pki: Pki) -> None:
    fake.mode = "oauth2code"
    remote, anna = remote_for()
    pending = remote.start(anna, "anna", ORDER, "fake", "cred-1")
    assert not isinstance(pending, list) and pending.authorization_url
    state = fake.authorize_in_browser(pending.authorization_url)["state"]
    with pytest.raises(RemoteServiceError, match="invalid_grant: Authorization code is invalid or expired"):
        remote.complete_code(state, "a-code-the-service-never-issued")
    assert _pending_rows(pki) == 0 and fake.calls["signatures/signHash"] == 0

    fake.wrong_value = True
    pending = remote.start(anna, "anna", ORDER, "fake", "cred-1")
    assert not isinstance(pending, list) and pending.authorization_url
    page = fake.authorize_in_browser(pending.authorization_url)
    with pytest.raises(SiegelError) as caught:
        remote.complete_code(page["state"], page["code"])
    assert caught.value.code is Code.REMOTE_SIGNING_FAILED and "does not verify" in caught.value.message
    assert _pending_rows(pki) == 0 and fake.calls["signatures/signHash"] == 1
