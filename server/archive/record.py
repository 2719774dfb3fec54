"""The one model of an evidence record, whatever the encoding (RFC 4998 ASN.1 or RFC 6283 XML), and renewals.

An :class:`EvidenceRecord` is a sequence of chains; each chain a sequence of Archive Time-Stamps
(ATS) of one hash algorithm. The first ATS of the first chain covers the data object through its
reduced hash tree. Timestamp renewal (RFC 4998 section 5.2) appends an ATS to the last chain over
the previous ATS's ``timeStamp`` (:func:`timestamp_renewal_digest`); hash-tree renewal (section 5.3)
starts a new chain whose first ATS covers H(h(d) + ha), ha = H(the whole previous ATS sequence)
(:func:`hashtree_renewal_leaf`) — in the RFC's order, as BouncyCastle 1.72 (Debian) and the EU DSS
vectors make it; reported erratum 7411 would sort the pair, which the verifier accepts as well. These are the ASN.1 rules; RFC 6283 hashes canonical XML instead,
which ``server.archive.xmlers`` owns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from server.archive.hashtree import Reduced, digest


@dataclass(slots=True)
class ArchiveTimestamp:
    """One ATS: the reduced hash tree from the covered value(s) to the root, and the RFC 3161 token on the root.

    Not frozen, yet never changed once made (like :class:`EvidenceRecord`): deriving every record of a tree makes a
    million of each, and a frozen dataclass takes twice as long to construct."""

    digest_algorithm: str
    reduced_tree: Reduced
    """Empty: the timestamp covers the hash directly."""
    timestamp: bytes
    """DER ContentInfo of the RFC 3161 token."""
    attributes: bytes | None = None
    """DER of the ATS's ``attributes`` (RFC 4998), kept as read; Siegel writes none."""
    encoded: bytes | None = field(default=None, compare=False, repr=False)
    """The ATS exactly as decoded (DER in an ERS, the element in an XMLERS): what a later renewal hashed."""


@dataclass(slots=True)
class EvidenceRecord:
    """RFC 4998 EvidenceRecord / RFC 6283 EvidenceRecord."""

    digest_algorithms: tuple[str, ...]
    chains: tuple[tuple[ArchiveTimestamp, ...], ...]
    """ArchiveTimeStampSequence: the chains, oldest first; each chain's ATSs oldest first."""
    crypto_infos: bytes | None = None
    """DER of RFC 4998 ``cryptoInfos`` (verification data for the timestamps), kept as read."""
    syntax: str = "ers"
    """What the renewals hashed: "ers" (RFC 4998 DER), "xml" (RFC 6283 canonical XML) or "both" (each renewal
    ATS's first partial hash tree holds the ERS and the XMLERS renewal hash: either encoding verifies)."""
    encoded: bytes | None = field(default=None, compare=False, repr=False)
    """The record exactly as decoded (an XMLERS's renewal hashes are taken from its elements)."""


def initial_record(timestamp: ArchiveTimestamp) -> EvidenceRecord:
    """The record of a data object right after its tree's root was timestamped."""
    return EvidenceRecord((timestamp.digest_algorithm,), ((timestamp,),))


def timestamp_renewal_digest(previous: ArchiveTimestamp, algorithm: str) -> bytes:
    """What the next ATS of the chain covers (RFC 4998 5.2): the hash of the previous ATS's ``timeStamp`` field."""
    return digest(algorithm, previous.timestamp)


def sequence_digest(record: EvidenceRecord, algorithm: str) -> bytes:
    """ha(i) of RFC 4998 5.3: the hash of the DER ArchiveTimeStampSequence of ``record``'s chains."""
    from server.archive.ers import encode_sequence  # ers encodes this module's model

    return digest(algorithm, encode_sequence(record.chains))


def hashtree_renewal_leaf(document_hash: bytes, record: EvidenceRecord, algorithm: str) -> bytes:
    """The leaf of a new chain (RFC 4998 5.3): H(h(d) + ha) with ``document_hash`` = h(d) in ``algorithm``."""
    return digest(algorithm, document_hash + sequence_digest(record, algorithm))


def renew_timestamp(record: EvidenceRecord, timestamp: ArchiveTimestamp) -> EvidenceRecord:
    """``record`` with ``timestamp`` appended to its last chain (timestamp renewal)."""
    last = record.chains[-1]
    if timestamp.digest_algorithm != last[0].digest_algorithm:
        raise ValueError(f"a timestamp renewal keeps the chain's algorithm {last[0].digest_algorithm}, "
                         f"not {timestamp.digest_algorithm}")
    return EvidenceRecord(record.digest_algorithms, (*record.chains[:-1], (*last, timestamp)), record.crypto_infos,
                          record.syntax)


def renew_hashtree(record: EvidenceRecord, timestamp: ArchiveTimestamp) -> EvidenceRecord:
    """``record`` with a new chain starting with ``timestamp`` (hash-tree renewal)."""
    algorithms = record.digest_algorithms
    if timestamp.digest_algorithm not in algorithms:
        algorithms = (*algorithms, timestamp.digest_algorithm)
    return EvidenceRecord(algorithms, (*record.chains, (timestamp,)), record.crypto_infos, record.syntax)
