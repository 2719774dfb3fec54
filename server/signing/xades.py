"""XAdES (ETSI EN 319 132-1) baseline signatures B-B to B-LTA: detached, enveloping or enveloped, and
the detached signature over several documents of an ASiC-E container (EN 319 162-1).

Hash → sign → assemble: :func:`prepare_xades` builds the ds:Signature (references, SignedProperties,
KeyInfo) around an empty ds:SignatureValue, :func:`prepare_xades_asic` the asic:XAdESSignatures
document holding one; the digest of its canonical ds:SignedInfo
(:attr:`PreparedXades.to_be_signed`) is signed by a key source, ours or the caller's (two-step
signing: :meth:`PreparedXades.to_state` / :meth:`PreparedXades.from_state`); :func:`assemble_xades`
embeds the value and :func:`extend_xades` adds the unsigned properties of the higher levels, to our
signatures or to another producer's: SignatureTimeStamp (B-T); CertificateValues, RevocationValues and
TimeStampValidationData (B-LT); ArchiveTimeStamp (B-LTA, EN 319 132-1 5.5.2 / XAdES 1.4.1), whose
input :func:`archive_timestamp_input` computes. Detached documents, which B-LTA covers, are given
by name (``detached_contents``) and found under their references' URIs as the verifier finds them.

The XML is built with lxml and canonicalised with lxml's C14N (inclusive 1.0 for what we sign:
signxml mis-digests SignedProperties under exclusive C14N and has no unsigned properties at all).
References are processed (XMLDSig 4.4.3.2) with the transforms baseline signatures use:
enveloped-signature, C14N 1.0, C14N 1.1 (computed as 1.0, which is the same unless xml:base or xml:id
sit above the canonicalised element), exclusive C14N and base64; others are NOT_SUPPORTED. lxml
canonicalises an element with the namespaces of its ancestors but without their xml:lang/xml:space,
which inclusive C14N inherits: such documents are refused rather than mis-signed. Every XML input goes
through :func:`server.xmlsafe.parse_xml`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import secrets
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeAlias

from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from adapters.timestamp.client import TimestampClient
from server.errors import Code, SiegelError
from server.signing.cades import SigningKey
from server.signing.keysource import (
    DigestAlgorithm,
    SignatureScheme,
    ecdsa_der_to_raw,
    scheme_of,
    verify_value,
)
from server.signing.levels import Level, Packaging, SignatureProperties
from server.signing.validation_data import ValidationData, collect_validation_data
from server.xmlsafe import parse_xml

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
XADES141 = "http://uri.etsi.org/01903/v1.4.1#"
ASIC = "http://uri.etsi.org/02918/v1.2.1#"
C14N_10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_11 = "http://www.w3.org/2006/12/xml-c14n11"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED_SIGNATURE = DS + "enveloped-signature"
BASE64 = DS + "base64"
SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"
DIGEST_URIS = {
    DigestAlgorithm.SHA256: "http://www.w3.org/2001/04/xmlenc#sha256",
    DigestAlgorithm.SHA384: "http://www.w3.org/2001/04/xmldsig-more#sha384",
    DigestAlgorithm.SHA512: "http://www.w3.org/2001/04/xmlenc#sha512",
}

_C14N = {C14N_10, C14N_10 + "#WithComments", C14N_11, C14N_11 + "#WithComments", EXC_C14N, EXC_C14N + "WithComments"}
_CERT_DIGESTS = {uri: digest.value for digest, uri in DIGEST_URIS.items()} | {DS + "sha1": "sha1"}  # to find a cert
_SIGNATURE_KINDS = {SignatureScheme.ECDSA: "ecdsa", SignatureScheme.RSA_PKCS1V15: "rsa"}
_XML_ATTRIBUTE = "{http://www.w3.org/XML/1998/namespace}"
_TIMESTAMP_DIGEST = DigestAlgorithm.SHA256
_MAX_DEPTH = 200
_NO_CONTENT: Mapping[str, bytes] = MappingProxyType({})

_Nodes: TypeAlias = "etree._Element | etree._ElementTree"  # a node-set of a reference: a subtree, or the whole document


def _ds(name: str) -> str:
    return f"{{{DS}}}{name}"


def _xades(name: str) -> str:
    return f"{{{XADES}}}{name}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(16)}"


@dataclass(frozen=True)
class _Ids:
    """The Id attributes of a new signature and its parts (named as EU DSS names them)."""

    signature: str

    @property
    def value(self) -> str:
        return f"value-{self.signature}"

    def reference(self, number: int = 1) -> str:
        return f"r-{self.signature}-{number}"

    @property
    def data_object(self) -> str:
        return f"o-{self.signature}-1"

    @property
    def signed_properties(self) -> str:
        return f"xades-{self.signature}"


# ---------------------------------------------------------------- step 1: prepare

@dataclass(frozen=True)
class PreparedXades:
    """Step 1 done: the signed document with an empty ds:SignatureValue; the digest of the canonical
    ds:SignedInfo is what gets signed."""

    xml: bytes  # the whole output document: the ds:Signature, or the document that envelops it
    signature_id: str  # Id of our ds:Signature in ``xml``
    signed_info: bytes  # canonical ds:SignedInfo
    digest: DigestAlgorithm
    chain: tuple[bytes, ...]  # the signer's certificate first

    @property
    def to_be_signed(self) -> bytes:
        return hashlib.new(self.digest.value, self.signed_info).digest()

    @property
    def scheme(self) -> SignatureScheme:
        return scheme_of(self.chain[0])

    def to_state(self) -> dict[str, Any]:
        """A JSON-able form for two-step signing; :meth:`from_state` reads it back."""
        return {"xml": _b64(self.xml), "signature_id": self.signature_id, "digest": self.digest.value,
                "chain": [_b64(c) for c in self.chain]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PreparedXades:
        """The prepared signature of :meth:`to_state`; its SignedInfo is canonicalised anew from the XML."""
        try:
            xml = base64.b64decode(state["xml"], validate=True)
            chain = tuple(base64.b64decode(c, validate=True) for c in state["chain"])
            signature_id, digest = str(state["signature_id"]), DigestAlgorithm(state["digest"])
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise SiegelError(Code.BAD_REQUEST, "the prepared XAdES state is incomplete or damaged") from None
        if not chain:
            raise SiegelError(Code.BAD_REQUEST, "the prepared XAdES state has no certificate")
        signature = _signature_by_id(parse_xml(xml, max_depth=_MAX_DEPTH), signature_id)
        return cls(xml, signature_id, _canonical_signed_info(signature), digest, chain)


def prepare_xades(chain: tuple[bytes, ...], *, packaging: Packaging, document: bytes | None = None,
                  document_digest: bytes | None = None, digest: DigestAlgorithm = DigestAlgorithm.SHA256,
                  document_name: str = "document", mime_type: str | None = None,
                  properties: SignatureProperties | None = None) -> PreparedXades:
    """Step 1: the ds:Signature over ``document`` (or, detached only, over its ``document_digest``)
    with the B-B signed properties and the chain in ds:KeyInfo."""
    _check_inputs(chain, packaging, document, document_digest, digest)
    ids = _Ids(_new_id("id"))
    signature = _signature_skeleton(chain, digest, ids)
    xml_document = _xml_of(packaging, document)
    data = _data_reference(signature[0], ids, packaging, document_name, xml_document is not None)
    signed_properties = _signed_properties_reference(signature[0], ids)
    _signed_properties(signature, chain[0], ids, [(ids.reference(), mime_type or (
        "text/xml" if xml_document is not None else "application/octet-stream"))], properties or SignatureProperties())
    if packaging is Packaging.ENVELOPED:
        assert xml_document is not None
        xml_document.append(signature)
    elif packaging is Packaging.ENVELOPING:
        assert document is not None
        _data_object(signature, ids, document, xml_document)
    contents = _NO_CONTENT if document is None else {document_name: document}
    _set_digest(data, digest, document_digest if document_digest is not None else
                _digest(digest, _reference_data(data, signature, contents)))
    return _prepared(signature, signed_properties, ids, digest, chain)


def prepare_xades_asic(chain: tuple[bytes, ...], documents: Sequence[tuple[str, bytes, str]], *,
                       digest: DigestAlgorithm = DigestAlgorithm.SHA256,
                       properties: SignatureProperties | None = None) -> PreparedXades:
    """Step 1 for an ASiC-E container (EN 319 162-1 4.4.3): its whole META-INF/signatures.xml, an
    asic:XAdESSignatures holding one ds:Signature with a ds:Reference (URI the percent-encoded name, no
    transforms) and a DataObjectFormat for each of ``documents`` (name, ``digest`` of its content, MIME
    type). SignedProperties and SignedInfo are canonicalised in place, with the asic namespace that
    inclusive C14N takes in from the root."""
    _check_chain(chain)
    if not documents:
        raise SiegelError(Code.BAD_REQUEST, "an ASiC-E signature signs at least one document")
    ids = _Ids(_new_id("id"))
    signature = _signature_skeleton(chain, digest, ids)
    etree.Element(f"{{{ASIC}}}XAdESSignatures", nsmap={"asic": ASIC}).append(signature)
    for number, (name, document_digest, _) in enumerate(documents, 1):
        _check_digest(digest, document_digest)
        reference = etree.SubElement(signature[0], _ds("Reference"), Id=ids.reference(number), URI=_detached_uri(name))
        _set_digest(reference, digest, document_digest)
    signed_properties = _signed_properties_reference(signature[0], ids)
    _signed_properties(signature, chain[0], ids, [(ids.reference(number), mime_type) for number, (_, _, mime_type)
                                                  in enumerate(documents, 1)], properties or SignatureProperties())
    return _prepared(signature, signed_properties, ids, digest, chain)


def _prepared(signature: etree._Element, signed_properties: etree._Element, ids: _Ids, digest: DigestAlgorithm,
              chain: tuple[bytes, ...]) -> PreparedXades:
    """The SignedProperties digested and the SignedInfo canonicalised where the signature stands now."""
    _set_digest(signed_properties, digest, _digest(digest, _reference_data(signed_properties, signature, _NO_CONTENT)))
    return PreparedXades(_serialise(signature), ids.signature, _canonical_signed_info(signature), digest, chain)


def _check_inputs(chain: tuple[bytes, ...], packaging: Packaging, document: bytes | None,
                  document_digest: bytes | None, digest: DigestAlgorithm) -> None:
    _check_chain(chain)
    if (document is None) == (document_digest is None):
        raise SiegelError(Code.BAD_REQUEST, "sign either the document or its digest")
    if document_digest is not None:
        if packaging is not Packaging.DETACHED:
            raise SiegelError(Code.BAD_REQUEST, "a signature over a digest only is detached: the document is not here")
        _check_digest(digest, document_digest)


def _check_chain(chain: tuple[bytes, ...]) -> None:
    if not chain:
        raise SiegelError(Code.KEY_NOT_FOUND, "the key has no certificate to sign with")


def _check_digest(digest: DigestAlgorithm, value: bytes) -> None:
    if len(value) != digest.size:
        raise SiegelError(Code.BAD_REQUEST, f"a {digest.value} digest has {digest.size} bytes, not {len(value)}")


def _xml_of(packaging: Packaging, document: bytes | None) -> etree._Element | None:
    """The document's root element where the signature takes it as XML: enveloped (it must be XML) and
    enveloping (if it is XML that Siegel accepts; anything else is enveloped as base64 data)."""
    if packaging is Packaging.DETACHED or document is None:
        return None
    try:
        return parse_xml(document, max_depth=_MAX_DEPTH)
    except SiegelError as exc:
        if packaging is Packaging.ENVELOPING:
            return None
        if exc.code is not Code.MALFORMED_XML:
            raise
        raise SiegelError(Code.BAD_REQUEST, f"an enveloped signature goes into an XML document: {exc.message}") from None


def _digest(digest: DigestAlgorithm, data: bytes) -> bytes:
    return hashlib.new(digest.value, data).digest()


def _signature_skeleton(chain: tuple[bytes, ...], digest: DigestAlgorithm, ids: _Ids) -> etree._Element:
    """ds:Signature with SignedInfo (no references yet), an empty SignatureValue and the KeyInfo."""
    signature = etree.Element(_ds("Signature"), nsmap={"ds": DS}, Id=ids.signature)
    signed_info = etree.SubElement(signature, _ds("SignedInfo"))
    etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=C14N_10)
    kind = _SIGNATURE_KINDS[scheme_of(chain[0])]
    etree.SubElement(signed_info, _ds("SignatureMethod"),
                     Algorithm=f"http://www.w3.org/2001/04/xmldsig-more#{kind}-{digest.value}")
    etree.SubElement(signature, _ds("SignatureValue"), Id=ids.value)
    x509_data = etree.SubElement(etree.SubElement(signature, _ds("KeyInfo")), _ds("X509Data"))
    for der in _key_info_certificates(chain):
        etree.SubElement(x509_data, _ds("X509Certificate")).text = _b64(der)
    return signature


def _key_info_certificates(chain: tuple[bytes, ...]) -> list[bytes]:
    """The signer's certificate and its issuers, without self-signed roots (the verifier has those)."""
    issuers = [der for der in chain[1:] if (c := x509.load_der_x509_certificate(der)).issuer != c.subject]
    return [chain[0], *issuers]


