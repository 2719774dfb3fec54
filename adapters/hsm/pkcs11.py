"""Siegel's keys in a PKCS#11 token: generation, signing of digests, certificates (python-pkcs11 0.10).

Two properties of PKCS#11 shape this module:

- Threads. python-pkcs11 initialises a module with ``C_Initialize(NULL)``, which promises the module
  a single-threaded caller; SoftHSM2 then switches its internal locks off. The session pool signs
  from many threads, so the module is initialised again, once per process, with CKF_OS_LOCKING_OK;
  a module that answers CKR_CANT_LOCK keeps the plain initialisation and every call is serialised.
- Login. Login belongs to the process and the token, not to a session: one ``C_Login`` logs in every
  session of the process on that token (a second answers CKR_USER_ALREADY_LOGGED_IN, SoftHSM2 without
  looking at the PIN), and the token logs the process out when its last session there closes.
  python-pkcs11's ``Token.open(user_pin=...)`` logs in per session and logs the whole process out
  when that session closes, so the pool opens sessions without a PIN and logs in once itself; a
  further :class:`Pkcs11Hsm` on a token this process is logged in to must bring the same PIN.

All PKCS#11 use of a process should go through this module (a second library user would break both
assumptions). The private keys never leave the token: CKA_SENSITIVE=true, CKA_EXTRACTABLE=false.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import hmac
import os
import queue
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pkcs11
from asn1crypto.core import Integer, OctetString
from asn1crypto.keys import ECDomainParameters
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from pkcs11 import Attribute, CertificateType, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.util.ec import encode_named_curve_parameters

from server.errors import Code, SiegelError
from server.signing.keysource import (DigestAlgorithm, KeyKind, SignatureScheme, check_digest, digest_info,
                                      ecdsa_raw_to_der)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

SESSION_WAIT_SECONDS = 30.0  # longest wait for a free pooled session before the HSM counts as unavailable

_KINDS: dict[KeyKind, tuple[KeyType, int, str]] = {
    KeyKind.RSA_3072: (KeyType.RSA, 3072, ""),
    KeyKind.RSA_4096: (KeyType.RSA, 4096, ""),
    KeyKind.EC_P256: (KeyType.EC, 256, "secp256r1"),
    KeyKind.EC_P384: (KeyType.EC, 384, "secp384r1"),
}
_CURVES: dict[str, tuple[str, ec.EllipticCurve]] = {
    "secp256r1": ("p256", ec.SECP256R1()),
    "secp384r1": ("p384", ec.SECP384R1()),
    "secp521r1": ("p521", ec.SECP521R1()),
}
_PSS: dict[DigestAlgorithm, tuple[Mechanism, pkcs11.MGF]] = {
    DigestAlgorithm.SHA256: (Mechanism.SHA256, pkcs11.MGF.SHA256),
    DigestAlgorithm.SHA384: (Mechanism.SHA384, pkcs11.MGF.SHA384),
    DigestAlgorithm.SHA512: (Mechanism.SHA512, pkcs11.MGF.SHA512),
}
# Failures of the device, the token or the session, as opposed to a refused request.
_GONE = (p11e.DeviceError, p11e.DeviceMemory, p11e.DeviceRemoved, p11e.TokenNotPresent, p11e.TokenNotRecognised,
         p11e.SessionClosed, p11e.SessionHandleInvalid, p11e.SessionCount, p11e.GeneralError, p11e.FunctionFailed)


@dataclass(frozen=True)
class KeyInfo:
    """A private key on the token."""

    label: str
    kind: str  # "rsa-3072", "ec-p256", ... (also for sizes and curves Siegel does not generate)
    key_type: str  # "RSA" or "EC"
    size: int  # modulus or curve bits
    key_id: bytes
    extractable: bool
    sensitive: bool


def key_id(label: str) -> bytes:
    """CKA_ID of a key pair and its certificates: the first 20 bytes of SHA-256 of the label."""
    return hashlib.sha256(label.encode()).digest()[:20]


# --- the module's own function list, for the calls python-pkcs11 0.10 does not offer ---------------

_CKR_OK, _CKR_CANT_LOCK, _CKR_USER_ALREADY_LOGGED_IN = 0x0, 0xA, 0x100
_CKF_OS_LOCKING_OK, _CKU_USER = 0x2, 1
_CKS_USER_FUNCTIONS = (1, 3)  # CKS_RO_USER_FUNCTIONS, CKS_RW_USER_FUNCTIONS
_LOGIN_ERRORS = {
    0xA0: "the user PIN for token {label!r} is wrong",
    0xA1: "the user PIN for token {label!r} is wrong (characters the token does not accept)",
    0xA2: "the user PIN for token {label!r} is wrong (its length is out of the token's range)",
    0xA3: "the user PIN of token {label!r} has expired; set a new one with the token's tools",
    0xA4: "the user PIN of token {label!r} is locked after too many wrong attempts; the security officer must unlock it",
    0x102: "token {label!r} has no user PIN yet; initialise it with the token's tools",
    0x104: "token {label!r} is in use by its security officer in this process; no user login possible",
}
_CK_ULONG = ctypes.c_ulong
_CK_RV = ctypes.c_ulong
_FUNCTIONS = ("C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList", "C_GetSlotInfo",
              "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo", "C_InitToken", "C_InitPIN", "C_SetPIN",
              "C_OpenSession", "C_CloseSession", "C_CloseAllSessions", "C_GetSessionInfo", "C_GetOperationState",
              "C_SetOperationState", "C_Login")


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


class _FunctionList(ctypes.Structure):
    _fields_ = [("version", _Version)] + [(name, ctypes.c_void_p) for name in _FUNCTIONS]


class _InitArgs(ctypes.Structure):
    _fields_ = [("CreateMutex", ctypes.c_void_p), ("DestroyMutex", ctypes.c_void_p), ("LockMutex", ctypes.c_void_p),
                ("UnlockMutex", ctypes.c_void_p), ("flags", _CK_ULONG), ("pReserved", ctypes.c_void_p)]


class _SessionInfo(ctypes.Structure):
    _fields_ = [("slotID", _CK_ULONG), ("state", _CK_ULONG), ("flags", _CK_ULONG), ("ulDeviceError", _CK_ULONG)]


class _Cryptoki:
    """C_Initialize with locking, C_Login and C_GetSessionInfo, straight from the module (ctypes)."""

    def __init__(self, path: str) -> None:
        self._dll = ctypes.CDLL(path)  # the same mapping python-pkcs11 loaded; ctypes never unmaps it
        table = ctypes.POINTER(_FunctionList)()
        self._dll.C_GetFunctionList.restype = _CK_RV
        rv = self._dll.C_GetFunctionList(ctypes.byref(table))
        if rv != _CKR_OK:
            raise SiegelError(Code.HSM_UNAVAILABLE, f"PKCS#11 module {path} has no function list (CK_RV {rv:#x})")
        f = table.contents
        self._initialize = ctypes.CFUNCTYPE(_CK_RV, ctypes.c_void_p)(f.C_Initialize)
        self._finalize = ctypes.CFUNCTYPE(_CK_RV, ctypes.c_void_p)(f.C_Finalize)
        self._login = ctypes.CFUNCTYPE(_CK_RV, _CK_ULONG, _CK_ULONG, ctypes.c_char_p, _CK_ULONG)(f.C_Login)
        self._session_info = ctypes.CFUNCTYPE(_CK_RV, _CK_ULONG, ctypes.POINTER(_SessionInfo))(f.C_GetSessionInfo)

    def initialize_for_threads(self) -> bool:
        """Initialise the (fresh, session-less) module again, now with OS locking; False if it cannot lock."""
        self._finalize(None)
        rv = self._initialize(ctypes.byref(_InitArgs(flags=_CKF_OS_LOCKING_OK)))
        if rv == _CKR_CANT_LOCK:
            rv = self._initialize(None)
            if rv == _CKR_OK:
                return False
        if rv != _CKR_OK:
            raise SiegelError(Code.HSM_UNAVAILABLE, f"PKCS#11 module cannot be initialised (CK_RV {rv:#x})")
        return True

    def login(self, session_handle: int, pin: str) -> int:
        """C_Login as the user; the CK_RV."""
        data = pin.encode()
        return int(self._login(session_handle, _CKU_USER, data, len(data)))

    def session_state(self, session_handle: int) -> tuple[int, int]:
        """(CK_RV, session state) of C_GetSessionInfo."""
        info = _SessionInfo()
        return int(self._session_info(session_handle, ctypes.byref(info))), int(info.state)


# --- what the process shares between Pkcs11Hsm instances -------------------------------------------

@dataclass
class _Module:
    lib: Any
    cryptoki: _Cryptoki
    guard: contextlib.AbstractContextManager[Any]  # a Lock when the module cannot lock itself
    users: int = 0
    logins: dict[int, bytes] = field(default_factory=dict)  # slot id -> keyed hash of the PIN
    login_users: dict[int, int] = field(default_factory=dict)


_modules: dict[str, _Module] = {}
_registry_lock = threading.Lock()
_PIN_KEY = secrets.token_bytes(32)


def _pin_hash(pin: str) -> bytes:
    return hmac.new(_PIN_KEY, pin.encode(), hashlib.sha256).digest()


def _open_module(path: str) -> _Module:
    """The process's handle on the module at ``path``, loading and initialising it on first use."""
    module = _modules.get(path)
    if module is None:
        if not os.path.isfile(path):
            raise SiegelError(Code.HSM_UNAVAILABLE, f"PKCS#11 module {path} does not exist")
        try:
            lib = pkcs11.lib(path)
        except p11e.PKCS11Error as exc:
            hint = f" (SOFTHSM2_CONF={os.environ['SOFTHSM2_CONF']})" if "SOFTHSM2_CONF" in os.environ else ""
            raise SiegelError(Code.HSM_UNAVAILABLE,
                              f"PKCS#11 module {path} cannot be loaded{hint}: {type(exc).__name__} {exc}".rstrip()) from None
        cryptoki = _Cryptoki(path)
        locking = cryptoki.initialize_for_threads()
        module = _Module(lib, cryptoki, contextlib.nullcontext() if locking else threading.Lock())
        _modules[path] = module
    module.users += 1
    return module


