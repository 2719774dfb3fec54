"""Minimal inputs the fuzz harnesses found that need the services (HSM, PKI): each is answered now."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import core
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from adapters.timestamp.client import InvalidToken, build_request, parse_response, verify_token

from server.validation.model import Indication, SubIndication
from server.signing.order import Format
from server.web.soap import DSS_NS, SOAP11_ENV
from tests.fuzz.context import FuzzContext
from tests.fuzz.runner import execute
from tests.fuzz.targets import TARGETS

pytestmark = pytest.mark.integration

RELATIVE_NAMESPACE = b'<a xmlns:d="h"><b/></a>'
"""A namespace name that is a relative URI: well-formed XML, but Canonical XML 1.0 refuses it (libxml2's
C14N fails), so it can be neither signed nor verified."""


def test_signing_an_xml_document_with_a_relative_namespace_uri_is_refused(fuzz: FuzzContext) -> None:
    request = (f'<soap:Envelope xmlns:soap="{SOAP11_ENV}"><soap:Body><dss:SignRequest xmlns:dss="{DSS_NS}">'
               "<dss:OptionalInputs><dss:AdditionalProfile>urn:oasis:names:tc:dss:1.0:profiles:AdES"
               '</dss:AdditionalProfile><ades:SignatureForm xmlns:ades="urn:oasis:names:tc:dss:1.0:profiles:AdES:schema#">'
               "http://uri.etsi.org/ades/191x2/level/baseline/B-B#</ades:SignatureForm></dss:OptionalInputs>"
               f"<dss:InputDocuments><dss:Document><dss:Base64XML>{base64.b64encode(RELATIVE_NAMESPACE).decode()}"
               "</dss:Base64XML></dss:Document></dss:InputDocuments></dss:SignRequest></soap:Body></soap:Envelope>")
    execute(TARGETS["dss-sign"], fuzz, request.encode())  # raises the crash it used to be
    status, envelope = fuzz.dss.handle(request.encode(), fuzz.principal)
    assert status == 200 and b"RequesterError" in envelope and b"relative" in envelope


@pytest.mark.parametrize("where", [b'<order xmlns="urn:example:order"', b"<ds:SignedInfo"])
def test_a_signature_over_a_relative_namespace_uri_is_a_format_failure(fuzz: FuzzContext, where: bytes) -> None:
    signed = fuzz.signed(Format.XADES).replace(where, where + b' xmlns:d="h"', 1)
    assert signed != fuzz.signed(Format.XADES)
    (report,) = fuzz.verification.verify(signed).signatures
    assert (report.indication, report.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE)
    assert any("canonical form" in m for m in report.messages), report.messages


def test_an_ocsp_request_for_a_negative_serial_number_is_malformed(fuzz: FuzzContext) -> None:
    good = ocsp.OCSPRequestBuilder().add_certificate(
        x509.load_der_x509_certificate(fuzz.signer_chain[0]), x509.load_der_x509_certificate(fuzz.signer_chain[1]),
        hashes.SHA256()).build().public_bytes(Encoding.DER)
    request = asn1_ocsp.OCSPRequest.load(good)
    request["tbs_request"]["request_list"][0]["req_cert"]["serial_number"] = -5  # found by atheris (ocsp)
    reply = fuzz.ocsp.respond(request.dump(force=True))
    assert ocsp.load_der_ocsp_response(reply.der).response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert reply.problem is not None and "negative" in reply.problem


def test_a_token_with_an_attribute_value_asn1crypto_cannot_read_is_invalid(fuzz: FuzzContext) -> None:
    digest = hashlib.sha256(b"fuzz").digest()
    _, token = parse_response(fuzz.tsa.respond(build_request(digest, "sha256", 3)).der)
    assert token is not None
    verify_token(token, digest)  # the token as issued is fine
    info = asn1_cms.ContentInfo.load(token)
    signer = info["content"]["signer_infos"][0]
    signer["unsigned_attrs"] = [{"type": "1.2.3.4", "values": [core.Any.load(b"\x08\x00")]}]  # tag 8: InstanceOf
    with pytest.raises(InvalidToken) as refused:  # found by atheris (tsp-response)
        verify_token(info.dump(), digest)
    assert "well-formed" in str(refused.value)


def test_a_signer_certificate_the_strict_parser_refuses_is_reported_not_an_internal_error(
        fuzz: FuzzContext) -> None:
    found = Path(__file__).parent / "findings" / "dss-verify-report-certificate.xml"  # found by atheris (dss-verify)
    execute(TARGETS["dss-verify"], fuzz, found.read_bytes())  # raises the crash it used to be
