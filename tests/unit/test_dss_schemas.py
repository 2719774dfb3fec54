"""Our DSS contract (schemas/, wsdl/dss.wsdl) is a true subset of the official OASIS DSS v1.0 core schema,
and what our SOAP code answers (responses, faults) is valid against the official one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import xmlschema
from lxml import etree

from server import config
from server.errors import Code, SiegelError
from server.web import dss
from server.identity.users import Principal, Role
from server.web.dss import ROOT_SCHEMA, SCHEMA_DIR, WSDL_FILE, Contract, DssEndpoint
from server.web.dss_sign import sign_response
from server.web.dss_verify import verify_response
from server.web.soap import DSS_NS, SOAP11_ENV, soap_fault_envelope
from server.xmlsafe import parse_trusted_file, parse_xml

pytestmark = pytest.mark.unit

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"

SIGN_REQUEST = f"""\
<dss:SignRequest xmlns:dss="{DSS_NS}" xmlns:ds="{DS_NS}" RequestID="req-1"
                 Profile="urn:oasis:names:tc:dss:1.0:profiles:AdES:forms:BES">
  <dss:OptionalInputs>
    <dss:SignatureType>urn:ietf:rfc:3275</dss:SignatureType>
    <ext:Anything xmlns:ext="urn:example:extension" level="B-B">open content</ext:Anything>
  </dss:OptionalInputs>
  <dss:InputDocuments>
    <dss:Document ID="doc-1"><dss:Base64Data MimeType="application/pdf">JVBERi0xLjc=</dss:Base64Data></dss:Document>
    <dss:Document ID="doc-2" RefURI="urn:example:doc"><dss:Base64XML>PHI+aGk8L3I+</dss:Base64XML></dss:Document>
    <dss:Document ID="doc-3"><dss:InlineXML ignoreComments="false"><inv:Invoice xmlns:inv="urn:example:invoice">
      <inv:Total>42.00</inv:Total></inv:Invoice></dss:InlineXML></dss:Document>
    <dss:DocumentHash>
      <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
      <ds:DigestValue>47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=</ds:DigestValue>
    </dss:DocumentHash>
  </dss:InputDocuments>
</dss:SignRequest>"""

VERIFY_REQUEST = f"""\
<dss:VerifyRequest xmlns:dss="{DSS_NS}" xmlns:ds="{DS_NS}" RequestID="req-2">
  <dss:InputDocuments>
    <dss:Document ID="signed"><dss:Base64Data MimeType="text/plain">aGVsbG8=</dss:Base64Data></dss:Document>
  </dss:InputDocuments>
  <dss:SignatureObject>
    <ds:Signature Id="sig-1">
      <ds:SignedInfo>
        <ds:CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"/>
        <ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/>
        <ds:Reference URI="urn:example:doc">
          <ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#base64"/></ds:Transforms>
          <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
          <ds:DigestValue>LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=</ds:DigestValue>
        </ds:Reference>
      </ds:SignedInfo>
      <ds:SignatureValue>AAAA</ds:SignatureValue>
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>MIIB</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
    </ds:Signature>
  </dss:SignatureObject>
</dss:VerifyRequest>"""

VERIFY_BASE64_SIGNATURE = f"""\
<dss:VerifyRequest xmlns:dss="{DSS_NS}">
  <dss:InputDocuments><dss:Document><dss:Base64Data>aGVsbG8=</dss:Base64Data></dss:Document></dss:InputDocuments>
  <dss:SignatureObject><dss:Base64Signature Type="urn:ietf:rfc:3369">MIAGCSqGSIb3DQEHAqCAMIA=</dss:Base64Signature>
  </dss:SignatureObject>
