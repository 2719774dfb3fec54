"""A :class:`SignOrder` through the format engines: which engine, which packaging, what comes back."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader

from adapters.timestamp.client import TimestampClient
from server.errors import Code, SiegelError
from server.signing.cades import SigningKey, extend_cades, sign_cades
from server.signing.keysource import DigestAlgorithm
from server.signing.levels import Level, Packaging
from server.signing.order import Document, Format, SignOrder
from server.signing.pades import PadesOptions, Placement, extend_pades, sign_pades
from server.signing.xades import extend_xades, sign_xades
from server.xmlsafe import looks_like_xml

if TYPE_CHECKING:
    from server.signing.stamp import AppearanceTemplate

CMS_URI = "urn:ietf:rfc:3369"
PADES_URI = "http://uri.etsi.org/19142/v1.1.1"
XMLDSIG_URI = "urn:ietf:rfc:3275"
ASIC_URI = "http://uri.etsi.org/19162/v1.1.1"
ASIC_MIME = "application/vnd.etsi.asic-e+zip"
VERIFY_PATH = "/portal/verify"  # the verification page a stamp's QR code points to, below a base URL


@dataclass(frozen=True)
class Appearances:
    """The appearance templates of visible PDF signatures, and what their stamps link to."""

    templates: dict[str, AppearanceTemplate]
    default: str
    verify_url: str  # the verification page a stamp's QR code points to


@dataclass(frozen=True)
class Signed:
    """What signing one document (or one container) gives back."""

    name: str  # the document's name (the container's for ASiC-E)
    data: bytes
    with_document: bool  # the document with the signature in it (enveloped XML, ASiC-E), else a signature
    mime_type: str
    signature_type: str  # the DSS SignatureType URI of the format


def cms_mime(packaging: Packaging) -> str:
    """The media type of a CMS signature: detached (.p7s) or enveloping the content (.p7m)."""
    return "application/pkcs7-signature" if packaging is Packaging.DETACHED else \
        "application/pkcs7-mime; smime-type=signed-data"


def sign_document(key: SigningKey, order: SignOrder, document: Document, timestamps: TimestampClient | None,
                  trust_roots: Sequence[bytes], appearances: Callable[[], Appearances]) -> Signed:
    if order.format is Format.CADES:
        data = sign_cades(key, content=document.content, content_digest=document.digest, digest=_digest(order, document),
                          level=order.level, packaging=order.packaging, timestamps=timestamps,
                          trust_roots=trust_roots, properties=order.properties)
        return Signed(document.name, data, False, cms_mime(order.packaging), CMS_URI)
    if order.format is Format.XADES:
        data = sign_xades(key, level=order.level, packaging=order.packaging, document=document.content,
                          document_digest=document.digest, digest=_digest(order, document),
                          document_name=document.name, mime_type=document.mime_type, properties=order.properties,
                          timestamps=timestamps, trust_roots=trust_roots)
        return Signed(document.name, data, order.packaging is Packaging.ENVELOPED, "application/xml", XMLDSIG_URI)
    if order.format is Format.PADES:
        assert document.content is not None  # SignOrder refuses digest-only PDFs
        out = io.BytesIO()
        sign_pades(key, io.BytesIO(document.content), level=order.level, digest=order.digest,
                   options=pades_options(key.chain, order, document.content, appearances), properties=order.properties,
                   timestamps=timestamps, trust_roots=trust_roots, out=out)
        return Signed(document.name, out.getvalue(), True, "application/pdf", PADES_URI)
    raise SiegelError(Code.NOT_SUPPORTED, f"{order.format.value} signatures are not offered yet")


def pades_options(chain: tuple[bytes, ...], order: SignOrder, pdf: bytes,
                  appearances: Callable[[], Appearances]) -> PadesOptions:
    """The engine's options for ``order`` signed by ``chain``'s first certificate: placement, locks, password,
    and the stamp of the chosen template."""
    from server.signing.stamp import (StampFields, branded, choose_template,  # fonts, images: ~18 MB, on first use
                                      stamp_style)

    wanted = order.pdf
    placement = Placement(field=wanted.field, page=wanted.page, box=wanted.box, invisible=wanted.invisible)
    stamp = None
    if not wanted.invisible:
        known = appearances()
        template = choose_template(known.templates, wanted.appearance, default=known.default)
        if wanted.brand is not None and wanted.appearance is None:
            template = branded(template, wanted.brand)
        certificate = x509.load_der_x509_certificate(chain[0])
        place = order.properties.production_place
        fields = StampFields(signer=_common_name(certificate.subject), signed_at=datetime.now(timezone.utc),
                             reason=order.properties.reason, location=place.city if place else None,
                             issuer=_common_name(certificate.issuer), serial=f"{certificate.serial_number:x}",
                             verify_url=known.verify_url if wanted.brand is None
                             else wanted.brand.base_url + VERIFY_PATH)
        stamp = stamp_style(template, fields, pdfa=is_pdfa(pdf))
        placement = replace(placement, default=(template.default_page, template.default_box))
    return PadesOptions(placement=placement, certify=wanted.certify, lock_fields=wanted.lock_fields,
                        password=wanted.password, stamp=stamp)


def is_pdfa(pdf: bytes) -> bool:
    """Whether the PDF claims PDF/A conformance (``pdfaid:part`` in its XMP metadata)."""
    try:
        metadata = PdfFileReader(io.BytesIO(pdf), strict=False).root.get("/Metadata")
        return metadata is not None and b"pdfaid:part" in metadata.get_object().data
    except (PdfError, AttributeError, KeyError):
        return False  # encrypted or odd: the engine reports what is wrong with it


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else name.rfc4514_string()


def _digest(order: SignOrder, document: Document) -> DigestAlgorithm:
    """The order's digest algorithm, or that of a document given as a digest only."""
    return order.digest if document.content is not None else document.digest_algorithm


