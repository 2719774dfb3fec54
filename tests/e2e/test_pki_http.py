"""The internal PKI over HTTP on a whole server: /ca, /crl, /ocsp, /tsa, checked by independent tools.

``openssl verify -crl_check``, ``openssl ocsp -url``, ``openssl ts -verify`` and pyhanko-certvalidator
(fetching CRLs and OCSP answers from the URLs in the certificates) all talk to the running server.
Certificates are issued and revoked with the ``siegel ca`` command while the server runs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import re
import subprocess
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError

from adapters.timestamp.client import client_from_settings, parse_response
from server import config
from tests.fixtures.server import SiegelInstance

pytestmark = pytest.mark.e2e

TSA_QUERY = {"Content-Type": "application/timestamp-query"}
OCSP_REQUEST = {"Content-Type": "application/ocsp-request"}
_names = itertools.count(1)


# --- helpers ---------------------------------------------------------------------------------------

def _get_der(inst: SiegelInstance, path: str, content_type: str) -> bytes:
    r = requests.get(inst.url + path, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == content_type
    return r.content


def _ca(inst: SiegelInstance, name: str) -> x509.Certificate:
    return x509.load_der_x509_certificate(_get_der(inst, f"/ca/{name}.crt", "application/pkix-cert"))


def _crl(inst: SiegelInstance, name: str) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(_get_der(inst, f"/crl/{name}.crl", "application/pkix-crl"))


def _issue_user(inst: SiegelInstance) -> x509.Certificate:
    """A new account and its user-signing certificate, issued with ``siegel ca issue``."""
    name = f"signer{next(_names)}"
    inst.cli("user", "add", name, "--email", f"{name}@example.com", "--role", "signer", "--password-stdin",
             stdin="signer-password-1\n")
    out = inst.cli("ca", "issue", name).stdout
    serial = re.search(r"issued certificate ([0-9a-f]+) to", out)
    assert serial is not None, out
    return x509.load_pem_x509_certificate(inst.cli("ca", "export", serial[1]).stdout.encode())


def _revoke(inst: SiegelInstance, cert: x509.Certificate, reason: str = "keyCompromise") -> None:
    inst.cli("ca", "revoke", format(cert.serial_number, "x"), "--reason", reason)


def _pems(where: Path, **certs: x509.Certificate) -> None:
    for name, cert in certs.items():
        (where / f"{name}.pem").write_bytes(cert.public_bytes(Encoding.PEM))


def _openssl(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], cwd=cwd, input=stdin, capture_output=True, timeout=60, check=False)


def _audit_entries(inst: SiegelInstance) -> int:
    out = inst.cli("audit", "verify").stdout
    found = re.search(r"intact: (\d+) entries", out)
    assert found is not None, out
    return int(found[1])


def _log_lines(inst: SiegelInstance) -> list[dict[str, object]]:
    return [json.loads(line) for line in inst.log().splitlines() if line.startswith("{")]


def _tsa_request(digest: bytes, algorithm: str = "sha256", nonce: int | None = None) -> bytes:
    fields: dict[str, object] = {"version": 1, "cert_req": True, "message_imprint": {
        "hash_algorithm": {"algorithm": algorithm}, "hashed_message": digest}}
    if nonce is not None:
        fields["nonce"] = nonce
    return tsp.TimeStampReq(fields).dump()


def _tst_info(reply: bytes) -> tsp.TSTInfo:
    status, token = parse_response(reply)
    assert status.granted and token is not None, status.describe()
    return cms.ContentInfo.load(token)["content"]["encap_content_info"]["content"].parsed


def _tsa_status(reply: bytes) -> tuple[str, set[str]]:
    status, token = parse_response(reply)
    assert token is None
    return status.status, set(status.fail_info)


# --- published objects ----------------------------------------------------------------------------

def test_ca_certificates_and_crls_are_published(siegel_server: SiegelInstance) -> None:
    root, issuing = _ca(siegel_server, "ROOT"), _ca(siegel_server, "ISSUING")
    assert root.subject == root.issuer and issuing.issuer == root.subject
    for name, issuer in (("ROOT", root), ("ISSUING", issuing)):
        crl = _crl(siegel_server, name)
        assert crl.issuer == issuer.subject and crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        assert crl.next_update_utc is not None and crl.next_update_utc > crl.last_update_utc
    r = requests.get(siegel_server.url + "/ca/ISSUING.crt", timeout=10)
    assert "max-age" in r.headers["Cache-Control"]

    for path in ("/crl/NOPE.crl", "/crl/ISSUING.pem", "/ca/..%2Fsiegel.db.crt", "/crl/", "/ca/a/b.crt"):
        r = requests.get(siegel_server.url + path, timeout=10)
        assert r.status_code == 404, path
        assert r.headers["Content-Type"] == "application/problem+json"

    # The links in an issued certificate lead to these objects on this server.
    user = _issue_user(siegel_server)
    aia = user.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    cdp = user.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    urls = [d.access_location.value for d in aia] + [n.value for p in cdp for n in p.full_name]
    assert sorted(urls) == sorted([f"{siegel_server.url}/ca/ISSUING.crt", f"{siegel_server.url}/ocsp",
                                   f"{siegel_server.url}/crl/ISSUING.crl"])


def test_openssl_verify_with_the_served_crl_before_and_after_revocation(
        siegel_server: SiegelInstance, tmp_path: Path) -> None:
    user = _issue_user(siegel_server)
    _pems(tmp_path, root=_ca(siegel_server, "ROOT"), issuing=_ca(siegel_server, "ISSUING"), user=user)

    def verify() -> subprocess.CompletedProcess[bytes]:
        crls = b"".join(_crl(siegel_server, n).public_bytes(Encoding.PEM) for n in ("ROOT", "ISSUING"))
        (tmp_path / "crls.pem").write_bytes(crls)
        return _openssl("verify", "-crl_check_all", "-CRLfile", "crls.pem", "-CAfile", "root.pem",
                        "-untrusted", "issuing.pem", "-purpose", "any", "user.pem", cwd=tmp_path)

    before = verify()
    assert before.returncode == 0 and b"user.pem: OK" in before.stdout, before.stderr
    _revoke(siegel_server, user)
    after = verify()
    assert after.returncode != 0
    assert b"certificate revoked" in after.stdout + after.stderr, after.stdout + after.stderr


def test_openssl_ocsp_says_good_then_revoked(siegel_server: SiegelInstance, tmp_path: Path) -> None:
    user = _issue_user(siegel_server)
    _pems(tmp_path, root=_ca(siegel_server, "ROOT"), issuing=_ca(siegel_server, "ISSUING"), user=user)

    def ask(*extra: str) -> str:
        done = _openssl("ocsp", "-issuer", "issuing.pem", *extra, "-cert", "user.pem", "-url",
                        f"{siegel_server.url}/ocsp", "-CAfile", "root.pem", "-verify_other", "issuing.pem",
                        cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert b"Response verify OK" in done.stderr, done.stderr
        return done.stdout.decode()

    assert "user.pem: good" in ask()
    assert "user.pem: good" in ask("-sha256")
    _revoke(siegel_server, user, "cessationOfOperation")
    out = ask()
    assert "user.pem: revoked" in out and "Reason: cessationOfOperation" in out, out


def test_ocsp_get_form(siegel_server: SiegelInstance) -> None:
    """RFC 6960 A.1: GET /ocsp/<url-encoded base64 of the DER request>."""
    user, issuing = _issue_user(siegel_server), _ca(siegel_server, "ISSUING")
    der = ocsp.OCSPRequestBuilder().add_certificate(user, issuing, hashes.SHA1()).build().public_bytes(Encoding.DER)
    encoded = urllib.parse.quote(base64.b64encode(der).decode(), safe="")
    r = requests.get(f"{siegel_server.url}/ocsp/{encoded}", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/ocsp-response"
    response = ocsp.load_der_ocsp_response(r.content)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == user.serial_number


def test_openssl_ts_verify_accepts_a_token_from_the_tsa(siegel_server: SiegelInstance, tmp_path: Path) -> None:
    (tmp_path / "document.txt").write_bytes(b"Vertrag zwischen A und B\n")
    _pems(tmp_path, root=_ca(siegel_server, "ROOT"), issuing=_ca(siegel_server, "ISSUING"))
    for digest in ("-sha256", "-sha384", "-sha512"):
        query = _openssl("ts", "-query", "-data", "document.txt", digest, "-cert", cwd=tmp_path)
        assert query.returncode == 0, query.stderr
        r = requests.post(siegel_server.url + "/tsa", data=query.stdout, headers=TSA_QUERY, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/timestamp-reply"
        (tmp_path / "reply.tsr").write_bytes(r.content)
        done = _openssl("ts", "-verify", "-data", "document.txt", "-in", "reply.tsr", "-CAfile", "root.pem",
                        "-untrusted", "issuing.pem", cwd=tmp_path)
        assert done.returncode == 0 and b"Verification: OK" in done.stdout, done.stdout + done.stderr


def test_our_client_uses_the_internal_tsa_by_default(siegel_server: SiegelInstance, tmp_path: Path) -> None:
    settings = config.load(data_dir=tmp_path, environ={"SIEGEL_SERVER_PUBLIC_BASE_URL": siegel_server.url})
    assert settings.tsa.clients == "internal"
    root = _ca(siegel_server, "ROOT")
    digest = hashlib.sha256(b"document").digest()
    token = client_from_settings(settings, [root]).timestamp(digest)
    assert token.policy == settings.tsa.policy_oid
    assert token.tsa_name is None or "Time-Stamping" in token.tsa_name


def test_pyhanko_certvalidator_checks_revocation_online(siegel_server: SiegelInstance) -> None:
    """Hard-fail revocation checking: every certificate of the path must have an answer from the server."""
    root, issuing = _ca(siegel_server, "ROOT"), _ca(siegel_server, "ISSUING")
    user = _issue_user(siegel_server)

    def validate() -> None:
        context = ValidationContext(trust_roots=[asn1_x509.Certificate.load(root.public_bytes(Encoding.DER))],
                                    allow_fetching=True, revocation_mode="hard-fail")
        validator = CertificateValidator(asn1_x509.Certificate.load(user.public_bytes(Encoding.DER)),
                                         intermediate_certs=[asn1_x509.Certificate.load(
                                             issuing.public_bytes(Encoding.DER))],
                                         validation_context=context)
        asyncio.run(validator.async_validate_usage({"digital_signature", "non_repudiation"}))

    validate()
    _revoke(siegel_server, user)
    with pytest.raises(RevokedError):
        validate()


# --- bad input ------------------------------------------------------------------------------------

def test_bad_inputs_get_the_protocols_error_and_a_log_line(siegel_server: SiegelInstance) -> None:
    audited = _audit_entries(siegel_server)
    url = siegel_server.url
    good = _tsa_request(hashlib.sha256(b"x").digest())

    def tsa(body: bytes, headers: dict[str, str] = TSA_QUERY, status: int = 200) -> tuple[str, set[str]]:
        r = requests.post(url + "/tsa", data=body, headers=headers, timeout=10)
        assert r.status_code == status and r.headers["Content-Type"] == "application/timestamp-reply", r.content
        return _tsa_status(r.content)

    assert tsa(good[:-3]) == ("rejection", {"badDataFormat"})
    assert tsa(b"\x00garbage") == ("rejection", {"badDataFormat"})
    assert tsa(_tsa_request(b"\x01" * 32, "1.2.3.4.5")) == ("rejection", {"badAlg"})
    assert tsa(_tsa_request(b"\x01" * 16, "md5")) == ("rejection", {"badAlg"})
    assert tsa(_tsa_request(b"\x01" * 20)) == ("rejection", {"badDataFormat"})  # 20 bytes are no SHA-256
    assert tsa(good, {"Content-Type": "application/octet-stream"}, 415) == ("rejection", {"badRequest"})
    assert tsa(good + b"\x00" * (70 * 1024), status=413) == ("rejection", {"badRequest"})
    r = requests.get(url + "/tsa", timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"

    user, issuing = _issue_user(siegel_server), _ca(siegel_server, "ISSUING")
    audited += 3  # the account, the certificate and its export
    request = ocsp.OCSPRequestBuilder().add_certificate(user, issuing, hashes.SHA256()).build()
    der = request.public_bytes(Encoding.DER)

    def ocsp_status(body: bytes, headers: dict[str, str] = OCSP_REQUEST, status: int = 200) -> object:
        r = requests.post(url + "/ocsp", data=body, headers=headers, timeout=10)
        assert r.status_code == status and r.headers["Content-Type"] == "application/ocsp-response", r.content
        return ocsp.load_der_ocsp_response(r.content).response_status

    malformed = ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert ocsp_status(der[:-4]) is malformed
    assert ocsp_status(der.replace(bytes.fromhex("0609608648016503040201"), bytes.fromhex("06092a0304050607080901"))) \
        is malformed  # SHA-256's OID swapped for an unknown one
    assert ocsp_status(der, {"Content-Type": "text/plain"}, 415) is malformed
    assert ocsp_status(der + b"\x00" * (70 * 1024), status=413) is malformed
    r = requests.get(url + "/ocsp/!!!not-base64", timeout=10)
    assert r.status_code == 400 and ocsp.load_der_ocsp_response(r.content).response_status is malformed

    assert ocsp_status(der) is ocsp.OCSPResponseStatus.SUCCESSFUL  # the server keeps serving
    assert requests.get(url + "/health", timeout=10).status_code == 200
    assert _audit_entries(siegel_server) == audited  # refusals and answers are not audited
    time.sleep(0.2)
    lines = _log_lines(siegel_server)
    problems = [str(line.get("problem")) for line in lines if line.get("logger") == "siegel.pki"]
    assert any("SHA-256, SHA-384, SHA-512 are" in p for p in problems), problems
    assert any("not a DER TimeStampReq" in p for p in problems), problems
    assert any("not a DER OCSPRequest" in p for p in problems), problems
    assert any("content type must be application/ocsp-request" in p for p in problems), problems
    assert any(line.get("status") == 413 and line.get("path") == "/ocsp" for line in lines)


# --- the token store and the keys -----------------------------------------------------------------

def test_two_workers_issue_1000_distinct_serial_numbers(siegel_instance: SiegelInstance) -> None:
    siegel_instance.start("--workers", "2")
    url = siegel_instance.url + "/tsa"
    digests = [hashlib.sha256(str(i).encode()).digest() for i in range(1000)]

    def stamp(i: int) -> tuple[int, bytes]:
        with requests.Session() as session:
            r = session.post(url, data=_tsa_request(digests[i], nonce=i + 1), headers=TSA_QUERY, timeout=30)
        assert r.status_code == 200
        tst = _tst_info(r.content)
        assert tst["nonce"].native == i + 1
        return tst["serial_number"].native, tst["message_imprint"]["hashed_message"].native

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(stamp, range(1000)))
    assert [imprint for _, imprint in results] == digests
    assert len({serial for serial, _ in results}) == 1000
    pids = {line["pid"] for line in _log_lines(siegel_instance)
            if line.get("msg") == "request" and line.get("path") == "/tsa"}
    assert len(pids) == 2, pids  # both workers answered
    assert siegel_instance.stop() == 0


def test_pki_private_keys_are_not_extractable(siegel_server: SiegelInstance) -> None:
    listed = {line.split("\t")[0]: line for line in siegel_server.cli("hsm", "keys").stdout.splitlines()}
    for label in ("ca-root", "ca-issuing", "tsa", "ocsp"):
        assert label in listed, listed
        assert "extractable=false" in listed[label] and "sensitive=true" in listed[label], listed[label]
    user = _issue_user(siegel_server)
    labels = siegel_server.cli("ca", "list").stdout
    label = next(line.split("\t")[3] for line in labels.splitlines()
                 if line.startswith(format(user.serial_number, "x")))
    keys = siegel_server.cli("hsm", "keys").stdout
    assert f"{label}\t" in keys and "extractable=true" not in keys


def test_the_crl_job_runs_in_the_server(siegel_instance: SiegelInstance) -> None:
    """``siegel init`` issued CRL 1; the scheduled job, due at the first start, issues CRL 2."""
    siegel_instance.env["SIEGEL_JOBS_POLL_SECONDS"] = "0.5"
    siegel_instance.start()
    deadline = time.monotonic() + 20
    numbers: list[int] = []
    while time.monotonic() < deadline:
        numbers = [_crl(siegel_instance, n).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
                   for n in ("ROOT", "ISSUING")]
        if min(numbers) >= 2:
            break
        time.sleep(0.2)
    assert numbers == [2, 2]
    assert siegel_instance.stop() == 0


def test_metrics_count_tokens_and_ocsp_responses(siegel_server: SiegelInstance) -> None:
    def signatures() -> dict[str, float]:
        text = requests.get(siegel_server.url + "/metrics", timeout=10).text
        return {m[1]: float(m[2]) for m in re.finditer(r'^siegel_signatures_total\{format="(\w+)"\} (\S+)$', text,
                                                      re.MULTILINE)}

    before = signatures()
    for i in range(3):
        r = requests.post(siegel_server.url + "/tsa", data=_tsa_request(hashlib.sha256(bytes([i])).digest()),
                          headers=TSA_QUERY, timeout=10)
        assert parse_response(r.content)[0].granted
    requests.post(siegel_server.url + "/tsa", data=b"\x00", headers=TSA_QUERY, timeout=10)  # rejected: not counted
    issuing = _ca(siegel_server, "ISSUING")
    der = ocsp.OCSPRequestBuilder().add_certificate(_issue_user(siegel_server), issuing, hashes.SHA1()).build()
    requests.post(siegel_server.url + "/ocsp", data=der.public_bytes(Encoding.DER), headers=OCSP_REQUEST, timeout=10)
    after = signatures()
    assert after.get("rfc3161", 0) - before.get("rfc3161", 0) == 3
    assert after.get("ocsp", 0) - before.get("ocsp", 0) == 1


def test_ca_commands_list_export_crl_and_refuse_clearly(siegel_server: SiegelInstance) -> None:
    user = _issue_user(siegel_server)
    serial = format(user.serial_number, "x")
    soon = siegel_server.cli("ca", "list", "--expiring-within", "30d").stdout
    assert serial not in soon  # user certificates live two years
    later = siegel_server.cli("ca", "list", "--expiring-within", "800d").stdout.splitlines()
    assert later[0] == "serial\tprofile\tsubject\tkey\tnot after\tstate"
    row = next(line.split("\t") for line in later if line.startswith(serial))
    assert row[1] == "user-signing" and row[3].startswith("user-") and row[5] == "valid"
    before = _crl(siegel_server, "ISSUING").extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    out = siegel_server.cli("ca", "crl", "issuing").stdout
    assert f"issued CRL number {before + 1} of the ISSUING CA" in out
    assert x509.load_pem_x509_certificate(siegel_server.cli("ca", "export", "ROOT").stdout.encode()) \
        == _ca(siegel_server, "ROOT")

    for args, message in ((["ca", "list", "--expiring-within", "soon"], "expected a number and a unit"),
                          (["ca", "revoke", "zz", "--reason", "keyCompromise"], "not a hexadecimal number"),
                          (["ca", "revoke", serial + "0", "--reason", "keyCompromise"], "no certificate with serial"),
                          (["ca", "issue", "nobody"], "no user named 'nobody'"),
                          (["ca", "export", "OTHER"], "expected ROOT, ISSUING or")):
        done = siegel_server.cli(*args, check=False)
        assert done.returncode == 65 and message in done.stderr, (args, done.returncode, done.stderr)
    done = siegel_server.cli("ca", "revoke", serial, "--reason", "becauseISaySo", check=False)
    assert done.returncode == 2 and "invalid choice" in done.stderr
