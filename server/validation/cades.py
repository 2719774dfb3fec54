"""Verification of CAdES (ETSI EN 319 122) signatures: one :class:`SignatureReport` per SignerInfo.

For each SignerInfo, in the order of EN 319 102-1's basic validation:

1. the signer's certificate: the embedded one the SignerIdentifier names (none: INDETERMINATE/
   NO_SIGNING_CERTIFICATE_FOUND), bound by the signed signing-certificate-v2 (or v1) attribute (missing:
   TOTAL-FAILED/FORMAT_FAILURE, as every CAdES baseline signature carries it; not matching: INDETERMINATE/
   NO_SIGNING_CERTIFICATE_FOUND);
2. the cryptography (pyHanko's ``validate_sig_integrity``): the signature over the signed attributes
   (TOTAL-FAILED/SIG_CRYPTO_FAILURE), then the message-digest against the content — the enveloped content,
   else the given ``content``, else the given ``content_digest`` (TOTAL-FAILED/HASH_FAILURE; no data, or a
   digest made with another algorithm: INDETERMINATE/SIGNED_DATA_NOT_FOUND); MD5 or SHA-1 as the digest
   algorithm: INDETERMINATE/CRYPTO_CONSTRAINTS_FAILURE_NO_POE (no POE before their deprecation is sought);
3. the signature timestamps over the signature value (:func:`check_timestamp`): the earliest valid one is the
   best signature time, the proof of existence for the certificate check;
4. the certificate (:func:`check_signer`) at ``trust.validation_time`` (default now) with the certificates
   and revocation values the SignedData embeds (OCSP as RevocationInfoChoice other, 1.3.6.1.5.5.7.16.2).

The level reached: B-B; B-T with a valid signature timestamp; B-LT when in addition every certificate of the
signer's path below the anchor is embedded with an embedded OCSP response or CRL for it (the TSA's own
validation data is not required); B-LTA when in addition an archive-time-stamp-v3 verifies: its
ats-hash-index-v3 names only values still present, its imprint is rebuilt with the engine's
:func:`archive_imprint` (EN 319 122-1 5.5.3) and its token verifies. Without the signed content (only a
digest given) the imprint cannot be rebuilt: the token is checked against its own imprint and the report
says so. A signature that is no CMS at all gives one report TOTAL-FAILED/FORMAT_FAILURE.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from asn1crypto import cms, core, crl, ocsp, x509
from cryptography.x509 import load_der_x509_certificate
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESSubIndic
from pyhanko.sign.general import check_ess_certid, match_issuer_serial
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.generic_cms import get_signing_cert_attr, validate_sig_integrity

from server.der import decode_all
from server.errors import SiegelError
from server.signing.cades import ARCHIVE_TIME_STAMP_V3, ATS_HASH_INDEX_V3, ATSHashIndexV3, archive_imprint
from server.signing.keysource import DigestAlgorithm
from server.validation.certificates import ChainResult, check_signer
from server.validation.model import (Indication, SignatureReport, SignedScope, SubIndication, TimestampResult,
                                     Trust)
from server.validation.timestamps import check_timestamp, message_imprint

OCSP_RESPONSE_FORMAT = "1.3.6.1.5.5.7.16.2"
SIGNATURE_TIME_STAMP = "1.2.840.113549.1.9.16.2.14"
WEAK_DIGESTS = frozenset({"md5", "sha1"})  # broken for signatures (ETSI TS 119 312)
_ASN1_ERRORS = (ValueError, TypeError, KeyError, OverflowError)


@dataclass(frozen=True)
class _Content:
    """What the signature is checked against: the content itself, or only its digest."""

    data: bytes | None
    digest: tuple[str, bytes] | None
    scope: SignedScope | None  # None: nothing to check against
    note: str | None = None

    def digest_with(self, algorithm: str) -> bytes | None:
        if self.data is not None:
            return hashlib.new(algorithm, self.data).digest()
        if self.digest is not None and self.digest[0] == algorithm:
            return self.digest[1]
        return None


@dataclass(frozen=True)
class Embedded:
    """The validation data a SignedData carries (DER)."""

    certificates: tuple[x509.Certificate, ...]
    ocsps: tuple[bytes, ...]
    crls: tuple[bytes, ...]

    @property
    def certificates_der(self) -> tuple[bytes, ...]:
        return tuple(c.dump() for c in self.certificates)


def verify_cades(signature: bytes, trust: Trust, *, content: bytes | None = None,
                 content_digest: tuple[str, bytes] | None = None, name: str = "document") -> list[SignatureReport]:
    """Reports on every SignerInfo of the DER CMS ``signature``; ``content`` (a detached signature's
    document) wins over ``content_digest`` (algorithm such as "sha256", digest). Blocking (revocation
    fetching): call it off the reactor thread."""
    try:
        signed_data = _signed_data(signature)
        infos = list(signed_data["signer_infos"])
        embedded = embedded_values(signed_data)
        checked = _content(signed_data, content, content_digest, name)
    except _ASN1_ERRORS as exc:
        return [_format_failure("signature", f"not a CMS SignedData: {exc}")]
    if not infos:
        return [_format_failure("signature", "the SignedData has no SignerInfo")]
    at = trust.validation_time or datetime.now(timezone.utc)
    return [_verify_signer(f"signer-{i}", info, signed_data, checked, embedded, trust, at)
            for i, info in enumerate(infos, 1)]


def _format_failure(identifier: str, message: str) -> SignatureReport:
    return SignatureReport(identifier, "CAdES", Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE, [message])


def _signed_data(signature: bytes) -> cms.SignedData:
    info = cms.ContentInfo.load(signature, strict=True)
    if info["content_type"].native != "signed_data":
        raise ValueError(f"content type {info['content_type'].native}, expected signed_data")
    signed_data = info["content"]
    decode_all(signed_data["signer_infos"])  # now, so that malformed DER is a format failure here
    return signed_data


def embedded_values(signed_data: cms.SignedData) -> Embedded:
    """The certificates, OCSP responses and CRLs embedded in ``signed_data``."""
    certificates = tuple(c.chosen for c in signed_data["certificates"] or () if c.name == "certificate")
    ocsps, crls = [], []
    for choice in signed_data["crls"] or ():
        if choice.name == "crl":
            crls.append(choice.chosen.dump())
        elif choice.chosen["other_rev_info_format"].dotted == OCSP_RESPONSE_FORMAT:
            ocsps.append(choice.chosen["other_rev_info"].dump())
    return Embedded(certificates, tuple(ocsps), tuple(crls))


def _content(signed_data: cms.SignedData, content: bytes | None, content_digest: tuple[str, bytes] | None,
             name: str) -> _Content:
    enveloped = signed_data["encap_content_info"]["content"]
    if not isinstance(enveloped, core.Void) and enveloped.native is not None:
        data = bytes(enveloped)
        note = None if content is None or content == data else (
            "the given content differs from the enveloped content: the enveloped content was verified")
        scope = SignedScope(name, "FULL", "the content enveloped in the signature", "sha256",
                            hashlib.sha256(data).digest())
        return _Content(data, None, scope, note)
    if content is not None:
        scope = SignedScope(name, "FULL", "the whole document (detached signature)", "sha256",
                            hashlib.sha256(content).digest())
        return _Content(content, None, scope)
    if content_digest is not None:
        algorithm = content_digest[0].lower().replace("-", "")
        scope = SignedScope(name, "DIGEST", "the document's digest only: the document itself was not seen",
                            algorithm, content_digest[1])
        return _Content(None, (algorithm, content_digest[1]), scope)
    return _Content(None, None, None)


def _verify_signer(identifier: str, info: cms.SignerInfo, signed_data: cms.SignedData, content: _Content,
                   embedded: Embedded, trust: Trust, at: datetime) -> SignatureReport:
    try:
        return _SignerCheck(identifier, info, signed_data, content, embedded, trust, at).run()
    except _ASN1_ERRORS as exc:
        return _format_failure(identifier, f"the SignerInfo is malformed: {exc}")


class _SignerCheck:
    """One SignerInfo's verification; :meth:`run` fills and returns its report."""

    def __init__(self, identifier: str, info: cms.SignerInfo, signed_data: cms.SignedData, content: _Content,
                 embedded: Embedded, trust: Trust, at: datetime) -> None:
        self.info, self.signed_data, self.content = info, signed_data, content
        self.embedded, self.trust, self.at = embedded, trust, at
        self.algorithm: str = info["digest_algorithm"]["algorithm"].native
        self.report = SignatureReport(
            identifier, "CAdES", Indication.INDETERMINATE, digest_algorithm=self.algorithm,
            signature_algorithm=info["signature_algorithm"]["algorithm"].native,
            signature_value=info["signature"].native, claimed_signing_time=signing_time(info),
            scopes=[content.scope] if content.scope is not None else [])

    def run(self) -> SignatureReport:
        if isinstance(self.info["signed_attrs"], core.Void):
            return self._verdict(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE,
                                 "the SignerInfo has no signed attributes, which CAdES requires")
        cert = signer_certificate(self.info, self.embedded.certificates)
        if cert is None:
            return self._verdict(Indication.INDETERMINATE, SubIndication.NO_SIGNING_CERTIFICATE_FOUND,
                                 "the certificate the SignerInfo names is not in the signature")
        if (refused := malformed(cert)) is not None:
            return self._verdict(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE, refused)
        self.report.signer_certificate = cert.dump()
        self.report.chain = [cert.dump()]
        unbound = self._binding(cert)
        if unbound is not None:
            return unbound
        failed = self._cryptography(cert)
        if failed is not None and failed.indication is Indication.TOTAL_FAILED:
            return failed
        self.report.timestamps = self._timestamps()
        poe = min((t.time for t in self.report.timestamps if t.valid and t.kind == "signature" and t.time),
                  default=None)
        self.report.best_signature_time = poe
        chain = check_signer(cert.dump(), self.embedded.certificates_der, self.trust, at=self.at,
                             ocsps=self.embedded.ocsps, crls=self.embedded.crls, poe=poe)
        self.report.chain = list(chain.chain)
        self.report.level = self._level(chain)
        details = [chain.message, f"revocation: {chain.revocation}", *(t.message for t in self.report.timestamps)]
        if self.content.note:
            details.insert(0, self.content.note)
        if failed is not None:
            return self._verdict(failed.indication, failed.sub_indication, *failed.messages, *details)
        if not chain.passed:
            return self._verdict(chain.indication, chain.sub_indication, *details)
        return self._verdict(Indication.TOTAL_PASSED, None, f"the signature of {self.report.signer_name} is valid",
                             *details)

    def _verdict(self, indication: Indication, sub: SubIndication | None, *messages: str) -> SignatureReport:
        self.report.indication, self.report.sub_indication = indication, sub
        self.report.messages = list(messages)
        return self.report

    def _binding(self, cert: x509.Certificate) -> SignatureReport | None:
        """The signing-certificate(-v2) attribute must name ``cert``; a report when it does not."""
        try:
            attr = get_signing_cert_attr(self.info["signed_attrs"])
        except SignatureValidationError as exc:
            return self._verdict(Indication.INDETERMINATE, SubIndication.NO_SIGNING_CERTIFICATE_FOUND,
                                 exc.failure_message)
        if attr is None:
            return self._verdict(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE,
                                 "no signing-certificate-v2 signed attribute: not a CAdES baseline signature")
        if not check_ess_certid(cert, attr["certs"][0]):
            return self._verdict(Indication.INDETERMINATE, SubIndication.NO_SIGNING_CERTIFICATE_FOUND,
                                 "the signing-certificate-v2 attribute names another certificate than the signer's")
        return None

    def _cryptography(self, cert: x509.Certificate) -> SignatureReport | None:
        """None when signature and digest verify; else a verdict (TOTAL-FAILED, or INDETERMINATE: data not
        found, a weak digest algorithm)."""
        digest = self.content.digest_with(self.algorithm)
        content_type = self.signed_data["encap_content_info"]["content_type"].native
        try:
            intact, valid = validate_sig_integrity(self.info, cert, content_type, digest or b"")
        except SignatureValidationError as exc:
            return self._verdict(*ades_indication(exc.ades_subindication), exc.failure_message)
        if not valid:
            return self._verdict(Indication.TOTAL_FAILED, SubIndication.SIG_CRYPTO_FAILURE,
                                 "the signature value does not verify over the signed attributes "
                                 "with the signer's public key")
        if digest is None:
            missing = ("the signature is detached and no content was given" if self.content.digest is None else
                       f"the given digest is {self.content.digest[0]}, the signature's is {self.algorithm}")
            return self._verdict(Indication.INDETERMINATE, SubIndication.SIGNED_DATA_NOT_FOUND, missing)
        if not intact:
            return self._verdict(Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE,
                                 "the message-digest attribute does not match the signed content")
        if self.algorithm in WEAK_DIGESTS:
            return self._verdict(Indication.INDETERMINATE, SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE,
                                 f"the digest algorithm {self.algorithm} is no longer accepted for signatures")
        return None

    def _timestamps(self) -> list[TimestampResult]:
        value = self.info["signature"].native
        pool = self.embedded.certificates_der
        results = []
        for attr in self.info["unsigned_attrs"] or ():
            kind = attr["type"].dotted
            for token in attr["values"]:
                if kind == SIGNATURE_TIME_STAMP:
                    results.append(signature_timestamp(token.dump(), value, self.trust, pool))
                elif kind == ARCHIVE_TIME_STAMP_V3:
                    results.append(self._archive_timestamp(token.dump()))
        return results

    def _archive_timestamp(self, token: bytes) -> TimestampResult:
        """An archive-time-stamp-v3 (EN 319 122-1 5.5.3): its ats-hash-index-v3 may name only values the
        signature still has, and its imprint is rebuilt over the signed content, the SignerInfo and that index.
        Without the content (a digest given), only the token itself is checked, against its own imprint."""
        try:
            algorithm, claimed = message_imprint(token)
            index = _hash_index(token)
            digest = DigestAlgorithm.parse(algorithm)
        except (ValueError, SiegelError) as exc:
            return TimestampResult("archive", None, False, None, f"archive-time-stamp-v3: {exc}", token)
        pool = self.embedded.certificates_der
        if self.content.data is None:
            result = check_timestamp(token, claimed, algorithm, self.trust, "archive", pool=pool)
            note = "; its imprint was not recomputed: the signed content was not given"
            return TimestampResult("archive", result.time, result.valid, result.tsa,
                                   f"archive-time-stamp-v3: {result.message}{note}", token)
        unknown = _unknown_hashes(index, self.signed_data, self.info)
        if unknown:
            return TimestampResult("archive", None, False, None, f"archive-time-stamp-v3: its ats-hash-index-v3 "
                                   f"names {unknown} value(s) the signature no longer has", token)
        imprint = archive_imprint(self.signed_data, self.info, index, self.content.data, digest)
        result = check_timestamp(token, imprint, algorithm, self.trust, "archive", pool=pool)
        return TimestampResult("archive", result.time, result.valid, result.tsa,
                               f"archive-time-stamp-v3: {result.message}", token)

    def _level(self, chain: ChainResult) -> str:
        valid = {t.kind for t in self.report.timestamps if t.valid}
        if "signature" not in valid:
            return "B-B"
        if not validation_data_complete(chain.chain, self.embedded):
            return "B-T"
        return "B-LTA" if "archive" in valid else "B-LT"


