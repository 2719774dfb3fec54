"""PAdES (ETSI EN 319 142-1) baseline signatures B-B, B-T, B-LT and B-LTA on pyHanko's PDF signer.

Hash → sign → assemble, on pyHanko's "interrupted signing": :func:`prepare_pades` opens the PDF as an
incremental update (the input stream is only read), finds or creates the signature field
(:class:`Placement`), writes the signature dictionary, its appearance and a ``/Contents`` placeholder
to ``out``, digests the byte range and builds the CMS signed attributes over that digest
(content-type, message-digest, signing-certificate-v2; commitment-type-indication and
signer-attributes-v2 for what the signer claims; ``/Reason`` and ``/Location`` go into the signature
dictionary, the signing time into ``/M``, as EN 319 142-1 wants it). The digest of the signed
attributes (:attr:`PreparedPades.to_be_signed`) goes to the key source, nothing else.
:func:`assemble_pades` checks the value against the signer's certificate, embeds it with pyHanko's
``ExternalSigner`` (B-T: the signature-time-stamp from our RFC 3161 client through
:class:`~server.signing.cades.ClientTimeStamper`), fills the placeholder, and raises the level with
incremental updates: B-LT a DSS dictionary with the certificates, OCSP responses and CRLs of the
signer's and the TSA's chains (:func:`~server.signing.validation_data.collect_validation_data`,
hard-fail); B-LTA then a document timestamp and a DSS update with its TSA's validation data.
:func:`extend_pades` raises the last signature of any PDF (ours or another producer's) the same way.

Streams in, streams out: the input is read where it lies (pyHanko reads objects on demand and copies
the original revision in chunks) and the output is written and re-read in place, so a big PDF is not
held in memory when both are files. ``out`` must be readable, writable and seekable (a file opened
``w+b``, a ``BytesIO``, a ``SpooledTemporaryFile``).

pyHanko's API is asyncio; these functions run it to completion and belong off the reactor thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from asn1crypto import algos, cms, core, crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.crypt.api import AuthStatus
from pyhanko.pdf_utils.crypt.standard import StandardSecurityHandler
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.rw_common import find_inherited_value_in_tree
from pyhanko.sign.ades.api import CAdESSignedAttrSpec, SignerAttrSpec
from pyhanko.sign.ades.cades_asn1 import CommitmentTypeIndication
from pyhanko.sign.fields import (
    FieldMDPAction,
    FieldMDPSpec,
    MDPPerm,
    SigFieldSpec,
    SigSeedSubFilter,
    enumerate_sig_fields,
)
from pyhanko.sign.general import SigningError, simple_cms_attribute
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_cms import ExternalSigner, PdfCMSSignedAttributes
from pyhanko.sign.signers.pdf_signer import (
    PdfSignatureMetadata,
    PdfSigner,
    PdfTimeStamper,
)
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator.registry import SimpleCertificateStore

from adapters.timestamp.client import TimestampClient
from server.errors import Code, SiegelError
from server.signing.cades import (
    ID_AT_NAME,
    ClientTimeStamper,
    SigningKey,
    _commitment_oid,
    chain_of,
)
from server.signing.keysource import (
    DigestAlgorithm,
    SignatureScheme,
    scheme_of,
    verify_value,
)
from server.signing.levels import Level, SignatureProperties
from server.signing.validation_data import ValidationData, collect_validation_data


def _refresh_attribute_names() -> None:
    """asn1crypto builds its name → OID map of CMS attribute types once, on first use; attributes
    registered after that (pyHanko's commitment-type, signer-attributes-v2, pdf_mac_data, ...) are
    then known by OID only. Add the late ones, so that pyHanko's providers may name them."""
    reverse = cms.CMSAttributeType._reverse_map
    if reverse is not None:
        for oid, name in cms.CMSAttributeType._map.items():
            reverse.setdefault(name, oid)


LEVELS = tuple(Level)  # what this engine produces: every baseline level

#: Where a signature goes when neither a field nor a position is given and no empty field is the
#: signer's: the last page, a box of this size (points) this far from the right and bottom edges of
#: the page's visible area (CropBox, else MediaBox).
DEFAULT_PAGE = -1
DEFAULT_BOX_SIZE = (200.0, 60.0)
DEFAULT_BOX_MARGIN = 36.0
#: Room (DER bytes) kept in ``/Contents`` beyond the signed CMS for the signature-time-stamp that
#: assemble may add: prepare does not know the level yet. Our TSA's tokens are ~1.5–3 KB.
TIMESTAMP_ALLOWANCE = 8192
#: Room (DER bytes) for a document timestamp's token.
DOCUMENT_TIMESTAMP_SIZE = 12288
NEW_FIELD_PREFIX = "Signature"


@dataclass(frozen=True)
class Placement:
    """Where the signature goes: (a) ``field``, an existing empty signature field (fully qualified
    name); (b) ``page`` and/or ``box``, a new field there (page 1-based, -1 the last; box x, y, width,
    height in PDF points; ``invisible`` for a field without a visible widget); (c) neither: the first
    empty signature field named like the signer (its certificate's common name, e-mail address or
    the address's local part), or the only empty field, else ``default`` (an appearance template's
    page and box), else the default position (:data:`DEFAULT_PAGE`, :data:`DEFAULT_BOX_SIZE`,
    :data:`DEFAULT_BOX_MARGIN`)."""

    field: str | None = None
    page: int | None = None
    box: tuple[float, float, float, float] | None = None
    default: tuple[int, tuple[float, float, float, float]] | None = None  # page and box for (c)
    invisible: bool = False


@dataclass(frozen=True)
class PadesOptions:
    placement: Placement = Placement()
    certify: bool = False  # a DocMDP P=2 certification signature (only as the document's first signature)
    lock_fields: tuple[str, ...] | None = None  # FieldMDP: () locks all fields, names lock these, None locks none
    password: str | None = None  # of an encrypted PDF (user or owner password)
    stamp: object | None = None  # a pyHanko stamp style; None: pyHanko's text stamp (signer's name, time)
    field_name: str | None = None  # the name of a new field (placements b and c); default Signature<n>


@dataclass
class PreparedPades:
    """Step 1 done: ``document`` holds the PDF with the signature placeholder; the digest of
    ``signed_attrs`` is what gets signed. Two-step signing keeps :meth:`to_state` and the document."""

    document: BinaryIO  # the prepared PDF (prepare's ``out``)
    byte_range: PreparedByteRangeDigest  # the byte range's digest and where /Contents lies
    signed_attrs: bytes  # DER of the CMS SignedAttributes (a SET)
    digest: DigestAlgorithm
    chain: tuple[bytes, ...]  # the signer's certificate first
    password: str | None = field(default=None, repr=False)  # of an encrypted PDF; never in the state
    mac_handler: Any = field(default=None, repr=False)  # an ISO 32004 MAC-protected PDF's (in-process only)

    @property
    def to_be_signed(self) -> bytes:
        return hashlib.new(self.digest.value, self.signed_attrs).digest()

    @property
    def scheme(self) -> SignatureScheme:
        return scheme_of(self.chain[0])

    def to_state(self) -> dict[str, Any]:
        """A JSON-able form for two-step signing, without the document (keep the prepared PDF beside
        it) and without the password (give it to :meth:`from_state` again). An encrypted PDF with an
        ISO 32004 MAC is signed in one process only: its MAC key is not put into a state."""
        if self.mac_handler is not None:
            raise SiegelError(Code.NOT_SUPPORTED, "a MAC-protected encrypted PDF (ISO 32004) is signed in one "
                                                  "step: its key material does not go into a signing state")
        return {"digest": self.digest.value, "chain": [_b64(c) for c in self.chain],
                "signed_attrs": _b64(self.signed_attrs), "document_digest": _b64(self.byte_range.document_digest),
                "reserved": [self.byte_range.reserved_region_start, self.byte_range.reserved_region_end]}

    @classmethod
    def from_state(cls, state: dict[str, Any], document: BinaryIO, *, password: str | None = None) -> PreparedPades:
        """The prepared signature of :meth:`to_state` over ``document``, the PDF prepare wrote; its byte
        range is digested anew and must be the one the signed attributes name."""
        try:
            digest = DigestAlgorithm(state["digest"])
            chain = tuple(base64.b64decode(c, validate=True) for c in state["chain"])
            signed_attrs = base64.b64decode(state["signed_attrs"], validate=True)
            document_digest = base64.b64decode(state["document_digest"], validate=True)
            start, end = (int(x) for x in state["reserved"])
            attrs = cms.CMSAttributes.load(signed_attrs)
            named = [a["values"][0].native for a in attrs if a["type"].native == "message_digest"]
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise SiegelError(Code.BAD_REQUEST, "the prepared PAdES state is incomplete or damaged") from None
        if not chain:
            raise SiegelError(Code.BAD_REQUEST, "the prepared PAdES state has no certificate")
        if named != [document_digest] or _byte_range_digest(document, start, end, digest) != document_digest:
            raise SiegelError(Code.BAD_REQUEST, "the PDF given is not the one prepared for this signature "
                                                "(its byte range digest differs)")
        return cls(document, PreparedByteRangeDigest(document_digest, start, end), signed_attrs, digest, chain,
                   password)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _byte_range_digest(document: BinaryIO, start: int, end: int, digest: DigestAlgorithm) -> bytes:
    """The digest of ``document`` without its bytes ``start:end`` (the /Contents hex string)."""
    md = hashlib.new(digest.value)
    document.seek(0, 2)
    size = document.tell()
    if not 0 < start < end <= size:
        raise SiegelError(Code.BAD_REQUEST, "the prepared PAdES state does not fit the PDF given")
    for begin, stop in ((0, start), (end, size)):
        document.seek(begin)
        left = stop - begin
        while left:
            chunk = document.read(min(left, 1 << 20))
            if not chunk:
                break
            md.update(chunk)
            left -= len(chunk)
    return md.digest()


# ---------------------------------------------------------------- streams, errors, opening

def _check_output(out: BinaryIO) -> None:
    if not all(getattr(out, name, lambda: False)() for name in ("readable", "writable", "seekable")):
        raise SiegelError(Code.INTERNAL, "the PAdES output must be a readable, writable and seekable stream")


@contextlib.contextmanager
def _pdf_errors(doing: str) -> Iterator[None]:
    """pyHanko's (and a broken file's) exceptions as BAD_REQUEST naming what failed."""
    try:
        yield
    except SigningError as exc:
        raise SiegelError(Code.BAD_REQUEST, f"{doing}: {exc}") from None
    except (PdfError, ValueError, KeyError, TypeError, IndexError, AttributeError, AssertionError) as exc:
        raise SiegelError(Code.BAD_REQUEST, f"{doing}: the PDF is broken or not a PDF "
                                            f"({type(exc).__name__}: {exc})") from None


def _open(stream: BinaryIO, password: str | None) -> IncrementalPdfFileWriter:
    """An incremental writer over ``stream`` (only read until written), decrypted with ``password``."""
    stream.seek(0)
    head = stream.read(1024)
    stream.seek(0)
    if b"%PDF-" not in head:
        raise SiegelError(Code.BAD_REQUEST, "the document is not a PDF (no %PDF- header)")
    with _pdf_errors("the PDF cannot be read"):
        writer = IncrementalPdfFileWriter(stream)
        writer.root  # noqa: B018 - the catalog must be there
        if writer.prev.encrypted:
            handler = writer.prev.security_handler
            if not isinstance(handler, StandardSecurityHandler):
                raise SiegelError(Code.NOT_SUPPORTED, "the PDF is encrypted for certificate holders (public-key "
                                                      "security handler): only password-encrypted PDFs are signed")
            if password is None:
                raise SiegelError(Code.BAD_REQUEST, "the PDF is encrypted: give its password to sign it")
            if writer.encrypt(password).status is AuthStatus.FAILED:
                raise SiegelError(Code.BAD_REQUEST, "the PDF is encrypted: give its password (the one given "
                                                    "does not open it)")
    return writer


def _copy(source: BinaryIO, target: BinaryIO) -> None:
    source.seek(0)
    target.seek(0)
    target.truncate()
    shutil.copyfileobj(source, target, 1 << 20)
    target.flush()


# ---------------------------------------------------------------- placement

def _signer_names(certificate: bytes) -> list[str]:
    """Names a field assigned to this signer may carry: CN, e-mail address and its local part."""
    subject = asn1_x509.Certificate.load(certificate).subject.native
    names = []
    for key in ("common_name", "email_address"):
        values = subject.get(key)
        for value in values if isinstance(values, list) else [values]:
            if value:
                names.append(str(value))
                if key == "email_address":
                    names.append(str(value).split("@")[0])
    return [n.casefold() for n in names]


def _page_index(writer: IncrementalPdfFileWriter, page: int) -> int:
    count = int(writer.root["/Pages"]["/Count"])
    if page == -1 and count:
        return count - 1
    if 1 <= page <= count:
        return page - 1
    raise SiegelError(Code.BAD_REQUEST, f"page {page} does not exist: the PDF has {count} page(s) "
                                        "(pages count from 1, -1 is the last)")


def _visible_area(writer: IncrementalPdfFileWriter, index: int) -> tuple[float, float, float, float]:
    """llx, lly, urx, ury of the page's CropBox clipped to its MediaBox."""
    page = writer.find_page_for_modification(index)[0].get_object()

    def box(key: str) -> tuple[float, float, float, float] | None:
        value = find_inherited_value_in_tree(page, key, "/Parent")
        if value is None:
            return None
        x1, y1, x2, y2 = (float(v) for v in value)
        return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)

    media = box("/MediaBox")
    if media is None:
        raise SiegelError(Code.BAD_REQUEST, f"page {index + 1} has no MediaBox")
    crop = box("/CropBox") or media
    return max(media[0], crop[0]), max(media[1], crop[1]), min(media[2], crop[2]), min(media[3], crop[3])