def _data_reference(signed_info: etree._Element, ids: _Ids, packaging: Packaging, name: str,
                    xml: bool) -> etree._Element:
    """The ds:Reference of the signed data, its digest still to come."""
    reference = etree.SubElement(signed_info, _ds("Reference"), Id=ids.reference())
    if packaging is Packaging.DETACHED:
        reference.set("URI", _detached_uri(name))
    elif packaging is Packaging.ENVELOPED:
        reference.set("URI", "")
        _add_transforms(reference, (ENVELOPED_SIGNATURE, C14N_10))
    else:
        reference.set("Type", DS + "Object")
        reference.set("URI", "#" + ids.data_object)
        _add_transforms(reference, (C14N_10,) if xml else (BASE64,))
    return reference


def _detached_uri(name: str) -> str:
    """The URI of a detached document: its name (a relative path), percent-encoded."""
    if not name:
        raise SiegelError(Code.BAD_REQUEST, "a detached signature names its document (document_name)")
    return urllib.parse.quote(name)


def _signed_properties_reference(signed_info: etree._Element, ids: _Ids) -> etree._Element:
    """The ds:Reference of the SignedProperties (after the data's), its digest still to come."""
    reference = etree.SubElement(signed_info, _ds("Reference"), Type=SIGNED_PROPERTIES_TYPE,
                                 URI="#" + ids.signed_properties)
    _add_transforms(reference, (C14N_10,))
    return reference


