"""RFC 3161 timestamp client: an ordered list of TSAs with timeout, retry and failover.

Every token is checked before it is handed out (status, message imprint, nonce, CMS signature,
critical EKU timeStamping, ESSCertID/ESSCertIDv2, optionally a chain to configured trust anchors).
:func:`verify_token` applies the same checks, minus the nonce, to tokens found in signatures.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Sequence

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from server.config import Settings
from server.der import decode_all
from server.errors import Code, SiegelError
from server.pki.rfc3161 import TimeStampResp

#: Imprint and signature hash algorithms accepted (MD5 and SHA-1 are refused as weak).
HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
    "sha3_256": hashes.SHA3_256, "sha3_384": hashes.SHA3_384, "sha3_512": hashes.SHA3_512,
}
MAX_RESPONSE_BYTES = 1 << 20
MAX_CHAIN_DEPTH = 8

#: RFC 3161 PKIFailureInfo names, as asn1crypto spells them → as the RFC spells them.
FAIL_INFO_NAMES = {
    "bad_alg": "badAlg", "bad_request": "badRequest", "bad_data_format": "badDataFormat",
    "time_not_available": "timeNotAvailable", "unaccepted_policy": "unacceptedPolicy",
    "unaccepted_extensions": "unacceptedExtension", "add_info_not_available": "addInfoNotAvailable",
    "system_failure": "systemFailure",
}
_STATUS_NAMES = {
    "granted": "granted", "granted_with_mods": "grantedWithMods", "rejection": "rejection",
    "waiting": "waiting", "revocation_warning": "revocationWarning",
    "revocation_notification": "revocationNotification",
}


class TimestampError(SiegelError):
    """A timestamp could not be obtained or a token is not acceptable (code TSA_FAILED)."""

    def __init__(self, message: str, failures: Sequence[str] = ()) -> None:
        super().__init__(Code.TSA_FAILED, message)
        self.failures = tuple(failures) or (message,)


class InvalidToken(TimestampError):
    """A token failed one named check (``check``), for the reason in ``detail``."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"timestamp token fails the {check} check: {detail}")
        self.check = check
        self.detail = detail


@dataclass(frozen=True)
class TsaEndpoint:
    """One TSA: its URL, the certificates its chain must lead to (none: not checked), HTTP Basic
    credentials, and its own certificates (needed only for tokens requested without certReq)."""

    url: str
    trust_anchors: tuple[x509.Certificate, ...] = ()
    username: str | None = None
    password: str | None = None
    certificates: tuple[x509.Certificate, ...] = ()


@dataclass(frozen=True)
class TstInfo:
    """The checked content of a token (RFC 3161 TSTInfo) and the certificate that signed it."""

    gen_time: datetime
    serial: int
    policy: str
    hash_algorithm: str
    digest: bytes
    nonce: int | None
    tsa_name: str | None
    signer: x509.Certificate


@dataclass(frozen=True)
class TimestampToken:
    """A checked token as issued: DER ContentInfo, its TSTInfo, the TSA URL and the DER TimeStampResp."""

    token: bytes
    info: TstInfo
    tsa_url: str
    response: bytes

    @property
    def gen_time(self) -> datetime:
        return self.info.gen_time

    @property
    def serial(self) -> int:
        return self.info.serial

    @property
    def policy(self) -> str:
        return self.info.policy

    @property
    def tsa_name(self) -> str | None:
        return self.info.tsa_name


@dataclass(frozen=True)
class ResponseStatus:
    """PKIStatusInfo of a TimeStampResp in RFC 3161 spelling."""

    status: str
    fail_info: tuple[str, ...]
    text: str

    @property
    def granted(self) -> bool:
        return self.status in ("granted", "grantedWithMods")

    def describe(self) -> str:
        """E.g. ``status rejection, failInfo badAlg (unsupported hash)``."""
        out = f"status {self.status}"
        if self.fail_info:
            out += ", failInfo " + "|".join(self.fail_info)
        return out + (f" ({self.text})" if self.text else "")


# ---------------------------------------------------------------- requests and responses

