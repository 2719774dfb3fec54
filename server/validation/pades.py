"""Verification of PDF signatures (PAdES, ETSI EN 319 142-1) and document timestamps: one report each.

:func:`verify_pdf` reads the PDF with pyHanko (non-strict: hybrid-reference files and irregular xref sections
of real producers are read; the signature checks below do not depend on that leniency), finds every filled
signature field of the AcroForm and reports

- each signature (``/Type /Sig``) as a :class:`SignatureReport` of format ``"PAdES"``;
- each document timestamp (``/Type /DocTimeStamp``, ETSI.RFC3161) as a report of its own, format
  ``"PAdES-DocTimeStamp"``, *and* as a :class:`TimestampResult` of every signature it covers (an earlier
  revision): kind ``signature`` for the first one when the signature has no signature-time-stamp of its own
  (it is then what makes the signature B-T, EN 319 142-1 5.4), kind ``archive`` otherwise.

For each signature, in the order of EN 319 102-1's basic validation, the first failure decides:

1. structure (TOTAL-FAILED/FORMAT_FAILURE): the CMS parses and has exactly one SignerInfo; ``/ByteRange`` is
   four integers ``[0 a b c]`` inside the file, whose gap ``a..b`` is exactly the ``/Contents`` hex string of
   this signature dictionary (universal signature forgery, signature wrapping: out-of-range, overlapping or
   foreign ranges); the signed bytes end where a revision of the file ends and that revision contains the
   signature (pyHanko's coverage ENTIRE_FILE or ENTIRE_REVISION; anything else is a wrapped or edited file);
2. cryptography, as :mod:`server.validation.cades` (pyHanko's ``validate_sig_integrity``): HASH_FAILURE when
   the message-digest is not the digest of the byte range (for ``adbe.pkcs7.sha1``: the enveloped SHA-1 of
   it), SIG_CRYPTO_FAILURE when the signature value does not verify; the signing-certificate(-v2) attribute
   must name the signer (required for ETSI.CAdES.detached); MD5/SHA-1 digests: INDETERMINATE/
   CRYPTO_CONSTRAINTS_FAILURE_NO_POE;
3. the changes after the signed revision (pyHanko's ``DEFAULT_DIFF_POLICY`` revision by revision, with the
   signature's DocMDP and FieldMDP; its DSS rule is :class:`_RefreshableVriRule`, which also lets a later
   revision replace a VRI entry): allowed are DSS/VRI updates and document timestamps, and — unless a
   certification signature's DocMDP P=1 forbids it — form filling and further signatures; annotations only
   under DocMDP P=3. A change the policy cannot explain (page content, pages added or removed, objects reused:
   shadow and incremental saving attacks, a replaced signature dictionary) makes the signature
   TOTAL-FAILED/FORMAT_FAILURE; a change beyond the DocMDP permission, an annotation, or a field whose value
   is unchanged but whose normal appearance was replaced (shadow "replace": what is shown is no longer what
   was signed) INDETERMINATE/SIG_CONSTRAINTS_FAILURE. Each such message starts "modified after signing: ";
4. timestamps: signature-time-stamps over the signature value (:func:`check_timestamp`); one whose imprint is
   not this signature's (copied from another signature) makes the signature INDETERMINATE/
   SIG_CONSTRAINTS_FAILURE. The best signature time is the earliest valid signature timestamp, else the
   earliest valid document timestamp covering the signature (a proof of existence);
5. the signer's certificate (:func:`check_signer`) at ``trust.validation_time`` (default now) with the
   certificates and revocation values of the CMS (incl. adbe-revocationInfoArchival) and of the DSS.

A document timestamp's own report: FORMAT_FAILURE for its /ByteRange as in 1.; HASH_FAILURE when its message
imprint is not the digest of the revision it covers (a timestamp copied from another document);
SIG_CRYPTO_FAILURE when the token's signature does not verify; then :func:`check_timestamp` (the TSA chain
to ``trust.roots``, no revocation check): INDETERMINATE/NO_CERTIFICATE_CHAIN_FOUND without anchors,
CERTIFICATE_CHAIN_GENERAL_FAILURE otherwise; the changes after it as in 3.

Levels (only for ETSI.CAdES.detached; legacy ``adbe.pkcs7.*`` signatures get none): B-B; B-T with a valid
signature timestamp or document timestamp; B-LT when in addition the document has a DSS and every certificate
of the signer's path below the anchor is in the DSS or the CMS with an OCSP response or CRL for it; B-LTA when
in addition a valid document timestamp covers a revision whose DSS already held that validation data.

The scope of a signature is the whole document when it covers the entire file, else "revision N of M (bytes
0..k)" with the digest of the signed bytes (the signature's digest algorithm), name ``name``.

Inputs: not a PDF (no ``%PDF-`` header in the first KiB): SiegelError(BAD_REQUEST); a PDF pyHanko cannot read:
one report TOTAL-FAILED/FORMAT_FAILURE with id ``"document"``; encrypted: opened with ``password`` (or the
empty user password), else SiegelError(BAD_REQUEST); no filled signature field: SiegelError(BAD_REQUEST,
"... no signature").
"""

from __future__ import annotations