def _add_transforms(reference: etree._Element, algorithms: Sequence[str]) -> None:
    transforms = etree.SubElement(reference, _ds("Transforms"))
    for algorithm in algorithms:
        etree.SubElement(transforms, _ds("Transform"), Algorithm=algorithm)


def _data_object(signature: etree._Element, ids: _Ids, document: bytes, xml: etree._Element | None) -> None:
    """The enveloped data in a ds:Object: XML as its content, anything else in base64."""
    data_object = etree.SubElement(signature, _ds("Object"), Id=ids.data_object)
    if xml is not None:
        data_object.append(xml)
    else:
        data_object.set("Encoding", BASE64)
        data_object.text = _b64(document)


def _set_digest(reference: etree._Element, digest: DigestAlgorithm, value: bytes) -> None:
    etree.SubElement(reference, _ds("DigestMethod"), Algorithm=DIGEST_URIS[digest])
    etree.SubElement(reference, _ds("DigestValue")).text = _b64(value)


def _signed_properties(signature: etree._Element, certificate: bytes, ids: _Ids, formats: Sequence[tuple[str, str]],
                       properties: SignatureProperties) -> None:
    """ds:Object/QualifyingProperties/SignedProperties with the B-B properties and the signer's claims."""
    holder = etree.SubElement(signature, _ds("Object"))
    qualifying = etree.SubElement(holder, _xades("QualifyingProperties"), nsmap={"xades": XADES},
                                  Target="#" + ids.signature)
    signed = etree.SubElement(qualifying, _xades("SignedProperties"), Id=ids.signed_properties)
    signature_properties = etree.SubElement(signed, _xades("SignedSignatureProperties"))
    etree.SubElement(signature_properties, _xades("SigningTime")).text = \
        datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _signing_certificate(signature_properties, certificate)
    place = properties.production_place
    parts = () if place is None else [(name, value) for name, value in (
        ("City", place.city), ("PostalCode", place.postal_code), ("CountryName", place.country)) if value]
    if parts:
        element = etree.SubElement(signature_properties, _xades("SignatureProductionPlaceV2"))
        for name, value in parts:
            etree.SubElement(element, _xades(name)).text = value
    if properties.claimed_role:
        roles = etree.SubElement(etree.SubElement(signature_properties, _xades("SignerRoleV2")), _xades("ClaimedRoles"))
        etree.SubElement(roles, _xades("ClaimedRole")).text = properties.claimed_role
    _data_object_properties(signed, formats, properties)


