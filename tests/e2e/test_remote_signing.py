"""Remote signing end to end with two Siegel processes, each with its own data directory and database: A has
B's ``/csc/v2`` configured as the remote account ``b`` (B's user ada, HTTP Basic); A signs a PDF (PAdES B-T)
and an XML document (XAdES B-T) with ada's key at B. B mails the OTP to the SMTP sink, the test reads it
and gives it to A with ada's PIN. The results verify with pdfsig and xmlsec1 (trust anchor: B's root) and
with A's own verifier; afterwards B's database files, every row of every table of B's database, and B's
log hold neither the documents nor a marker string written inside them."""

from __future__ import annotations

import base64
import re
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import MetaData, Table, create_engine, inspect, select, update

from adapters.remote_signing.client import CscClient, RemoteAccount, RemoteServiceError, pkce_pair
from server.db.models import RemoteOperation
from tests.e2e.test_branding import BOX, GLOBEX, _hex, _logo_png
from tests.e2e.test_branding_assign import new_client, put_client
from tests.e2e.test_branding_reports import LOGO_SIZE, images, stamp_shows
from tests.fixtures.pdf import make_pdf, nss_trusting, pdfsig
from tests.fixtures.server import SiegelInstance, make_instance
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.e2e

ADA = ("ada", "ada-password-123")
ADMIN = ("root", "root-password-123")
MARKER = "Geheimvertrag-7f3a9c-Siegel-Remote-Marker"
XML = (f'<order xmlns="urn:example:order"><item>{MARKER}</item><total currency="EUR">1200.00</total>'
       '</order>').encode()
XADES_NS = "http://uri.etsi.org/01903/v1.3.2#"
REDIRECT = "https://a.example/remote-signing/callback"


