"""RFC 4998 hash trees (server.archive.hashtree) and the record model's renewal inputs (server.archive.record)."""

from __future__ import annotations

import hashlib

import pytest

from server.archive import hashtree, record
from server.archive.hashtree import HashTree, build, root_of
from server.archive.record import ArchiveTimestamp, EvidenceRecord
from server.errors import SiegelError


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _pair(a: bytes, b: bytes) -> bytes:
    return _h(min(a, b) + max(a, b))


LEAVES = [_h(bytes([i])) for i in range(40)]


def test_one_leaf_is_its_own_root_with_an_empty_reduced_tree() -> None:
    tree = build(LEAVES[:1], "sha256")
    assert tree.root == LEAVES[0]
    assert len(tree) == 1
    assert tree.reduced(0) == ()
    assert root_of(LEAVES[0], (), "sha256") == LEAVES[0]


def test_pairs_are_hashed_sorted_and_an_odd_node_goes_up_unchanged() -> None:
    a, b, c = LEAVES[:3]
    tree = build([a, b, c], "sha256")
    assert tree.root == _pair(_pair(a, b), c)
    assert build([b, a, c], "sha256").root == tree.root  # order inside a pair does not matter
    assert tree.reduced(2) == ((c, _pair(a, b)),)  # c has no neighbour on the leaf level
    assert tree.reduced(0) == ((a, b), (c,))
    five = build(LEAVES[:5], "sha256")
    left = _pair(_pair(LEAVES[0], LEAVES[1]), _pair(LEAVES[2], LEAVES[3]))
    assert five.root == _pair(left, LEAVES[4])
    assert five.reduced(4) == ((LEAVES[4], left),)


@pytest.mark.parametrize("count", range(1, 41))
def test_every_reduced_tree_leads_to_the_root(count: int) -> None:
    tree = build(LEAVES[:count], "sha256")
    for index in range(count):
        reduced = tree.reduced(index)
        assert reduced == () or LEAVES[index] in reduced[0]
        assert root_of(LEAVES[index], reduced, "sha256") == tree.root
    assert tree.leaf(count - 1) == LEAVES[count - 1]

    assert list(tree.reduced_all()) == [tree.reduced(index) for index in range(count)]


def test_root_of_follows_rfc4998_for_partial_trees_of_any_size() -> None:
    a, b, c, d, e = LEAVES[:5]
    first = _h(b"".join(sorted([a, b, c])))
    assert root_of(b, [(a, b, c), (d, e)], "sha256") == _h(b"".join(sorted([first, d, e])))
    with pytest.raises(SiegelError, match="not in the first partial hash tree"):
        root_of(d, [(a, b, c)], "sha256")


@pytest.mark.parametrize("count", [1, 2, 3, 7, 8, 9, 33])
def test_compact_bytes_round_trip(count: int) -> None:
    tree = build(LEAVES[:count], "sha256")
    again = HashTree.from_bytes("sha256", tree.to_bytes())
    assert len(again) == count and again.root == tree.root
    assert [again.reduced(i) for i in range(count)] == [tree.reduced(i) for i in range(count)]


def test_bad_inputs_are_siegel_errors() -> None:
    with pytest.raises(SiegelError, match="at least one leaf"):
        build([], "sha256")
    with pytest.raises(SiegelError, match="32 bytes"):
        build([LEAVES[0], b"short"], "sha256")
    with pytest.raises(SiegelError, match="not supported"):
        build(LEAVES[:2], "md5")
    with pytest.raises(SiegelError, match="multiple of 32"):
        HashTree.from_bytes("sha256", b"x" * 33)
    with pytest.raises(SiegelError, match="no complete hash tree"):
        HashTree.from_bytes("sha256", b"x" * 32 * 4)  # 4 hashes: 2 leaves make 3, 3 leaves make 6
    with pytest.raises(IndexError):
        build(LEAVES[:3], "sha256").reduced(3)


def test_other_algorithms() -> None:
    leaves = [hashlib.sha512(bytes([i])).digest() for i in range(3)]
    tree = build(leaves, "sha512")
    assert tree.root == hashlib.sha512(min(
        hashlib.sha512(min(leaves[0], leaves[1]) + max(leaves[0], leaves[1])).digest(), leaves[2]) + max(
        hashlib.sha512(min(leaves[0], leaves[1]) + max(leaves[0], leaves[1])).digest(), leaves[2])).digest()
    assert hashtree.digest("sha384", b"x") == hashlib.sha384(b"x").digest()


def _ats(token: bytes, algorithm: str = "sha256") -> ArchiveTimestamp:
    return ArchiveTimestamp(algorithm, ((LEAVES[0], LEAVES[1]),), token)


def test_timestamp_renewal_covers_the_previous_timestamp_field() -> None:
    previous = _ats(b"\x30\x03token")
    assert record.timestamp_renewal_digest(previous, "sha256") == _h(b"\x30\x03token")
    renewed = record.renew_timestamp(record.initial_record(previous), _ats(b"next"))
    assert [len(chain) for chain in renewed.chains] == [2]
    with pytest.raises(ValueError, match="keeps the chain's algorithm"):
        record.renew_timestamp(renewed, _ats(b"x", "sha512"))


def test_hashtree_renewal_leaf_joins_document_and_sequence_hash_in_rfc_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from server.archive import ers

    initial = record.initial_record(_ats(b"token"))
    monkeypatch.setattr(ers, "encode_sequence", lambda chains: b"SEQUENCE" + chains[0][0].timestamp)
    document = hashlib.sha512(b"document").digest()
    ha = hashlib.sha512(b"SEQUENCEtoken").digest()
    assert record.hashtree_renewal_leaf(document, initial, "sha512") == hashlib.sha512(document + ha).digest()
    renewed = record.renew_hashtree(initial, _ats(b"new", "sha512"))
    assert renewed.digest_algorithms == ("sha256", "sha512")
    assert [len(chain) for chain in renewed.chains] == [1, 1]
    assert isinstance(renewed, EvidenceRecord)


@pytest.mark.parametrize("count", [1, 2, 5])
def test_a_group_replaces_its_leaf(count: int) -> None:
    group = [LEAVES[30], LEAVES[31]]
    leaves = [hashtree.group_hash("sha256", group), *LEAVES[:count - 1]]
    tree = build(leaves, "sha256")
    reduced = hashtree.grouped(tree.reduced(0), group)
    assert reduced[0] == tuple(group)
    assert root_of(LEAVES[31], reduced, "sha256") == tree.root