def _rect(writer: IncrementalPdfFileWriter, index: int, box: tuple[float, float, float, float]
          ) -> tuple[float, float, float, float]:
    x, y, width, height = (float(v) for v in box)
    llx, lly, urx, ury = _visible_area(writer, index)
    eps = 1e-6
    if width <= 0 or height <= 0 or x < llx - eps or y < lly - eps or x + width > urx + eps or y + height > ury + eps:
        raise SiegelError(Code.BAD_REQUEST, f"the box (x {x:g}, y {y:g}, width {width:g}, height {height:g}) is not "
                                            f"inside page {index + 1} (its visible area is {llx:g} {lly:g} "
                                            f"{urx:g} {ury:g})")
    return x, y, x + width, y + height


def _default_rect(writer: IncrementalPdfFileWriter, index: int) -> tuple[float, float, float, float]:
    llx, lly, urx, ury = _visible_area(writer, index)
    width = min(DEFAULT_BOX_SIZE[0], max(urx - llx - 2 * DEFAULT_BOX_MARGIN, 1.0))
    height = min(DEFAULT_BOX_SIZE[1], max(ury - lly - 2 * DEFAULT_BOX_MARGIN, 1.0))
    x1 = max(llx, urx - DEFAULT_BOX_MARGIN - width)
    y1 = min(lly + DEFAULT_BOX_MARGIN, ury - height)
    return x1, y1, x1 + width, y1 + height


