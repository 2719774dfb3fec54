"""X.509 certificate validation of a signer (ETSI TS 119 102-1 building block, simplified).

:func:`check_signer` builds a path from the signer's certificate over the given pool (the certificates a
signature embeds) and, when ``trust.allow_fetching``, over certificates fetched from AIA, to one of
``trust.roots``; it checks revocation (pyhanko-certvalidator, hard-fail) with the instance's own revocation
data (``trust.own``, asked in-process: its OCSP responder's answers about the signer and the pool's
certificates, its CAs' current CRLs) and the given (embedded) OCSP responses and CRLs. Only when these do not decide (the status unknown, no path)
and fetching is allowed, the path is validated again with OCSP responses, CRLs and AIA certificates
fetched: a server never asks itself over HTTP, so its verdict does not depend on its load. The rules:

- no path to a trust anchor: INDETERMINATE/NO_CERTIFICATE_CHAIN_FOUND;
- a certificate of the path revoked: PASSED when the proof of existence ``poe`` (the best signature time,
  from a valid signature timestamp) is before the revocation time (TS 119 102-1 5.5, "validation process for
  signatures with time"); otherwise INDETERMINATE/REVOKED_NO_POE (signer) or REVOKED_CA_NO_POE (a CA).
  TOTAL-FAILED/REVOKED needs proof that the signature was made *after* the revocation (5.3.4: a content
  timestamp later than the revocation); ``poe`` is an upper bound of the signing time only, so this function
  never returns it. For a revoked CA with an earlier ``poe``, the path is validated again at ``poe``;
- a certificate expired (or not yet valid) at ``at``: PASSED when ``poe`` lies inside its validity and the
  path validates at ``poe`` with the given revocation values alone (no fetching: a CA may drop expired
  certificates from its status services); otherwise INDETERMINATE/OUT_OF_BOUNDS_NO_POE
  (NOT_YET_VALID for a certificate not valid yet at ``at`` and without such a ``poe``);
- revocation status unknown or unreachable (nothing fresh, responder down): INDETERMINATE/TRY_LATER;
- an algorithm no longer allowed: INDETERMINATE/CRYPTO_CONSTRAINTS_FAILURE_NO_POE; any other failure of
  the path: INDETERMINATE/CERTIFICATE_CHAIN_GENERAL_FAILURE.

Key usage is not checked here (signature constraints belong to the format verifier).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (DisallowedAlgorithmError, ExpiredError, InsufficientRevinfoError,
                                          NotYetValidError, PathBuildingError, PathValidationError,
                                          RevokedError, ValidationError)
from pyhanko_certvalidator.path import ValidationPath

from server.validation.model import Indication, SubIndication, Trust

FETCHING_DECIDES = (SubIndication.TRY_LATER, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)  # what fetching may change

FETCH_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class ChainResult:
    """The verdict on the signer's certificate (TOTAL_PASSED: it was valid when the signature was made)."""

    indication: Indication
    sub_indication: SubIndication | None
    chain: tuple[bytes, ...]  # DER, the signer first, up to the trust anchor (the signer alone without a path)
    message: str
    revocation: str  # which revocation data decided, e.g. "OCSP good, produced 2026-…, embedded"

    @property
    def passed(self) -> bool:
        return self.indication is Indication.TOTAL_PASSED


@dataclass(frozen=True)
class _Inputs:
    signer: asn1_x509.Certificate
    pool: tuple[asn1_x509.Certificate, ...]
    roots: tuple[asn1_x509.Certificate, ...]
    ocsps: tuple[bytes, ...]
    crls: tuple[bytes, ...]
    own_ocsps: tuple[bytes, ...] = ()  # the instance's own revocation data, asked in-process
    own_crls: tuple[bytes, ...] = ()


def check_signer(signer: bytes, pool: Sequence[bytes], trust: Trust, *, at: datetime,
                 ocsps: Sequence[bytes] = (), crls: Sequence[bytes] = (),
                 poe: datetime | None = None) -> ChainResult:
    """The signer's certificate validated at ``at`` against ``trust`` (rules in the module docstring).

    Blocking (the own CA's database and HSM, revocation fetching): call it off the reactor thread."""
    try:
        inputs = _Inputs(_certificate(signer), tuple(_certificate(d) for d in pool),
                         tuple(_certificate(d) for d in trust.roots), tuple(ocsps), tuple(crls))
    except ValueError as exc:
        return ChainResult(Indication.INDETERMINATE, SubIndication.CERTIFICATE_CHAIN_GENERAL_FAILURE, (signer,),
                           f"a certificate is malformed: {exc}", "not checked")
    if not inputs.roots:
        return ChainResult(Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND, (signer,),
                           "no trust anchor is configured", "not checked")
    if trust.own is not None:
        inputs = replace(inputs, own_ocsps=_own_answers(signer, pool, trust.roots, trust.own.ocsp),
                         own_crls=trust.own.crls())
    moment, proof = _utc(at), None if poe is None else _utc(poe)
    result = asyncio.run(_check(inputs, False, moment, proof))
    if trust.allow_fetching and result.sub_indication in FETCHING_DECIDES:
        return asyncio.run(_check(inputs, True, moment, proof))
    return result


