"""Round trip at every level for XAdES and CAdES through the one service pair callers use
(SigningService.sign → VerificationService.verify), with the signer revoked afterwards: B-B has no
proof of existence; B-T's timestamp is one; B-LT and B-LTA still pass offline on the embedded data."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from server.identity.users import UserService
from server.signing.keys import SigningKeys
from server.signing.levels import Level, Packaging
from server.signing.order import Document, Format, SignOrder
from server.signing.service import SigningService
from server.validation.model import Indication, SubIndication
from server.validation.service import VerificationService
from tests.fixtures.pki import OnlinePki

pytestmark = pytest.mark.integration

ORDER = b'<?xml version="1.0"?><order xmlns="urn:example:order"><item>Schrauben M6</item><total>42.00</total></order>'
FILE = b"Liefervertrag, Anlage 3\n" * 50


@dataclass
class Services:
    pki: OnlinePki
    signing: SigningService
    verification: VerificationService
    offline: VerificationService  # validation.allow_fetching = false: the embedded data only
    user_id: int
    serial: str


@pytest.fixture
def services(pki_online: OnlinePki) -> Iterator[Services]:
    users = UserService(pki_online.engine, pki_online.audit, 0)
    users.add("greta", "greta@example.com", "signer", "correct horse battery")
    serial = pki_online.ca.issue_user("greta", "test").serial
    root = lambda: pki_online.ca.ca_certificate_der("ROOT")  # noqa: E731
    verification = VerificationService(pki_online.settings, root)
    offline = VerificationService(replace(pki_online.settings, validation=replace(
        pki_online.settings.validation, allow_fetching=False)), root)
    signing = SigningService(pki_online.settings, pki_online.engine, pki_online.ca, lambda: pki_online.hsm,
                             pki_online.audit, SigningKeys(pki_online.engine, pki_online.audit, pki_online.ca),
                             lambda: verification.trust().roots)
    yield Services(pki_online, signing, verification, offline, users.find("greta").user_id, serial)


def _sign(s: Services, fmt: Format, level: Level) -> bytes:
    if fmt is Format.XADES:
        order = SignOrder(fmt, level, Packaging.ENVELOPED, (Document("order.xml", ORDER, mime_type="application/xml",
                                                                     is_xml=True),))
    else:
        order = SignOrder(fmt, level, Packaging.ENVELOPING, (Document("file.txt", FILE),))
    (signed,) = s.signing.sign(s.user_id, "greta", order)
    return signed.data


@pytest.mark.parametrize("fmt", [Format.XADES, Format.CADES])
def test_every_level_round_trips_and_survives_the_signers_revocation(services: Services, fmt: Format) -> None:
    signed = {level: _sign(services, fmt, level) for level in Level}
    for level, data in signed.items():
        (report,) = services.verification.verify(data).signatures
        assert (report.indication, report.level) == (Indication.TOTAL_PASSED, level.value), (level, report.messages)
        assert report.scopes, level

    time.sleep(1.1)  # the revocation lies after every timestamp's genTime (whole seconds)
    services.pki.ca.revoke(services.serial, "keyCompromise", "test")
    (b_b,) = services.verification.verify(signed[Level.B_B]).signatures
    assert (b_b.indication, b_b.sub_indication) == (Indication.INDETERMINATE, SubIndication.REVOKED_NO_POE)
    for level in (Level.B_T, Level.B_LT, Level.B_LTA):
        (report,) = services.verification.verify(signed[level]).signatures
        assert report.indication is Indication.TOTAL_PASSED, (level, report.messages)
        assert report.best_signature_time is not None
    for level in (Level.B_LT, Level.B_LTA):  # no OCSP or CRL fetched: what the signature carries suffices
        (report,) = services.offline.verify(signed[level]).signatures
        assert (report.indication, report.level) == (Indication.TOTAL_PASSED, level.value), (level, report.messages)


def test_with_the_ocsp_responder_down_b_lt_embeds_the_crl_and_verification_uses_it(services: Services) -> None:
    """The responder the AIA names drops every connection: signing takes the CRL of the distribution point, and
    both verifications (fetching, and offline on the embedded data) say the CRL decided."""
    services.pki.ocsp_down.set()
    data = _sign(services, Format.CADES, Level.B_LT)
    for verification, origin in ((services.verification, "embedded"), (services.offline, "embedded")):
        (report,) = verification.verify(data).signatures
        assert (report.indication, report.level) == (Indication.TOTAL_PASSED, Level.B_LT.value), report.messages
        revocation = [m for m in report.messages if m.startswith("revocation: ")]
        assert revocation and revocation[0].startswith("revocation: CRL of ") and origin in revocation[0], \
            report.messages
    assert "answered" not in services.pki.ocsp_asked
    (b_b,) = services.verification.verify(_sign(services, Format.CADES, Level.B_B)).signatures
    assert b_b.indication is Indication.TOTAL_PASSED, b_b.messages  # nothing embedded: the CRL is fetched
    assert any(m.startswith("revocation: CRL of ") and "fetched" in m for m in b_b.messages), b_b.messages
    assert "dropped" in services.pki.ocsp_asked and "answered" not in services.pki.ocsp_asked
