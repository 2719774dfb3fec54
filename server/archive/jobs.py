"""The archive's hash trees: collection of pending items into trees, one Archive Time-Stamp per tree root,
evidence records derived from a tree on demand, timestamp renewal and hash-tree renewal (RFC 4998 5.2, 5.3).

Crash safety of a collection: the pending items are read, the tree is built and its root timestamped
outside any transaction; then ONE transaction inserts the tree and its timestamp and marks exactly those
items (a single UPDATE over their id range whose row count must equal the leaf count, else something
changed meanwhile and the transaction is rolled back and the collection retried). A crash anywhere before
that commit leaves the items pending; at worst one timestamp was issued for nothing.
"""

from __future__ import annotations

import bisect
import functools
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from time import monotonic

from asn1crypto import cms, keys, x509
from sqlalchemy import ColumnElement, Engine, and_, bindparam, func, insert, or_, select, update

from server.archive import hashtree, xmlers
from server.archive.hashtree import HashTree
from server.archive.record import ArchiveTimestamp, EvidenceRecord, hashtree_renewal_leaf
from server.archive.store import DocumentStore
from server.audit import AuditLog
from server.db.models import ARCHIVE_ALGORITHMS, ArchiveItem as ItemRow, ArchiveLeaf, ArchiveTimestampRow, ArchiveTree
from server.db.rows import fetch_rows
from server.errors import Code, SiegelError
from server.validation.timestamps import message_imprint

Stamp = Callable[[bytes, str], tuple[bytes, datetime]]
"""A timestamp over a digest of an algorithm: (DER ContentInfo of the token, notAfter of the TSA's certificate)."""

ITEMS, TREES, STAMPS, LEAVES = (ItemRow.__table__, ArchiveTree.__table__, ArchiveTimestampRow.__table__,
                                ArchiveLeaf.__table__)
_RACE_RETRIES = 5
_RENEW_BATCH = 50  # a commit costs little next to 50 TSA requests; a crash redoes at most this many
_RENEW_COMMIT_SECONDS = 1.0


def stamp_with_client(client: object) -> Stamp:
    """A :data:`Stamp` over an ``adapters.timestamp.client.TimestampClient`` (failover, every token checked)."""
    def stamp(digest: bytes, algorithm: str) -> tuple[bytes, datetime]:
        token = client.timestamp(digest, algorithm)  # type: ignore[attr-defined]
        return token.token, token.info.signer.not_valid_after_utc

    return stamp


def stamp_in_process(respond: Callable[[bytes], object]) -> Stamp:
    """A :data:`Stamp` over this process's own TSA (``TimestampAuthority.respond``), the token checked."""
    from adapters.timestamp.client import verify_token
    from server.remote.csc_service import internal_timestamp
    from server.signing.keysource import DigestAlgorithm

    ask = internal_timestamp(respond)  # type: ignore[arg-type]

    def stamp(digest: bytes, algorithm: str) -> tuple[bytes, datetime]:
        token = ask(digest, DigestAlgorithm(algorithm), None)
        return token, verify_token(token, digest, algorithm).signer.not_valid_after_utc

    return stamp


def parse_horizons(text: str) -> dict[str, datetime]:
    """``archive.algorithm_horizons`` (ALG=YYYY-MM-DD, …) as the end of each day in UTC."""
    horizons = {}
    for entry in (e.strip() for e in text.split(",") if e.strip()):
        name, _, day = entry.partition("=")
        horizons[name.strip()] = datetime.combine(date.fromisoformat(day.strip()), time.max, timezone.utc)
    return horizons


@dataclass(frozen=True)
class SignatureHorizons:
    """``archive.signature_horizons``: until when a timestamp token's signature is trusted, by the signer's key
    (``rsa-BITS`` covers RSA keys of BITS bits up to the next size listed, smaller ones take the earliest RSA
    date; ``ecdsa-p256`` … and ``ed25519``, ``ed448`` exactly) and by the digest it signs (``sha1`` …)."""
    rsa: tuple[tuple[int, datetime], ...]  # ascending bits
    named: Mapping[str, datetime]

    @classmethod
    def parse(cls, text: str) -> SignatureHorizons:
        horizons = parse_horizons(text)
        rsa = sorted((int(name[4:]), day) for name, day in horizons.items() if name.startswith("rsa-"))
        return cls(tuple(rsa), {name: day for name, day in horizons.items() if not name.startswith("rsa-")})

    def of(self, token: bytes) -> datetime | None:
        """The earliest horizon of the token's signature key and digest; None if neither is listed."""
        key, digest = token_signature(token)
        found = [self.named[n] for n in (key, digest) if n in self.named]
        if key.startswith("rsa-") and self.rsa:
            bits = int(key[4:])
            found.append(([day for size, day in self.rsa if size <= bits] or [self.rsa[0][1]])[-1])
        return min(found, default=None)