def build_request(digest: bytes, hash_algorithm: str, nonce: int, cert_req: bool = True) -> bytes:
    """DER TimeStampReq for ``digest`` (already hashed with ``hash_algorithm``)."""
    _check_digest(digest, hash_algorithm)
    return tsp.TimeStampReq({
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": hash_algorithm}, "hashed_message": digest},
        "nonce": nonce,
        "cert_req": cert_req,
    }).dump()



def parse_response(der: bytes) -> tuple[ResponseStatus, bytes | None]:
    """The status of a DER TimeStampResp and its token (DER ContentInfo) if it carries one."""
    try:
        resp = TimeStampResp.load(der, strict=True)
        info = resp["status"]
        status_code = info["status"].native
        status = _STATUS_NAMES.get(status_code, str(status_code))
        fail = info["fail_info"]
        fail_info = tuple(sorted(FAIL_INFO_NAMES.get(n, str(n)) for n in fail.native)) if fail.native else ()
        text = "; ".join(info["status_string"].native or [])
        token = resp["time_stamp_token"]
        token_der = None if isinstance(token, core.Void) else token.dump()
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidToken("response structure", f"not a DER TimeStampResp ({exc})") from None
    return ResponseStatus(status, fail_info, text), token_der


def _check_digest(digest: bytes, hash_algorithm: str) -> None:
    if hash_algorithm not in HASHES:
        raise TimestampError(f"hash algorithm {hash_algorithm} is not accepted for timestamps "
                             f"(accepted: {', '.join(HASHES)})")
    size = HASHES[hash_algorithm].digest_size
    if len(digest) != size:
        raise TimestampError(f"a {hash_algorithm} digest has {size} bytes, not {len(digest)}")


# ---------------------------------------------------------------- token verification

def verify_token(token_der: bytes, digest: bytes, hash_algorithm: str = "sha256",
                 trust_anchors: Iterable[x509.Certificate] | None = None, *, nonce: int | None = None,
                 certificates: Iterable[x509.Certificate] = ()) -> TstInfo:
    """Check a DER timestamp token (ContentInfo) for ``digest``; ``InvalidToken`` names the failed check.

    Checks: structure, imprint hash algorithm accepted (not MD5/SHA-1), message imprint (algorithm and
    digest), nonce (only when ``nonce`` is given), CMS signature over the signed attributes, signer's
    critical EKU timeStamping and validity at genTime, ESSCertID/ESSCertIDv2, and a chain to one of
    ``trust_anchors`` when some are given. ``certificates`` adds certificates the token may lack
    (the TSA's own, for tokens requested without certReq).
    """
    signed_data, signer_info, tst, econtent, certs = _parse_token(token_der)

    imprint = tst["message_imprint"]
    got_alg = imprint["hash_algorithm"]["algorithm"].native
    got_digest = imprint["hashed_message"].native
    if got_alg not in HASHES:
        raise InvalidToken("hash algorithm", f"the message imprint uses {got_alg}, which is not accepted "
                                             f"(accepted: {', '.join(HASHES)})")
    if got_alg != hash_algorithm:
        raise InvalidToken("message imprint", f"hash algorithm {got_alg}, requested {hash_algorithm}")
    if got_digest != digest:
        raise InvalidToken("message imprint", f"digest {got_digest.hex()}, requested {digest.hex()}")
    got_nonce = tst["nonce"].native
    if nonce is not None and got_nonce != nonce:
        raise InvalidToken("nonce", f"token carries {got_nonce!r}, request sent {nonce}")

    certs += [c for c in certificates if c not in certs]
    signer = _find_signer(signer_info, certs)
    _check_signature(signer_info, econtent, signer)
    gen_time = tst["gen_time"].native
    _check_signer_certificate(signer, gen_time)
    _check_ess_cert_id(signer_info, signer)
    anchors = list(trust_anchors or ())
    if anchors:
        _check_chain(signer, certs, anchors, gen_time)

    return TstInfo(
        gen_time=gen_time,
        serial=tst["serial_number"].native,
        policy=tst["policy"].dotted,
        hash_algorithm=got_alg,
        digest=got_digest,
        nonce=got_nonce,
        tsa_name=_general_name(tst["tsa"]),
        signer=signer,
    )