def _signing_certificate(parent: etree._Element, certificate: bytes) -> None:
    """SigningCertificateV2: the certificate's SHA-256 and its DER IssuerSerial (RFC 5035)."""
    cert = asn1_x509.Certificate.load(certificate)
    cert_id = etree.SubElement(etree.SubElement(parent, _xades("SigningCertificateV2")), _xades("Cert"))
    cert_digest = etree.SubElement(cert_id, _xades("CertDigest"))
    etree.SubElement(cert_digest, _ds("DigestMethod"), Algorithm=DIGEST_URIS[DigestAlgorithm.SHA256])
    etree.SubElement(cert_digest, _ds("DigestValue")).text = _b64(hashlib.sha256(certificate).digest())
    issuer_serial = tsp.IssuerSerial({"issuer": [asn1_x509.GeneralName(name="directory_name", value=cert.issuer)],
                                      "serial_number": cert.serial_number})
    etree.SubElement(cert_id, _xades("IssuerSerialV2")).text = _b64(issuer_serial.dump())


def _data_object_properties(signed: etree._Element, formats: Sequence[tuple[str, str]],
                            properties: SignatureProperties) -> None:
    """A DataObjectFormat for each (reference Id, MIME type) of ``formats`` and the commitment; the reason
    qualifies the commitment if there is one, else it describes the data."""
    element = etree.SubElement(signed, _xades("SignedDataObjectProperties"))
    for reference_id, mime_type in formats:
        data_format = etree.SubElement(element, _xades("DataObjectFormat"), ObjectReference=f"#{reference_id}")
        if properties.reason and not properties.commitment_type:
            etree.SubElement(data_format, _xades("Description")).text = properties.reason
        etree.SubElement(data_format, _xades("MimeType")).text = mime_type
    if properties.commitment_type:
        commitment = etree.SubElement(element, _xades("CommitmentTypeIndication"))
        etree.SubElement(etree.SubElement(commitment, _xades("CommitmentTypeId")), _xades("Identifier")).text = \
            properties.commitment_type
        etree.SubElement(commitment, _xades("AllSignedDataObjects"))
        if properties.reason:
            qualifiers = etree.SubElement(commitment, _xades("CommitmentTypeQualifiers"))
            etree.SubElement(qualifiers, _xades("CommitmentTypeQualifier")).text = properties.reason


# ---------------------------------------------------------------- references and canonicalisation

def _canonical(nodes: _Nodes, algorithm: str, *, comments: bool, prefixes: Sequence[str] = ()) -> bytes:
    if algorithm not in _C14N:
        raise SiegelError(Code.NOT_SUPPORTED, f"canonicalisation {algorithm} is not supported")
    exclusive = algorithm.startswith(EXC_C14N)
    if not exclusive and isinstance(nodes, etree._Element):
        _refuse_inherited_xml_attributes(nodes)
    try:
        return etree.tostring(nodes, method="c14n", exclusive=exclusive, with_comments=comments,
                              inclusive_ns_prefixes=list(prefixes) or None)
    except etree.C14NError:
        raise SiegelError(Code.BAD_REQUEST, "the XML to sign has no canonical form: Canonical XML refuses, for "
                                            "one, a namespace name that is a relative URI (xmlns:p=\"h\")") from None


