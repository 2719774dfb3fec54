"""``POST /api/v1/sign``: CAdES with the caller's own HSM key, B-T stamped by the server's own TSA."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import sqlite3
import subprocess
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tests.fixtures.server import SiegelInstance

pytestmark = pytest.mark.e2e

DOCUMENT = b"%PDF-1.7 not really, but any bytes are a document to CAdES\n" * 100
SIGNATURE_TIME_STAMP = "1.2.840.113549.1.9.16.2.14"


@pytest.fixture(scope="module")
def signer(siegel_server: SiegelInstance) -> tuple[str, str]:
    name, password = "rest-signer", "rest-signer-password"
    siegel_server.cli("user", "add", name, "--email", "rest-signer@example.com", "--role", "signer",
                      "--password-stdin", stdin=password + "\n")
    siegel_server.cli("ca", "issue", name)
    return name, password


def _pems(inst: SiegelInstance, where: Path) -> None:
    for name in ("ROOT", "ISSUING"):
        der = requests.get(f"{inst.url}/ca/{name}.crt", timeout=10).content
        (where / f"{name.lower()}.pem").write_bytes(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM))


def _openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=60, check=False)


def _cms_verified(tmp_path: Path, signature: str, content: str | None = None, ca: str = "root.pem",
                  out: str = "/dev/null") -> None:
    """``openssl cms -verify`` of ``signature`` (detached over ``content``, else enveloping) against ``ca``."""
    detached = ["-content", content] if content else []
    done = _openssl("cms", "-verify", "-binary", "-inform", "DER", "-in", signature, *detached, "-CAfile", ca,
                    "-purpose", "any", "-out", out, cwd=tmp_path)
    assert done.returncode == 0 and b"Verification successful" in done.stderr, done.stderr


def test_detached_b_t_with_the_callers_key_and_the_internal_tsa(
        siegel_server: SiegelInstance, signer: tuple[str, str], tmp_path: Path) -> None:
    r = requests.post(siegel_server.url + "/api/v1/sign?format=cades&level=B-T&packaging=detached", data=DOCUMENT,
                      auth=signer, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/pkcs7-signature"
    _pems(siegel_server, tmp_path)
    (tmp_path / "document.bin").write_bytes(DOCUMENT)
    (tmp_path / "signature.p7s").write_bytes(r.content)
    _cms_verified(tmp_path, "signature.p7s", "document.bin")
    signer_info = cms.ContentInfo.load(r.content)["content"]["signer_infos"][0]
    assert signer_info["sid"].chosen["serial_number"].native  # issued by our CA to the caller
    (stamp,) = [a for a in signer_info["unsigned_attrs"] if a["type"].dotted == SIGNATURE_TIME_STAMP]
    (tmp_path / "token.der").write_bytes(stamp["values"][0].dump())
    done = _openssl("ts", "-verify", "-token_in", "-in", "token.der", "-digest",
                    hashlib.sha256(signer_info["signature"].native).hexdigest(), "-CAfile", "root.pem",
                    "-untrusted", "issuing.pem", cwd=tmp_path)
    assert done.returncode == 0 and b"Verification: OK" in done.stdout, done.stdout + done.stderr

    with sqlite3.connect(siegel_server.data_dir / "siegel.db") as db:  # the signature is in the audit log
        rows = db.execute("SELECT actor, details FROM audit_log WHERE action = 'sign.cades' AND target = ?",
                          (hashlib.sha256(DOCUMENT).hexdigest(),)).fetchall()
    assert any(actor == signer[0] and '"level":"B-T"' in details for actor, details in rows), rows


def test_enveloping_b_b_returns_the_content_inside(
        siegel_server: SiegelInstance, signer: tuple[str, str], tmp_path: Path) -> None:
    r = requests.post(siegel_server.url + "/api/v1/sign?level=B-B&packaging=enveloping", data=DOCUMENT,
                      auth=signer, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/pkcs7-mime; smime-type=signed-data"
    _pems(siegel_server, tmp_path)
    (tmp_path / "signed.p7m").write_bytes(r.content)
    _cms_verified(tmp_path, "signed.p7m", out="content.bin")
    assert (tmp_path / "content.bin").read_bytes() == DOCUMENT


@pytest.mark.parametrize(("query", "status", "message"), [
    ("packaging=enveloped", 400, "never enveloped"),
    ("format=xades&packaging=enveloped", 400, "is not XML"),
    ("key=ca-root", 404, "no key 'ca-root' this account may sign with"),
    ("packaging=sideways", 400, "expected one of detached, enveloping, enveloped"),
    ("format=pdf", 400, "expected one of cades, xades, asic"),
    ("level=B-X", 400, "expected one of B-B, B-T, B-LT, B-LTA"),
])
def test_what_is_not_offered_is_refused_as_problem_json(
        siegel_server: SiegelInstance, signer: tuple[str, str], query: str, status: int, message: str) -> None:
    r = requests.post(f"{siegel_server.url}/api/v1/sign?{query}", data=DOCUMENT, auth=signer, timeout=30)
    assert r.status_code == status and r.headers["Content-Type"] == "application/problem+json"
    assert message in r.json()["detail"], r.json()


def test_an_account_without_a_certificate_and_an_empty_body_are_refused(
        siegel_server: SiegelInstance, signer: tuple[str, str]) -> None:
    url = siegel_server.url + "/api/v1/sign"
    keyless = ("keyless", "keyless-password")
    siegel_server.cli("user", "add", keyless[0], "--email", "keyless@example.com", "--role", "signer",
                      "--password-stdin", stdin=keyless[1] + "\n")
    r = requests.post(url, data=DOCUMENT, auth=keyless, timeout=30)
    assert r.status_code == 404 and "no valid signing certificate" in r.json()["detail"]
    r = requests.post(url, data=b"", auth=signer, timeout=30)
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    assert requests.post(url, data=DOCUMENT, timeout=30).status_code == 401


@pytest.mark.parametrize("algorithm", ["SHA-256", "SHA-384", "SHA-512"])
def test_sign_hash_the_document_never_reaches_the_server(
        siegel_server: SiegelInstance, signer: tuple[str, str], tmp_path: Path, algorithm: str) -> None:
    digest = hashlib.new(algorithm.replace("-", "").lower(), DOCUMENT).digest()
    r = requests.post(siegel_server.url + "/api/v1/sign-hash", auth=signer, timeout=30,
                      json={"digestAlgorithm": algorithm, "digest": base64.b64encode(digest).decode(), "level": "B-B"})
    assert r.status_code == 200, r.text
    _pems(siegel_server, tmp_path)
    (tmp_path / "document.bin").write_bytes(DOCUMENT)
    (tmp_path / "signature.p7s").write_bytes(r.content)
    _cms_verified(tmp_path, "signature.p7s", "document.bin")


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"digestAlgorithm": "SHA-256", "digest": base64.b64encode(bytes(20)).decode()}, 400, "has 32 bytes, this one 20"),
    ({"digestAlgorithm": "MD5", "digest": ""}, 400, "expected one of SHA-256"),
    ({"digestAlgorithm": "SHA-256", "digest": "***"}, 400, "base64"),
    ({"digestAlgorithm": "SHA-256", "digest": "", "format": "pades"}, 400, "expected format cades or xades"),
    ([1, 2], 400, "JSON object"),
])
def test_sign_hash_refuses_bad_input(siegel_server: SiegelInstance, signer: tuple[str, str], body: object,
                                     status: int, message: str) -> None:
    r = requests.post(siegel_server.url + "/api/v1/sign-hash", auth=signer, json=body, timeout=30)
    assert r.status_code == status and message in r.json()["detail"], r.text


def test_siegel_sign_writes_a_signature_openssl_accepts(
        siegel_server: SiegelInstance, signer: tuple[str, str], tmp_path: Path) -> None:
    (tmp_path / "contract.txt").write_bytes(DOCUMENT)
    siegel_server.cli("user", "add", "keyless-cli", "--email", "keyless-cli@example.com", "--role", "signer",
                      "--password-stdin", stdin="keyless-password\n")
    out = siegel_server.cli("sign", str(tmp_path / "contract.txt"), "--as", signer[0], "--level", "B-T").stdout
    assert "written to" in out and (tmp_path / "contract.txt.p7s").exists()
    _pems(siegel_server, tmp_path)
    _cms_verified(tmp_path, "contract.txt.p7s", "contract.txt")
    siegel_server.cli("sign", str(tmp_path / "contract.txt"), "--as", signer[0], "--level", "B-B",
                      "--packaging", "enveloping", "--out", str(tmp_path / "signed.p7m"))
    _cms_verified(tmp_path, "signed.p7m", out="content.bin")
    assert (tmp_path / "content.bin").read_bytes() == DOCUMENT

    for args, code, message in ((["sign", str(tmp_path / "missing.txt"), "--as", signer[0]], 65, "No such file"),
                                (["sign", str(tmp_path / "contract.txt"), "--as", "nobody"], 65, "no user named"),
                                (["sign", str(tmp_path / "contract.txt"), "--as", "keyless-cli"], 65,
                                 "no valid signing certificate")):
        done_cli = siegel_server.cli(*args, check=False)
        assert done_cli.returncode == code and message in done_cli.stderr, (args, done_cli.stderr)
    assert not list(tmp_path.glob("*.partial"))


def _outside_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, x509.Certificate]:
    """A signer key held outside Siegel (a card, a remote service) with a certificate of another CA."""
    now = datetime.now(timezone.utc)
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Card Issuer Root")])
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(root_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Karla Kartenhalter")]))
            .issuer_name(root_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
            .sign(root_key, hashes.SHA256()))
    return key, leaf, root


def _prepare(inst: SiegelInstance, auth: tuple[str, str], chain: list[x509.Certificate], level: str = "B-B",
             digest: bytes | None = None) -> requests.Response:
    return requests.post(inst.url + "/api/v1/sign/prepare", auth=auth, timeout=30, json={
        "digestAlgorithm": "SHA-256", "digest": base64.b64encode(digest or hashlib.sha256(DOCUMENT).digest()).decode(),
        "level": level, "certificateChain": [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in chain]})


def _complete(inst: SiegelInstance, auth: tuple[str, str], state: str, value: bytes) -> requests.Response:
    return requests.post(inst.url + "/api/v1/sign/complete", auth=auth, timeout=30,
                         json={"stateId": state, "signatureValue": base64.b64encode(value).decode()})


@pytest.mark.parametrize("level", ["B-B", "B-T"])
def test_two_step_signing_with_a_key_outside_siegel(siegel_server: SiegelInstance, signer: tuple[str, str],
                                                    tmp_path: Path, level: str) -> None:
    key, leaf, root = _outside_ca()
    r = _prepare(siegel_server, signer, [leaf, root], level)
    assert r.status_code == 200, r.text
    prepared = r.json()
    assert prepared["digestAlgorithm"] == "SHA-256" and prepared["signatureAlgorithm"] == "ecdsa"
    to_sign = base64.b64decode(prepared["digestToSign"])

    wrong = key.sign(hashlib.sha256(b"something else").digest(), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    r = _complete(siegel_server, signer, prepared["stateId"], wrong)
    assert r.status_code == 400 and "does not verify" in r.json()["detail"]
    other = (f"two-step-other-{level}", "two-step-other-pw")
    siegel_server.cli("user", "add", other[0], "--email", f"other-{level}@example.com", "--role", "signer",
                      "--password-stdin", stdin=other[1] + "\n")
    value = key.sign(to_sign, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    assert _complete(siegel_server, other, prepared["stateId"], value).status_code == 404  # not theirs

    r = _complete(siegel_server, signer, prepared["stateId"], value)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/pkcs7-signature"
    (tmp_path / "card-root.pem").write_bytes(root.public_bytes(Encoding.PEM))
    (tmp_path / "document.bin").write_bytes(DOCUMENT)
    (tmp_path / "signature.p7s").write_bytes(r.content)
    _cms_verified(tmp_path, "signature.p7s", "document.bin", ca="card-root.pem")
    unsigned = cms.ContentInfo.load(r.content)["content"]["signer_infos"][0]["unsigned_attrs"]
    stamped = unsigned.native is not None and any(a["type"].dotted == SIGNATURE_TIME_STAMP for a in unsigned)
    assert stamped is (level == "B-T")
    assert _complete(siegel_server, signer, prepared["stateId"], value).status_code == 404  # once only


def test_two_step_refuses_bad_chains_and_states(siegel_server: SiegelInstance, signer: tuple[str, str]) -> None:
    key, leaf, root = _outside_ca()
    r = _prepare(siegel_server, signer, [root, leaf])
    assert r.status_code == 400 and "is not issued by the next entry" in r.json()["detail"]
    r = requests.post(siegel_server.url + "/api/v1/sign/prepare", auth=signer, timeout=30, json={
        "digestAlgorithm": "SHA-256", "digest": base64.b64encode(bytes(32)).decode(), "level": "B-B",
        "certificateChain": [base64.b64encode(b"not a certificate").decode()]})
    assert r.status_code == 400 and "DER X.509" in r.json()["detail"]
    r = _complete(siegel_server, signer, "no-such-state", b"\x30\x00")
    assert r.status_code == 404 and "no prepared signature" in r.json()["detail"]
    assert requests.post(siegel_server.url + "/api/v1/sign/nothing", auth=signer, timeout=30).status_code == 404


def test_the_openapi_document_describes_every_route(siegel_server: SiegelInstance) -> None:
    from server.web.rest import ApiV1, Sign

    r = requests.get(siegel_server.url + "/api/v1/openapi.json", auth=siegel_server.auth, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/openapi+json"
    doc = r.json()
    assert doc["openapi"] == "3.1.0" and doc["servers"] == [{"url": siegel_server.url + "/api/v1"}]
    tree = ApiV1(None, None, siegel_server.url, brands=None)  # type: ignore[arg-type]
    routes = {"/" + name.decode() for name in tree.children}
    routes |= {"/sign/" + name.decode() for name in Sign(None, None).children}  # type: ignore[arg-type]
    assert routes <= set(doc["paths"]), routes - set(doc["paths"])
    for path, operations in doc["paths"].items():  # every described operation answers (not 404)
        for method in operations:
            answer = requests.request(method.upper(), siegel_server.url + "/api/v1" + path, auth=siegel_server.auth,
                                      json={}, timeout=30)
            assert answer.status_code != 404 or "signing certificate" in answer.text or "prepared" in answer.text, \
                (method, path, answer.status_code, answer.text)


@pytest.mark.parametrize(("container", "signature_files", "verified_format"),
                         [("xades", ["META-INF/*signatures*.xml"], "ASiC-E/XAdES"),
                          ("cades", ["META-INF/ASiCManifest*.xml", "META-INF/*signature*.p7s"], "ASiC-E/CAdES")])
def test_an_asic_e_container_with_the_callers_key(siegel_server: SiegelInstance, signer: tuple[str, str],
                                                  container: str, signature_files: list[str],
                                                  verified_format: str) -> None:
    """``format=asic``: the body in an ASiC-E container, ``mimetype`` first and stored, the signature files named
    as EN 319 162-1 says."""

    r = requests.post(f"{siegel_server.url}/api/v1/sign?format=asic&container={container}&level=B-T&name=liste.txt",
                      data=DOCUMENT, headers={"content-type": "text/plain"}, auth=signer, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/vnd.etsi.asic-e+zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        first = archive.infolist()[0]
        assert (first.filename, first.compress_type) == ("mimetype", zipfile.ZIP_STORED)
        assert archive.read("mimetype") == b"application/vnd.etsi.asic-e+zip"
        assert archive.read("liste.txt") == DOCUMENT
        names = archive.namelist()
        assert all(fnmatch.filter(names, pattern) for pattern in signature_files), names
    (sig,) = requests.post(f"{siegel_server.url}/api/v1/verify", data=r.content, auth=signer,
                           timeout=60).json()["signatures"]
    assert (sig["indication"], sig["format"], sig["level"]) == ("TOTAL-PASSED", verified_format, "B-T"), sig
    assert [s["name"] for s in sig["scopes"]] == ["liste.txt"], sig["scopes"]