def _lock(options: PadesOptions) -> FieldMDPSpec | None:
    if options.lock_fields is None:
        return None
    if not options.lock_fields:
        return FieldMDPSpec(FieldMDPAction.ALL)
    return FieldMDPSpec(FieldMDPAction.INCLUDE, list(options.lock_fields))


@dataclass(frozen=True)
class _Target:
    field_name: str
    new_field: SigFieldSpec | None  # None: an existing field


def _target(writer: IncrementalPdfFileWriter, certificate: bytes, options: PadesOptions) -> _Target:
    placement = options.placement
    fields = [(name, value is not None, ref) for name, value, ref in enumerate_sig_fields(writer)]
    empty = {name: ref for name, filled, ref in fields if not filled}
    lock = _lock(options)
    if placement.field is not None:
        if placement.page is not None or placement.box is not None:
            raise SiegelError(Code.BAD_REQUEST, "give either a signature field or a page and box, not both")
        if any(name == placement.field and filled for name, filled, _ in fields):
            raise SiegelError(Code.BAD_REQUEST, f"the signature field {placement.field!r} is signed already")
        if placement.field not in empty:
            known = ", ".join(empty) or "none"
            raise SiegelError(Code.BAD_REQUEST, f"the PDF has no signature field {placement.field!r} "
                                                f"(empty signature fields: {known})")
        return _existing(writer, placement.field, empty[placement.field], lock)
    if placement.page is None and placement.box is None and not placement.invisible:
        names = _signer_names(certificate)
        for name, ref in empty.items():
            if name.casefold() in names or name.rpartition(".")[2].casefold() in names:
                return _existing(writer, name, ref, lock)
        if len(empty) == 1:
            name = next(iter(empty))
            return _existing(writer, name, empty[name], lock)
    automatic = placement.page is None and placement.box is None and placement.default is not None
    page, box = placement.default if automatic and placement.default else (placement.page, placement.box)
    index = _page_index(writer, DEFAULT_PAGE if page is None else page)
    if placement.invisible:
        rect = None
    elif box is not None:
        rect = _rect(writer, index, box)
    else:
        rect = _default_rect(writer, index)
    taken = {name for name, _, _ in fields}
    name = options.field_name or next(f"{NEW_FIELD_PREFIX}{n}" for n in range(1, len(taken) + 2)
                                      if f"{NEW_FIELD_PREFIX}{n}" not in taken)
    if name in taken:
        raise SiegelError(Code.BAD_REQUEST, f"the PDF has a signature field {name!r} already: place the "
                                            "signature into it by field, or name the new field differently")
    return _Target(name, SigFieldSpec(name, on_page=index, box=rect, field_mdp_spec=lock))  # type: ignore[arg-type]


