"""B-LT/B-LTA signing asks the instance's own CAs in-process for the revocation values it embeds, never its own
``/ocsp`` and ``/crl`` over HTTP (issue #11: under load such a request waited for the server's own busy threads
and stalled the signature up to the 10 s fetch timeout). The signatures still verify, with independent tools
too; the server's request log shows that no request reached its own OCSP responder or CRL endpoint.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.fixtures.pdf import make_pdf, nss_trusting, pdfsig
from tests.fixtures.server import SiegelInstance, make_instance

pytestmark = pytest.mark.e2e

DOCUMENT = b"a contract signed at B-LT while the server is busy\n" * 40
INVOICE = b'<?xml version="1.0"?><invoice xmlns="urn:example:invoice"><total>42.00</total></invoice>'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiegelInstance]:
    """A server of its own: its request log holds only this module's requests."""
    yield from make_instance(tmp_path_factory.mktemp("own-revocation")).serving()


@pytest.fixture(scope="module")
def root_pem(server: SiegelInstance, tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("root")
    root = x509.load_der_x509_certificate(requests.get(server.url + "/ca/ROOT.crt", timeout=10).content)
    (where / "root.pem").write_bytes(root.public_bytes(Encoding.PEM))
    return where / "root.pem"


def _own_revocation_requests(inst: SiegelInstance) -> list[str]:
    """The paths of the requests that reached the server's /ocsp or /crl."""
    lines = [json.loads(line) for line in inst.log().splitlines() if line.startswith("{")]
    return [str(line["path"]) for line in lines if line.get("msg") == "request"
            and str(line.get("path", "")).startswith(("/ocsp", "/crl"))]


def _sign(inst: SiegelInstance, query: str, body: bytes, content_type: str = "application/octet-stream") -> bytes:
    r = requests.post(f"{inst.url}/api/v1/sign?{query}", data=body, headers={"Content-Type": content_type},
                      auth=inst.auth, timeout=120)
    assert r.status_code == 200, r.text
    return r.content


def _verified(inst: SiegelInstance, signed: bytes, document: bytes | None = None) -> dict[str, object]:
    files = {"signature": ("signed", signed)} | ({"document": ("contract.txt", document)} if document else {})
    r = requests.post(inst.url + "/api/v1/verify", files=files, auth=inst.auth, timeout=120)
    assert r.status_code == 200, r.text
    (signature,) = r.json()["signatures"]
    return signature


def test_cades_b_lt_embeds_the_own_ca_revocation_values_without_asking_itself(
        server: SiegelInstance, root_pem: Path, tmp_path: Path) -> None:
    signature = _sign(server, "format=cades&level=B-LT&packaging=detached", DOCUMENT)
    signed_data = cms.ContentInfo.load(signature)["content"]
    revocation = [choice.name for choice in signed_data["crls"]]
    assert "other" in revocation, revocation  # the OCSP responses for the signer's and the TSA's certificates
    (tmp_path / "contract.txt").write_bytes(DOCUMENT)
    (tmp_path / "contract.p7s").write_bytes(signature)
    done = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", "contract.p7s",
                           "-content", "contract.txt", "-CAfile", str(root_pem), "-purpose", "any", "-out", "/dev/null"],
                          cwd=tmp_path, capture_output=True, timeout=60)
    assert done.returncode == 0 and b"Verification successful" in done.stderr, done.stderr
    report = _verified(server, signature, DOCUMENT)
    assert (report["indication"], report["level"]) == ("TOTAL-PASSED", "B-LT"), report
    assert _own_revocation_requests(server) == []


def test_xades_b_lta_and_pades_b_lt_do_not_ask_the_own_endpoints_either(
        server: SiegelInstance, root_pem: Path, tmp_path: Path) -> None:
    xades = _sign(server, "format=xades&level=B-LTA&packaging=enveloped", INVOICE, "application/xml")
    assert b"RevocationValues" in xades and b"ArchiveTimeStamp" in xades
    report = _verified(server, xades)
    assert (report["indication"], report["level"]) == ("TOTAL-PASSED", "B-LTA"), report

    pdf = _sign(server, "format=pades&level=B-LT&page=-1&x=50&y=50&w=200&h=60", make_pdf(pages=1), "application/pdf")
    report = _verified(server, pdf)
    assert (report["indication"], report["level"]) == ("TOTAL-PASSED", "B-LT"), report
    assert _own_revocation_requests(server) == []
    nss = nss_trusting(tmp_path, root_pem)  # pdfsig asks the server's /ocsp itself (GET): checked before it ran
    done = pdfsig(nss, pdf, tmp_path / "signed.pdf")
    assert "Signature is Valid." in done and "Certificate is Trusted." in done, done