import binascii
import hashlib
import io
import logging
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from asn1crypto import cms, core, tsp, x509
from pyhanko.pdf_utils import generic, misc
from pyhanko.pdf_utils.crypt import AuthStatus
from pyhanko.pdf_utils.decode_limits import DecodePurpose
from pyhanko.pdf_utils.reader import HistoricalResolver, PdfFileReader, RawPdfPath
from pyhanko.sign.diff_analysis import (
    DEFAULT_DIFF_POLICY,
    DiffResult,
    DSSCompareRule,
    ModificationLevel,
    StandardDiffPolicy,
    SuspiciousModification,
)
from pyhanko.sign.diff_analysis.commons import compare_key_refs
from pyhanko.sign.diff_analysis.rules.form_field_rules import _validate_dss_substructure
from pyhanko.sign.diff_analysis.rules_api import Context, ReferenceUpdate
from pyhanko.sign.fields import MDPPerm, enumerate_sig_fields
from pyhanko.sign.general import check_ess_certid, find_cms_attribute_iter
from pyhanko.sign.validation.dss import DocumentSecurityStore, NoDSSFoundError
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.generic_cms import (
    get_signing_cert_attr,
    validate_sig_integrity,
)
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature, extract_contents
from pyhanko.sign.validation.status import SignatureCoverageLevel

from server.errors import Code, SiegelError
from server.validation.cades import (
    WEAK_DIGESTS,
    ades_indication,
    Embedded,
    embedded_values,
    malformed,
    signature_timestamp,
    signer_certificate,
    signing_time,
    validation_data_complete,
)
from server.validation.certificates import ChainResult, check_signer
from server.validation.model import (
    Indication,
    SignatureReport,
    SignedScope,
    SubIndication,
    TimestampResult,
    Trust,
)
from server.validation.timestamps import check_timestamp, message_imprint

FORMAT = "PAdES"
DOC_TIMESTAMP_FORMAT = "PAdES-DocTimeStamp"
SIGNATURE_TIME_STAMP = "1.2.840.113549.1.9.16.2.14"
SIGNATURE_SUBFILTERS = ("/ETSI.CAdES.detached", "/adbe.pkcs7.detached", "/adbe.pkcs7.sha1")
TIMESTAMP_SUBFILTER = "/ETSI.RFC3161"
MODIFIED = "modified after signing: "
_HEADER_WINDOW = 1024
_MAX_DETAIL = 400
_PARSE_ERRORS = (misc.PdfError, ValueError, TypeError, KeyError, IndexError, AttributeError, OSError,
                 AssertionError, RecursionError, NotImplementedError, SignatureValidationError, zlib.error)

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- the diff policy

class _RefreshableVriRule(DSSCompareRule):
    """pyHanko's DSS rule, except that a VRI entry of the DSS may be replaced in a later revision (LTV tools
    refresh the validation data of a signature so): the replaced entry is checked like a new one, so its
    structure must be a VRI dictionary of DER streams and objects it reuses stay unexplained."""

    def apply(self, old: HistoricalResolver, new: HistoricalResolver):  # type: ignore[no-untyped-def]
        dss_context = Context.from_absolute(old, RawPdfPath("/Root", "/DSS"))
        old_dss, new_dss = yield from misc.map_with_return(
            compare_key_refs("/DSS", old, old.root, new.root), ReferenceUpdate.curry_ref(context_checked=dss_context))
        if new_dss is None:
            return
        if old_dss is None:
            old_dss = generic.DictionaryObject()
        if not isinstance(old_dss, generic.DictionaryObject):
            raise misc.PdfReadError("/DSS is not a dictionary")
        if not isinstance(new_dss, generic.DictionaryObject):
            raise SuspiciousModification("/DSS is not a dictionary")
        streams = {"/Certs", "/CRLs", "/OCSPs"}
        unexpected = set(new_dss.keys()) - ({"/Type", "/VRI"} | streams)
        if unexpected:
            raise SuspiciousModification(f"Unexpected keys in DSS: {unexpected}.")
        yield from _validate_dss_substructure(old, new, old_dss, new_dss, streams, is_vri=False,
                                              context=dss_context)
        old_vri, new_vri = yield from misc.map_with_return(
            compare_key_refs("/VRI", old, old_dss, new_dss),
            ReferenceUpdate.curry_ref(context_checked=Context.from_absolute(old, RawPdfPath("/Root", "/DSS", "/VRI"))))
        if new_vri is None:
            return
        if not isinstance(new_vri, generic.DictionaryObject):
            raise SuspiciousModification("/VRI is not a dictionary")
        if old_vri is None or not isinstance(old_vri, generic.DictionaryObject):
            old_vri = generic.DictionaryObject()
        kept = generic.DictionaryObject({key: value for key, value in old_vri.items()
                                         if key in new_vri and new_vri.raw_get(key) == value})
        yield from DSSCompareRule._check_vri(old, new, kept, new_vri)


def _diff_policy() -> StandardDiffPolicy:
    """pyHanko's DEFAULT_DIFF_POLICY with :class:`_RefreshableVriRule` for its DSS rule."""
    rules = [(_RefreshableVriRule().as_qualified(ModificationLevel.LTA_UPDATES)
              if isinstance(getattr(rule, "rule", None), DSSCompareRule) else rule)
             for rule in DEFAULT_DIFF_POLICY.global_rules]
    return StandardDiffPolicy(global_rules=rules, form_rule=DEFAULT_DIFF_POLICY.form_rule)


