"""Signing with a credential of a remote CSC service, as a two-phase operation.

Phase 1 (:meth:`RemoteSigning.start`): every signature of the order is prepared by its format engine, each
in a thread of its own, through the one :class:`server.signing.service.SigningService` path; the engines ask
the operation (a :class:`KeySource`) for the signature values and wait there, so the operation learns every
hash before one is authorised. When the credential wants an OTP the service sends it now
(``credentials/sendOTP``) and the caller gets the operation id.

Phase 2 (:meth:`RemoteSigning.authorize`): with the user's PIN and OTP one ``credentials/authorize`` binds a
SAD to exactly these hashes (SCAL2), one ``signatures/signHash`` signs them all; every value is verified with
the credential's certificate before any engine gets one, so either every document is signed or none is. A
wrong PIN or OTP leaves the operation waiting (the user may try again); an expired or cancelled operation
releases its engines with an error. Operations and their documents live in the memory of the worker that
started them, never in the database, for at most ``remote_signing.operation_minutes``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from adapters.remote_signing.client import CredentialInfo, CscClient, RemoteServiceError
from server.errors import Code, SiegelError
from server.signing.cades import SigningKey
from server.signing.engines import Signed
from server.signing.keysource import DigestAlgorithm, SignatureScheme, check_digest, ecdsa_raw_to_der
from server.signing.order import Format, SignOrder

SignWith = Callable[[int, str, SignOrder, SigningKey], list[Signed]]
"""How an order is signed with a given key: SigningService.sign(user_id, user_name, order, key=...)."""

AWAITING_OTP = "awaiting-otp"
SIGNING = "signing"


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


@dataclass
class _Slot:
    """One signature an engine waits for."""

    digest: bytes
    algorithm: DigestAlgorithm
    scheme: SignatureScheme
    done: threading.Event = field(default_factory=threading.Event)
    value: bytes | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Pending:
    """Phase 1 done: the operation waits for the user's PIN and OTP."""

    operation: str
    account: str
    credential: str
    expires: datetime
    signatures: int
    otp_sent: bool  # the service sent a code (online OTP); else the user's app or token shows one


