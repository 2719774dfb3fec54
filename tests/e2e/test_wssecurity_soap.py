"""WS-Security UsernameToken on /dss of a running server, sent by zeep (zeep.wsse.username.UsernameToken).

PasswordDigest with an API client's digest secret signs without HTTP Basic; the same message sent again
(same nonce) is refused, as are a Created outside the window and a wrong digest; PasswordText is refused
over plain HTTP and accepted over ``serve --tls``; Basic credentials together with a token are refused.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
import requests
import zeep
from lxml import etree
from zeep.exceptions import Fault
from zeep.plugins import HistoryPlugin
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from server.identity.wssecurity import WSSE
from server.web.soap import DSS_NS, SOAP11_ENV
from tests.fixtures.server import SiegelInstance, make_instance

pytestmark = pytest.mark.e2e

MAJOR_SUCCESS = "urn:oasis:names:tc:dss:1.0:resultmajor:Success"
AUTH_ERROR = "urn:oasis:names:tc:dss:1.0:resultminor:AuthenticationError"
DOCUMENTS = {"_value_1": [{"Document": {"Base64Data": {"_value_1": b"hello via wsse", "MimeType": "text/plain"}}}]}


def create_client(inst: SiegelInstance) -> tuple[str, str, str]:
    """An API client of the instance's integration account: key, Basic secret, digest secret."""
    out = inst.cli("apiclient", "create", "--user", inst.user).stdout
    key = re.search(r"key:\s+(ak_[0-9a-f]{32})", out).group(1)  # type: ignore[union-attr]
    secret = re.search(r"secret:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    digest = re.search(r"digest secret:\s+(\S+)", inst.cli("apiclient", "digest-secret", key).stdout).group(1)  # type: ignore[union-attr]
    return key, secret, digest


@pytest.fixture(scope="module")
def wss_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SiegelInstance, str, str, str]]:
    inst = make_instance(tmp_path_factory.mktemp("wss"))
    client = create_client(inst)
    inst.start()
    try:
        yield (inst, *client)
    finally:
        inst.stop()


def zeep_client(url: str, wsse: UsernameToken | None, verify: str | bool = True,
                history: HistoryPlugin | None = None, auth: tuple[str, str] | None = None) -> zeep.Client:
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides session.verify
    session.verify = verify
    session.auth = auth
    return zeep.Client(url + "/dss?wsdl", transport=Transport(session=session), wsse=wsse,
                       plugins=[history] if history else [])


def assert_wsse_fault(fault: Fault, code: str, text: str) -> None:
    assert fault.code == f"wsse:{code}", (fault.code, fault.message)
    assert text in fault.message
    detail = fault.detail
    assert detail is not None and detail.findtext(f"{{{DSS_NS}}}Result/{{{DSS_NS}}}ResultMinor") == AUTH_ERROR


def test_password_digest_signs_and_the_replay_is_refused(wss_server: tuple[SiegelInstance, str, str, str]) -> None:
    inst, key, _, digest = wss_server
    history = HistoryPlugin()
    client = zeep_client(inst.url, UsernameToken(key, digest, use_digest=True), history=history)
    answer = client.service.Sign(RequestID="wsse-1", InputDocuments=DOCUMENTS)
    assert answer.Result.ResultMajor == MAJOR_SUCCESS and answer.SignatureObject is not None
    sent = history.last_sent["envelope"]
    assert sent.find(f"{{{SOAP11_ENV}}}Header/{{{WSSE}}}Security") is not None
    assert "authorization" not in {h.lower() for h in history.last_sent["http_headers"]}
    # the same bytes again: same nonce
    replay = requests.post(inst.url + "/dss", data=etree.tostring(sent), timeout=30,
                           headers={"Content-Type": "text/xml; charset=utf-8"})
    assert replay.status_code == 401, replay.text
    fault = etree.fromstring(replay.content).find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
    assert fault.findtext("faultcode") == "wsse:FailedAuthentication" and "used already" in fault.findtext("faultstring")
    # and a fresh token (new nonce) works again
    assert client.service.Sign(RequestID="wsse-2", InputDocuments=DOCUMENTS).Result.ResultMajor == MAJOR_SUCCESS