@pytest.fixture
def pair(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[tuple[SiegelInstance, SiegelInstance]]:
    """B (the CSC service, ada with a key) and A (B's /csc/v2 as remote account "b"), both running."""
    b = make_instance(tmp_path / "b", {
        "SIEGEL_MAIL_HOST": smtp_server.host, "SIEGEL_MAIL_PORT": str(smtp_server.port),
        "SIEGEL_MAIL_SENDER": "siegel-b@example.com", "SIEGEL_TWOFACTOR_RESEND_SECONDS": "0",
        "SIEGEL_LOG_LEVEL": "DEBUG", "SIEGEL_CSC_OAUTH2_REDIRECT_URIS": REDIRECT})
    b.cli("user", "add", ADA[0], "--email", "ada@example.com", "--role", "signer", "--password-stdin",
          stdin=ADA[1] + "\n")
    b.cli("ca", "issue", ADA[0])
    b.start()
    root_pem = tmp_path / "b-root.pem"
    root_pem.write_text(b.cli("ca", "export", "ROOT").stdout)
    accounts = tmp_path / "remote-accounts.toml"
    accounts.write_text(f'[[account]]\nname = "b"\nurl = "{b.url}/csc/v2"\nauth = "basic"\nusername = "ada"\n')
    a = make_instance(tmp_path / "a", {"SIEGEL_REMOTE_SIGNING_ACCOUNTS_FILE": str(accounts),
                                       "SIEGEL_REMOTE_SECRET_B": ADA[1],
                                       "SIEGEL_VALIDATION_TRUST_ROOTS": str(root_pem)})
    a.cli("user", "add", ADMIN[0], "--email", "root@example.com", "--role", "admin", "--password-stdin",
          stdin=ADMIN[1] + "\n")
    a.start()
    try:
        yield a, b
    finally:
        for inst in (a, b):
            if inst.process is not None and inst.process.poll() is None:
                inst.stop()


def _overview(a: SiegelInstance) -> dict[str, Any]:
    r = requests.get(f"{a.url}/api/v1/remote-signing/accounts", auth=ADMIN, timeout=60)
    assert r.status_code == 200, r.text
    (account,) = r.json()["accounts"]
    assert account["error"] is None, account
    return account  # type: ignore[no-any-return]


def _otp(smtp: SmtpServer, before: int) -> str:
    mail = smtp.wait_for(before + 1)[-1]
    assert "ada@example.com" in mail.message["To"]
    (text,) = [part.get_content() for part in mail.message.walk() if part.get_content_type() == "text/plain"]
    return re.search(r"\b(\d{6})\b", text).group(1)  # type: ignore[union-attr]


def _remote_sign(a: SiegelInstance, smtp: SmtpServer, credential: str, query: str, body: bytes,
                 content_type: str, *, wrong_otp_first: bool = True, auth: tuple[str, str] | None = None) -> bytes:
    """The signed result of ``body`` with ``credential`` at B: started at A (as ``auth``, else A's integration
    account), authorised with the OTP B mailed (after a wrong one, when ``wrong_otp_first``), once only."""
    auth = auth or a.auth
    before = len(smtp.messages)
    started = requests.post(f"{a.url}/api/v1/sign?{query}&remote=b&credential={credential}", data=body,
                            headers={"Content-Type": content_type}, auth=auth, timeout=120)
    assert started.status_code == 202, started.text
    pending = started.json()
    assert pending["state"] == "awaiting-otp" and pending["otpSent"] is True and pending["signatures"] == 1
    otp = _otp(smtp, before)
    if wrong_otp_first:
        wrong = "000000" if otp != "000000" else "111111"
        refused = requests.post(f"{a.url}/api/v1/sign/remote/authorize", auth=auth, timeout=120,
                                json={"operation": pending["operation"], "pin": ADA[1], "otp": wrong})
        assert refused.status_code == 400, refused.text  # the service's error and description; the operation waits
        assert "credentials/authorize: invalid_request: The OTP is invalid (HTTP 400)" in refused.json()["detail"]
    done = requests.post(f"{a.url}/api/v1/sign/remote/authorize", auth=auth, timeout=120,
                         json={"operation": pending["operation"], "pin": ADA[1], "otp": otp})
    assert done.status_code == 200, done.text
    again = requests.post(f"{a.url}/api/v1/sign/remote/authorize", auth=auth, timeout=60,
                          json={"operation": pending["operation"], "pin": ADA[1], "otp": otp})
    assert again.status_code == 404, again.text
    return done.content


def test_the_api_clients_brand_is_on_the_stamp_of_a_remote_signature(
        pair: tuple[SiegelInstance, SiegelInstance], smtp_server: SmtpServer, tmp_path: Path) -> None:
    """The stamp is drawn when A prepares the operation (phase 1): an API client's brand (given over REST) is
    on it; the same account with its password gets the plain stamp."""
    a, _ = pair
    (credential,) = _overview(a)["credentials"]
    (tmp_path / "globex.png").write_bytes(_logo_png(GLOBEX["logo"]))
    a.cli("brand", "set", "globex", "--company-name", "Globex AG", "--primary-color", _hex(GLOBEX["primary"]))
    a.cli("brand", "logo", "globex", str(tmp_path / "globex.png"))
    key, secret = new_client(a, "DMS Globex")
    assert put_client(a, key, {"brand": "globex"}, auth=ADMIN).status_code == 200
    x, y, w, h = BOX
    query = f"format=pades&level=B-B&page=1&x={x}&y={y}&w={w}&h={h}"
    pdf = make_pdf()
    branded = _remote_sign(a, smtp_server, credential["id"], query, pdf, "application/pdf", wrong_otp_first=False,
                           auth=(key, secret))
    plain = _remote_sign(a, smtp_server, credential["id"], query, pdf, "application/pdf", wrong_otp_first=False)
    assert stamp_shows(branded, tmp_path, GLOBEX) and LOGO_SIZE in images(branded, tmp_path)
    assert not stamp_shows(plain, tmp_path, GLOBEX) and LOGO_SIZE not in images(plain, tmp_path)
    assert _verified(a, branded)["indication"] == "TOTAL-PASSED"


def _verified(a: SiegelInstance, data: bytes, signatures: int = 1) -> dict[str, Any]:
    """A's report on the first of the ``signatures`` in ``data`` (a PAdES B-LTA's document timestamp is one)."""
    r = requests.post(f"{a.url}/api/v1/verify", data=data, auth=a.auth, timeout=120)
    assert r.status_code == 200, r.text
    found = r.json()["signatures"]
    assert len(found) == signatures, found
    return found[0]  # type: ignore[no-any-return]


def test_a_signs_pdf_and_xml_with_a_key_of_b_and_b_never_sees_the_documents(
        pair: tuple[SiegelInstance, SiegelInstance], smtp_server: SmtpServer, tmp_path: Path) -> None:
    a, b = pair
    account = _overview(a)
    (credential,) = account["credentials"]
    assert credential["scal"] == "2" and credential["authMode"] == "explicit" and credential["otp"] == "online"
    assert credential["validity"] == "valid" and credential["signaturesBySiegel"] == 0
    assert "ada" in credential["subject"] and account["service"]["specs"].startswith("2.")
    cid = credential["id"]

    pdf = make_pdf(text=MARKER, padding=4096)
    assert MARKER.encode() in pdf
    signed_pdf = _remote_sign(a, smtp_server, cid, "format=pades&level=B-T", pdf, "application/pdf")
    assert signed_pdf[:len(pdf)] == pdf
    signed_xml = _remote_sign(a, smtp_server, cid, "format=xades&level=B-T&packaging=enveloped", XML,
                              "application/xml")
    assert MARKER.encode() in signed_xml

    b_root = x509.load_pem_x509_certificate((tmp_path / "b-root.pem").read_bytes())
    nss = nss_trusting(tmp_path / "nss", tmp_path / "b-root.pem", "b-root")
    report = pdfsig(nss, signed_pdf, tmp_path / "signed.pdf")
    assert "Signature is Valid." in report and "Certificate is Trusted." in report, report

    issuing = x509.load_der_x509_certificate(requests.get(f"{b.url}/ca/ISSUING.crt", timeout=10).content)
    (tmp_path / "b-issuing.pem").write_bytes(issuing.public_bytes(Encoding.PEM))
    (tmp_path / "signed.xml").write_bytes(signed_xml)
    xmlsec = subprocess.run(["xmlsec1", "--verify", "--trusted-pem", "b-root.pem", "--untrusted-pem", "b-issuing.pem",
                             "--id-attr:Id", f"{XADES_NS}:SignedProperties", "signed.xml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert xmlsec.returncode == 0, xmlsec.stdout + xmlsec.stderr
    a_root = x509.load_der_x509_certificate(requests.get(f"{a.url}/ca/ROOT.crt", timeout=10).content)
    assert a_root.public_key() != b_root.public_key()  # two PKIs: the signer's chain is B's, not A's

    for data, fmt in ((signed_pdf, "PAdES"), (signed_xml, "XAdES")):
        sig = _verified(a, data)
        assert (sig["indication"], sig["level"], sig["format"]) == ("TOTAL-PASSED", "B-T", fmt), sig

    assert _overview(a)["credentials"][0]["signaturesBySiegel"] == 2
    (line,) = a.cli("remote", "accounts").stdout.splitlines()
    assert line.split("\t")[:2] == ["b", cid] and line.endswith("\tvalid\t2"), line
    _assert_b_never_saw(b, [pdf, XML, MARKER.encode()])


def _assert_b_never_saw(b: SiegelInstance, secrets_: list[bytes]) -> None:
    """Neither the documents nor the marker in B's database files, its rows, or its log (it was there: the
    signatures B made are in its audit log, so the scan reads what B stored)."""
    b.stop()
    files = [p for p in b.data_dir.iterdir() if p.name.startswith("siegel.db")]
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in secrets_:
            assert secret not in data, f"{path.name} holds document bytes"
    engine = create_engine(f"sqlite:///{b.data_dir / 'siegel.db'}")
    rows_seen = 0
    try:
        metadata = MetaData()
        with engine.connect() as conn:
            for name in inspect(engine).get_table_names():
                for row in conn.execute(select(Table(name, metadata, autoload_with=engine))):
                    rows_seen += 1
                    for value in row:
                        raw = value if isinstance(value, bytes) else str(value).encode()
                        for secret in secrets_:
                            assert secret not in raw, f"table {name} holds document bytes"
            actions = [r[0] for r in conn.exec_driver_sql("SELECT action FROM audit_log").all()]
    finally:
        engine.dispose()
    assert rows_seen > 0 and actions.count("csc.sign") == 2 and actions.count("csc.authorize") == 2
    assert actions.count("csc.authorize_refused") == 2  # the two wrong OTPs
    log = b.log_path.read_bytes()
    assert b"/csc/v2/signatures/signHash" in log
    for secret in secrets_:
        assert secret not in log


def _waiting_xml(a: SiegelInstance, smtp: SmtpServer) -> tuple[str, str, str]:
    """A XAdES B-B operation of A with ada's key at B, waiting: the credential, the operation, the OTP B mailed."""
    cid = _overview(a)["credentials"][0]["id"]
    started = requests.post(f"{a.url}/api/v1/sign?format=xades&level=B-B&packaging=enveloped&remote=b&credential={cid}",
                            data=XML, headers={"Content-Type": "application/xml"}, auth=a.auth, timeout=120)
    assert started.status_code == 202, started.text
    return cid, started.json()["operation"], _otp(smtp, 0)


def test_cancel_and_expiry_leave_nothing_signed(pair: tuple[SiegelInstance, SiegelInstance],
                                                smtp_server: SmtpServer) -> None:
    a, b = pair
    cid, operation, otp = _waiting_xml(a, smtp_server)
    cancelled = requests.post(f"{a.url}/api/v1/sign/remote/cancel", json={"operation": operation}, auth=a.auth,
                              timeout=60)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled", cancelled.text
    late = requests.post(f"{a.url}/api/v1/sign/remote/authorize", auth=a.auth, timeout=60,
                         json={"operation": operation, "pin": ADA[1], "otp": otp})
    assert late.status_code == 404, late.text
    unknown = requests.post(f"{a.url}/api/v1/sign?format=xades&packaging=enveloped&remote=nope&credential={cid}",
                            data=XML, headers={"Content-Type": "application/xml"}, auth=a.auth, timeout=60)
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"], unknown.text
    not_admin = requests.get(f"{a.url}/api/v1/remote-signing/accounts", auth=a.auth, timeout=60)
    assert not_admin.status_code == 403, not_admin.text
    assert b.count("SELECT count(*) FROM audit_log WHERE action = 'csc.sign'") == 0
    assert _overview(a)["credentials"][0]["signaturesBySiegel"] == 0


def test_an_operation_outlives_a_restart_and_two_workers_authorising_at_once_sign_once(
        pair: tuple[SiegelInstance, SiegelInstance], smtp_server: SmtpServer) -> None:
    """The waiting operation is in A's database: A restarts (now with two workers) between start and
    authorize; then two authorisations of it at the same moment: one signs, the other is refused."""
    a, b = pair
    _, operation, otp = _waiting_xml(a, smtp_server)
    a.stop()
    a.start("--workers", "2")
    body = {"operation": operation, "pin": ADA[1], "otp": otp}
    barrier = threading.Barrier(2)

    def authorize() -> requests.Response:
        session = requests.Session()  # a connection of its own: the two may land on either worker
        barrier.wait()
        return session.post(f"{a.url}/api/v1/sign/remote/authorize", auth=a.auth, timeout=120, json=body)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: authorize(), range(2)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses[0] == 200 and statuses[1] in (404, 409), [r.text for r in answers]
    (done,) = [r for r in answers if r.status_code == 200]
    assert MARKER.encode() in done.content and b"SignatureValue" in done.content
    assert _verified(a, done.content)["indication"] == "TOTAL-PASSED"
    assert _overview(a)["credentials"][0]["signaturesBySiegel"] == 1
    assert a.count("SELECT count(*) FROM remote_operations") == 0  # signed: the operation and document are gone
    assert b.count("SELECT count(*) FROM audit_log WHERE action IN ('csc.authorize', 'csc.sign')") == 2


def test_a_dead_workers_operation_is_authorised_again_after_its_lease_and_its_document_is_sealed_meanwhile(
        pair: tuple[SiegelInstance, SiegelInstance], smtp_server: SmtpServer) -> None:
    """A's waiting operation holds the XML only encrypted; a worker that took it and died (its row as such a
    worker leaves it, written into A's database) blocks it with a 409 naming the lease's end while the lease
    runs, and once it ran out the next authorisation signs it."""
    a, _ = pair
    _, operation, otp = _waiting_xml(a, smtp_server)
    engine = create_engine(f"sqlite:///{a.data_dir / 'siegel.db'}")
    try:
        with engine.connect() as conn:
            (states,) = conn.execute(select(RemoteOperation.states).where(RemoteOperation.id == operation)).one()
        assert MARKER not in states and base64.b64encode(XML).decode() not in states and "xades" not in states

        def as_if_a_worker_died(lease_until: datetime) -> None:
            with engine.begin() as conn:
                conn.execute(update(RemoteOperation).where(RemoteOperation.id == operation).values(
                    status="signing", taker="a-dead-worker", lease_until=lease_until))

        body = {"operation": operation, "pin": ADA[1], "otp": otp}
        as_if_a_worker_died(datetime.now(UTC) + timedelta(minutes=5))
        busy = requests.post(f"{a.url}/api/v1/sign/remote/authorize", auth=a.auth, timeout=60, json=body)
        assert busy.status_code == 409 and "its lease runs until" in busy.json()["detail"], busy.text
        as_if_a_worker_died(datetime.now(UTC) - timedelta(seconds=1))
        done = requests.post(f"{a.url}/api/v1/sign/remote/authorize", auth=a.auth, timeout=120, json=body)
        assert done.status_code == 200, done.text
        assert MARKER.encode() in done.content and _verified(a, done.content)["indication"] == "TOTAL-PASSED"
    finally:
        engine.dispose()
    assert a.count("SELECT count(*) FROM remote_operations") == 0


def test_the_client_authorises_by_oauth2_client_credentials_and_by_a_code_with_pkce(
        pair: tuple[SiegelInstance, SiegelInstance]) -> None:
    """Against B: client credentials of an API client (B's erp account and its key), and ada authorising
    the client in her browser (here: HTTP Basic at oauth2/authorize) for a code the client exchanges with
    its PKCE verifier."""
    _, b = pair
    out = b.cli("apiclient", "create", "--user", b.user).stdout
    key = re.search(r"key:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    secret = re.search(r"secret:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    service = CscClient(RemoteAccount("b", f"{b.url}/csc/v2", "oauth2client", key, secret), 10.0, 1)
    (erp_key,) = service.credentials()
    assert service.credential_info(erp_key).scal == "2"

    user = CscClient(RemoteAccount("b", f"{b.url}/csc/v2", "oauth2code", key, secret), 10.0, 1)
    verifier, challenge = pkce_pair()
    url = user.authorization_url(REDIRECT, "state-1", challenge)
    answer = requests.get(url, auth=ADA, allow_redirects=False, timeout=30)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT + "?") and "state=state-1" in location
    code = re.search(r"code=([^&]+)", location).group(1)  # type: ignore[union-attr]
    user.exchange_code(code, verifier, REDIRECT)
    (ada_key,) = user.credentials()
    assert ada_key != erp_key and "ada" in user.credential_info(ada_key).certificate.subject.rfc4514_string()
    _, wrong_challenge = pkce_pair()
    again = requests.get(user.authorization_url(REDIRECT, "s", wrong_challenge), auth=ADA, allow_redirects=False,
                         timeout=30)
    code = re.search(r"code=([^&]+)", again.headers["Location"]).group(1)  # type: ignore[union-attr]
    with pytest.raises(RemoteServiceError, match="invalid_grant: PKCE"):
        user.exchange_code(code, verifier, REDIRECT)


def _openssl_verify(tmp_path: Path, signature: bytes, content: bytes | None, b: SiegelInstance) -> bytes:
    """``openssl cms -verify`` against B's root (the detached ``content`` given with ``-content``): the content."""
    issuing = x509.load_der_x509_certificate(requests.get(f"{b.url}/ca/ISSUING.crt", timeout=10).content)
    (tmp_path / "b-issuing.pem").write_bytes(issuing.public_bytes(Encoding.PEM))
    (tmp_path / "signature.p7").write_bytes(signature)
    extra = []
    if content is not None:
        (tmp_path / "content.txt").write_bytes(content)
        extra = ["-content", "content.txt"]
    done = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", "signature.p7",
                           "-CAfile", "b-root.pem", "-certfile", "b-issuing.pem", "-purpose", "any", *extra,
                           "-out", "out.txt"], cwd=tmp_path, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0 and b"Verification successful" in done.stderr, done.stderr
    return (tmp_path / "out.txt").read_bytes()


def test_remote_cades_enveloping_and_b_lta_and_every_format_at_b_lta(
        pair: tuple[SiegelInstance, SiegelInstance], smtp_server: SmtpServer, tmp_path: Path) -> None:
    """What A's own keys sign, A signs with ada's key at B too: CAdES enveloping at B-T and B-LTA (the archive
    timestamp covers the document, which waits, sealed, in A's operation), detached at B-LT, XAdES, PAdES and
    ASiC-E (both signature formats) at B-LTA; openssl and A's verifier accept them. What A's own keys refuse
    (a detached B-LTA of a streamed body) is refused with the same named error."""
    a, b = pair
    cid = _overview(a)["credentials"][0]["id"]
    text = f"Vertrag {MARKER}\n".encode() * 20

    def sign(query: str, body: bytes, content_type: str = "text/plain") -> bytes:
        return _remote_sign(a, smtp_server, cid, query, body, content_type, wrong_otp_first=False)

    enveloping_bt = sign("format=cades&level=B-T&packaging=enveloping", text)
    assert _openssl_verify(tmp_path, enveloping_bt, None, b) == text
    enveloping = sign("format=cades&level=B-LTA&packaging=enveloping", text)
    assert _openssl_verify(tmp_path, enveloping, None, b) == text
    sig = _verified(a, enveloping)
    assert (sig["indication"], sig["level"], sig["format"]) == ("TOTAL-PASSED", "B-LTA", "CAdES"), sig

    detached = sign("format=cades&level=B-LT&packaging=detached", text)
    assert text not in detached
    _openssl_verify(tmp_path, detached, text, b)
    r = requests.post(f"{a.url}/api/v1/verify", auth=a.auth, timeout=120,
                      files={"signature": ("contract.p7s", detached), "document": ("document", text)})
    assert r.status_code == 200, r.text
    (sig,) = r.json()["signatures"]
    assert (sig["indication"], sig["level"], sig["format"]) == ("TOTAL-PASSED", "B-LT", "CAdES"), sig
    # POST /sign hashes a detached body as it streams in: a detached B-LTA (whose archive timestamp covers the
    # document) is refused by name, with A's own key as with the remote one
    refusals = [requests.post(f"{a.url}/api/v1/sign?format=cades&level=B-LTA&packaging=detached{remote}", data=text,
                              headers={"Content-Type": "text/plain"}, auth=a.auth, timeout=60)
                for remote in ("", f"&remote=b&credential={cid}")]
    assert [r.status_code for r in refusals] == [501, 501], [r.text for r in refusals]
    assert refusals[0].json()["detail"].startswith("CAdES B-LTA over a digest alone is not offered")
    assert refusals[1].json()["detail"].startswith("CAdES B-LTA over a digest alone is not offered")

    for query, body, content_type, fmt, signatures in (
            ("format=xades&level=B-LTA&packaging=enveloped", XML, "application/xml", "XAdES", 1),
            ("format=pades&level=B-LTA", make_pdf(text=MARKER), "application/pdf", "PAdES", 2)):
        sig = _verified(a, sign(query, body, content_type), signatures)
        assert (sig["indication"], sig["level"], sig["format"]) == ("TOTAL-PASSED", "B-LTA", fmt), sig
    for container in ("xades", "cades"):
        asice = sign(f"format=asic&container={container}&level=B-LTA", text)
        sig = _verified(a, asice)
        assert (sig["indication"], sig["level"]) == ("TOTAL-PASSED", "B-LTA"), sig
