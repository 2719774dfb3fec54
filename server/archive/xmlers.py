"""RFC 6283 XML evidence records (XMLERS) to and from the one record model, and XMLERS's own renewal hashes.

The hash tree is the same as RFC 4998's (one ``Sequence`` per partial hash tree, in ``Order``), but
renewals hash canonical XML, in the chain's ``CanonicalizationMethod``, where ERS hashes DER:

- timestamp renewal: the new ATS covers H(C14N(the previous ATS's ``TimeStamp`` element));
- hash-tree renewal: the new chain's first ATS covers the group {H(document), ha} (its first
  partial hash tree holds both), ha = H(C14N(the ``ArchiveTimeStampSequence`` without the chains
  of this ``Order`` and later)).

EU DSS computes both like this (``XMLEvidenceRecordRenewalDigestBuilderHelper``); it is why an ERS
record that was renewed cannot be re-expressed as XMLERS (:func:`encode` refuses it). The renewal
hashes of a decoded record come from its own bytes (``EvidenceRecord.encoded``); Siegel writes
XMLERS deterministically (prefix ``ers``, exclusive C14N, base64 on one line, no comments), so a
record it wrote and reads back hashes the same. Written records are checked against the RFC 6283
schema; input is parsed with ``server.xmlsafe.parse_xml``. Data objects are hashed as binary
(Siegel archives bytes; XML data objects are not canonicalised first).
"""

from __future__ import annotations

import base64
import binascii
import copy
from functools import cache
from pathlib import Path

from lxml import etree

from server.archive.hashtree import HASHES, digest
from server.archive.record import ArchiveTimestamp, EvidenceRecord
from server.errors import Code, SiegelError
from server.validation.xades import C14N_METHODS, DIGESTS, EXC_C14N
from server.xmlsafe import parse_xml

ERS_NS = "urn:ietf:params:xml:ns:ers"
SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "rfc6283_xmlers.xsd"
DIGEST_URIS = {name: uri for uri, name in DIGESTS.items()}
_MAX_DEPTH = 32


def _q(name: str) -> str:
    return f"{{{ERS_NS}}}{name}"


def _bad(message: str) -> SiegelError:
    return SiegelError(Code.BAD_REQUEST, f"malformed RFC 6283 evidence record: {message}")


@cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA)))


def _ordered(parent: etree._Element, name: str, what: str) -> list[etree._Element]:
    children = parent.findall(_q(name))
    try:
        orders = [int(child.get("Order", "")) for child in children]
    except ValueError:
        raise _bad(f"a {what} has no numeric Order") from None
    if sorted(orders) != list(range(1, len(children) + 1)):
        raise _bad(f"the {what}s are numbered {orders}, not 1..{len(children)}")
    return [child for _, child in sorted(zip(orders, children, strict=True), key=lambda pair: pair[0])]


def _chain_methods(chain: etree._Element) -> tuple[str, str]:
    """The chain's hash algorithm name and canonicalization URI."""
    uri = chain.find(_q("DigestMethod")).get("Algorithm")
    algorithm = DIGESTS.get(uri)
    if algorithm not in HASHES:
        raise SiegelError(Code.NOT_SUPPORTED, f"evidence record chain uses the digest method {uri}, "
                                              "which Siegel does not know")
    c14n = chain.find(_q("CanonicalizationMethod")).get("Algorithm")
    if c14n not in C14N_METHODS:
        raise SiegelError(Code.NOT_SUPPORTED, f"evidence record chain uses the canonicalization {c14n}, "
                                              "which Siegel does not know")
    return algorithm, c14n


def canonical(element: etree._Element, method: str) -> bytes:
    """``element``'s subtree in canonical XML of ``method`` (a C14N URI)."""
    how = C14N_METHODS[method]
    return etree.tostring(element, method="c14n", exclusive=how.exclusive, with_comments=how.comments)