def _existing(writer: IncrementalPdfFileWriter, name: str, ref: generic.IndirectObject,
              lock: FieldMDPSpec | None) -> _Target:
    """An existing empty field; a lock asked for goes into its /Lock dictionary (which pyHanko turns
    into the signature's FieldMDP reference)."""
    if lock is not None:
        sig_field = ref.get_object()
        sig_field[generic.pdf_name("/Lock")] = writer.add_object(lock.as_sig_field_lock())
        writer.mark_update(ref)
    return _Target(name, None)


# ---------------------------------------------------------------- step 1: prepare

def _certificates(chain: tuple[bytes, ...]) -> list[asn1_x509.Certificate]:
    if not chain:
        raise SiegelError(Code.KEY_NOT_FOUND, "the key has no certificate to sign with")
    return [asn1_x509.Certificate.load(der) for der in chain]


def _signer(chain: tuple[bytes, ...], digest: DigestAlgorithm, value: bytes | None) -> ExternalSigner:
    """pyHanko's CMS builder for this chain with a given signature value (None: a placeholder as long
    as the key's longest value, for pyHanko's size estimate)."""
    certs = _certificates(chain)
    ecdsa = scheme_of(chain[0]) is SignatureScheme.ECDSA
    mechanism = algos.SignedDigestAlgorithm({"algorithm": f"{digest.value}_{'ecdsa' if ecdsa else 'rsa'}"})
    placeholder = (certs[0].public_key.bit_size + 7) // 8
    size = 2 * placeholder + 9 if ecdsa else placeholder
    return ExternalSigner(certs[0], SimpleCertificateStore.from_certs(certs[1:]),
                          signature_value=value if value is not None else size, signature_mechanism=mechanism,
                          embed_roots=False)