DIFF_POLICY = _diff_policy()


# ---------------------------------------------------------------- entry point

def verify_pdf(pdf: BinaryIO | bytes, trust: Trust, *, name: str = "document.pdf",
               password: str | None = None) -> list[SignatureReport]:
    """Reports on every signature and document timestamp of ``pdf`` (rules in the module docstring).
    Blocking (pyHanko's diff analysis, revocation fetching): call it off the reactor thread."""
    data = pdf if isinstance(pdf, bytes) else pdf.read()
    if b"%PDF-" not in data[:_HEADER_WINDOW]:
        raise SiegelError(Code.BAD_REQUEST, f"{name} is not a PDF (no %PDF- header)")
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
    except _PARSE_ERRORS as exc:
        return [_unreadable(exc)]
    try:
        encrypted = reader.encrypted
    except _PARSE_ERRORS as exc:  # e.g. an /Encrypt that is no dictionary (a spoofing attack)
        return [_unreadable(exc)]
    if encrypted:
        _open(reader, name, password)
    try:
        found = _signature_fields(reader)
    except _PARSE_ERRORS as exc:
        return [_unreadable(exc)]
    if not found:
        raise SiegelError(Code.BAD_REQUEST, f"{name} holds no signature (no filled signature field)")
    document = _Document(reader, data, name, trust, trust.validation_time or datetime.now(UTC))
    entries = [document.safe_entry(names, sig_field) for names, sig_field in found]
    timestamps = [e for e in entries if e.is_timestamp and e.emb is not None]
    reports = []
    for entry in entries:
        try:
            if entry.is_timestamp:
                reports.append(document.timestamp_report(entry))
            else:
                reports.append(document.signature_report(entry, timestamps))
        except _PARSE_ERRORS as exc:  # a structure pyHanko trips over, deep inside
            reports.append(_failure(entry.identifier, entry.format, f"the signature cannot be read: {_short(exc)}"))
    return reports


def _open(reader: PdfFileReader, name: str, password: str | None) -> None:
    try:
        result = reader.decrypt(password if password is not None else "")
    except _PARSE_ERRORS as exc:
        raise SiegelError(Code.BAD_REQUEST, f"{name} is encrypted in a way that cannot be opened here: "
                                            f"{_short(exc)}") from None
    if result.status is AuthStatus.FAILED:
        if password is None:
            raise SiegelError(Code.BAD_REQUEST, f"{name} is encrypted: give its password to verify it")
        raise SiegelError(Code.BAD_REQUEST, f"{name} is encrypted and the given password does not open it")


def _signature_fields(reader: PdfFileReader) -> list[tuple[list[str], generic.DictionaryObject]]:
    """The filled signature fields, one entry per signature dictionary (a dictionary referenced from several
    fields is one signature with several names)."""
    by_value: dict[object, tuple[list[str], generic.DictionaryObject]] = {}
    for fq_name, _value, field_ref in enumerate_sig_fields(reader, filled_status=True):
        sig_field = field_ref.get_object() if isinstance(field_ref, generic.IndirectObject) else field_ref
        value = sig_field.raw_get("/V")
        key = value.reference if isinstance(value, generic.IndirectObject) else id(value)
        if key in by_value:
            by_value[key][0].append(fq_name)
        else:
            by_value[key] = ([fq_name], sig_field)
    return list(by_value.values())


def _unreadable(exc: BaseException) -> SignatureReport:
    return _failure("document", FORMAT, f"the PDF cannot be read, so no signature in it can be verified: "
                                        f"{_short(exc)}")


def _failure(identifier: str, fmt: str, message: str) -> SignatureReport:
    return SignatureReport(identifier, fmt, Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE, [message])


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "…"


# ---------------------------------------------------------------- one signature field

@dataclass
class _Entry:
    identifier: str
    sig_object: generic.DictionaryObject
    is_timestamp: bool
    subfilter: str | None
    emb: EmbeddedPdfSignature | None = None
    error: str | None = None  # why it could not be read
    structure: str | None = None  # a ByteRange / coverage failure
    coverage: SignatureCoverageLevel | None = None
    diff: DiffResult | SuspiciousModification | None = None
    diff_error: str | None = None
    timestamp_result: TimestampResult | None = None  # for a document timestamp

    @property
    def format(self) -> str:
        return DOC_TIMESTAMP_FORMAT if self.is_timestamp else FORMAT

    @property
    def revision(self) -> int:
        assert self.emb is not None
        return self.emb.signed_revision


@dataclass
class _Verdict:
    """Findings by rank: the first (indication, sub-indication) decides, every message is reported."""

    decided: tuple[Indication, SubIndication | None] | None = None
    messages: list[str] = field(default_factory=list)

    def fail(self, indication: Indication, sub: SubIndication | None, message: str) -> None:
        if self.decided is None:
            self.decided = (indication, sub)
            self.messages.insert(0, message)
        else:
            self.messages.append(message)

    def note(self, message: str) -> None:
        self.messages.append(message)


