"""Signing with a credential of a remote CSC service, as a two-phase operation kept in the database.

Phase 1 (:meth:`RemoteSigning.start`): every signature of the order is prepared by the two-step path of its
format engine (:meth:`server.signing.service.SigningService.prepare_unstored`, for the credential's
certificate chain), so the operation knows every digest before one is authorised. When the credential
wants an OTP the service sends it now (``credentials/sendOTP``); the prepared states, the digests, the
account, credential, level and expiry are stored in ``remote_operations`` (never the PIN or OTP; the states,
which hold the documents, sealed with AES-256-GCM under a key derived from the installation key
``twofactor.key_file``, the operation id as associated data) and the caller gets the operation id.

Phase 2 (:meth:`RemoteSigning.authorize`, on any worker, also after a restart): a conditional UPDATE moves
the operation from ``awaiting-otp`` to ``signing`` (so of concurrent authorisations one signs, the others
are refused) while it has not expired, with the worker's claim (``taker``) and a lease (``lease_until``),
renewed before each remote call and the assembly. A ``signing`` operation whose lease ran out (its worker
died) is taken over by the next authorisation or cancelled like a waiting one; a worker that finds its claim
gone stops before the next step, and only the claim's holder hands out documents and writes the audit
entries (the row's DELETE is conditional on the claim), so an operation is signed once at most. With the
user's PIN and OTP one ``credentials/authorize`` binds a
SAD to exactly these digests (SCAL2), one ``signatures/signHash`` signs them all; every value is verified
with the credential's certificate and every document assembled before any is handed out, and the row goes
in the transaction of the ``sign.<format>`` audit entries, so either every document is signed or none is.
A wrong PIN or OTP puts the operation back to ``awaiting-otp`` (the user may try again); any other failure,
a cancel or the expiry (``remote_signing.operation_minutes``) ends it. With PIN (and OTP) in the first
request, phase 2 follows at once without a row.

A credential whose ``authMode`` is ``oauth2code`` is authorised in the user's browser instead: phase 1 answers
an authorization URL of the service (OAuth2 authorization code with PKCE S256, scope ``credential`` for the
credential, ``numSignatures`` and exactly the prepared hashes); the PKCE verifier and the ``state`` nonce are
kept in the sealed state. The service redirects the browser to ``callback_url`` with ``code`` and ``state``
(``<operation id>.<nonce>``, so it binds the operation and, through the row, its user);
:meth:`RemoteSigning.complete_code` takes the operation as :meth:`RemoteSigning.authorize` does, exchanges
the code with the verifier and signs with the token of scope credential in place of a SAD: the same check
of every value, the same claim, lease and one transaction.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import ColumnElement, Engine, and_, delete, func, insert, or_, select, update

from adapters.remote_signing.client import CredentialInfo, CscClient, RemoteServiceError, pkce_pair
from server import metrics
from server.audit import AuditLog
from server.db.models import RemoteOperation
from server.errors import Code, SiegelError
from server.identity.users import utc
from server.signing.engines import Signed
from server.signing.keysource import DigestAlgorithm, SignatureScheme, ecdsa_raw_to_der
from server.signing.levels import Level
from server.signing.order import Format, SignOrder
from server.signing.two_step import PreparedOrder

AWAITING_OTP = "awaiting-otp"
OAUTH2CODE = "oauth2code"  # a credential's authMode: authorised in the user's browser at the service
SIGNING = "signing"


def lease_seconds(timeout_seconds: float, retries: int) -> float:
    """How long a signing worker's claim lasts without renewal: the longest step (a remote call with its
    retries, or the assembly's TSA and OCSP calls) twice, at least a minute."""
    return max(60.0, 2 * timeout_seconds * (retries + 1))