def _refuse_inherited_xml_attributes(element: etree._Element) -> None:
    for ancestor in element.iterancestors():
        inherited = [name for name in ancestor.attrib if name.startswith(_XML_ATTRIBUTE)]
        if inherited:
            raise SiegelError(Code.NOT_SUPPORTED, f"inclusive canonicalisation below an element with xml:"
                                                  f"{inherited[0][len(_XML_ATTRIBUTE):]} is not supported "
                                                  f"(element {etree.QName(ancestor).localname})")


def _method(element: etree._Element | None, default: str = C14N_10) -> tuple[str, tuple[str, ...]]:
    """Algorithm of a ds:Transform or ds:CanonicalizationMethod and its exclusive-C14N prefix list."""
    if element is None:
        return default, ()
    inclusive = element.find(f"{{{EXC_C14N}}}InclusiveNamespaces")
    prefixes = tuple((inclusive.get("PrefixList") or "").split()) if inclusive is not None else ()
    return element.get("Algorithm", ""), prefixes


def _canonical_element(element: etree._Element, method: tuple[str, tuple[str, ...]]) -> bytes:
    """An element as a node-set of its own (SignedInfo, a property): comments as the algorithm says."""
    algorithm, prefixes = method
    return _canonical(element, algorithm, comments=algorithm.endswith("WithComments"), prefixes=prefixes)


def _canonical_signed_info(signature: etree._Element) -> bytes:
    signed_info = _child(signature, _ds("SignedInfo"))
    return _canonical_element(signed_info, _method(signed_info.find(_ds("CanonicalizationMethod"))))


def _reference_data(reference: etree._Element, signature: etree._Element, contents: Mapping[str, bytes],
                    final: tuple[str, tuple[str, ...]] = (C14N_10, ())) -> bytes:
    """The octets a ds:Reference digests (XMLDSig 4.4.3.2): its URI dereferenced (in ``contents`` for one
    outside the signature's document), transformed, a remaining node-set canonicalised with ``final``."""
    data: bytes | _Nodes = _dereference(reference.get("URI"), signature, contents)
    for transform in reference.iterfind(f"{_ds('Transforms')}/{_ds('Transform')}"):
        data = _transform(data, transform, signature)
    if isinstance(data, bytes):
        return data
    return _canonical(data, final[0], comments=False, prefixes=final[1])


def _is_external(uri: str | None) -> bool:
    return uri is None or not (uri == "" or uri.startswith("#"))


def _dereference(uri: str | None, signature: etree._Element, contents: Mapping[str, bytes]) -> bytes | _Nodes:
    """Same-document URIs give node-sets without comments; any other URI is detached data in ``contents``."""
    if uri == "":
        return signature.getroottree()
    if uri is not None and uri.startswith("#"):
        if uri.startswith("#xpointer("):
            raise SiegelError(Code.NOT_SUPPORTED, f"XPointer references ({uri}) are not supported")
        found = signature.getroottree().getroot().xpath("//*[@Id=$id or @ID=$id or @id=$id]", id=uri[1:])
        if len(found) != 1:
            raise SiegelError(Code.BAD_REQUEST, f"the reference {uri} names {len(found)} elements, not one")
        return found[0]  # type: ignore[no-any-return]
    content = _content(uri, contents)
    if content is None:
        raise SiegelError(Code.NOT_SUPPORTED, f"the signed data {uri!r} is not in the signature's document: "
                                              "it is needed as detached content")
    return content


def _content(uri: str | None, contents: Mapping[str, bytes]) -> bytes | None:
    """The detached content a URI names: in ``contents`` under the URI as written or under the name it
    percent-encodes (without a leading "./"), as the verifier looks it up; a reference without URI names none."""
    if uri is None:
        return None
    name = urllib.parse.unquote(uri)
    return next((contents[key] for key in (uri, name, name.removeprefix("./")) if key in contents), None)


def _transform(data: bytes | _Nodes, transform: etree._Element, signature: etree._Element) -> bytes | _Nodes:
    algorithm, prefixes = _method(transform)
    if algorithm == ENVELOPED_SIGNATURE and not isinstance(data, bytes):
        return _without(data, signature)
    if algorithm == BASE64:
        text = data if isinstance(data, bytes) else _text_of(data)
        try:
            return base64.b64decode(text)
        except (binascii.Error, ValueError):
            raise SiegelError(Code.BAD_REQUEST, "a base64 transform meets data that is not base64") from None
    if algorithm in _C14N and not isinstance(data, bytes):
        return _canonical(data, algorithm, comments=False, prefixes=prefixes)
    raise SiegelError(Code.NOT_SUPPORTED, f"transform {algorithm} (on {'octets' if isinstance(data, bytes) else 'XML'})"
                                          " is not supported")


def _text_of(nodes: _Nodes) -> bytes:
    """The string value of a node-set's apex element (its text without comments), as base64 input."""
    element = nodes.getroot() if isinstance(nodes, etree._ElementTree) else nodes
    return str(element.xpath("string()")).encode("ascii", "ignore")