def token_signature(token: bytes) -> tuple[str, str]:
    """What signed a timestamp token: its signer's key (``rsa-3072``, ``ecdsa-p256``, ``ed25519``, …; ``unknown``
    when the token lacks the signer's certificate or the key is of another kind) and the digest signed (``sha256``).
    The key is remembered by the signer identifier and certificate bytes, which a TSA repeats in every token (a
    renewal run looks at every current tree's last token)."""
    signed_data = cms.ContentInfo.load(token)["content"]
    signer_info = signed_data["signer_infos"][0]
    sid, certificates = signer_info["sid"], signed_data["certificates"]
    seen = (sid.dump(), certificates.contents or b"")
    key = _SIGNER_KEYS.get(seen)
    if key is None:
        key = _signer_key(sid, certificates)
        if len(_SIGNER_KEYS) >= 64:
            _SIGNER_KEYS.clear()
        _SIGNER_KEYS[seen] = key
    return key, signer_info["digest_algorithm"]["algorithm"].native


_SIGNER_KEYS: dict[tuple[bytes, bytes], str] = {}


def _signer_key(sid: cms.SignerIdentifier, certificates: cms.CertificateSet) -> str:
    """:func:`_key_name` of the certificate ``sid`` names among ``certificates`` (``unknown`` if none is)."""
    for choice in certificates or ():
        cert = choice.chosen
        if isinstance(cert, x509.Certificate) and (
                (sid.name == "issuer_and_serial_number" and cert.issuer == sid.chosen["issuer"]
                 and cert.serial_number == sid.chosen["serial_number"].native)
                or (sid.name == "subject_key_identifier" and cert.key_identifier == sid.chosen.native)):
            return _key_name(cert["tbs_certificate"]["subject_public_key_info"].dump())
    return "unknown"


@functools.lru_cache(maxsize=64)
def _key_name(public_key_info: bytes) -> str:
    """``rsa-BITS``, ``ecdsa-CURVE`` (p256, p384, p521), ``ed25519``, ``ed448`` or ``unknown``; cached: few TSA keys."""
    info = keys.PublicKeyInfo.load(public_key_info)
    kind = info.algorithm
    if kind == "rsa":
        return f"rsa-{info.bit_size}"
    if kind == "ec":
        curve = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}.get(info.curve[1])
        return f"ecdsa-{curve}" if curve else "unknown"
    return kind if kind in ("ed25519", "ed448") else "unknown"


def _ids(blob: bytes) -> array:
    ids = array("q")
    ids.frombytes(blob)
    return ids


class _Raced(Exception):
    """The pending items changed between reading them and marking them: collect again."""


@dataclass(frozen=True)
class _Tree:
    id: int
    algorithm: str
    lineage: str
    chain: int
    tree: HashTree
    items: array
    renews_position: int | None  # a renewal tree: the last ATS of the previous chain it covered

    def index(self, item_id: int) -> int:
        at = bisect.bisect_left(self.items, item_id)
        if at == len(self.items) or self.items[at] != item_id:
            raise SiegelError(Code.INTERNAL, f"archive item {item_id} is not a leaf of tree {self.id}")
        return at


@dataclass
class HashTreeRenewal:
    """What a hash-tree renewal did: trees built, items renewed, items that could not be (hash only, or deleted)."""

    trees: int = 0
    renewed: int = 0
    skipped: list[int] = field(default_factory=list)


