"""RFC 4998 section 3 EvidenceRecord in DER (asn1crypto classes) to and from :mod:`server.archive.record`.

The module of RFC 4998 has IMPLICIT tags. ``cryptoInfos`` (data to verify the timestamps) is kept as
read and written back; ``encryptionInfo`` (the archived data were encrypted) is refused: Siegel
neither makes such records nor can verify one without the decryption it names. An ATS without
``digestAlgorithm`` takes its timestamp's message imprint algorithm (RFC 4998 section 4.1). Every
decoded ATS keeps its original DER in ``encoded`` so that the ATS sequence a hash-tree renewal
hashed is re-encoded byte for byte. Malformed input is a SiegelError naming what is wrong.
"""

from __future__ import annotations

from asn1crypto import algos, cms, core

from server.archive.hashtree import HASHES
from server.archive.record import ArchiveTimestamp, EvidenceRecord
from server.errors import Code, SiegelError
from server.validation.timestamps import message_imprint


class PartialHashtree(core.SequenceOf):
    _child_spec = core.OctetString


class ReducedHashtree(core.SequenceOf):
    _child_spec = PartialHashtree


class Attributes(core.SetOf):
    _child_spec = cms.CMSAttribute


class ASN1ArchiveTimeStamp(core.Sequence):
    _fields = [
        ("digest_algorithm", algos.DigestAlgorithm, {"implicit": 0, "optional": True}),
        ("attributes", Attributes, {"implicit": 1, "optional": True}),
        ("reduced_hashtree", ReducedHashtree, {"implicit": 2, "optional": True}),
        ("time_stamp", core.Any),  # ContentInfo of the token: parsed where it is verified
    ]


class ArchiveTimeStampChain(core.SequenceOf):
    _child_spec = ASN1ArchiveTimeStamp


class ArchiveTimeStampSequence(core.SequenceOf):
    _child_spec = ArchiveTimeStampChain


class CryptoInfos(core.SequenceOf):
    _child_spec = cms.CMSAttribute


class EncryptionInfo(core.Sequence):
    _fields = [("encryption_info_type", core.ObjectIdentifier), ("encryption_info_value", core.Any)]


class DigestAlgorithms(core.SequenceOf):
    _child_spec = algos.DigestAlgorithm


class ASN1EvidenceRecord(core.Sequence):
    _fields = [
        ("version", core.Integer),
        ("digest_algorithms", DigestAlgorithms),
        ("crypto_infos", CryptoInfos, {"implicit": 0, "optional": True}),
        ("encryption_info", EncryptionInfo, {"implicit": 1, "optional": True}),
        ("archive_time_stamp_sequence", ArchiveTimeStampSequence),
    ]


def _bad(message: str) -> SiegelError:
    return SiegelError(Code.BAD_REQUEST, f"malformed RFC 4998 evidence record: {message}")


def _algorithm_id(name: str) -> algos.DigestAlgorithm:
    return algos.DigestAlgorithm({"algorithm": name})


def _algorithm_name(value: algos.DigestAlgorithm) -> str:
    name = value["algorithm"].native
    if name not in HASHES:
        raise SiegelError(Code.NOT_SUPPORTED, f"evidence record uses the hash algorithm {name}, "
                                              f"which Siegel does not know (known: {', '.join(HASHES)})")
    return name


def _asn1_timestamp(ats: ArchiveTimestamp) -> ASN1ArchiveTimeStamp:
    if ats.encoded is not None and ats.encoded[:1] == b"\x30":
        return ASN1ArchiveTimeStamp.load(ats.encoded)
    value = ASN1ArchiveTimeStamp({"digest_algorithm": _algorithm_id(ats.digest_algorithm),
                                  "time_stamp": core.Any.load(ats.timestamp)})
    if ats.attributes is not None:
        value["attributes"] = Attributes.load(ats.attributes)
    if ats.reduced_tree:
        value["reduced_hashtree"] = ReducedHashtree([PartialHashtree(list(group)) for group in ats.reduced_tree])
    return value


