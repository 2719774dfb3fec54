"""RFC 3161 requests, responses and token checks on known vectors (no network)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import pytest
from asn1crypto import cms, tsp
from cryptography import x509

from adapters.timestamp import (
    InvalidToken,
    TimestampError,
    build_request,
    client_from_settings,
    endpoint_from_url,
    parse_response,
    verify_token,
)
from server import config
from server.errors import Code

pytestmark = pytest.mark.unit

# The imprint of bc-parsetest/essv2-response.tsr as the token states it (BC's test has no data for it).
ESSV2_DIGEST = bytes.fromhex("5c53418dd3c4c02d4162ec0030430564497a86bbdb40cef27b1175bb48c5c71d")
ESSV2_NONCE = 0x0116C8B93A59


@pytest.fixture(scope="module")
def vectors(shared_dir: Path) -> Path:
    return shared_dir / "vectors" / "timestamps"


def token_of(path: Path) -> bytes:
    status, token = parse_response(path.read_bytes())
    assert status.granted and token is not None, status.describe()
    return token


def token_certificates(token: bytes) -> list[x509.Certificate]:
    signed = cms.ContentInfo.load(token)["content"]
    return [x509.load_der_x509_certificate(c.chosen.dump()) for c in signed["certificates"]]


def test_request_carries_imprint_nonce_and_cert_req() -> None:
    digest = hashlib.sha384(b"document").digest()
    req = tsp.TimeStampReq.load(build_request(digest, "sha384", 2**64 - 1, cert_req=False))
    assert req["version"].native == "v1"
    assert req["message_imprint"]["hash_algorithm"]["algorithm"].dotted == "2.16.840.1.101.3.4.2.2"
    assert req["message_imprint"]["hashed_message"].native == digest
    assert req["nonce"].native == 2**64 - 1
    assert req["cert_req"].native is False
    assert tsp.TimeStampReq.load(build_request(digest, "sha384", 1))["cert_req"].native is True


@pytest.mark.parametrize("alg, digest, words", [
    ("md5", hashlib.md5(b"x").digest(), "md5 is not accepted"),
    ("sha1", hashlib.sha1(b"x").digest(), "sha1 is not accepted"),
    ("sha256", hashlib.sha384(b"x").digest(), "has 32 bytes, not 48"),
])
def test_request_refuses_weak_or_wrong_digests(alg: str, digest: bytes, words: str) -> None:
    with pytest.raises(TimestampError, match=words) as err:
        build_request(digest, alg, 1)
    assert err.value.code is Code.TSA_FAILED


def test_rejection_vector_names_status_and_fail_info(vectors: Path) -> None:
    status, token = parse_response((vectors / "bc-parsetest/rejection-unaccepted-policy.tsr").read_bytes())
    assert token is None and not status.granted
    assert (status.status, status.fail_info) == ("rejection", ("unacceptedPolicy",))
    assert status.describe() == "status rejection, failInfo unacceptedPolicy (Requested policy is not supported.)"


def test_response_that_is_no_timestampresp_is_a_structure_error() -> None:
    with pytest.raises(InvalidToken) as err:
        parse_response(b"<html>oops</html>")
    assert err.value.check == "response structure"


def test_dss_d_trust_token_valid_for_its_content_rsassa_pss(vectors: Path) -> None:
    token = (vectors / "dss/d-trust.tsr").read_bytes()  # a bare token (ContentInfo), not a TimeStampResp
    info = verify_token(token, hashlib.sha256((vectors / "dss/Test123.txt").read_bytes()).digest(), "sha256")
    assert info.gen_time.date() == datetime(2018, 5, 23, tzinfo=timezone.utc).date()
    assert "D-TRUST TSU 12 2017" in info.signer.subject.rfc4514_string()
    assert info.policy == "0.4.0.2023.1.1" and info.nonce is None


def test_dss_d_trust_token_refused_for_other_content(vectors: Path) -> None:
    token = (vectors / "dss/d-trust.tsr").read_bytes()
    with pytest.raises(InvalidToken) as err:
        verify_token(token, hashlib.sha256((vectors / "dss/wrong-data.txt").read_bytes()).digest(), "sha256")
    assert err.value.check == "message imprint"


def test_d_trust_token_chains_to_its_own_root_but_not_to_another(vectors: Path) -> None:
    token = (vectors / "dss/d-trust.tsr").read_bytes()
    digest = hashlib.sha256(b"Test123").digest()
    roots = [c for c in token_certificates(token) if c.subject == c.issuer]
    assert roots, "the vector carries its root"
    verify_token(token, digest, "sha256", roots)
    stranger = x509.load_der_x509_certificate((vectors / "bc-parsetest/tsa-signing-cert.der").read_bytes())
    with pytest.raises(InvalidToken) as err:
        verify_token(token, digest, "sha256", [stranger])
    assert err.value.check == "trust anchor"


def test_essv2_vector_valid_and_nonce_checked(vectors: Path) -> None:
    token = token_of(vectors / "bc-parsetest/essv2-response.tsr")
    info = verify_token(token, ESSV2_DIGEST, "sha256", nonce=ESSV2_NONCE)
    assert info.serial == 0xCEC56BB83AB4CBD9237760965C0C7E97
    assert "QC Root TSP" in (info.tsa_name or "")
    with pytest.raises(InvalidToken) as err:
        verify_token(token, ESSV2_DIGEST, "sha256", nonce=ESSV2_NONCE + 1)
    assert err.value.check == "nonce"


@pytest.mark.parametrize("name, alg", [("md5-response.tsr", "md5"), ("sha1-response.tsr", "sha1")])
def test_weak_imprint_vectors_refused(vectors: Path, name: str, alg: str) -> None:
    token = token_of(vectors / "bc-parsetest" / name)
    imprint = tsp.TSTInfo.load(bytes(cms.ContentInfo.load(token)["content"]["encap_content_info"]["content"]))
    with pytest.raises(InvalidToken) as err:
        verify_token(token, imprint["message_imprint"]["hashed_message"].native, alg)
    assert err.value.check == "hash algorithm" and f"uses {alg}" in err.value.detail


def test_malformed_vector_refused_as_structure(vectors: Path) -> None:
    token = token_of(vectors / "bc-parsetest/malformed-generalizedtime.tsr")
    with pytest.raises(InvalidToken) as err:
        verify_token(token, hashlib.sha256(b"").digest(), "sha256")
    assert err.value.check == "structure"


def test_tstinfo_changed_after_signing_is_refused(vectors: Path) -> None:
    token = (vectors / "dss/d-trust.tsr").read_bytes()
    serial_at = token.index(bytes.fromhex("7dcf141188032b05112e05d334b8fd29"))  # inside the TSTInfo
    tampered = token[:serial_at] + bytes([token[serial_at] ^ 1]) + token[serial_at + 1:]
    with pytest.raises(InvalidToken) as err:
        verify_token(tampered, hashlib.sha256(b"Test123").digest(), "sha256")
    assert err.value.check == "signature" and "message-digest" in err.value.detail


def test_endpoint_credentials_leave_the_url() -> None:
    tsa = endpoint_from_url("https://ts%40user:p%3Ass@tsa.example:8443/tsr?x=1")
    assert (tsa.url, tsa.username, tsa.password) == ("https://tsa.example:8443/tsr?x=1", "ts@user", "p:ss")
    assert endpoint_from_url("http://tsa.example/").username is None


def test_client_from_settings_resolves_internal(tmp_path: Path) -> None:
    settings = config.load(data_dir=tmp_path, environ={
        "SIEGEL_SERVER_PUBLIC_BASE_URL": "https://siegel.example/",
        "SIEGEL_TSA_CLIENTS": "internal, https://u:pw@tsa.example/tsr",
        "SIEGEL_TSA_CLIENT_TIMEOUT_SECONDS": "2.5",
        "SIEGEL_TSA_CLIENT_RETRIES": "3",
    })
    client = client_from_settings(settings)
    assert [t.url for t in client.tsas] == ["https://siegel.example/tsa", "https://tsa.example/tsr"]
    assert (client.tsas[1].username, client.tsas[1].password) == ("u", "pw")
    assert (client.timeout, client.retries) == (2.5, 3)
