"""What a caller asks to have signed, independent of the transport (DSS, REST, CLI).

The one rule that picks a format where the caller names none (:func:`choose_format`):
an XML document gets an enveloped XAdES signature, a PDF a PAdES signature, anything else (and a
digest alone) a detached CAdES signature. Several documents are signed one by one (a batch), or,
asked for with the ASiC-E format, together in one container.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

from server.errors import SIEGEL_MINOR, Code, SiegelError
from server.signing.keysource import DigestAlgorithm
from server.signing.levels import Level, Packaging, SignatureProperties


class Format(StrEnum):
    XADES = "xades"
    CADES = "cades"
    ASIC = "asic"  # ASiC-E with XAdES (the default) or CAdES inside, see SignOrder.container_format
    PADES = "pades"


@dataclass(frozen=True)
class Document:
    """One input: the content, or (hash-only signing) only its digest."""

    name: str
    content: bytes | None = None
    digest: bytes | None = None  # of the content, with digest_algorithm; set when content is None
    digest_algorithm: DigestAlgorithm = DigestAlgorithm.SHA256
    mime_type: str | None = None
    is_xml: bool = False  # given as XML (DSS Base64XML / InlineXML) or with an XML MIME type

    def __post_init__(self) -> None:
        if (self.content is None) == (self.digest is None):
            raise SiegelError(Code.BAD_REQUEST, f"document {self.name!r}: give its content or its digest, one of both")
        if self.digest is not None and len(self.digest) != self.digest_algorithm.size:
            raise SiegelError(Code.BAD_REQUEST, f"document {self.name!r}: a {self.digest_algorithm.value} digest has "
                                                f"{self.digest_algorithm.size} bytes, this one {len(self.digest)}")

    def digested(self, algorithm: DigestAlgorithm) -> tuple[DigestAlgorithm, bytes]:
        """The content's digest with ``algorithm``; the given digest and its algorithm when only that is here."""
        if self.content is None:
            assert self.digest is not None
            return self.digest_algorithm, self.digest
        return algorithm, hashlib.new(algorithm.value, self.content).digest()


def is_xml_type(mime_type: str | None) -> bool:
    mime = (mime_type or "").split(";")[0].strip().lower()
    return mime.endswith("/xml") or mime.endswith("+xml")


def is_pdf_type(mime_type: str | None) -> bool:
    return (mime_type or "").split(";")[0].strip().lower() == "application/pdf"


def choose_format(document: Document) -> tuple[Format, Packaging]:
    """The format and packaging for a document whose caller named no SignatureType."""
    if document.content is None:
        return Format.CADES, Packaging.DETACHED
    if document.is_xml or is_xml_type(document.mime_type):
        return Format.XADES, Packaging.ENVELOPED
    if is_pdf_type(document.mime_type) or document.content.startswith(b"%PDF-"):
        return Format.PADES, Packaging.ENVELOPED
    return Format.CADES, Packaging.DETACHED


@dataclass(frozen=True)
class StampBrand:
    """A company's look on the default stamp: its logo (a checked PNG, see server.branding.logo) and colour."""

    logo_png: bytes | None
    colour: str  # #rrggbb: the stamp's border
    base_url: str  # the brand's public base URL: a QR code points to its verification page


@dataclass(frozen=True)
class PdfOptions:
    """Where and how a PAdES signature goes: an existing empty field by name, or a page (1-based, -1 the
    last) and a box (x, y, width, height in points), else automatically; its appearance template."""

    field: str | None = None
    page: int | None = None
    box: tuple[float, float, float, float] | None = None
    invisible: bool = False
    appearance: str | None = None  # a template name; None: appearance.default
    certify: bool = False  # a DocMDP certification signature (P=2: form filling and signing stay allowed)
    lock_fields: tuple[str, ...] | None = None  # FieldMDP: () all fields, names these, None none
    password: str | None = None  # of an encrypted PDF
    brand: StampBrand | None = None  # shown on the default stamp (a request naming an appearance gets that one)

    def __post_init__(self) -> None:
        if self.field is not None and (self.page is not None or self.box is not None):
            raise SiegelError(Code.BAD_REQUEST, "give a signature field or a page and box, not both")
        if (self.page is None) != (self.box is None):
            raise SiegelError(Code.BAD_REQUEST, "a position needs both the page and the box (x, y, width, height)")
        if self.box is not None and (self.box[2] <= 0 or self.box[3] <= 0):
            raise SiegelError(Code.BAD_REQUEST, f"box {self.box}: width and height must be positive")
        if self.page == 0:
            raise SiegelError(Code.BAD_REQUEST, "page 0 does not exist: pages count from 1 (-1 is the last)")


@dataclass(frozen=True)
class SignOrder:
    """Sign ``documents`` in ``format`` at ``level``: one signature each, or one ASiC-E over all."""

    format: Format
    level: Level
    packaging: Packaging
    documents: tuple[Document, ...]
    key_name: str | None = None  # a key label the caller may use; None: the caller's own key
    properties: SignatureProperties = field(default_factory=SignatureProperties)
    digest: DigestAlgorithm = DigestAlgorithm.SHA256
    container_format: Format = Format.XADES  # inside an ASiC-E: XADES or CADES
    pdf: PdfOptions = field(default_factory=PdfOptions)

    def __post_init__(self) -> None:
        if not self.documents:
            raise SiegelError(Code.BAD_REQUEST, "nothing to sign: no document and no document hash")
        names = [d.name for d in self.documents]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise SiegelError(Code.BAD_REQUEST, f"two documents have the same name {twice[0]!r}; every document "
                                                "needs its own", SIEGEL_MINOR + "DuplicateDocumentName")
        if self.format is Format.PADES:
            for d in self.documents:
                if d.content is None:
                    raise SiegelError(Code.BAD_REQUEST, f"{d.name!r} is given as a digest only: a PAdES "
                                                        "signature goes into the PDF, which must be here")
        if self.format is Format.ASIC and self.container_format not in (Format.XADES, Format.CADES):
            raise SiegelError(Code.BAD_REQUEST, "an ASiC-E container holds a XAdES or a CAdES signature")
        if self.format is Format.CADES and self.packaging is Packaging.ENVELOPED:
            raise SiegelError(Code.BAD_REQUEST, "a CMS signature is detached or enveloping, never enveloped")
        hashes_only = [d.name for d in self.documents if d.content is None]
        if hashes_only and (self.format is Format.ASIC or self.packaging is not Packaging.DETACHED):
            raise SiegelError(Code.BAD_REQUEST, f"{hashes_only[0]!r} is given as a digest only: only a detached "
                                                "signature can cover a document that is not here")
        if self.format is Format.XADES and self.packaging is Packaging.ENVELOPED:
            for d in self.documents:
                if not (d.is_xml or is_xml_type(d.mime_type)):
                    raise SiegelError(Code.BAD_REQUEST, f"{d.name!r} is not XML: an enveloped XAdES signature "
                                                        "goes inside an XML document")