def _parse_token(token_der: bytes) -> tuple[cms.SignedData, cms.SignerInfo, tsp.TSTInfo, bytes,
                                             list[x509.Certificate]]:
    """SignedData, its one SignerInfo, the TSTInfo, its encoded bytes and the certificates (strict DER)."""
    try:
        info = cms.ContentInfo.load(token_der, strict=True)
        if info["content_type"].native != "signed_data":
            raise ValueError(f"content type {info['content_type'].native}, expected signed_data")
        signed_data = info["content"]
        encap = signed_data["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise ValueError(f"encapsulated content type {encap['content_type'].native}, expected tst_info")
        if isinstance(encap["content"], core.Void):
            raise ValueError("the TSTInfo is missing (detached content)")
        econtent = bytes(encap["content"])
        tst = tsp.TSTInfo.load(econtent, strict=True)
        signer_infos = signed_data["signer_infos"]
        if len(signer_infos) != 1:
            raise ValueError(f"{len(signer_infos)} SignerInfos, expected exactly one")
        # Decode every field now, so that malformed DER is reported here and not by a later check.
        decode_all(signed_data)
        decode_all(tst)
    except (ValueError, TypeError, KeyError, OverflowError, AttributeError) as exc:  # asn1crypto's errors on garbage
        raise InvalidToken("structure", f"not a well-formed RFC 3161 token ({exc})") from None
    return signed_data, signer_infos[0], tst, econtent, _certificates(signed_data)


def _certificates(signed_data: cms.SignedData) -> list[x509.Certificate]:
    """The token's certificates, parsed by cryptography's strict DER reader; anything else is refused."""
    out = []
    for choice in signed_data["certificates"] or []:
        if choice.name != "certificate":
            raise InvalidToken("structure", f"the token carries a {choice.name}, not an X.509 certificate")
        try:
            out.append(x509.load_der_x509_certificate(choice.chosen.dump()))
        except ValueError as exc:
            raise InvalidToken("structure", f"a certificate in the token is not valid DER ({exc})") from None
    return out


def _find_signer(signer_info: cms.SignerInfo, certs: list[x509.Certificate]) -> x509.Certificate:
    sid = signer_info["sid"]
    for cert in certs:
        if sid.name == "issuer_and_serial_number":
            ias = sid.chosen
            if (cert.serial_number == ias["serial_number"].native
                    and cert.issuer.public_bytes() == ias["issuer"].dump()):
                return cert
        else:
            try:
                ski = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER).value.digest
            except x509.ExtensionNotFound:
                continue
            if ski == sid.chosen.native:
                return cert
    raise InvalidToken("signer certificate", "the certificate that signed the token is neither in it nor given")


def _signed_attrs(signer_info: cms.SignerInfo) -> dict[str, list[core.Asn1Value]]:
    attrs = signer_info["signed_attrs"]
    if isinstance(attrs, core.Void) or not len(attrs):
        raise InvalidToken("signature", "the SignerInfo has no signed attributes (RFC 3161 requires them)")
    out: dict[str, list[core.Asn1Value]] = {}
    for attr in attrs:
        out.setdefault(attr["type"].native, []).extend(attr["values"])
    return out


def _hash(name: str, data: bytes, check: str) -> bytes:
    if name not in HASHES:
        raise InvalidToken(check, f"hash algorithm {name} is not accepted")
    h = hashes.Hash(HASHES[name]())
    h.update(data)
    return h.finalize()


