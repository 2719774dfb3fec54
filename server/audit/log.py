"""The audit log: every entry is chained to the previous one by SHA-256.

An entry's hash covers a canonical JSON of its sequence number, time, actor, action, target,
details and the previous entry's hash. The single ``audit_head`` row names the newest entry, so
a deleted tail is found as well as an altered, inserted or deleted entry in the middle.

An append is two statements when this process wrote the newest entry: the new entries are chained onto the
head it remembers, and the head's UPDATE (which takes the write lock first) reserves their sequence numbers
and sets the new hash only if the head is still that one. When another process (or a rolled-back
transaction) moved the head, the UPDATE returns the real head: the entries are chained onto it and a
second UPDATE sets the hash, three statements as before. The remembered head is only a guess; the
lock-holding UPDATE decides.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any, Iterator

from sqlalchemy import Connection, Engine, and_, bindparam, case, select, update
from sqlalchemy.orm import Session, sessionmaker

from server.db.models import AuditEntry, AuditHead
from server.db.rows import insert_rows

GENESIS = "0" * 64
_BATCH = 1000


def canonical(obj: Any) -> bytes:
    """The canonical JSON form hashed for an entry (sorted keys, no spaces, UTF-8)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(seq: int, at: str, actor: str, action: str, target: str, details: str, prev_hash: str) -> str:
    """SHA-256 of the canonical JSON of ``{seq, at, actor, action, target, details, prev}``, written out in its
    sorted key order with json's own string encoder (the same bytes as :func:`canonical` of that dict, without
    building and sorting it: this runs for every signature)."""
    quote = encode_basestring
    body = (f'{{"action":{quote(action)},"actor":{quote(actor)},"at":{quote(at)},"details":{quote(details)},'
            f'"prev":{quote(prev_hash)},"seq":{int(seq)},"target":{quote(target)}}}')
    return hashlib.sha256(body.encode()).hexdigest()


_HEAD, _ENTRY = AuditHead.__table__, AuditEntry.__table__
_SEQ, _HASH = _HEAD.c.seq.type, _HEAD.c.hash.type
_CLAIM = (update(_HEAD).where(_HEAD.c.id == 1)
          .values(seq=_HEAD.c.seq + bindparam("count", type_=_SEQ),
                  hash=case((and_(_HEAD.c.seq == bindparam("seen_seq", type_=_SEQ),
                                  _HEAD.c.hash == bindparam("seen_hash", type_=_HASH)),
                             bindparam("last_hash", type_=_HASH)), else_=_HEAD.c.hash))
          .returning(_HEAD.c.seq, _HEAD.c.hash))
"""Reserve the next sequence numbers; if the head is still the one seen, ``last_hash`` becomes its hash."""
_SET_HASH = update(_HEAD).where(_HEAD.c.id == 1).values(hash=bindparam("last_hash", type_=_HASH))
_COLUMNS = ("seq", "at", "actor", "action", "target", "details", "prev_hash", "hash")


def _chain(seq: int, prev: str, entries: list[tuple[str, str, str, dict[str, Any]]],
           texts: list[str]) -> list[dict[str, Any]]:
    """The rows of ``entries`` (their details' canonical ``texts``) chained after entry ``seq`` with hash ``prev``,
    timed now."""
    rows = []
    for (actor, action, target, _), text in zip(entries, texts, strict=True):
        seq += 1
        at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        digest = entry_hash(seq, at, actor, action, target, text, prev)
        rows.append({"seq": seq, "at": at, "actor": actor, "action": action, "target": target, "details": text,
                     "prev_hash": prev, "hash": digest})
        prev = digest
    return rows


@dataclass(frozen=True)
class ChainFault:
    """The first place where the chain does not hold."""

    seq: int
    problem: str

    def __str__(self) -> str:
        return f"audit entry {self.seq}: {self.problem}"


