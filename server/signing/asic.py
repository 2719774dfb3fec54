"""ASiC-E containers (ETSI EN 319 162-1): the documents and one signature over all of them, in a ZIP.

The ZIP begins with ``mimetype`` (stored, no extra field) naming ``application/vnd.etsi.asic-e+zip``.
With CAdES, ``META-INF/ASiCManifest.xml`` names every document with its digest and the signature file;
a detached CAdES over the manifest is ``META-INF/signature.p7s``. With XAdES, ``META-INF/signatures.xml``
(asic:XAdESSignatures) holds one ds:Signature with a Reference per document and no manifest; the XAdES
engine builds it inside asic:XAdESSignatures (:func:`~server.signing.xades.prepare_xades_asic`), since
inclusive C14N of SignedInfo and SignedProperties covers the namespaces in scope. Either way hash →
sign → assemble: :func:`prepare_asic`, a key source, :func:`assemble_asic`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import posixpath
import time
import urllib.parse
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

from lxml import etree

from adapters.timestamp.client import TimestampClient
from server.errors import Code, SiegelError
from server.signing.cades import (
    Prepared,
    SigningKey,
    assemble_cades,
    extend_cades,
    prepare_cades,
)
from server.signing.keysource import DigestAlgorithm, SignatureScheme
from server.signing.levels import Level, SignatureProperties
from server.signing.xades import (
    ASIC,
    DIGEST_URIS,
    DS,
    PreparedXades,
    assemble_xades,
    prepare_xades_asic,
)

MIMETYPE = "application/vnd.etsi.asic-e+zip"
MANIFEST = "META-INF/ASiCManifest.xml"
CADES_SIGNATURE = "META-INF/signature.p7s"
CADES_SIGNATURE_MIME = "application/pkcs7-signature"
XADES_SIGNATURES = "META-INF/signatures.xml"

Document: TypeAlias = tuple[str, bytes, str]  # name in the container, content, MIME type
SignatureFormat: TypeAlias = Literal["xades", "cades"]


@dataclass(frozen=True)
class PreparedAsic:
    """Step 1 done: for CAdES the manifest and the signed attributes over it, for XAdES the
    signatures.xml with its SignedInfo over the documents."""

    documents: tuple[Document, ...]
    signature: Prepared | PreparedXades
    manifest: bytes | None = None  # META-INF/ASiCManifest.xml, CAdES only

    @property
    def to_be_signed(self) -> bytes:
        return self.signature.to_be_signed

    @property
    def scheme(self) -> SignatureScheme:
        return self.signature.scheme


def check_names(documents: Sequence[Document]) -> None:
    """Each name a safe relative ZIP path, outside META-INF, once (also ignoring case, as Windows unpacks)
    and no file where another name needs a folder (SiegelError BAD_REQUEST otherwise)."""
    if not documents:
        raise SiegelError(Code.BAD_REQUEST, "an ASiC-E container holds at least one document")
    seen: set[str] = set()
    for name, _, _ in documents:
        problem = _name_problem(name)
        if problem:
            raise SiegelError(Code.BAD_REQUEST, f"document name {name!r} cannot be used in the container: {problem}")
        if name.casefold() in seen:
            raise SiegelError(Code.BAD_REQUEST, f"document name {name!r} occurs twice")
        seen.add(name.casefold())
    folders = {folder for name in seen for folder in _folders(name)}
    clash = sorted(seen & folders)
    if clash:
        raise SiegelError(Code.BAD_REQUEST, f"document name {clash[0]!r} is also a folder of another document")


def _folders(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _name_problem(name: str) -> str | None:
    if not name or name.endswith("/"):
        return "a file name is needed"
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in name):
        return "control characters and backslashes are not allowed"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "the path must be relative"
    if any(part in ("", ".", "..") for part in name.split("/")) or posixpath.normpath(name) != name:
        return "empty, '.' and '..' path segments are not allowed"
    if name.split("/")[0].upper() == "META-INF" or name == "mimetype":
        return "META-INF/ and mimetype belong to the container"
    return None


def asic_manifest(documents: Sequence[Document], digest: DigestAlgorithm) -> bytes:
    """META-INF/ASiCManifest.xml: the CAdES signature file and every document with its digest."""
    root = etree.Element(f"{{{ASIC}}}ASiCManifest", nsmap={"asic": ASIC, "ds": DS})
    etree.SubElement(root, f"{{{ASIC}}}SigReference", URI=CADES_SIGNATURE, MimeType=CADES_SIGNATURE_MIME)
    for name, content, mime_type in documents:
        reference = etree.SubElement(root, f"{{{ASIC}}}DataObjectReference", URI=urllib.parse.quote(name),
                                     MimeType=mime_type)
        etree.SubElement(reference, f"{{{DS}}}DigestMethod", Algorithm=DIGEST_URIS[digest])
        etree.SubElement(reference, f"{{{DS}}}DigestValue").text = \
            base64.b64encode(hashlib.new(digest.value, content).digest()).decode("ascii")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)


def prepare_asic(chain: tuple[bytes, ...], documents: Sequence[Document], *, signature_format: SignatureFormat,
                 digest: DigestAlgorithm = DigestAlgorithm.SHA256,
                 properties: SignatureProperties | None = None) -> PreparedAsic:
    """Step 1: for CAdES the manifest over ``documents`` and the signed attributes (with the signer's
    ``properties``) over it; for XAdES the signatures.xml with a reference to each document."""
    check_names(documents)
    if signature_format not in get_args(SignatureFormat):
        raise SiegelError(Code.BAD_REQUEST, f"an ASiC-E signature is XAdES or CAdES, not {signature_format!r}")
    if signature_format == "xades":
        digests = [(name, hashlib.new(digest.value, content).digest(), mime) for name, content, mime in documents]
        return PreparedAsic(tuple(documents), prepare_xades_asic(chain, digests, digest=digest, properties=properties))
    manifest = asic_manifest(documents, digest)
    return PreparedAsic(tuple(documents),
                        prepare_cades(chain, hashlib.new(digest.value, manifest).digest(), digest, properties), manifest)


def assemble_asic(prepared: PreparedAsic, value: bytes, *, level: Level = Level.B_B,
                  timestamps: TimestampClient | None = None, trust_roots: Sequence[bytes] = ()) -> bytes:
    """Step 3: the container with the signature, at ``level``: META-INF/signatures.xml (XAdES), or the
    manifest and the detached CAdES over it."""
    if isinstance(prepared.signature, PreparedXades):
        signatures = assemble_xades(prepared.signature, value, level=level, timestamps=timestamps,
                                    trust_roots=trust_roots,
                                    detached_contents={name: content for name, content, _ in prepared.documents})
        return _container(prepared.documents, ((XADES_SIGNATURES, signatures),))
    assert prepared.manifest is not None
    signature = assemble_cades(prepared.signature, value, level=Level.B_T if level.at_least(Level.B_T) else level,
                               timestamps=timestamps)
    if level.at_least(Level.B_LT):
        signature = extend_cades(signature, level, timestamps=timestamps, trust_roots=trust_roots,
                                 content=prepared.manifest)
    return _container(prepared.documents, ((MANIFEST, prepared.manifest), (CADES_SIGNATURE, signature)))


def sign_asic(key: SigningKey, documents: Sequence[Document], *, signature_format: SignatureFormat,
              level: Level, timestamps: TimestampClient | None = None, trust_roots: Sequence[bytes] = (),
              properties: SignatureProperties | None = None,
              digest: DigestAlgorithm = DigestAlgorithm.SHA256) -> bytes:
    """An ASiC-E container over ``documents`` (name, content, MIME type) signed with ``key`` in XAdES or
    CAdES: prepare, sign in the key source, assemble."""
    prepared = prepare_asic(key.chain, documents, signature_format=signature_format, digest=digest,
                            properties=properties)
    value = key.source.sign_digest(key.label, prepared.to_be_signed, digest, prepared.scheme)
    return assemble_asic(prepared, value, level=level, timestamps=timestamps, trust_roots=trust_roots)


def _container(documents: Sequence[Document], meta: Sequence[tuple[str, bytes]]) -> bytes:
    """The ZIP: ``mimetype`` first, stored and without extra field (EN 319 162-1 A.1), then the documents
    and the META-INF files, deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        stamp = time.gmtime()[:6]
        archive.writestr(zipfile.ZipInfo("mimetype", stamp), MIMETYPE, compress_type=zipfile.ZIP_STORED)
        for name, content in [(name, content) for name, content, _ in documents] + list(meta):
            archive.writestr(zipfile.ZipInfo(name, stamp), content, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()