def _check_signature(signer_info: cms.SignerInfo, econtent: bytes, signer: x509.Certificate) -> None:
    attrs = _signed_attrs(signer_info)
    types = attrs.get("content_type", [])
    if len(types) != 1 or types[0].native != "tst_info":
        raise InvalidToken("signature", "signed attribute content-type is not id-ct-TSTInfo")
    digests = attrs.get("message_digest", [])
    if len(digests) != 1:
        raise InvalidToken("signature", "signed attribute message-digest is missing")
    digest_alg = signer_info["digest_algorithm"]["algorithm"].native
    if digests[0].native != _hash(digest_alg, econtent, "signature"):
        raise InvalidToken("signature", "message-digest does not match the encapsulated TSTInfo")

    # The signature covers the DER of the signed attributes as a SET OF (tag 0x31), not as [0].
    raw = signer_info["signed_attrs"]
    signed = b"\x31" + raw.dump()[1:]
    sig_alg: algos.SignedDigestAlgorithm = signer_info["signature_algorithm"]
    signature = signer_info["signature"].native
    try:
        key = signer.public_key()
    except ValueError as exc:  # a certificate cryptography parses, but whose key it cannot load
        raise InvalidToken("signature", f"the signer's public key cannot be read ({exc})") from None
    try:
        kind = sig_alg.signature_algo
        try:
            hash_name = sig_alg.hash_algo
        except ValueError:
            hash_name = digest_alg
        if hash_name not in HASHES:
            raise InvalidToken("signature", f"signature hash algorithm {hash_name} is not accepted")
        if kind == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), HASHES[hash_name]())
        elif kind == "rsassa_pss" and isinstance(key, rsa.RSAPublicKey):
            params = sig_alg["parameters"]
            mgf = params["mask_gen_algorithm"]
            mgf_hash = mgf["parameters"]["algorithm"].native
            if mgf["algorithm"].native != "mgf1" or mgf_hash not in HASHES or params["trailer_field"].native != "trailer_field_bc":
                raise InvalidToken("signature", "unsupported RSASSA-PSS parameters")
            pss = padding.PSS(mgf=padding.MGF1(HASHES[mgf_hash]()), salt_length=params["salt_length"].native)
            key.verify(signature, signed, pss, HASHES[hash_name]())
        elif kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, signed, ec.ECDSA(HASHES[hash_name]()))
        else:
            raise InvalidToken("signature", f"signature algorithm {sig_alg['algorithm'].native} "
                                            f"does not fit the signer's {type(key).__name__} or is not supported")
    except InvalidSignature:
        raise InvalidToken("signature", "the CMS signature does not verify with the signer certificate") from None
    except ValueError as exc:
        raise InvalidToken("signature", f"cannot verify the CMS signature ({exc})") from None


def _check_signer_certificate(signer: x509.Certificate, gen_time: datetime) -> None:
    try:
        eku = signer.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE)
    except x509.ExtensionNotFound:
        raise InvalidToken("EKU timeStamping", "the signer certificate has no extended key usage") from None
    if ExtendedKeyUsageOID.TIME_STAMPING not in eku.value:
        raise InvalidToken("EKU timeStamping", "the signer certificate's extended key usage lacks timeStamping")
    if not eku.critical:
        raise InvalidToken("EKU timeStamping", "the signer certificate's extended key usage is not critical")
    if not signer.not_valid_before_utc <= gen_time <= signer.not_valid_after_utc:
        raise InvalidToken("signer certificate", f"genTime {gen_time.isoformat()} is outside the signer "
                                                 f"certificate's validity ({signer.not_valid_before_utc.isoformat()}"
                                                 f" to {signer.not_valid_after_utc.isoformat()})")