def _without(nodes: _Nodes, signature: etree._Element) -> _Nodes:
    """The enveloped-signature transform: the node-set without ``signature``, in a copy of the document
    (so that the remaining nodes keep their context)."""
    tree = nodes if isinstance(nodes, etree._ElementTree) else nodes.getroottree()
    if isinstance(nodes, etree._Element) and nodes is not signature and nodes not in signature.iterancestors():
        return nodes
    if nodes is signature or signature.getparent() is None:
        raise SiegelError(Code.NOT_SUPPORTED, "an enveloped-signature transform that removes everything")
    document = copy.deepcopy(tree)
    removed = _same_place(signature, document)
    parent, previous = removed.getparent(), removed.getprevious()
    if removed.tail:  # the text after the signature is not part of it
        if previous is not None:
            previous.tail = (previous.tail or "") + removed.tail
        else:
            parent.text = (parent.text or "") + removed.tail  # type: ignore[union-attr]
    parent.remove(removed)  # type: ignore[union-attr]
    return document if isinstance(nodes, etree._ElementTree) else _same_place(nodes, document)


def _same_place(element: etree._Element, document: etree._ElementTree) -> etree._Element:
    """The element of ``document`` (a copy of ``element``'s document) at ``element``'s position."""
    steps = []
    node = element
    while (parent := node.getparent()) is not None:
        steps.append(parent.index(node))
        node = parent
    found = document.getroot()
    for index in reversed(steps):
        found = found[index]
    return found


# ---------------------------------------------------------------- step 3: assemble, extend

def check_xades_value(prepared: PreparedXades, value: bytes) -> None:
    """The value (DER for ECDSA, PKCS#1 for RSA) must be the signer certificate's signature over the SignedInfo."""
    if not verify_value(prepared.chain[0], prepared.signed_info, value, prepared.digest):
        raise SiegelError(Code.BAD_REQUEST, "the signature value does not verify with the signer's certificate "
                                            "over the prepared SignedInfo")


def assemble_xades(prepared: PreparedXades, value: bytes, *, level: Level = Level.B_B,
                   timestamps: TimestampClient | None = None, trust_roots: Sequence[bytes] = (),
                   detached_contents: Mapping[str, bytes] = _NO_CONTENT) -> bytes:
    """Step 3: the document with the signature value (ECDSA as raw r||s), extended to ``level``;
    ``detached_contents`` are the detached documents by name (or reference URI), which a B-LTA archive
    timestamp covers."""
    _check_level(level, timestamps, trust_roots)
    signature = _signature_by_id(parse_xml(prepared.xml, max_depth=_MAX_DEPTH), prepared.signature_id)
    public = x509.load_der_x509_certificate(prepared.chain[0]).public_key()
    raw = ecdsa_der_to_raw(value, public.curve) if isinstance(public, ec.EllipticCurvePublicKey) else value
    _child(signature, _ds("SignatureValue")).text = _b64(raw)
    _extend(signature, level, timestamps, trust_roots, detached_contents)
    return _serialise(signature)


def extend_xades(signed: bytes, level: Level, *, timestamps: TimestampClient | None, trust_roots: Sequence[bytes],
                 detached_contents: Mapping[str, bytes] = _NO_CONTENT) -> bytes:
    """The document's one XAdES signature (ours or another producer's, also in an ASiC-E
    signatures.xml) raised to ``level``: what the level needs and the signature lacks is added; on a
    B-LTA signature, B-LTA adds the validation data of the last archive timestamp's TSA and a new
    archive timestamp (renewal). B-LTA needs the ``detached_contents`` as :func:`assemble_xades` does."""
    _check_level(level, timestamps, trust_roots)
    signature = _only_signature(parse_xml(signed, max_depth=_MAX_DEPTH))
    _extend(signature, level, timestamps, trust_roots, detached_contents)
    return _serialise(signature)


def _check_level(level: Level, timestamps: TimestampClient | None, trust_roots: Sequence[bytes]) -> None:
    if level.at_least(Level.B_T) and timestamps is None:
        raise SiegelError(Code.CONFIG, f"XAdES {level} needs a time-stamping authority (setting tsa.clients)")
    if level.at_least(Level.B_LT) and not trust_roots:
        raise SiegelError(Code.CONFIG, f"XAdES {level} needs trust anchors to collect validation data against")


def _check_archivable(level: Level, uris: Iterable[str | None], contents: Mapping[str, bytes]) -> None:
    """B-LTA: the content of every reference outside the signature's document is at hand."""
    if level is not Level.B_LTA:
        return
    missing = [uri or "(no URI)" for uri in uris if _is_external(uri) and _content(uri, contents) is None]
    if missing:
        raise SiegelError(Code.NOT_SUPPORTED, "a B-LTA archive timestamp covers the signed data itself: it needs "
                                              f"the detached document ({', '.join(missing)}), not only its digest")


def _serialise(element: etree._Element) -> bytes:
    return etree.tostring(element.getroottree(), xml_declaration=True, encoding="UTF-8")


def _child(parent: etree._Element, tag: str) -> etree._Element:
    found = parent.find(tag)
    if found is None:
        raise SiegelError(Code.BAD_REQUEST, f"the signature has no {etree.QName(tag).localname}")
    return found


