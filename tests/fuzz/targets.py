"""The fuzz targets: each feeds one input's bytes to the real entry function an outside input reaches.

The oracle: a target returns (the input was answered: a result, a protocol's own error answer, or a
:class:`SiegelError` refusal) or raises anything else, which is a crash; an input that runs past the
target's ``bound`` is a hang (:mod:`tests.fuzz.runner`). Seeds are valid inputs made here with the test
HSM (a signed XML, PDF, CMS, ASiC-E; TSA and OCSP requests), plus the files of ../shared/vectors when
that folder is present.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from io import BytesIO
from pathlib import Path
from typing import Any

from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from adapters.timestamp.client import build_request, parse_response, verify_token
from server.archive import ers, evidence_verify, xmlers
from server.archive.record import ArchiveTimestamp, EvidenceRecord
from server.identity.wssecurity import PASSWORD_DIGEST, PASSWORD_TEXT, WSSE, WSU, WssFault, password_digest, read_token
from server.signing.order import Format
from server.web import rest
from server.web.soap import DSS_NS, SOAP11_ENV
from tests.fuzz.context import TEXT_DOCUMENT, XML_DOCUMENT, FuzzContext

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"
MAX_VECTOR_BYTES = 256 * 1024
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XML_TOKENS = (b"<", b">", b"/>", b"</", b'"', b"&amp;", b"&#0;", b"&x;", b"<!DOCTYPE a [", b"<![CDATA[", b"]]>",
              b"<?xml ", b"xmlns:a=\"urn:a\"", b" ID=\"a\"", b" Id=\"a\"", b"=", b"\x00", b"\xff\xfe", b"====",
              b"<dss:Document ID=\"d\"><dss:Base64Data>QQ==</dss:Base64Data></dss:Document>")
DER_TOKENS = (b"\x00", b"\x80", b"\xff", b"\x30\x80", b"\x30\x82\xff\xff", b"\x02\x01\x00", b"\x05\x00", b"\x06\x00",
              b"\x04\x84\xff\xff\xff\xff", b"\xa0\x00", b"\x00\x00")
JSON_TOKENS = (b"[" * 50_000, b'{"a":' * 20_000, b'"', b"\\u0000", b"\\ud800", b"1e999999", b"9" * 5000, b"null", b"{}",
               b"[]", b'"documents": [{}]', b'"digest": 1')
PDF_TOKENS = (b"obj", b"endobj", b"stream\n", b"endstream", b"xref\n", b"trailer", b"startxref\n", b"%%EOF",
              b"/ByteRange [0 1 2 3]", b"/Contents <00>", b"<<", b">>", b"[", b"]", b"/Prev 0", b"9999999999 0 R")


@dataclass(frozen=True)
class Target:
    """One entry point; ``run`` answers one input or raises a crash."""

    name: str
    entry: str  # the function driven, for reports
    seeds: Callable[[FuzzContext], list[bytes]]
    run: Callable[[FuzzContext, bytes], None]
    tokens: tuple[bytes, ...] = ()
    bound: float = 2.0  # seconds one input may take
    notes: list[str] = field(default_factory=list)


def vector_seeds(folder: str, suffixes: tuple[str, ...], limit: int = 16) -> list[bytes]:
    """The smallest ``limit`` files of ../shared/vectors/``folder`` with these suffixes; none (and a warning
    naming the folder) when the vectors are absent."""
    root = VECTORS / folder
    if not root.is_dir():
        warnings.warn(f"{root} is absent: the {folder} seeds are left out, only Siegel's own seeds are fuzzed",
                      stacklevel=2)
        return []
    files = sorted((p for p in root.rglob("*") if p.suffix in suffixes and p.is_file()
                    and p.stat().st_size <= MAX_VECTOR_BYTES), key=lambda p: (p.stat().st_size, p.name))
    return [p.read_bytes() for p in files[:limit]]


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])


@contextmanager
def unlogged(logger: str) -> Iterator[None]:
    """Re-raise an exception that the code under test caught and only logged (its 'internal error' answer)."""
    handler = _Captured()
    log = logging.getLogger(logger)
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
    if handler.errors:
        raise handler.errors[0]


# --- SOAP: DSS Sign and Verify, WS-Security ---------------------------------------------------------------

def _envelope(body: str, header: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP11_ENV}">'
            f"{header}<soap:Body>{body}</soap:Body></soap:Envelope>").encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _form(level: str) -> str:
    return ('<dss:AdditionalProfile>urn:oasis:names:tc:dss:1.0:profiles:AdES</dss:AdditionalProfile>'
            f'<ades:SignatureForm xmlns:ades="urn:oasis:names:tc:dss:1.0:profiles:AdES:schema#">'
            f"http://uri.etsi.org/ades/191x2/level/baseline/{level}#</ades:SignatureForm>")


def _sign_seeds(ctx: FuzzContext) -> list[bytes]:
    ns = f'xmlns:dss="{DSS_NS}" xmlns:ds="{DS_NS}"'
    xml = XML_DOCUMENT.decode().partition("?>")[2]
    digest = _b64(hashlib.sha256(b"fuzz").digest())
    requests = [
        f'<dss:SignRequest {ns} RequestID="r1"><dss:OptionalInputs>{_form("B-B")}</dss:OptionalInputs>'
        f'<dss:InputDocuments><dss:Document ID="d1"><dss:InlineXML>{xml}</dss:InlineXML></dss:Document>'
        "</dss:InputDocuments></dss:SignRequest>",
        f'<dss:SignRequest {ns}><dss:OptionalInputs><dss:SignatureType>urn:ietf:rfc:3369</dss:SignatureType>'
        f'{_form("B-T")}</dss:OptionalInputs><dss:InputDocuments><dss:Document><dss:Base64Data MimeType="text/plain">'
        f"{_b64(b'hello')}</dss:Base64Data></dss:Document></dss:InputDocuments></dss:SignRequest>",
        f'<dss:SignRequest {ns}><dss:OptionalInputs><dss:SignatureType>urn:ietf:rfc:3275</dss:SignatureType>'
        f'{_form("B-B")}</dss:OptionalInputs><dss:InputDocuments><dss:DocumentHash>'
        '<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
        f"<ds:DigestValue>{digest}</ds:DigestValue></dss:DocumentHash></dss:InputDocuments></dss:SignRequest>",
        f'<dss:SignRequest {ns}><dss:OptionalInputs><dss:SignatureType>http://uri.etsi.org/19162/v1.1.1'
        f'</dss:SignatureType>{_form("B-B")}</dss:OptionalInputs><dss:InputDocuments>'
        f'<dss:Document ID="a"><dss:Base64Data MimeType="text/plain">{_b64(b"one")}</dss:Base64Data></dss:Document>'
        f'<dss:Document ID="b"><dss:Base64XML>{_b64(XML_DOCUMENT)}</dss:Base64XML></dss:Document>'
        "</dss:InputDocuments></dss:SignRequest>",
        f'<dss:SignRequest {ns}><dss:OptionalInputs>{_form("B-B")}<dss:SignaturePlacement WhichDocument="d1" '
        'CreateEnvelopedSignature="true"/><dss:Properties><dss:SignedProperties><dss:Property>'
        "<dss:Identifier>http://uri.etsi.org/01903/v1.3.2#ClaimedRole</dss:Identifier><dss:Value>buyer</dss:Value>"
        "</dss:Property></dss:SignedProperties></dss:Properties></dss:OptionalInputs><dss:InputDocuments>"
        f'<dss:Document ID="d1"><dss:InlineXML>{xml}</dss:InlineXML></dss:Document></dss:InputDocuments>'
        "</dss:SignRequest>",
    ]
    return [_envelope(r) for r in requests]


def _verify_seeds(ctx: FuzzContext) -> list[bytes]:
    ns = f'xmlns:dss="{DSS_NS}" xmlns:ds="{DS_NS}"'
    requests = [
        f'<dss:VerifyRequest {ns}><dss:InputDocuments><dss:Document ID="s"><dss:Base64XML>'
        f"{_b64(ctx.signed(Format.XADES))}</dss:Base64XML></dss:Document></dss:InputDocuments></dss:VerifyRequest>",
        f'<dss:VerifyRequest {ns}><dss:SignatureObject><dss:Base64Signature>{_b64(ctx.signed(Format.CADES))}'
        "</dss:Base64Signature></dss:SignatureObject></dss:VerifyRequest>",
        f'<dss:VerifyRequest {ns}><dss:OptionalInputs><dss:UseVerificationTime><dss:SpecificTime>'
        "2026-12-07T10:00:00Z</dss:SpecificTime></dss:UseVerificationTime></dss:OptionalInputs>"
        f'<dss:InputDocuments><dss:Document ID="p"><dss:Base64Data MimeType="application/pdf">'
        f"{_b64(ctx.signed(Format.PADES))}</dss:Base64Data></dss:Document></dss:InputDocuments>"
        '<dss:SignatureObject><dss:SignaturePtr WhichDocument="p"/></dss:SignatureObject></dss:VerifyRequest>',
    ]
    return [_envelope(r) for r in requests]


def _run_dss(ctx: FuzzContext, data: bytes) -> None:
    """``DssEndpoint.handle``: every answer is a SOAP envelope; an exception it only logs is a crash."""
    with unlogged("siegel.dss"):
        status, envelope = ctx.dss.handle(data, ctx.principal)
    assert status in (200, 500) and envelope.startswith(b"<?xml"), (status, envelope[:200])


def _wss_seeds(ctx: FuzzContext) -> list[bytes]:
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    nonce = base64.b64encode(b"0123456789abcdef").decode()
    digest = password_digest(b"0123456789abcdef", created, "secret")
    body = f'<dss:VerifyRequest xmlns:dss="{DSS_NS}"/>'
    tokens = [
        f"<wsse:Username>ak_0123456789abcdef</wsse:Username><wsse:Password Type=\"{PASSWORD_DIGEST}\">{digest}"
        f"</wsse:Password><wsse:Nonce>{nonce}</wsse:Nonce><wsu:Created>{created}</wsu:Created>",
        f'<wsse:Username>{ctx.principal.name}</wsse:Username><wsse:Password Type="{PASSWORD_TEXT}">wrong</wsse:Password>',
    ]
    return [_envelope(body, f'<soap:Header><wsse:Security xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}">'
                            f"<wsse:UsernameToken>{t}</wsse:UsernameToken></wsse:Security></soap:Header>")
            for t in tokens]


def _run_wss(ctx: FuzzContext, data: bytes) -> None:
    """The guard's WS-Security path: the one scan of the request's start, then the token's check."""
    try:
        token = read_token(BytesIO(data))
        if token is not None:
            ctx.wssecurity.authenticate(token, True, "192.0.2.1")
    except WssFault:
        pass