class _Document:
    def __init__(self, reader: PdfFileReader, data: bytes, name: str, trust: Trust, at: datetime) -> None:
        self.reader, self.data, self.name, self.trust, self.at = reader, data, name, trust, at
        self.revisions = reader.xrefs.total_revisions
        self._dss: dict[int | None, Embedded | None] = {}

    # ---- reading one field

    def safe_entry(self, names: list[str], sig_field: generic.DictionaryObject) -> _Entry:
        try:
            return self.entry(names, sig_field)
        except _PARSE_ERRORS as exc:
            entry = _Entry(" / ".join(names), generic.DictionaryObject(), False, None)
            entry.error = f"the signature dictionary cannot be read: {_short(exc)}"
            return entry

    def entry(self, names: list[str], sig_field: generic.DictionaryObject) -> _Entry:
        sig_object = sig_field["/V"]
        kind = sig_object.get("/Type")
        subfilter = sig_object.get("/SubFilter")
        is_timestamp = kind == "/DocTimeStamp" or subfilter == TIMESTAMP_SUBFILTER
        entry = _Entry(" / ".join(names), sig_object, is_timestamp, None if subfilter is None else str(subfilter))
        expected = (TIMESTAMP_SUBFILTER,) if is_timestamp else SIGNATURE_SUBFILTERS
        if entry.subfilter not in expected:
            entry.error = f"/SubFilter {entry.subfilter} is not one of {', '.join(expected)}"
            return entry
        try:
            entry.emb = EmbeddedPdfSignature(self.reader, sig_field, names[0])
        except _PARSE_ERRORS as exc:
            entry.error = f"the signature value (/Contents) is not a PDF signature's CMS: {_short(exc)}"
            return entry
        entry.structure = self._byte_range_problem(entry.emb)
        if entry.structure is None:
            entry.coverage = self._coverage(entry)
        if entry.structure is None and entry.coverage is not SignatureCoverageLevel.ENTIRE_FILE:
            try:
                entry.diff = entry.emb.evaluate_modifications(DIFF_POLICY)
            except _PARSE_ERRORS as exc:
                entry.diff_error = _short(exc)
        elif entry.structure is None:
            entry.diff = DiffResult(ModificationLevel.NONE, set())
        return entry

    def _byte_range_problem(self, emb: EmbeddedPdfSignature) -> str | None:
        """Why the /ByteRange does not frame exactly this dictionary's /Contents (None: it does)."""
        byte_range = list(emb.byte_range)
        if len(byte_range) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in byte_range):
            return f"the /ByteRange {byte_range} is not four integers"
        first, length1, second, length2 = (int(v) for v in byte_range)
        size = len(self.data)
        if first != 0 or min(length1, second, length2) < 0:
            return f"the /ByteRange {byte_range} does not start at byte 0"
        if second < length1:
            return f"the /ByteRange {byte_range} overlaps itself"
        if second + length2 > size:
            return f"the /ByteRange {byte_range} reaches beyond the end of the file ({size} bytes)"
        gap = self.data[length1:second]
        if len(gap) < 2 or gap[:1] != b"<" or gap[-1:] != b">":
            return (f"the bytes the /ByteRange {byte_range} leaves out are not a hex string: the signature value "
                    "is not where the signature dictionary puts it")
        try:
            hex_value = binascii.unhexlify(re.sub(rb"\s", b"", gap[1:-1]))
        except (binascii.Error, ValueError):
            return f"the bytes the /ByteRange {byte_range} leaves out are not a hex string"
        try:
            contents = extract_contents(emb.sig_object)
        except _PARSE_ERRORS as exc:
            return f"the signature dictionary's /Contents cannot be read: {_short(exc)}"
        if hex_value != contents:
            return (f"the /ByteRange {byte_range} leaves out another value than this signature's /Contents "
                    "(the signed bytes belong to another signature or place)")
        return None

    def _coverage(self, entry: _Entry) -> SignatureCoverageLevel | None:
        assert entry.emb is not None
        try:
            coverage = entry.emb.evaluate_signature_coverage()
        except _PARSE_ERRORS as exc:
            entry.structure = f"what the signature covers cannot be determined: {_short(exc)}"
            return None
        entry.emb.coverage = coverage  # type: ignore[assignment]  # pyHanko declares it None until computed
        if coverage is SignatureCoverageLevel.UNCLEAR:
            entry.structure = "the /ByteRange does not cover the file up to a revision's end around the signature value"
        elif coverage is SignatureCoverageLevel.CONTIGUOUS_BLOCK_FROM_START:
            entry.structure = ("the signed bytes do not end with the revision that holds this signature "
                               "dictionary: the dictionary or the signed revision was changed after signing")
        return coverage

    # ---- scope and changes

    def _scope(self, entry: _Entry, algorithm: str) -> SignedScope:
        assert entry.emb is not None
        digest = entry.emb.compute_digest(algorithm)
        _, length1, second, length2 = (int(v) for v in entry.emb.byte_range)
        if entry.coverage is SignatureCoverageLevel.ENTIRE_FILE:
            return SignedScope(self.name, "FULL", "the whole document", algorithm, digest)
        return SignedScope(self.name, "PARTIAL", f"revision {entry.revision + 1} of {self.revisions} "
                           f"(bytes 0..{second + length2 - 1}, without the signature value at "
                           f"{length1}..{second - 1})", algorithm, digest)

    def _changes(self, entry: _Entry, verdict: _Verdict) -> None:
        """The changes after the signed revision, as findings on ``verdict``."""
        assert entry.emb is not None
        if entry.diff_error is not None:
            verdict.fail(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE,
                         f"{MODIFIED}the later revisions cannot be analysed: {entry.diff_error}")
            return
        diff = entry.diff
        if isinstance(diff, SuspiciousModification):
            verdict.fail(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE,
                         f"{MODIFIED}a later revision changes the document beyond form filling, signatures and "
                         f"validation data: {_short(diff)}")
            return
        assert diff is not None
        level = diff.modification_level
        docmdp = entry.emb.docmdp_level
        fields = ", ".join(sorted(diff.changed_form_fields))
        filled = f" (fields: {fields})" if fields else ""
        if level in (ModificationLevel.FORM_FILLING, ModificationLevel.ANNOTATIONS):
            replaced = self._replaced_appearances(entry.revision)
            if replaced:
                verdict.fail(Indication.INDETERMINATE, SubIndication.SIG_CONSTRAINTS_FAILURE,
                             f"{MODIFIED}the appearance of field(s) {', '.join(replaced)} was replaced while their "
                             "value stayed the same: what is shown now is not what was shown when signing "
                             "(shadow attack)")
        if level is ModificationLevel.NONE:
            verdict.note("nothing was changed after signing" if entry.coverage is SignatureCoverageLevel.ENTIRE_FILE
                         else "the later revisions change nothing of the signed revision")
        elif level is ModificationLevel.LTA_UPDATES:
            verdict.note("allowed changes after signing: validation data (DSS/VRI) and document timestamps only")
        elif level is ModificationLevel.FORM_FILLING:
            if docmdp is MDPPerm.NO_CHANGES:
                verdict.fail(Indication.INDETERMINATE, SubIndication.SIG_CONSTRAINTS_FAILURE,
                             f"{MODIFIED}form fields were filled or signed{filled}, but the certification "
                             "(DocMDP P=1) allows no changes")
            else:
                verdict.note(f"allowed changes after signing: form filling and further signatures{filled}")
        elif level is ModificationLevel.ANNOTATIONS:
            if docmdp is MDPPerm.ANNOTATE:
                verdict.note(f"allowed changes after signing: annotations and form filling{filled} (DocMDP P=3)")
            else:
                verdict.fail(Indication.INDETERMINATE, SubIndication.SIG_CONSTRAINTS_FAILURE,
                             f"{MODIFIED}annotations were added or changed{filled}; they can cover what was "
                             "signed, and no certification (DocMDP P=3) allows them")
        else:
            verdict.fail(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE,
                         f"{MODIFIED}a later revision changes the document ({level.name})")

    def _replaced_appearances(self, revision: int) -> list[str]:
        """Fields of the signed revision whose value is the same now but whose normal appearance is not."""
        try:
            before = _fields(self.reader.get_historical_resolver(revision))
            now = _fields(self.reader)
        except _PARSE_ERRORS as exc:
            logger.warning("the form fields cannot be compared: %s", exc)
            return []
        return sorted(name for name, (value, looks) in before.items()
                      if name in now and now[name][0] == value and now[name][1] != looks)

    # ---- validation data

    def dss(self, revision: int | None = None) -> Embedded | None:
        """The DSS's certificates and revocation values, of the last revision or as of ``revision``."""
        if revision not in self._dss:
            handler = self.reader if revision is None else self.reader.get_historical_resolver(revision)
            try:
                store = DocumentSecurityStore.read_dss(handler)
                certs = tuple(store.load_certs())
                ocsps = tuple(ref.get_object().read_data(DecodePurpose.OCSP_RESPONSE) for ref in store.ocsps)
                crls = tuple(ref.get_object().read_data(DecodePurpose.CRL) for ref in store.crls)
                self._dss[revision] = Embedded(certs, ocsps, crls)
            except NoDSSFoundError:
                self._dss[revision] = None
            except _PARSE_ERRORS as exc:
                logger.warning("the DSS cannot be read: %s", exc)
                self._dss[revision] = None
        return self._dss[revision]

    # ---- document timestamps

    def timestamp_report(self, entry: _Entry) -> SignatureReport:
        report = SignatureReport(entry.identifier, DOC_TIMESTAMP_FORMAT, Indication.INDETERMINATE)
        if entry.emb is None:
            return _failure(entry.identifier, DOC_TIMESTAMP_FORMAT, entry.error or "unreadable")
        emb = entry.emb
        token = cms.ContentInfo.load(emb.pkcs7_content).dump()
        report.signature_value = emb.signer_info["signature"].native
        report.digest_algorithm = emb.external_md_algorithm
        report.signature_algorithm = emb.signer_info["signature_algorithm"]["algorithm"].native
        verdict = _Verdict()
        result = self._doc_timestamp(entry)
        report.timestamps = [result]
        if result.time is None:
            report.claimed_signing_time = _gen_time(token)
        else:
            report.claimed_signing_time = report.best_signature_time = result.time
        try:
            report.signer_certificate = emb.signer_cert.dump()
            report.chain = [report.signer_certificate]
        except _PARSE_ERRORS:
            pass
        if entry.structure is not None:
            verdict.fail(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE, entry.structure)
        else:
            report.scopes = [self._scope(entry, emb.external_md_algorithm)]
            self._timestamp_cryptography(entry, token, verdict)
            self._changes(entry, verdict)
            if not result.valid:
                sub = (SubIndication.NO_CERTIFICATE_CHAIN_FOUND if not self.trust.roots
                       else SubIndication.CERTIFICATE_CHAIN_GENERAL_FAILURE)
                verdict.fail(Indication.INDETERMINATE, sub, result.message)
            else:
                verdict.note(result.message)
        return _decide(report, verdict, f"the document timestamp of {result.tsa} is valid")

    def _doc_timestamp(self, entry: _Entry) -> TimestampResult:
        """The token checked against the digest of the revision it covers (cached on the entry)."""
        if entry.timestamp_result is None:
            assert entry.emb is not None
            token = cms.ContentInfo.load(entry.emb.pkcs7_content).dump()
            if entry.structure is not None:
                entry.timestamp_result = TimestampResult("archive", None, False, None,
                                                         f"document timestamp {entry.identifier}: {entry.structure}",
                                                         token)
            else:
                algorithm = entry.emb.external_md_algorithm
                digest = entry.emb.compute_digest(algorithm)
                result = check_timestamp(token, digest, algorithm, self.trust, "archive",
                                         pool=self._pool(entry.emb))
                entry.timestamp_result = TimestampResult(
                    "archive", result.time, result.valid, result.tsa,
                    f"document timestamp {entry.identifier}: {result.message}", token)
        return entry.timestamp_result

    def _timestamp_cryptography(self, entry: _Entry, token: bytes, verdict: _Verdict) -> None:
        emb = entry.emb
        assert emb is not None
        try:
            algorithm, claimed = message_imprint(token)
        except ValueError as exc:
            verdict.fail(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE, str(exc))
            return
        if claimed != emb.compute_digest(algorithm):
            verdict.fail(Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE,
                         "the document timestamp's message imprint is not the digest of the revision it covers "
                         "(copied from another document, or the revision was changed)")
        try:
            cert = emb.signer_cert
            encap = emb.signed_data["encap_content_info"]
            content_digest = hashlib.new(emb.md_algorithm, bytes(encap["content"])).digest()
            _, valid = validate_sig_integrity(emb.signer_info, cert, "tst_info", content_digest)
        except SignatureValidationError as exc:
            verdict.fail(*ades_indication(exc.ades_subindication), exc.failure_message)
            return
        except _PARSE_ERRORS as exc:
            verdict.fail(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE, f"the token is malformed: {_short(exc)}")
            return
        if not valid:
            verdict.fail(Indication.TOTAL_FAILED, SubIndication.SIG_CRYPTO_FAILURE,
                         "the document timestamp's signature does not verify with the TSA's public key")

    # ---- signatures

    def _pool(self, emb: EmbeddedPdfSignature) -> tuple[bytes, ...]:
        certificates = [c.chosen.dump() for c in emb.signed_data["certificates"] or () if c.name == "certificate"]
        dss = self.dss()
        if dss is not None:
            certificates.extend(dss.certificates_der)
        return tuple(dict.fromkeys(certificates))

    def signature_report(self, entry: _Entry, doc_timestamps: Sequence[_Entry]) -> SignatureReport:
        if entry.emb is None:
            return _failure(entry.identifier, FORMAT, entry.error or "unreadable")
        return _SignatureCheck(self, entry, doc_timestamps).run()


