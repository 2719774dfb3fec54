"""Two-step signing over REST in XAdES, PAdES and ASiC-E: ``/api/v1/sign/prepare`` → the digest signed with the
account's HSM key outside the server (the test opens the instance's token itself) → ``/api/v1/sign/complete``,
checked by ``xmlsec1 --verify``, ``pdfsig`` and Siegel's verifier; expired, reused and wrong values refused."""

from __future__ import annotations

import base64
import io
import hashlib
import sqlite3
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from server import config
from server.app import build_services
from server.signing.keysource import DigestAlgorithm, SignatureScheme
from tests.e2e.test_dss_xades import _root_pem, _xmlsec1
from tests.e2e.test_pades_api import _pdfsig_and_qpdf, nss  # noqa: F401 (nss is a fixture)
from tests.fixtures.pdf import make_pdf
from tests.fixtures.server import SiegelInstance

pytestmark = pytest.mark.e2e

INVOICE = b'<?xml version="1.0" encoding="UTF-8"?>\n<invoice xmlns="urn:example:invoice"><total>42.00</total></invoice>'
Signer = tuple[list[str], Callable[[bytes, str], bytes]]


@pytest.fixture(scope="module")
def outside_key(siegel_server: SiegelInstance) -> Iterator[Signer]:
    """The erp account's certificate chain (base64 DER) and a function signing a digest with its HSM key, as a
    card or a remote service would: through the instance's token, not through the server."""
    services = build_services(config.load(data_dir=siegel_server.data_dir, environ=siegel_server.env))
    try:
        hsm = services.hsm.get()
        label = services.ca.signing_key_of(services.users.find(siegel_server.user).user_id)
        chain = [base64.b64encode(der).decode() for der in hsm.certificate_chain(label)]

        def sign(digest: bytes, scheme: str) -> bytes:
            return hsm.sign_digest(label, digest, DigestAlgorithm.SHA256, SignatureScheme(scheme))

        yield chain, sign
    finally:
        services.close()


def _prepare(inst: SiegelInstance, chain: list[str], **order: Any) -> dict[str, Any]:
    r = requests.post(inst.url + "/api/v1/sign/prepare", auth=inst.auth, timeout=60,
                      json={"certificateChain": chain, "level": "B-B", **order})
    assert r.status_code == 200, r.text
    prepared = r.json()
    assert prepared["digestAlgorithm"] == "SHA-256" and prepared["signatureAlgorithm"] == "ecdsa", prepared
    return prepared


def _complete(inst: SiegelInstance, state: str, value: bytes) -> requests.Response:
    return requests.post(inst.url + "/api/v1/sign/complete", auth=inst.auth, timeout=60,
                         json={"stateId": state, "signatureValue": base64.b64encode(value).decode()})


def _signed(inst: SiegelInstance, outside: Signer, **order: Any) -> requests.Response:
    """prepare → a wrong value refused (the state stays) → the right value → the result; once only."""
    chain, sign = outside
    prepared = _prepare(inst, chain, **order)
    to_sign = base64.b64decode(prepared["digestToSign"])
    wrong = _complete(inst, prepared["stateId"], sign(bytes(32), prepared["signatureAlgorithm"]))
    assert wrong.status_code == 400 and "does not verify" in wrong.json()["detail"], wrong.text
    value = sign(to_sign, prepared["signatureAlgorithm"])
    r = _complete(inst, prepared["stateId"], value)
    assert r.status_code == 200, r.text
    again = _complete(inst, prepared["stateId"], value)
    assert again.status_code == 404 and "no prepared signature" in again.json()["detail"]
    return r