</dss:VerifyRequest>"""


@pytest.fixture(scope="module")
def ours() -> etree.XMLSchema:
    return etree.XMLSchema(parse_trusted_file(SCHEMA_DIR / ROOT_SCHEMA))


@pytest.fixture(scope="module")
def official(shared_dir: Path) -> xmlschema.XMLSchema:
    standards = shared_dir / "standards"
    return xmlschema.XMLSchema(str(standards / "oasis-dss-core-schema-v1.0-os.xsd"))


def element(text: str) -> etree._Element:
    return parse_xml(text.encode(), max_depth=64)


def test_every_contract_file_parses_without_a_dtd() -> None:
    files = [WSDL_FILE, *sorted(SCHEMA_DIR.glob("*.xsd"))]
    assert {f.name for f in files} >= {"dss.wsdl", ROOT_SCHEMA, "xmldsig-core-schema.xsd", "xml.xsd"}
    for path in files:
        root = parse_trusted_file(path)
        assert root.getroottree().docinfo.doctype == "", path


def test_our_schema_loads_in_both_validators(ours: etree.XMLSchema) -> None:
    xmlschema.XMLSchema(str(SCHEMA_DIR / ROOT_SCHEMA))


def test_global_elements_have_the_official_names(official: xmlschema.XMLSchema) -> None:
    loaded = xmlschema.XMLSchema(str(SCHEMA_DIR / ROOT_SCHEMA))
    names = {name for name in loaded.maps.elements if name.startswith(f"{{{DSS_NS}}}") or
             name.startswith(f"{{{DS_NS}}}")}
    assert {f"{{{DSS_NS}}}{n}" for n in ("SignRequest", "SignResponse", "VerifyRequest", "VerifyResponse",
                                         "InputDocuments", "Document", "DocumentHash", "Base64Data",
                                         "OptionalInputs", "OptionalOutputs", "Result", "SignatureObject")} <= names
    missing = sorted(names - set(official.maps.elements))
    assert missing == []


@pytest.mark.parametrize("sample", [SIGN_REQUEST, VERIFY_REQUEST, VERIFY_BASE64_SIGNATURE],
                         ids=["sign", "verify-xmldsig", "verify-base64"])
def test_requests_valid_for_us_are_valid_officially(sample: str, ours: etree.XMLSchema,
                                                    official: xmlschema.XMLSchema) -> None:
    doc = element(sample)
    ours.assertValid(doc)
    official.validate(doc)


@pytest.mark.parametrize("outside", [
    f'<dss:SignRequest xmlns:dss="{DSS_NS}"><dss:InputDocuments><dss:Document>'
    "<dss:EscapedXML>&lt;r/&gt;</dss:EscapedXML></dss:Document></dss:InputDocuments></dss:SignRequest>",
    f'<dss:SignRequest xmlns:dss="{DSS_NS}" xmlns:ds="{DS_NS}"><dss:InputDocuments><dss:DocumentHash>'
    "<ds:DigestValue>AAAA</ds:DigestValue></dss:DocumentHash></dss:InputDocuments></dss:SignRequest>",
    f'<dss:SignRequest xmlns:dss="{DSS_NS}"><dss:InputDocuments><dss:TransformedData>'
    "<dss:Base64Data>AAAA</dss:Base64Data></dss:TransformedData></dss:InputDocuments></dss:SignRequest>",
], ids=["escaped-xml", "hash-without-digest-method", "transformed-data"])
def test_our_subset_is_stricter(outside: str, ours: etree.XMLSchema, official: xmlschema.XMLSchema) -> None:
    """DSS core constructs outside our profile: officially valid, refused by our contract."""
    doc = element(outside)
    official.validate(doc)
    assert not ours.validate(doc)


def _sign_answer(request: etree._Element) -> etree._Element:
    return sign_response(request, "urn:siegel:dss:1.0:profile", [],
                         SiegelError(Code.NOT_SUPPORTED, "PAdES signatures are not offered yet"))


def _verify_answer(request: etree._Element) -> etree._Element:
    return verify_response(request, "urn:siegel:dss:1.0:profile", None, None,
                           error=SiegelError(Code.NOT_SUPPORTED, "PDF signatures (PAdES) are not verified yet"))


@pytest.mark.parametrize(("request_xml", "answer"), [
    (SIGN_REQUEST, _sign_answer), (VERIFY_REQUEST, _verify_answer),
    (f'<dss:SignRequest xmlns:dss="{DSS_NS}"/>', _sign_answer),
    (f'<dss:VerifyRequest xmlns:dss="{DSS_NS}"/>', _verify_answer),
], ids=["sign", "verify", "bare-sign", "bare-verify"])
def test_error_responses_are_officially_valid(request_xml: str, answer: Callable[..., etree._Element],
                                                      ours: etree.XMLSchema, official: xmlschema.XMLSchema) -> None:
    request = element(request_xml)
    response = element(etree.tostring(answer(request)).decode())
    ours.assertValid(response)
    official.validate(response)
    assert etree.QName(response).localname == etree.QName(request).localname.replace("Request", "Response")
    assert response.get("RequestID") == request.get("RequestID")
    assert response.get("Profile") == (request.get("Profile") or "urn:siegel:dss:1.0:profile")
    result = response.find(f"{{{DSS_NS}}}Result")
    assert result.findtext(f"{{{DSS_NS}}}ResultMajor") == "urn:oasis:names:tc:dss:1.0:resultmajor:ResponderError"
    assert result.findtext(f"{{{DSS_NS}}}ResultMinor") == "urn:oasis:names:tc:dss:1.0:resultminor:NotSupported"


@pytest.mark.parametrize(("code", "faultcode"), [(Code.HOSTILE_XML, "soap:Client"), (Code.INTERNAL, "soap:Server"),
                                                 (Code.BAD_REQUEST, "soap:Client")])
def test_fault_detail_is_an_official_dss_result(code: Code, faultcode: str, official: xmlschema.XMLSchema) -> None:
    envelope = soap_fault_envelope(SiegelError(code, "why it failed"))
    fault = envelope.find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
    assert fault.findtext("faultcode") == faultcode and fault.findtext("faultstring") == "why it failed"
    result = fault.find(f"detail/{{{DSS_NS}}}Result")
    official.validate(element(etree.tostring(result).decode()))


def test_wsdl_messages_are_schema_elements() -> None:
    wsdl = parse_trusted_file(WSDL_FILE)
    loaded = xmlschema.XMLSchema(str(SCHEMA_DIR / ROOT_SCHEMA))
    parts = wsdl.findall(f"{{{WSDL_NS}}}message/{{{WSDL_NS}}}part")
    for part in parts:
        prefix, local = part.get("element").split(":")
        assert f"{{{part.nsmap[prefix]}}}{local}" in loaded.maps.elements
    assert sorted(p.get("element") for p in parts) == ["dss:SignRequest", "dss:SignResponse",
                                                        "dss:VerifyRequest", "dss:VerifyResponse"]
    actions = {op.get("name"): op.find(f"{{{WSDL_SOAP}}}operation").get("soapAction")
               for op in wsdl.findall(f"{{{WSDL_NS}}}binding/{{{WSDL_NS}}}operation")}
    assert actions == {"Sign": "urn:siegel:dss:1.0:Sign", "Verify": "urn:siegel:dss:1.0:Verify"}
    assert wsdl.find(f"{{{WSDL_NS}}}binding/{{{WSDL_SOAP}}}binding").get("style") == "document"
    assert {b.get("use") for b in wsdl.iter(f"{{{WSDL_SOAP}}}body")} == {"literal"}


def test_served_contract_has_absolute_locations_only() -> None:
    contract = Contract.load()
    assert sorted(contract.schemas) == [ROOT_SCHEMA, "xml.xsd", "xmldsig-core-schema.xsd"]
    base = "https://siegel.example:8443/prefix"
    wsdl = element(contract.render_wsdl(base).decode())
    assert [a.get("location") for a in wsdl.iter(f"{{{WSDL_SOAP}}}address")] == [base + "/dss"]
    locations = [i.get("schemaLocation") for i in wsdl.iter("{http://www.w3.org/2001/XMLSchema}import")]
    for name in contract.schemas:
        served = contract.render_schema(name, base)
        assert served is not None
        locations += [i.get("schemaLocation") for i in element(served.decode()).iter(
            "{http://www.w3.org/2001/XMLSchema}import")]
    assert sorted(set(locations)) == sorted(f"{base}/dss?xsd={n}" for n in contract.schemas)
    assert contract.render_schema("../config/siegel.toml", base) is None


class _NoSigning:
    """Unit tests of the SOAP layer never reach a signature or a verification."""

    def sign(self, *args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("no signature is made in these tests")

    verify = extend = sign


def call_endpoint(body: bytes) -> tuple[int, bytes]:
    """POST ``body`` to the DSS endpoint directly; returns the HTTP status and the body."""
    endpoint = DssEndpoint(config.load(environ={}), parse_trusted_file(SCHEMA_DIR / ROOT_SCHEMA),
                           _NoSigning(), _NoSigning())  # type: ignore[arg-type]
    return endpoint.handle(body, Principal(1, "tester", Role.INTEGRATION))


def soap_request(body: str) -> bytes:
    return (f'<soap:Envelope xmlns:soap="{SOAP11_ENV}" xmlns:dss="{DSS_NS}"><soap:Body>{body}'
            "</soap:Body></soap:Envelope>").encode()


def test_response_body_element_keeps_its_prefixes() -> None:
    status, body = call_endpoint(soap_request('<dss:SignRequest RequestID="r"/>'))
    assert status == 200
    assert b"<dss:SignResponse " in body and b"<dss:ResultMajor>" in body


def test_unexpected_error_in_an_operation_is_a_server_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(request: etree._Element, default_level: str) -> etree._Element:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(dss, "parse_sign_request", broken)
    status, body = call_endpoint(soap_request("<dss:SignRequest/>"))
    assert status == 500
    fault = parse_xml(body, max_depth=16).find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
    assert (fault.findtext("faultcode"), fault.findtext("faultstring")) == ("soap:Server", "internal error")
    assert b"secret" not in body and b"Traceback" not in body


def test_unexpected_error_before_the_operation_is_a_server_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: DssEndpoint, entry: etree._Element) -> None:
        raise OSError("secret schema detail")

    monkeypatch.setattr(DssEndpoint, "_validate", broken)
    status, body = call_endpoint(soap_request("<dss:SignRequest/>"))
    assert status == 500
    fault = parse_xml(body, max_depth=16).find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
    assert (fault.findtext("faultcode"), fault.findtext("faultstring")) == ("soap:Server", "internal error")
    assert b"secret" not in body


@pytest.mark.parametrize("attribute", ['xsi:nil="true"', 'xsi:type="dss:VerifyResponse"'])
def test_xsi_attributes_on_the_body_are_judged_by_the_schema(attribute: str) -> None:
    status, body = call_endpoint(soap_request(
        f'<dss:SignRequest xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" {attribute}/>'))
    assert status == 500
    fault = parse_xml(body, max_depth=16).find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
    assert fault.findtext("faultcode") == "soap:Client"
    assert "does not match the DSS schema" in fault.findtext("faultstring")