def _check_ess_cert_id(signer_info: cms.SignerInfo, signer: x509.Certificate) -> None:
    attrs = _signed_attrs(signer_info)
    cert_der = signer.public_bytes(serialization.Encoding.DER)
    if attrs.get("signing_certificate_v2"):
        first = attrs["signing_certificate_v2"][0]["certs"][0]
        alg = first["hash_algorithm"]["algorithm"].native
        expected = _hash(alg, cert_der, "ESSCertIDv2")
        name = "ESSCertIDv2"
    elif attrs.get("signing_certificate"):
        first = attrs["signing_certificate"][0]["certs"][0]
        expected = hashlib.sha1(cert_der).digest()
        name = "ESSCertID"
    else:
        raise InvalidToken("ESSCertID", "no signing-certificate(-v2) signed attribute")
    if first["cert_hash"].native != expected:
        raise InvalidToken(name, "the certificate hash does not match the signer certificate")
    issuer_serial = first["issuer_serial"]
    if not isinstance(issuer_serial, core.Void):
        if issuer_serial["serial_number"].native != signer.serial_number:
            raise InvalidToken(name, "the issuer serial number does not match the signer certificate")
        issuer = asn1_x509.Name.load(signer.issuer.public_bytes())
        if not any(g.name == "directory_name" and g.chosen == issuer for g in issuer_serial["issuer"]):
            raise InvalidToken(name, "the issuer name does not match the signer certificate")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_chain(signer: x509.Certificate, pool: list[x509.Certificate], anchors: list[x509.Certificate],
                 at: datetime) -> None:
    """The signer must lead, through CA certificates of the token valid at ``at``, to one anchor."""
    current = signer
    for _ in range(MAX_CHAIN_DEPTH):
        if current in anchors or any(_issued_by(current, a) for a in anchors):
            return
        issuers = [c for c in pool if c != current and _issued_by(current, c) and _is_ca(c)
                   and c.not_valid_before_utc <= at <= c.not_valid_after_utc]
        if not issuers:
            break
        current = issuers[0]
    subjects = ", ".join(a.subject.rfc4514_string() for a in anchors)
    raise InvalidToken("trust anchor", f"the signer {signer.subject.rfc4514_string()} (issuer "
                                       f"{signer.issuer.rfc4514_string()}) does not chain to a trust anchor ({subjects})")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca)
    except x509.ExtensionNotFound:
        return False


def _general_name(name: core.Asn1Value) -> str | None:
    if isinstance(name, core.Void):
        return None
    if name.name == "directory_name":
        return name.chosen.human_friendly
    return str(name.chosen.native)


# ---------------------------------------------------------------- the client