# --- REST JSON ----------------------------------------------------------------------------------------------

@dataclass
class RestRequest:
    """What the REST parsers read of a request: the body, the query and the headers."""

    content: BytesIO
    args: dict[bytes, list[bytes]]
    headers: dict[bytes, bytes]

    def getHeader(self, name: bytes) -> bytes | None:  # noqa: N802 (twisted's name)
        return self.headers.get(name.lower())


def _json_seeds(ctx: FuzzContext) -> list[bytes]:
    digest = _b64(hashlib.sha256(b"fuzz").digest())
    chain = [_b64(c) for c in ctx.signer_chain]
    bodies: list[dict[str, Any]] = [
        {"format": "cades", "level": "B-B", "digestAlgorithm": "SHA-256", "digest": digest, "certificateChain": chain},
        {"format": "xades", "level": "B-T", "packaging": "enveloped", "documents": [
            {"name": "a.xml", "mimeType": "application/xml", "content": _b64(XML_DOCUMENT)}]},
        {"format": "asic", "container": "cades", "document": _b64(b"hello"), "name": "x.txt", "mimeType": "text/plain"},
        {"format": "pades", "level": "B-LTA", "document": _b64(b"%PDF-1.7\n"), "stateId": "s", "signatureValue": "AA=="},
    ]
    return [json.dumps(b).encode() for b in bodies]


