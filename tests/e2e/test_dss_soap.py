"""The DSS SOAP endpoint of a whole running server, seen by zeep, JAX-WS (wsimport) and mono (wsdl).

Every client builds itself from ``<server>/dss?wsdl`` alone; the messages on the wire are checked
against the official OASIS DSS core schema; hostile XML gets a SOAP fault fast and harms nothing.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import xmlschema
import zeep
from asn1crypto import cms
from lxml import etree
from zeep.plugins import HistoryPlugin
from zeep.transports import Transport

from server.web.soap import DSS_NS, SOAP11_ENV
from server.xmlsafe import parse_xml
from tests.unit.test_xmlsafe import MARKER, Listener, WatchedFile

pytestmark = pytest.mark.e2e

MAJOR_RESPONDER = "urn:oasis:names:tc:dss:1.0:resultmajor:ResponderError"
MAJOR_SUCCESS = "urn:oasis:names:tc:dss:1.0:resultmajor:Success"
MAJOR_REQUESTER = "urn:oasis:names:tc:dss:1.0:resultmajor:RequesterError"
MINOR_VALID_ON_ALL = "urn:oasis:names:tc:dss:1.0:resultminor:valid:signature:OnAllDocuments"
MINOR_INCORRECT = "urn:oasis:names:tc:dss:1.0:resultminor:invalid:IncorrectSignature"
SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"urn:siegel:dss:1.0:Sign"'}

JAVA_MAIN = """\
import java.net.URL;
import java.util.Map;
import javax.xml.ws.BindingProvider;
import oasis.names.tc.dss._1_0.core.schema.Base64Data;
import oasis.names.tc.dss._1_0.core.schema.DocumentType;
import oasis.names.tc.dss._1_0.core.schema.InputDocuments;
import oasis.names.tc.dss._1_0.core.schema.SignRequest;
import oasis.names.tc.dss._1_0.core.schema.SignResponse;
import siegel.dss._1_0.wsdl.DigitalSignatureService;
import siegel.dss._1_0.wsdl.DssPortType;

public class Main {
    public static void main(String[] args) throws Exception {
        DssPortType port = new DigitalSignatureService(new URL(args[0])).getDssPort();
        Map<String, Object> context = ((BindingProvider) port).getRequestContext();
        context.put(BindingProvider.USERNAME_PROPERTY, args[1]);
        context.put(BindingProvider.PASSWORD_PROPERTY, args[2]);
        Base64Data data = new Base64Data();
        data.setMimeType("text/plain");
        data.setValue("hello from java".getBytes("UTF-8"));
        DocumentType document = new DocumentType();
        document.setBase64Data(data);
        InputDocuments inputs = new InputDocuments();
        inputs.getDocumentOrDocumentHash().add(document);
        SignRequest request = new SignRequest();
        request.setRequestID("java-1");
        request.setInputDocuments(inputs);
        SignResponse response = port.sign(request);
        System.out.println("RequestID=" + response.getRequestID());
        System.out.println("ResultMajor=" + response.getResult().getResultMajor());
        System.out.println("ResultMinor=" + response.getResult().getResultMinor());
    }
}
"""

CSHARP_MAIN = """\
using System;
using System.Net;
using System.Text;

