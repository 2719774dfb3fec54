"""OASIS DSS ``SignRequest`` on ``/dss`` for CAdES: documents and document hashes, levels, refusals.

Every request and response is validated against the official OASIS DSS core schema; signatures are
checked by ``openssl cms -verify`` against the internal root.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
import xmlschema
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from server.web.soap import DSS_NS, SOAP11_ENV
from server.xmlsafe import parse_xml
from tests.e2e.test_dss_soap import SOAP_HEADERS, envelope, official  # noqa: F401 (official is a fixture)
from tests.fixtures.server import SiegelInstance

pytestmark = pytest.mark.e2e

DOCUMENT = b"Bestellung 4711: 100 Schrauben M6\n" * 20
ADES = 'xmlns:ades="urn:oasis:names:tc:dss:1.0:profiles:AdES:schema#"'
LEVEL_URI = "http://uri.etsi.org/ades/191x2/level/baseline/{}#"
SUCCESS = "urn:oasis:names:tc:dss:1.0:resultmajor:Success"
REQUESTER = "urn:oasis:names:tc:dss:1.0:resultmajor:RequesterError"
RESPONDER = "urn:oasis:names:tc:dss:1.0:resultmajor:ResponderError"
NOT_SUPPORTED = "urn:oasis:names:tc:dss:1.0:resultminor:NotSupported"
SIGNATURE_TIME_STAMP = "1.2.840.113549.1.9.16.2.14"


def _options(signature_type: str | None = "urn:ietf:rfc:3369", form: str | None = None) -> str:
    parts = []
    if signature_type:
        parts.append(f"<dss:SignatureType>{signature_type}</dss:SignatureType>")
    if form:
        parts.append("<dss:AdditionalProfile>urn:oasis:names:tc:dss:1.0:profiles:AdES</dss:AdditionalProfile>"
                     f"<ades:SignatureForm {ADES}>{form}</ades:SignatureForm>")
    return f"<dss:OptionalInputs>{''.join(parts)}</dss:OptionalInputs>" if parts else ""


def _document(content: bytes = DOCUMENT, mime: str = "text/plain") -> str:
    return (f'<dss:Document><dss:Base64Data MimeType="{mime}">{base64.b64encode(content).decode()}'
            "</dss:Base64Data></dss:Document>")


def _digest(value: bytes, uri: str = "http://www.w3.org/2001/04/xmlenc#sha256") -> str:
    return (f'<dss:DocumentHash><ds:DigestMethod xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Algorithm="{uri}"/>'
            f'<ds:DigestValue xmlns:ds="http://www.w3.org/2000/09/xmldsig#">{base64.b64encode(value).decode()}'
            "</ds:DigestValue></dss:DocumentHash>")


def _sign(inst: SiegelInstance, schema: xmlschema.XMLSchema, options: str, documents: str,
          headers: dict[str, str] | None = None) -> etree._Element:
    body = f'<dss:SignRequest RequestID="t-1">{options}<dss:InputDocuments>{documents}</dss:InputDocuments>' \
           "</dss:SignRequest>"
    request = envelope(body)
    schema.validate(parse_xml(request, max_depth=64).find(f"{{{SOAP11_ENV}}}Body")[0])
    r = requests.post(inst.url + "/dss", data=request, headers={**SOAP_HEADERS, **(headers or {})}, auth=inst.auth,
                      timeout=60)
    assert r.status_code == 200, r.text
    response = parse_xml(r.content, max_depth=64).find(f"{{{SOAP11_ENV}}}Body")[0]
    schema.validate(parse_xml(etree.tostring(response), max_depth=64))
    assert response.get("RequestID") == "t-1"
    return response


def _result(response: etree._Element) -> tuple[str, str | None, str]:
    result = response.find(f"{{{DSS_NS}}}Result")
    return (result.findtext(f"{{{DSS_NS}}}ResultMajor"), result.findtext(f"{{{DSS_NS}}}ResultMinor"),
            result.findtext(f"{{{DSS_NS}}}ResultMessage"))


def _signature(response: etree._Element) -> bytes:
    assert _result(response)[0] == SUCCESS, _result(response)
    node = response.find(f"{{{DSS_NS}}}SignatureObject/{{{DSS_NS}}}Base64Signature")
    assert node.get("Type") == "urn:ietf:rfc:3369"
    return base64.b64decode(node.text)


def _openssl_verifies(inst: SiegelInstance, tmp_path: Path, signature: bytes, content: bytes = DOCUMENT) -> None:
    root = x509.load_der_x509_certificate(requests.get(inst.url + "/ca/ROOT.crt", timeout=10).content)
    (tmp_path / "root.pem").write_bytes(root.public_bytes(Encoding.PEM))
    (tmp_path / "document.bin").write_bytes(content)
    (tmp_path / "signature.p7s").write_bytes(signature)
    done = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", "signature.p7s",
                           "-content", "document.bin", "-CAfile", "root.pem", "-purpose", "any", "-out", "/dev/null"],
                          cwd=tmp_path, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0 and b"Verification successful" in done.stderr, done.stderr


def _unsigned_types(signature: bytes) -> set[str]:
    info = cms.ContentInfo.load(signature)["content"]["signer_infos"][0]
    return {a["type"].dotted for a in info["unsigned_attrs"]} if info["unsigned_attrs"].native else set()


def test_a_document_signed_at_b_b(siegel_server: SiegelInstance, official: Any, tmp_path: Path) -> None:
    signature = _signature(_sign(siegel_server, official, _options(form=LEVEL_URI.format("B-B")), _document()))
    _openssl_verifies(siegel_server, tmp_path, signature)
    assert SIGNATURE_TIME_STAMP not in _unsigned_types(signature)


@pytest.mark.parametrize("form", [None, LEVEL_URI.format("B-T"), "urn:oasis:names:tc:dss:1.0:profiles:AdES:forms:ES-T"],
                         ids=["default-level", "etsi-uri", "oasis-alias"])
def test_b_t_is_the_default_and_has_aliases(siegel_server: SiegelInstance, official: Any, tmp_path: Path,
                                            form: str | None) -> None:
    signature = _signature(_sign(siegel_server, official, _options(signature_type=None, form=form), _document()))
    _openssl_verifies(siegel_server, tmp_path, signature)
    assert SIGNATURE_TIME_STAMP in _unsigned_types(signature)


def test_add_timestamp_and_the_signers_claims_over_dss(siegel_server: SiegelInstance, official: Any,
                                                       tmp_path: Path) -> None:
    """AddTimestamp raises a B-B request to B-T; commitment type and production place become signed attributes;
    the ResultMessage says its language."""
    claims = ("<dss:Properties><dss:SignedProperties><dss:Property><dss:Identifier>http://uri.etsi.org/01903/v1.3.2#"
              "CommitmentTypeIndication</dss:Identifier><dss:Value>http://uri.etsi.org/01903/v1.2.2#ProofOfApproval"
              "</dss:Value></dss:Property><dss:Property><dss:Identifier>http://uri.etsi.org/01903/v1.3.2#"
              "SignatureProductionPlace</dss:Identifier><dss:Value>München; 80331; DE</dss:Value></dss:Property>"
              "</dss:SignedProperties></dss:Properties><dss:AddTimestamp/>")
    options = _options(form=LEVEL_URI.format("B-B")).replace("</dss:OptionalInputs>", claims + "</dss:OptionalInputs>")
    response = _sign(siegel_server, official, options, _document())
    message = response.find(f"{{{DSS_NS}}}Result/{{{DSS_NS}}}ResultMessage")
    assert message.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    signature = _signature(response)
    _openssl_verifies(siegel_server, tmp_path, signature)
    assert SIGNATURE_TIME_STAMP in _unsigned_types(signature)
    signed = {a["type"].dotted: a["values"] for a in cms.ContentInfo.load(signature)["content"]["signer_infos"][0]
              ["signed_attrs"]}
    commitment = signed["1.2.840.113549.1.9.16.2.16"][0]  # commitment-type-indication
    assert commitment["commitment_type_id"].dotted == "1.2.840.113549.1.9.16.6.5"  # proof of approval
    location = signed["1.2.840.113549.1.9.16.2.17"][0].native  # signer-location
    assert location["country_name"] == "DE" and location["locality_name"] == "München", location


@pytest.mark.parametrize(("uri", "algorithm"), [("http://www.w3.org/2001/04/xmlenc#sha256", "sha256"),
                                                ("http://www.w3.org/2001/04/xmldsig-more#sha384", "sha384"),
                                                ("http://www.w3.org/2001/04/xmlenc#sha512", "sha512")])
def test_a_document_hash_is_signed_without_the_document(siegel_server: SiegelInstance, official: Any,
                                                       tmp_path: Path, uri: str, algorithm: str) -> None:
    digest = hashlib.new(algorithm, DOCUMENT).digest()
    signature = _signature(_sign(siegel_server, official, _options(form=LEVEL_URI.format("B-B")), _digest(digest, uri)))
    _openssl_verifies(siegel_server, tmp_path, signature)


def test_the_account_comes_from_authentication_not_from_a_header(siegel_server: SiegelInstance,
                                                                 official: Any) -> None:
    response = _sign(siegel_server, official, _options(form=LEVEL_URI.format("B-B")), _document(),
                     headers={"X-Siegel-Principal": "999:admin"})
    signed_data = cms.ContentInfo.load(_signature(response))["content"]
    subjects = [c.chosen.subject.native.get("common_name") for c in signed_data["certificates"]]
    assert siegel_server.user in subjects


MINOR = "urn:oasis:names:tc:dss:1.0:resultminor:"
SIEGEL_MINOR = "urn:siegel:dss:1.0:resultminor:"
DTD_XML = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>'


def _xml_document(ident: str, content: bytes = b"<order><item>Schrauben</item></order>") -> str:
    return f'<dss:Document ID="{ident}"><dss:Base64XML>{base64.b64encode(content).decode()}</dss:Base64XML></dss:Document>'


@pytest.mark.parametrize(("options", "documents", "major", "minor", "message"), [
    (_options("urn:example:unknown"), _document(), REQUESTER, SIEGEL_MINOR + "UnknownSignatureType", "is unknown"),
    (_options(form="urn:example:level"), _document(), REQUESTER, SIEGEL_MINOR + "UnknownSignatureForm",
     "expected an ETSI baseline level URI"),
    (_options(), _digest(bytes(20)), REQUESTER, SIEGEL_MINOR + "InvalidDigestValue", "has 32 bytes, this one 20"),
    (_options(), _digest(bytes(32), "http://www.w3.org/2000/09/xmldsig#sha1"), REQUESTER,
     SIEGEL_MINOR + "UnsupportedDigestMethod", "DigestMethod"),
    ("<dss:OptionalInputs><dss:SignatureType>urn:ietf:rfc:3275</dss:SignatureType>"
     '<dss:SignaturePlacement WhichDocument="hash" CreateEnvelopedSignature="true">'
     "<dss:XPathFirstChildOf>/*</dss:XPathFirstChildOf></dss:SignaturePlacement></dss:OptionalInputs>",
     _xml_document("order") + _digest(bytes(32)).replace("<dss:DocumentHash>", '<dss:DocumentHash ID="hash">'),
     REQUESTER, MINOR + "ReferencedDocumentNotPresent", "is a DocumentHash"),
    ("<dss:OptionalInputs><dss:KeySelector><ds:KeyInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">"
     "<ds:KeyName>ca-root</ds:KeyName></ds:KeyInfo></dss:KeySelector></dss:OptionalInputs>", _document(),
     REQUESTER, MINOR + "invalid:KeyLookupFailed", "no key 'ca-root' this account may sign with"),
    (_options(None), _xml_document("evil", DTD_XML), REQUESTER, MINOR + "NotParseableXMLDocument", "document 'evil'"),
    (_options(), _document().replace("<dss:Document>", '<dss:Document RefURI="a.txt">') * 2, REQUESTER,
     SIEGEL_MINOR + "DuplicateDocumentName", "the same name 'a.txt'"),
    (_options("http://uri.etsi.org/19162/v1.1.1"),
     _document().replace("<dss:Document>", '<dss:Document RefURI="annex/a.txt">') + _document(b"other")
     + _document(b"third").replace("<dss:Document>", '<dss:Document RefURI="annex/a.txt">'), REQUESTER,
     SIEGEL_MINOR + "DuplicateDocumentName", "the same name 'annex/a.txt'"),
], ids=["unknown-type", "unknown-level", "short-digest", "sha1", "which-document-hash", "foreign-key", "dtd",
         "same-name", "same-name-asic"])
def test_what_cannot_be_signed_gets_a_specific_result(siegel_server: SiegelInstance, official: Any, options: str,
                                                      documents: str, major: str, minor: str | None,
                                                      message: str) -> None:
    before = _audit_entries(siegel_server)
    response = _sign(siegel_server, official, options, documents)
    got_major, got_minor, got_message = _result(response)
    assert (got_major, got_message) == (major, got_message) and message in got_message, _result(response)
    if minor is not None:
        assert got_minor == minor
    assert response.find(f"{{{DSS_NS}}}SignatureObject") is None
    assert response.find(f"{{{DSS_NS}}}OptionalOutputs") is None
    assert _audit_entries(siegel_server) == before  # nothing signed, nothing recorded


def _audit_entries(inst: SiegelInstance) -> int:
    """Audit entries other than the scheduler's (its CRL renewals come when they are due, not from requests)."""
    with sqlite3.connect(inst.data_dir / "siegel.db") as db:
        return int(db.execute("SELECT COUNT(*) FROM audit_log WHERE actor != 'scheduler'").fetchone()[0])