def _own_answers(signer: bytes, pool: Sequence[bytes], roots: Sequence[bytes],
                 own_ocsp: Callable[[bytes], bytes | None]) -> tuple[bytes, ...]:
    """The own responder's answers for the signer and the pool's certificates, each asked about with every
    issuer of its name among the pool and the roots (a CA that is not the instance's gets no answer)."""
    try:
        certs = [x509.load_der_x509_certificate(der) for der in (signer, *pool)]
        issuers = certs[1:] + [x509.load_der_x509_certificate(der) for der in roots]
    except ValueError:
        return ()  # _certificate said it is well-formed DER; cryptography is stricter: no in-process answer then
    answers: dict[bytes, None] = {}
    for cert in certs:
        for issuer in issuers:
            if issuer.subject == cert.issuer and issuer != cert:
                request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
                answer = own_ocsp(request.public_bytes(Encoding.DER))
                if answer is not None:
                    answers[answer] = None
    return tuple(answers)


def _certificate(der: bytes) -> asn1_x509.Certificate:
    """A certificate decoded in full now (ValueError if it is malformed), not later inside the validator."""
    try:
        cert = asn1_x509.Certificate.load(der, strict=True)
        cert.native
        cert.issuer.hashable, cert.subject.hashable  # what path building compares (a name of odd types fails)
    except (TypeError, KeyError, OverflowError) as exc:
        raise ValueError(str(exc)) from None
    return cert


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


async def _check(inputs: _Inputs, fetching: bool, at: datetime, poe: datetime | None) -> ChainResult:
    context = _context(inputs, at, fetching, retroactive=False)
    subject = inputs.signer.subject.human_friendly
    try:
        path = await _validate(inputs, context)
    except PathBuildingError as exc:
        return ChainResult(Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
                           (inputs.signer.dump(),), f"no chain from {subject} to a trust anchor: {exc}", "not checked")
    except RevokedError as exc:
        return await _revoked(inputs, exc, poe, context, fetching)
    except (ExpiredError, NotYetValidError) as exc:
        return await _out_of_bounds(inputs, exc, poe)
    except InsufficientRevinfoError as exc:
        return _failed(exc, SubIndication.TRY_LATER, f"the revocation status is not known: {exc.failure_msg}",
                       "unknown")
    except DisallowedAlgorithmError as exc:
        return _failed(exc, SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE, exc.failure_msg, "not checked")
    except PathValidationError as exc:
        return _failed(exc, SubIndication.CERTIFICATE_CHAIN_GENERAL_FAILURE, exc.failure_msg, "not checked")
    except ValidationError as exc:
        return ChainResult(Indication.INDETERMINATE, SubIndication.CERTIFICATE_CHAIN_GENERAL_FAILURE,
                           (inputs.signer.dump(),), exc.failure_msg, "not checked")
    return ChainResult(Indication.TOTAL_PASSED, None, _chain(path), f"{subject} is valid at {at.isoformat()}",
                       _revocation_used(inputs, context))


def _context(inputs: _Inputs, moment: datetime, fetching: bool, *, retroactive: bool) -> ValidationContext:
    backend = None
    if fetching:
        from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend  # requests: ~4 MB

        backend = RequestsFetcherBackend(per_request_timeout=FETCH_TIMEOUT_SECONDS)
    return ValidationContext(trust_roots=list(inputs.roots), other_certs=list(inputs.pool), moment=moment,
                             allow_fetching=fetching, revocation_mode="hard-fail",
                             ocsps=list(inputs.own_ocsps + inputs.ocsps),  # the own current answers first
                             crls=list(inputs.own_crls + inputs.crls), retroactive_revinfo=retroactive,
                             fetcher_backend=backend)


async def _validate(inputs: _Inputs, context: ValidationContext) -> ValidationPath:
    validator = CertificateValidator(inputs.signer, intermediate_certs=list(inputs.pool), validation_context=context)
    return await validator.async_validate_path()