def _signature_by_id(root: etree._Element, signature_id: str) -> etree._Element:
    found = [s for s in root.iter(_ds("Signature")) if s.get("Id") == signature_id]
    if len(found) != 1:
        raise SiegelError(Code.BAD_REQUEST, f"the prepared document holds signature {signature_id} "
                                            f"{len(found)} times, not once")
    return found[0]


def _only_signature(root: etree._Element) -> etree._Element:
    """The one XAdES signature of a document (counter-signatures inside it do not count)."""
    found = [s for s in root.iter(_ds("Signature"))
             if s.find(f"{_ds('Object')}/{_xades('QualifyingProperties')}") is not None
             and not any(a.tag == _ds("Signature") for a in s.iterancestors())]
    if len(found) != 1:
        raise SiegelError(Code.BAD_REQUEST, f"the document holds {len(found)} XAdES signatures: "
                                            "a document with exactly one can be extended")
    return found[0]


def _extend(signature: etree._Element, level: Level, timestamps: TimestampClient | None,
            trust_roots: Sequence[bytes], contents: Mapping[str, bytes]) -> None:
    if level is Level.B_B:
        return
    assert timestamps is not None
    _check_archivable(level, [r.get("URI") for r in signature.iterfind(f"{_ds('SignedInfo')}/{_ds('Reference')}")],
                      contents)
    properties = _unsigned_signature_properties(signature)
    stamps = properties.findall(_xades("SignatureTimeStamp"))
    if not stamps:
        value = _canonical_element(_child(signature, _ds("SignatureValue")), (C14N_10, ()))
        stamps = [_add_timestamp(properties, _xades("SignatureTimeStamp"), value, timestamps)]
    if not level.at_least(Level.B_LT):
        return
    if properties.find(_xades("CertificateValues")) is None:
        _add_values(properties, collect_validation_data(_signer_chain(signature), trust_roots))
        for stamp in stamps:
            _add_timestamp_validation_data(properties, stamp, trust_roots)
    if level is not Level.B_LTA:
        return
    archives = properties.findall(f"{{{XADES141}}}ArchiveTimeStamp")
    if archives:
        _add_timestamp_validation_data(properties, archives[-1], trust_roots)
    covered = archive_timestamp_input(signature, detached_contents=contents)
    _add_timestamp(properties, f"{{{XADES141}}}ArchiveTimeStamp", covered, timestamps)


def _unsigned_signature_properties(signature: etree._Element) -> etree._Element:
    """QualifyingProperties/UnsignedProperties/UnsignedSignatureProperties, made where missing."""
    qualifying = _child(signature, f"{_ds('Object')}/{_xades('QualifyingProperties')}")
    unsigned = qualifying.find(_xades("UnsignedProperties"))
    if unsigned is None:
        unsigned = etree.SubElement(qualifying, _xades("UnsignedProperties"))
    properties = unsigned.find(_xades("UnsignedSignatureProperties"))
    if properties is None:
        properties = etree.Element(_xades("UnsignedSignatureProperties"))
        unsigned.insert(0, properties)
    return properties


def _add_timestamp(parent: etree._Element, tag: str, covered: bytes, timestamps: TimestampClient) -> etree._Element:
    """A XAdESTimeStampType property with a token over SHA-256 of ``covered`` (canonicalised with C14N 1.0)."""
    token = timestamps.timestamp(_digest(_TIMESTAMP_DIGEST, covered), _TIMESTAMP_DIGEST.value).token
    nsmap = {"xades141": XADES141} if tag.startswith(f"{{{XADES141}}}") else None
    stamp = etree.SubElement(parent, tag, nsmap=nsmap, Id=_new_id("TS"))
    etree.SubElement(stamp, _ds("CanonicalizationMethod"), Algorithm=C14N_10)
    etree.SubElement(stamp, _xades("EncapsulatedTimeStamp")).text = _b64(token)
    return stamp


def _add_values(parent: etree._Element, data: ValidationData) -> None:
    """CertificateValues and RevocationValues (CRLs, then OCSP responses) of ``data``."""
    certificates = etree.SubElement(parent, _xades("CertificateValues"))
    for der in data.certificates:
        etree.SubElement(certificates, _xades("EncapsulatedX509Certificate")).text = _b64(der)
    revocation = etree.SubElement(parent, _xades("RevocationValues"))
    for values, kinds in ((data.crls, ("CRLValues", "EncapsulatedCRLValue")),
                          (data.ocsps, ("OCSPValues", "EncapsulatedOCSPValue"))):
        if values:
            holder = etree.SubElement(revocation, _xades(kinds[0]))
            for der in values:
                etree.SubElement(holder, _xades(kinds[1])).text = _b64(der)


def _add_timestamp_validation_data(properties: etree._Element, stamp: etree._Element,
                                   trust_roots: Sequence[bytes]) -> None:
    """xades141:TimeStampValidationData for the TSA chain of the token in ``stamp``."""
    token = base64.b64decode(_child(stamp, _xades("EncapsulatedTimeStamp")).text or "")
    element = etree.SubElement(properties, f"{{{XADES141}}}TimeStampValidationData", nsmap={"xades141": XADES141},
                               Id=_new_id("TSVD"))
    _add_values(element, collect_validation_data(_token_chain(token), trust_roots))


