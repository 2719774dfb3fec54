"""Revocation of the instance's own certificates is checked in-process, never over HTTP to itself (issue #11:
under load a Verify that fetched OCSP from its own busy server timed out and answered 'passed: false').

The PKI's certificates name an HTTP sink as their OCSP, CRL and AIA location: a stand-in for the server's own
endpoints while its threads are all busy (every request fails). Whatever the verdict, the sink sees no request.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509

from adapters.hsm.keys import hsm_private_key
from adapters.hsm.pkcs11 import Pkcs11Hsm
from server.pki.ca import ROOT, serial_hex
from server.pki.ocsp import OcspResponder
from server.signing.cades import sign_cades
from server.validation.model import Indication, SignatureReport, SubIndication
from server.validation.service import VerificationService, own_revocation
from tests.fixtures.http_sink import HttpSink, http_sink  # noqa: F401
from tests.fixtures.pki import Pki, _pki_on_token, pki_settings, user_key
from tests.fixtures.softhsm import SoftHsmToken

pytestmark = pytest.mark.integration

DOCUMENT = b"a contract verified while the server is busy\n" * 20


@pytest.fixture
def sunk_pki(tmp_path: Path, database_url: str, softhsm_token: SoftHsmToken, hsm: Pkcs11Hsm,
             http_sink: HttpSink) -> Iterator[Pki]:  # noqa: F811
    """The test PKI whose certificates' OCSP, CRL and CA URLs all point at ``http_sink`` (it answers 202)."""
    settings = pki_settings(tmp_path / "var", database_url, public_base_url=f"http://127.0.0.1:{http_sink.port}")
    yield from _pki_on_token(settings, softhsm_token, hsm)


def _service(pki: Pki, *, fetching: bool, own: bool = True) -> VerificationService:
    settings = replace(pki.settings, validation=replace(pki.settings.validation, allow_fetching=fetching))
    responder = OcspResponder(pki.ca, lambda: pki.hsm, hsm_private_key, settings.pki)
    return VerificationService(settings, lambda: pki.ca.ca_certificate_der(ROOT),
                               own_revocation(pki.ca, responder) if own else None)


def _verify(service: VerificationService, signature: bytes) -> SignatureReport:
    [report] = service.verify(signature, detached={"contract.txt": DOCUMENT}).signatures
    return report


@pytest.mark.parametrize("fetching", [False, True], ids=["fetching-disabled", "fetching-allowed"])
def test_an_own_ca_signature_passes_with_its_revocation_checked_in_process(sunk_pki: Pki, http_sink: HttpSink,
                                                                          fetching: bool) -> None:
    signature = sign_cades(user_key(sunk_pki, "ilse"), content=DOCUMENT)  # B-B: no revocation data inside
    report = _verify(_service(sunk_pki, fetching=fetching), signature)
    assert report.indication is Indication.TOTAL_PASSED, report.messages
    assert any(m.startswith("revocation: OCSP good") and m.endswith("in-process") for m in report.messages), \
        report.messages
    assert http_sink.received == []


def test_an_own_certificate_revoked_is_found_in_process(sunk_pki: Pki, http_sink: HttpSink) -> None:
    key = user_key(sunk_pki, "jonas")
    signature = sign_cades(key, content=DOCUMENT)
    sunk_pki.ca.revoke(serial_hex(x509.load_der_x509_certificate(key.chain[0]).serial_number), "keyCompromise",
                       "test")
    report = _verify(_service(sunk_pki, fetching=True), signature)
    assert (report.indication, report.sub_indication) == (Indication.INDETERMINATE, SubIndication.REVOKED_NO_POE)
    assert http_sink.received == []


def test_fetching_disabled_fetches_nothing_even_without_an_answer(sunk_pki: Pki, http_sink: HttpSink) -> None:
    """Without the own responder (as for a foreign CA) and fetching disabled, the status stays unknown."""
    signature = sign_cades(user_key(sunk_pki, "karl"), content=DOCUMENT)
    report = _verify(_service(sunk_pki, fetching=False, own=False), signature)
    assert (report.indication, report.sub_indication) == (Indication.INDETERMINATE, SubIndication.TRY_LATER)
    assert http_sink.received == []