def _cades_attributes(properties: SignatureProperties) -> CAdESSignedAttrSpec | None:
    """commitment-type-indication and signer-attributes-v2 (the claimed role) for what the signer claims."""
    commitment = None
    if properties.commitment_type:
        commitment = CommitmentTypeIndication({"commitment_type_id": _commitment_oid(properties.commitment_type)})
    signer_attributes = None
    if properties.claimed_role:
        role = cms.AttCertAttribute({"type": ID_AT_NAME, "values": [core.UTF8String(properties.claimed_role)]})
        signer_attributes = SignerAttrSpec(claimed_attrs=[role], certified_attrs=[])
    if commitment is None and signer_attributes is None:
        return None
    return CAdESSignedAttrSpec(commitment_type=commitment, signer_attributes=signer_attributes)


def prepare_pades(pdf: BinaryIO, chain: tuple[bytes, ...], *, options: PadesOptions = PadesOptions(),
                  properties: SignatureProperties | None = None, digest: DigestAlgorithm = DigestAlgorithm.SHA256,
                  out: BinaryIO) -> PreparedPades:
    """Step 1: ``pdf`` with the new signature field or the chosen one, the signature dictionary
    (``/Reason``, ``/Location``, ``/M``; DocMDP for a certification, FieldMDP for a lock), its appearance
    and a ``/Contents`` placeholder, written to ``out`` as an incremental update; the signed attributes
    over the byte range's digest."""
    _check_output(out)
    _refresh_attribute_names()
    properties = properties or SignatureProperties()
    cades_spec = _cades_attributes(properties)
    signer = _signer(chain, digest, None)
    if out is pdf:
        raise SiegelError(Code.INTERNAL, "prepare_pades writes a new stream: the input stays as it is")
    writer = _open(pdf, options.password)
    with _pdf_errors("the PDF's pages or form fields cannot be read"):
        target = _target(writer, chain[0], options)
    place = properties.production_place
    meta = PdfSignatureMetadata(
        field_name=target.field_name, md_algorithm=digest.value, reason=properties.reason,
        location=place.city if place is not None else None, certify=options.certify,
        docmdp_permissions=MDPPerm.FILL_FORMS, subfilter=SigSeedSubFilter.PADES, cades_signed_attr_spec=cades_spec)
    pdf_signer = PdfSigner(meta, signer, stamp_style=options.stamp,  # type: ignore[arg-type]
                           new_field_spec=target.new_field)
    with _pdf_errors("the PDF cannot be prepared for signing"):
        try:
            session = pdf_signer.init_signing_session(writer, existing_fields_only=target.new_field is None)
        except SigningError as exc:
            if "Certification signatures must be the first" in str(exc):
                raise SiegelError(Code.BAD_REQUEST, "a certification signature must be the first signature of "
                                                    "the PDF: this one is signed already") from None
            if "forbids all changes" in str(exc):
                raise SiegelError(Code.BAD_REQUEST, "the PDF's certification signature forbids any change, "
                                                    "a further signature included") from None
            raise
        estimate = asyncio.run(session.estimate_signature_container_size(None, tight=True))
        tbs = session.prepare_tbs_document(validation_info=None, bytes_reserved=estimate + 2 * TIMESTAMP_ALLOWANCE)
        out.seek(0)
        out.truncate()
        byte_range, _ = tbs.digest_tbs_document(output=out)
        out.flush()
        attrs = asyncio.run(signer.signed_attrs(
            byte_range.document_digest, digest.value,
            attr_settings=PdfCMSSignedAttributes(signing_time=session.system_time, cades_signed_attrs=cades_spec),
            use_pades=True, is_pdf_sig=True))
    handler = writer.security_handler
    mac = writer._init_mac_handler(digest.value) if handler is not None and handler.pdf_mac_enabled else None
    return PreparedPades(out, byte_range, bytes(attrs.dump()), digest, chain, options.password, mac)


