"""The CSC API v2 over HTTP against a running Siegel: login → list → info → sendOTP (a real SMTP sink) →
authorize → signHash, the signatures verified with the credential's certificate over the hashes
(``cryptography``); and each refusal (wrong OTP, expired SAD, SAD reused beyond numSignatures, SAD for another
hash, someone else's credential, wrong PIN repeatedly → locked) with its CSC error, an audit entry and no
signature. The document never reaches the server: only hashes are sent."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes as crypto_hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from sqlalchemy import create_engine, text

from tests.fixtures.server import SiegelInstance
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.e2e

ADA = ("ada", "ada-password-123")
BOB = ("bob", "bob-password-123")
SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Csc:
    def __init__(self, inst: SiegelInstance, smtp: SmtpServer) -> None:
        self.inst = inst
        self.smtp = smtp
        self.token: str | None = None

    def call(self, method: str, body: dict[str, Any] | None = None, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return requests.post(f"{self.inst.url}/csc/v2/{method}", json=body or {}, headers=headers, timeout=30, **kw)

    def login(self, who: tuple[str, str]) -> None:
        r = requests.post(f"{self.inst.url}/csc/v2/auth/login", json={}, auth=who, timeout=30)
        assert r.status_code == 200, r.text
        self.token = r.json()["access_token"]

    def otp(self, credential: str) -> str:
        before = len(self.smtp.messages)
        r = self.call("credentials/sendOTP", {"credentialID": credential})
        assert r.status_code == 204, r.text
        mail = self.smtp.wait_for(before + 1)[-1]
        return re.search(r"\b(\d{6})\b", mail.text).group(1)  # type: ignore[union-attr]

    def authorize(self, credential: str, digests: list[bytes], pin: str, n: int | None = None,
                  otp: str | None = None) -> requests.Response:
        return self.call("credentials/authorize", {
            "credentialID": credential, "numSignatures": n or len(digests), "hashes": [b64(d) for d in digests],
            "hashAlgorithmOID": SHA256,
            "authData": [{"id": "PIN", "value": pin}, {"id": "OTP", "value": otp or self.otp(credential)}]})

    def sign(self, credential: str, sad: str, digests: list[bytes]) -> requests.Response:
        return self.call("signatures/signHash", {"credentialID": credential, "SAD": sad,
                                                 "hashes": [b64(d) for d in digests], "hashAlgorithmOID": SHA256,
                                                 "signAlgo": ECDSA_SHA256})


def error(r: requests.Response) -> tuple[int, str, str]:
    assert r.headers["Content-Type"] == "application/json", r.headers
    body = r.json()
    assert set(body) == {"error", "error_description"}, body
    return r.status_code, body["error"], body["error_description"]


def audit(inst: SiegelInstance, action: str) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{inst.data_dir / 'siegel.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT target, details FROM audit_log WHERE action = :a ORDER BY seq"),
                                {"a": action}).all()
    finally:
        engine.dispose()
    return [{"target": r.target, **json.loads(r.details)} for r in rows]


@pytest.fixture
def csc(siegel_instance: SiegelInstance, smtp_server: SmtpServer) -> Csc:
    inst = siegel_instance
    inst.env.update({"SIEGEL_AUTH_CREDENTIAL_CACHE_SECONDS": "0", "SIEGEL_AUTH_LOCKOUT_THRESHOLD": "3",
                     "SIEGEL_AUTH_ADDRESS_LOCKOUT_THRESHOLD": "100", "SIEGEL_TWOFACTOR_RESEND_SECONDS": "0",
                     "SIEGEL_MAIL_HOST": smtp_server.host, "SIEGEL_MAIL_PORT": str(smtp_server.port),
                     "SIEGEL_MAIL_SENDER": "siegel@example.com", "SIEGEL_CSC_SAD_MINUTES": "1",
                     "SIEGEL_CSC_OAUTH2_REDIRECT_URIS": "https://app.example/cb"})
    for name, password in (ADA, BOB):
        inst.add_user(name, password, "signer")
    inst.start()
    return Csc(inst, smtp_server)


def test_info_and_login(csc: Csc) -> None:
    info = requests.post(f"{csc.inst.url}/csc/v2/info", json={}, timeout=30)
    assert info.status_code == 200 and info.json()["specs"].startswith("2.")
    assert "basic" in info.json()["authType"] and "signatures/signHash" in info.json()["methods"]
    assert error(requests.post(f"{csc.inst.url}/csc/v2/credentials/list", json={}, timeout=30))[:2] == \
        (401, "invalid_token")
    wrong = requests.post(f"{csc.inst.url}/csc/v2/auth/login", json={}, auth=("ada", "nope"), timeout=30)
    assert error(wrong)[:2] == (400, "authentication_error")
    no_basic = requests.post(f"{csc.inst.url}/csc/v2/auth/login", json={}, timeout=30)
    assert error(no_basic)[:2] == (401, "invalid_request")
    csc.login(ADA)
    assert csc.call("credentials/list").status_code == 200
    assert csc.call("auth/revoke", {"token": csc.token}).status_code == 204
    assert error(csc.call("credentials/list"))[:2] == (401, "expired_token")


def test_a_body_nested_deeper_than_the_stack_is_an_invalid_request(csc: Csc) -> None:
    """A fuzz finding (tests/fuzz/findings/csc-json-recursion.bin): 100000 '[' was a 500 internal error."""
    csc.login(ADA)
    r = requests.post(f"{csc.inst.url}/csc/v2/credentials/list", data=b"[" * 100000, timeout=30,
                      headers={"Authorization": f"Bearer {csc.token}", "Content-Type": "application/json"})
    assert error(r)[:2] == (400, "invalid_request")


def test_happy_path_signs_many_hashes_that_verify(csc: Csc) -> None:
    csc.login(ADA)
    (credential,) = csc.call("credentials/list").json()["credentialIDs"]
    info = csc.call("credentials/info", {"credentialID": credential, "certificates": "chain", "certInfo": True}).json()
    assert info["SCAL"] == "2" and info["authMode"] == "explicit" and ECDSA_SHA256 in info["key"]["algo"]
    assert {o["id"] for o in info["auth"]["objects"]} == {"PIN", "OTP"}
    cert = x509.load_der_x509_certificate(base64.b64decode(info["cert"]["certificates"][0]))
    assert "ada@example.com" in cert.subject.rfc4514_string() or "ada" in cert.subject.rfc4514_string()
    documents = [b"first document", b"second document", b"third document"]
    digests = [hashlib.sha256(d).digest() for d in documents]
    r = csc.authorize(credential, digests, ADA[1])
    assert r.status_code == 200, r.text
    sad = r.json()["SAD"]
    assert r.json()["expiresIn"] == 60 and len(base64.urlsafe_b64decode(sad + "=")) >= 16
    signed = csc.sign(credential, sad, digests)
    assert signed.status_code == 200, signed.text
    values = [base64.b64decode(v) for v in signed.json()["signatures"]]
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    for digest, value in zip(digests, values):
        key.verify(value, digest, ec.ECDSA(utils.Prehashed(crypto_hashes.SHA256())))
    (entry,) = audit(csc.inst, "csc.sign")
    assert entry["target"] == credential and entry["hashes"] == [d.hex() for d in digests]
    assert audit(csc.inst, "csc.authorize")[0]["hashes"] == sorted(d.hex() for d in digests)
    db = (csc.inst.data_dir / "siegel.db").read_bytes()
    assert not any(d in db for d in documents) and sad.encode() not in db and csc.token.encode() not in db  # type: ignore[union-attr]
    stamp = csc.call("signatures/timestamp", {"hash": b64(digests[0]), "hashAlgo": SHA256})
    assert stamp.status_code == 200 and base64.b64decode(stamp.json()["timestamp"])[:1] == b"\x30"


def test_refusals(csc: Csc) -> None:
    csc.login(ADA)
    (credential,) = csc.call("credentials/list").json()["credentialIDs"]
    digest = [hashlib.sha256(b"contract").digest()]

    # Wrong OTP: no SAD.
    csc.otp(credential)
    r = csc.authorize(credential, digest, ADA[1], otp="000000")
    assert error(r) == (400, "invalid_request", "The OTP is invalid")

    # SAD for another hash, then reused beyond numSignatures.
    sad = csc.authorize(credential, digest, ADA[1]).json()["SAD"]
    assert error(csc.sign(credential, sad, [hashlib.sha256(b"other").digest()])) == \
        (400, "invalid_request", "Hash is not authorized by the SAD")
    assert csc.sign(credential, sad, digest).status_code == 200
    assert error(csc.sign(credential, sad, digest)) == (400, "invalid_request", "Invalid parameter SAD")

    # Someone else's credential: bob cannot see, authorize or sign with ada's key, nor spend her SAD.
    sad = csc.authorize(credential, digest, ADA[1]).json()["SAD"]
    bob = Csc(csc.inst, csc.smtp)
    bob.login(BOB)
    assert credential not in bob.call("credentials/list").json()["credentialIDs"]
    assert error(bob.call("credentials/info", {"credentialID": credential})) == \
        (400, "invalid_request", "Invalid parameter credentialID")
    assert error(bob.sign(credential, sad, digest)) == (400, "invalid_request", "Invalid parameter credentialID")

    # Expired SAD (csc.sad_minutes = 1).
    time.sleep(61)
    assert error(csc.sign(credential, sad, digest)) == (400, "invalid_request", "SAD expired")

    # Wrong PIN repeatedly: locked (2 s after the third); then even the right PIN and a valid OTP are refused.
    code = csc.otp(credential)  # fetched first, so the lock cannot run out while the mail travels
    answers = [error(csc.authorize(credential, digest, "wrong password!", otp="123456")) for _ in range(3)]
    assert answers == [(400, "invalid_request", "The PIN is invalid")] * 2 + [(400, "invalid_request", "PIN locked")]
    assert error(csc.authorize(credential, digest, ADA[1], otp=code)) == (400, "invalid_request", "PIN locked")

    assert len(audit(csc.inst, "csc.sign")) == 1  # only the one allowed signature
    refused = [e["reason"] for e in audit(csc.inst, "csc.sign_refused")]
    assert refused == ["Hash is not authorized by the SAD", "Invalid parameter SAD",
                       "Invalid parameter credentialID", "SAD expired"], refused
    reasons = [e["reason"] for e in audit(csc.inst, "csc.authorize_refused")]
    assert reasons == ["wrong OTP", "wrong PIN", "wrong PIN", "wrong PIN, account locked", "account locked"], reasons


def test_unmodified_pyhanko_csc_signer_signs_a_pdf_through_csc_v1(csc: Csc, tmp_path: Any) -> None:
    """pyHanko's CSCSigner (CSC v1.0.4: /csc/v1/credentials/info, credentials/authorize with ``hash``, PIN and
    OTP, signatures/signHash with ``hash``/``hashAlgo``/``signAlgo``) signs a PDF with ada's key; pdfsig accepts
    the signature. Only pyHanko's own authorization hook is filled in, as its documentation asks."""
    import asyncio
    import io
    import subprocess

    import aiohttp
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.signers import csc_signer

    from tests.fixtures.pdf import make_pdf

    csc.login(ADA)
    (credential,) = csc.call("credentials/list").json()["credentialIDs"]
    smtp = csc.smtp

    async def sign() -> bytes:
        info = csc_signer.CSCServiceSessionInfo(csc.inst.url, credential, oauth_token=csc.token)
        async with aiohttp.ClientSession() as session:
            credential_info = await csc_signer.fetch_certs_in_csc_credential(session, info)
            assert credential_info.hash_pinning_required

            class Authorize(csc_signer.CSCAuthorizationManager):
                async def authorize_signature(self, hash_b64s: list[str]) -> csc_signer.CSCAuthorizationInfo:
                    before = len(smtp.messages)
                    async with session.post(info.endpoint_url("credentials/sendOTP"), headers=self.auth_headers,
                                            json={"credentialID": credential}, raise_for_status=True):
                        pass
                    mail = (await asyncio.to_thread(smtp.wait_for, before + 1))[-1]
                    code = re.search(r"\b(\d{6})\b", mail.text).group(1)  # type: ignore[union-attr]
                    request = self.format_csc_auth_request(pin=ADA[1], otp=code, hash_b64s=hash_b64s)
                    async with session.post(info.endpoint_url("credentials/authorize"), headers=self.auth_headers,
                                            json=request, raise_for_status=True) as r:
                        return self.parse_csc_auth_response(await r.json())

            signer = csc_signer.CSCSigner(session, Authorize(info, credential_info))
            out = io.BytesIO()
            await signers.async_sign_pdf(IncrementalPdfFileWriter(io.BytesIO(make_pdf())),
                                         signers.PdfSignatureMetadata(field_name="Signature1"), signer=signer,
                                         output=out)
            return out.getvalue()

    signed = asyncio.run(sign())
    (tmp_path / "signed.pdf").write_bytes(signed)
    done = subprocess.run(["pdfsig", "signed.pdf"], cwd=tmp_path, capture_output=True, timeout=60, check=False)
    report = done.stdout.decode(errors="replace")
    assert "Signature Validation: Signature is Valid." in report, report
    assert len(audit(csc.inst, "csc.sign")) == 1 and audit(csc.inst, "csc.authorize")[0]["numSignatures"] == 1