def _run_json(ctx: FuzzContext, data: bytes) -> None:
    """The JSON bodies of /api/v1/sign/prepare, /sign-hash and /sign/complete: object, order, digest."""
    request = RestRequest(BytesIO(data), {}, {})
    body = rest._json_object(request)
    try:
        rest._two_step_order(request, body)
    finally:
        try:
            rest._digest_of(body)
        finally:
            rest._b64(body.get("signatureValue"), "signatureValue")


_BOUNDARY = b"fuzzboundary"


def _multipart_seeds(ctx: FuzzContext) -> list[bytes]:
    def part(name: str, filename: str, content: bytes) -> bytes:
        return (b"--" + _BOUNDARY + f'\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    cades = ctx.signed(Format.CADES)
    return [part("signature", "s.p7s", cades) + b"--" + _BOUNDARY + b"--\r\n",
            part("signature", "s.xml", ctx.signed(Format.XADES)) + part("document", "d.txt", b"data")
            + b"--" + _BOUNDARY + b"--\r\n"]


def _run_multipart(ctx: FuzzContext, data: bytes) -> None:
    """``POST /api/v1/verify`` with a multipart body: the parts, then the verification."""
    request = RestRequest(BytesIO(data), {}, {b"content-type": b"multipart/form-data; boundary=" + _BOUNDARY})
    signature, name, detached = rest._parts(request)
    ctx.verification.verify(signature, name=name, detached=detached)


# --- verification over bytes ----------------------------------------------------------------------------------

def _run_verify(ctx: FuzzContext, data: bytes) -> None:
    """``VerificationService.verify``: the format by its bytes (ASiC, PDF, XML, else CMS)."""
    ctx.verification.verify(data, name="fuzzed")


def _pdf_seeds(ctx: FuzzContext) -> list[bytes]:
    return [ctx.signed(Format.PADES)] + vector_seeds("dss-pades", (".pdf",), limit=8)


def _xml_seeds(ctx: FuzzContext) -> list[bytes]:
    return [ctx.signed(Format.XADES)] + vector_seeds("dss-xades", (".xml",), limit=8) \
        + vector_seeds("xmldsig-interop", (".xml",), limit=8)


def _cms_seeds(ctx: FuzzContext) -> list[bytes]:
    cades = ctx.signed(Format.CADES)
    return [cades, base64.b64encode(cades)] + vector_seeds("timestamps", (".der",), limit=4)


def _asic_seeds(ctx: FuzzContext) -> list[bytes]:
    return [ctx.signed(Format.ASIC)] + vector_seeds("dss-xades", (".asice", ".sce"), limit=4)


# --- ASN.1: TSA requests, OCSP requests, RFC 3161 responses ---------------------------------------------------

def _tsa_seeds(ctx: FuzzContext) -> list[bytes]:
    own = [build_request(hashlib.new(h, b"fuzz").digest(), h, nonce, cert_req)
           for h, nonce, cert_req in (("sha256", 1, True), ("sha384", 2**64 + 1, False), ("sha512", 7, True))]
    return own + vector_seeds("timestamps", (".tsq",))


def _run_tsa(ctx: FuzzContext, data: bytes) -> None:
    """``TimestampAuthority.respond``: every input is answered with a TimeStampResp."""
    reply = ctx.tsa.respond(data)
    status, _ = parse_response(reply.der)
    assert (status.granted) == (reply.problem is None), (status.describe(), reply.problem)


def _ocsp_seeds(ctx: FuzzContext) -> list[bytes]:
    root, issuing = (x509.load_der_x509_certificate(ctx.pki.ca.ca_certificate_der(n)) for n in ("ROOT", "ISSUING"))
    signer = x509.load_der_x509_certificate(ctx.signer_chain[0])
    seeds = []
    for cert, issuer, algorithm, nonce in ((signer, issuing, hashes.SHA256(), b"n" * 16),
                                           (issuing, root, hashes.SHA1(), None)):
        builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        seeds.append(builder.build().public_bytes(Encoding.DER))
    return seeds


def _run_ocsp(ctx: FuzzContext, data: bytes) -> None:
    """``OcspResponder.respond``: every input is answered with an OCSPResponse."""
    reply = ctx.ocsp.respond(data)
    ocsp.load_der_ocsp_response(reply.der)


def _tsr_seeds(ctx: FuzzContext) -> list[bytes]:
    granted = ctx.tsa.respond(build_request(hashlib.sha256(b"fuzz").digest(), "sha256", 5)).der
    return [granted] + vector_seeds("timestamps", (".tsr",))


def _claimed_imprint(token: bytes) -> tuple[bytes, str]:
    """The digest and hash algorithm a token's TSTInfo names (none readable: an empty SHA-256 imprint)."""
    try:
        info = cms.ContentInfo.load(token)["content"]["encap_content_info"]["content"]
        imprint = tsp.TSTInfo.load(bytes(info))["message_imprint"]
        return imprint["hashed_message"].native, imprint["hash_algorithm"]["algorithm"].native
    except Exception:  # an unreadable token: verify_token itself must refuse it
        return hashlib.sha256().digest(), "sha256"


def _run_tsr(ctx: FuzzContext, data: bytes) -> None:
    """The TSA client's reading of a TimeStampResp: its status, then every check of its token against the
    imprint it claims (so that a mutated token gets past the imprint comparison) and the internal root."""
    status, token = parse_response(data)
    if token is None:
        return
    digest, algorithm = _claimed_imprint(token)
    root = x509.load_der_x509_certificate(ctx.pki.ca.ca_certificate_der("ROOT"))
    verify_token(token, digest, algorithm, [root])


# --- evidence records (RFC 4998 ASN.1, RFC 6283 XML) ------------------------------------------------------------

def _own_record(ctx: FuzzContext) -> EvidenceRecord:
    """One ATS straight over the document's hash, its token from the test TSA."""
    digest = hashlib.sha256(TEXT_DOCUMENT).digest()
    _, token = parse_response(ctx.tsa.respond(build_request(digest, "sha256", 9)).der)
    assert token is not None
    return EvidenceRecord(("sha256",), ((ArchiveTimestamp("sha256", (), token),),))


def _ers_seeds(ctx: FuzzContext) -> list[bytes]:
    return [ers.encode(_own_record(ctx))] + vector_seeds("evidence-records", (".ers", ".er"))


def _xmlers_seeds(ctx: FuzzContext) -> list[bytes]:
    record = replace(_own_record(ctx), syntax="xml")
    return [xmlers.encode(record)] + vector_seeds("evidence-records", (".xml",))


def _run_evidence(ctx: FuzzContext, data: bytes) -> None:
    """``evidence_verify.verify`` of a record for the document it should cover: a report, whatever the bytes."""
    report = evidence_verify.verify(data, data=TEXT_DOCUMENT, trust=ctx.verification.trust())
    report.to_json()


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("dss-sign", "DssEndpoint.handle (SignRequest)", _sign_seeds, _run_dss, XML_TOKENS, bound=5.0),
    Target("dss-verify", "DssEndpoint.handle (VerifyRequest)", _verify_seeds, _run_dss, XML_TOKENS, bound=5.0),
    Target("wssecurity", "read_token + WsSecurity.authenticate", _wss_seeds, _run_wss, XML_TOKENS),
    Target("rest-json", "rest._json_object, _two_step_order, _digest_of", _json_seeds, _run_json, JSON_TOKENS),
    Target("rest-multipart", "rest._parts + VerificationService.verify", _multipart_seeds, _run_multipart),
    Target("verify-pdf", "VerificationService.verify (PDF)", _pdf_seeds, _run_verify, PDF_TOKENS, bound=5.0),
    Target("verify-xml", "VerificationService.verify (XML)", _xml_seeds, _run_verify, XML_TOKENS),
    Target("verify-cms", "VerificationService.verify (CMS)", _cms_seeds, _run_verify, DER_TOKENS),
    Target("verify-asic", "VerificationService.verify (ASiC-E)", _asic_seeds, _run_verify),
    Target("tsa", "TimestampAuthority.respond", _tsa_seeds, _run_tsa, DER_TOKENS),
    Target("ocsp", "OcspResponder.respond", _ocsp_seeds, _run_ocsp, DER_TOKENS),
    Target("tsp-response", "timestamp client parse_response + verify_token", _tsr_seeds, _run_tsr, DER_TOKENS),
    Target("ers-asn1", "evidence_verify.verify (RFC 4998)", _ers_seeds, _run_evidence, DER_TOKENS),
    Target("ers-xml", "evidence_verify.verify (RFC 6283)", _xmlers_seeds, _run_evidence, XML_TOKENS),
)}