def _close_module(path: str, module: _Module) -> None:
    module.users -= 1
    if module.users == 0:
        del _modules[path]
        pkcs11.unload(path)  # C_Finalize: the next user starts afresh (re-reads SOFTHSM2_CONF, reconnects)


# --- the adapter -------------------------------------------------------------------------------------

@dataclass
class _Lease:
    """A pooled session and the private keys already looked up on it."""

    session: Any
    keys: dict[str, Any] = field(default_factory=dict)
    generation: int = 0  # the Pkcs11Hsm's key generation ``keys`` were looked up in


class Pkcs11Hsm:
    """One token of a PKCS#11 module, with a pool of logged-in sessions; implements ``KeySource``."""

    def __init__(self, module: str, token_label: str, user_pin: str, pool_size: int = 4) -> None:
        if pool_size < 1:
            raise SiegelError(Code.CONFIG, f"the PKCS#11 session pool needs at least 1 session, not {pool_size}")
        self.module = module
        self.token_label = token_label
        self._pool: queue.Queue[_Lease] = queue.Queue()
        self._pool_size = 0
        self._logged_in = False
        self._write_lock = threading.Lock()  # check-then-create of keys and certificates
        self._generation = 0  # counts the keys made here; sessions' looked-up keys are of one generation
        self.lost = False  # the token stopped answering: only a fresh module initialisation reaches it again
        with _registry_lock:
            self._module = _open_module(module)
            self._holds_module = True
            try:
                self._token = self._find_token()
                self._slot = self._token.slot.slot_id
                for _ in range(pool_size):
                    self._pool.put(_Lease(self._guarded(lambda: self._token.open(rw=True))))
                    self._pool_size += 1
                self._login(user_pin)
            except BaseException:
                self._release()
                raise

    def _find_token(self) -> Any:
        try:
            return self._module.lib.get_token(token_label=self.token_label)
        except p11e.NoSuchToken:
            labels = ", ".join(repr(t.label) for t in self._module.lib.get_tokens()) or "none"
            raise SiegelError(Code.HSM_UNAVAILABLE, f"no token labelled {self.token_label!r} in PKCS#11 module "
                                                    f"{self.module} (tokens there: {labels})") from None
        except p11e.MultipleTokensReturned:
            raise SiegelError(Code.HSM_UNAVAILABLE, f"several tokens labelled {self.token_label!r} in PKCS#11 "
                                                    f"module {self.module}") from None
        except p11e.PKCS11Error as exc:
            raise self._unavailable(exc) from None

    def _login(self, pin: str) -> None:
        """Log the process in, or join its login when the PIN is the one it logged in with."""
        digest = _pin_hash(pin)
        known = self._module.logins.get(self._slot)
        if known is None:
            if pkcs11.TokenFlag.USER_PIN_LOCKED & self._token.flags:
                raise SiegelError(Code.HSM_LOGIN, _LOGIN_ERRORS[0xA4].format(label=self.token_label))
            lease = self._pool.get_nowait()
            try:
                rv = self._guarded(lambda: self._module.cryptoki.login(lease.session.handle, pin))
            finally:
                self._pool.put(lease)
            if rv in _LOGIN_ERRORS:
                raise SiegelError(Code.HSM_LOGIN, _LOGIN_ERRORS[rv].format(label=self.token_label))
            if rv not in (_CKR_OK, _CKR_USER_ALREADY_LOGGED_IN):  # the latter: logged in outside this module
                raise SiegelError(Code.HSM_UNAVAILABLE, f"login to token {self.token_label!r} of PKCS#11 module "
                                                        f"{self.module} failed (CK_RV {rv:#x})")
            self._module.logins[self._slot] = digest
        elif not hmac.compare_digest(known, digest):
            raise SiegelError(Code.HSM_LOGIN, f"the user PIN for token {self.token_label!r} is wrong (it is not "
                                              "the PIN this process is logged in with)")
        self._module.login_users[self._slot] = self._module.login_users.get(self._slot, 0) + 1
        self._logged_in = True

    def _guarded(self, call: Any) -> Any:
        with self._module.guard:
            return call()

    def _unavailable(self, exc: BaseException) -> SiegelError:
        self.lost = True
        return SiegelError(Code.HSM_UNAVAILABLE, f"token {self.token_label!r} of PKCS#11 module {self.module} "
                                                 f"does not answer: {type(exc).__name__} {exc}".rstrip())

    @contextlib.contextmanager
    def _lease(self) -> Iterator[_Lease]:
        """A pooled session for one operation; PKCS#11 failures become SiegelError."""
        if self._pool_size == 0:
            raise SiegelError(Code.HSM_UNAVAILABLE, f"the connection to token {self.token_label!r} is closed")
        try:
            lease = self._pool.get(timeout=SESSION_WAIT_SECONDS)
        except queue.Empty:
            raise SiegelError(Code.HSM_UNAVAILABLE, f"all {self._pool_size} sessions to token {self.token_label!r} "
                                                    f"stayed busy for {SESSION_WAIT_SECONDS:.0f} s") from None
        try:
            with self._module.guard:
                yield lease
        except SiegelError:
            raise
        except _GONE as exc:
            raise self._unavailable(exc) from None
        except p11e.UserNotLoggedIn:
            raise SiegelError(Code.HSM_LOGIN, f"token {self.token_label!r} is no longer logged in") from None
        except p11e.PKCS11Error as exc:
            raise SiegelError(Code.INTERNAL, f"token {self.token_label!r} refused the operation: "
                                             f"{type(exc).__name__} {exc}".rstrip()) from None
        finally:
            self._pool.put(lease)

    def _private_key(self, lease: _Lease, label: str) -> Any:
        if lease.generation != self._generation:  # a key was made since: a label may name another key now
            lease.keys.clear()
            lease.generation = self._generation
        key = lease.keys.get(label)
        if key is None:
            found = list(lease.session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label}))
            if not found:
                self._token.slot.get_token()  # a token whose store went away finds nothing: GeneralError here
                raise SiegelError(Code.KEY_NOT_FOUND, f"no private key labelled {label!r} on token {self.token_label!r}")
            if len(found) > 1:
                raise SiegelError(Code.CONFLICT, f"several private keys are labelled {label!r} on token "
                                                 f"{self.token_label!r}")
            key = lease.keys[label] = found[0]
        return key

    def _exists(self, session: Any, label: str) -> bool:
        return any(True for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY)
                   for _ in session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: label}))

    def has_key(self, label: str) -> bool:
        """Whether a private or public key object is labelled ``label``."""
        with self._lease() as lease:
            return self._exists(lease.session, label)

    def generate_key(self, label: str, kind: KeyKind) -> PublicKey:
        """Generate a key pair of ``kind`` that never leaves the token; its public key."""
        if not label:
            raise SiegelError(Code.BAD_REQUEST, "a key needs a label")
        if kind not in set(KeyKind):
            raise SiegelError(Code.BAD_REQUEST, f"unknown key kind {kind!r} (known: {', '.join(KeyKind)})")
        key_type, bits, curve = _KINDS[KeyKind(kind)]
        options: dict[str, Any] = {
            "id": key_id(label), "label": label, "store": True,
            "capabilities": MechanismFlag.SIGN | MechanismFlag.VERIFY,
            "public_template": {Attribute.TOKEN: True, Attribute.PRIVATE: False},
            "private_template": {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                                 Attribute.EXTRACTABLE: False},
        }
        if curve:
            options["public_template"][Attribute.EC_PARAMS] = encode_named_curve_parameters(curve)
        with self._write_lock, self._lease() as lease:
            if self._exists(lease.session, label):
                raise SiegelError(Code.CONFLICT, f"a key labelled {label!r} exists already on token {self.token_label!r}")
            public, _ = lease.session.generate_keypair(key_type, bits if key_type is KeyType.RSA else None, **options)
            self._generation += 1
            return _public_key(public)

    def list_keys(self) -> list[KeyInfo]:
        """The private keys on the token, by label."""
        with self._lease() as lease:
            keys = [_key_info(k) for k in lease.session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})]
        return sorted(keys, key=lambda k: k.label)

    def public_key(self, label: str) -> PublicKey:
        """The public key of key pair ``label``."""
        with self._lease() as lease:
            self._private_key(lease, label)
            found = list(lease.session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.LABEL: label}))
            if len(found) != 1:
                raise SiegelError(Code.KEY_NOT_FOUND, f"key {label!r} on token {self.token_label!r} has "
                                                      f"{len(found)} public key objects, not one")
            return _public_key(found[0])

    def sign_digest(self, key_label: str, digest: bytes, digest_algorithm: DigestAlgorithm | str,
                    scheme: SignatureScheme) -> bytes:
        """The signature value of ``digest`` by key ``key_label``; ECDSA values are DER-encoded."""
        digest_algorithm = check_digest(digest, digest_algorithm)
        with self._lease() as lease:
            try:
                return self._sign(self._private_key(lease, key_label), key_label, digest, digest_algorithm, scheme)
            except (p11e.ObjectHandleInvalid, p11e.KeyHandleInvalid):
                lease.keys.pop(key_label, None)  # destroyed or replaced since this session looked it up
                return self._sign(self._private_key(lease, key_label), key_label, digest, digest_algorithm, scheme)

    @staticmethod
    def _sign(key: Any, key_label: str, digest: bytes, digest_algorithm: DigestAlgorithm,
              scheme: SignatureScheme) -> bytes:
        wanted = KeyType.EC if scheme is SignatureScheme.ECDSA else KeyType.RSA
        if key.key_type is not wanted:
            raise SiegelError(Code.BAD_REQUEST, f"key {key_label!r} is an {key.key_type.name} key; "
                                                f"it cannot sign with {scheme}")
        if scheme is SignatureScheme.ECDSA:
            return ecdsa_raw_to_der(key.sign(digest, mechanism=Mechanism.ECDSA))
        if scheme is SignatureScheme.RSA_PSS:
            hash_mechanism, mgf = _PSS[digest_algorithm]
            return bytes(key.sign(digest, mechanism=Mechanism.RSA_PKCS_PSS,
                                  mechanism_param=(hash_mechanism, mgf, digest_algorithm.size)))
        return bytes(key.sign(digest_info(digest, digest_algorithm), mechanism=Mechanism.RSA_PKCS))

    def store_certificate(self, label: str, der: bytes) -> None:
        """Store an X.509 certificate under ``label`` (the key's own or one of its issuers).

        It replaces the certificates stored under ``label`` with the same subject (an older one of the
        key, or of that issuer), so a renewed certificate takes the old one's place.
        """
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise SiegelError(Code.BAD_REQUEST, f"not a DER X.509 certificate: {exc}") from None
        template = {
            Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
            Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.LABEL: label, Attribute.ID: key_id(label),
            Attribute.SUBJECT: cert.subject.public_bytes(), Attribute.ISSUER: cert.issuer.public_bytes(),
            Attribute.SERIAL_NUMBER: Integer(cert.serial_number).dump(), Attribute.VALUE: der,
        }
        with self._write_lock, self._lease() as lease:
            older = list(lease.session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: label,
                                                    Attribute.SUBJECT: template[Attribute.SUBJECT]}))
            lease.session.create_object(template)
            for obj in older:
                obj.destroy()

    def certificate_chain(self, key_label: str) -> list[bytes]:
        """The certificates stored under ``key_label``, the key's own (newest) first, then its issuers."""
        with self._lease() as lease:
            ders = [bytes(c[Attribute.VALUE]) for c in
                    lease.session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: key_label})]
        return _chain([x509.load_der_x509_certificate(d) for d in ders])

    def check(self) -> None:
        """Raise SiegelError unless a pooled session answers and is logged in (for /health)."""
        with self._lease() as lease:
            rv, state = self._module.cryptoki.session_state(lease.session.handle)
            self._token.slot.get_token()  # SoftHSM2 keeps sessions alive on a token whose store went away
        if rv != _CKR_OK:
            raise SiegelError(Code.HSM_UNAVAILABLE, f"token {self.token_label!r} of PKCS#11 module {self.module} "
                                                    f"does not answer (CK_RV {rv:#x})")
        if state not in _CKS_USER_FUNCTIONS:
            raise SiegelError(Code.HSM_LOGIN, f"token {self.token_label!r} is no longer logged in")

    def close(self) -> None:
        """Close the sessions (waiting for busy ones); the token logs out when the process's last one closes."""
        with _registry_lock:
            self._release()

    def _release(self) -> None:
        while self._pool_size:
            try:
                lease = self._pool.get(timeout=SESSION_WAIT_SECONDS)
            except queue.Empty:
                break  # a session stuck in a call: leave it, C_Finalize of the last user ends it
            self._pool_size -= 1
            with contextlib.suppress(p11e.PKCS11Error):
                self._guarded(lease.session.close)
        self._pool_size = 0
        if self._logged_in:
            self._logged_in = False
            self._module.login_users[self._slot] -= 1
            if self._module.login_users[self._slot] == 0:
                del self._module.login_users[self._slot], self._module.logins[self._slot]
        if self._holds_module:
            self._holds_module = False
            _close_module(self.module, self._module)