class AuditLog:
    """Writes and verifies the audit chain; safe across threads, processes and nodes."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._lock = threading.Lock()
        self._head = (0, GENESIS)  # the head this process's last append left (a guess: the UPDATE checks it)

    def append(self, actor: str, action: str, target: str = "", **details: Any) -> int:
        """Add an entry and return its sequence number."""
        with self._sessions.begin() as session:
            return self.append_in(session, actor, action, target, **details)

    def append_in(self, session: Session, actor: str, action: str, target: str = "", **details: Any) -> int:
        """Add an entry inside the caller's transaction, so it commits or rolls back with the change it records."""
        return self.append_many_in(session, [(actor, action, target, details)])[0]

    def append_many_in(self, session: Session | Connection,
                       entries: list[tuple[str, str, str, dict[str, Any]]]) -> list[int]:
        """Add entries (actor, action, target, details) in order inside the caller's transaction (ORM or Core).

        Two statements when this process wrote the newest entry (the chain is computed on the head it left,
        and the head's UPDATE swaps in the new one only if it is still that), three when another wrote since.
        """
        # The UPDATE comes first: it takes the write lock (SQLite) or the row lock (PostgreSQL)
        # before the head is used, so concurrent writers queue up instead of forking the chain.
        if not entries:
            return []
        texts = [canonical(details).decode() for *_, details in entries]
        with self._lock:
            seq, prev = self._head
        rows = _chain(seq, prev, entries, texts)
        head = session.execute(_CLAIM, {"count": len(entries), "seen_seq": seq, "seen_hash": prev,
                                        "last_hash": rows[-1]["hash"]}).one()
        if (head.seq, head.hash) != (rows[-1]["seq"], rows[-1]["hash"]):  # another wrote since: chain onto its head
            rows = _chain(head.seq - len(entries), head.hash, entries, texts)
            session.execute(_SET_HASH, {"last_hash": rows[-1]["hash"]})
        conn = session if isinstance(session, Connection) else session.connection()
        insert_rows(conn, _ENTRY, _COLUMNS, [tuple(row[c] for c in _COLUMNS) for row in rows])  # one per signature
        with self._lock:
            self._head = (head.seq, rows[-1]["hash"])
        return [row["seq"] for row in rows]

    def entries(self) -> Iterator[AuditEntry]:
        """All entries in order, read in batches."""
        last = 0
        while True:
            with self._sessions() as session:
                rows = session.execute(
                    select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(_BATCH)
                ).scalars().all()
            if not rows:
                return
            yield from rows
            last = rows[-1].seq

    def search(self, *, actor: str = "", action: str = "", target: str = "", since: str = "", until: str = "",
               before_seq: int | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest entries (at most ``limit``, newest first, below ``before_seq`` when given) whose actor and
        target equal the ones given, whose action starts with ``action`` and whose ISO time lies in
        [``since``, ``until``) (prefixes such as ``2026-12-07`` work: the times are ISO 8601 UTC text)."""
        query = select(AuditEntry)
        if actor:
            query = query.where(AuditEntry.actor == actor)
        if action:
            query = query.where(AuditEntry.action.startswith(action, autoescape=True))
        if target:
            query = query.where(AuditEntry.target == target)
        if since:
            query = query.where(AuditEntry.at >= since)
        if until:
            query = query.where(AuditEntry.at < until)
        if before_seq is not None:
            query = query.where(AuditEntry.seq < before_seq)
        with self._sessions() as session:
            return list(session.execute(query.order_by(AuditEntry.seq.desc()).limit(limit)).scalars().all())

    def verify(self) -> tuple[int, ChainFault | None]:
        """Check the whole chain; return the number of entries and the first fault, if any."""
        prev_hash, expected, count = GENESIS, 1, 0
        for e in self.entries():
            count += 1
            if e.seq != expected:
                return count, ChainFault(expected, f"missing (deleted); the chain resumes at entry {e.seq}")
            if e.prev_hash != prev_hash:
                return count, ChainFault(e.seq, "does not link to the entry before it (inserted or re-chained)")
            if entry_hash(e.seq, e.at, e.actor, e.action, e.target, e.details, e.prev_hash) != e.hash:
                return count, ChainFault(e.seq, "content altered (hash mismatch)")
            prev_hash, expected = e.hash, expected + 1
        with self._sessions() as session:
            head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
        if head.seq != expected - 1 or head.hash != prev_hash:
            return count, ChainFault(expected, f"missing (deleted); the log should end at entry {head.seq}")
        return count, None
