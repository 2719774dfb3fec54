"""One scan of a SOAP request's start gives the guard both the WS-Security token and the DSS operation."""

from __future__ import annotations

import io
from typing import Any

import pytest

from server.identity.wssecurity import INVALID_SECURITY_TOKEN, WSSE, WssFault, token_of
from server.web.auth import required_actions
from server.web.soap import DSS_NS, SOAP11_ENV
from server.web.soap_prefix import scan_soap, soap_prefix
from server.xmlsafe import scan_prefix

pytestmark = pytest.mark.unit

TOKEN = (f'<soap:Header><wsse:Security xmlns:wsse="{WSSE}"><wsse:UsernameToken><wsse:Username>erp</wsse:Username>'
         "<wsse:Password>pw</wsse:Password>{extra}</wsse:UsernameToken></wsse:Security></soap:Header>")


def envelope(header: str, body: str) -> bytes:
    return (f'<soap:Envelope xmlns:soap="{SOAP11_ENV}" xmlns:dss="{DSS_NS}">{header}<soap:Body>{body}</soap:Body>'
            "</soap:Envelope>").encode()


def test_token_and_operation_come_from_one_scan() -> None:
    found = scan_soap(io.BytesIO(envelope(TOKEN.format(extra=""), "<dss:VerifyRequest><dss:OptionalInputs>"
                                          '<dss:ReturnUpdatedSignature Type="x"/></dss:OptionalInputs>'
                                          "</dss:VerifyRequest>")))
    token = token_of(found)
    assert token is not None and (token.username, token.password) == ("erp", "pw")
    assert (found.operation, found.update) == ("VerifyRequest", True)


def test_an_unusable_token_does_not_hide_the_operation() -> None:
    found = scan_soap(io.BytesIO(envelope(TOKEN.format(extra="<wsse:Username>again</wsse:Username>"),
                                          "<dss:SignRequest/>")))
    assert found.operation == "SignRequest"
    with pytest.raises(WssFault) as caught:
        token_of(found)
    assert caught.value.code == INVALID_SECURITY_TOKEN and "Username twice" in caught.value.message


def test_a_header_after_the_body_is_no_token() -> None:
    data = (f'<soap:Envelope xmlns:soap="{SOAP11_ENV}" xmlns:dss="{DSS_NS}"><soap:Body><dss:SignRequest/></soap:Body>'
            f'{TOKEN.format(extra="")}</soap:Envelope>').encode()
    found = scan_soap(io.BytesIO(data))
    assert found.operation == "SignRequest" and token_of(found) is None


class _Request:
    """What soap_prefix and required_actions read of a Twisted request."""

    def __init__(self, body: bytes) -> None:
        self.content = io.BytesIO(body)


def test_a_request_is_scanned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    scans: list[Any] = []

    def counting(content: Any, target: object) -> None:
        scans.append(content)
        scan_prefix(content, target)

    monkeypatch.setattr("server.web.soap_prefix.scan_prefix", counting)
    request = _Request(envelope(TOKEN.format(extra=""), "<dss:SignRequest/>"))
    assert token_of(soap_prefix(request)) is not None
    assert [a.value for a in required_actions(request, "dss-operation") or ()] == ["sign"]
    assert len(scans) == 1 and request.content.tell() == 0
