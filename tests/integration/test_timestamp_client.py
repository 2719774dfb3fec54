"""The RFC 3161 client against a real, independent TSA (openssl ts -reply), good and misbehaving."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import pytest
import requests
from asn1crypto import cms

from adapters.timestamp import (
    InvalidToken,
    TimestampClient,
    TimestampError,
    TsaEndpoint,
    build_request,
    endpoint_from_url,
    parse_response,
    verify_token,
)
from server.errors import Code
from tests.fixtures.ports import free_port
from tests.fixtures.tsa import POLICY, ReferenceTsa, resign

pytestmark = pytest.mark.integration

DIGEST = hashlib.sha256(b"the document").digest()


def client(*urls: str, timeout: float = 5.0, retries: int = 1, anchors: tuple = ()) -> TimestampClient:
    return TimestampClient([TsaEndpoint(u, anchors) for u in urls], timeout, retries)


def openssl_verify(response: bytes, digest: bytes, ca_pem: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "r.tsr").write_bytes(response)
    return subprocess.run(["openssl", "ts", "-verify", "-digest", digest.hex(), "-in", str(tmp_path / "r.tsr"),
                           "-CAfile", str(ca_pem)], capture_output=True, text=True, timeout=30)


def raw_reply(url: str, digest: bytes = DIGEST, nonce: int = 12345) -> bytes:
    return requests.post(url, data=build_request(digest, "sha256", nonce), timeout=10,
                         headers={"Content-Type": "application/timestamp-query"}).content


def refusal(c: TimestampClient, digest: bytes = DIGEST, hash_algorithm: str = "sha256") -> TimestampError:
    with pytest.raises(TimestampError) as err:
        c.timestamp(digest, hash_algorithm)
    assert err.value.code is Code.TSA_FAILED and err.value.kind.http_status == 502
    return err.value


@pytest.mark.parametrize("alg", ["sha256", "sha384", "sha512"])
def test_good_token_accepted_and_openssl_agrees(reference_tsa: ReferenceTsa, tmp_path: Path, alg: str) -> None:
    digest = hashlib.new(alg, b"the document").digest()
    token = client(reference_tsa.url, anchors=(reference_tsa.ca,)).timestamp(digest, alg)
    assert token.tsa_url == reference_tsa.url
    assert (token.info.hash_algorithm, token.info.digest, token.policy) == (alg, digest, POLICY)
    assert token.info.signer == reference_tsa.certificate("tsa")
    assert "Reference TSA" in (token.tsa_name or "")
    assert abs(token.gen_time.timestamp() - time.time()) < 120
    assert parse_response(token.response)[1] == token.token
    result = openssl_verify(token.response, digest, reference_tsa.ca_pem, tmp_path)
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result.stderr


def test_ecdsa_tsa_accepted_and_openssl_agrees(reference_tsa: ReferenceTsa, tmp_path: Path) -> None:
    token = client(reference_tsa.at("/ec"), anchors=(reference_tsa.ca,)).timestamp(DIGEST)
    assert token.info.signer == reference_tsa.certificate("ec-tsa")
    assert openssl_verify(token.response, DIGEST, reference_tsa.ca_pem, tmp_path).returncode == 0


def test_serials_differ_and_token_verifies_later(reference_tsa: ReferenceTsa) -> None:
    c = client(reference_tsa.url)
    first, second = c.timestamp(DIGEST), c.timestamp(DIGEST)
    assert first.serial != second.serial
    info = verify_token(first.token, DIGEST, "sha256", [reference_tsa.ca])
    assert info.serial == first.serial and info.gen_time == first.gen_time
    with pytest.raises(InvalidToken) as err:
        verify_token(first.token, hashlib.sha256(b"another").digest(), "sha256", [reference_tsa.ca])
    assert err.value.check == "message imprint"


def test_failover_from_broken_and_slow(reference_tsa: ReferenceTsa) -> None:
    before = reference_tsa.hits.copy()
    started = time.monotonic()
    token = client(reference_tsa.at("/broken"), reference_tsa.at("/slow"), reference_tsa.url,
                   timeout=0.5, retries=1).timestamp(DIGEST)
    assert token.tsa_url == reference_tsa.url
    assert reference_tsa.hits["/broken"] - before["/broken"] == 2  # one retry after HTTP 500
    assert reference_tsa.hits["/slow"] - before["/slow"] == 2  # one retry after a timeout
    assert time.monotonic() - started < reference_tsa.slow_seconds


def test_unreachable_tsa_is_a_network_error(reference_tsa: ReferenceTsa) -> None:
    dead = f"http://127.0.0.1:{free_port()}/tsa"
    err = refusal(client(dead, retries=2))
    assert f"TSA {dead} is unreachable: network error" in err.message and "after 3 attempts" in err.message


def test_rejection_is_reported_as_such_and_not_retried(reference_tsa: ReferenceTsa) -> None:
    before = reference_tsa.hits["/reject"]
    err = refusal(client(reference_tsa.at("/reject"), retries=3))
    assert err.message == (f"TSA {reference_tsa.at('/reject')} rejected the request: status rejection, "
                           "failInfo unacceptedPolicy (Requested policy is not supported.)")
    assert "network" not in err.message
    assert reference_tsa.hits["/reject"] - before == 1


def test_rejection_fails_over(reference_tsa: ReferenceTsa) -> None:
    token = client(reference_tsa.at("/reject"), reference_tsa.url).timestamp(DIGEST)
    assert token.tsa_url == reference_tsa.url


def test_unsupported_hash_rejected_with_bad_alg(reference_tsa: ReferenceTsa) -> None:
    err = refusal(client(reference_tsa.url), hashlib.sha3_256(b"x").digest(), "sha3_256")
    assert f"TSA {reference_tsa.url} rejected the request: status rejection, failInfo badAlg" in err.message


@pytest.mark.parametrize("path, check", [
    ("/wrong-imprint", "message imprint"),
    ("/wrong-nonce", "nonce"),
    ("/tampered", "signature"),
    ("/no-eku", "EKU timeStamping"),
    ("/eku-not-critical", "EKU timeStamping"),
    ("/expired-signer", "signer certificate"),
    ("/other-ca", "trust anchor"),
])
def test_bad_token_refused_naming_tsa_and_check(reference_tsa: ReferenceTsa, path: str, check: str) -> None:
    before = reference_tsa.hits[path]
    err = refusal(client(reference_tsa.at(path), retries=2, anchors=(reference_tsa.ca,)))
    assert err.message.startswith(f"TSA {reference_tsa.at(path)} returned a token that fails the {check} check: ")
    assert "network" not in err.message
    assert reference_tsa.hits[path] - before == 1


@pytest.mark.parametrize("path", ["/wrong-imprint", "/tampered"])
def test_openssl_refuses_the_bad_tokens_too(reference_tsa: ReferenceTsa, tmp_path: Path, path: str) -> None:
    result = openssl_verify(raw_reply(reference_tsa.at(path)), DIGEST, reference_tsa.ca_pem, tmp_path)
    assert result.returncode != 0 and "Verification: FAILED" in result.stdout


@pytest.mark.parametrize("path", ["/tsa", "/ess-v1"])
def test_resigning_alone_keeps_a_token_valid(reference_tsa: ReferenceTsa, path: str) -> None:
    """Control for /no-eku and the ESSCertID tests: re-signing with the real TSA certificate stays valid."""
    token = parse_response(resign(raw_reply(reference_tsa.at(path)), reference_tsa.directory, "tsa"))[1]
    assert token is not None
    verify_token(token, DIGEST, "sha256", [reference_tsa.ca], nonce=12345)


def test_ess_cert_id_v1_accepted_and_openssl_agrees(reference_tsa: ReferenceTsa, tmp_path: Path) -> None:
    token = client(reference_tsa.at("/ess-v1"), anchors=(reference_tsa.ca,)).timestamp(DIGEST)
    attrs = cms.ContentInfo.load(token.token)["content"]["signer_infos"][0]["signed_attrs"]
    assert "signing_certificate" in [a["type"].native for a in attrs]
    assert openssl_verify(token.response, DIGEST, reference_tsa.ca_pem, tmp_path).returncode == 0


@pytest.mark.parametrize("path, check", [("/tsa", "ESSCertIDv2"), ("/ess-v1", "ESSCertID")])
def test_ess_cert_id_naming_another_certificate_refused(reference_tsa: ReferenceTsa, path: str, check: str) -> None:
    response = resign(raw_reply(reference_tsa.at(path)), reference_tsa.directory, "tsa", ess_for="ec-tsa")
    token = parse_response(response)[1]
    assert token is not None
    with pytest.raises(InvalidToken) as err:
        verify_token(token, DIGEST, "sha256", [reference_tsa.ca])
    assert err.value.check == check and "certificate hash" in err.value.detail


def test_ess_issuer_serial_naming_another_certificate_refused(reference_tsa: ReferenceTsa) -> None:
    response = resign(raw_reply(reference_tsa.url), reference_tsa.directory, "tsa", ess_serial=7)
    with pytest.raises(InvalidToken, match="issuer serial number does not match") as err:
        verify_token(parse_response(response)[1] or b"", DIGEST, "sha256")
    assert err.value.check == "ESSCertIDv2"


def test_trust_anchor_of_the_other_ca_accepts_its_tsa(reference_tsa: ReferenceTsa) -> None:
    token = client(reference_tsa.at("/other-ca"), anchors=(reference_tsa.other_ca,)).timestamp(DIGEST)
    assert token.info.signer == reference_tsa.certificate("other-tsa")
    assert refusal(client(reference_tsa.url, anchors=(reference_tsa.other_ca,))).message.endswith(
        "(CN=Unrelated Test CA,O=Siegel tests)")


def test_without_cert_req_the_tsa_certificate_must_be_configured(reference_tsa: ReferenceTsa) -> None:
    bare = TimestampClient([TsaEndpoint(reference_tsa.url)], 5.0, 0)
    with pytest.raises(TimestampError, match="fails the signer certificate check"):
        bare.timestamp(DIGEST, cert_req=False)
    known = TimestampClient([TsaEndpoint(reference_tsa.url, (reference_tsa.ca,),
                                         certificates=(reference_tsa.certificate("tsa"),))], 5.0, 0)
    token = known.timestamp(DIGEST, cert_req=False)
    assert not cms.ContentInfo.load(token.token)["content"]["certificates"]


def test_basic_credentials(reference_tsa: ReferenceTsa) -> None:
    url = reference_tsa.at("/auth")
    assert refusal(client(url)).message == f"TSA {url} refused the HTTP request: HTTP 401 Unauthorized"
    with_credentials = endpoint_from_url(url.replace("http://", "http://user:password@"))
    assert TimestampClient([with_credentials], 5.0, 0).timestamp(DIGEST).tsa_url == url


def test_garbage_response_is_unusable(reference_tsa: ReferenceTsa) -> None:
    err = refusal(client(reference_tsa.at("/garbage")))
    assert err.message.startswith(f"TSA {reference_tsa.at('/garbage')} returned an unusable response (text/html")


def test_all_failing_lists_every_tsa(reference_tsa: ReferenceTsa) -> None:
    urls = [reference_tsa.at(p) for p in ("/broken", "/reject", "/wrong-imprint")]
    err = refusal(client(*urls, retries=0))
    assert err.message.startswith("all 3 TSAs failed: [1] TSA " + urls[0])
    assert len(err.failures) == 3
    for url, failure, words in zip(urls, err.failures, ("HTTP 500", "rejected the request", "message imprint")):
        assert failure.startswith(f"TSA {url} ") and words in failure and failure in err.message