class ArchiveTrees:
    def __init__(self, engine: Engine, audit: AuditLog, store: DocumentStore, stamp: Callable[[], Stamp],
                 algorithms: Sequence[str], max_leaves: int) -> None:
        """``stamp`` gives the timestamp function on first use (the TSA client is built lazily)."""
        self._engine = engine
        self._audit = audit
        self._store = store
        self._stamp = stamp
        self.algorithms = tuple(algorithms)
        self._max_leaves = max_leaves
        self._lock = threading.Lock()  # one collection per process at a time (others: the job lease, the race check)
        self._tree = functools.lru_cache(maxsize=4)(self._load_tree)  # a tree never changes once written

    # --- collection -----------------------------------------------------------------------------------

    def pending(self) -> tuple[int, datetime | None]:
        """Items still waiting for a tree of some configured algorithm, and the oldest one's submission time."""
        condition = pending_condition(self.algorithms)
        with self._engine.connect() as conn:
            count, oldest = conn.execute(select(func.count(), func.min(ITEMS.c.created_at)).where(condition)).one()
        return count, oldest

    def collect_due(self, collect_seconds: float, collect_objects: int) -> int:
        """Collect when ``collect_objects`` items are pending or the oldest waited ``collect_seconds``; trees built."""
        count, oldest = self.pending()
        if not count:
            return 0
        if count < collect_objects and oldest is not None and \
                datetime.now(timezone.utc) - _aware(oldest) < timedelta(seconds=collect_seconds):
            return 0
        return self.collect()

    def collect(self) -> int:
        """Build and timestamp trees over every pending item, per configured algorithm; the number of trees."""
        built = 0
        with self._lock:
            for algorithm in self.algorithms:
                retries = 0
                while True:
                    try:
                        if not self._collect_one(algorithm):
                            break
                        built += 1
                    except _Raced:
                        retries += 1
                        if retries > _RACE_RETRIES:
                            raise SiegelError(Code.CONFLICT, "the pending archive items kept changing during "
                                                             "collection; try again") from None
        return built

    def _collect_one(self, algorithm: str) -> bool:
        tree_col, digest_col = ITEMS.c[f"tree_{algorithm}"], ITEMS.c[f"digest_{algorithm}"]
        with self._engine.connect() as conn:
            rows = fetch_rows(conn, select(ITEMS.c.id, digest_col).where(tree_col.is_(None), digest_col.isnot(None))
                              .order_by(ITEMS.c.id).limit(self._max_leaves))
        if not rows:
            return False
        ids = array("q", (r[0] for r in rows))
        tree = hashtree.build([r[1] for r in rows], algorithm)
        del rows
        token, not_after = self._stamp()(tree.root, algorithm)
        now = datetime.now(timezone.utc)
        with self._engine.begin() as conn:
            tree_id = conn.execute(insert(TREES).values(
                algorithm=algorithm, lineage=algorithm, chain=0, size=len(ids), tree=tree.to_bytes(),
                items=ids.tobytes(), superseded=False, created_at=now).returning(TREES.c.id)).scalar_one()
            conn.execute(insert(STAMPS).values(tree_id=tree_id, position=0, token=token, tsa_not_after=not_after,
                                               created_at=now))
            marked = conn.execute(update(ITEMS).where(tree_col.is_(None), digest_col.isnot(None),
                                                      ITEMS.c.id.between(ids[0], ids[-1]))
                                  .values({tree_col: tree_id})).rowcount
            if marked != len(ids):
                raise _Raced()
            self._audit.append_many_in(conn, [("archive", "archive.collect", f"tree:{tree_id}", {
                "algorithm": algorithm, "leaves": len(ids), "root": tree.root.hex(),
                "tsa_not_after": not_after.isoformat()})])
        return True

    # --- evidence records ------------------------------------------------------------------------------

    def _load_tree(self, tree_id: int) -> _Tree:
        with self._engine.connect() as conn:
            row = conn.execute(select(TREES).where(TREES.c.id == tree_id)).one()
        return _Tree(row.id, row.algorithm, row.lineage, row.chain, HashTree.from_bytes(row.algorithm, row.tree),
                     _ids(row.items), row.renews_position)

    def _stamps(self, tree_ids: Iterable[int]) -> dict[int, list[bytes]]:
        wanted = sorted(set(tree_ids))
        out: dict[int, list[bytes]] = {t: [] for t in wanted}
        with self._engine.connect() as conn:
            for tree_id, token in conn.execute(select(STAMPS.c.tree_id, STAMPS.c.token)
                                               .where(STAMPS.c.tree_id.in_(wanted))
                                               .order_by(STAMPS.c.tree_id, STAMPS.c.position)):
                out[tree_id].append(token)
        return out

    def lineage_trees(self, item_id: int, lineage: str) -> list[int] | None:
        """The trees of ``item_id``'s record of ``lineage``, chain by chain; None while the item is pending."""
        with self._engine.connect() as conn:
            first = conn.execute(select(ITEMS.c[f"tree_{lineage}"]).where(ITEMS.c.id == item_id)).scalar_one()
            if first is None:
                return None
            later = conn.execute(select(LEAVES.c.tree_id).join(TREES, TREES.c.id == LEAVES.c.tree_id)
                                 .where(LEAVES.c.item_id == item_id, TREES.c.lineage == lineage)
                                 .order_by(TREES.c.chain)).scalars().all()
        return [first, *later]

    def record(self, item_id: int, lineage: str) -> EvidenceRecord:
        """The evidence record of ``item_id`` in the trees of ``lineage`` (SiegelError CONFLICT while pending)."""
        trees = self.lineage_trees(item_id, lineage)
        if trees is None:
            raise SiegelError(Code.CONFLICT, f"archive item {item_id} is not in a {lineage} hash tree yet")
        loaded = [self._tree(t) for t in trees]
        digests: dict[str, bytes] = {}
        if len(loaded) > 1:  # a hash-tree renewal's leaf stands for a group with the document's hash
            with self._engine.connect() as conn:
                row = conn.execute(select(*(ITEMS.c[f"digest_{a}"] for a in ARCHIVE_ALGORITHMS))
                                   .where(ITEMS.c.id == item_id)).one()
            digests = {a: v for a, v in zip(ARCHIVE_ALGORITHMS, row, strict=True) if v is not None}
        return _record(item_id, loaded, self._stamps(trees), digests)

    def tree_records(self, tree_id: int) -> Iterator[tuple[int, EvidenceRecord]]:
        """Every leaf's evidence record of an initial tree (chain 0) not renewed by a hash-tree renewal, cheaply."""
        tree = self._tree(tree_id)
        tokens = self._stamps([tree_id])[tree_id]
        algorithm, algorithms = tree.algorithm, (tree.algorithm,)
        renewals, both = _renewals(algorithm, tokens)
        syntax = "both" if both else "ers"
        for item_id, reduced in zip(tree.items, tree.tree.reduced_all(), strict=True):
            yield item_id, EvidenceRecord(algorithms, ((ArchiveTimestamp(algorithm, reduced, tokens[0]), *renewals),),
                                          syntax=syntax)

    # --- renewal ---------------------------------------------------------------------------------------

    def _current_trees(self) -> list[tuple[int, str, int, str, datetime, int]]:
        """Trees still carrying evidence (not superseded): id, algorithm, last position, lineage, notAfter, chain."""
        last = select(STAMPS.c.tree_id, func.max(STAMPS.c.position).label("position")).group_by(
            STAMPS.c.tree_id).subquery()
        with self._engine.connect() as conn:
            rows = conn.execute(select(TREES.c.id, TREES.c.algorithm, last.c.position, TREES.c.lineage,
                                       STAMPS.c.tsa_not_after, TREES.c.chain)
                                .join(last, last.c.tree_id == TREES.c.id)
                                .join(STAMPS, and_(STAMPS.c.tree_id == TREES.c.id, STAMPS.c.position == last.c.position))
                                .where(TREES.c.superseded.is_(False)).order_by(TREES.c.id)).all()
        return [(r[0], r[1], r[2], r[3], _aware(r[4]), r[5]) for r in rows]

    def _last_tokens(self) -> dict[int, bytes]:
        """The last timestamp token of every current tree (the one a timestamp renewal covers)."""
        last = select(STAMPS.c.tree_id, func.max(STAMPS.c.position).label("position")).group_by(
            STAMPS.c.tree_id).subquery()
        with self._engine.connect() as conn:
            rows = conn.execute(select(STAMPS.c.tree_id, STAMPS.c.token)
                                .join(last, and_(last.c.tree_id == STAMPS.c.tree_id,
                                                 last.c.position == STAMPS.c.position))
                                .join(TREES, TREES.c.id == STAMPS.c.tree_id)
                                .where(TREES.c.superseded.is_(False))).all()
        return {r[0]: r[1] for r in rows}

    def _stamp_ends(self, signatures: SignatureHorizons) -> list[tuple[tuple[int, str, int, str, datetime, int],
                                                                       datetime, bytes]]:
        """Every current tree with when its last timestamp loses strength (its TSA certificate's notAfter or its
        signature's horizon, whichever is first) and that token."""
        last = self._last_tokens()
        ends = []
        for tree in self._current_trees():
            horizon = signatures.of(last[tree[0]])
            ends.append((tree, tree[4] if horizon is None else min(tree[4], horizon), last[tree[0]]))
        return ends

    def current(self) -> list[tuple[int, str]]:
        """The current trees (not superseded by a hash-tree renewal): id and algorithm."""
        return [(t[0], t[1]) for t in self._current_trees()]

    def next_renewals(self, before: timedelta, horizons: Mapping[str, datetime], signatures: SignatureHorizons
                      ) -> tuple[datetime | None, datetime | None]:
        """When the next timestamp renewal and the next hash-tree renewal fall due (None: no tree)."""
        ends = self._stamp_ends(signatures)
        if not ends:
            return None, None
        far = datetime.max.replace(tzinfo=timezone.utc)
        stamp_due = min(end for _, end, _ in ends) - before
        tree_due = min(horizons.get(tree[1], far) for tree, _, _ in ends)
        return stamp_due, (tree_due - before if tree_due != far else None)

    def renew_timestamps(self, before: timedelta, signatures: SignatureHorizons, force: bool = False) -> int:
        """RFC 4998 5.2 for every current tree whose last timestamp's TSA certificate expires, or whose signature
        reaches its horizon, within ``before`` (every current tree with ``force``): one new timestamp per tree over
        the previous one, from the current TSA; the count. The new timestamps and their audit entries (one per
        tree) commit in batches (:data:`_RENEW_BATCH` trees or :data:`_RENEW_COMMIT_SECONDS` of requests, whichever
        comes first): a crash loses at most that batch's requests, and the next run renews those trees again."""
        now = datetime.now(timezone.utc)
        due = [(tree, token) for tree, end, token in self._stamp_ends(signatures) if force or end - before <= now]
        if not due:
            return 0
        stamp = self._stamp()
        batch: list[tuple[int, int, str, bytes, datetime]] = []
        renewed, since = 0, monotonic()
        for (tree_id, algorithm, position, _lineage, _not_after, _chain), previous in due:
            token, not_after = stamp(hashtree.group_hash(algorithm, _renewal_pair(previous, algorithm)), algorithm)
            batch.append((tree_id, position + 1, algorithm, token, not_after))
            if len(batch) >= _RENEW_BATCH or monotonic() - since >= _RENEW_COMMIT_SECONDS:
                renewed += self._add_renewals(batch)
                batch, since = [], monotonic()
        return renewed + self._add_renewals(batch)

    def _add_renewals(self, batch: Sequence[tuple[int, int, str, bytes, datetime]]) -> int:
        """One transaction for renewal timestamps (tree, position, algorithm, token, notAfter) and their audit
        entries; the count."""
        if not batch:
            return 0
        now = datetime.now(timezone.utc)
        with self._engine.begin() as conn:
            conn.execute(insert(STAMPS), [{"tree_id": tree_id, "position": position, "token": token,
                                           "tsa_not_after": not_after, "created_at": now}
                                          for tree_id, position, _algorithm, token, not_after in batch])
            self._audit.append_many_in(conn, [("archive", "archive.renew-timestamp", f"tree:{tree_id}", {
                "position": position, "algorithm": algorithm, "tsa_not_after": not_after.isoformat()})
                for tree_id, position, algorithm, _token, not_after in batch])
        return len(batch)

    def hashtree_due(self, before: timedelta, horizons: Mapping[str, datetime]) -> list[int]:
        """Current trees whose hash algorithm's horizon is within ``before``."""
        now = datetime.now(timezone.utc)
        return [t[0] for t in self._current_trees() if t[1] in horizons and horizons[t[1]] - before <= now]

    def renew_hashtrees(self, algorithm: str, tree_ids: Sequence[int] | None = None) -> HashTreeRenewal:
        """RFC 4998 5.3 / RFC 6283 into ``algorithm`` for the given current trees (None: all): per old tree a new
        tree with one leaf per item whose content is in the store, the hash of its :func:`renewal_group`; hash-only
        and deleted items cannot be renewed (their old tree stays current and keeps its timestamp renewals)."""
        if algorithm not in ARCHIVE_ALGORITHMS:
            raise SiegelError(Code.BAD_REQUEST, f"hash-tree renewal into {algorithm!r}: expected one of "
                                                f"{', '.join(ARCHIVE_ALGORITHMS)}")
        result = HashTreeRenewal()
        current = {t[0]: t for t in self._current_trees()}
        for tree_id in (sorted(current) if tree_ids is None else tree_ids):
            if tree_id not in current:
                raise SiegelError(Code.NOT_FOUND, f"tree {tree_id} is no current archive tree")
            self._renew_tree(current[tree_id], algorithm, result)
        return result

    def _renew_tree(self, old: tuple[int, str, int, str, datetime, int], algorithm: str,
                    result: HashTreeRenewal) -> None:
        tree_id, _alg, position, lineage, _na, chain = old
        ids = self._tree(tree_id).items
        with self._engine.connect() as conn:
            stored = dict(conn.execute(select(ITEMS.c.id, ITEMS.c.digest_sha256).where(
                ITEMS.c.id.in_(list(ids)), ITEMS.c.stored.is_(True))).all())
        members: list[int] = []
        leaves: list[bytes] = []
        document_hashes: list[dict[str, object]] = []
        for item_id in ids:
            if item_id not in stored:
                result.skipped.append(item_id)
                continue
            document = hashtree.hasher(algorithm)()
            for chunk in self._store.chunks(stored[item_id].hex()):
                document.update(chunk)
            members.append(item_id)
            group = renewal_group(document.digest(), self.record(item_id, lineage), algorithm)
            leaves.append(hashtree.group_hash(algorithm, group))
            document_hashes.append({"item": item_id, "digest": document.digest()})
        if not members:
            return
        tree = hashtree.build(leaves, algorithm)
        token, not_after = self._stamp()(tree.root, algorithm)
        now = datetime.now(timezone.utc)
        with self._engine.begin() as conn:
            new_id = conn.execute(insert(TREES).values(
                algorithm=algorithm, lineage=lineage, chain=chain + 1, size=len(members), tree=tree.to_bytes(),
                items=array("q", members).tobytes(), superseded=False, renews_tree=tree_id, renews_position=position,
                created_at=now).returning(TREES.c.id)).scalar_one()
            conn.execute(insert(STAMPS).values(tree_id=new_id, position=0, token=token, tsa_not_after=not_after,
                                               created_at=now))
            conn.execute(insert(LEAVES), [{"item_id": i, "tree_id": new_id} for i in members])
            digest_col = ITEMS.c[f"digest_{algorithm}"]  # the record's group needs h(d) again: kept where it is absent
            conn.execute(update(ITEMS).where(ITEMS.c.id == bindparam("item"), digest_col.is_(None))
                         .values({digest_col: bindparam("digest")}), document_hashes)
            if len(members) == len(ids):
                conn.execute(update(TREES).where(TREES.c.id == tree_id).values(superseded=True))
            self._audit.append_many_in(conn, [("archive", "archive.renew-hashtree", f"tree:{tree_id}", {
                "new_tree": new_id, "algorithm": algorithm, "renewed": len(members),
                "not_renewable": len(ids) - len(members)})])
        result.trees += 1
        result.renewed += len(members)

    def counts(self) -> dict[str, int]:
        with self._engine.connect() as conn:
            trees = conn.execute(select(func.count()).select_from(TREES)).scalar_one()
            current = conn.execute(select(func.count()).select_from(TREES).where(TREES.c.superseded.is_(False))
                                   ).scalar_one()
        return {"trees": trees, "currentTrees": current}