# ---------------------------------------------------------------- step 3: assemble

def _check_level(level: Level, timestamps: TimestampClient | None, trust_roots: Sequence[bytes]) -> None:
    if level.at_least(Level.B_T) and timestamps is None:
        raise SiegelError(Code.CONFIG, f"{level} needs a time-stamping authority (setting tsa.clients)")
    if level.at_least(Level.B_LT) and not trust_roots:
        raise SiegelError(Code.CONFIG, f"{level} needs trust anchors to prove the signer's and the TSA's "
                                       "certificates valid")


def check_signature_value(prepared: PreparedPades, value: bytes) -> None:
    """The value must be the signer certificate's signature over the prepared signed attributes."""
    if not verify_value(prepared.chain[0], prepared.signed_attrs, value, prepared.digest):
        raise SiegelError(Code.BAD_REQUEST, "the signature value does not verify with the signer's certificate "
                                            "over the prepared attributes")


def assemble_pades(prepared: PreparedPades, value: bytes, *, level: Level = Level.B_B,
                   timestamps: TimestampClient | None = None, trust_roots: Sequence[bytes] = (),
                   out: BinaryIO) -> None:
    """Step 3: the prepared PDF with the CMS (the checked ``value``; B-T+ its signature-time-stamp) in
    ``/Contents``, raised to ``level``, in ``out`` (which may be the prepared document itself)."""
    _check_level(level, timestamps, trust_roots)
    _check_output(out)
    _refresh_attribute_names()
    check_signature_value(prepared, value)
    if out is not prepared.document:
        _copy(prepared.document, out)
    stamper = ClientTimeStamper(timestamps) if timestamps is not None and level.at_least(Level.B_T) else None
    signed = asyncio.run(_signer(prepared.chain, prepared.digest, value).async_sign_prescribed_attributes(
        prepared.digest.value, cms.CMSAttributes.load(prepared.signed_attrs), timestamper=stamper))
    if prepared.mac_handler is not None:
        _add_mac(prepared.mac_handler, prepared.digest, signed["content"], prepared.byte_range.document_digest)
    try:
        contents = prepared.byte_range.fill_with_cms(out, signed)
    except SigningError as exc:
        raise SiegelError(Code.INTERNAL, f"the signature does not fit the space prepared for it: {exc}") from None
    out.flush()
    if level.at_least(Level.B_LT):
        _add_dss(out, _signature_validation_data(signed["content"], trust_roots), contents, prepared.password)
    if level is Level.B_LTA:
        assert timestamps is not None
        _document_timestamp(out, timestamps, prepared.digest, trust_roots, prepared.password)