def _root(data: bytes) -> etree._Element:
    root = parse_xml(data, max_depth=_MAX_DEPTH)
    if root.tag != _q("EvidenceRecord"):
        raise _bad(f"the root element is {root.tag}, not {{{ERS_NS}}}EvidenceRecord")
    if not _schema().validate(root):
        raise SiegelError(Code.SCHEMA_INVALID, f"evidence record does not match the RFC 6283 schema: "
                                               f"{_schema().error_log.last_error}")
    return root


def decode(data: bytes) -> EvidenceRecord:
    """The record in ``data``; anything but a schema-valid RFC 6283 EvidenceRecord is a SiegelError."""
    root = _root(data)
    if root.find(_q("EncryptionInformation")) is not None:
        raise SiegelError(Code.NOT_SUPPORTED, "evidence record over encrypted data (EncryptionInformation): "
                                              "Siegel verifies only records over the data as archived")
    chains: list[tuple[ArchiveTimestamp, ...]] = []
    for c, chain in enumerate(_ordered(root.find(_q("ArchiveTimeStampSequence")), "ArchiveTimeStampChain",
                                       "ArchiveTimeStampChain")):
        algorithm, _ = _chain_methods(chain)
        size = HASHES[algorithm]().digest_size
        stamps = []
        for i, ats in enumerate(_ordered(chain, "ArchiveTimeStamp", "ArchiveTimeStamp")):
            where = f"chain {c + 1}, ATS {i + 1}"
            token = ats.find(_q("TimeStamp")).find(_q("TimeStampToken"))
            if token.get("Type") != "RFC3161":
                raise SiegelError(Code.NOT_SUPPORTED, f"{where}: timestamp type {token.get('Type')!r} "
                                                      "(Siegel knows RFC3161)")
            tree = ats.find(_q("HashTree"))
            groups = _ordered(tree, "Sequence", "hash tree Sequence") if tree is not None else []
            try:
                reduced = tuple(tuple(base64.b64decode(v.text or "", validate=False) for v in group.findall(
                    _q("DigestValue"))) for group in groups)
                der = base64.b64decode("".join((token.text or "").split()), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise _bad(f"{where}: bad base64 ({exc})") from None
            if any(len(v) != size for group in reduced for v in group):
                raise _bad(f"{where}: a DigestValue is not {size} bytes ({algorithm})")
            attributes = ats.find(_q("Attributes"))
            stamps.append(ArchiveTimestamp(algorithm, reduced, der,
                                           None if attributes is None else etree.tostring(attributes),
                                           etree.tostring(ats)))
        chains.append(tuple(stamps))
    algorithms = tuple(dict.fromkeys(chain[0].digest_algorithm for chain in chains))
    return EvidenceRecord(algorithms, tuple(chains), None, "xml", data)


def _render(record: EvidenceRecord) -> etree._Element:
    root = etree.Element(_q("EvidenceRecord"), nsmap={"ers": ERS_NS}, Version="1.0")
    sequence = etree.SubElement(root, _q("ArchiveTimeStampSequence"))
    for c, chain in enumerate(record.chains, 1):
        element = etree.SubElement(sequence, _q("ArchiveTimeStampChain"), Order=str(c))
        etree.SubElement(element, _q("DigestMethod"), Algorithm=DIGEST_URIS[chain[0].digest_algorithm])
        etree.SubElement(element, _q("CanonicalizationMethod"), Algorithm=EXC_C14N)
        for i, ats in enumerate(chain, 1):
            stamp = etree.SubElement(element, _q("ArchiveTimeStamp"), Order=str(i))
            if ats.reduced_tree:
                tree = etree.SubElement(stamp, _q("HashTree"))
                for g, group in enumerate(ats.reduced_tree, 1):
                    node = etree.SubElement(tree, _q("Sequence"), Order=str(g))
                    for value in group:
                        etree.SubElement(node, _q("DigestValue")).text = base64.b64encode(value).decode("ascii")
            _timestamp_element(stamp, ats.timestamp)
            if ats.attributes is not None:
                stamp.append(etree.fromstring(ats.attributes))
    return root


def _timestamp_element(parent: etree._Element | None, token: bytes) -> etree._Element:
    """The ``TimeStamp`` element Siegel writes for the RFC 3161 ``token`` (under ``parent``, or standalone)."""
    stamp = (etree.Element(_q("TimeStamp"), nsmap={"ers": ERS_NS}) if parent is None
             else etree.SubElement(parent, _q("TimeStamp")))
    etree.SubElement(stamp, _q("TimeStampToken"), Type="RFC3161").text = base64.b64encode(token).decode("ascii")
    return stamp


def token_renewal_digest(token: bytes, algorithm: str) -> bytes:
    """What an XMLERS timestamp renewal of an ATS with ``token`` covers in a record Siegel writes: H(exclusive
    C14N of its ``TimeStamp`` element) — the same for every record of a tree, so one renewal serves them all."""
    return digest(algorithm, canonical(_timestamp_element(None, token), EXC_C14N))


def encode(record: EvidenceRecord) -> bytes:
    """XMLERS of ``record`` (checked against the RFC 6283 schema).

    An ERS record with renewals is refused: its renewals hashed DER, which an XMLERS verifier
    does not; renew XML evidence with :func:`timestamp_renewal_digest` / :func:`hashtree_renewal_leaves`.
    A record whose renewals cover both (``syntax`` "both": Siegel's timestamp renewals and its hash-tree
    renewals, ``server.archive.jobs.renewal_group``) is written.
    """
    if record.syntax == "ers" and (len(record.chains) > 1 or len(record.chains[0]) > 1):
        raise SiegelError(Code.NOT_SUPPORTED, "an RFC 4998 evidence record with renewals cannot be written as "
                                              "RFC 6283 XML: its renewals hashed DER, not canonical XML")
    if any(a.digest_algorithm not in DIGEST_URIS for chain in record.chains for a in chain):
        raise SiegelError(Code.NOT_SUPPORTED, "evidence record uses a hash algorithm without an XML digest URI")
    root = _render(record)
    if not _schema().validate(root):
        raise SiegelError(Code.INTERNAL, f"written evidence record does not match the RFC 6283 schema: "
                                         f"{_schema().error_log.last_error}")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _document(record: EvidenceRecord) -> etree._Element:
    return _root(record.encoded) if record.encoded is not None else _render(record)


def _chain_elements(root: etree._Element) -> list[etree._Element]:
    return _ordered(root.find(_q("ArchiveTimeStampSequence")), "ArchiveTimeStampChain", "ArchiveTimeStampChain")


def timestamp_renewal_digest(record: EvidenceRecord, chain: int, index: int) -> bytes:
    """What the ATS after ATS ``index`` of chain ``chain`` (0-based) covers: H(C14N(its TimeStamp element))."""
    element = _chain_elements(_document(record))[chain]
    algorithm, method = _chain_methods(element)
    stamp = _ordered(element, "ArchiveTimeStamp", "ArchiveTimeStamp")[index]
    return digest(algorithm, canonical(stamp.find(_q("TimeStamp")), method))


def sequence_digest(record: EvidenceRecord, chain: int, algorithm: str, method: str | None = None) -> bytes:
    """ha for chain ``chain`` (0-based; ``len(record.chains)`` for a new one): the C14N ArchiveTimeStampSequence
    without chain ``chain`` and later, in the C14N ``method`` of that chain (exclusive C14N for a new one)."""
    root = copy.deepcopy(_document(record))
    elements = _chain_elements(root)
    if method is None:
        method = _chain_methods(elements[chain])[1] if chain < len(elements) else EXC_C14N
    sequence = root.find(_q("ArchiveTimeStampSequence"))
    for element in elements[chain:]:
        sequence.remove(element)
    return digest(algorithm, canonical(sequence, method))


def hashtree_renewal_leaves(document_hashes: list[bytes], record: EvidenceRecord, algorithm: str) -> list[bytes]:
    """The group the new chain's first partial hash tree holds: ha and the document hash(es) (in ``algorithm``)."""
    return [sequence_digest(record, len(record.chains), algorithm), *document_hashes]
