"""PAdES through the server: REST (``curl --data-binary @in.pdf``), DSS (a PDF without SignatureType),
placement by position and by field, and verification; every signature checked by ``pdfsig`` against an
NSS database trusting Siegel's root, and by ``qpdf --check``."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree

from server.web.soap import DSS_NS, SOAP11_ENV
from server.xmlsafe import parse_xml
from tests.e2e.test_dss_soap import SOAP_HEADERS, envelope, official  # noqa: F401 (official is a fixture)
from tests.fixtures.pdf import EmptyField, make_pdf, nss_trusting_server
from tests.fixtures.server import SiegelInstance

pytestmark = pytest.mark.e2e

SUCCESS = "urn:oasis:names:tc:dss:1.0:resultmajor:Success"


@pytest.fixture(scope="module")
def nss(siegel_server: SiegelInstance, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An NSS database trusting the server's root CA, for pdfsig."""
    return nss_trusting_server(tmp_path_factory.mktemp("nss"), siegel_server.url)


def _pdfsig_and_qpdf(nss: Path, pdf: bytes, where: Path, signatures: int) -> str:
    """pdfsig's report (every signature valid and trusted), after qpdf --check passed."""
    path = where / "signed.pdf"
    path.write_bytes(pdf)
    done = subprocess.run(["pdfsig", "-nssdir", f"sql:{nss}", str(path)], capture_output=True, text=True, timeout=60)
    assert done.stdout.count("Signature is Valid.") == signatures, done.stdout + done.stderr
    assert done.stdout.count("Certificate is Trusted.") == signatures, done.stdout
    check = subprocess.run(["qpdf", "--check", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    return done.stdout


def _verified(inst: SiegelInstance, pdf: bytes) -> list[dict[str, Any]]:
    r = requests.post(inst.url + "/api/v1/verify", data=pdf, auth=inst.auth, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["signatures"]


def test_rest_signs_a_pdf_body_at_a_position_and_it_verifies(siegel_server: SiegelInstance, nss: Path,
                                                              tmp_path: Path) -> None:
    original = make_pdf(pages=2)
    (tmp_path / "in.pdf").write_bytes(original)
    done = subprocess.run(["curl", "-sS", "-f", "-u", f"{siegel_server.user}:{siegel_server.password}",
                           "--data-binary", "@in.pdf", "-H", "Content-Type: application/pdf", "-o", "out.pdf",
                           f"{siegel_server.url}/api/v1/sign?format=pades&level=B-T&page=-1&x=50&y=50&w=200&h=60"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    signed = (tmp_path / "out.pdf").read_bytes()
    assert signed[:len(original)] == original  # an incremental update: the original bytes stay as they were
    _pdfsig_and_qpdf(nss, signed, tmp_path, 1)
    (sig,) = _verified(siegel_server, signed)
    assert (sig["indication"], sig["level"], sig["format"]) == ("TOTAL-PASSED", "B-T", "PAdES"), sig


def test_dss_signs_a_pdf_by_its_mime_type_into_a_named_field(siegel_server: SiegelInstance, official: Any,
                                                            nss: Path, tmp_path: Path) -> None:
    pdf = make_pdf(fields=[EmptyField("Unterschrift", 0, (300, 100, 500, 160))])
    options = ('<dss:OptionalInputs><siegel:PdfSignature xmlns:siegel="urn:siegel:dss:1.0" Field="Unterschrift" '
               'Appearance="standard"/></dss:OptionalInputs>')
    body = (f'<dss:SignRequest RequestID="p-1">{options}<dss:InputDocuments><dss:Document ID="vertrag">'
            f'<dss:Base64Data MimeType="application/pdf">{base64.b64encode(pdf).decode()}</dss:Base64Data>'
            "</dss:Document></dss:InputDocuments></dss:SignRequest>")
    request = envelope(body)
    official.validate(parse_xml(request, max_depth=64).find(f"{{{SOAP11_ENV}}}Body")[0])
    r = requests.post(siegel_server.url + "/dss", data=request, headers=SOAP_HEADERS, auth=siegel_server.auth,
                      timeout=120)
    response = parse_xml(r.content, max_depth=64).find(f"{{{SOAP11_ENV}}}Body")[0]
    official.validate(parse_xml(etree.tostring(response), max_depth=64))
    assert response.findtext(f"{{{DSS_NS}}}Result/{{{DSS_NS}}}ResultMajor") == SUCCESS, \
        response.findtext(f".//{{{DSS_NS}}}ResultMessage")
    document = response.find(f"{{{DSS_NS}}}OptionalOutputs/{{{DSS_NS}}}DocumentWithSignature/{{{DSS_NS}}}Document")
    data = document.find(f"{{{DSS_NS}}}Base64Data")
    assert document.get("ID") == "vertrag" and data.get("MimeType") == "application/pdf"
    signed = base64.b64decode(data.text)
    report = _pdfsig_and_qpdf(nss, signed, tmp_path, 1)
    assert "Signature Field Name: Unterschrift" in report, report


def test_a_missing_field_is_a_requester_error_naming_it(siegel_server: SiegelInstance) -> None:
    r = requests.post(siegel_server.url + "/api/v1/sign?format=pades&level=B-B&field=Nirgendwo", data=make_pdf(),
                      auth=siegel_server.auth, timeout=60, headers={"Content-Type": "application/pdf"})
    assert r.status_code == 400 and "Nirgendwo" in r.json()["detail"], r.text


def test_siegel_sign_makes_a_pades_signature(siegel_server: SiegelInstance, nss: Path, tmp_path: Path) -> None:
    (tmp_path / "vertrag.pdf").write_bytes(make_pdf())
    siegel_server.cli("sign", str(tmp_path / "vertrag.pdf"), "--as", siegel_server.user, "--format", "pades",
                      "--level", "B-B", "--invisible")
    signed = (tmp_path / "vertrag.signed.pdf").read_bytes()
    _pdfsig_and_qpdf(nss, signed, tmp_path, 1)
