"""ASiC-E (EN 319 162-1) verification: the container's structure, then each signature inside.

XAdES signatures (``META-INF/*signatures*.xml``) are verified with the container's files as their
detached data; a CAdES signature (``META-INF/*.p7s``) with the ``ASiCManifest`` that names it, whose
every DataObjectReference digest must match its file. A file that no valid signature covers is
never reported as signed: it is named in the messages as not covered.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
import zlib
from collections.abc import Mapping
from urllib.parse import unquote

from server.errors import Code, SiegelError
from server.validation.cades import verify_cades
from server.validation.model import Indication, SignatureReport, SignedScope, SubIndication, Trust
from server.validation.xades import verify_xml_signatures
from server.xmlsafe import parse_xml

ASIC_E_MIME = b"application/vnd.etsi.asic-e+zip"
ASIC_NS = "http://uri.etsi.org/02918/v1.2.1#"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
MAX_ENTRIES = 10_000
MAX_DEPTH = 256
_DIGESTS = {"http://www.w3.org/2001/04/xmlenc#sha256": "sha256", "http://www.w3.org/2001/04/xmldsig-more#sha384":
            "sha384", "http://www.w3.org/2001/04/xmlenc#sha512": "sha512"}


def is_asic(data: bytes) -> bool:
    """A ZIP whose first entry is ``mimetype`` (how EN 319 162-1 says an ASiC container starts)."""
    return data.startswith(b"PK\x03\x04") and data[30:38] == b"mimetype"


def _entries(data: bytes, max_bytes: int) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES or sum(i.file_size for i in infos) > max_bytes:
            raise SiegelError(Code.REQUEST_TOO_LARGE, f"the container unpacks to more than {max_bytes} bytes "
                                                      f"or {MAX_ENTRIES} files")
        if not infos or infos[0].filename != "mimetype" or infos[0].compress_type != zipfile.ZIP_STORED:
            raise SiegelError(Code.BAD_REQUEST, "not an ASiC container: 'mimetype' is not its first, stored entry")
        return {i.filename: archive.read(i) for i in infos if not i.is_dir()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, ValueError, zlib.error,
            RuntimeError, IndexError) as exc:  # RuntimeError: an encrypted entry; IndexError: a short header
        raise SiegelError(Code.BAD_REQUEST, f"the container is not a readable ZIP: {exc}") from None


def verify_asic(data: bytes, trust: Trust, *, max_bytes: int) -> list[SignatureReport]:
    """A report per signature in the ASiC-E container ``data``; SiegelError for a broken container."""
    entries = _entries(data, max_bytes)
    if entries["mimetype"].strip() != ASIC_E_MIME:
        raise SiegelError(Code.NOT_SUPPORTED, f"ASiC mimetype {entries['mimetype'][:80]!r}: only ASiC-E "
                                              f"({ASIC_E_MIME.decode()}) is verified")
    files = {name: content for name, content in entries.items() if not name.startswith("META-INF/")
             and name != "mimetype"}
    reports: list[SignatureReport] = []
    for name, content in sorted(entries.items()):
        if not name.startswith("META-INF/"):
            continue
        if name.endswith(".xml") and "signatures" in name.rsplit("/", 1)[-1]:
            for report in verify_xml_signatures(content, trust, detached=files, name=name):
                report.format = "ASiC-E/XAdES"
                reports.append(report)
        elif name.endswith(".p7s"):
            reports.extend(_cades(name, content, entries, files, trust))
    if not reports:
        raise SiegelError(Code.BAD_REQUEST, "the ASiC-E container holds no signature (META-INF/signatures*.xml "
                                            "or META-INF/*.p7s)")
    for report in reports:
        signed = {scope.name for scope in report.scopes}
        report.messages.extend(f"{name} in the container is not covered by this signature"
                               for name in sorted(files) if name not in signed)
    return reports


def _manifest_for(signature_name: str, entries: Mapping[str, bytes]) -> tuple[str, bytes] | None:
    for name, content in entries.items():
        if name.startswith("META-INF/") and "ASiCManifest" in name and name.endswith(".xml"):
            root = parse_xml(content, max_depth=MAX_DEPTH)
            ref = root.find(f"{{{ASIC_NS}}}SigReference")
            if ref is not None and unquote(ref.get("URI", "")) == signature_name:
                return name, content
    return None


def _cades(name: str, signature: bytes, entries: Mapping[str, bytes], files: Mapping[str, bytes],
           trust: Trust) -> list[SignatureReport]:
    """A CAdES signature of the container: over its ASiCManifest, whose references must all hold."""
    found = _manifest_for(name, entries)
    if found is None:
        return [SignatureReport(name, "ASiC-E/CAdES", Indication.INDETERMINATE, SubIndication.SIGNED_DATA_NOT_FOUND,
                                [f"no META-INF/ASiCManifest*.xml names {name} in its SigReference"])]
    manifest_name, manifest = found
    reports = verify_cades(signature, trust, content=manifest, name=manifest_name)
    scopes, problems = _manifest_scopes(manifest, files)
    for report in reports:
        report.format = "ASiC-E/CAdES"
        report.id = f"{name}#{report.id}"
        if problems and report.indication is not Indication.TOTAL_FAILED:
            report.indication, report.sub_indication = Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE
            report.messages[:0] = problems
        report.scopes = scopes if report.indication is not Indication.TOTAL_FAILED else []
    return reports


def _manifest_scopes(manifest: bytes, files: Mapping[str, bytes]) -> tuple[list[SignedScope], list[str]]:
    """The files the manifest covers with a matching digest, and what does not match."""
    root = parse_xml(manifest, max_depth=MAX_DEPTH)
    scopes, problems = [], []
    for ref in root.findall(f"{{{ASIC_NS}}}DataObjectReference"):
        uri = unquote(ref.get("URI", ""))  # names are percent-encoded URIs (EN 319 162-1)
        method = ref.find(f"{{{DS_NS}}}DigestMethod")
        algorithm = _DIGESTS.get(method.get("Algorithm", "") if method is not None else "")
        expected = base64.b64decode("".join((ref.findtext(f"{{{DS_NS}}}DigestValue") or "").split()))
        if uri not in files:
            problems.append(f"the manifest names {uri!r}, which is not in the container")
        elif algorithm is None:
            problems.append(f"the manifest digests {uri!r} with an unsupported algorithm")
        elif hashlib.new(algorithm, files[uri]).digest() != expected:
            problems.append(f"{uri!r} does not match its digest in the manifest: it was changed after signing")
        else:
            scopes.append(SignedScope(uri, "FULL", f"file {uri} of the container (via the ASiCManifest)",
                                      algorithm, expected))
    return scopes, problems
