"""CAdES (ETSI EN 319 122-1) baseline signatures B-B, B-T, B-LT and B-LTA, detached or enveloping.

Hash → sign → assemble: :func:`prepare_cades` builds the signed attributes (content-type,
message-digest, signing-time, signing-certificate-v2); the digest of their DER
(:attr:`Prepared.to_be_signed`) is signed by a key source, ours or the caller's (two-step signing);
:func:`assemble_cades` puts the value into a SignerInfo and SignedData and adds, for B-T, the
signature-time-stamp from our RFC 3161 client (ordered TSAs, failover, every token checked). Both
assemble DER from parts precomputed per certificate chain (:mod:`server.signing.cms_parts`, shared
with the TSA): asn1crypto and pyHanko re-encoded every certificate and Name per signature, 20-30 ms
of CPU against the HSM's 0.1-0.2 ms. Higher levels go through :func:`extend_cades`, which raises any CMS
(ours or another producer's): B-LT puts the certificates and revocation values of the signer's and
the TSAs' chains into ``SignedData.certificates`` and ``SignedData.crls``; B-LTA adds an
archive-time-stamp-v3 with its ats-hash-index-v3 (EN 319 122-1 5.5.2, 5.5.3).
:func:`sign_cades` is the three steps with a key source of ours.

These functions block (HSM, TSA, OCSP) and belong off the reactor thread. :class:`ClientTimeStamper`
is our client as pyHanko's timestamper, for the PAdES engine.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from asn1crypto import algos, cms, core, crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from pyhanko.sign.ades.asn1_util import register_cms_attribute
from pyhanko.sign.timestamps.api import TimeStamper

from adapters.timestamp.client import TimestampClient
from server.errors import Code, SiegelError
from server.signing import cms_parts
from server.signing.cms_parts import (
    OCTET_STRING,
    SignerParts,
    attribute,
    signed_attributes,
    tlv,
    utc_time,
)
from server.signing.keysource import (
    DigestAlgorithm,
    KeySource,
    SignatureScheme,
    scheme_of,
    verify_value,
)
from server.signing.levels import Level, Packaging, SignatureProperties
from server.signing.validation_data import ValidationData, collect_validation_data

LEVELS = tuple(Level)  # what this engine produces: every baseline level

ARCHIVE_TIME_STAMP_V3 = "0.4.0.1733.2.4"  # id-aa-ets-archiveTimestampV3
ATS_HASH_INDEX_V3 = "0.4.0.19122.1.5"  # id-aa-ATSHashIndex-v3
SIGNER_LOCATION = "1.2.840.113549.1.9.16.2.17"  # id-aa-ets-signerLocation
CONTENT_HINTS = "1.2.840.113549.1.9.16.2.4"  # id-aa-contentHint
COMMITMENT_TYPE = "1.2.840.113549.1.9.16.2.16"  # id-aa-ets-commitmentType
SIGNER_ATTRIBUTES_V2 = "0.4.0.19122.1.1"  # id-aa-ets-signerAttrV2
ID_AT_NAME = "2.5.4.41"  # a claimed role's attribute type, as EU DSS writes it
#: The commitment types of ETSI TS 119 172-1 (XAdES URI → CAdES OID).
COMMITMENTS = {f"http://uri.etsi.org/01903/v1.2.2#ProofOf{name}": f"1.2.840.113549.1.9.16.6.{number}"
               for number, name in enumerate(("Origin", "Receipt", "Delivery", "Sender", "Approval", "Creation"), 1)}
_TIMESTAMP_ATTRIBUTES = ("signature_time_stamp_token", "archive_time_stamp_v3")
_CONTENT_TYPE_DATA = attribute("content_type", cms_parts.oid("data"))
_COVERED_SIGNER_INFO_FIELDS = ("version", "sid", "digest_algorithm", "signed_attrs", "signature_algorithm",
                               "signature")  # EN 319 122-1 5.5.3 item 3, in their order of appearance


class _Hashes(core.SequenceOf):
    _child_spec = core.OctetString


class ATSHashIndexV3(core.Sequence):
    """EN 319 122-1 5.5.2. ``hashIndAlgorithm`` (DEFAULT sha256) is always written, as EU DSS does and
    expects when it rebuilds the index; an index of another producer that omits it does not parse here."""

    _fields: ClassVar[list] = [
        ("hash_ind_algorithm", algos.DigestAlgorithm),
        ("certificates_hash_index", _Hashes),
        ("crls_hash_index", _Hashes),
        ("unsigned_attr_values_hash_index", _Hashes),
    ]


class _PostalAddress(core.SequenceOf):
    _child_spec = asn1_x509.DirectoryString


class SignerLocation(core.Sequence):
    """RFC 5126 5.10.2 (explicit tags, as its ASN.1 module says); the production place of EN 319 122-1 5.2.5."""

    _fields: ClassVar[list] = [
        ("country_name", asn1_x509.DirectoryString, {"explicit": 0, "optional": True}),
        ("locality_name", asn1_x509.DirectoryString, {"explicit": 1, "optional": True}),
        ("postal_address", _PostalAddress, {"explicit": 2, "optional": True}),
    ]


class ContentHints(core.Sequence):
    """RFC 2634 2.9: a description of the signed content (where the signer's reason goes)."""

    _fields: ClassVar[list] = [
        ("content_description", core.UTF8String, {"optional": True}),
        ("content_type", cms.ContentType),
    ]


register_cms_attribute(ARCHIVE_TIME_STAMP_V3, "archive_time_stamp_v3", cms.ContentInfo)
register_cms_attribute(ATS_HASH_INDEX_V3, "ats_hash_index_v3", ATSHashIndexV3)
register_cms_attribute(SIGNER_LOCATION, "signer_location", SignerLocation)
register_cms_attribute(CONTENT_HINTS, "content_hints", ContentHints)


@dataclass(frozen=True)
class SigningKey:
    """A key of a key source and its certificate chain (DER, own first)."""

    source: KeySource
    label: str
    chain: tuple[bytes, ...]


@dataclass(frozen=True)
class Prepared:
    """Step 1 done: the signed attributes for a signer's certificate; their digest is what gets signed."""

    signed_attrs: bytes  # DER of the CMS SignedAttributes (a SET)
    digest: DigestAlgorithm
    chain: tuple[bytes, ...]  # the signer's certificate first

    @property
    def to_be_signed(self) -> bytes:
        return hashlib.new(self.digest.value, self.signed_attrs).digest()

    @property
    def scheme(self) -> SignatureScheme:
        return _parts(self.chain, self.digest).scheme

    def to_state(self) -> dict[str, Any]:
        """A JSON-able form for two-step signing; :meth:`from_state` reads it back."""
        return {"signed_attrs": base64.b64encode(self.signed_attrs).decode(), "digest": self.digest.value,
                "chain": [base64.b64encode(der).decode() for der in self.chain]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Prepared:
        try:
            chain = tuple(base64.b64decode(der, validate=True) for der in state["chain"])
            prepared = cls(base64.b64decode(state["signed_attrs"], validate=True), DigestAlgorithm(state["digest"]),
                           chain)
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise SiegelError(Code.BAD_REQUEST, "the prepared CAdES state is incomplete or damaged") from None
        if not chain:
            raise SiegelError(Code.BAD_REQUEST, "the prepared CAdES state has no certificate")
        return prepared


@functools.lru_cache(maxsize=128)
def _parts(chain: tuple[bytes, ...], digest: DigestAlgorithm) -> SignerParts:
    """The DER parts of this chain's SignerInfo and SignedData (cached per chain and digest)."""
    if not chain:
        raise SiegelError(Code.KEY_NOT_FOUND, "the key has no certificate to sign with")
    ecdsa = scheme_of(chain[0]) is SignatureScheme.ECDSA
    return cms_parts.signer_parts(chain, digest, f"{digest.value}_{'ecdsa' if ecdsa else 'rsa'}")


def prepare_cades(chain: tuple[bytes, ...], content_digest: bytes, digest: DigestAlgorithm,
                  properties: SignatureProperties | None = None) -> Prepared:
    """Step 1: the signed attributes (content-type, message-digest, signing-time, signing-certificate-v2,
    and those of the signer's ``properties``)."""
    if len(content_digest) != digest.size:
        raise SiegelError(Code.BAD_REQUEST, f"a {digest.value} digest has {digest.size} bytes, "
                                            f"not {len(content_digest)}")
    parts = _parts(chain, digest)
    claims = [claim.dump() for claim in _property_attributes(properties)] if properties is not None else []
    attrs = signed_attributes([_CONTENT_TYPE_DATA, attribute("message_digest", tlv(OCTET_STRING, content_digest)),
                               attribute("signing_time", utc_time(datetime.now(UTC))),
                               parts.signing_certificate_v2, *claims])
    return Prepared(attrs, digest, chain)


def _property_attributes(properties: SignatureProperties) -> list[cms.CMSAttribute]:
    """commitment-type-indication, signer-location, signer-attributes-v2 (the claimed role) and
    content-hints (the reason), for what the signer claims."""
    def attribute(type_: str, value: core.Asn1Value | dict[str, object]) -> cms.CMSAttribute:
        return cms.CMSAttribute({"type": type_, "values": [value]})

    out = []
    if properties.commitment_type:
        out.append(attribute(COMMITMENT_TYPE, {"commitment_type_id": _commitment_oid(properties.commitment_type)}))
    place = properties.production_place
    if place is not None and (place.city or place.postal_code or place.country):
        location: dict[str, object] = {}
        if place.country:
            location["country_name"] = asn1_x509.DirectoryString(name="utf8_string", value=place.country)
        if place.city:
            location["locality_name"] = asn1_x509.DirectoryString(name="utf8_string", value=place.city)
        if place.postal_code:
            location["postal_address"] = [asn1_x509.DirectoryString(name="utf8_string", value=place.postal_code)]
        out.append(attribute(SIGNER_LOCATION, location))
    if properties.claimed_role:
        role = cms.AttCertAttribute({"type": ID_AT_NAME, "values": [core.UTF8String(properties.claimed_role)]})
        out.append(attribute(SIGNER_ATTRIBUTES_V2, {"claimed_attributes": [role]}))
    if properties.reason:
        out.append(attribute(CONTENT_HINTS, {"content_description": properties.reason, "content_type": "data"}))
    return out


def _commitment_oid(commitment: str) -> str:
    """The CAdES OID of a commitment type given as its ETSI URI (or as a dotted OID already)."""
    if commitment in COMMITMENTS:
        return COMMITMENTS[commitment]
    if all(part.isdigit() for part in commitment.split(".")) and commitment.count(".") >= 2:
        return commitment
    raise SiegelError(Code.BAD_REQUEST, f"commitment type {commitment!r} is neither one of the ETSI commitment "
                                        f"types ({', '.join(COMMITMENTS)}) nor an OID")


def check_signature_value(prepared: Prepared, value: bytes) -> None:
    """The value must be the signer certificate's signature over the signed attributes."""
    if not verify_value(prepared.chain[0], prepared.signed_attrs, value, prepared.digest):
        raise SiegelError(Code.BAD_REQUEST, "the signature value does not verify with the signer's certificate "
                                            "over the prepared attributes")


def assemble_cades(prepared: Prepared, value: bytes, *, level: Level = Level.B_B,
                   timestamps: TimestampClient | None = None, content: bytes | None = None,
                   trust_roots: Sequence[bytes] = ()) -> bytes:
    """Step 3: the CMS with the signature value, raised to ``level``; ``content`` inside for an
    enveloping signature. A detached B-LTA needs the content: assemble B-T (or B-LT) and
    :func:`extend_cades` it with the content."""
    _check_level(level, timestamps, trust_roots)
    if level is Level.B_LTA and content is None:
        raise SiegelError(Code.NOT_SUPPORTED, "a detached B-LTA needs the signed content for its archive timestamp: "
                                              "assemble B-T, then extend_cades(..., content=...)")
    parts = _parts(prepared.chain, prepared.digest)
    unsigned = b""
    if level.at_least(Level.B_T) and timestamps is not None:
        token = timestamps.timestamp(hashlib.new(prepared.digest.value, value).digest(), prepared.digest)
        unsigned = signed_attributes([attribute("signature_time_stamp_token", token.token)])
    # version 1: IssuerAndSerialNumber, id-data, no other certificates or revocation formats (RFC 5652 5.1)
    info = cms_parts.signer_info(parts, prepared.signed_attrs, value, unsigned)
    der = cms_parts.signed_data(parts, 1, "data", info, encap_content=content)
    if not level.at_least(Level.B_LT):
        return der
    return extend_cades(der, level, timestamps=timestamps, trust_roots=trust_roots)


def _check_level(level: Level, timestamps: TimestampClient | None, trust_roots: Sequence[bytes]) -> None:
    if level.at_least(Level.B_T) and timestamps is None:
        raise SiegelError(Code.CONFIG, f"{level} needs a time-stamping authority (setting tsa.clients)")
    if level.at_least(Level.B_LT) and not trust_roots:
        raise SiegelError(Code.CONFIG, f"{level} needs trust anchors to prove the signer's and the TSA's "
                                       "certificates valid")


class ClientTimeStamper(TimeStamper):
    """pyHanko's timestamper over our RFC 3161 client: its tokens are checked before they are embedded."""

    def __init__(self, client: TimestampClient) -> None:
        super().__init__(include_nonce=True)
        self._client = client

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> cms.ContentInfo:
        token = await asyncio.to_thread(self._client.timestamp, message_digest, DigestAlgorithm.parse(md_algorithm))
        return cms.ContentInfo.load(token.token)


def sign_cades(key: SigningKey, *, content: bytes | None = None, content_digest: bytes | None = None,
               digest: DigestAlgorithm = DigestAlgorithm.SHA256, level: Level = Level.B_B,
               packaging: Packaging = Packaging.DETACHED, timestamps: TimestampClient | None = None,
               trust_roots: Sequence[bytes] = (), properties: SignatureProperties | None = None) -> bytes:
    """A DER CMS ContentInfo signing ``content``, or (detached only) the given ``content_digest``:
    prepare, sign in the key source, assemble (and, for a detached B-LTA, extend with the content)."""
    if (content is None) == (content_digest is None):
        raise SiegelError(Code.BAD_REQUEST, "sign either the content or its digest")
    if packaging is Packaging.ENVELOPED:
        raise SiegelError(Code.BAD_REQUEST, "a CMS signature is detached or enveloping, never enveloped")
    if content_digest is not None and packaging is not Packaging.DETACHED:
        raise SiegelError(Code.BAD_REQUEST, "a signature over a digest only is detached: the content is not here")
    if content is None and level is Level.B_LTA:
        raise SiegelError(Code.NOT_SUPPORTED, "CAdES B-LTA over a digest alone is not offered: the archive timestamp "
                                              "covers the signed content itself; send the document, or sign B-LT "
                                              "and extend it with the document later")
    _check_level(level, timestamps, trust_roots)
    data_digest = content_digest if content is None else hashlib.new(digest.value, content).digest()
    assert data_digest is not None
    prepared = prepare_cades(key.chain, data_digest, digest, properties)
    value = key.source.sign_digest(key.label, prepared.to_be_signed, digest, prepared.scheme)
    return finish_cades(prepared, value, level=level, packaging=packaging, content=content, timestamps=timestamps,
                        trust_roots=trust_roots)


def finish_cades(prepared: Prepared, value: bytes, *, level: Level, packaging: Packaging, content: bytes | None,
                 timestamps: TimestampClient | None, trust_roots: Sequence[bytes]) -> bytes:
    """Step 3 at any level and packaging: ``content`` inside an enveloping signature; a detached B-LTA is
    assembled B-T and extended with ``content`` (which its archive timestamp covers)."""
    if level is Level.B_LTA and packaging is Packaging.DETACHED:
        signed = assemble_cades(prepared, value, level=Level.B_T, timestamps=timestamps)
        return extend_cades(signed, level, timestamps=timestamps, trust_roots=trust_roots, content=content)
    return assemble_cades(prepared, value, level=level, timestamps=timestamps, trust_roots=trust_roots,
                          content=content if packaging is Packaging.ENVELOPING else None)


# ---------------------------------------------------------------- extension (B-T, B-LT, B-LTA)

def extend_cades(signature: bytes, level: Level, *, timestamps: TimestampClient | None,
                 trust_roots: Sequence[bytes], content: bytes | None = None) -> bytes:
    """``signature`` (a DER CMS SignedData, ours or another producer's) raised to ``level`` for each of
    its signers: a signature-time-stamp where there is none (B-T); the certificates and revocation
    values of every signer's and every TSA's chain (B-LT); an archive-time-stamp-v3 (B-LTA; a detached
    signature needs its ``content``). What is there stays; B-LTA on a B-LTA adds the next archive timestamp."""
    _check_level(level, timestamps, trust_roots)
    info = _content_info(signature)
    signed_content = _signed_content(info["content"], content) if level is Level.B_LTA else b""
    if timestamps is not None and level.at_least(Level.B_T):
        info = _with_signature_timestamps(info, timestamps)
    if level.at_least(Level.B_LT):
        info = _with_validation_data(info, trust_roots)
    if timestamps is not None and level is Level.B_LTA:
        info = _with_archive_timestamps(info, timestamps, signed_content)
    return bytes(info.dump())


def _content_info(signature: bytes) -> cms.ContentInfo:
    try:
        info = cms.ContentInfo.load(signature)
        if info["content_type"].native != "signed_data":
            raise ValueError(f"content type {info['content_type'].native}")
        if not len(info["content"]["signer_infos"]):
            raise ValueError("no SignerInfo")
    except (ValueError, TypeError, KeyError) as exc:
        raise SiegelError(Code.BAD_REQUEST, f"the signature is not a CMS SignedData with a signer ({exc})") from None
    return info


def _reloaded(info: cms.ContentInfo) -> cms.ContentInfo:
    """``info`` as encoded: what later steps hash is what the output carries (a SET OF gets sorted on encoding)."""
    return cms.ContentInfo.load(info.dump())


def _items(value: core.Asn1Value) -> list[core.Asn1Value]:
    """The elements of an optional SET OF / SEQUENCE OF (none when it is absent)."""
    return [] if isinstance(value, core.Void) else list(value)


def _digest_of(signer_info: cms.SignerInfo) -> DigestAlgorithm:
    """The signer's digest algorithm for its timestamps; SHA-256 when it used one we do not offer."""
    try:
        return DigestAlgorithm(signer_info["digest_algorithm"]["algorithm"].native)
    except ValueError:
        return DigestAlgorithm.SHA256


def _add_unsigned(signer_info: cms.SignerInfo, type_: str, value: core.Asn1Value) -> None:
    """``type_`` a name asn1crypto knows, or a dotted OID (names registered after its first use are not known)."""
    attribute = cms.CMSAttribute({"type": type_, "values": [value]})
    signer_info["unsigned_attrs"] = cms.CMSAttributes(_items(signer_info["unsigned_attrs"]) + [attribute])


def _with_signature_timestamps(info: cms.ContentInfo, timestamps: TimestampClient) -> cms.ContentInfo:
    for signer_info in info["content"]["signer_infos"]:
        if any(a["type"].native == "signature_time_stamp_token" for a in _items(signer_info["unsigned_attrs"])):
            continue
        digest = _digest_of(signer_info)
        token = timestamps.timestamp(hashlib.new(digest.value, signer_info["signature"].native).digest(), digest)
        _add_unsigned(signer_info, "signature_time_stamp_token", cms.ContentInfo.load(token.token))
    return _reloaded(info)


def _certificates(signed_data: cms.SignedData) -> list[bytes]:
    return [c.chosen.dump() for c in _items(signed_data["certificates"]) if c.name == "certificate"]


def chain_of(signer_info: cms.SignerInfo, certificates: Sequence[bytes]) -> list[bytes]:
    """The certificate ``signer_info`` names first, then the other certificates (the path is built from them)."""
    sid = signer_info["sid"]
    for der in certificates:
        cert = asn1_x509.Certificate.load(der)
        if sid.name == "issuer_and_serial_number":
            named = cert.issuer == sid.chosen["issuer"] and cert.serial_number == sid.chosen["serial_number"].native
        else:
            named = cert.key_identifier == sid.chosen.native
        if named:
            return [der] + [other for other in certificates if other != der]
    raise SiegelError(Code.BAD_REQUEST, "a signer's certificate is not in its signature")


def _timestamp_tokens(signer_info: cms.SignerInfo) -> list[cms.ContentInfo]:
    return [value for attribute in _items(signer_info["unsigned_attrs"])
            if attribute["type"].native in _TIMESTAMP_ATTRIBUTES for value in attribute["values"]]


def _validation_data(signed_data: cms.SignedData, trust_roots: Sequence[bytes]) -> ValidationData:
    """What proves every signer's certificate and every timestamp's TSA certificate valid now."""
    certificates = _certificates(signed_data)
    data = ValidationData((), (), ())
    for signer_info in signed_data["signer_infos"]:
        data += collect_validation_data(chain_of(signer_info, certificates), trust_roots)
        for token in _timestamp_tokens(signer_info):
            token_data = token["content"]
            chain = chain_of(token_data["signer_infos"][0], _certificates(token_data) + certificates)
            data += collect_validation_data(chain, trust_roots)
    return data


def _with_validation_data(info: cms.ContentInfo, trust_roots: Sequence[bytes]) -> cms.ContentInfo:
    """B-LT: the certificates in ``SignedData.certificates``; CRLs (CertificateList) and OCSP responses
    (``other``, id-ri-ocsp-response) in ``SignedData.crls``; each value once."""
    signed_data = info["content"]
    data = _validation_data(signed_data, trust_roots)
    present = set(_certificates(signed_data))
    signed_data["certificates"] = cms.CertificateSet(_items(signed_data["certificates"]) + [
        cms.CertificateChoices(name="certificate", value=asn1_x509.Certificate.load(der))
        for der in data.certificates if der not in present])
    revocation = _items(signed_data["crls"])
    known = {choice.dump() for choice in revocation}
    revocation += [choice for choice in _revocation_choices(data) if choice.dump() not in known]
    if revocation:
        signed_data["crls"] = cms.RevocationInfoChoices(revocation)
    if any(choice.name == "other" for choice in revocation):
        signed_data["version"] = "v5"  # RFC 5652 5.1: other revocation formats make SignedData version 5
    return _reloaded(info)


def _revocation_choices(data: ValidationData) -> list[cms.RevocationInfoChoice]:
    return [cms.RevocationInfoChoice(name="crl", value=crl.CertificateList.load(der)) for der in data.crls] + [
        cms.RevocationInfoChoice(name="other", value={"other_rev_info_format": "ocsp_response",
                                                      "other_rev_info": asn1_ocsp.OCSPResponse.load(der)})
        for der in data.ocsps]


def _signed_content(signed_data: cms.SignedData, content: bytes | None) -> bytes:
    """The content the signers signed: the embedded one, else ``content``, which must be what every
    signer's message-digest attribute names."""
    embedded = signed_data["encap_content_info"]["content"]
    data = content if isinstance(embedded, core.Void) else bytes(embedded)
    if data is None:
        raise SiegelError(Code.NOT_SUPPORTED, "a B-LTA archive timestamp covers the signed content: a detached "
                                              "signature is extended to B-LTA only with its content (a signature "
                                              "over a digest alone cannot be)")
    for signer_info in signed_data["signer_infos"]:
        digests = [a["values"][0].native for a in _items(signer_info["signed_attrs"])
                   if a["type"].native == "message_digest"]
        algorithm = signer_info["digest_algorithm"]["algorithm"].native
        try:
            computed = hashlib.new(algorithm, data).digest()
        except ValueError:
            raise SiegelError(Code.NOT_SUPPORTED, f"the signer's digest algorithm {algorithm} is not known") from None
        if digests != [computed]:
            raise SiegelError(Code.BAD_REQUEST, "the content given is not the content the signature signs "
                                                "(its message-digest differs)")
    return data


def _ats_hash_index(signed_data: cms.SignedData, signer_info: cms.SignerInfo,
                   digest: DigestAlgorithm) -> ATSHashIndexV3:
    """EN 319 122-1 5.5.2: a hash of every CertificateChoices, every RevocationInfoChoice and, for every
    unsigned attribute value, of the attribute's attrType followed by that AttributeValue (all as encoded)."""
    def hashed(data: bytes) -> bytes:
        return hashlib.new(digest.value, data).digest()

    return ATSHashIndexV3({
        "hash_ind_algorithm": {"algorithm": digest.value},
        "certificates_hash_index": [hashed(c.dump()) for c in _items(signed_data["certificates"])],
        "crls_hash_index": [hashed(r.dump()) for r in _items(signed_data["crls"])],
        "unsigned_attr_values_hash_index": [hashed(a["type"].dump() + v.dump())
                                            for a in _items(signer_info["unsigned_attrs"]) for v in a["values"]],
    })


def archive_imprint(signed_data: cms.SignedData, signer_info: cms.SignerInfo, hash_index: ATSHashIndexV3,
                    content: bytes, digest: DigestAlgorithm) -> bytes:
    """EN 319 122-1 5.5.3: the message imprint of an archive-time-stamp-v3, the hash of eContentType,
    the hash of the signed content, the SignerInfo's version, sid, digestAlgorithm, signedAttrs,
    signatureAlgorithm and signature, and the ats-hash-index-v3, each with its tag and length as encoded."""
    parts = [signed_data["encap_content_info"]["content_type"].dump(), hashlib.new(digest.value, content).digest()]
    parts += [signer_info[name].dump() for name in _COVERED_SIGNER_INFO_FIELDS]
    parts.append(hash_index.dump())
    return hashlib.new(digest.value, b"".join(parts)).digest()


def _with_archive_timestamps(info: cms.ContentInfo, timestamps: TimestampClient, content: bytes) -> cms.ContentInfo:
    """B-LTA: each SignerInfo gets an archive-time-stamp-v3 whose token carries, as an unsigned attribute
    of its own SignerInfo, the ats-hash-index-v3 its imprint covers."""
    signed_data = info["content"]
    for signer_info in signed_data["signer_infos"]:
        digest = _digest_of(signer_info)
        index = _ats_hash_index(signed_data, signer_info, digest)
        token = timestamps.timestamp(archive_imprint(signed_data, signer_info, index, content, digest), digest)
        stamp = cms.ContentInfo.load(token.token)
        _add_unsigned(stamp["content"]["signer_infos"][0], ATS_HASH_INDEX_V3, index)
        _add_unsigned(signer_info, ARCHIVE_TIME_STAMP_V3, stamp)
        _declare_digest(signed_data, digest)
    return _reloaded(info)


def _declare_digest(signed_data: cms.SignedData, digest: DigestAlgorithm) -> None:
    """The archive timestamp's hash algorithm in SignedData.digestAlgorithms (EN 319 122-1 5.5.3 recommends it)."""
    declared = _items(signed_data["digest_algorithms"])
    if all(a["algorithm"].native != digest.value for a in declared):
        signed_data["digest_algorithms"] = cms.DigestAlgorithms(declared + [algos.DigestAlgorithm(
            {"algorithm": digest.value})])