def _curve_name(params: bytes) -> str:
    return str(ECDomainParameters.load(params).chosen.native)


def _public_key(obj: Any) -> PublicKey:
    if obj.key_type is KeyType.RSA:
        return rsa.RSAPublicNumbers(int.from_bytes(obj[Attribute.PUBLIC_EXPONENT], "big"),
                                    int.from_bytes(obj[Attribute.MODULUS], "big")).public_key()
    name = _curve_name(obj[Attribute.EC_PARAMS]) if obj.key_type is KeyType.EC else obj.key_type.name
    if name not in _CURVES:
        raise SiegelError(Code.NOT_SUPPORTED, f"key {obj.label!r} is a {name} key; "
                                              "Siegel uses RSA keys and EC keys on P-256, P-384, P-521")
    point = OctetString.load(obj[Attribute.EC_POINT]).native
    return ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[name][1], point)


def _key_info(obj: Any) -> KeyInfo:
    if obj.key_type is KeyType.RSA:
        size = int.from_bytes(obj[Attribute.MODULUS], "big").bit_length()
        kind = f"rsa-{size}"
    elif obj.key_type is KeyType.EC:
        name = _curve_name(obj[Attribute.EC_PARAMS])
        short, curve = _CURVES.get(name, (name, None))
        size = curve.key_size if curve else 0
        kind = f"ec-{short}"
    else:
        size, kind = 0, obj.key_type.name.lower()
    return KeyInfo(label=obj.label, kind=kind, key_type=obj.key_type.name, size=size, key_id=bytes(obj.id),
                   extractable=bool(obj[Attribute.EXTRACTABLE]), sensitive=bool(obj[Attribute.SENSITIVE]))


def _chain(certs: list[x509.Certificate]) -> list[bytes]:
    """Leaf first: the newest certificate that issued none of the others, then its issuers as found."""
    if not certs:
        return []
    issued_by_others = {c.issuer for c in certs if c.issuer != c.subject}
    leaves = [c for c in certs if c.subject not in issued_by_others] or certs
    chain = [max(leaves, key=lambda c: c.not_valid_before_utc)]
    while chain[-1].issuer != chain[-1].subject:
        issuer = next((c for c in certs if c.subject == chain[-1].issuer and c not in chain), None)
        if issuer is None:
            break
        chain.append(issuer)
    return [c.public_bytes(Encoding.DER) for c in chain]
