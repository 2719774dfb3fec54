"""DSS ``SignRequest`` for XAdES (enveloped by MIME type, enveloping by IncludeObject, detached), ASiC-E,
B-LT over SOAP, a granted key by KeySelector, and the streamed REST upload; each signature checked by
``xmlsec1 --verify`` or ``openssl cms -verify`` and by Siegel's own verification."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
import xmlschema
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from server.signing.service import KEY_CACHE_SECONDS
from server.web.soap import DSS_NS, SOAP11_ENV
from server.xmlsafe import parse_xml
from tests.e2e.test_dss_soap import SOAP_HEADERS, envelope, official  # noqa: F401 (official is a fixture)
from tests.fixtures.server import SiegelInstance

pytestmark = pytest.mark.e2e

ORDER = b'<?xml version="1.0" encoding="UTF-8"?>\n<order xmlns="urn:example:order"><item n="1">Schrauben M6</item></order>'
SUCCESS = "urn:oasis:names:tc:dss:1.0:resultmajor:Success"
XMLDSIG = "urn:ietf:rfc:3275"
ADES = 'xmlns:ades="urn:oasis:names:tc:dss:1.0:profiles:AdES:schema#"'
XADES_NS = "http://uri.etsi.org/01903/v1.3.2#"
SIGNED_PROPERTIES_ID = f"--id-attr:Id {XADES_NS}:SignedProperties"


def _form(level: str) -> str:
    return ("<dss:AdditionalProfile>urn:oasis:names:tc:dss:1.0:profiles:AdES</dss:AdditionalProfile>"
            f"<ades:SignatureForm {ADES}>http://uri.etsi.org/ades/191x2/level/baseline/{level}#</ades:SignatureForm>")


def _sign(inst: SiegelInstance, schema: xmlschema.XMLSchema, options: str, documents: str,
          auth: tuple[str, str] | None = None) -> etree._Element:
    body = (f'<dss:SignRequest RequestID="x-1"><dss:OptionalInputs>{options}</dss:OptionalInputs>'
            f"<dss:InputDocuments>{documents}</dss:InputDocuments></dss:SignRequest>")
    request = envelope(body)
    schema.validate(parse_xml(request, max_depth=64).find(f"{{{SOAP11_ENV}}}Body")[0])
    r = requests.post(inst.url + "/dss", data=request, headers=SOAP_HEADERS, auth=auth or inst.auth, timeout=60)
    assert r.status_code == 200, r.text
    response = parse_xml(r.content, max_depth=128).find(f"{{{SOAP11_ENV}}}Body")[0]
    schema.validate(parse_xml(etree.tostring(response), max_depth=128))
    result = response.find(f"{{{DSS_NS}}}Result")
    assert result.findtext(f"{{{DSS_NS}}}ResultMajor") == SUCCESS, result.findtext(f"{{{DSS_NS}}}ResultMessage")
    return response


def _xml_document(ident: str, content: bytes = ORDER) -> str:
    return f'<dss:Document ID="{ident}"><dss:Base64XML>{base64.b64encode(content).decode()}</dss:Base64XML></dss:Document>'


def _root_pem(inst: SiegelInstance, where: Path) -> None:
    for name in ("ROOT", "ISSUING"):
        der = requests.get(f"{inst.url}/ca/{name}.crt", timeout=10).content
        (where / f"{name.lower()}.pem").write_bytes(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM))


def _xmlsec1(where: Path, signed: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["xmlsec1", "--verify", "--trusted-pem", "root.pem", "--untrusted-pem", "issuing.pem",
                           *SIGNED_PROPERTIES_ID.split(), signed], cwd=where, capture_output=True, timeout=60,
                          check=False)


def _document_with_signature(response: etree._Element) -> bytes:
    document = response.find(f"{{{DSS_NS}}}OptionalOutputs/{{{DSS_NS}}}DocumentWithSignature/{{{DSS_NS}}}Document")
    assert document is not None, etree.tostring(response)
    text = document.findtext(f"{{{DSS_NS}}}Base64XML") or document.findtext(f"{{{DSS_NS}}}Base64Data")
    return base64.b64decode(text)


def _verified(inst: SiegelInstance, data: bytes, files: dict[str, bytes] | None = None) -> list[dict[str, Any]]:
    parts = [("signature", ("signed", data))] + [("document", item) for item in (files or {}).items()]
    r = requests.post(inst.url + "/api/v1/verify", auth=inst.auth, timeout=60,
                      **({"files": parts} if files else {"data": data}))
    assert r.status_code == 200, r.text
    return r.json()["signatures"]


def test_xml_is_signed_enveloped_by_its_mime_type(siegel_server: SiegelInstance, official: Any,
                                                   tmp_path: Path) -> None:
    response = _sign(siegel_server, official, _form("B-T"), _xml_document("order"))
    signed = _document_with_signature(response)
    assert response.find(f"{{{DSS_NS}}}OptionalOutputs/{{{DSS_NS}}}DocumentWithSignature/{{{DSS_NS}}}Document"
                         ).get("ID") == "order"
    root = parse_xml(signed, max_depth=64)
    assert root.tag == "{urn:example:order}order" and root[-1].tag == "{http://www.w3.org/2000/09/xmldsig#}Signature"
    _root_pem(siegel_server, tmp_path)
    (tmp_path / "signed.xml").write_bytes(signed)
    done = _xmlsec1(tmp_path, "signed.xml")
    assert done.returncode == 0, done.stderr
    (sig,) = _verified(siegel_server, signed)
    assert (sig["indication"], sig["level"], sig["format"]) == ("TOTAL-PASSED", "B-T", "XAdES"), sig


def test_include_object_gives_an_enveloping_signature_with_properties(siegel_server: SiegelInstance, official: Any,
                                                                      tmp_path: Path) -> None:
    properties = ("<dss:Properties><dss:SignedProperties><dss:Property><dss:Identifier>"
                  f"{XADES_NS}ClaimedRole</dss:Identifier><dss:Value>Prokurist</dss:Value></dss:Property>"
                  "<dss:Property><dss:Identifier>urn:siegel:dss:1.0:property:Reason</dss:Identifier>"
                  "<dss:Value>Freigabe der Bestellung</dss:Value></dss:Property></dss:SignedProperties>"
                  "</dss:Properties>")
    options = (f"<dss:SignatureType>{XMLDSIG}</dss:SignatureType>{_form('B-B')}"
               f'<dss:IncludeObject WhichDocument="order"/>{properties}')
    response = _sign(siegel_server, official, options, _xml_document("order"))
    signature = base64.b64decode(response.findtext(f"{{{DSS_NS}}}SignatureObject/{{{DSS_NS}}}Base64Signature"))
    root = parse_xml(signature, max_depth=64)
    assert root.tag == "{http://www.w3.org/2000/09/xmldsig#}Signature"
    assert root.find(".//{urn:example:order}order") is not None  # the document inside a ds:Object
    assert b"Prokurist" in signature and b"Freigabe der Bestellung" in signature
    _root_pem(siegel_server, tmp_path)
    (tmp_path / "signature.xml").write_bytes(signature)
    assert _xmlsec1(tmp_path, "signature.xml").returncode == 0


def test_a_detached_xades_over_a_document_hash(siegel_server: SiegelInstance, official: Any, tmp_path: Path) -> None:
    content = b"any file, signed by its hash alone\n" * 30
    digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
    document_hash = ('<dss:DocumentHash RefURI="invoice.txt"><ds:DigestMethod xmlns:ds="http://www.w3.org/2000/09/'
                     'xmldsig#" Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue xmlns:ds='
                     f'"http://www.w3.org/2000/09/xmldsig#">{digest}</ds:DigestValue></dss:DocumentHash>')
    response = _sign(siegel_server, official, f"<dss:SignatureType>{XMLDSIG}</dss:SignatureType>{_form('B-B')}",
                     document_hash)
    signature = base64.b64decode(response.findtext(f"{{{DSS_NS}}}SignatureObject/{{{DSS_NS}}}Base64Signature"))
    _root_pem(siegel_server, tmp_path)
    (tmp_path / "invoice.txt").write_bytes(content)
    (tmp_path / "signature.xml").write_bytes(signature)
    assert _xmlsec1(tmp_path, "signature.xml").returncode == 0
    (sig,) = _verified(siegel_server, signature, {"invoice.txt": content})
    assert sig["indication"] == "TOTAL-PASSED" and [s["name"] for s in sig["scopes"]] == ["invoice.txt"], sig


@pytest.mark.parametrize("inside", ["xades", "cades"])
def test_several_documents_in_one_asic_e(siegel_server: SiegelInstance, official: Any, inside: str) -> None:
    types = "<dss:SignatureType>http://uri.etsi.org/19162/v1.1.1</dss:SignatureType>"
    if inside == "cades":
        types += "<dss:SignatureType>urn:ietf:rfc:3369</dss:SignatureType>"
    documents = "".join(f'<dss:Document RefURI="{name}"><dss:Base64Data MimeType="text/plain">'
                        f"{base64.b64encode(content).decode()}</dss:Base64Data></dss:Document>"
                        for name, content in (("a.txt", b"erste Datei\n"), ("b.txt", b"zweite Datei\n")))
    container = _document_with_signature(_sign(siegel_server, official, types + _form("B-T"), documents))
    with zipfile.ZipFile(io.BytesIO(container)) as archive:
        first = archive.infolist()[0]
        assert (first.filename, first.compress_type) == ("mimetype", zipfile.ZIP_STORED)
        assert {"a.txt", "b.txt"} <= set(archive.namelist())
    (sig,) = _verified(siegel_server, container)
    assert sig["indication"] == "TOTAL-PASSED", sig
    assert sig["format"] == f"ASiC-E/{'XAdES' if inside == 'xades' else 'CAdES'}"
    assert {s["name"] for s in sig["scopes"]} == {"a.txt", "b.txt"}


def test_b_lt_over_soap_embeds_the_validation_data(siegel_server: SiegelInstance, official: Any) -> None:
    response = _sign(siegel_server, official, _form("B-LT"), _xml_document("order"))
    signed = _document_with_signature(response)
    root = parse_xml(signed, max_depth=64)
    assert root.find(f".//{{{XADES_NS}}}CertificateValues") is not None
    assert root.find(f".//{{{XADES_NS}}}EncapsulatedOCSPValue") is not None
    (sig,) = _verified(siegel_server, signed)
    assert (sig["indication"], sig["level"]) == ("TOTAL-PASSED", "B-LT"), sig


def test_a_granted_key_is_selected_by_its_label(siegel_server: SiegelInstance, official: Any) -> None:
    seal = "company-seal"
    siegel_server.cli("user", "add", seal, "--email", "seal@example.com", "--role", "signer",
                      "--password-stdin", stdin="seal-password-1\n")
    issued = siegel_server.cli("ca", "issue", seal).stdout
    label = issued.split("key '", 1)[1].split("'", 1)[0]
    selector = (f'<dss:KeySelector><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:KeyName>{label}'
                "</ds:KeyName></ds:KeyInfo></dss:KeySelector>")
    body = (f"<dss:SignRequest><dss:OptionalInputs>{selector}{_form('B-B')}</dss:OptionalInputs><dss:InputDocuments>"
            f'<dss:Document><dss:Base64Data MimeType="text/plain">{base64.b64encode(b"x").decode()}</dss:Base64Data>'
            "</dss:Document></dss:InputDocuments></dss:SignRequest>")
    refused = requests.post(siegel_server.url + "/dss", data=envelope(body), headers=SOAP_HEADERS,
                            auth=siegel_server.auth, timeout=60)
    assert b"invalid:KeyLookupFailed" in refused.content
    siegel_server.cli("key", "grant", label, siegel_server.user)
    assert label in siegel_server.cli("key", "list").stdout
    response = _sign(siegel_server, official, selector + _form("B-B"),
                     f'<dss:Document><dss:Base64Data MimeType="text/plain">{base64.b64encode(b"x").decode()}'
                     "</dss:Base64Data></dss:Document>")
    signature = base64.b64decode(response.findtext(f"{{{DSS_NS}}}SignatureObject/{{{DSS_NS}}}Base64Signature"))
    files = {"signature": ("s.p7s", signature), "document": ("x.txt", b"x")}
    (sig,) = requests.post(siegel_server.url + "/api/v1/verify", files=files, auth=siegel_server.auth,
                           timeout=60).json()["signatures"]
    assert "company-seal" in sig["signer"], sig
    siegel_server.cli("key", "revoke", label, siegel_server.user)
    time.sleep(KEY_CACHE_SECONDS + 0.2)  # a server reuses a caller's key this long
    again = requests.post(siegel_server.url + "/dss", data=envelope(body), headers=SOAP_HEADERS,
                          auth=siegel_server.auth, timeout=60)
    assert b"invalid:KeyLookupFailed" in again.content


def test_a_detached_upload_larger_than_the_body_limit_is_hashed_as_it_streams(siegel_server: SiegelInstance) -> None:
    """100 MiB exceed server.max_request_bytes (64 MiB): only a body that is never held can be signed."""
    chunk = b"0123456789abcdef" * 65536  # 1 MiB
    total = hashlib.sha256()

    def body() -> Any:
        for _ in range(100):
            total.update(chunk)
            yield chunk

    r = requests.post(siegel_server.url + "/api/v1/sign?format=cades&level=B-B", data=body(), auth=siegel_server.auth,
                      timeout=300)
    assert r.status_code == 200, r.text[:500]
    digest = base64.b64encode(total.digest()).decode()
    (sig,) = requests.post(siegel_server.url + "/api/v1/verify", params={"digest": digest}, data=r.content,
                           auth=siegel_server.auth, timeout=60).json()["signatures"]
    assert sig["indication"] == "TOTAL-PASSED", sig
    held = requests.post(siegel_server.url + "/api/v1/sign?format=cades&packaging=enveloping", data=body(),
                         auth=siegel_server.auth, timeout=300)
    assert held.status_code == 413
