"""RFC 4998 section 4.2 hash trees over data-object hash values (the leaves are hashes already).

The tree is binary, in the leaves' given order: each level pairs neighbours (0,1), (2,3), … and a
father is the hash of the pair concatenated in binary ascending order; an odd last node has no
neighbour and goes up unchanged (a group of one is not hashed — BouncyCastle's
``BinaryTreeRootCalculator``/``ERSUtil.computeNodeHash`` and EU DSS agree). One leaf is its own root.

A reduced hash tree (RFC 4998 section 4.3) for a leaf is, bottom up, its partial hash trees: the
first holds the leaf and its first neighbour, each further one the neighbour on the next level that
has one. A one-leaf tree has an empty reduced tree: the timestamp covers the leaf directly (RFC 4998
lets ``reducedHashtree`` be absent then). :func:`root_of` is the verifier's side of RFC 4998
section 4.3 and takes partial hash trees of any size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from server.errors import Code, SiegelError

HASHES: dict[str, Callable[..., Any]] = {
    "sha1": hashlib.sha1,
    "sha224": hashlib.sha224,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
    "sha3_256": hashlib.sha3_256,
    "sha3_384": hashlib.sha3_384,
    "sha3_512": hashlib.sha3_512,
}
"""The hash algorithms a tree (and an evidence record read from elsewhere) may use, by the
``server.signing.keysource.DigestAlgorithm`` / hashlib name; which of them are still strong enough
is the verifier's and the service's concern."""

Reduced = tuple[tuple[bytes, ...], ...]


def hasher(algorithm: str) -> Callable[..., Any]:
    """The hashlib constructor of ``algorithm``; an unknown name is a SiegelError."""
    try:
        return HASHES[algorithm]
    except KeyError:
        raise SiegelError(Code.NOT_SUPPORTED, f"hash algorithm {algorithm!r} is not supported for hash trees "
                                              f"(use one of {', '.join(HASHES)})") from None


def digest(algorithm: str, data: bytes) -> bytes:
    """``algorithm`` over ``data``."""
    return hasher(algorithm)(data).digest()


def group_hash(algorithm: str, values: Sequence[bytes]) -> bytes:
    """The father of a group: its values sorted binary ascending, concatenated, hashed (one value: itself)."""
    if len(values) == 1:
        return values[0]
    return hasher(algorithm)(b"".join(sorted(values))).digest()


class HashTree:
    """A built tree: every level as one ``bytes`` of fixed-size hashes (leaves first, root last)."""

    __slots__ = ("algorithm", "_size", "_levels", "_counts")

    def __init__(self, algorithm: str, levels: list[bytes]) -> None:
        self.algorithm = algorithm
        self._size = hasher(algorithm)().digest_size
        self._levels = levels
        self._counts = [len(level) // self._size for level in levels]

    @property
    def root(self) -> bytes:
        """The superordinate hash value the timestamp covers."""
        return self._levels[-1]

    def __len__(self) -> int:
        return self._counts[0]

    def leaf(self, index: int) -> bytes:
        """The hash value of leaf ``index``."""
        self._check(index)
        return self._levels[0][index * self._size:(index + 1) * self._size]

    def reduced(self, index: int) -> Reduced:
        """The reducedHashtree of leaf ``index`` (empty for a one-leaf tree)."""
        self._check(index)
        size = self._size
        groups: list[tuple[bytes, ...]] = []
        for level, count in zip(self._levels[:-1], self._counts, strict=False):
            neighbour = index ^ 1
            if neighbour < count:
                start = neighbour * size
                if groups:
                    groups.append((level[start:start + size],))
                else:
                    groups.append((level[index * size:index * size + size], level[start:start + size]))
            index >>= 1
        return tuple(groups)

    def reduced_all(self) -> Iterator[Reduced]:
        """Every leaf's :meth:`reduced`, in leaf order; the part above the leaves' pairs is shared between
        neighbours and computed once per node."""
        size, levels, counts = self._size, self._levels, self._counts
        top = len(levels) - 1
        last: list[tuple[int, Reduced]] = [(-1, ())] * len(levels)  # per level: the node and its groups upward

        def upward(node: int, depth: int) -> Reduced:
            """The single-neighbour groups of ``node`` at level ``depth`` and its ancestors."""
            if depth >= top:
                return ()
            if last[depth][0] == node:
                return last[depth][1]
            neighbour = node ^ 1
            groups = upward(node >> 1, depth + 1)
            if neighbour < counts[depth]:
                groups = ((levels[depth][neighbour * size:(neighbour + 1) * size],), *groups)
            last[depth] = (node, groups)
            return groups

        leaves, count = levels[0], counts[0]
        for index in range(count):
            neighbour = index ^ 1
            if neighbour < count:
                yield ((leaves[index * size:(index + 1) * size], leaves[neighbour * size:(neighbour + 1) * size]),
                       *upward(index >> 1, 1))
            else:  # the odd last leaf: its first group is higher up
                yield self.reduced(index)

    def to_bytes(self) -> bytes:
        """Compact form: every level's hashes concatenated, leaves first (the leaf count follows from the length)."""
        return b"".join(self._levels)

    @classmethod
    def from_bytes(cls, algorithm: str, data: bytes) -> HashTree:
        """The tree :meth:`to_bytes` gave; anything else is a SiegelError."""
        size = hasher(algorithm)().digest_size
        if not data or len(data) % size:
            raise SiegelError(Code.BAD_REQUEST, f"a stored {algorithm} hash tree must be a non-empty multiple "
                                                f"of {size} bytes, not {len(data)}")
        total = len(data) // size
        low, high = 1, total
        while low < high:  # the node count grows strictly with the leaf count: find the leaf count
            middle = (low + high) // 2
            if _node_count(middle) < total:
                low = middle + 1
            else:
                high = middle
        if _node_count(low) != total:
            raise SiegelError(Code.BAD_REQUEST, f"{total} stored hashes are no complete hash tree")
        levels: list[bytes] = []
        offset, count = 0, low
        while True:
            levels.append(data[offset * size:(offset + count) * size])
            offset += count
            if count == 1:
                break
            count = (count + 1) // 2
        return cls(algorithm, levels)

    def _check(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise IndexError(f"leaf {index} is not in a tree of {len(self)} leaves")


def _node_count(leaves: int) -> int:
    total = leaves
    while leaves > 1:
        leaves = (leaves + 1) // 2
        total += leaves
    return total


def build(leaves: Sequence[bytes], algorithm: str) -> HashTree:
    """The tree over ``leaves`` (hash values of ``algorithm``, in the order given)."""
    new = hasher(algorithm)
    size = new().digest_size
    if not leaves:
        raise SiegelError(Code.BAD_REQUEST, "a hash tree needs at least one leaf")
    level = b"".join(leaves)
    if len(level) != len(leaves) * size or any(len(leaf) != size for leaf in leaves):
        raise SiegelError(Code.BAD_REQUEST, f"every leaf of a {algorithm} hash tree must be {size} bytes")
    levels = [level]
    while len(level) > size:
        fathers = []
        append = fathers.append
        end = len(level) - size
        for start in range(0, end, 2 * size):
            left = level[start:start + size]
            right = level[start + size:start + 2 * size]
            append(new(left + right if left <= right else right + left).digest())
        if (len(level) // size) % 2:
            append(level[end:])
        level = b"".join(fathers)
        levels.append(level)
    return HashTree(algorithm, levels)


def grouped(reduced: Reduced, group: Sequence[bytes]) -> Reduced:
    """A leaf's reduced tree (from :meth:`HashTree.reduced`) with the leaf replaced by the group whose hash it is.

    For a leaf that stands for several values — an RFC 4998 data group, or XMLERS hash-tree renewal's
    {H(document), ha} — the first partial hash tree holds the group, the next one the leaf's neighbour.
    """
    if not reduced:
        return (tuple(group),)
    return (tuple(group), reduced[0][1:], *reduced[1:])


def root_of(leaf: bytes, reduced: Sequence[Sequence[bytes]], algorithm: str) -> bytes:
    """The root a reduced hash tree leads to from ``leaf`` (RFC 4998 section 4.3).

    ``leaf`` must be one of the first partial hash tree's values; each further partial tree is
    hashed together with the value computed so far (sorted, concatenated). No partial trees: the
    leaf itself is the root. A leaf missing from the first partial tree is a SiegelError.
    """
    if not reduced:
        return leaf
    first = list(reduced[0])
    if leaf not in first:
        raise SiegelError(Code.BAD_REQUEST, "the hash value is not in the first partial hash tree")
    value = group_hash(algorithm, first)
    for group in reduced[1:]:
        value = group_hash(algorithm, [value, *group])
    return value