def _chain(path: ValidationPath) -> tuple[bytes, ...]:
    """DER of the path, the signer first (pyhanko-certvalidator iterates from the anchor)."""
    return tuple(reversed([cert.dump() for cert in path]))


def _failed(exc: PathValidationError, sub: SubIndication, message: str, revocation: str) -> ChainResult:
    return ChainResult(Indication.INDETERMINATE, sub, _chain(exc.original_path), message, revocation)


async def _revoked(inputs: _Inputs, exc: RevokedError, poe: datetime | None, context: ValidationContext,
                   fetching: bool) -> ChainResult:
    revocation = f"revoked at {exc.revocation_dt.isoformat()} ({exc.reason.human_friendly})"
    if poe is None or poe >= exc.revocation_dt:
        sub = SubIndication.REVOKED_NO_POE if exc.is_ee_cert else SubIndication.REVOKED_CA_NO_POE
        proof = "no proof of existence" if poe is None else f"the proof of existence {poe.isoformat()} is not"
        return _failed(exc, sub, f"{exc.failure_msg} There is {proof} before the revocation.", revocation)
    note = (f"{exc.failure_msg} The signature existed before, at {poe.isoformat()} (proof of existence), "
            "when the certificate was not revoked.")
    if exc.is_ee_cert:  # the CA certificates above it were validated before the signer's revocation check
        return ChainResult(Indication.TOTAL_PASSED, None, _chain(exc.original_path), note,
                           f"{_revocation_used(inputs, context)}; {revocation}")
    return await _at_poe(inputs, poe, note, revocation, SubIndication.REVOKED_CA_NO_POE, fetching=fetching)


async def _out_of_bounds(inputs: _Inputs, exc: ExpiredError | NotYetValidError, poe: datetime | None) -> ChainResult:
    sub = SubIndication.OUT_OF_BOUNDS_NO_POE if isinstance(exc, ExpiredError) else SubIndication.NOT_YET_VALID
    if poe is None:
        return _failed(exc, sub, f"{exc.failure_msg}; there is no proof of existence within its validity",
                       "not checked")
    note = f"{exc.failure_msg}; the signature existed at {poe.isoformat()} (proof of existence)"
    return await _at_poe(inputs, poe, note, "embedded values only", sub, fetching=False)


async def _at_poe(inputs: _Inputs, poe: datetime, note: str, revocation: str, otherwise: SubIndication, *,
                  fetching: bool) -> ChainResult:
    """The path validated again at ``poe`` (revocation values issued later accepted): PASSED or ``otherwise``."""
    context = _context(inputs, poe, fetching, retroactive=True)
    try:
        path = await _validate(inputs, context)
    except PathValidationError as exc:
        return _failed(exc, otherwise, f"{note}, but the path does not validate then: {exc.failure_msg}", revocation)
    except (PathBuildingError, ValidationError) as exc:
        return ChainResult(Indication.INDETERMINATE, otherwise, (inputs.signer.dump(),),
                           f"{note}, but the path does not validate then: {exc}", revocation)
    return ChainResult(Indication.TOTAL_PASSED, None, _chain(path), f"{note}, and the path is valid then",
                       f"{_revocation_used(inputs, context)}; {revocation}")


def _revocation_used(inputs: _Inputs, context: ValidationContext) -> str:
    """Which revocation value speaks for the signer: an OCSP response for its serial, else its issuer's CRL."""
    serial, issuer = inputs.signer.serial_number, inputs.signer.issuer
    for response in context.ocsps:
        single = _single_response(response, serial)
        if single is not None:
            produced = response.basic_ocsp_response["tbs_response_data"]["produced_at"].native
            der = response.dump()
            origin = _origin(der, inputs.own_ocsps, inputs.ocsps)
            return f"OCSP {single['cert_status'].name}, produced {produced.isoformat()}, {origin}"
    for crl in context.crls:
        if crl.issuer == issuer:
            origin = _origin(crl.dump(), inputs.own_crls, inputs.crls)
            update = crl["tbs_cert_list"]["this_update"].native
            return f"CRL of {issuer.human_friendly}, this update {update.isoformat()}, {origin}"
    return "none needed"


def _origin(der: bytes, own: tuple[bytes, ...], embedded: tuple[bytes, ...]) -> str:
    return "in-process" if der in own else "embedded" if der in embedded else "fetched"


def _single_response(response: asn1_ocsp.OCSPResponse, serial: int) -> asn1_ocsp.SingleResponse | None:
    if response["response_status"].native != "successful":
        return None
    for single in response.basic_ocsp_response["tbs_response_data"]["responses"]:
        if single["cert_id"]["serial_number"].native == serial:
            return single
    return None