public static class MainClass {
    public static int Main(string[] args) {
        DigitalSignatureService service = new DigitalSignatureService();
        service.Credentials = new NetworkCredential(args[0], args[1]);
        service.PreAuthenticate = true;
        Base64Data data = new Base64Data();
        data.MimeType = "text/plain";
        data.Value = Encoding.UTF8.GetBytes("hello from mono");
        DocumentType document = new DocumentType();
        document.Item = data;
        InputDocuments inputs = new InputDocuments();
        inputs.Items = new DocumentBaseType[] { document };
        SignRequest request = new SignRequest();
        request.RequestID = "mono-1";
        request.InputDocuments = inputs;
        SignResponse response = service.Sign(request);
        Console.WriteLine("RequestID=" + response.RequestID);
        Console.WriteLine("ResultMajor=" + response.Result.ResultMajor);
        Console.WriteLine("ResultMinor=" + response.Result.ResultMinor);
        return 0;
    }
}
"""


@pytest.fixture(scope="module")
def official(shared_dir: Path) -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(shared_dir / "standards" / "oasis-dss-core-schema-v1.0-os.xsd"))


def body_entry(envelope: etree._Element) -> etree._Element:
    """The one element in a SOAP Body, detached into a document of its own for validation."""
    entry = envelope.find(f"{{{SOAP11_ENV}}}Body")[0]
    return parse_xml(etree.tostring(entry), max_depth=256)


def envelope(body: str) -> bytes:
    return (f'<soap:Envelope xmlns:soap="{SOAP11_ENV}" xmlns:dss="{DSS_NS}">'
            f"<soap:Body>{body}</soap:Body></soap:Envelope>").encode()


def post(server: Any, data: bytes) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = requests.post(server.url + "/dss", data=data, headers=SOAP_HEADERS, auth=server.auth, timeout=30)
    return response, time.monotonic() - started


def fault_of(response: requests.Response) -> tuple[str, str, str | None]:
    """faultcode, faultstring and the ResultMajor in the detail of a SOAP fault response."""
    assert response.status_code == 500, response.text
    assert response.headers["Content-Type"].startswith("text/xml")
    fault = parse_xml(response.content, max_depth=16).find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
    assert fault is not None, response.text
    assert "Traceback" not in response.text
    return (fault.findtext("faultcode"), fault.findtext("faultstring"),
            fault.findtext(f"detail/{{{DSS_NS}}}Result/{{{DSS_NS}}}ResultMajor"))


def assert_still_serving(server: Any) -> None:
    response, _ = post(server, envelope('<dss:SignRequest RequestID="after"/>'))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/xml")
    result = body_entry(parse_xml(response.content, max_depth=16))
    assert result.get("RequestID") == "after"


def reachable_schemas(urls: list[str]) -> set[str]:
    """The URLs of ``urls`` and of every schema they import or include, transitively; each must answer 200."""
    seen: set[str] = set()
    while urls:
        url = urls.pop()
        if url in seen:
            continue
        seen.add(url)
        schema = requests.get(url, timeout=10)
        assert schema.status_code == 200, url
        urls += [i.get("schemaLocation") for i in parse_xml(schema.content, max_depth=64).iter(
            "{http://www.w3.org/2001/XMLSchema}import", "{http://www.w3.org/2001/XMLSchema}include")]
    return seen


def test_wsdl_and_schemas_are_public_and_absolute(siegel_server: Any) -> None:
    response = requests.get(siegel_server.url + "/dss?wsdl", timeout=10)
    assert response.status_code == 200
    wsdl = parse_xml(response.content, max_depth=32)
    address = wsdl.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address.get("location") == siegel_server.url + "/dss"
    assert len(reachable_schemas([siegel_server.url + "/dss?xsd=siegel-dss-core.xsd"])) == 3
    assert requests.get(siegel_server.url + "/dss?xsd=unknown.xsd", timeout=10).status_code == 404


@pytest.mark.parametrize(("host", "expected"), [
    ("localhost:{port}", "http://localhost:{port}/dss"),
    ("127.0.0.1:{port}", "{url}/dss"),
    ("evil\"><x", "{url}/dss"),
], ids=["other-name", "configured-name", "junk"])
def test_wsdl_address_follows_the_host_the_client_used(siegel_server: Any, host: str, expected: str) -> None:
    """server.public_base_url when the client used its host, else the client's Host (if it is a host)."""
    port = siegel_server.url.rsplit(":", 1)[1]
    response = requests.get(siegel_server.url + "/dss?wsdl", headers={"Host": host.format(port=port)}, timeout=10)
    location = parse_xml(response.content, max_depth=32).find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert location.get("location") == expected.format(port=port, url=siegel_server.url)


def test_chunked_request_body_is_read(siegel_server: Any) -> None:
    chunks = iter([envelope('<dss:VerifyRequest RequestID="chunked"/>')])
    response = requests.post(siegel_server.url + "/dss", data=chunks, headers=SOAP_HEADERS,
                             auth=siegel_server.auth, timeout=10)
    assert response.status_code == 200, response.text
    assert body_entry(parse_xml(response.content, max_depth=16)).get("RequestID") == "chunked"


def test_post_without_credentials_is_refused(siegel_server: Any) -> None:
    response = requests.post(siegel_server.url + "/dss", data=envelope("<dss:SignRequest/>"),
                             headers=SOAP_HEADERS, timeout=10)
    assert response.status_code == 401