class _SignatureCheck:
    def __init__(self, document: _Document, entry: _Entry, doc_timestamps: Sequence[_Entry]) -> None:
        assert entry.emb is not None
        self.doc, self.entry, self.emb = document, entry, entry.emb
        self.info: cms.SignerInfo = self.emb.signer_info
        self.algorithm: str = self.emb.md_algorithm
        self.etsi = entry.subfilter == "/ETSI.CAdES.detached"
        self.covering = sorted((t for t in doc_timestamps if t.revision > entry.revision), key=lambda t: t.revision)
        self.verdict = _Verdict()
        self.report = SignatureReport(
            entry.identifier, FORMAT, Indication.INDETERMINATE, digest_algorithm=self.algorithm,
            signature_algorithm=self.info["signature_algorithm"]["algorithm"].native,
            signature_value=self.info["signature"].native, claimed_signing_time=self._claimed_time())

    def _claimed_time(self) -> datetime | None:
        try:
            signed = signing_time(self.info)
        except _PARSE_ERRORS:
            signed = None
        if signed is not None:
            return signed
        try:
            return generic.parse_pdf_date(self.entry.sig_object["/M"], strict=False)
        except _PARSE_ERRORS:
            return None

    def run(self) -> SignatureReport:
        verdict, entry = self.verdict, self.entry
        if entry.structure is not None:
            verdict.fail(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE, entry.structure)
            return _decide(self.report, verdict, "")
        embedded = embedded_values(self.emb.signed_data)
        cert = signer_certificate(self.info, embedded.certificates)
        if cert is None:
            verdict.fail(Indication.INDETERMINATE, SubIndication.NO_SIGNING_CERTIFICATE_FOUND,
                         "the certificate the SignerInfo names is not in the signature")
            return _decide(self.report, verdict, "")
        if (refused := malformed(cert)) is not None:
            verdict.fail(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE, refused)
            return _decide(self.report, verdict, "")
        self.report.signer_certificate = cert.dump()
        self.report.chain = [cert.dump()]
        self.report.scopes = [self.doc._scope(entry, self.algorithm)]
        self._cryptography(cert)
        self.doc._changes(entry, verdict)
        own = self._signature_timestamps(embedded)
        covering = [self.doc._doc_timestamp(t) for t in self.covering]
        has_own = any(t.valid for t in own)
        covering = [TimestampResult("signature" if i == 0 and not has_own else "archive", t.time, t.valid, t.tsa,
                                    t.message, t.token) for i, t in enumerate(covering)]
        self.report.timestamps = own + covering
        poe = (min((t.time for t in own if t.valid and t.time), default=None)
               or min((t.time for t in covering if t.valid and t.time), default=None))
        self.report.best_signature_time = poe
        validation = self._validation_data(embedded)
        chain = check_signer(cert.dump(), validation.certificates_der, self.doc.trust, at=self.doc.at,
                             ocsps=validation.ocsps, crls=validation.crls, poe=poe)
        self.report.chain = list(chain.chain)
        self.report.level = self._level(chain, own, covering)
        if not chain.passed:
            verdict.fail(chain.indication, chain.sub_indication, chain.message)
        else:
            verdict.note(chain.message)
        verdict.note(f"revocation: {chain.revocation}")
        for t in self.report.timestamps:
            verdict.note(t.message)
        if not self.etsi:
            verdict.note(f"a PDF signature ({entry.subfilter}), not a PAdES baseline signature: no level")
        return _decide(self.report, verdict, f"the signature of {self.report.signer_name} is valid")

    def _cryptography(self, cert: x509.Certificate) -> None:
        verdict = self.verdict
        signed_attrs = self.info["signed_attrs"]
        has_attrs = not isinstance(signed_attrs, core.Void)
        if has_attrs:
            try:
                attr = get_signing_cert_attr(signed_attrs)
            except SignatureValidationError as exc:
                verdict.fail(Indication.INDETERMINATE, SubIndication.NO_SIGNING_CERTIFICATE_FOUND, exc.failure_message)
                attr = None
            else:
                if attr is None and self.etsi:
                    verdict.fail(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE,
                                 "no signing-certificate-v2 signed attribute: not a PAdES baseline signature")
                elif attr is not None and not check_ess_certid(cert, attr["certs"][0]):
                    verdict.fail(Indication.INDETERMINATE, SubIndication.NO_SIGNING_CERTIFICATE_FOUND,
                                 "the signing-certificate-v2 attribute names another certificate than the signer's")
        elif self.etsi:
            verdict.fail(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE,
                         "the SignerInfo has no signed attributes, which ETSI.CAdES.detached requires")
        digest = self._signed_digest()
        if digest is None:
            return
        content_type = self.emb.signed_data["encap_content_info"]["content_type"].native
        try:
            intact, valid = validate_sig_integrity(self.info, cert, content_type, digest)
        except SignatureValidationError as exc:
            verdict.fail(*ades_indication(exc.ades_subindication), exc.failure_message)
            return
        except _PARSE_ERRORS as exc:
            verdict.fail(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE,
                         f"the signature cannot be checked: {_short(exc)}")
            return
        if not valid:
            verdict.fail(Indication.TOTAL_FAILED, SubIndication.SIG_CRYPTO_FAILURE,
                         "the signature value does not verify with the signer's public key")
        elif not intact:
            verdict.fail(Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE,
                         "the message-digest attribute is not the digest of the signed bytes (/ByteRange)")
        elif self.algorithm in WEAK_DIGESTS:
            verdict.fail(Indication.INDETERMINATE, SubIndication.CRYPTO_CONSTRAINTS_FAILURE_NO_POE,
                         f"the digest algorithm {self.algorithm} is no longer accepted for signatures")

    def _signed_digest(self) -> bytes | None:
        """What the message-digest must be: the byte range's digest; for adbe.pkcs7.sha1 the digest of the
        enveloped SHA-1 of the byte range (checked here)."""
        encap = self.emb.signed_data["encap_content_info"]
        if self.entry.subfilter != "/adbe.pkcs7.sha1":
            if encap["content"].native is not None:
                self.verdict.fail(Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE,
                                  f"a {self.entry.subfilter} signature is detached, but this CMS envelops content")
                return None
            return self.emb.compute_digest(self.algorithm)
        enveloped = encap["content"].native
        if not isinstance(enveloped, bytes) or enveloped != self.emb.compute_digest("sha1"):
            self.verdict.fail(Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE,
                              "the enveloped SHA-1 digest (adbe.pkcs7.sha1) is not the digest of the signed bytes")
            return None
        return hashlib.new(self.algorithm, enveloped).digest()

    def _signature_timestamps(self, embedded: Embedded) -> list[TimestampResult]:
        value = self.info["signature"].native
        results = []
        for attr in self.info["unsigned_attrs"] or ():
            if attr["type"].dotted != SIGNATURE_TIME_STAMP:
                continue
            for token in attr["values"]:
                der = token.dump()
                results.append(signature_timestamp(der, value, self.doc.trust, self._pool(embedded)))
                try:
                    algorithm, claimed = message_imprint(der)
                    foreign = claimed != hashlib.new(algorithm, value).digest()
                except ValueError:
                    foreign = True
                if foreign:
                    self.verdict.fail(Indication.INDETERMINATE, SubIndication.SIG_CONSTRAINTS_FAILURE,
                                      "a signature timestamp does not belong to this signature: its message imprint "
                                      "is not the digest of the signature value (copied from another signature?)")
        return results

    def _pool(self, embedded: Embedded) -> tuple[bytes, ...]:
        return tuple(dict.fromkeys(embedded.certificates_der + self._dss_certificates()))

    def _dss_certificates(self) -> tuple[bytes, ...]:
        dss = self.doc.dss()
        return () if dss is None else dss.certificates_der

    def _validation_data(self, embedded: Embedded, dss: Embedded | None = None) -> Embedded:
        """The CMS's certificates and revocation values (also adbe-revocationInfoArchival) and those of
        ``dss`` (default: the document's DSS)."""
        certificates = list(embedded.certificates)
        ocsps, crls = list(embedded.ocsps), list(embedded.crls)
        try:
            for archival in find_cms_attribute_iter(self.info["signed_attrs"] or None,
                                                    "adobe_revocation_info_archival"):
                crls.extend(c.dump() for c in archival["crl"] or ())
                ocsps.extend(o.dump() for o in archival["ocsp"] or ())
        except _PARSE_ERRORS:
            pass
        dss = self.doc.dss() if dss is None else dss
        if dss is not None:
            certificates.extend(dss.certificates)
            ocsps.extend(dss.ocsps)
            crls.extend(dss.crls)
        unique = {c.dump(): c for c in certificates}
        return Embedded(tuple(unique.values()), tuple(dict.fromkeys(ocsps)), tuple(dict.fromkeys(crls)))

    def _level(self, chain: ChainResult, own: Sequence[TimestampResult],
               covering: Sequence[TimestampResult]) -> str | None:
        if not self.etsi:
            return None
        if not any(t.valid for t in (*own, *covering)):
            return "B-B"
        dss = self.doc.dss()
        if dss is None or not validation_data_complete(chain.chain, self._with(dss)):
            return "B-T"
        for stamp, result in zip(self.covering, covering):
            at_stamp = self.doc.dss(stamp.revision)
            if result.valid and at_stamp is not None and validation_data_complete(chain.chain, self._with(at_stamp)):
                return "B-LTA"
        return "B-LT"

    def _with(self, dss: Embedded) -> Embedded:
        """``dss`` with the CMS's own certificates and revocation values."""
        return self._validation_data(embedded_values(self.emb.signed_data), dss)