def _verified(inst: SiegelInstance, data: bytes) -> list[dict[str, Any]]:
    r = requests.post(inst.url + "/api/v1/verify", data=data, auth=inst.auth, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["signatures"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("packaging", ["enveloped", "enveloping", "detached"])
def test_xades_two_step_verifies_with_xmlsec1(siegel_server: SiegelInstance, outside_key: Signer, tmp_path: Path,
                                              packaging: str) -> None:
    r = _signed(siegel_server, outside_key, format="xades", packaging=packaging, name="invoice.xml",
                mimeType="application/xml", document=base64.b64encode(INVOICE).decode())
    assert r.headers["Content-Type"] == "application/xml"
    assert r.headers["X-Siegel-Signature-Type"] == "urn:ietf:rfc:3275"
    _root_pem(siegel_server, tmp_path)
    (tmp_path / "invoice.xml").write_bytes(INVOICE)  # a detached reference's URI names the file
    (tmp_path / "signed.xml").write_bytes(r.content)
    done = _xmlsec1(tmp_path, "signed.xml")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    if packaging == "enveloped":
        assert r.content.startswith(b"<?xml") and b"<total>42.00</total>" in r.content
        [report] = _verified(siegel_server, r.content)
        assert (report["indication"], report["format"]) == ("TOTAL-PASSED", "XAdES"), report


def test_xades_two_step_over_a_digest_only(siegel_server: SiegelInstance, outside_key: Signer, tmp_path: Path) -> None:
    r = _signed(siegel_server, outside_key, format="xades", name="invoice.xml", digestAlgorithm="SHA-256",
                digest=base64.b64encode(hashlib.sha256(INVOICE).digest()).decode())
    _root_pem(siegel_server, tmp_path)
    (tmp_path / "invoice.xml").write_bytes(INVOICE)
    (tmp_path / "signature.xml").write_bytes(r.content)
    assert _xmlsec1(tmp_path, "signature.xml").returncode == 0


def test_pades_two_step_verifies_with_pdfsig(siegel_server: SiegelInstance, outside_key: Signer, nss: Path,  # noqa: F811
                                             tmp_path: Path) -> None:
    pdf = make_pdf(pages=2)
    r = _signed(siegel_server, outside_key, format="pades", name="contract.pdf", mimeType="application/pdf",
                document=base64.b64encode(pdf).decode())
    assert r.headers["Content-Type"] == "application/pdf" and r.content.startswith(pdf)
    assert r.headers["X-Siegel-Signature-Type"] == "http://uri.etsi.org/19142/v1.1.1"
    _pdfsig_and_qpdf(nss, r.content, tmp_path, 1)
    [report] = _verified(siegel_server, r.content)
    assert report["indication"] == "TOTAL-PASSED", report


@pytest.mark.parametrize("container", ["xades", "cades"])
def test_asic_two_step_verifies(siegel_server: SiegelInstance, outside_key: Signer, container: str) -> None:
    documents = [{"name": "invoice.xml", "mimeType": "application/xml", "content": base64.b64encode(INVOICE).decode()},
                 {"name": "annex/terms.txt", "mimeType": "text/plain",
                  "content": base64.b64encode(b"terms and conditions\n").decode()}]
    r = _signed(siegel_server, outside_key, format="asic", container=container, documents=documents)
    assert r.headers["Content-Type"] == "application/vnd.etsi.asic-e+zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        first = archive.infolist()[0]
        assert (first.filename, first.compress_type) == ("mimetype", zipfile.ZIP_STORED)
        assert archive.read("annex/terms.txt") == b"terms and conditions\n"
        assert ("META-INF/signatures.xml" if container == "xades" else "META-INF/signature.p7s") in archive.namelist()
    [report] = _verified(siegel_server, r.content)
    assert report["indication"] == "TOTAL-PASSED", report
    assert sorted(s["name"] for s in report["scopes"]) == ["annex/terms.txt", "invoice.xml"], report


def test_an_asic_over_two_documents_of_one_name_is_refused_and_nothing_is_kept(siegel_server: SiegelInstance,
                                                                             outside_key: Signer) -> None:
    """The problem document carries the ResultMinor a DSS SignRequest gets for the same mistake."""
    chain, _ = outside_key
    documents = [{"name": "annex/terms.txt", "mimeType": "text/plain", "content": base64.b64encode(text).decode()}
                 for text in (b"terms\n", b"other terms\n")]
    before = _kept(siegel_server)
    r = requests.post(siegel_server.url + "/api/v1/sign/prepare", auth=siegel_server.auth, timeout=30,
                      json={"certificateChain": chain, "format": "asic", "documents": documents})
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/problem+json", r.text
    problem = r.json()
    assert problem["resultMinor"] == "urn:siegel:dss:1.0:resultminor:DuplicateDocumentName", problem
    assert "the same name 'annex/terms.txt'" in problem["detail"], problem
    assert _kept(siegel_server) == before


def _kept(inst: SiegelInstance) -> tuple[int, int]:
    """Prepared states and audit entries (the scheduler's CRL renewals, which come when due, not counted)."""
    with sqlite3.connect(inst.data_dir / "siegel.db") as db:
        return (db.execute("SELECT COUNT(*) FROM signing_states").fetchone()[0],
                db.execute("SELECT COUNT(*) FROM audit_log WHERE actor != 'scheduler'").fetchone()[0])


def test_an_expired_state_is_refused(siegel_server: SiegelInstance, outside_key: Signer) -> None:
    chain, sign = outside_key
    prepared = _prepare(siegel_server, chain, format="xades", packaging="enveloped", name="invoice.xml",
                        mimeType="application/xml", document=base64.b64encode(INVOICE).decode())
    with sqlite3.connect(siegel_server.data_dir / "siegel.db") as db:
        db.execute("UPDATE signing_states SET expires_at = '2020-01-01 00:00:00.000000' WHERE id = ?",
                   (prepared["stateId"],))
    value = sign(base64.b64decode(prepared["digestToSign"]), prepared["signatureAlgorithm"])
    r = _complete(siegel_server, prepared["stateId"], value)
    assert r.status_code == 409 and "expired" in r.json()["detail"], r.text


def test_what_two_step_signing_does_not_offer_is_refused(siegel_server: SiegelInstance, outside_key: Signer) -> None:
    chain, _ = outside_key
    base = siegel_server.url + "/api/v1/sign/prepare"
    pdf_digest = {"format": "pades", "digestAlgorithm": "SHA-256", "digest": base64.b64encode(bytes(32)).decode()}
    r = requests.post(base, auth=siegel_server.auth, timeout=30, json={"certificateChain": chain, **pdf_digest})
    assert r.status_code == 400 and "digest only" in r.json()["detail"], r.text
    two = {"format": "xades", "documents": [{"name": n, "content": base64.b64encode(INVOICE).decode()}
                                            for n in ("a.xml", "b.xml")]}
    r = requests.post(base, auth=siegel_server.auth, timeout=30, json={"certificateChain": chain, **two})
    assert r.status_code == 400 and "one document" in r.json()["detail"], r.text
    r = requests.post(base, auth=siegel_server.auth, timeout=30, json={"certificateChain": chain, "format": "odt",
                                                                       "document": ""})
    assert r.status_code == 400 and "format" in r.json()["detail"], r.text
