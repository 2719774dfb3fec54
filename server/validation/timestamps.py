"""Timestamp tokens found in signatures, checked with the RFC 3161 client's :func:`verify_token`.

:func:`check_timestamp` answers a :class:`TimestampResult`: valid when the message imprint is the given
digest, the token's CMS signature verifies, the TSA certificate has the critical EKU timeStamping, was
valid at genTime, is named by the token's ESSCertID(v2), and chains (over the token's certificates and
``pool``) to one of ``trust.roots``. The TSA certificate's revocation status is not checked.
"""

from __future__ import annotations

from collections.abc import Sequence

from asn1crypto import cms, tsp
from cryptography import x509

from adapters.timestamp.client import TimestampError, verify_token
from server.validation.model import TimestampResult, Trust


def check_timestamp(token: bytes, data_digest: bytes, hash_algorithm: str, trust: Trust, kind: str, *,
                    pool: Sequence[bytes] = ()) -> TimestampResult:
    """``token`` (DER TimeStampToken) checked for ``data_digest`` (made with ``hash_algorithm``, e.g.
    "sha256"); ``kind`` is signature | archive | content | validation-data; ``pool`` adds certificates
    the token may lack (a signature's own, for a TSA chain through an intermediate CA)."""
    if not trust.roots:
        return TimestampResult(kind, None, False, None, "no trust anchor is configured for timestamps", token)
    try:
        anchors = [x509.load_der_x509_certificate(der) for der in trust.roots]
        extra = [x509.load_der_x509_certificate(der) for der in pool]
        info = verify_token(token, data_digest, hash_algorithm, anchors, certificates=extra)
    except TimestampError as exc:
        return TimestampResult(kind, None, False, None, exc.message, token)  # an invalid token proves no time
    except ValueError as exc:
        return TimestampResult(kind, None, False, None, f"a certificate is not valid DER ({exc})", token)
    tsa = info.signer.subject.rfc4514_string()
    return TimestampResult(kind, info.gen_time, True, tsa,
                           f"{kind} timestamp of {tsa} at {info.gen_time.isoformat()} is valid", token)


def message_imprint(token: bytes) -> tuple[str, bytes]:
    """The hash algorithm (e.g. "sha256") and digest a token's TSTInfo claims; ValueError if it is no token."""
    tst = _tst_info(token)
    imprint = tst["message_imprint"]
    return imprint["hash_algorithm"]["algorithm"].native, imprint["hashed_message"].native


def _tst_info(token: bytes) -> tsp.TSTInfo:
    try:
        encap = cms.ContentInfo.load(token)["content"]["encap_content_info"]
        tst = tsp.TSTInfo.load(bytes(encap["content"]))
        tst.native
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not an RFC 3161 timestamp token ({exc})") from None
    return tst