class StateSeal:
    """AES-256-GCM for the prepared states of waiting operations (they hold the documents), keyed from the
    installation key (``twofactor.key_file``), bound to the operation id."""

    def __init__(self, installation_key: bytes) -> None:
        self._aead = AESGCM(hashlib.sha256(b"siegel remote operation\0" + installation_key).digest())

    def seal(self, operation: str, text: str) -> str:
        nonce = secrets.token_bytes(12)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, text.encode("utf-8"), operation.encode())).decode()

    def open(self, operation: str, sealed: str) -> str:
        try:
            blob = base64.b64decode(sealed, validate=True)
            return self._aead.decrypt(blob[:12], blob[12:], operation.encode()).decode("utf-8")
        except (ValueError, binascii.Error, InvalidTag):
            raise SiegelError(Code.CONFLICT, f"remote signing operation {operation} cannot be read with this "
                                             "installation key (twofactor.key_file): the operation ends") from None


class TwoStepSigning(Protocol):
    """The part of :class:`server.signing.service.SigningService` remote signing uses."""

    def prepare_unstored(self, order: SignOrder, chain: tuple[bytes, ...]) -> PreparedOrder: ...

    def complete_unstored(self, state: dict[str, Any], value: bytes, level: Level,
                          password: str | None = None) -> Signed: ...

    def audit_entries(self, user_name: str, order: SignOrder, label: str) -> list[tuple[str, str, str, dict[str, object]]]: ...


def remote_key_label(account: str, credential: str) -> str:
    """The key label the signing service records (audit ``key_label``) for a remote credential."""
    return f"remote:{account}/{credential}"


def verify_digest_value(certificate_key: Any, digest: bytes, algorithm: DigestAlgorithm, value: bytes,
                        scheme: SignatureScheme) -> bytes | None:
    """``value`` as DER (ECDSA) or PKCS#1 v1.5 when it is the key's signature over ``digest``, else None.
    An ECDSA value given as raw ``r || s`` (as some services answer) is turned into DER first."""
    prehashed = utils.Prehashed(algorithm.hash())
    candidates = [value]
    if isinstance(certificate_key, ec.EllipticCurvePublicKey):
        size = (certificate_key.curve.key_size + 7) // 8
        if len(value) == 2 * size:
            candidates.append(ecdsa_raw_to_der(value))
    for candidate in candidates:
        try:
            if isinstance(certificate_key, ec.EllipticCurvePublicKey) and scheme is SignatureScheme.ECDSA:
                certificate_key.verify(candidate, digest, ec.ECDSA(prehashed))
            elif isinstance(certificate_key, rsa.RSAPublicKey) and scheme is SignatureScheme.RSA_PKCS1V15:
                certificate_key.verify(candidate, digest, padding.PKCS1v15(), prehashed)
            else:
                return None
            return candidate
        except (InvalidSignature, ValueError):
            continue
    return None


@dataclass(frozen=True)
class Pending:
    """Phase 1 done: the operation waits for the user's PIN and OTP."""

    operation: str
    account: str
    credential: str
    expires: datetime
    signatures: int
    otp_sent: bool  # the service sent a code (online OTP); else the user's app or token shows one
    authorization_url: str | None = None  # oauth2code: where the user's browser authorises the hashes


@dataclass(frozen=True)
class Prepared:
    """Everything phase 2 needs (what a ``remote_operations`` row holds): no PIN, no OTP."""

    account: str
    credential: str
    level: Level
    algorithm: DigestAlgorithm
    scheme: SignatureScheme
    sign_algo: str
    certificate: bytes  # DER: every value is verified with it before a document gets it
    hashes: tuple[bytes, ...]  # the digests to be signed, one per state
    states: tuple[dict[str, Any], ...]  # the prepared two-step states
    audit: tuple[tuple[str, str, str, dict[str, object]], ...]  # the sign.<format> entries, once signed
    code_flow: dict[str, str] | None = None  # oauth2code: the PKCE verifier, the state nonce, the redirect_uri

    def state_json(self) -> str:
        return json.dumps({"states": list(self.states), "audit": [list(a) for a in self.audit],
                           "signAlgo": self.sign_algo, "certificate": self.certificate.hex(),
                           "codeFlow": self.code_flow})

    @classmethod
    def from_row(cls, row: Any, seal: StateSeal) -> Prepared:
        data = json.loads(seal.open(row.id, row.states))
        return cls(row.account, row.credential_id, Level(row.level), DigestAlgorithm(row.hash_algorithm),
                   SignatureScheme(row.scheme), data["signAlgo"], bytes.fromhex(data["certificate"]),
                   tuple(bytes.fromhex(h) for h in json.loads(row.hashes)), tuple(data["states"]),
                   tuple((a, b, c, d) for a, b, c, d in data["audit"]), data.get("codeFlow"))