def sign_asic_order(key: SigningKey, order: SignOrder, timestamps: TimestampClient | None,
                    trust_roots: Sequence[bytes]) -> Signed:
    """One ASiC-E container over all documents of ``order``."""
    from server.signing.asic import sign_asic

    documents = []
    for d in order.documents:
        assert d.content is not None  # SignOrder refuses digest-only documents for ASiC-E
        documents.append((d.name, d.content, d.mime_type or "application/octet-stream"))
    data = sign_asic(key, documents, signature_format=order.container_format.value,  # type: ignore[arg-type]
                     level=order.level, timestamps=timestamps, trust_roots=trust_roots, properties=order.properties)
    return Signed("container.asice", data, True, ASIC_MIME, ASIC_URI)


def extend_signature(data: bytes, level: Level, *, timestamps: TimestampClient | None, trust_roots: Sequence[bytes],
                     detached: Mapping[str, bytes]) -> tuple[bytes, str]:
    """An existing XAdES, CAdES or PAdES signature raised to ``level`` (``detached``: the data it covers, by
    name, which B-LTA hashes), and its SignatureType URI."""
    if data.startswith(b"PK\x03\x04"):
        raise SiegelError(Code.NOT_SUPPORTED, "ASiC-E containers are not raised to a higher level yet")
    if data.startswith(b"%PDF-"):
        out = io.BytesIO()
        extend_pades(io.BytesIO(data), level, timestamps=timestamps, trust_roots=trust_roots, out=out)
        return out.getvalue(), PADES_URI
    if looks_like_xml(data):
        return extend_xades(data, level, timestamps=timestamps, trust_roots=trust_roots,
                            detached_contents=detached), XMLDSIG_URI
    if len(detached) > 1:
        raise SiegelError(Code.BAD_REQUEST, "a CMS signature covers one document; several were given")
    return extend_cades(data, level, timestamps=timestamps, trust_roots=trust_roots,
                        content=next(iter(detached.values()), None)), CMS_URI
