"""RFC 4998 DER evidence records (server.archive.ers): round trip, the implicit tags, refusals of malformed input."""

from __future__ import annotations

import hashlib

import pytest
from asn1crypto import algos, core

from server.archive import ers
from server.archive.record import ArchiveTimestamp, EvidenceRecord
from server.errors import Code, SiegelError

# ContentInfo { id-signedData, [0] { SEQUENCE {} } }: enough for the record layer, which does not verify tokens
TOKEN = bytes.fromhex("300f06092a864886f70d010702a0023000")
H = [hashlib.sha256(bytes([i])).digest() for i in range(4)]


def _record(**changes: object) -> EvidenceRecord:
    first = ArchiveTimestamp("sha256", ((H[0], H[1]), (H[2],)), TOKEN)
    renewal = ArchiveTimestamp("sha256", (), TOKEN)
    fields: dict[str, object] = {"digest_algorithms": ("sha256",), "chains": ((first, renewal),)}
    fields.update(changes)
    return EvidenceRecord(**fields)  # type: ignore[arg-type]


def test_round_trip_keeps_the_model_and_each_timestamps_der() -> None:
    record = _record()
    der = ers.encode(record)
    again = ers.decode(der)
    assert again == record
    assert all(a.encoded is not None for a in again.chains[0])
    assert ers.encode(again) == der
    assert again.chains[0][0].encoded == ers.encode_timestamp(record.chains[0][0])


def test_implicit_tags_of_rfc4998() -> None:
    ats = ers.encode_timestamp(_record().chains[0][0])
    contents = core.Sequence.load(ats).contents
    algorithm = algos.DigestAlgorithm({"algorithm": "sha256"}).contents
    assert contents.startswith(bytes([0xA0, len(algorithm)]) + algorithm)  # [0] IMPLICIT AlgorithmIdentifier
    tree = contents[2 + len(algorithm):]
    assert tree[0] == 0xA2  # [2] IMPLICIT SEQUENCE OF PartialHashtree, then the token
    assert contents.endswith(TOKEN)


def test_crypto_infos_are_kept() -> None:
    attribute = bytes.fromhex("300b0603550403310413024e4e")  # Attribute {cn, {"NN"}}
    crypto = bytes.fromhex("300d") + attribute
    record = _record(crypto_infos=crypto)
    assert ers.decode(ers.encode(record)).crypto_infos == crypto


@pytest.mark.parametrize("data, message", [
    (b"garbage", "not a DER EvidenceRecord"),
    (b"", "not a DER EvidenceRecord"),
])
def test_garbage_is_malformed(data: bytes, message: str) -> None:
    with pytest.raises(SiegelError, match=message) as caught:
        ers.decode(data)
    assert caught.value.code is Code.BAD_REQUEST


def _raw(record: EvidenceRecord) -> ers.ASN1EvidenceRecord:
    return ers.ASN1EvidenceRecord.load(ers.encode(record))


def test_version_encryption_and_lengths_are_checked() -> None:
    value = _raw(_record())
    value["version"] = 2
    with pytest.raises(SiegelError, match="version 2"):
        ers.decode(value.dump(force=True))
    value = _raw(_record())
    value["encryption_info"] = ers.EncryptionInfo({"encryption_info_type": "1.2.3.4", "encryption_info_value": core.Null()})
    with pytest.raises(SiegelError, match="encrypted data") as caught:
        ers.decode(value.dump(force=True))
    assert caught.value.code is Code.NOT_SUPPORTED
    short = ArchiveTimestamp("sha256", ((b"short", H[1]),), TOKEN)
    with pytest.raises(SiegelError, match="not 32 bytes"):
        ers.decode(ers.encode(_record(chains=((short,),))))
    with pytest.raises(SiegelError, match="at least one ArchiveTimeStamp"):
        ers.decode(ers.encode(_record(chains=())))


def test_unknown_hash_algorithm_is_not_supported() -> None:
    value = _raw(_record())
    value["digest_algorithms"] = ers.DigestAlgorithms([algos.DigestAlgorithm({"algorithm": "md5"})])
    with pytest.raises(SiegelError, match="md5") as caught:
        ers.decode(value.dump(force=True))
    assert caught.value.code is Code.NOT_SUPPORTED


def test_a_token_that_is_no_signed_data_is_refused() -> None:
    data = bytes.fromhex("300f06092a864886f70d010701a0023000")  # id-data instead of id-signedData
    with pytest.raises(SiegelError, match="no CMS SignedData"):
        ers.decode(ers.encode(_record(chains=((ArchiveTimestamp("sha256", (), data),),))))