class _Failure(Exception):
    """One TSA's failure; ``retry`` for network errors (connect, timeout, HTTP 5xx)."""

    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class TimestampClient:
    """Asks the TSAs in order; ``retries`` extra attempts per TSA on network errors, then the next TSA.

    ``timeout`` is each attempt's socket timeout (connect, and every read), so a silent TSA costs
    about ``timeout × (retries + 1)`` before the client fails over. The calls block (urllib): run
    them in a worker thread, never on the reactor.
    """

    def __init__(self, tsas: Sequence[TsaEndpoint], timeout: float, retries: int,
                 https_anchors: Sequence[x509.Certificate] = ()) -> None:
        """``https_anchors``: CA certificates trusted for HTTPS besides the system's (our own CA, so
        that ``internal`` works under ``siegel serve --tls``)."""
        if not tsas:
            raise TimestampError("no TSA is configured")
        self.tsas = tuple(tsas)
        self.timeout = timeout
        self.retries = retries
        context = ssl.create_default_context()
        if https_anchors:
            context.load_verify_locations(cadata="".join(
                c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in https_anchors))
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    def timestamp(self, digest: bytes, hash_algorithm: str = "sha256", cert_req: bool = True) -> TimestampToken:
        """A checked token for ``digest``; ``TimestampError`` listing every TSA's failure if none gives one."""
        _check_digest(digest, hash_algorithm)
        failures: list[str] = []
        for tsa in self.tsas:
            try:
                return self._ask(tsa, digest, hash_algorithm, cert_req)
            except _Failure as exc:
                failures.append(str(exc))
        if len(failures) == 1:
            raise TimestampError(failures[0], failures)
        listed = "; ".join(f"[{i}] {f}" for i, f in enumerate(failures, 1))
        raise TimestampError(f"all {len(failures)} TSAs failed: {listed}", failures)

    def _ask(self, tsa: TsaEndpoint, digest: bytes, hash_algorithm: str, cert_req: bool) -> TimestampToken:
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            nonce = secrets.randbits(64)
            query = build_request(digest, hash_algorithm, nonce, cert_req)
            try:
                body, content_type = self._post(tsa, query)
                return self._accept(tsa, body, content_type, digest, hash_algorithm, nonce)
            except _Failure as exc:
                if not exc.retry:
                    raise
                last = exc
            if attempt < attempts:
                time.sleep(min(0.1 * attempt, 1.0))
        raise _Failure(f"{last} (after {attempts} attempt{'s' if attempts > 1 else ''})", True)

    def _post(self, tsa: TsaEndpoint, query: bytes) -> tuple[bytes, str]:
        """The response body and its content type; ``_Failure`` on network and HTTP errors."""
        headers = {"Content-Type": "application/timestamp-query", "Accept": "application/timestamp-reply"}
        if tsa.username is not None:
            pair = f"{tsa.username}:{tsa.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        request = urllib.request.Request(tsa.url, data=query, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                body = resp.read(MAX_RESPONSE_BYTES + 1)
                content_type = resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise _Failure(f"TSA {tsa.url} failed: network error, HTTP {exc.code} {exc.reason}", True) from None
            raise _Failure(f"TSA {tsa.url} refused the HTTP request: HTTP {exc.code} {exc.reason}", False) from None
        except urllib.error.URLError as exc:
            raise _Failure(f"TSA {tsa.url} is unreachable: network error, {exc.reason}", True) from None
        except (TimeoutError, socket.timeout):
            raise _Failure(f"TSA {tsa.url} is unreachable: network error, no answer within {self.timeout:g} s",
                           True) from None
        except (OSError, ValueError) as exc:
            raise _Failure(f"TSA {tsa.url} is unreachable: network error, {exc}", True) from None
        if len(body) > MAX_RESPONSE_BYTES:
            raise _Failure(f"TSA {tsa.url} returned an unusable response: larger than {MAX_RESPONSE_BYTES} bytes",
                           False)
        return body, content_type

    def _accept(self, tsa: TsaEndpoint, body: bytes, content_type: str, digest: bytes, hash_algorithm: str,
                nonce: int) -> TimestampToken:
        try:
            status, token = parse_response(body)
        except InvalidToken as exc:
            raise _Failure(f"TSA {tsa.url} returned an unusable response ({content_type or 'no content type'}, "
                           f"{len(body)} bytes): {exc.detail}", False) from None
        if not status.granted:
            verb = "rejected" if status.status == "rejection" else "did not grant"
            raise _Failure(f"TSA {tsa.url} {verb} the request: {status.describe()}", False)
        try:
            if token is None:
                raise InvalidToken("status", f"{status.describe()} but no token in the response")
            info = verify_token(token, digest, hash_algorithm, tsa.trust_anchors, nonce=nonce,
                                certificates=tsa.certificates)
        except InvalidToken as exc:
            raise _Failure(f"TSA {tsa.url} returned a token that fails the {exc.check} check: {exc.detail}",
                           False) from None
        return TimestampToken(token=token, info=info, tsa_url=tsa.url, response=body)


def endpoint_from_url(url: str, trust_anchors: Sequence[x509.Certificate] = ()) -> TsaEndpoint:
    """A TsaEndpoint; ``user:password@`` in the URL becomes HTTP Basic credentials (and leaves the URL)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return TsaEndpoint(url, tuple(trust_anchors))
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    clean = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return TsaEndpoint(clean, tuple(trust_anchors), urllib.parse.unquote(parts.username),
                       urllib.parse.unquote(parts.password or ""))


def client_from_settings(settings: Settings, internal_anchors: Sequence[x509.Certificate] = (),
                         https_anchors: Sequence[x509.Certificate] = ()) -> TimestampClient:
    """The client for ``tsa.clients``; ``internal`` is ``<server.public_base_url>/tsa``, checked
    against ``internal_anchors`` (the internal root) when given; ``https_anchors`` are trusted for
    HTTPS (the internal CAs, whose certificate the server presents under ``--tls``)."""
    tsas = []
    for entry in (e.strip() for e in settings.tsa.clients.split(",")):
        if entry == "internal":
            tsas.append(TsaEndpoint(settings.server.public_base_url.rstrip("/") + "/tsa", tuple(internal_anchors)))
        elif entry:
            tsas.append(endpoint_from_url(entry))
    return TimestampClient(tsas, settings.tsa.client_timeout_seconds, settings.tsa.client_retries, https_anchors)
