"""The validation data a B-LT signature embeds: the whole chain and its revocation values.

:func:`collect_validation_data` validates a certificate to a trust anchor with hard-fail revocation
checking (pyhanko-certvalidator), fetching OCSP responses and CRLs from the AIA and CRL distribution
points of every certificate (our own PKI's ``/ocsp`` and ``/crl`` included), and returns everything it
used: the certificates up to and including the anchor, the OCSP responses and the CRLs (all DER).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import x509 as asn1_x509
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError, ValidationError
from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend

from server.errors import Code, SiegelError

FETCH_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class ValidationData:
    certificates: tuple[bytes, ...]  # the certificate, its issuers and the anchor
    ocsps: tuple[bytes, ...]  # OCSPResponse
    crls: tuple[bytes, ...]  # CertificateList

    def __add__(self, other: ValidationData) -> ValidationData:
        """Both, each value once, in first-seen order."""
        return ValidationData(*(tuple(dict.fromkeys(a + b)) for a, b in
                                ((self.certificates, other.certificates), (self.ocsps, other.ocsps),
                                 (self.crls, other.crls))))


def collect_validation_data(chain: Sequence[bytes], trust_roots: Sequence[bytes], *,
                            moment: datetime | None = None, ocsps: Sequence[bytes] = (),
                            crls: Sequence[bytes] = ()) -> ValidationData:
    """Certificates and revocation values that prove ``chain[0]`` valid at ``moment`` (default: now),
    with fresh OCSP responses / CRLs fetched (pyhanko-certvalidator fetches even where ``ocsps`` and
    ``crls`` already hold some: a renewal adds new values beside the old); SiegelError (BAD_REQUEST)
    naming why when the certificate has no trusted chain, is revoked, or its status cannot be fetched."""
    if not chain:
        raise SiegelError(Code.BAD_REQUEST, "no certificate to collect validation data for")
    return asyncio.run(_collect(chain, trust_roots, moment, ocsps, crls))


async def _collect(chain: Sequence[bytes], trust_roots: Sequence[bytes], moment: datetime | None,
                   ocsps: Sequence[bytes], crls: Sequence[bytes]) -> ValidationData:
    certs = [asn1_x509.Certificate.load(der) for der in chain]
    context = ValidationContext(trust_roots=[asn1_x509.Certificate.load(der) for der in trust_roots],
                                other_certs=certs[1:], moment=moment, allow_fetching=True,
                                revocation_mode="hard-fail", ocsps=list(ocsps), crls=list(crls),
                                fetcher_backend=RequestsFetcherBackend(per_request_timeout=FETCH_TIMEOUT_SECONDS))
    validator = CertificateValidator(certs[0], intermediate_certs=certs[1:], validation_context=context)
    subject = certs[0].subject.human_friendly
    try:
        path = await validator.async_validate_usage(set())
    except PathBuildingError as exc:
        raise SiegelError(Code.BAD_REQUEST, f"no chain from {subject} to a trusted root: {exc}") from None
    except (PathValidationError, ValidationError) as exc:
        raise SiegelError(Code.BAD_REQUEST, f"{subject} cannot be proven valid: {exc}") from None
    path_certs = [c.dump() for c in path]  # the anchor first
    return ValidationData(tuple(reversed(path_certs)), tuple(o.dump() for o in context.ocsps),
                          tuple(c.dump() for c in context.crls))