@pytest.mark.parametrize("shift,text", [(-timedelta(minutes=6), "older than 300 s"),
                                        (timedelta(minutes=3), "future")], ids=["stale", "future"])
def test_created_outside_the_window_is_refused(wss_server: tuple[SiegelInstance, str, str, str], shift: timedelta,
                                               text: str) -> None:
    inst, key, _, digest = wss_server
    created = datetime.now(timezone.utc) + shift
    client = zeep_client(inst.url, UsernameToken(key, digest, use_digest=True, created=created))
    with pytest.raises(Fault) as caught:
        client.service.Sign(RequestID="old", InputDocuments=DOCUMENTS)
    assert_wsse_fault(caught.value, "FailedAuthentication", text)


def test_wrong_digest_or_basic_secret_as_digest_is_refused(wss_server: tuple[SiegelInstance, str, str, str]) -> None:
    inst, key, basic_secret, _ = wss_server
    for wrong in ("not-the-secret", basic_secret):
        client = zeep_client(inst.url, UsernameToken(key, wrong, use_digest=True))
        with pytest.raises(Fault) as caught:
            client.service.Sign(RequestID="wrong", InputDocuments=DOCUMENTS)
        assert_wsse_fault(caught.value, "FailedAuthentication", "wrong digest")


def test_password_text_over_plain_http_is_refused(wss_server: tuple[SiegelInstance, str, str, str]) -> None:
    inst, key, basic_secret, _ = wss_server
    client = zeep_client(inst.url, UsernameToken(key, basic_secret))
    with pytest.raises(Fault) as caught:
        client.service.Sign(RequestID="text", InputDocuments=DOCUMENTS)
    assert_wsse_fault(caught.value, "FailedAuthentication", "over TLS (https) only")


def test_basic_and_a_token_together_are_refused(wss_server: tuple[SiegelInstance, str, str, str]) -> None:
    inst, key, _, digest = wss_server
    client = zeep_client(inst.url, UsernameToken(key, digest, use_digest=True), auth=inst.auth)
    with pytest.raises(Fault) as caught:
        client.service.Sign(RequestID="both", InputDocuments=DOCUMENTS)
    assert_wsse_fault(caught.value, "FailedAuthentication", "send one")


def test_password_text_over_tls_is_accepted(siegel_instance: SiegelInstance, tmp_path: Path) -> None:
    key, basic_secret, digest = create_client(siegel_instance)
    root = tmp_path / "root.pem"
    root.write_text(siegel_instance.cli("ca", "export", "ROOT").stdout)
    siegel_instance.scheme, siegel_instance.verify = "https", str(root)
    # B-B: the internal TSA at server.public_base_url (http) is not reachable on the TLS port
    siegel_instance.env["SIEGEL_SIGNING_DEFAULT_LEVEL"] = "B-B"
    siegel_instance.start("--tls")
    for name, password in ((key, basic_secret), (siegel_instance.user, siegel_instance.password)):
        client = zeep_client(siegel_instance.url, UsernameToken(name, password), verify=str(root))
        answer = client.service.Sign(RequestID="tls", InputDocuments=DOCUMENTS)
        assert answer.Result.ResultMajor == MAJOR_SUCCESS, answer.Result
    client = zeep_client(siegel_instance.url, UsernameToken(key, "wrong-secret-here"), verify=str(root))
    with pytest.raises(Fault) as caught:
        client.service.Sign(RequestID="tls-wrong", InputDocuments=DOCUMENTS)
    assert_wsse_fault(caught.value, "FailedAuthentication", "wrong password")
    # digest over TLS as well
    client = zeep_client(siegel_instance.url, UsernameToken(key, digest, use_digest=True), verify=str(root))
    assert client.service.Sign(RequestID="tls-digest", InputDocuments=DOCUMENTS).Result.ResultMajor == MAJOR_SUCCESS
    assert siegel_instance.stop() == 0