def _add_mac(handler: Any, digest: DigestAlgorithm, signed_data: cms.SignedData, document_digest: bytes) -> None:
    """ISO 32004: the MAC token over the document and signature digests as an unsigned attribute (as
    pyHanko's ``add_mac_to_external_cms`` does, with the handler kept from prepare)."""
    signer_info = signed_data["signer_infos"][0]
    token = handler.build_pdfmac_token(document_digest=document_digest, signature_digest=hashlib.new(
        digest.value, signer_info["signature"].native).digest())
    unsigned = signer_info["unsigned_attrs"]
    attributes = [] if isinstance(unsigned, core.Void) else list(unsigned)
    signer_info["unsigned_attrs"] = cms.CMSAttributes(attributes + [simple_cms_attribute("1.0.32004.1.2", token)])


# ---------------------------------------------------------------- levels: DSS and document timestamps

def _cms_certificates(signed_data: cms.SignedData) -> list[bytes]:
    certificates = signed_data["certificates"]
    if isinstance(certificates, core.Void):
        return []
    return [c.chosen.dump() for c in certificates if c.name == "certificate"]


def _signature_validation_data(signed_data: cms.SignedData, trust_roots: Sequence[bytes]) -> ValidationData:
    """What proves the signer's certificate, and every TSA certificate of its signature-time-stamps, valid now."""
    certificates = _cms_certificates(signed_data)
    data = ValidationData((), (), ())
    for signer_info in signed_data["signer_infos"]:
        data += collect_validation_data(chain_of(signer_info, certificates), trust_roots)
        unsigned = signer_info["unsigned_attrs"]
        for attribute in [] if isinstance(unsigned, core.Void) else unsigned:
            if attribute["type"].native != "signature_time_stamp_token":
                continue
            for token in attribute["values"]:
                token_data = token["content"]
                chain = chain_of(token_data["signer_infos"][0], _cms_certificates(token_data) + certificates)
                data += collect_validation_data(chain, trust_roots)
    return data


def _add_dss(stream: BinaryIO, data: ValidationData, contents: bytes | None, password: str | None) -> None:
    """An incremental update of ``stream`` whose DSS holds ``data`` beside what it held (a VRI entry for
    the signature whose ``/Contents`` bytes are ``contents``)."""
    with _pdf_errors("the DSS cannot be written"):
        writer = _open(stream, password)
        DocumentSecurityStore.supply_dss_in_writer(
            writer, contents, certs=[asn1_x509.Certificate.load(c) for c in data.certificates],
            ocsps=[asn1_ocsp.OCSPResponse.load(o) for o in data.ocsps],
            crls=[crl.CertificateList.load(c) for c in data.crls])
        writer.write_in_place()
    stream.flush()


def _document_timestamp(stream: BinaryIO, timestamps: TimestampClient, digest: DigestAlgorithm,
                        trust_roots: Sequence[bytes], password: str | None) -> None:
    """A document timestamp over ``stream`` (incremental update); with ``trust_roots``, then a DSS
    update with its TSA's validation data."""
    with _pdf_errors("the document timestamp cannot be added"):
        writer = _open(stream, password)
        asyncio.run(PdfTimeStamper(ClientTimeStamper(timestamps)).async_timestamp_pdf(
            writer, digest.value, bytes_reserved=2 * DOCUMENT_TIMESTAMP_SIZE, in_place=True))
    stream.flush()
    if trust_roots:
        with _pdf_errors("the document timestamp cannot be read back"):
            stamp = _reader(stream, password).embedded_timestamp_signatures[-1]
            token_data, contents = stamp.signed_data, stamp.pkcs7_content
        chain = chain_of(token_data["signer_infos"][0], _cms_certificates(token_data))
        _add_dss(stream, collect_validation_data(chain, trust_roots), contents, password)