def ades_indication(found: AdESSubIndic) -> tuple[Indication, SubIndication]:
    """pyHanko's AdES sub-indication as ours (the names are TS 119 102-1's in both)."""
    if isinstance(found, AdESFailure):
        return Indication.TOTAL_FAILED, SubIndication.__members__.get(found.name, SubIndication.FORMAT_FAILURE)
    if isinstance(found, AdESIndeterminate):
        return Indication.INDETERMINATE, SubIndication.__members__.get(found.name, SubIndication.GENERIC)
    return Indication.INDETERMINATE, SubIndication.GENERIC


def signing_time(info: cms.SignerInfo) -> datetime | None:
    """The signer's claimed signing-time attribute, if any."""
    for attr in info["signed_attrs"] or ():
        if attr["type"].native == "signing_time":
            return attr["values"][0].native
    return None


def signer_certificate(info: cms.SignerInfo, certificates: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The certificate among ``certificates`` that the SignerInfo's sid names."""
    sid = info["sid"]
    for cert in certificates:
        if sid.name == "issuer_and_serial_number" and match_issuer_serial(sid.chosen, cert):
            return cert
        if sid.name == "subject_key_identifier" and cert.key_identifier == sid.chosen.native:
            return cert
    return None


def malformed(cert: x509.Certificate) -> str | None:
    """Why cryptography's strict parser refuses ``cert`` (asn1crypto reads more leniently), or None: a signer's
    certificate the report could not name is a format failure of the signature."""
    try:
        load_der_x509_certificate(cert.dump()).subject.rfc4514_string()
    except ValueError as exc:
        return f"the signer's certificate is malformed: {exc}"
    return None


def signature_timestamp(token: bytes, signature_value: bytes, trust: Trust, pool: Sequence[bytes]) -> TimestampResult:
    """A signature-time-stamp token checked over ``signature_value``."""
    try:
        algorithm, _ = message_imprint(token)
        digest = hashlib.new(algorithm, signature_value).digest()
    except ValueError as exc:
        return TimestampResult("signature", None, False, None, f"signature timestamp: {exc}", token)
    return check_timestamp(token, digest, algorithm, trust, "signature", pool=pool)


def _hash_index(token: bytes) -> ATSHashIndexV3:
    """The ats-hash-index-v3 the token's SignerInfo carries as an unsigned attribute."""
    signer_info = cms.ContentInfo.load(token)["content"]["signer_infos"][0]
    for attr in signer_info["unsigned_attrs"] or ():
        if attr["type"].dotted == ATS_HASH_INDEX_V3:
            return ATSHashIndexV3.load(attr["values"][0].dump())
    raise ValueError("the token carries no ats-hash-index-v3")


def _unknown_hashes(index: ATSHashIndexV3, signed_data: cms.SignedData, signer_info: cms.SignerInfo) -> int:
    """How many hashes of the index match no certificate, revocation value or unsigned attribute value now present."""
    algorithm = index["hash_ind_algorithm"]["algorithm"].native

    def hashed(items: Sequence[bytes]) -> set[bytes]:
        return {hashlib.new(algorithm, item).digest() for item in items}

    present = {
        "certificates_hash_index": hashed([c.dump() for c in signed_data["certificates"] or ()]),
        "crls_hash_index": hashed([r.dump() for r in signed_data["crls"] or ()]),
        "unsigned_attr_values_hash_index": hashed([a["type"].dump() + v.dump()
                                                   for a in signer_info["unsigned_attrs"] or () for v in a["values"]]),
    }
    return sum(1 for name, values in present.items() for h in index[name].native if h not in values)


def validation_data_complete(chain: Sequence[bytes], embedded: Embedded) -> bool:
    """Every certificate of the path below the anchor embedded, with an embedded OCSP response or CRL for it."""
    if len(chain) < 2:
        return False
    embedded_der = set(embedded.certificates_der)
    for der in chain[:-1]:
        cert = x509.Certificate.load(der)
        if der not in embedded_der or not (_has_ocsp(cert, embedded.ocsps) or _has_crl(cert, embedded.crls)):
            return False
    return True


def _has_ocsp(cert: x509.Certificate, responses: Sequence[bytes]) -> bool:
    for der in responses:
        response = ocsp.OCSPResponse.load(der)
        if response["response_status"].native != "successful":
            continue
        for single in response.basic_ocsp_response["tbs_response_data"]["responses"]:
            cert_id = single["cert_id"]
            name_hash = hashlib.new(cert_id["hash_algorithm"]["algorithm"].native, cert.issuer.dump()).digest()
            if cert_id["serial_number"].native == cert.serial_number and cert_id["issuer_name_hash"].native == name_hash:
                return True
    return False


def _has_crl(cert: x509.Certificate, crls: Sequence[bytes]) -> bool:
    return any(crl.CertificateList.load(der).issuer == cert.issuer for der in crls)