def test_zeep_client_from_the_wsdl_url(siegel_server: Any, official: xmlschema.XMLSchema) -> None:
    session = requests.Session()
    session.auth = siegel_server.auth
    history = HistoryPlugin()
    client = zeep.Client(siegel_server.url + "/dss?wsdl", transport=Transport(session=session), plugins=[history])
    documents = {"_value_1": [{"Document": {"Base64Data": {"_value_1": b"hello from zeep", "MimeType": "text/plain"}}}]}
    answer = client.service.Sign(RequestID="zeep-1", InputDocuments=documents)
    assert answer.RequestID == "zeep-1"
    assert (answer.Result.ResultMajor, answer.Result.ResultMinor) == (MAJOR_SUCCESS, None)
    assert answer.Result.ResultMessage.lang == "en"
    official.validate(body_entry(history.last_sent["envelope"]))
    official.validate(body_entry(history.last_received["envelope"]))
    signature = answer.SignatureObject.Base64Signature
    assert signature.Type == "urn:ietf:rfc:3369"
    signed_attrs = cms.ContentInfo.load(signature._value_1)["content"]["signer_infos"][0]["signed_attrs"]
    digest = next(a["values"][0].native for a in signed_attrs if a["type"].native == "message_digest")
    assert digest == hashlib.sha256(b"hello from zeep").digest()  # a CAdES over the document (openssl: test_dss_sign)

    answer = client.service.Verify(RequestID="zeep-2", InputDocuments=documents, SignatureObject={
        "Base64Signature": {"_value_1": signature._value_1, "Type": "urn:ietf:rfc:3369"}})
    assert (answer.RequestID, answer.Result.ResultMajor, answer.Result.ResultMinor) == (
        "zeep-2", MAJOR_SUCCESS, MINOR_VALID_ON_ALL)
    official.validate(body_entry(history.last_sent["envelope"]))
    official.validate(body_entry(history.last_received["envelope"]))

    answer = client.service.Verify(RequestID="zeep-3", InputDocuments=documents,
                                   SignatureObject={"Base64Signature": {"_value_1": b"\x30\x80", "Type": "urn:ietf:rfc:3369"}})
    assert (answer.RequestID, answer.Result.ResultMinor) == ("zeep-3", MINOR_INCORRECT)  # not a CMS: FORMAT_FAILURE