class RemoteOperation:
    """A :class:`KeySource` for one order: it collects the engines' digests and answers them all at once."""

    def __init__(self, operation_id: str, user_id: int, account: str, client: CscClient, credential: CredentialInfo,
                 expected: int, minutes: float) -> None:
        self.id = operation_id
        self.user_id = user_id
        self.account = account
        self.client = client
        self.credential = credential
        self.expected = expected
        self.deadline = time.monotonic() + minutes * 60
        self.expires = datetime.now(UTC) + timedelta(minutes=minutes)
        self.state = "preparing"
        self.cond = threading.Condition()
        self.slots: list[_Slot] = []
        self.failure: BaseException | None = None
        self.threads: list[threading.Thread] = []
        self.results: dict[int, list[Signed]] = {}
        self.errors: list[BaseException] = []

    # --- the KeySource the engines see -----------------------------------------------------------

    def certificate_chain(self, key_label: str) -> list[bytes]:
        return list(self.credential.chain)

    def sign_digest(self, key_label: str, digest: bytes, digest_algorithm: DigestAlgorithm | str,
                    scheme: SignatureScheme) -> bytes:
        slot = _Slot(digest, check_digest(digest, digest_algorithm), scheme)
        with self.cond:
            if self.failure is not None:
                raise self.failure
            if len(self.slots) >= self.expected:
                raise SiegelError(Code.INTERNAL, "the order asked for more signatures than it announced")
            self.slots.append(slot)
            self.cond.notify_all()
        if not slot.done.wait(max(self.deadline - time.monotonic(), 0.0)):
            self.fail(SiegelError(Code.CONFLICT, f"remote signing operation {self.id} expired at "
                                                 f"{self.expires.isoformat(timespec='seconds')} without PIN and OTP"))
        if slot.error is not None:
            raise slot.error
        assert slot.value is not None
        return slot.value

    # --- the operation ---------------------------------------------------------------------------

    def fail(self, error: BaseException) -> None:
        """Release every waiting engine with ``error``; nothing gets a signature value afterwards."""
        with self.cond:
            if self.failure is None:
                self.failure = error
            for slot in self.slots:
                if not slot.done.is_set():
                    slot.error = self.failure
                    slot.done.set()
            self.cond.notify_all()

    def run(self, index: int, work: Callable[[], list[Signed]]) -> None:
        """An engine thread's body: its results, or the error that ends the whole operation."""
        try:
            result = work()
            with self.cond:
                self.results[index] = result
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of start/authorize
            with self.cond:
                self.errors.append(exc)
            self.fail(exc)
        finally:
            with self.cond:
                self.cond.notify_all()

    def _alive(self) -> int:
        return sum(t.is_alive() for t in self.threads)

    def wait_prepared(self) -> None:
        """Until every engine waits for its value; an engine's error (a broken PDF ...) is raised."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.slots) == self.expected or self.failure is not None
                               or self._alive() == 0, timeout=max(self.deadline - time.monotonic(), 0.0))
            ready = len(self.slots) == self.expected and self.failure is None
        if not ready:
            self.fail(SiegelError(Code.INTERNAL, "the signatures could not be prepared"))
            self.join()
            raise self.first_error()

    def first_error(self) -> BaseException:
        return self.errors[0] if self.errors else self.failure or SiegelError(Code.INTERNAL, "remote signing failed")

    def join(self) -> None:
        for thread in self.threads:
            thread.join(max(self.deadline - time.monotonic(), 0.0) + 60.0)

    def hashes(self) -> tuple[list[bytes], DigestAlgorithm, SignatureScheme]:
        algorithms = {s.algorithm for s in self.slots}
        schemes = {s.scheme for s in self.slots}
        if len(algorithms) != 1 or len(schemes) != 1:
            raise SiegelError(Code.NOT_SUPPORTED, "one remote authorisation covers hashes of one algorithm: "
                                                  "sign documents with different digest algorithms separately")
        return [s.digest for s in self.slots], algorithms.pop(), schemes.pop()

    def deliver(self, values: Sequence[bytes]) -> None:
        """Hand every engine its (verified) value at once."""
        with self.cond:
            for slot, value in zip(self.slots, values, strict=True):
                slot.value = value
                slot.done.set()


class RemoteSigning:
    """The remote accounts of this worker and their waiting operations."""

    def __init__(self, clients: dict[str, CscClient], sign: SignWith, minutes: float, max_operations: int) -> None:
        self._clients = clients
        self._sign = sign
        self._minutes = minutes
        self._max = max_operations
        self._lock = threading.Lock()
        self._operations: dict[str, RemoteOperation] = {}

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
        op = self._register(user_id, account, client, info, len(orders))
        key = SigningKey(op, remote_key_label(account, credential_id), info.chain)  # type: ignore[arg-type]
        for index, one in enumerate(orders):
            thread = threading.Thread(target=op.run, name=f"remote-sign-{op.id[:8]}-{index}", daemon=True,
                                      args=(index, lambda one=one: self._sign(user_id, user_name, one, key)))
            op.threads.append(thread)
            thread.start()
        try:
            op.wait_prepared()
            op.hashes()
            ready_now = bool(pin) and (bool(otp) or not info.needs_otp)
            if not ready_now and info.needs_otp and info.otp_type != "offline":
                client.send_otp(credential_id)
        except BaseException as exc:
            self._drop(op, exc)
            raise
        op.state = AWAITING_OTP
        if ready_now:  # nothing to wait for: an error ends the operation, the caller has no id to retry with
            try:
                return self.authorize(user_id, op.id, pin, otp)
            except BaseException as exc:
                self._drop(op, exc)
                raise
        return Pending(op.id, account, credential_id, op.expires, len(orders),
                       info.needs_otp and info.otp_type != "offline")

    def authorize(self, user_id: int, operation_id: str, pin: str | None, otp: str | None) -> list[Signed]:
        """Phase 2: authorise the collected hashes, sign them, check every value, let the engines assemble."""
        op = self._take(user_id, operation_id)
        try:
            hashes, algorithm, scheme = op.hashes()
            info = op.credential
            try:
                sad = op.client.authorize(info.credential_id, hashes, algorithm, pin, otp)
            except RemoteServiceError as exc:
                if exc.code is Code.BAD_REQUEST:  # wrong PIN or OTP: the user may try again
                    op.state = AWAITING_OTP
                raise
            values = op.client.sign_hash(info.credential_id, sad, hashes, algorithm, info.sign_algo(scheme, algorithm))
            public = info.certificate.public_key()
            checked = []
            for number, (digest, value) in enumerate(zip(hashes, values, strict=True), 1):
                good = verify_digest_value(public, digest, algorithm, value, scheme)
                if good is None:
                    raise SiegelError(Code.REMOTE_SIGNING_FAILED, f"remote signing service {op.account!r} returned a "
                                      f"signature value (#{number} of {len(hashes)}) that does not verify with the "
                                      f"certificate of credential {info.credential_id!r}: nothing was signed")
                checked.append(good)
        except BaseException as exc:
            if op.state != AWAITING_OTP:
                self._drop(op, exc)
            raise
        op.deliver(checked)
        op.join()
        with self._lock:
            self._operations.pop(op.id, None)
        if op.errors or len(op.results) != op.expected:
            raise op.first_error()
        return [s for index in sorted(op.results) for s in op.results[index]]

    def cancel(self, user_id: int, operation_id: str) -> None:
        op = self._take(user_id, operation_id)
        self._drop(op, SiegelError(Code.CONFLICT, f"remote signing operation {operation_id} was cancelled"))

    # --- bookkeeping ------------------------------------------------------------------------------

    def _register(self, user_id: int, account: str, client: CscClient, info: CredentialInfo,
                  expected: int) -> RemoteOperation:
        with self._lock:
            for stale in [o for o in self._operations.values() if o.deadline <= time.monotonic()]:
                self._operations.pop(stale.id, None)
            if len(self._operations) >= self._max:
                raise SiegelError(Code.CONFLICT, f"{self._max} remote signing operations are waiting already; "
                                                 "authorise or cancel one first")
            op = RemoteOperation(secrets.token_urlsafe(24), user_id, account, client, info, expected, self._minutes)
            self._operations[op.id] = op
        return op

    def _take(self, user_id: int, operation_id: str) -> RemoteOperation:
        """The caller's waiting operation, now marked as signing (one authorisation at a time)."""
        with self._lock:
            op = self._operations.get(operation_id)
            if op is None or op.user_id != user_id:
                raise SiegelError(Code.NOT_FOUND, "no remote signing operation with this id for this account "
                                                  "(finished, cancelled, expired, or started on another worker)")
            if op.deadline <= time.monotonic():
                self._operations.pop(operation_id, None)
                expired = True
            elif op.state != AWAITING_OTP:
                raise SiegelError(Code.CONFLICT, f"remote signing operation {operation_id} is {op.state}")
            else:
                expired = False
                op.state = SIGNING
        if expired:
            error = SiegelError(Code.CONFLICT, f"remote signing operation {operation_id} expired at "
                                               f"{op.expires.isoformat(timespec='seconds')}")
            self._drop(op, error)
            raise error
        return op

    def _drop(self, op: RemoteOperation, error: BaseException) -> None:
        op.fail(error)
        op.join()
        with self._lock:
            self._operations.pop(op.id, None)