def test_base64_garbage_gets_a_specific_minor(siegel_server: SiegelInstance) -> None:
    """The request is not schema-valid, so it is sent unchecked; libxml2 lets such base64 through, Siegel not."""
    body = ('<dss:SignRequest><dss:InputDocuments><dss:Document><dss:Base64Data MimeType="text/plain">'
            "!!no base64!!</dss:Base64Data></dss:Document></dss:InputDocuments></dss:SignRequest>")
    before = _audit_entries(siegel_server)
    r = requests.post(siegel_server.url + "/dss", data=envelope(body), headers=SOAP_HEADERS, auth=siegel_server.auth,
                      timeout=30)
    assert r.status_code == 200
    result = parse_xml(r.content, max_depth=16).find(f".//{{{DSS_NS}}}Result")
    assert result.findtext(f"{{{DSS_NS}}}ResultMajor") == REQUESTER
    assert result.findtext(f"{{{DSS_NS}}}ResultMinor") == SIEGEL_MINOR + "NotBase64"
    assert "Base64Data is not base64" in result.findtext(f"{{{DSS_NS}}}ResultMessage")
    assert _audit_entries(siegel_server) == before  # nothing signed, nothing recorded


def test_which_document_naming_no_input_document_gets_a_specific_minor(siegel_server: SiegelInstance) -> None:
    """An IDREF to no ID makes the request schema-invalid, so it is sent unchecked; Siegel names the missing one."""
    body = ("<dss:SignRequest><dss:OptionalInputs><dss:SignatureType>urn:ietf:rfc:3275</dss:SignatureType>"
            '<dss:SignaturePlacement WhichDocument="nowhere" CreateEnvelopedSignature="true"><dss:XPathFirstChildOf>'
            "/*</dss:XPathFirstChildOf></dss:SignaturePlacement></dss:OptionalInputs><dss:InputDocuments>"
            f'{_xml_document("order")}</dss:InputDocuments></dss:SignRequest>')
    before = _audit_entries(siegel_server)
    r = requests.post(siegel_server.url + "/dss", data=envelope(body), headers=SOAP_HEADERS, auth=siegel_server.auth,
                      timeout=30)
    result = parse_xml(r.content, max_depth=16).find(f".//{{{DSS_NS}}}Result")
    assert result.findtext(f"{{{DSS_NS}}}ResultMajor") == REQUESTER, r.text
    assert result.findtext(f"{{{DSS_NS}}}ResultMinor") == MINOR + "ReferencedDocumentNotPresent", r.text
    assert "'nowhere' names no input document" in result.findtext(f"{{{DSS_NS}}}ResultMessage")
    assert _audit_entries(siegel_server) == before


def test_several_documents_are_signed_one_by_one(siegel_server: SiegelInstance, official: Any,
                                                 tmp_path: Path) -> None:
    second = b"Lieferschein 0815\n" * 10
    documents = (_document().replace("<dss:Document>", '<dss:Document ID="first">')
                 + _document(second).replace("<dss:Document>", '<dss:Document ID="second">'))
    response = _sign(siegel_server, official, _options(form=LEVEL_URI.format("B-B")), documents)
    assert _result(response)[0] == SUCCESS, _result(response)
    batch = response.findall(f"{{{DSS_NS}}}OptionalOutputs/{{urn:siegel:dss:1.0}}SignedDocument")
    assert [b.get("WhichDocument") for b in batch] == ["first", "second"]
    for item, content in zip(batch, (DOCUMENT, second)):
        signature = base64.b64decode(item.findtext(f"{{{DSS_NS}}}SignatureObject/{{{DSS_NS}}}Base64Signature"))
        _openssl_verifies(siegel_server, tmp_path, signature, content)