def _token_chain(token: bytes) -> tuple[bytes, ...]:
    """The certificates of a timestamp token, the TSA's (the one its SignerInfo names) first."""
    try:
        signed_data = cms.ContentInfo.load(token)["content"]
        certs = [c.chosen for c in signed_data["certificates"] or () if c.name == "certificate"]
        sid = signed_data["signer_infos"][0]["sid"]
    except (ValueError, TypeError, KeyError, IndexError):
        raise SiegelError(Code.BAD_REQUEST, "a timestamp of the signature is not a CMS SignedData") from None

    def is_signer(cert: asn1_x509.Certificate) -> bool:
        if sid.name == "subject_key_identifier":
            return bool(cert.key_identifier == sid.chosen.native)
        return bool(cert.issuer == sid.chosen["issuer"] and cert.serial_number == sid.chosen["serial_number"].native)

    signers = [c for c in certs if is_signer(c)]
    if not signers:
        raise SiegelError(Code.BAD_REQUEST, "a timestamp of the signature does not carry its TSA's certificate")
    return (signers[0].dump(), *(c.dump() for c in certs if c is not signers[0]))


def _signer_chain(signature: etree._Element) -> tuple[bytes, ...]:
    """The KeyInfo certificates, the one the signing-certificate property names first."""
    certs = [base64.b64decode(c.text or "") for c in
             signature.iterfind(f"{_ds('KeyInfo')}/{_ds('X509Data')}/{_ds('X509Certificate')}")]
    if not certs:
        raise SiegelError(Code.BAD_REQUEST, "the signature carries no certificate in ds:KeyInfo")
    named = set()
    for cert_digest in signature.iterfind(f".//{_xades('SignedSignatureProperties')}//{_xades('CertDigest')}"):
        method = cert_digest.find(_ds("DigestMethod"))
        hash_name = _CERT_DIGESTS.get(method.get("Algorithm", "")) if method is not None else None
        if hash_name:
            named.add((hash_name, base64.b64decode(cert_digest.findtext(_ds("DigestValue")) or "")))
    signer = next((c for c in certs if any(hashlib.new(h, c).digest() == d for h, d in named)), certs[0])
    return (signer, *(c for c in certs if c != signer))


def archive_timestamp_input(signature: etree._Element, archive_timestamp: etree._Element | None = None, *,
                            detached_contents: Mapping[str, bytes] = _NO_CONTENT) -> bytes:
    """The octets an xades141:ArchiveTimeStamp covers (EN 319 132-1 5.5.2.2; XAdES 1.4.1 8.2.1): the
    references' data, SignedInfo, SignatureValue, KeyInfo, the unsigned signature properties before
    the timestamp, the ds:Objects but the QualifyingProperties one; each canonicalised with the
    timestamp's CanonicalizationMethod; detached data from ``detached_contents`` (as :func:`assemble_xades`
    takes them). For ``archive_timestamp`` (one of the signature's), or for a new one that goes last."""
    method = _method(archive_timestamp.find(_ds("CanonicalizationMethod")) if archive_timestamp is not None else None)
    parts = [_reference_data(r, signature, detached_contents, method)
             for r in signature.iterfind(f"{_ds('SignedInfo')}/{_ds('Reference')}")]
    for tag in ("SignedInfo", "SignatureValue", "KeyInfo"):
        element = signature.find(_ds(tag))
        if element is not None:
            parts.append(_canonical_element(element, method))
    for prop in signature.iterfind(f"{_ds('Object')}/{_xades('QualifyingProperties')}/{_xades('UnsignedProperties')}/"
                                   f"{_xades('UnsignedSignatureProperties')}/*"):
        if prop is archive_timestamp:
            break
        parts.append(_canonical_element(prop, method))
    for data_object in signature.iterfind(_ds("Object")):
        if data_object.find(_xades("QualifyingProperties")) is None:
            parts.append(_canonical_element(data_object, method))
    return b"".join(parts)


# ---------------------------------------------------------------- the three steps at once

def sign_xades(key: SigningKey, *, level: Level, packaging: Packaging, document: bytes | None = None,
               document_digest: bytes | None = None, digest: DigestAlgorithm = DigestAlgorithm.SHA256,
               document_name: str = "document", mime_type: str | None = None,
               properties: SignatureProperties | None = None, timestamps: TimestampClient | None = None,
               trust_roots: Sequence[bytes] = ()) -> bytes:
    """The XAdES document signing ``document`` (or, detached only, its ``document_digest``) at ``level``:
    prepare, sign in the key source, assemble."""
    _check_level(level, timestamps, trust_roots)
    contents = _NO_CONTENT if document is None or packaging is not Packaging.DETACHED else {document_name: document}
    _check_archivable(level, [_detached_uri(document_name)] if packaging is Packaging.DETACHED else [], contents)
    prepared = prepare_xades(key.chain, packaging=packaging, document=document, document_digest=document_digest,
                             digest=digest, document_name=document_name, mime_type=mime_type, properties=properties)
    value = key.source.sign_digest(key.label, prepared.to_be_signed, digest, prepared.scheme)
    return assemble_xades(prepared, value, level=level, timestamps=timestamps, trust_roots=trust_roots,
                          detached_contents=contents)