def test_oauth2_authorization_code_with_pkce_and_client_credentials(csc: Csc) -> None:
    import secrets
    from urllib.parse import parse_qs, urlsplit

    out = csc.inst.cli("apiclient", "create", "--user", csc.inst.user).stdout
    key = re.search(r"key:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    secret = re.search(r"secret:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    base = f"{csc.inst.url}/csc/v2"
    assert requests.post(f"{base}/info", json={}, timeout=30).json()["oauth2"] == base
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {"response_type": "code", "client_id": key, "redirect_uri": "https://app.example/cb", "scope": "service",
             "code_challenge": challenge, "code_challenge_method": "S256", "state": "xyz"}
    page = requests.get(f"{base}/oauth2/authorize", params=query, timeout=30, allow_redirects=False)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text  # the browser's
    assert 'name="password"' in page.text and "form-action 'self' https://app.example" in \
        page.headers["content-security-policy"]  # login page, whose form may lead only here and to the redirect URI
    r = requests.get(f"{base}/oauth2/authorize", params=query, auth=ADA, timeout=30, allow_redirects=False)
    assert r.status_code == 302, r.text
    location = urlsplit(r.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://app.example/cb"
    got = parse_qs(location.query)
    assert got["state"] == ["xyz"]
    form = {"grant_type": "authorization_code", "code": got["code"][0], "client_id": key,
            "redirect_uri": "https://app.example/cb", "code_verifier": verifier}
    token = requests.post(f"{base}/oauth2/token", data=form, timeout=30)
    assert token.status_code == 200 and token.json()["token_type"] == "Bearer", token.text
    csc.token = token.json()["access_token"]
    assert len(csc.call("credentials/list").json()["credentialIDs"]) == 1  # ada's key
    again = requests.post(f"{base}/oauth2/token", data=form, timeout=30)
    assert error(again) == (400, "invalid_grant", "Authorization code is invalid or expired")
    client = requests.post(f"{base}/oauth2/token", data={"grant_type": "client_credentials"}, auth=(key, secret),
                           timeout=30)
    assert client.status_code == 200, client.text
    csc.token = client.json()["access_token"]
    assert len(csc.call("credentials/list").json()["credentialIDs"]) == 1  # the integration account's key


def test_oauth2_scope_credential_authorises_exactly_its_hashes_in_place_of_a_sad(csc: Csc) -> None:
    """Siegel's client (adapters.remote_signing) against the server: oauth2/authorize with scope credential
    for ada's credential and two hashes (PIN = password by HTTP Basic, the OTP in X-Siegel-OTP), the code
    exchanged with the PKCE verifier; the token then signs exactly those hashes, at most numSignatures."""
    from adapters.remote_signing.client import CscClient, RemoteAccount, RemoteServiceError, pkce_pair
    from server.signing.keysource import DigestAlgorithm

    out = csc.inst.cli("apiclient", "create", "--user", csc.inst.user).stdout
    key = re.search(r"key:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    secret = re.search(r"secret:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    client = CscClient(RemoteAccount("siegel", f"{csc.inst.url}/csc/v2", "oauth2code", key, secret), 30.0, 0)
    csc.login(ADA)  # a service token of ada's, to have codes mailed (credentials/sendOTP)
    (credential,) = csc.call("credentials/list").json()["credentialIDs"]
    digests = [hashlib.sha256(b"first contract").digest(), hashlib.sha256(b"second contract").digest()]
    redirect = "https://app.example/cb"

    def code_for(verifier_challenge: str, otp: str) -> requests.Response:
        url = client.authorization_url(redirect, "st", verifier_challenge, scope="credential", credential_id=credential,
                                       hashes=digests, digest=DigestAlgorithm.SHA256)
        return requests.get(url, auth=ADA, headers={"X-Siegel-OTP": otp}, timeout=30, allow_redirects=False)

    def code_of(answer: requests.Response) -> str:
        assert answer.status_code == 302, answer.text
        return re.search(r"[?&]code=([^&]+)", answer.headers["Location"]).group(1)  # type: ignore[union-attr]

    verifier, challenge = pkce_pair()
    otp = csc.otp(credential)
    wrong_otp = "000000" if otp != "000000" else "111111"
    assert error(code_for(challenge, wrong_otp)) == (400, "invalid_request", "The OTP is invalid")

    # A wrong code_verifier: refused, and the code is spent by the attempt.
    first = code_of(code_for(challenge, otp))
    with pytest.raises(RemoteServiceError, match="invalid_grant: PKCE: the code_verifier does not match"):
        client.exchange_code(first, pkce_pair()[0], redirect, keep=False)
    with pytest.raises(RemoteServiceError, match="invalid_grant: Authorization code is invalid or expired"):
        client.exchange_code(first, verifier, redirect, keep=False)

    token = client.exchange_code(code_of(code_for(challenge, csc.otp(credential))), verifier, redirect, keep=False)
    as_service = requests.post(f"{csc.inst.url}/csc/v2/credentials/list", json={}, timeout=30,
                               headers={"Authorization": f"Bearer {token}"})
    assert error(as_service)[:2] == (403, "insufficient_scope")
    with pytest.raises(RemoteServiceError, match="invalid_request: Hash is not authorized by the SAD"):
        client.sign_hash(credential, None, [hashlib.sha256(b"another").digest()], DigestAlgorithm.SHA256,
                         ECDSA_SHA256, credential_token=token)
    values = client.sign_hash(credential, None, digests, DigestAlgorithm.SHA256, ECDSA_SHA256, credential_token=token)
    info = csc.call("credentials/info", {"credentialID": credential}).json()
    public = x509.load_der_x509_certificate(base64.b64decode(info["cert"]["certificates"][0])).public_key()
    for digest, value in zip(digests, values, strict=True):
        public.verify(value, digest, ec.ECDSA(utils.Prehashed(crypto_hashes.SHA256())))  # type: ignore[union-attr, call-arg]
    with pytest.raises(RemoteServiceError, match="invalid_request: Invalid parameter SAD"):  # beyond numSignatures
        client.sign_hash(credential, None, digests[:1], DigestAlgorithm.SHA256, ECDSA_SHA256, credential_token=token)
    (signed,) = audit(csc.inst, "csc.sign")
    assert signed["hashes"] == [d.hex() for d in digests]
    (authorized,) = audit(csc.inst, "csc.authorize")
    assert authorized["via"] == "oauth2 scope credential" and authorized["numSignatures"] == 2
    assert [e["reason"] for e in audit(csc.inst, "csc.authorize_refused")] == ["oauth2/authorize: wrong OTP"]


def test_every_csc_route_of_the_route_table_answers_with_csc_errors(csc: Csc) -> None:
    """The guard's table lists exactly the /csc paths served; none is 404; unauthenticated calls get CSC errors."""
    from server.web.auth import PUBLIC, ROUTES
    from server.web.csc import PATHS

    assert {p for p in ROUTES if p.startswith("/csc/")} == set(PATHS)
    for path in PATHS:
        for method, permission in ROUTES[path].items():  # oauth2/authorize: GET, and POST for its login form
            assert permission == PUBLIC
            r = requests.request(method, csc.inst.url + path, json={}, timeout=30, allow_redirects=False)
            assert r.status_code != 404, (path, method, r.status_code, r.text)
            if r.status_code >= 400:
                assert set(r.json()) == {"error", "error_description"}, (path, method, r.text)
    assert requests.get(csc.inst.url + "/csc/v2/credentials/list", timeout=30).status_code == 405
    assert requests.post(csc.inst.url + "/csc/v2/nothing", json={}, timeout=30).status_code == 404
