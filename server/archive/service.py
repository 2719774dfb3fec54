"""The long-term archive for callers (REST, CLI, TR-ESOR S.4): archive objects, their versions and items.

An item is a document (its bytes go to the content-addressed store, :mod:`server.archive.store`) or only its
hash values. A submission is durable when :meth:`ArchiveService.submit` returns: the files are written first,
then one transaction commits the rows and the audit entry. Its items are pending until the collection
(:mod:`server.archive.jobs`) put them into a hash tree per configured algorithm whose root is timestamped;
an item's evidence record (RFC 4998 ERS or RFC 6283 XMLERS) is derived from its tree on demand.

Signed documents are verified before they are archived (:class:`VerificationService`); by
``archive.invalid_signatures`` one that does not verify is refused (nothing stored) or archived with its report.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import repeat
from typing import Any

from sqlalchemy import Engine, insert, select, update

from server.archive import ers, evidence_verify, xmlers
from server.archive.evidence_verify import EvidenceReport
from server.archive.jobs import (ITEMS, ArchiveTrees, HashTreeRenewal, SignatureHorizons, parse_horizons,
                                 pending_condition)
from server.archive.store import DocumentStore
from server.audit import AuditLog
from server.config import ArchiveSettings
from server.db import rows as rows_db
from server.db.models import ARCHIVE_ALGORITHMS, ArchiveObject, ArchiveVersion, User
from server.errors import Code, SiegelError
from server.identity.policy import ANY_OWNER, Action, require
from server.identity.users import Principal, Role
from server.validation.model import Indication
from server.validation.service import VerificationService

OBJECTS, VERSIONS = ArchiveObject.__table__, ArchiveVersion.__table__
FORMATS = ("ers", "xml")
_BULK_MAX = 16 ** 6  # a bulk AOID ends with its entry's number in six hex digits
_SIZES = {a: hashlib.new(a).digest_size for a in ARCHIVE_ALGORITHMS}


class SignatureRefused(SiegelError):
    """A signed document refused because its signature does not verify (``archive.invalid_signatures = refuse``)."""


@dataclass(frozen=True)
class ArchiveItem:
    """One document given as bytes, or only its hash(es)."""

    name: str
    mime_type: str
    content: bytes | None
    digests: Mapping[str, bytes] = field(default_factory=dict)  # algorithm -> hash; computed when content is given


@dataclass(frozen=True)
class ItemInfo:
    name: str
    mime_type: str
    size: int | None
    stored: bool  # the content is in the archive (else only its hashes)
    digests: Mapping[str, bytes]
    state: str  # pending | archived
    indication: str | None  # of a signed document's verification before archiving
    report: Any  # that verification's report (JSON), or None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "mimeType": self.mime_type, "size": self.size, "stored": self.stored,
                "digests": {a: d.hex() for a, d in self.digests.items()}, "state": self.state,
                "indication": self.indication, "report": self.report}


@dataclass(frozen=True)
class VersionInfo:
    version: int
    created_at: datetime
    metadata: Mapping[str, str]
    items: tuple[ItemInfo, ...]


@dataclass(frozen=True)
class ArchiveObjectInfo:
    aoid: str
    owner_id: int | None
    created_at: datetime
    state: str  # pending (an item of the newest version waits for its tree) | archived
    versions: tuple[VersionInfo, ...]

    def to_json(self) -> dict[str, Any]:
        return {"aoid": self.aoid, "state": self.state, "created": _iso(self.created_at),
                "versions": [{"version": v.version, "created": _iso(v.created_at), "metadata": dict(v.metadata),
                              "items": [i.to_json() for i in v.items]} for v in self.versions]}


@dataclass(frozen=True)
class _Prepared:
    item: ArchiveItem
    digests: dict[str, bytes]
    indication: str | None
    report: str | None


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _looks_signed(data: bytes) -> bool:
    """Whether ``data`` is a format the verifier reads that carries (or claims) a signature."""
    from server.validation.asic import is_asic
    from server.xmlsafe import looks_like_xml

    if is_asic(data):
        return True
    if data.startswith(b"%PDF-"):
        return b"/ByteRange" in data
    if looks_like_xml(data):
        return b"http://www.w3.org/2000/09/xmldsig#" in data
    if data[:1] == b"\x30":
        from asn1crypto import cms

        try:
            return bool(cms.ContentInfo.load(data)["content_type"].native == "signed_data")
        except (ValueError, TypeError):
            return False
    return data.lstrip()[:11] in (b"-----BEGIN ",) and (b"PKCS7" in data[:64] or b"CMS" in data[:64])


def _worst(indications: Sequence[Indication]) -> Indication:
    for worst in (Indication.TOTAL_FAILED, Indication.INDETERMINATE):
        if worst in indications:
            return worst
    return Indication.TOTAL_PASSED


class ArchiveService:
    def __init__(self, engine: Engine, audit: AuditLog, store: DocumentStore, trees: ArchiveTrees,
                 verification: VerificationService, settings: ArchiveSettings) -> None:
        self._engine = engine
        self._audit = audit
        self._store = store
        self.trees = trees
        self._verification = verification
        self._settings = settings
        self.algorithms = trees.algorithms
        self.horizons = parse_horizons(settings.algorithm_horizons)
        self.signature_horizons = SignatureHorizons.parse(settings.signature_horizons)

    # --- submission ------------------------------------------------------------------------------------

    def submit(self, principal: Principal, items: Sequence[ArchiveItem], metadata: Mapping[str, str] | None = None,
               *, verify_signatures: bool = True) -> ArchiveObjectInfo:
        """A new archive object (random AOID) of ``items``; durable on return, its items pending."""
        require(principal, Action.ARCHIVE_SUBMIT)
        prepared = self._prepare(items, verify_signatures)
        meta = _metadata(metadata)
        self._put(prepared)
        aoid, now = secrets.token_urlsafe(16), datetime.now(timezone.utc)
        with self._engine.begin() as conn:
            conn.execute(insert(OBJECTS).values(aoid=aoid, owner_id=principal.user_id, current_version=1,
                                                created_at=now))
            self._insert_version(conn, aoid, 1, prepared, meta, now)
            self._audit.append_many_in(conn, [(principal.name, "archive.submit", aoid, _audit_items(prepared))])
        return self._info(aoid)

    def submit_hashes(self, principal: Principal, digests: Sequence[Mapping[str, bytes]],
                      name: str = "document", mime_type: str = "application/octet-stream") -> list[str]:
        """The bulk path: one archive object per entry, each one hash-only item, all in one transaction with one
        audit entry; the AOIDs in order. The rows go in at driver speed (:mod:`server.db.rows`), and the
        AOIDs share a random prefix with an ascending suffix, so that their index grows at one place."""
        require(principal, Action.ARCHIVE_SUBMIT)
        sizes = {a: _SIZES[a] for a in self.algorithms}
        for n, entry in enumerate(digests):  # the usual entry, one hash of an archive algorithm, checked inline
            if len(entry) != 1 or any(len(value) != sizes.get(a) for a, value in entry.items()):
                self._check_digests(entry, f"entry {n}")
        rows = list(digests)
        if not rows:
            raise SiegelError(Code.BAD_REQUEST, "nothing to archive: no hash values given")
        if len(rows) > _BULK_MAX:
            raise SiegelError(Code.BAD_REQUEST, f"at most {_BULK_MAX} hash values in one bulk submission")
        prefix = secrets.token_urlsafe(12)
        aoids = [f"{prefix}{n:06x}" for n in range(len(rows))]
        with self._engine.begin() as conn:
            now = rows_db.driver_value(conn, OBJECTS, "created_at", datetime.now(timezone.utc))
            no = rows_db.driver_value(conn, ITEMS, "stored", False)
            rows_db.insert_rows(conn, OBJECTS, ("aoid", "owner_id", "current_version", "created_at"),
                                zip(aoids, repeat(principal.user_id), repeat(1), repeat(now)))
            rows_db.insert_rows(conn, VERSIONS, ("aoid", "version", "created_at", "metadata_json"),
                                zip(aoids, repeat(1), repeat(now), repeat("{}")))
            rows_db.insert_rows(conn, ITEMS, ("aoid", "version", "position", "name", "mime_type", "stored",
                                              "created_at", *(f"digest_{a}" for a in ARCHIVE_ALGORITHMS)),
                                zip(aoids, repeat(1), repeat(0), repeat(name), repeat(mime_type), repeat(no),
                                    repeat(now), *([row.get(a) for row in rows] for a in ARCHIVE_ALGORITHMS)))
            listing = hashlib.sha256("\n".join(aoids).encode()).hexdigest()
            self._audit.append_many_in(conn, [(principal.name, "archive.submit-bulk", aoids[0], {
                "objects": len(aoids), "last": aoids[-1], "aoids_sha256": listing})])
        return aoids

    def update(self, principal: Principal, aoid: str, items: Sequence[ArchiveItem],
               metadata: Mapping[str, str] | None = None, *, verify_signatures: bool = True) -> ArchiveObjectInfo:
        """A new version of ``aoid`` holding ``items``."""
        require(principal, Action.ARCHIVE_SUBMIT)
        self._owned(principal, aoid, Action.ARCHIVE_READ)
        prepared = self._prepare(items, verify_signatures)
        meta = _metadata(metadata)
        self._put(prepared)
        with self._engine.begin() as conn:
            version = conn.execute(update(OBJECTS).where(OBJECTS.c.aoid == aoid, OBJECTS.c.deleted_at.is_(None))
                                   .values(current_version=OBJECTS.c.current_version + 1)
                                   .returning(OBJECTS.c.current_version)).scalar_one_or_none()
            if version is None:
                raise SiegelError(Code.NOT_FOUND, f"no archive object {aoid!r}")
            self._insert_version(conn, aoid, version, prepared, meta, datetime.now(timezone.utc))
            self._audit.append_many_in(conn, [(principal.name, "archive.update", aoid,
                                               {"version": version, **_audit_items(prepared)})])
        return self._info(aoid)

    def _insert_version(self, conn: Any, aoid: str, version: int, prepared: Sequence[_Prepared],
                        meta: Mapping[str, str], now: datetime) -> None:
        conn.execute(insert(VERSIONS).values(aoid=aoid, version=version, created_at=now,
                                             metadata_json=json.dumps(dict(meta), sort_keys=True)))
        conn.execute(insert(ITEMS), [{
            "aoid": aoid, "version": version, "position": n, "name": p.item.name, "mime_type": p.item.mime_type,
            "stored": p.item.content is not None, "size": None if p.item.content is None else len(p.item.content),
            "created_at": now, "indication": p.indication, "report": p.report,
            **{f"digest_{a}": p.digests.get(a) for a in ARCHIVE_ALGORITHMS}} for n, p in enumerate(prepared)])

    def _put(self, prepared: Sequence[_Prepared]) -> None:
        """The contents into the store, before any row references them."""
        for p in prepared:
            if p.item.content is not None:
                self._store.put(p.item.content)

    def _prepare(self, items: Sequence[ArchiveItem], verify_signatures: bool) -> list[_Prepared]:
        if not items:
            raise SiegelError(Code.BAD_REQUEST, "nothing to archive: no items given")
        out = []
        for n, item in enumerate(items):
            what = f"item {n + 1} ({item.name!r})"
            if not item.name or len(item.name) > 500 or not item.mime_type or len(item.mime_type) > 200:
                raise SiegelError(Code.BAD_REQUEST, f"{what}: a name (1-500 characters) and a MIME type "
                                                    "(1-200 characters) are needed")
            if item.content is None:
                out.append(_Prepared(item, self._check_digests(item.digests, what), None, None))
                continue
            digests = {a: hashlib.new(a, item.content).digest() for a in {"sha256", *self.algorithms}}
            for algorithm, given in item.digests.items():
                if digests.get(algorithm, hashlib.new(algorithm, item.content).digest()
                               if algorithm in ARCHIVE_ALGORITHMS else b"") != given:
                    raise SiegelError(Code.BAD_REQUEST, f"{what}: the given {algorithm} hash does not match the content")
            indication, report = self._verified(item, what) if verify_signatures else (None, None)
            out.append(_Prepared(item, digests, indication, report))
        return out

    def _check_digests(self, digests: Mapping[str, bytes], what: str) -> dict[str, bytes]:
        for algorithm, value in digests.items():
            if algorithm not in _SIZES:
                raise SiegelError(Code.BAD_REQUEST, f"{what}: hash algorithm {algorithm!r} is not archived here "
                                                    f"(use {', '.join(ARCHIVE_ALGORITHMS)})")
            if len(value) != _SIZES[algorithm]:
                raise SiegelError(Code.BAD_REQUEST, f"{what}: a {algorithm} hash has {_SIZES[algorithm]} bytes, "
                                                    f"not {len(value)}")
        if not set(digests) & set(self.algorithms):
            raise SiegelError(Code.BAD_REQUEST, f"{what}: give its content or a hash in one of the archive's "
                                                f"algorithms ({', '.join(self.algorithms)})")
        return dict(digests)

    def _verified(self, item: ArchiveItem, what: str) -> tuple[str | None, str | None]:
        """The verification of a signed document (None, None for an unsigned one); refuses by policy."""
        from server.validation.report import to_json

        assert item.content is not None
        if not _looks_signed(item.content):
            return None, None
        try:
            report = self._verification.verify(item.content, name=item.name)
        except SiegelError as exc:
            if exc.code is Code.BAD_REQUEST and "holds no signature" in exc.message:
                return None, None
            indication, body = Indication.TOTAL_FAILED, {"error": exc.message}
        else:
            indication = _worst([s.indication for s in report.signatures])
            body = to_json(report)
        if indication is not Indication.TOTAL_PASSED and self._settings.invalid_signatures == "refuse":
            raise SignatureRefused(Code.BAD_REQUEST, f"{what}: its signature does not verify ({indication.value}); "
                                                     "the archive refuses it (archive.invalid_signatures = refuse)")
        return indication.value, json.dumps(body, sort_keys=True)

    # --- reading ---------------------------------------------------------------------------------------

    def _object(self, aoid: str) -> Any:
        """The object's row, deleted or not (NOT_FOUND: never existed)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(OBJECTS).where(OBJECTS.c.aoid == aoid)).one_or_none()
        if row is None:
            raise SiegelError(Code.NOT_FOUND, f"no archive object {aoid!r}")
        return row

    def _owned(self, principal: Principal, aoid: str, action: Action) -> Any:
        """The live object's row once ``principal`` may ``action`` on it: ownership is checked before deletion, so
        that only who may see the object learns it was deleted (for anyone else it is refused like any other's)."""
        row = self._object(aoid)
        require(principal, action, row.owner_id)
        if row.deleted_at is not None:
            raise SiegelError(Code.NOT_FOUND, f"archive object {aoid!r} was deleted on {_iso(row.deleted_at)}")
        return row

    def info(self, principal: Principal, aoid: str) -> ArchiveObjectInfo:
        """The object's versions, items, states and verification reports."""
        self._owned(principal, aoid, Action.ARCHIVE_READ)
        return self._info(aoid)

    def list_objects(self, principal: Principal, limit: int, offset: int = 0) -> tuple[int, list[ArchiveObjectInfo]]:
        """The archive objects ``principal`` may read (its own; everyone's for the roles ANY_OWNER names), newest
        first, not deleted: their total and the page of ``limit`` from ``offset``."""
        from sqlalchemy import func

        require(principal, Action.ARCHIVE_READ)
        live = OBJECTS.c.deleted_at.is_(None)
        if Role(principal.role) not in ANY_OWNER[Action.ARCHIVE_READ]:
            live = live & (OBJECTS.c.owner_id == principal.user_id)
        with self._engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(OBJECTS).where(live)).scalar_one()
            aoids = conn.execute(select(OBJECTS.c.aoid).where(live).order_by(OBJECTS.c.created_at.desc(),
                                                                              OBJECTS.c.aoid)
                                 .limit(limit).offset(offset)).scalars().all()
        return total, [self._info(aoid) for aoid in aoids]

    def _info(self, aoid: str) -> ArchiveObjectInfo:
        row = self._object(aoid)
        with self._engine.connect() as conn:
            versions = conn.execute(select(VERSIONS).where(VERSIONS.c.aoid == aoid).order_by(VERSIONS.c.version)).all()
            items = conn.execute(select(ITEMS).where(ITEMS.c.aoid == aoid)
                                 .order_by(ITEMS.c.version, ITEMS.c.position)).all()
        by_version: dict[int, list[ItemInfo]] = {}
        for item in items:
            by_version.setdefault(item.version, []).append(self._item_info(item))
        infos = tuple(VersionInfo(v.version, v.created_at, json.loads(v.metadata_json),
                                  tuple(by_version.get(v.version, ()))) for v in versions)
        newest = infos[-1].items if infos else ()
        state = "pending" if any(i.state == "pending" for i in newest) else "archived"
        return ArchiveObjectInfo(aoid, row.owner_id, row.created_at, state, infos)

    def _item_info(self, item: Any) -> ItemInfo:
        digests = {a: getattr(item, f"digest_{a}") for a in ARCHIVE_ALGORITHMS if getattr(item, f"digest_{a}")}
        pending = any(getattr(item, f"tree_{a}") is None for a in self.algorithms if a in digests)
        return ItemInfo(item.name, item.mime_type, item.size, item.stored, digests,
                        "pending" if pending else "archived", item.indication,
                        json.loads(item.report) if item.report else None)

    def _items(self, aoid: str, version: int | None) -> list[Any]:
        row = self._object(aoid)
        number = row.current_version if version is None else version
        with self._engine.connect() as conn:
            items = conn.execute(select(ITEMS).where(ITEMS.c.aoid == aoid, ITEMS.c.version == number)
                                 .order_by(ITEMS.c.position)).all()
        if not items:
            raise SiegelError(Code.NOT_FOUND, f"archive object {aoid!r} has no version {number}")
        return items

    def retrieve(self, principal: Principal, aoid: str, version: int | None = None
                 ) -> list[tuple[ArchiveItem, bytes | None]]:
        """The items of a version (default: the newest) with their content (None: only hashes archived)."""
        self._owned(principal, aoid, Action.ARCHIVE_READ)
        out = []
        for item in self._items(aoid, version):
            content = self._store.read(item.digest_sha256.hex()) if item.stored else None
            info = self._item_info(item)
            out.append((ArchiveItem(item.name, item.mime_type, content, info.digests), content))
        return out

    def evidence(self, principal: Principal, aoid: str, fmt: str = "ers", *, seal: bool = True,
                 version: int | None = None) -> list[bytes]:
        """One evidence record per item of the version (default: the newest), in the primary algorithm the item
        has; ``seal`` builds the pending trees now (else a pending item is a CONFLICT)."""
        if fmt not in FORMATS:
            raise SiegelError(Code.BAD_REQUEST, f"evidence record format {fmt!r}: expected ers or xml")
        self._owned(principal, aoid, Action.ARCHIVE_READ)
        items = self._items(aoid, version)
        if seal and any(self._item_info(i).state == "pending" for i in items):
            self.trees.collect()
        encode = ers.encode if fmt == "ers" else xmlers.encode
        records = []
        for item in items:
            lineage = next(a for a in self.algorithms if getattr(item, f"digest_{a}") is not None)
            records.append(encode(self.trees.record(item.id, lineage)))
        return records

    def verify(self, record: bytes, *, data: bytes | None = None,
               digests: Mapping[str, bytes] | None = None) -> EvidenceReport:
        """The report on an evidence record (ERS or XMLERS) for the document ``data`` or its hash(es)."""
        return evidence_verify.verify(record, data=data, digests=digests, trust=self._verification.trust(),
                                      horizons={**evidence_verify.DEFAULT_HORIZONS, **self.horizons})

    # --- deletion --------------------------------------------------------------------------------------

    def delete(self, principal: Principal, aoid: str, reason: str) -> None:
        """Delete ``aoid`` (logged with ``reason``): its contents leave the store; its hashes stay in their trees."""
        if not reason.strip():
            raise SiegelError(Code.BAD_REQUEST, "a deletion needs a reason (it is logged)")
        self._owned(principal, aoid, Action.ARCHIVE_DELETE)
        with self._engine.begin() as conn:
            gone = conn.execute(update(OBJECTS).where(OBJECTS.c.aoid == aoid, OBJECTS.c.deleted_at.is_(None))
                                .values(deleted_at=datetime.now(timezone.utc), deletion_reason=reason[:2000])).rowcount
            if gone != 1:
                raise SiegelError(Code.NOT_FOUND, f"no archive object {aoid!r}")
            stored = set(conn.execute(select(ITEMS.c.digest_sha256).where(ITEMS.c.aoid == aoid,
                                                                           ITEMS.c.stored.is_(True))).scalars())
            conn.execute(update(ITEMS).where(ITEMS.c.aoid == aoid).values(stored=False))
            self._audit.append_many_in(conn, [(principal.name, "archive.delete", aoid, {
                "reason": reason[:2000], "documents_removed": len(stored)})])
        self._store.discard((d.hex() for d in stored), self._referenced)

    def _referenced(self, digests: set[str]) -> set[str]:
        """Those of ``digests`` (SHA-256 hex) some stored item still references."""
        wanted = [bytes.fromhex(d) for d in digests]
        with self._engine.connect() as conn:
            found = conn.execute(select(ITEMS.c.digest_sha256).where(ITEMS.c.stored.is_(True),
                                                                      ITEMS.c.digest_sha256.in_(wanted))).scalars()
            return {d.hex() for d in found}

    def sweep_store(self) -> int:
        """Remove the store's unreferenced files (the job archive-store-sweep); the count."""
        return self._store.sweep(self._referenced)

    # --- renewal and statistics -----------------------------------------------------------------------

    @property
    def renew_before(self) -> timedelta:
        return timedelta(days=self._settings.renew_timestamps_before_days)

    def renewal_algorithm(self) -> str:
        """The configured algorithm trusted longest: where a hash-tree renewal moves."""
        far = datetime.max.replace(tzinfo=timezone.utc)
        return max(self.algorithms, key=lambda a: self.horizons.get(a, far))

    def renew(self, *, timestamps: bool = True, hashtree: str | None = None, force: bool = False
              ) -> dict[str, Any]:
        """Renew now: timestamps due, by their TSA certificate's expiry or their signature's horizon (all with
        ``force``), and a hash-tree renewal into ``hashtree`` of the current
        trees in another algorithm (all with ``force``); without ``hashtree`` the trees whose algorithm's horizon
        is near move to :meth:`renewal_algorithm`."""
        done: dict[str, Any] = {}
        current = dict(self.trees.current())
        if hashtree is not None:
            done["hashtree"] = self._hashtree(hashtree, [t for t, a in current.items() if force or a != hashtree])
        else:
            target = self.renewal_algorithm()
            due = [t for t in self.trees.hashtree_due(self.renew_before, self.horizons) if current[t] != target]
            if due:
                done["hashtree"] = self._hashtree(target, due)
        if timestamps:
            done["timestamps"] = self.trees.renew_timestamps(self.renew_before, self.signature_horizons, force)
        return done

    def _hashtree(self, algorithm: str, tree_ids: list[int]) -> dict[str, Any]:
        result: HashTreeRenewal = self.trees.renew_hashtrees(algorithm, tree_ids)
        return {"algorithm": algorithm, "trees": result.trees, "renewed": result.renewed,
                "notRenewable": len(result.skipped)}

    def stats(self, principal: Principal | None = None) -> dict[str, Any]:
        """Archive-wide (scope "archive") for the operator (no principal) and the roles that read every object (admin,
        auditor): objects, items, trees, pending items, the oldest pending one, the next renewals, and objects, items
        and pending items per account. Any other account gets the same counts over its own objects (scope
        "account"), without the trees, which all accounts share."""
        from sqlalchemy import func

        if principal is not None:
            require(principal, Action.ARCHIVE_READ)
        own = principal is not None and Role(principal.role) not in ANY_OWNER[Action.ARCHIVE_READ]
        live = OBJECTS.c.deleted_at.is_(None)
        pending_items = pending_condition(self.algorithms)
        with self._engine.connect() as conn:
            if own:
                assert principal is not None
                mine = OBJECTS.c.owner_id == principal.user_id
                objects = conn.execute(select(func.count()).select_from(OBJECTS).where(live, mine)).scalar_one()
                joined = ITEMS.join(OBJECTS, OBJECTS.c.aoid == ITEMS.c.aoid)
                items = conn.execute(select(func.count()).select_from(joined).where(mine)).scalar_one()
                pending, oldest = conn.execute(select(func.count(), func.min(ITEMS.c.created_at)).select_from(joined)
                                               .where(mine, pending_items)).one()
            else:
                objects = conn.execute(select(func.count()).select_from(OBJECTS).where(live)).scalar_one()
                items = conn.execute(select(func.count()).select_from(ITEMS)).scalar_one()
                accounts = self._per_account(conn, pending_items)
        stamp_due, tree_due = self.trees.next_renewals(self.renew_before, self.horizons, self.signature_horizons)
        renewals = {"nextTimestampRenewal": _iso(stamp_due), "nextHashTreeRenewal": _iso(tree_due)}
        if own:
            return {"scope": "account", "objects": objects, "items": items, "pending": pending,
                    "oldestPending": _iso(oldest), **renewals}
        pending, oldest = self.trees.pending()
        return {"scope": "archive", "objects": objects, "items": items, **self.trees.counts(), "pending": pending,
                "oldestPending": _iso(oldest), **renewals, "accounts": accounts}

    @staticmethod
    def _per_account(conn: Any, pending_items: Any) -> dict[str, dict[str, int]]:
        """Per owner's name (a deleted account's objects under "-"): live objects, items, pending items."""
        from sqlalchemy import case, func

        users = User.__table__
        owner = func.coalesce(users.c.name, "-")
        rows = conn.execute(select(owner, func.count(func.distinct(case((OBJECTS.c.deleted_at.is_(None),
                                                                         OBJECTS.c.aoid)))),
                                   func.count(ITEMS.c.id), func.count(case((pending_items, ITEMS.c.id))))
                            .select_from(OBJECTS.join(ITEMS, ITEMS.c.aoid == OBJECTS.c.aoid)
                                         .outerjoin(users, users.c.id == OBJECTS.c.owner_id))
                            .group_by(owner).order_by(owner)).all()
        return {name: {"objects": objects, "items": items, "pending": pending}
                for name, objects, items, pending in rows}


def _metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    meta = dict(metadata or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise SiegelError(Code.BAD_REQUEST, "metadata: expected names and values that are strings")
    if len(json.dumps(meta)) > 65536:
        raise SiegelError(Code.BAD_REQUEST, "metadata: at most 64 KiB of JSON")
    return meta


def _audit_items(prepared: Sequence[_Prepared]) -> dict[str, Any]:
    return {"items": [{"name": p.item.name, "sha256": p.digests["sha256"].hex() if "sha256" in p.digests else None,
                       "stored": p.item.content is not None, "indication": p.indication} for p in prepared]}
