"""The audit log: every entry is chained to the previous one by SHA-256.

An entry's hash covers a canonical JSON of its sequence number, time, actor, action, target,
details and the previous entry's hash. The single ``audit_head`` row names the newest entry, so
a deleted tail is found as well as an altered, inserted or deleted entry in the middle.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from server.db.models import AuditEntry, AuditHead

GENESIS = "0" * 64
_BATCH = 1000


def canonical(obj: Any) -> bytes:
    """The canonical JSON form hashed for an entry (sorted keys, no spaces, UTF-8)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(seq: int, at: str, actor: str, action: str, target: str, details: str, prev_hash: str) -> str:
    body = {"seq": seq, "at": at, "actor": actor, "action": action, "target": target,
            "details": details, "prev": prev_hash}
    return hashlib.sha256(canonical(body)).hexdigest()


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

    def append(self, actor: str, action: str, target: str = "", **details: Any) -> int:
        """Add an entry and return its sequence number."""
        with self._sessions.begin() as session:
            return self.append_in(session, actor, action, target, **details)

    def append_in(self, session: Session, actor: str, action: str, target: str = "", **details: Any) -> int:
        """Add an entry inside the caller's transaction, so it commits or rolls back with the change it records."""
        return self.append_many_in(session, [(actor, action, target, details)])[0]

    def append_many_in(self, session: Session | Connection,
                       entries: list[tuple[str, str, str, dict[str, Any]]]) -> list[int]:
        """Add entries (actor, action, target, details) in order inside the caller's transaction (ORM or Core)."""
        # The UPDATE comes first: it takes the write lock (SQLite) or the row lock (PostgreSQL)
        # before the head is read, so concurrent writers queue up instead of forking the chain.
        head_table, entry_table = AuditHead.__table__, AuditEntry.__table__
        head = session.execute(update(head_table).where(head_table.c.id == 1)
                               .values(seq=head_table.c.seq + len(entries))
                               .returning(head_table.c.seq, head_table.c.hash)).one()
        seq, prev = head.seq - len(entries), head.hash
        rows = []
        for actor, action, target, details in entries:
            seq += 1
            at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
            text = canonical(details).decode()
            digest = entry_hash(seq, at, actor, action, target, text, prev)
            rows.append({"seq": seq, "at": at, "actor": actor, "action": action, "target": target, "details": text,
                         "prev_hash": prev, "hash": digest})
            prev = digest
        session.execute(insert(entry_table), rows)
        session.execute(update(head_table).where(head_table.c.id == 1).values(hash=prev))
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