def run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def answer_lines(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def test_java_client_generated_by_wsimport(siegel_server: Any, tmp_path: Path) -> None:
    if not (shutil.which("wsimport") and shutil.which("javac") and shutil.which("java")):
        pytest.skip("wsimport/javac/java are not installed (Debian packages jaxws and openjdk-17-jdk; see the Makefile)")
    runtime = "/usr/share/java/jaxws-rt.jar"
    src, classes = tmp_path / "src", tmp_path / "classes"
    src.mkdir()
    classes.mkdir()
    run(["wsimport", "-quiet", "-keep", "-Xnocompile", "-s", str(src), "-d", str(classes),
         siegel_server.url + "/dss?wsdl"], tmp_path)
    (src / "Main.java").write_text(JAVA_MAIN)
    sources = sorted(str(p) for p in src.rglob("*.java"))
    run(["javac", "-nowarn", "-cp", runtime, "-d", str(classes), *sources], tmp_path)
    output = run(["java", "-cp", f"{classes}:{runtime}", "Main", siegel_server.url + "/dss?wsdl",
                  siegel_server.user, siegel_server.password], tmp_path)
    assert answer_lines(output) == {"RequestID": "java-1", "ResultMajor": MAJOR_SUCCESS, "ResultMinor": "null"}


def test_csharp_client_generated_by_mono_wsdl(siegel_server: Any, tmp_path: Path) -> None:
    if not (shutil.which("wsdl") and shutil.which("mcs") and shutil.which("mono")):
        pytest.skip("mono's wsdl/mcs/mono are not installed (Debian package mono-devel; see the Makefile)")
    run(["wsdl", "-nologo", "-out:DssProxy.cs", siegel_server.url + "/dss?wsdl"], tmp_path)
    (tmp_path / "Main.cs").write_text(CSHARP_MAIN)
    run(["mcs", "-nologo", "-r:System.Web.Services.dll", "-r:System.Xml.dll", "-out:client.exe",
         "DssProxy.cs", "Main.cs"], tmp_path)
    output = run(["mono", "client.exe", siegel_server.user, siegel_server.password], tmp_path)
    assert answer_lines(output) == {"RequestID": "mono-1", "ResultMajor": MAJOR_SUCCESS, "ResultMinor": ""}


@pytest.fixture
def secret(tmp_path: Path) -> Any:
    watched = WatchedFile(tmp_path / "secret.txt")
    try:
        yield watched
    finally:
        watched.close()


@pytest.fixture
def listener() -> Any:
    server = Listener()
    try:
        yield server
    finally:
        server.close()


def assert_hostile_refused(server: Any, data: bytes, *words: str) -> None:
    response, elapsed = post(server, data)
    faultcode, faultstring, major = fault_of(response)
    assert elapsed < 1.0, f"refusal took {elapsed:.3f} s"
    assert (faultcode, major) == ("soap:Client", MAJOR_REQUESTER)
    for word in words:
        assert word in faultstring
    assert MARKER not in response.text
    assert_still_serving(server)


def test_xxe_is_refused(siegel_server: Any, secret: WatchedFile) -> None:
    doc = (f'<!DOCTYPE soap:Envelope [<!ENTITY x SYSTEM "{secret.path.as_uri()}">]>'
           f'<soap:Envelope xmlns:soap="{SOAP11_ENV}" xmlns:dss="{DSS_NS}"><soap:Body>'
           '<dss:SignRequest RequestID="&x;"/></soap:Body></soap:Envelope>').encode()
    assert_hostile_refused(siegel_server, doc, "DOCTYPE")
    time.sleep(0.1)
    assert not secret.opened


def test_billion_laughs_is_refused(siegel_server: Any) -> None:
    entities = ['<!ENTITY l0 "lol">'] + [f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
    doc = (f'<!DOCTYPE soap:Envelope [{"".join(entities)}]>' +
           envelope('<dss:SignRequest RequestID="&l9;"/>').decode()).encode()
    assert_hostile_refused(siegel_server, doc, "DOCTYPE")


def test_quadratic_blowup_is_refused(siegel_server: Any) -> None:
    doc = (f'<!DOCTYPE soap:Envelope [<!ENTITY big "{"x" * 100_000}">]>' +
           envelope(f'<dss:SignRequest RequestID="{"&big;" * 50_000}"/>').decode()).encode()
    assert_hostile_refused(siegel_server, doc, "DOCTYPE")


def test_external_dtd_is_refused_without_a_connection(siegel_server: Any, listener: Listener) -> None:
    doc = (f'<!DOCTYPE soap:Envelope SYSTEM "http://127.0.0.1:{listener.port}/evil.dtd">' +
           envelope('<dss:SignRequest RequestID="&leak;"/>').decode()).encode()
    assert_hostile_refused(siegel_server, doc, "DOCTYPE")
    doc = (f'<!DOCTYPE soap:Envelope [<!ENTITY % p SYSTEM "http://127.0.0.1:{listener.port}/p.dtd"> %p;]>' +
           envelope('<dss:SignRequest RequestID="&leak;"/>').decode()).encode()
    assert_hostile_refused(siegel_server, doc, "DOCTYPE")
    time.sleep(0.2)
    assert listener.connections == 0


def test_too_deep_is_refused(siegel_server: Any) -> None:
    deep = "<dss:OptionalInputs>" + "<x>" * 5000 + "</x>" * 5000 + "</dss:OptionalInputs>"
    assert_hostile_refused(siegel_server, envelope(f"<dss:SignRequest>{deep}</dss:SignRequest>"), "depth")


def test_malformed_xml_is_a_client_fault(siegel_server: Any) -> None:
    response, _ = post(siegel_server, b"<soap:Envelope xmlns:soap='" + SOAP11_ENV.encode() + b"'>\n<soap:Body>")
    faultcode, faultstring, major = fault_of(response)
    assert (faultcode, major) == ("soap:Client", MAJOR_REQUESTER)
    assert "line 2, column" in faultstring


def test_schema_invalid_body_is_a_client_fault(siegel_server: Any) -> None:
    response, _ = post(siegel_server, envelope('<dss:SignRequest><dss:InputDocuments><dss:Document>'
                                               "<dss:Unknown/></dss:Document></dss:InputDocuments></dss:SignRequest>"))
    faultcode, faultstring, major = fault_of(response)
    assert (faultcode, major) == ("soap:Client", MAJOR_REQUESTER)
    assert "schema" in faultstring and "Unknown" in faultstring
    assert_still_serving(siegel_server)


@pytest.mark.parametrize("body", [
    '<dss:ArchiveSubmissionRequest/>',
    '<other:SignRequest xmlns:other="urn:example:not-dss"/>',
    "",
], ids=["unknown-dss-element", "foreign-namespace", "empty-body"])
def test_unknown_operation_is_a_client_fault(siegel_server: Any, body: str) -> None:
    response, _ = post(siegel_server, envelope(body))
    faultcode, faultstring, major = fault_of(response)
    assert (faultcode, major) == ("soap:Client", MAJOR_REQUESTER)
    assert "Sign" in faultstring or "exactly one element" in faultstring


def test_not_a_soap_envelope_is_a_client_fault(siegel_server: Any) -> None:
    response, _ = post(siegel_server, f'<dss:SignRequest xmlns:dss="{DSS_NS}"/>'.encode())
    faultcode, faultstring, _ = fault_of(response)
    assert faultcode == "soap:Client" and "Envelope" in faultstring