class RemoteSigning:
    """The remote accounts and the operations waiting (in ``remote_operations``) for a PIN and OTP."""

    def __init__(self, clients: dict[str, CscClient], signing: TwoStepSigning, engine: Engine, audit: AuditLog,
                 minutes: float, max_operations: int, installation_key: bytes, lease: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), callback_url: str = "") -> None:
        self._clients = clients
        self._signing = signing
        self._engine = engine
        self._audit = audit
        self._minutes = minutes
        self._max = max_operations
        self._seal = StateSeal(installation_key)
        self._lease = timedelta(seconds=lease)  # lease_seconds()
        self._clock = clock
        self._callback_url = callback_url  # the redirect_uri of oauth2code operations (GET .../remote/callback)

    @property
    def clients(self) -> dict[str, CscClient]:
        return self._clients

    def client_for(self, user_name: str, account: str) -> CscClient:
        client = self._clients.get(account)
        if client is None or (client.account.users and user_name not in client.account.users):
            raise SiegelError(Code.NOT_FOUND, f"no remote signing account {account!r} this account may use "
                                              "(see remote_signing.accounts_file)")
        return client

    def start(self, user_id: int, user_name: str, order: SignOrder, account: str, credential_id: str,
              pin: str | None = None, otp: str | None = None) -> Pending | list[Signed]:
        """Phase 1; with the PIN (and the OTP, when the credential needs one) given, phase 2 at once."""
        client = self.client_for(user_name, account)
        info = client.credential_info(credential_id)
        if info.key_status != "enabled" or info.certificate_status != "valid":
            raise SiegelError(Code.CONFLICT, f"credential {credential_id!r} of {account!r} cannot sign: key "
                                             f"{info.key_status}, certificate {info.certificate_status}")
        orders = [order] if order.format is Format.ASIC else [replace(order, documents=(d,)) for d in order.documents]
        if len(orders) > info.multisign:
            raise SiegelError(Code.BAD_REQUEST, f"credential {credential_id!r} signs at most {info.multisign} "
                                                f"documents per authorisation; this order has {len(orders)}")
        code_flow = info.auth_mode == OAUTH2CODE
        ready_now = not code_flow and bool(pin) and (bool(otp) or not info.needs_otp)
        if order.pdf.password is not None and not ready_now:
            raise SiegelError(Code.NOT_SUPPORTED, "an encrypted PDF is signed remotely in one request (PIN and OTP "
                                                  "with it): its password is never stored while an operation waits")
        prepared = self._prepare(user_name, orders, account, info)
        if ready_now:  # nothing to wait for: an error ends the operation, the caller has no id to retry with
            return self._sign(client, prepared, pin, otp, order.pdf.password)
        self._make_room()
        operation = secrets.token_urlsafe(24)
        url = None
        if code_flow:
            verifier, challenge = pkce_pair()
            nonce = secrets.token_urlsafe(24)
            prepared = replace(prepared, code_flow={"verifier": verifier, "nonce": nonce,
                                                    "redirect": self._callback_url})
            url = client.authorization_url(self._callback_url, f"{operation}.{nonce}", challenge,
                                           scope="credential", credential_id=credential_id,
                                           hashes=prepared.hashes, digest=prepared.algorithm)
        otp_sent = not code_flow and info.needs_otp and info.otp_type != "offline"
        if otp_sent:
            client.send_otp(credential_id)
        now = self._clock()
        expires = now + timedelta(minutes=self._minutes)
        with self._engine.begin() as conn:
            conn.execute(insert(RemoteOperation).values(
                id=operation, user_id=user_id, account=account, credential_id=credential_id, status=AWAITING_OTP,
                level=prepared.level.value, hash_algorithm=prepared.algorithm.value, scheme=prepared.scheme.value,
                hashes=json.dumps([h.hex() for h in prepared.hashes]),
                states=self._seal.seal(operation, prepared.state_json()),
                otp_sent=otp_sent, created_at=now, expires_at=expires))
        return Pending(operation, account, credential_id, expires, len(orders), otp_sent, url)

    def _prepare(self, user_name: str, orders: Sequence[SignOrder], account: str, info: CredentialInfo) -> Prepared:
        """Every order through its engine's two-step prepare for the credential's chain."""
        label = remote_key_label(account, info.credential_id)
        prepared = [self._signing.prepare_unstored(one, info.chain) for one in orders]
        algorithms = {p.digest for p in prepared}
        schemes = {p.scheme for p in prepared}
        if len(algorithms) != 1 or len(schemes) != 1:
            raise SiegelError(Code.NOT_SUPPORTED, "one remote authorisation covers hashes of one algorithm: "
                                                  "sign documents with different digest algorithms separately")
        algorithm, scheme = algorithms.pop(), schemes.pop()
        return Prepared(account, info.credential_id, orders[0].level, algorithm, scheme,
                        info.sign_algo(scheme, algorithm), info.chain[0], tuple(p.to_be_signed for p in prepared),
                        tuple(p.state for p in prepared),
                        tuple(e for one in orders for e in self._signing.audit_entries(user_name, one, label)))

    def remove_expired(self) -> None:
        """The scheduled job "remote-operations" (and every start): expired operations and their documents go."""
        with self._engine.begin() as conn:
            conn.execute(delete(RemoteOperation).where(RemoteOperation.expires_at <= self._clock()))

    def _make_room(self) -> None:
        """At most ``max_operations`` wait at once (across all workers)."""
        self.remove_expired()
        with self._engine.connect() as conn:
            waiting = conn.execute(select(func.count()).select_from(RemoteOperation)).scalar_one()
        if waiting >= self._max:
            raise SiegelError(Code.CONFLICT, f"{self._max} remote signing operations are waiting already; "
                                             "authorise or cancel one first")

    def authorize(self, user_id: int, operation_id: str, pin: str | None, otp: str | None) -> list[Signed]:
        """Phase 2: take the operation (once), authorise its digests, sign them, check every value, assemble."""
        def sign(client: CscClient, prepared: Prepared, claim: _Claim) -> list[Signed]:
            if prepared.code_flow is not None:
                raise _KeepWaiting(SiegelError(Code.BAD_REQUEST, f"remote signing operation {operation_id} is "
                                   "authorised in the browser at the service (its authorization URL), not with a "
                                   "PIN and OTP"))
            return self._sign(client, prepared, pin, otp, None, claim)

        return self._phase2(user_id, operation_id, sign)

    def complete_code(self, state: str, code: str) -> list[Signed]:
        """Phase 2 of an oauth2code operation, from the service's redirect: ``state`` names the operation (and
        through its row the user) and must carry its nonce; the code is exchanged with the PKCE verifier for a
        token of scope credential that signs exactly the prepared hashes."""
        operation_id, _, nonce = state.partition(".")
        with self._engine.connect() as conn:
            user_id = conn.execute(select(RemoteOperation.user_id)
                                   .where(RemoteOperation.id == operation_id)).scalar_one_or_none()
        if user_id is None or not nonce:
            raise SiegelError(Code.NOT_FOUND, "no remote signing operation waits for this state "
                                              "(finished, cancelled or expired)")

        def sign(client: CscClient, prepared: Prepared, claim: _Claim) -> list[Signed]:
            flow = prepared.code_flow
            if flow is None or not hmac.compare_digest(flow["nonce"], nonce):
                raise _KeepWaiting(SiegelError(Code.NOT_FOUND, "no remote signing operation waits for this "
                                               "state (finished, cancelled or expired)"))
            token = client.exchange_code(code, flow["verifier"], flow["redirect"], keep=False)
            self._renew(claim)
            return self._sign(client, prepared, None, None, None, claim, token)

        return self._phase2(user_id, operation_id, sign)

    def _phase2(self, user_id: int, operation_id: str,
                sign: Callable[[CscClient, Prepared, _Claim], list[Signed]]) -> list[Signed]:
        """Take the operation (once) and ``sign`` it under the claim; a wrong PIN, OTP or state lets it wait
        again, any other failure ends it."""
        row, claim = self._take(user_id, operation_id)
        try:
            prepared = Prepared.from_row(row, self._seal)
            client = self._clients.get(prepared.account)
            if client is None:
                raise SiegelError(Code.CONFLICT, f"remote signing account {prepared.account!r} is no longer "
                                                 "configured: the operation ends")
            signed = sign(client, prepared, claim)
        except _KeepWaiting as refused:
            self._release(claim)
            raise refused.error from None
        except _ClaimLost:
            raise SiegelError(Code.CONFLICT, f"remote signing operation {operation_id} was taken over by another "
                              "authorisation after this one's lease ran out, or ended: nothing was signed here") \
                from None
        except RemoteServiceError as exc:
            if exc.code is Code.BAD_REQUEST:  # wrong PIN or OTP: the user may try again
                self._release(claim)
            else:
                self._end(claim)
            raise
        except BaseException:
            self._end(claim)
            raise
        return signed

    def _sign(self, client: CscClient, prepared: Prepared, pin: str | None, otp: str | None,
              password: str | None, claim: _Claim | None = None, token: str | None = None) -> list[Signed]:
        """One SAD (or the ``token`` of scope credential in its place) and one signHash for all digests;
        every value verified, every document assembled, then the audit entries (and the operation's row
        going) in one transaction. With a ``claim`` (an operation's row) the lease is renewed before each
        step and the row goes only while the claim holds."""
        hashes = list(prepared.hashes)
        sad = None
        if token is None:
            sad = client.authorize(prepared.credential, hashes, prepared.algorithm, pin, otp)
            self._renew(claim)
        values = client.sign_hash(prepared.credential, sad, hashes, prepared.algorithm, prepared.sign_algo,
                                  credential_token=token)
        self._renew(claim)
        public = x509.load_der_x509_certificate(prepared.certificate).public_key()
        checked = []
        for number, (digest, value) in enumerate(zip(hashes, values, strict=True), 1):
            good = verify_digest_value(public, digest, prepared.algorithm, value, prepared.scheme)
            if good is None:
                raise SiegelError(Code.REMOTE_SIGNING_FAILED, f"remote signing service {prepared.account!r} returned "
                                  f"a signature value (#{number} of {len(hashes)}) that does not verify with the "
                                  f"certificate of credential {prepared.credential!r}: nothing was signed")
            checked.append(good)
        signed = [self._signing.complete_unstored(state, value, prepared.level, password)
                  for state, value in zip(prepared.states, checked, strict=True)]
        with self._engine.begin() as conn:
            if claim is not None and conn.execute(delete(RemoteOperation).where(*claim.holds())).rowcount != 1:
                raise _ClaimLost()
            self._audit.append_many_in(conn, list(prepared.audit))
        for state in prepared.states:
            metrics.SIGNATURES.labels(format=state["format"]).inc()
        return signed

    def cancel(self, user_id: int, operation_id: str) -> None:
        """The waiting operation (or one whose signing worker's lease ran out) ends; nothing is signed."""
        with self._engine.begin() as conn:
            gone = conn.execute(delete(RemoteOperation).where(
                RemoteOperation.id == operation_id, RemoteOperation.user_id == user_id,
                self._takeable(self._clock()))).rowcount
        if gone != 1:
            self._refusal(user_id, operation_id)

    # --- the row's state ----------------------------------------------------------------------------

    @staticmethod
    def _takeable(now: datetime) -> ColumnElement[bool]:
        """Waiting for the PIN and OTP, or ``signing`` by a worker whose lease ran out (it died)."""
        return or_(RemoteOperation.status == AWAITING_OTP,
                   and_(RemoteOperation.status == SIGNING, RemoteOperation.lease_until <= now))

    def _take(self, user_id: int, operation_id: str) -> tuple[Any, _Claim]:
        """The caller's unexpired operation, now ``signing`` under this worker's new claim (a conditional
        UPDATE: one taker), and the claim."""
        now = self._clock()
        claim = _Claim(operation_id, secrets.token_urlsafe(16))
        with self._engine.begin() as conn:
            taken = conn.execute(update(RemoteOperation).where(
                RemoteOperation.id == operation_id, RemoteOperation.user_id == user_id, self._takeable(now),
                RemoteOperation.expires_at > now)
                .values(status=SIGNING, taker=claim.taker, lease_until=now + self._lease)).rowcount
            row = conn.execute(select(RemoteOperation).where(RemoteOperation.id == operation_id)).first() \
                if taken == 1 else None
        if row is None:
            self._refusal(user_id, operation_id)
        return row, claim

    def _renew(self, claim: _Claim | None) -> None:
        """The heartbeat before each step: the lease extended while the claim holds, else :class:`_ClaimLost`."""
        if claim is None:
            return
        with self._engine.begin() as conn:
            if conn.execute(update(RemoteOperation).where(*claim.holds())
                            .values(lease_until=self._clock() + self._lease)).rowcount != 1:
                raise _ClaimLost()

    def _refusal(self, user_id: int, operation_id: str) -> None:
        """Why the operation cannot be taken: unknown (404), expired (409, and it goes) or being signed (409)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(RemoteOperation.user_id, RemoteOperation.status, RemoteOperation.expires_at,
                                      RemoteOperation.lease_until).where(RemoteOperation.id == operation_id)).first()
        if row is None or row.user_id != user_id:
            raise SiegelError(Code.NOT_FOUND, "no remote signing operation with this id for this account "
                                              "(finished, cancelled or expired)")
        expires = utc(row.expires_at)
        assert expires is not None
        if expires <= self._clock():
            self._drop(operation_id)
            raise SiegelError(Code.CONFLICT, f"remote signing operation {operation_id} expired at "
                                             f"{expires.isoformat(timespec='seconds')} without PIN and OTP")
        lease = utc(row.lease_until)
        until = f" (its lease runs until {lease.isoformat(timespec='seconds')}; should that worker have died, " \
                "authorise again after that)" if lease is not None else ""
        raise SiegelError(Code.CONFLICT, f"remote signing operation {operation_id} is {row.status}: another "
                                         f"authorisation of it is under way{until}")

    def _release(self, claim: _Claim) -> None:
        """Back to ``awaiting-otp`` (a wrong PIN or OTP), while the claim holds."""
        with self._engine.begin() as conn:
            conn.execute(update(RemoteOperation).where(*claim.holds())
                         .values(status=AWAITING_OTP, taker=None, lease_until=None))

    def _end(self, claim: _Claim) -> None:
        """The claimed operation ends (a failure while it held)."""
        with self._engine.begin() as conn:
            conn.execute(delete(RemoteOperation).where(*claim.holds()))

    def _drop(self, operation_id: str) -> None:
        """An expired operation ends, whatever its state."""
        with self._engine.begin() as conn:
            conn.execute(delete(RemoteOperation).where(RemoteOperation.id == operation_id))


@dataclass(frozen=True)
class _Claim:
    """A worker's hold on an operation it signs: the ``taker`` it wrote into the row."""

    operation: str
    taker: str

    def holds(self) -> tuple[ColumnElement[bool], ...]:
        """The row is still ``signing`` under this claim."""
        return (RemoteOperation.id == self.operation, RemoteOperation.status == SIGNING,
                RemoteOperation.taker == self.taker)


class _KeepWaiting(Exception):
    """A refusal that leaves the operation waiting (a callback's state without its nonce, a PIN for an
    oauth2code operation): ``error`` is what the caller gets."""

    def __init__(self, error: SiegelError) -> None:
        super().__init__(error.message)
        self.error = error


class _ClaimLost(Exception):
    """Another worker took the operation over (this worker's lease ran out), or it ended meanwhile."""