def pending_condition(algorithms: Sequence[str]) -> ColumnElement[bool]:
    """An item still waits for a tree of one of ``algorithms``."""
    return or_(*(and_(ITEMS.c[f"tree_{a}"].is_(None), ITEMS.c[f"digest_{a}"].isnot(None)) for a in algorithms))


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; the archive stores UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def renewal_group(document_hash: bytes, previous: EvidenceRecord, algorithm: str) -> tuple[bytes, ...]:
    """What a hash-tree renewal's first partial hash tree holds for one item, whose leaf is the group's hash: the
    ERS renewal value H(h(d) + ha) (RFC 4998 5.3), and when ``previous`` has an XMLERS form (syntax "both") the
    XMLERS ones beside it, ha of the canonical XML sequence and h(d) (RFC 6283 as EU DSS reads it): either encoding
    of the renewed record verifies."""
    leaf = hashtree_renewal_leaf(document_hash, previous, algorithm)
    if previous.syntax != "both":
        return (leaf,)
    return (leaf, *xmlers.hashtree_renewal_leaves([document_hash], previous, algorithm))


def _record(item_id: int, trees: Sequence[_Tree], stamps: Mapping[int, list[bytes]],
            digests: Mapping[str, bytes]) -> EvidenceRecord:
    """The record of ``item_id`` in ``trees`` (chain by chain); ``digests``: the item's document hashes, which
    the groups of the renewal trees hold."""
    chains: list[tuple[ArchiveTimestamp, ...]] = []
    both = True
    for n, tree in enumerate(trees):
        tokens = stamps[tree.id]
        if n + 1 < len(trees):  # renewed: the chain ends with the ATS the next chain's renewal covered
            tokens = tokens[:trees[n + 1].renews_position + 1]
        index = tree.index(item_id)
        reduced = tree.tree.reduced(index)
        if n:
            previous = EvidenceRecord(tuple(dict.fromkeys(t.algorithm for t in trees[:n])), tuple(chains),
                                      syntax="both" if both else "ers")
            document = digests.get(tree.algorithm)
            group = () if document is None else renewal_group(document, previous, tree.algorithm)
            if len(group) > 1 and hashtree.group_hash(tree.algorithm, group) == tree.tree.leaf(index):
                reduced = hashtree.grouped(reduced, group)
            else:  # the leaf is H(h(d) + ha) alone: a renewal of an ERS-only record, or one made before XMLERS
                both = False
        first = ArchiveTimestamp(tree.algorithm, reduced, tokens[0])
        renewals, pairs = _renewals(tree.algorithm, tokens)
        both = both and pairs
        chains.append((first, *renewals))
    algorithms = tuple(dict.fromkeys(t.algorithm for t in trees))
    return EvidenceRecord(algorithms, tuple(chains), syntax="both" if both else "ers")