def _decide(report: SignatureReport, verdict: _Verdict, passed: str) -> SignatureReport:
    if verdict.decided is None:
        report.indication, report.sub_indication = Indication.TOTAL_PASSED, None
        report.messages = [passed, *verdict.messages]
    else:
        report.indication, report.sub_indication = verdict.decided
        report.messages = list(verdict.messages)
    return report


def _fields(handler: object) -> dict[str, tuple[str, tuple[object, ...]]]:
    """Each terminal form field by its full name: (its value as text, the digests of its widgets' normal
    appearances)."""
    found: dict[str, tuple[str, tuple[object, ...]]] = {}
    try:
        top = handler.root["/AcroForm"]["/Fields"]  # type: ignore[attr-defined]
    except KeyError:
        return found
    seen: set[object] = set()

    def visit(node: generic.PdfObject, prefix: str, depth: int) -> None:
        ref = node.reference if isinstance(node, generic.IndirectObject) else None
        if depth > 32 or (ref is not None and ref in seen):
            return
        if ref is not None:
            seen.add(ref)
        obj = node.get_object()
        if not isinstance(obj, generic.DictionaryObject):
            return
        part = obj.get("/T")
        name = prefix if part is None else (f"{prefix}.{part}" if prefix else str(part))
        kids = obj.get("/Kids")
        named_kids = [k for k in kids or () if isinstance(k.get_object(), generic.DictionaryObject)
                      and "/T" in k.get_object()]
        if named_kids:
            for kid in named_kids:
                visit(kid, name, depth + 1)
            return
        widgets = [obj] if kids is None else [k.get_object() for k in kids]
        value = obj.get("/V")
        found[name] = (repr(value.get_object() if isinstance(value, generic.IndirectObject) else value),
                       tuple(_appearance(w) for w in widgets if isinstance(w, generic.DictionaryObject)))

    for field_node in top:
        visit(field_node, "", 0)
    return found


def _appearance(widget: generic.DictionaryObject) -> object:
    """A digest of a widget's normal appearance (a stream, or a dictionary of appearance states)."""
    try:
        normal = widget["/AP"]["/N"]
    except KeyError:
        return None
    if isinstance(normal, generic.StreamObject):
        return hashlib.sha256(normal.data).hexdigest()
    if isinstance(normal, generic.DictionaryObject):
        return tuple(sorted((str(state), hashlib.sha256(normal[state].data).hexdigest()
                             if isinstance(normal[state], generic.StreamObject) else None) for state in normal))
    return None


def _gen_time(token: bytes) -> datetime | None:
    try:
        encap = cms.ContentInfo.load(token)["content"]["encap_content_info"]
        return tsp.TSTInfo.load(bytes(encap["content"]))["gen_time"].native
    except _PARSE_ERRORS:
        return None
