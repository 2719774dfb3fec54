"""The validation data a B-LT signature embeds: the whole chain and its revocation values.

:func:`collect_validation_data` validates a certificate to a trust anchor with hard-fail revocation
checking (pyhanko-certvalidator) and returns everything it used: the certificates up to and including the
anchor, the OCSP responses and the CRLs (all DER). The instance's own CAs are asked in-process (inside
:func:`own_revocation_in_use`, which :class:`~server.signing.service.SigningService` opens around every
signing call): their OCSP responder and current CRLs, never the node's own ``/ocsp`` and ``/crl`` over HTTP
(under load such a request waited for the node's own busy threads). Other CAs' OCSP responses and CRLs are
fetched from the AIA and CRL distribution points of their certificates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms, crl, ocsp, x509 as asn1_x509
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.authority import Authority
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError, ValidationError
from pyhanko_certvalidator.fetchers.api import CRLFetcher, FetcherBackend, Fetchers, OCSPFetcher
from pyhanko_certvalidator.fetchers.common_utils import format_ocsp_request
from pyhanko_certvalidator.util import issuer_serial

from server.errors import Code, SiegelError
from server.validation.model import OwnRevocation

FETCH_TIMEOUT_SECONDS = 10

Certificate = asn1_x509.Certificate | cms.AttributeCertificateV2  # what pyhanko-certvalidator asks about

_OWN: ContextVar[OwnRevocation | None] = ContextVar("own_revocation", default=None)


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


@contextmanager
def own_revocation_in_use(own: OwnRevocation | None) -> Iterator[None]:
    """Inside, :func:`collect_validation_data` (in this thread) asks ``own`` about the instance's own
    CAs' certificates (None: everything is fetched)."""
    token = _OWN.set(own)
    try:
        yield
    finally:
        _OWN.reset(token)


def collect_validation_data(chain: Sequence[bytes], trust_roots: Sequence[bytes], *,
                            moment: datetime | None = None, ocsps: Sequence[bytes] = (),
                            crls: Sequence[bytes] = ()) -> ValidationData:
    """Certificates and revocation values that prove ``chain[0]`` valid at ``moment`` (default: now),
    with fresh OCSP responses / CRLs (asked in-process or fetched, even where ``ocsps`` and ``crls``
    already hold some: a renewal adds new values beside the old); SiegelError (BAD_REQUEST) naming why
    when the certificate has no trusted chain, is revoked, or its status cannot be had."""
    if not chain:
        raise SiegelError(Code.BAD_REQUEST, "no certificate to collect validation data for")
    return asyncio.run(_collect(chain, trust_roots, moment, ocsps, crls, _OWN.get()))


async def _collect(chain: Sequence[bytes], trust_roots: Sequence[bytes], moment: datetime | None,
                   ocsps: Sequence[bytes], crls: Sequence[bytes], own: OwnRevocation | None) -> ValidationData:
    certs = [asn1_x509.Certificate.load(der) for der in chain]
    context = ValidationContext(trust_roots=[asn1_x509.Certificate.load(der) for der in trust_roots],
                                other_certs=certs[1:], moment=moment, allow_fetching=True,
                                revocation_mode="hard-fail", ocsps=list(ocsps), crls=list(crls),
                                fetcher_backend=_OwnFirstBackend(own))
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


class _OwnFirstBackend(FetcherBackend):
    """pyhanko-certvalidator's fetchers over HTTP (``requests``), with OCSP and CRLs of the instance's own
    CAs answered in-process by ``own`` first."""

    def __init__(self, own: OwnRevocation | None) -> None:
        self._own = own

    def get_fetchers(self) -> Fetchers:
        from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend  # only B-LT needs requests

        remote = RequestsFetcherBackend(per_request_timeout=FETCH_TIMEOUT_SECONDS).get_fetchers()
        if self._own is None:
            return remote
        return Fetchers(_OwnFirstOcsp(self._own, remote.ocsp_fetcher), _OwnFirstCrls(self._own, remote.crl_fetcher),
                        remote.cert_fetcher)


class _OwnFirstOcsp(OCSPFetcher):
    """The own responder's answer where it has one (it answers only for its CAs), else ``remote``'s."""

    def __init__(self, own: OwnRevocation, remote: OCSPFetcher) -> None:
        self._own = own
        self._remote = remote
        self._answers: dict[tuple[bytes, bytes], ocsp.OCSPResponse] = {}  # (issuer+serial, authority) → answer

    async def fetch(self, cert: Certificate, authority: Authority) -> ocsp.OCSPResponse:
        key = (issuer_serial(cert), authority.hashable)
        if key not in self._answers:
            request = format_ocsp_request(cert, authority, certid_hash_algo="sha256", request_nonces=False)
            answer = self._own.ocsp(request.dump()) if isinstance(cert, asn1_x509.Certificate) else None
            if answer is None:
                return await self._remote.fetch(cert, authority)
            self._answers[key] = ocsp.OCSPResponse.load(answer)
        return self._answers[key]

    def fetched_responses(self) -> Iterable[ocsp.OCSPResponse]:
        return [*self._answers.values(), *self._remote.fetched_responses()]

    def fetched_responses_for_cert(self, cert: Certificate) -> Iterable[ocsp.OCSPResponse]:
        target = issuer_serial(cert)
        return [*(answer for (subject, _), answer in self._answers.items() if subject == target),
                *self._remote.fetched_responses_for_cert(cert)]


class _OwnFirstCrls(CRLFetcher):
    """The current CRL of the own CA that issued a certificate, else ``remote``'s fetch of its CDPs."""

    def __init__(self, own: OwnRevocation, remote: CRLFetcher) -> None:
        self._own = own
        self._remote = remote
        self._current: tuple[crl.CertificateList, ...] | None = None  # the own CAs' CRLs, read on first need
        self._by_cert: dict[bytes, list[crl.CertificateList]] = {}

    async def fetch(self, cert: Certificate, *, use_deltas: bool | None = True) -> Iterable[crl.CertificateList]:
        key = issuer_serial(cert)
        if key not in self._by_cert:
            if self._current is None:
                self._current = tuple(crl.CertificateList.load(der) for der in self._own.crls())
            # by issuer name and key: another Siegel's CA of the same name (a remote signing service's) is not ours
            issued = [c for c in self._current if isinstance(cert, asn1_x509.Certificate) and c.issuer == cert.issuer
                      and c.authority_key_identifier == cert.authority_key_identifier]
            if not issued:
                return await self._remote.fetch(cert, use_deltas=use_deltas)
            self._by_cert[key] = issued
        return self._by_cert[key]

    def fetched_crls(self) -> Iterable[crl.CertificateList]:
        own = {c.dump(): c for issued in self._by_cert.values() for c in issued}
        return [*own.values(), *self._remote.fetched_crls()]

    def fetched_crls_for_cert(self, cert: Certificate) -> Iterable[crl.CertificateList]:
        key = issuer_serial(cert)
        return self._by_cert[key] if key in self._by_cert else self._remote.fetched_crls_for_cert(cert)