def _renewal_pair(previous: bytes, algorithm: str) -> tuple[bytes, bytes]:
    """What a timestamp renewal after the ATS with token ``previous`` covers, for every record of its tree: the
    ERS renewal hash (of the ``timeStamp`` DER, RFC 4998 5.2) and the XMLERS one (of the ``TimeStamp`` element,
    RFC 6283 4.2.1); the new token covers the group of both, which each renewal ATS holds as its reduced tree."""
    return hashtree.digest(algorithm, previous), xmlers.token_renewal_digest(previous, algorithm)


def _renewals(algorithm: str, tokens: Sequence[bytes]) -> tuple[tuple[ArchiveTimestamp, ...], bool]:
    """The renewal ATSs after ``tokens[0]``, and whether every one covers the XMLERS renewal hash too (a token
    over the ERS hash alone, from before renewals covered both, has no reduced tree and no XMLERS form)."""
    renewals, both = [], True
    for previous, token in zip(tokens, tokens[1:]):
        pair = _renewal_pair(previous, algorithm)
        imprint = message_imprint(token)[1]
        if imprint == hashtree.group_hash(algorithm, pair):
            renewals.append(ArchiveTimestamp(algorithm, (pair,), token))
        elif imprint == pair[0]:
            renewals.append(ArchiveTimestamp(algorithm, (), token))
            both = False
        else:
            raise SiegelError(Code.INTERNAL, "a stored renewal timestamp covers neither its ERS nor its pair hash")
    return tuple(renewals), both
