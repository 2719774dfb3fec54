"""Two-step signing in every format, for keys outside Siegel (a card, a browser, a remote service).

:func:`prepare_order` runs an order through the engine's prepare step for the caller's certificate
chain and keeps what assembling needs as a JSON-able state (the engines' ``to_state``; the prepared
PDF or XML and the ASiC-E documents travel in it too); :func:`complete_order` reads it back, checks
the value against the signer's certificate and assembles. Formats and what they sign:

- CAdES: detached (the document or its digest) or enveloping (the document), B-B to B-LTA (a B-LTA covers the
  document: its archive timestamp is made when assembling, so the document travels in the state).
- XAdES: detached (the document or its digest), enveloping or enveloped (the document).
- PAdES: the PDF, with the order's placement and appearance (an ISO 32004 MAC-protected PDF only in one step).
- ASiC-E: one XAdES or CAdES signature over all documents of the order.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.timestamp.client import TimestampClient
from server.errors import Code, SiegelError
from server.signing import asic, cades, pades, xades
from server.signing.engines import (ASIC_MIME, ASIC_URI, CMS_URI, PADES_URI, XMLDSIG_URI, Appearances, Signed,
                                    cms_mime, pades_options)
from server.signing.keysource import DigestAlgorithm, SignatureScheme
from server.signing.levels import Level, Packaging
from server.signing.order import Format, SignOrder

@dataclass(frozen=True)
class PreparedOrder:
    """What the caller's key signs (``to_be_signed``, a digest with ``digest``) and the state to complete with."""

    to_be_signed: bytes
    digest: DigestAlgorithm
    scheme: SignatureScheme
    state: dict[str, Any]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(state: dict[str, Any], key: str) -> bytes:
    try:
        return base64.b64decode(state[key], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise SiegelError(Code.BAD_REQUEST, f"the prepared signature's state lacks {key!r} or it is damaged") from None


def _single(order: SignOrder) -> Any:
    if len(order.documents) != 1:
        raise SiegelError(Code.BAD_REQUEST, f"two-step {order.format.value} signs one document (ASiC-E: several in "
                                            f"one container), not {len(order.documents)}")
    return order.documents[0]


def prepare_order(chain: tuple[bytes, ...], order: SignOrder, appearances: Callable[[], Appearances]) -> PreparedOrder:
    """Step 1 of ``order`` for the signer's ``chain``; SiegelError for what two-step signing does not offer."""
    if order.format is Format.CADES:
        document = _single(order)
        if document.content is None and order.level is Level.B_LTA:
            raise SiegelError(Code.NOT_SUPPORTED, "CAdES B-LTA over a digest alone is not offered: the archive "
                                                  "timestamp covers the signed content itself; send the document")
        algorithm, content_digest = document.digested(order.digest)
        prepared = cades.prepare_cades(chain, content_digest, algorithm, order.properties)
        cades_state = {"format": "cades", "cades": prepared.to_state(), "name": document.name,
                       "packaging": order.packaging.value}
        if order.packaging is Packaging.ENVELOPING or order.level is Level.B_LTA:
            assert document.content is not None  # SignOrder refuses enveloping a digest
            cades_state["content"] = _b64(document.content)
        return PreparedOrder(prepared.to_be_signed, algorithm, prepared.scheme, cades_state)
    if order.format is Format.XADES:
        document = _single(order)
        algorithm = order.digest if document.content is not None else document.digest_algorithm
        keep = order.packaging is Packaging.DETACHED and order.level is Level.B_LTA  # its archive timestamp
        if keep and document.content is None:
            raise SiegelError(Code.NOT_SUPPORTED, "a detached XAdES B-LTA covers the document itself: send it, "
                                                  "not its digest")
        prepared_xades = xades.prepare_xades(chain, packaging=order.packaging, document=document.content,
                                             document_digest=document.digest, digest=algorithm,
                                             document_name=document.name, mime_type=document.mime_type,
                                             properties=order.properties)
        state = {"format": "xades", "xades": prepared_xades.to_state(), "name": document.name,
                 "enveloped": order.packaging is Packaging.ENVELOPED}
        if keep:
            state["detached"] = _b64(document.content)
        return PreparedOrder(prepared_xades.to_be_signed, algorithm, prepared_xades.scheme, state)
    if order.format is Format.PADES:
        document = _single(order)
        assert document.content is not None  # SignOrder refuses digest-only PDFs
        out = io.BytesIO()
        prepared_pades = pades.prepare_pades(io.BytesIO(document.content), chain,
                                             options=pades_options(chain, order, document.content, appearances),
                                             properties=order.properties, digest=order.digest, out=out)
        return PreparedOrder(prepared_pades.to_be_signed, order.digest, prepared_pades.scheme,
                             {"format": "pades", "pades": prepared_pades.to_state(), "pdf": _b64(out.getvalue()),
                              "name": document.name})
    if order.format is Format.ASIC:
        documents = []
        for d in order.documents:
            assert d.content is not None  # SignOrder refuses digest-only documents for ASiC-E
            documents.append((d.name, d.content, d.mime_type or "application/octet-stream"))
        prepared_asic = asic.prepare_asic(chain, documents, signature_format=order.container_format.value,  # type: ignore[arg-type]
                                          digest=order.digest, properties=order.properties)
        signature = prepared_asic.signature
        state = {"format": "asic", "documents": [[n, _b64(c), m] for n, c, m in documents],
                 "signature": signature.to_state(), "container": order.container_format.value}
        if prepared_asic.manifest is not None:
            state["manifest"] = _b64(prepared_asic.manifest)
        return PreparedOrder(prepared_asic.to_be_signed, order.digest, prepared_asic.scheme, state)
    raise SiegelError(Code.NOT_SUPPORTED, f"two-step signing of {order.format.value} is not offered")


def complete_order(state: dict[str, Any], value: bytes, level: Level, *, timestamps: TimestampClient | None,
                   trust_roots: Sequence[bytes], password: str | None = None) -> Signed:
    """Step 3: the value checked against the signer's certificate, then the signed result at ``level``
    (``password``: of an encrypted PDF, which the state never holds)."""
    fmt = state.get("format")
    name = str(state.get("name", "document"))
    if fmt == "cades":
        prepared = cades.Prepared.from_state(state["cades"])
        try:
            packaging = Packaging(state.get("packaging", Packaging.DETACHED.value))
        except ValueError:
            raise SiegelError(Code.BAD_REQUEST, "the prepared CAdES state names no known packaging") from None
        content = _unb64(state, "content") if "content" in state else None
        cades.check_signature_value(prepared, value)
        data = cades.finish_cades(prepared, value, level=level, packaging=packaging, content=content,
                                  timestamps=timestamps, trust_roots=trust_roots)
        return Signed(name, data, False, cms_mime(packaging), CMS_URI)
    if fmt == "xades":
        prepared_xades = xades.PreparedXades.from_state(state["xades"])
        xades.check_xades_value(prepared_xades, value)
        detached = {name: _unb64(state, "detached")} if "detached" in state else {}
        data = xades.assemble_xades(prepared_xades, value, level=level, timestamps=timestamps,
                                    trust_roots=trust_roots, detached_contents=detached)
        return Signed(name, data, bool(state.get("enveloped")), "application/xml", XMLDSIG_URI)
    if fmt == "pades":
        document = io.BytesIO(_unb64(state, "pdf"))
        prepared_pades = pades.PreparedPades.from_state(state["pades"], document, password=password)
        pades.check_signature_value(prepared_pades, value)
        pades.assemble_pades(prepared_pades, value, level=level, timestamps=timestamps, trust_roots=trust_roots,
                             out=document)
        return Signed(name, document.getvalue(), True, "application/pdf", PADES_URI)
    if fmt == "asic":
        try:
            documents = tuple((str(n), base64.b64decode(c, validate=True), str(m)) for n, c, m in state["documents"])
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise SiegelError(Code.BAD_REQUEST, "the prepared ASiC-E state is incomplete or damaged") from None
        signature: cades.Prepared | xades.PreparedXades
        if state.get("container") == "cades":
            signature = cades.Prepared.from_state(state["signature"])
            cades.check_signature_value(signature, value)
            manifest: bytes | None = _unb64(state, "manifest")
        else:
            signature = xades.PreparedXades.from_state(state["signature"])
            xades.check_xades_value(signature, value)
            manifest = None
        data = asic.assemble_asic(asic.PreparedAsic(documents, signature, manifest), value, level=level,
                                  timestamps=timestamps, trust_roots=trust_roots)
        return Signed("container.asice", data, True, ASIC_MIME, ASIC_URI)
    raise SiegelError(Code.BAD_REQUEST, f"the prepared signature's state names no known format ({fmt!r})")