def _reader(stream: BinaryIO, password: str | None) -> PdfFileReader:
    stream.seek(0)
    reader = PdfFileReader(stream)
    if reader.encrypted and (password is None or reader.decrypt(password).status is AuthStatus.FAILED):
        raise SiegelError(Code.BAD_REQUEST, "the PDF is encrypted: give its password")
    return reader


def extend_pades(pdf: BinaryIO, level: Level, *, timestamps: TimestampClient | None, trust_roots: Sequence[bytes],
                 out: BinaryIO, password: str | None = None) -> None:
    """``pdf`` (signed by us or another producer) with its last signature raised to ``level``, in ``out``:
    B-T a document timestamp where the signature has no signature-time-stamp and no document timestamp
    follows it; B-LT a DSS update with the validation data of the signer, its TSAs and every document
    timestamp after it; B-LTA then a new document timestamp and its TSA's validation data (on a
    B-LTA PDF: the renewal of its archive timestamp chain)."""
    _check_level(level, timestamps, trust_roots)
    _check_output(out)
    if out is pdf:
        raise SiegelError(Code.INTERNAL, "extend_pades writes a new stream, not its input")
    _open(pdf, password)  # a PDF, and the password opens it
    _copy(pdf, out)
    with _pdf_errors("the PDF's signatures cannot be read"):
        signatures = _reader(out, password).embedded_signatures
        regular = [i for i, s in enumerate(signatures) if s.sig_object_type == "/Sig"]
        if not regular:
            raise SiegelError(Code.BAD_REQUEST, "the PDF has no signature to extend")
        last = signatures[regular[-1]]
        later_stamps = signatures[regular[-1] + 1:]
        unsigned = last.signer_info["unsigned_attrs"]
        has_signature_timestamp = not isinstance(unsigned, core.Void) and any(
            a["type"].native == "signature_time_stamp_token" for a in unsigned)
        signed_data, contents = last.signed_data, last.pkcs7_content
        stamps = [(s.signed_data, s.pkcs7_content) for s in later_stamps]
    digest = _digest_of(signed_data)
    if level is Level.B_B:
        return
    if not has_signature_timestamp and not stamps:
        assert timestamps is not None
        _document_timestamp(out, timestamps, digest, (), password)
        with _pdf_errors("the document timestamp cannot be read back"):
            stamp = _reader(out, password).embedded_timestamp_signatures[-1]
            stamps = [(stamp.signed_data, stamp.pkcs7_content)]
    if level.at_least(Level.B_LT):
        _add_dss(out, _signature_validation_data(signed_data, trust_roots), contents, password)
        for stamp_data, stamp_contents in stamps:
            chain = chain_of(stamp_data["signer_infos"][0], _cms_certificates(stamp_data))
            _add_dss(out, collect_validation_data(chain, trust_roots), stamp_contents, password)
    if level is Level.B_LTA:
        assert timestamps is not None
        _document_timestamp(out, timestamps, digest, trust_roots, password)


def _digest_of(signed_data: cms.SignedData) -> DigestAlgorithm:
    """The signer's digest algorithm for the timestamps; SHA-256 when it used one we do not offer."""
    try:
        return DigestAlgorithm(signed_data["signer_infos"][0]["digest_algorithm"]["algorithm"].native)
    except ValueError:
        return DigestAlgorithm.SHA256


# ---------------------------------------------------------------- all three steps

def sign_pades(key: SigningKey, pdf: BinaryIO, *, level: Level = Level.B_B, options: PadesOptions = PadesOptions(),
               properties: SignatureProperties | None = None, digest: DigestAlgorithm = DigestAlgorithm.SHA256,
               timestamps: TimestampClient | None = None, trust_roots: Sequence[bytes] = (),
               out: BinaryIO) -> None:
    """``pdf`` signed with ``key`` at ``level`` into ``out``: prepare, the key source signs the digest
    of the signed attributes (nothing else leaves), assemble in place."""
    _check_level(level, timestamps, trust_roots)
    prepared = prepare_pades(pdf, key.chain, options=options, properties=properties, digest=digest, out=out)
    value = key.source.sign_digest(key.label, prepared.to_be_signed, digest, prepared.scheme)
    assemble_pades(prepared, value, level=level, timestamps=timestamps, trust_roots=trust_roots, out=out)
