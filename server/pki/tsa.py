"""The RFC 3161 time-stamping authority (with the ESSCertIDv2 of RFC 5816).

A request is parsed with asn1crypto; the TSTInfo gets the configured policy, accuracy, the echoed
nonce, the time and a serial number from a block this process reserved from the database counter
``tsa_serial`` (unique across processes and nodes; a block's unused numbers are gaps, never
repeats). The key store is opened first, so an HSM that cannot be reached costs no serial number.
While the token is signed, its ``issued_timestamps`` row and audit entry are written (``GroupCommit``:
concurrent tokens share one transaction); the token is answered only once both are done, so a
token that went out is always recorded, and a failure of either leaves a gap, never a duplicate.

The signer is the TSA's current certificate, looked up for every request (read from the database at
most every 2 s): a revoked or expired one is not used, a renewed one is picked up. The CMS SignedData carries the signed attributes
content-type, message-digest, signing-time and signing-certificate-v2; their DER is hashed here and
only the digest goes to the HSM (step 2 of hash → sign → assemble).

Every answer is a TimeStampResp: bad input gets ``rejection`` with the failInfo RFC 3161 names
(badAlg, badRequest, badDataFormat, unacceptedPolicy, unacceptedExtension), a failing HSM or
database ``rejection``/systemFailure.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from asn1crypto import core, tsp
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, insert, update
from sqlalchemy.exc import SQLAlchemyError

from server.audit import AuditLog
from server.config import TsaSettings
from server.db.batch import GroupCommit
from server.db.models import Counter, IssuedTimestamp
from server.errors import SiegelError
from server.pki.ca import CertificateAuthorityService
from server.pki.keystore import KeyStore
from server.pki.profiles import signature_hash
from server.pki.rfc3161 import TimeStampResp
from server.signing.cms_parts import (
    OCTET_STRING,
    SEQUENCE,
    SignerParts,
    attribute,
    oid,
    signed_attributes,
    signed_data,
    signer_info,
    signer_parts,
    tlv,
    utc_time,
)
from server.signing.keysource import DigestAlgorithm

log = logging.getLogger("siegel.tsa")

SERIAL_COUNTER = "tsa_serial"
SERIAL_BLOCK = 64  # serial numbers a process reserves at a time; unused ones are gaps, never repeats

IMPRINT_ALGORITHMS = {"sha256": DigestAlgorithm.SHA256, "sha384": DigestAlgorithm.SHA384,
                      "sha512": DigestAlgorithm.SHA512}


@dataclass(frozen=True)
class TsaReply:
    """The DER TimeStampResp, and why it is a rejection (None when granted)."""

    der: bytes
    problem: str | None = None


class Rejected(Exception):
    """A request the TSA refuses, with the failInfo bit to report."""

    def __init__(self, fail_info: str, message: str) -> None:
        super().__init__(message)
        self.fail_info = fail_info
        self.message = message


_GRANTED = tsp.PKIStatusInfo({"status": "granted"}).dump()
_VERSION_1 = core.Integer(1).dump()


@dataclass(frozen=True)
class _Signer:
    """The TSA's key and the DER of everything a token says about its certificate.

    Tokens are assembled from these bytes (:mod:`server.signing.cms_parts`): asn1crypto re-encodes
    every certificate of a value it wraps, which cost several times the signature. The parts that
    change per token (TSTInfo, message digest, signing time) are encoded per token.
    """

    key_label: str
    certificate: bytes  # the TSA's certificate
    parts: SignerParts
    fixed_attributes: tuple[bytes, ...]  # content-type and signing-certificate-v2


def _make_signer(label: str, chain: list[bytes]) -> _Signer:
    public_key = x509.load_der_x509_certificate(chain[0]).public_key()
    ec_key = isinstance(public_key, ec.EllipticCurvePublicKey)
    digest = DigestAlgorithm.from_hash(signature_hash(public_key))  # type: ignore[arg-type]
    parts = signer_parts(tuple(chain), digest, f"{digest.value}_ecdsa" if ec_key else "rsassa_pkcs1v15")
    return _Signer(label, chain[0], parts, (attribute("content_type", oid("tst_info")), parts.signing_certificate_v2))


def rejection(fail_info: str, message: str) -> bytes:
    """A TimeStampResp with status rejection, the failInfo bit and a status string."""
    return TimeStampResp({"status": tsp.PKIStatusInfo({
        "status": "rejection", "status_string": [message], "fail_info": tsp.PKIFailureInfo({fail_info})})}).dump()


@dataclass(frozen=True)
class TimeStampRequest:
    """What a checked TimeStampReq asks for; the DER parts are copied into the TSTInfo as they came."""

    imprint_der: bytes  # the MessageImprint
    hash_algorithm: str  # sha256, sha384 or sha512
    digest: bytes
    nonce_der: bytes  # the INTEGER, or b"" without a nonce
    cert_req: bool


def parse_request(der: bytes, policy: str) -> TimeStampRequest:
    """The request, checked; :class:`Rejected` says what is wrong with it."""
    try:
        request = tsp.TimeStampReq.load(der, strict=True)
        # asn1crypto parses lazily: every field is reached here, where garbage is a bad data format
        version, imprint, requested = request["version"].native, request["message_imprint"], request["req_policy"]
        algorithm, digest = imprint["hash_algorithm"]["algorithm"], imprint["hashed_message"].native
        imprint["hash_algorithm"]["parameters"].native
        nonce, cert_req, extensions = request["nonce"], bool(request["cert_req"].native), request["extensions"]
        nonce_der = b"" if nonce.native is None else nonce.dump()
        requested_policy, extension_count = requested.native and requested.dotted, len(extensions)
    except Exception as exc:  # asn1crypto raises ValueError, TypeError, OverflowError... for garbage
        raise Rejected("bad_data_format", f"not a DER TimeStampReq: {exc.__class__.__name__}") from None
    if version != "v1":
        raise Rejected("bad_request", f"TimeStampReq version {version} is not v1")
    if algorithm.native not in IMPRINT_ALGORITHMS:
        raise Rejected("bad_alg", f"hash algorithm {algorithm.dotted} is not accepted (SHA-256, SHA-384, SHA-512 are)")
    size = IMPRINT_ALGORITHMS[algorithm.native].size
    if len(digest) != size:
        raise Rejected("bad_data_format", f"a {algorithm.native} imprint has {size} bytes, this one has {len(digest)}")
    if requested_policy and requested_policy != policy:
        raise Rejected("unaccepted_policy", f"policy {requested_policy} is not offered (this TSA's is {policy})")
    if extension_count:
        raise Rejected("unaccepted_extensions", "this TSA accepts no request extensions")
    return TimeStampRequest(imprint.dump(), algorithm.native, digest, nonce_der, cert_req)


class TimestampAuthority:
    """Answers TimeStampReq DER with TimeStampResp DER."""

    def __init__(self, engine: Engine, audit: AuditLog, ca: CertificateAuthorityService,
                 keys: Callable[[], KeyStore], settings: TsaSettings) -> None:
        self._engine = engine
        self._audit = audit
        self._ca = ca
        self._keys = keys
        self._settings = settings
        self._signer: _Signer | None = None
        self._lock = threading.Lock()
        self._records: GroupCommit[dict[str, Any], None] = GroupCommit(self._record, name="tsa-records")
        self._serial_lock = threading.Lock()
        self._next_serial, self._last_serial = 1, 0  # no block yet
        self._policy = core.ObjectIdentifier(settings.policy_oid).dump()
        self._accuracy = tsp.Accuracy({"seconds": settings.accuracy_seconds}).dump() if settings.accuracy_seconds else b""

    def respond(self, der: bytes) -> TsaReply:
        try:
            request = parse_request(der, self._settings.policy_oid)
        except Rejected as exc:
            return TsaReply(rejection(exc.fail_info, exc.message), exc.message)
        try:
            return TsaReply(self._grant(request))
        except SiegelError as exc:
            problem, code = exc.message, exc.code.value
        except SQLAlchemyError as exc:
            problem, code = f"database error: {exc.__class__.__name__}", "database"
        log.error("timestamp not issued", extra={"fields": {"error": problem, "code": code}})
        return TsaReply(rejection("system_failure", "the TSA cannot issue a token now"), problem)

    def _signer_info(self) -> _Signer:
        """The signer of the TSA's current certificate (built again when the certificate changed)."""
        label, chain = self._ca.service_credentials("tsa")
        with self._lock:
            if self._signer is None or self._signer.key_label != label or self._signer.certificate != chain[0]:
                self._signer = _make_signer(label, chain)
            return self._signer

    def _take_serial(self) -> int:
        """The next serial number of this process's block; a new block is reserved when it is used up."""
        with self._serial_lock:
            if self._next_serial > self._last_serial:
                counter = Counter.__table__
                with self._engine.begin() as conn:
                    last = conn.execute(update(counter).where(counter.c.name == SERIAL_COUNTER)
                                        .values(value=counter.c.value + SERIAL_BLOCK)
                                        .returning(counter.c.value)).scalar_one()
                self._next_serial, self._last_serial = last - SERIAL_BLOCK + 1, last
            serial = self._next_serial
            self._next_serial += 1
            return serial

    def _record(self, rows: list[dict[str, Any]]) -> list[None]:
        """``issued_timestamps`` rows, committed with their audit entries (one transaction per batch)."""
        with self._engine.begin() as conn:  # Core, not the ORM: this runs for every token
            conn.execute(insert(IssuedTimestamp.__table__), rows)
            self._audit.append_many_in(conn, [
                ("tsa", "tsa.issue", str(row["serial"]), {"hash_algorithm": row["hash_algorithm"],
                                                          "imprint": row["imprint"], "policy": row["policy"],
                                                          "gen_time": row["gen_time"].isoformat()})
                for row in rows])
        return [None] * len(rows)

    def _grant(self, request: TimeStampRequest) -> bytes:
        signer = self._signer_info()
        keys = self._keys()
        now = datetime.now(timezone.utc)
        gen_time = now.replace(microsecond=now.microsecond // 1000 * 1000)
        serial = self._take_serial()
        recorded = self._records.submit({  # written while the token is signed; answered once both are done
            "serial": serial, "gen_time": gen_time, "policy": self._settings.policy_oid,
            "hash_algorithm": request.hash_algorithm, "imprint": request.digest.hex()})
        # TSTInfo: version, policy, messageImprint (as requested), serialNumber, genTime, accuracy, nonce
        tst_der = tlv(SEQUENCE, _VERSION_1 + self._policy + request.imprint_der + core.Integer(serial).dump()
                      + core.GeneralizedTime(gen_time).dump() + self._accuracy + request.nonce_der)
        parts = signer.parts
        signed_attrs = signed_attributes([
            *signer.fixed_attributes,
            attribute("message_digest", tlv(OCTET_STRING, hashlib.new(parts.digest.value, tst_der).digest())),
            attribute("signing_time", utc_time(gen_time))])
        digest = hashlib.new(parts.digest.value, signed_attrs).digest()
        try:
            signature = keys.sign_digest(signer.key_label, digest, parts.digest, parts.scheme)
        except BaseException:
            futures.wait([recorded])  # the row is written either way: answer the failure after it
            raise
        token = signed_data(parts, 3, "tst_info", signer_info(parts, signed_attrs, signature),
                            encap_content=tst_der, with_certificates=request.cert_req)
        recorded.result()  # raises what the database raised: no token goes out unrecorded
        return tlv(SEQUENCE, _GRANTED + token)