def encode_timestamp(ats: ArchiveTimestamp) -> bytes:
    """DER of one ArchiveTimeStamp (its original bytes when it was decoded)."""
    return _asn1_timestamp(ats).dump()


def encode_sequence(chains: tuple[tuple[ArchiveTimestamp, ...], ...]) -> bytes:
    """DER of an ArchiveTimeStampSequence (what RFC 4998 5.3 hashes into a hash-tree renewal)."""
    return ArchiveTimeStampSequence([ArchiveTimeStampChain([_asn1_timestamp(a) for a in chain])
                                     for chain in chains]).dump()


def encode(record: EvidenceRecord) -> bytes:
    """DER of ``record``."""
    value = ASN1EvidenceRecord({
        "version": 1,
        "digest_algorithms": DigestAlgorithms([_algorithm_id(n) for n in record.digest_algorithms]),
        "archive_time_stamp_sequence": ArchiveTimeStampSequence.load(encode_sequence(record.chains)),
    })
    if record.crypto_infos is not None:
        value["crypto_infos"] = CryptoInfos.load(record.crypto_infos)
    return value.dump()


def decode(data: bytes) -> EvidenceRecord:
    """The record in ``data`` (DER; BER is refused, since renewal hashes depend on exact encodings)."""
    try:
        value = ASN1EvidenceRecord.load(data, strict=True)
        version = value["version"].native
        encrypted = value["encryption_info"]
        encrypted.native
        algorithm_ids = list(value["digest_algorithms"])
        sequence = [list(chain) for chain in value["archive_time_stamp_sequence"]]
        crypto = value["crypto_infos"]
        crypto.native
    except (ValueError, TypeError) as exc:
        raise _bad(f"not a DER EvidenceRecord ({exc})") from None
    if version != 1:
        raise _bad(f"version {value['version'].native} (only v1 exists)")
    if value["encryption_info"].native is not None:
        raise SiegelError(Code.NOT_SUPPORTED, "evidence record over encrypted data (encryptionInfo "
                                              f"{value['encryption_info']['encryption_info_type'].dotted}): "
                                              "Siegel verifies only records over the data as archived")
    algorithms = tuple(_algorithm_name(a) for a in algorithm_ids)
    chains = tuple(tuple(_decode_timestamp(ats, i, j) for j, ats in enumerate(chain))
                   for i, chain in enumerate(sequence))
    if not chains or not all(chains):
        raise _bad("the ArchiveTimeStampSequence and each of its chains need at least one ArchiveTimeStamp")
    return EvidenceRecord(algorithms, chains, None if crypto.native is None else crypto.untag().dump())


def _decode_timestamp(value: ASN1ArchiveTimeStamp, chain: int, index: int) -> ArchiveTimestamp:
    where = f"chain {chain + 1}, ATS {index + 1}"
    try:
        token = value["time_stamp"].dump()
        content_type = cms.ContentInfo.load(token)["content_type"].native
        declared = value["digest_algorithm"].native
        groups = [[bytes(v.native) for v in group] for group in value["reduced_hashtree"]]
        attributes = value["attributes"]
        attributes.native
    except (ValueError, TypeError) as exc:
        raise _bad(f"{where}: {exc}") from None
    if content_type != "signed_data":
        raise _bad(f"{where}: the timeStamp is no CMS SignedData")
    if declared is not None:
        algorithm = _algorithm_name(value["digest_algorithm"])
    else:
        try:
            algorithm = message_imprint(token)[0]
        except ValueError as exc:
            raise _bad(f"{where}: {exc}") from None
        if algorithm not in HASHES:
            raise SiegelError(Code.NOT_SUPPORTED, f"{where}: hash algorithm {algorithm} is not known")
    size = HASHES[algorithm]().digest_size
    reduced = tuple(tuple(group) for group in groups)
    if any(not group for group in reduced):
        raise _bad(f"{where}: an empty partial hash tree")
    if any(len(v) != size for group in reduced for v in group):
        raise _bad(f"{where}: a hash value in the reduced hash tree is not {size} bytes ({algorithm})")
    return ArchiveTimestamp(algorithm, reduced, token,
                            None if attributes.native is None else attributes.untag().dump(), value.dump())
