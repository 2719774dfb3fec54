"""What a verification finds, independent of format and transport (ETSI TS 119 102-1 terms).

Every format verifier (XAdES, CAdES, ASiC, later PAdES) answers with :class:`SignatureReport`s;
``server.validation.report`` writes them as the TS 119 102-2 XML report and as JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cryptography import x509


class Indication(StrEnum):
    TOTAL_PASSED = "TOTAL-PASSED"
    TOTAL_FAILED = "TOTAL-FAILED"
    INDETERMINATE = "INDETERMINATE"


class SubIndication(StrEnum):
    """TS 119 102-1 sub-indications (with TOTAL-FAILED: the first five; the rest with INDETERMINATE)."""

    FORMAT_FAILURE = "FORMAT_FAILURE"
    HASH_FAILURE = "HASH_FAILURE"
    SIG_CRYPTO_FAILURE = "SIG_CRYPTO_FAILURE"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    SIG_CONSTRAINTS_FAILURE = "SIG_CONSTRAINTS_FAILURE"
    CHAIN_CONSTRAINTS_FAILURE = "CHAIN_CONSTRAINTS_FAILURE"
    CERTIFICATE_CHAIN_GENERAL_FAILURE = "CERTIFICATE_CHAIN_GENERAL_FAILURE"
    CRYPTO_CONSTRAINTS_FAILURE = "CRYPTO_CONSTRAINTS_FAILURE"
    POLICY_PROCESSING_ERROR = "POLICY_PROCESSING_ERROR"
    SIGNATURE_POLICY_NOT_AVAILABLE = "SIGNATURE_POLICY_NOT_AVAILABLE"
    TIMESTAMP_ORDER_FAILURE = "TIMESTAMP_ORDER_FAILURE"
    NO_SIGNING_CERTIFICATE_FOUND = "NO_SIGNING_CERTIFICATE_FOUND"
    NO_CERTIFICATE_CHAIN_FOUND = "NO_CERTIFICATE_CHAIN_FOUND"
    REVOKED_NO_POE = "REVOKED_NO_POE"
    REVOKED_CA_NO_POE = "REVOKED_CA_NO_POE"
    OUT_OF_BOUNDS_NO_POE = "OUT_OF_BOUNDS_NO_POE"
    OUT_OF_BOUNDS_NOT_REVOKED = "OUT_OF_BOUNDS_NOT_REVOKED"
    CRYPTO_CONSTRAINTS_FAILURE_NO_POE = "CRYPTO_CONSTRAINTS_FAILURE_NO_POE"
    NO_POE = "NO_POE"
    TRY_LATER = "TRY_LATER"
    SIGNED_DATA_NOT_FOUND = "SIGNED_DATA_NOT_FOUND"
    GENERIC = "GENERIC"


@dataclass(frozen=True)
class OwnRevocation:
    """The instance's own revocation services, asked in-process: never over HTTP, since a server whose
    threads are all busy with requests would wait for itself."""

    ocsp: Callable[[bytes], bytes | None]  # OCSPRequest DER → successful OCSPResponse DER (None: not its CA's)
    crls: Callable[[], tuple[bytes, ...]]  # the current CRL of each of its CAs (DER)


@dataclass(frozen=True)
class Trust:
    """What a verification trusts and when it looks: anchors (DER), fetching of revocation data, and the
    instance's own revocation services (None: not asked, e.g. outside a server)."""

    roots: tuple[bytes, ...]
    allow_fetching: bool = True
    validation_time: datetime | None = None  # None: now
    own: OwnRevocation | None = None


@dataclass(frozen=True)
class SignedScope:
    """One thing a signature covers, exactly: a whole document, an element by Id, a digest only."""

    name: str  # document name, "#id", or "(digest)"
    scope: str  # FULL | PARTIAL | DIGEST
    description: str
    digest_algorithm: str | None = None  # e.g. "sha256"
    digest: bytes | None = None


@dataclass(frozen=True)
class TimestampResult:
    kind: str  # signature | archive | content | validation-data
    time: datetime | None
    valid: bool
    tsa: str | None  # the TSA certificate's subject
    message: str
    token: bytes = b""  # DER of the TimeStampToken


@dataclass
class SignatureReport:
    """One signature's verdict with what it is based on."""

    id: str
    format: str  # "XAdES", "CAdES", "ASiC-E/XAdES", "ASiC-E/CAdES", "PAdES", "XMLDSig"
    indication: Indication
    sub_indication: SubIndication | None = None
    messages: list[str] = field(default_factory=list)  # why, in words, most important first
    signer_certificate: bytes | None = None  # DER
    chain: list[bytes] = field(default_factory=list)  # DER, the signer's first, up to the trust anchor
    claimed_signing_time: datetime | None = None
    best_signature_time: datetime | None = None  # the earliest proof of existence (a valid timestamp)
    level: str | None = None  # the baseline level reached: B-B, B-T, B-LT, B-LTA
    digest_algorithm: str | None = None
    signature_algorithm: str | None = None
    timestamps: list[TimestampResult] = field(default_factory=list)
    scopes: list[SignedScope] = field(default_factory=list)
    signature_value: bytes | None = None  # the raw signature value: identifies the signature in reports

    @property
    def signer_name(self) -> str | None:
        if self.signer_certificate is None:
            return None
        return x509.load_der_x509_certificate(self.signer_certificate).subject.rfc4514_string()


@dataclass
class ValidationReport:
    signatures: list[SignatureReport]
    validation_time: datetime
    document_name: str | None = None

    @property
    def passed(self) -> bool:
        """Every signature TOTAL-PASSED (and there is at least one)."""
        return bool(self.signatures) and all(s.indication is Indication.TOTAL_PASSED for s in self.signatures)
