"""WS-Security UsernameToken parsing and the PasswordDigest formula (no database)."""

from __future__ import annotations

import base64
import hashlib
import io
from datetime import datetime, timezone

import pytest
from lxml import etree
from zeep.wsse.username import UsernameToken as ZeepToken

from server.identity.wssecurity import (
    FAILED_AUTHENTICATION,
    INVALID_SECURITY_TOKEN,
    PASSWORD_DIGEST,
    PASSWORD_TEXT,
    UNSUPPORTED_SECURITY_TOKEN,
    WSSE,
    WSU,
    WssFault,
    fault_envelope,
    parse_created,
    password_digest,
    read_token,
)
from server.web.soap import DSS_NS, SOAP11_ENV

BODY = f'<soap:Body><dss:SignRequest xmlns:dss="{DSS_NS}"/></soap:Body>'


def envelope(header: str = "") -> bytes:
    return (f'<soap:Envelope xmlns:soap="{SOAP11_ENV}" xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}">'
            f"{header}{BODY}</soap:Envelope>").encode()


def zeep_envelope(use_digest: bool, **kwargs: object) -> bytes:
    doc = etree.fromstring(envelope("<soap:Header/>"))
    doc, _ = ZeepToken("ak_" + "0" * 32, "s3cret", use_digest=use_digest, **kwargs).apply(doc, {})  # type: ignore[arg-type]
    return etree.tostring(doc)


def test_digest_is_base64_sha1_of_nonce_created_and_secret() -> None:
    nonce = b"0123456789abcdef"
    expected = base64.b64encode(hashlib.sha1(nonce + b"2026-12-07T12:00:00Z" + b"pw").digest()).decode()
    assert password_digest(nonce, "2026-12-07T12:00:00Z", "pw") == expected


def test_zeep_digest_token_is_read_and_its_digest_recomputed() -> None:
    token = read_token(io.BytesIO(zeep_envelope(True)))
    assert token is not None and token.password_type == PASSWORD_DIGEST
    assert token.username == "ak_" + "0" * 32 and token.nonce and token.created
    assert password_digest(base64.b64decode(token.nonce), token.created, "s3cret") == token.password
    assert password_digest(base64.b64decode(token.nonce), token.created, "other") != token.password


def test_zeep_text_token_is_read() -> None:
    token = read_token(io.BytesIO(zeep_envelope(False)))
    assert token is not None and token.password_type == PASSWORD_TEXT and token.password == "s3cret"


def test_no_header_no_token_and_the_body_is_not_read() -> None:
    assert read_token(io.BytesIO(envelope())) is None
    assert read_token(io.BytesIO(envelope("<soap:Header><x xmlns='urn:x'/></soap:Header>"))) is None
    # A UsernameToken inside the Body is not a header.
    inside = envelope().replace(b"<dss:SignRequest", "<wsse:Security><wsse:UsernameToken><wsse:Username>a"
                                "</wsse:Username><wsse:Password>b</wsse:Password></wsse:UsernameToken>"
                                "</wsse:Security><dss:SignRequest".encode())
    assert read_token(io.BytesIO(inside)) is None
    assert read_token(io.BytesIO(b"<!DOCTYPE x [<!ENTITY a 'b'>]>" + envelope())) is None
    assert read_token(io.BytesIO(b"not xml")) is None


def test_missing_type_means_password_text() -> None:
    header = ("<soap:Header><wsse:Security><wsse:UsernameToken><wsse:Username>erp</wsse:Username>"
              "<wsse:Password>pw</wsse:Password></wsse:UsernameToken></wsse:Security></soap:Header>")
    token = read_token(io.BytesIO(envelope(header)))
    assert token is not None and token.password_type == PASSWORD_TEXT


@pytest.mark.parametrize("security,code", [
    ("<wsse:Security/>", UNSUPPORTED_SECURITY_TOKEN),
    ("<wsse:Security><wsse:UsernameToken><wsse:Username>a</wsse:Username></wsse:UsernameToken></wsse:Security>",
     INVALID_SECURITY_TOKEN),
    ("<wsse:Security>" + "<wsse:UsernameToken><wsse:Username>a</wsse:Username><wsse:Password>b</wsse:Password>"
     "</wsse:UsernameToken>" * 2 + "</wsse:Security>", INVALID_SECURITY_TOKEN),
    ("<wsse:Security><wsse:UsernameToken><wsse:Username>a</wsse:Username><wsse:Username>b</wsse:Username>"
     "<wsse:Password>b</wsse:Password></wsse:UsernameToken></wsse:Security>", INVALID_SECURITY_TOKEN),
])
def test_unusable_security_headers_are_faults(security: str, code: str) -> None:
    with pytest.raises(WssFault) as caught:
        read_token(io.BytesIO(envelope(f"<soap:Header>{security}</soap:Header>")))
    assert caught.value.code == code


def test_created_needs_a_time_zone() -> None:
    assert parse_created("2026-12-07T12:00:00Z") == datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
    assert parse_created("2026-12-07T13:00:00.5+01:00") == datetime(2026, 12, 7, 12, 0, 0, 500000, tzinfo=timezone.utc)
    for bad in ("2026-12-07T12:00:00", "yesterday"):
        with pytest.raises(WssFault):
            parse_created(bad)


def test_fault_carries_the_wsse_code_and_the_dss_result() -> None:
    doc = etree.fromstring(fault_envelope(WssFault(FAILED_AUTHENTICATION, "no")))
    fault = doc.find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
    code = fault.findtext("faultcode")
    prefix, local = code.split(":")
    assert fault.nsmap[prefix] == WSSE and local == FAILED_AUTHENTICATION
    assert fault.findtext(f"detail/{{{DSS_NS}}}Result/{{{DSS_NS}}}ResultMinor").endswith("AuthenticationError")
