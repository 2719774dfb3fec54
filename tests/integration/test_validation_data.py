"""Validation data for B-LT: our PKI's OCSP and CRL fetched through the certificates' own URLs."""

from __future__ import annotations

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from server.errors import SiegelError
from server.identity.users import UserService
from server.signing.validation_data import collect_validation_data
from tests.fixtures.pki import OnlinePki
from tests.fixtures.tsa import ReferenceTsa

pytestmark = pytest.mark.integration


def _user_chain(pki: OnlinePki, name: str = "anna") -> tuple[list[bytes], str]:
    UserService(pki.engine, pki.audit, 0).add(name, f"{name}@example.com", "signer", "correct horse battery")
    cert = pki.ca.issue_user(name, "test")
    return pki.hsm.certificate_chain(cert.key_label), cert.serial


def test_a_users_chain_comes_with_fetched_ocsp_responses_up_to_the_root(pki_online: OnlinePki) -> None:
    chain, _ = _user_chain(pki_online)
    root = pki_online.ca.ca_certificate_der("ROOT")
    data = collect_validation_data(chain, [root])
    assert data.certificates[0] == chain[0] and data.certificates[-1] == root
    assert set(chain) <= set(data.certificates)
    assert data.ocsps or data.crls
    statuses = [asn1_ocsp.OCSPResponse.load(o).basic_ocsp_response["tbs_response_data"]["responses"][0]
                ["cert_status"].name for o in data.ocsps]
    assert statuses and set(statuses) == {"good"}
    assert x509.load_der_x509_certificate(chain[0]).subject.rfc4514_string()  # a real certificate


def test_a_revoked_certificate_gets_no_validation_data(pki_online: OnlinePki) -> None:
    chain, serial = _user_chain(pki_online, "bert")
    pki_online.ca.revoke(serial, "keyCompromise", "test")
    with pytest.raises(SiegelError, match="revoked"):
        collect_validation_data(chain, [pki_online.ca.ca_certificate_der("ROOT")])


def test_an_untrusted_chain_is_refused(pki_online: OnlinePki, reference_tsa: ReferenceTsa) -> None:
    chain, _ = _user_chain(pki_online, "carl")
    other = reference_tsa.ca.public_bytes(Encoding.DER)
    with pytest.raises(SiegelError, match="trusted root"):
        collect_validation_data(chain, [other])


def test_with_the_ocsp_responder_down_the_crl_proves_the_status(pki_online: OnlinePki) -> None:
    """The responder named in the AIA drops every connection: the CRL of the distribution point is taken."""
    chain, _ = _user_chain(pki_online, "dora")
    pki_online.ocsp_down.set()
    data = collect_validation_data(chain, [pki_online.ca.ca_certificate_der("ROOT")])
    assert "dropped" in pki_online.ocsp_asked and "answered" not in pki_online.ocsp_asked  # OCSP was tried
    assert not data.ocsps
    issuer = x509.load_der_x509_certificate(chain[0]).issuer
    assert issuer in [x509.load_der_x509_crl(c).issuer for c in data.crls], data.crls
