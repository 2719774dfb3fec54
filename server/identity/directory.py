"""Accounts from LDAP / Active Directory: synchronisation, automatic certificate enrolment, and the
interfaces the directory adapter implements.

``DirectorySync.run`` reads the directory through a :class:`DirectoryReader` and makes Siegel's
accounts follow it:

- Every run reads all groups (few compared with users) and works out, for the groups that
  ``directory.role_groups`` and ``directory.enrol_groups`` name, who is in them directly or through
  nested groups: by LDAP_MATCHING_RULE_IN_CHAIN where the server has it (AD), else by walking the
  groups' ``member`` values here (OpenLDAP has no in-chain rule). Memberships are stored in
  ``groups``/``group_members`` (source ``directory``) for those groups only.
- A full run reads every user; an incremental run only the users changed after the high-water mark
  (``uSNChanged`` on AD, ``entryCSN`` on OpenLDAP, ``modifyTimestamp`` elsewhere) — plus, from the
  database, every account whose group-given role or memberships changed. An account is written only
  when something about it changed.
- Accounts are created with ``source = 'directory'`` and ``external_id`` = the stable id (objectGUID
  or entryUUID), so renames keep the account; nothing is ever deleted. A user disabled in the
  directory (AD userAccountControl bit 2, or the configured attribute) is disabled here; one that is
  gone from the directory is disabled by the next full run. The sync enables again only accounts it
  disabled itself: an account an administrator disabled stays disabled.
- Certificates: an enabled account in an enrolment group without a valid user-signing certificate
  gets an HSM key and a certificate from the internal CA; every valid certificate of a disabled
  directory account is revoked (cessationOfOperation). Both are checked on every run, so what failed
  (HSM away) is done by the next one.
- The pending workflow assignments of the accounts a run disables are flagged in its transaction (the
  ``on_disable`` hook, :mod:`server.workflows.flags`), with an audit entry each; the run that enables such
  an account again clears those flags (the ``on_enable`` hook) the same way.
- The directory unreachable: :class:`DirectoryUnavailable`, recorded in ``directory_sync.last_error``;
  nothing changes, local accounts keep working, and the high-water mark stays, so the next run
  catches up.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, cast

from sqlalchemy import Connection, Engine, Table, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker
from sqlalchemy.sql import ColumnElement

from server.audit import AuditLog
from server.config import DirectorySettings
from server.db.models import Certificate, DirectoryAccount, Group, GroupMember, User
from server.db.models import DirectorySync as SyncRow
from server.errors import Code, SiegelError

if TYPE_CHECKING:
    from server.pki.ca import CertificateAuthorityService

log = logging.getLogger("siegel.directory")
ACTOR = "ldap-sync"
_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,200}$")  # the account name rule of server/identity/users.py
_API_KEY = re.compile(r"^ak_[0-9a-f]{32}$")  # API client keys; no account may be named like one
_STATE_ID = 1
_MAX_CHANGES_LISTED = 1000
_USER_SIGNING = "user-signing"  # server.pki.profiles.USER_SIGNING.name


class DirectoryUnavailable(SiegelError):
    """No directory server answers (or it fails mid-way); local accounts are not affected."""

    def __init__(self, message: str) -> None:
        super().__init__(Code.DIRECTORY_UNAVAILABLE, f"directory unavailable: {message}")


@dataclass(frozen=True)
class DirectoryUser:
    dn: str
    external_id: str | None
    username: str | None
    upn: str | None
    email: str | None
    display_name: str | None
    disabled: bool
    change_mark: str | None


@dataclass(frozen=True)
class DirectoryGroup:
    dn: str
    name: str
    external_id: str | None
    members: tuple[str, ...]  # DNs, users and nested groups


class DirectoryReader(Protocol):
    """What the sync needs from a directory (``adapters/directory/ldap.py`` implements it)."""

    @property
    def change_attribute(self) -> str: ...

    def users(self, changed_since: str | None = None) -> Iterator[DirectoryUser]: ...

    def groups(self) -> list[DirectoryGroup]: ...

    def nested_members(self, group_dn: str) -> set[str] | None: ...

    def close(self) -> None: ...


class DirectoryAuthenticator(Protocol):
    """Password check of a directory account by binding as it (Siegel keeps no copy of the password)."""

    def bind_check(self, username: str, password: str) -> bool: ...


@dataclass
class SyncSummary:
    mode: str  # "full" or "incremental"
    dry_run: bool
    users_read: int = 0  # user entries the directory returned
    groups_read: int = 0
    created: int = 0
    updated: int = 0
    disabled: int = 0
    enabled: int = 0
    unchanged: int = 0
    certificates_issued: int = 0
    certificates_revoked: int = 0
    workflow_steps: int = 0  # pending workflow assignments of disabled accounts flagged (not counted in a dry run)
    workflow_steps_cleared: int = 0  # flags of those assignments cleared: their account is enabled again
    errors: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)  # one line per change (the first 1000)
    high_water: str | None = None
    change_attribute: str | None = None
    seconds: float = 0.0

    def note(self, line: str) -> None:
        if len(self.changes) < _MAX_CHANGES_LISTED:
            self.changes.append(line)

    def lines(self) -> list[str]:
        """The summary for people (the CLI prints it)."""
        verb = "would be" if self.dry_run else ""
        head = (f"{self.mode} sync{' (dry run: nothing written)' if self.dry_run else ''}: "
                f"{self.users_read} users and {self.groups_read} groups read in {self.seconds:.2f} s")
        counts = ", ".join(f"{n} {what}" for what, n in (
            ("created", self.created), ("updated", self.updated), ("disabled", self.disabled),
            ("enabled", self.enabled), ("unchanged", self.unchanged),
            ("certificates issued", self.certificates_issued),
            ("certificates revoked", self.certificates_revoked)))
        out = [head, f"accounts{' (' + verb + ')' if verb else ''}: {counts}"]
        if not self.dry_run:
            out.append(f"workflow steps flagged: {self.workflow_steps}")
            out.append(f"workflow step flags cleared: {self.workflow_steps_cleared}")
        out += [f"  {c}" for c in self.changes]
        out += [f"error: {e}" for e in self.errors]
        return out


def normalise_dn(dn: str) -> str:
    """A DN compared as the directory would, near enough: case and spaces around , = ignored."""
    return re.sub(r"\s*([,=+])\s*", r"\1", dn.strip()).lower()


def parse_role_groups(text: str, roles: Iterable[str]) -> list[tuple[str, str]]:
    """``"group=role, group=role"`` as (group name lower-cased, role), in order."""
    known = list(roles)
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        group, sep, role = part.rpartition("=")
        group, role = group.strip(), role.strip()
        if not sep or not group or role not in known:
            raise SiegelError(Code.CONFIG, f"setting directory.role_groups: {part!r} is not GROUP=ROLE with a role "
                                           f"of {', '.join(known)}")
        out.append((group.lower(), role))
    return out


def _table(model: type) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


def _mark_key(attribute: str, mark: str) -> tuple[int, str]:
    return (int(mark), "") if attribute == "uSNChanged" and mark.isdigit() else (0, mark)


def _utc(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass
class _Account:
    id: int
    name: str
    email: str
    display_name: str | None
    role: str
    disabled: bool
    external_id: str
    dn: str | None
    disabled_by_sync: bool
    change_mark: str | None
    groups: set[str]


@dataclass(frozen=True)
class _Wanted:
    name: str
    email: str
    display_name: str | None
    role: str
    directory_disabled: bool
    dn: str
    groups: frozenset[str]
    change_mark: str | None


AccountHook = Callable[[Connection, set[int], datetime], list[tuple[str, str, str, dict]]]
"""Called in the sync's transaction with the ids of the accounts it disables (``on_disable``) or enables again
(``on_enable``); returns audit entries to add (server.workflows.flags flags, or clears the flags of, their
pending workflow assignments)."""


class DirectorySync:
    """Makes the directory accounts follow the directory; see the module docstring."""

    def __init__(self, engine: Engine, audit: AuditLog, settings: DirectorySettings,
                 reader: Callable[[], DirectoryReader], ca: CertificateAuthorityService | None,
                 roles: Iterable[str], on_disable: AccountHook | None = None,
                 on_enable: AccountHook | None = None) -> None:
        self._engine = engine
        self._on_disable, self._on_enable = on_disable, on_enable
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._audit = audit
        self._s = settings
        self._reader = reader
        self._ca = ca
        roles = list(roles)
        if settings.default_role not in roles:
            raise SiegelError(Code.CONFIG, f"setting directory.default_role: {settings.default_role!r} is not one of "
                                           f"{', '.join(roles)}")
        self._role_groups = parse_role_groups(settings.role_groups, roles)
        self._enrol = [g.strip().lower() for g in settings.enrol_groups.split(",") if g.strip()]
        self._relevant = list(dict.fromkeys([g for g, _ in self._role_groups] + self._enrol))

    def purpose(self, group: str) -> tuple[str | None, bool]:
        """The role the directory group ``group`` gives (directory.role_groups, the first that names it) and
        whether it is an enrolment group (directory.enrol_groups)."""
        name = group.lower()
        return next((role for g, role in self._role_groups if g == name), None), name in self._enrol

    # --- state -------------------------------------------------------------------------------

    def state(self) -> SyncRow:
        """The sync row (a transient empty one before the first run)."""
        with self._sessions() as session:
            row = session.get(SyncRow, _STATE_ID)
        return row or SyncRow(id=_STATE_ID)

    def full_due(self, now: datetime | None = None) -> bool:
        """Whether the scheduled job should run a full sync (never ran one, or too long ago)."""
        last = _utc(self.state().last_full_at)
        now = now or datetime.now(UTC)
        return last is None or now - last >= timedelta(hours=self._s.full_sync_hours)

    def run_scheduled(self) -> None:
        """The job "ldap-sync": incremental, full when ``directory.full_sync_hours`` have passed.

        The directory away fails the job (the scheduler retries it soon); errors of single entries (a
        name Siegel cannot take, a certificate the HSM could not make) are logged and kept in
        ``directory_sync.last_error``, and the job keeps its interval: the next run tries them again."""
        summary = self.run(full=self.full_due())
        fields = {k: v for k, v in asdict(summary).items() if k not in ("changes", "errors")}
        log.info("ldap sync", extra={"fields": {**fields, "errors": len(summary.errors)}})
        for error in summary.errors:
            log.warning("ldap sync: %s", error)

    def _record_failure(self, error: str) -> None:
        now = datetime.now(UTC)
        with self._sessions.begin() as session:
            row = session.get(SyncRow, _STATE_ID)
            if row is None:
                row = SyncRow(id=_STATE_ID)
                session.add(row)
            row.last_run_at, row.last_error = now, error[:4000]

    # --- the run -------------------------------------------------------------------------------

    def run(self, full: bool = False, dry_run: bool = False,
            progress: Callable[[str, int], None] | None = None) -> SyncSummary:
        started = time.monotonic()
        state = self.state()
        reader = self._reader()
        try:
            try:
                change_attribute = reader.change_attribute
                if state.high_water is None or state.change_attribute != change_attribute:
                    full = True
                summary = SyncSummary(mode="full" if full else "incremental", dry_run=dry_run,
                                      change_attribute=change_attribute)
                directory_groups = reader.groups()
                summary.groups_read = len(directory_groups)
                members = self._memberships(reader, directory_groups, summary)
                entries = []
                for entry in reader.users(None if full else state.high_water):
                    entries.append(entry)
                    if progress is not None and len(entries) % 1000 == 0:
                        progress("users read", len(entries))
            finally:
                reader.close()
        except SiegelError as exc:  # unavailable, or refused (configuration): nothing changed
            if not dry_run:
                self._record_failure(exc.message)
            raise
        summary.users_read = len(entries)
        if progress is not None:
            progress("users read", len(entries))

        accounts = self._load_accounts()
        by_external = {a.external_id: a for a in accounts.values()}
        wanted: dict[int | str, _Wanted] = {}  # account id, or external id of a new account
        seen: set[int] = set()
        high = state.high_water if not full else None
        for entry in entries:
            if entry.change_mark and (high is None or _mark_key(change_attribute, entry.change_mark)
                                      > _mark_key(change_attribute, high)):
                high = entry.change_mark
            problem = self._check_entry(entry)
            if problem:
                summary.errors.append(problem)
                continue
            assert entry.external_id is not None and entry.username is not None
            groups = frozenset(members.get(normalise_dn(entry.dn), ()))
            want = _Wanted(name=entry.username, email=entry.email or entry.upn or "",
                           display_name=entry.display_name, role=self._role(groups),
                           directory_disabled=entry.disabled, dn=entry.dn, groups=groups,
                           change_mark=entry.change_mark)
            account = by_external.get(entry.external_id)
            if account is None:
                wanted[entry.external_id] = want
            else:
                wanted[account.id] = want
                seen.add(account.id)
        if not full:
            # Unchanged entries: only their group-given role and memberships can have changed.
            for account in accounts.values():
                if account.id in seen or account.dn is None:
                    continue
                groups = frozenset(members.get(normalise_dn(account.dn), ()))
                role = self._role(groups)
                if groups != account.groups or role != account.role:
                    wanted[account.id] = _Wanted(account.name, account.email, account.display_name, role,
                                                 account.disabled and account.disabled_by_sync, account.dn,
                                                 groups, account.change_mark)
        summary.high_water = high
        pending = self._apply(accounts, wanted, full, seen, groups_by_name={g.name.lower(): g for g in directory_groups},
                              summary=summary, dry_run=dry_run)
        self._certificates(summary, dry_run, pending)
        summary.seconds = round(time.monotonic() - started, 3)
        if not dry_run:
            self._record(summary, full, change_attribute, high)
        return summary

    def _check_entry(self, entry: DirectoryUser) -> str | None:
        if not entry.external_id:
            return f"{entry.dn}: no {self._s.id_attribute} (the stable id); skipped"
        if not entry.username:
            return f"{entry.dn}: no {self._s.username_attribute}; skipped"
        if not _NAME.match(entry.username) or _API_KEY.match(entry.username):
            return (f"{entry.dn}: {self._s.username_attribute} {entry.username!r} is not a Siegel account name "
                    "(1-200 letters, digits or . _ @ -); skipped")
        return None

    def _role(self, groups: frozenset[str]) -> str:
        for group, role in self._role_groups:
            if group in groups:
                return role
        return self._s.default_role

    def _memberships(self, reader: DirectoryReader, groups: list[DirectoryGroup],
                     summary: SyncSummary) -> dict[str, set[str]]:
        """Normalised user DN → the relevant groups (lower-cased names) it is in, nested membership included."""
        by_dn = {normalise_dn(g.dn): g for g in groups}
        by_name = {g.name.lower(): g for g in groups}
        out: dict[str, set[str]] = defaultdict(set)
        for name in self._relevant:
            group = by_name.get(name)
            if group is None:
                summary.errors.append(f"group {name!r} (directory.role_groups / enrol_groups) is not among the "
                                      "directory's groups (directory.group_base, group_filter)")
                continue
            found = reader.nested_members(group.dn)
            if found is None:
                found = self._expand(group, by_dn)
            for dn in found:
                out[normalise_dn(dn)].add(name)
        return out

    @staticmethod
    def _expand(group: DirectoryGroup, by_dn: dict[str, DirectoryGroup]) -> set[str]:
        """Members of ``group`` and of the groups nested in it, at any depth (cycles are harmless)."""
        users: set[str] = set()
        visited = {normalise_dn(group.dn)}
        stack = [group]
        while stack:
            current = stack.pop()
            for member in current.members:
                key = normalise_dn(member)
                nested = by_dn.get(key)
                if nested is None:
                    users.add(key)
                elif key not in visited:
                    visited.add(key)
                    stack.append(nested)
        return users

    def _load_accounts(self) -> dict[int, _Account]:
        users, accounts_t = _table(User), _table(DirectoryAccount)
        query = (select(users.c.id, users.c.name, users.c.email, users.c.display_name, users.c.role,
                        users.c.disabled, users.c.external_id, accounts_t.c.dn, accounts_t.c.disabled_by_sync,
                        accounts_t.c.change_mark)
                 .select_from(users.outerjoin(accounts_t, accounts_t.c.user_id == users.c.id))
                 .where(users.c.source == "directory"))
        out: dict[int, _Account] = {}
        with self._engine.connect() as conn:
            for r in conn.execute(query):
                out[r.id] = _Account(r.id, r.name, r.email, r.display_name, r.role, bool(r.disabled),
                                     r.external_id or "", r.dn, bool(r.disabled_by_sync), r.change_mark, set())
            if self._relevant:
                rows = conn.execute(select(GroupMember.user_id, Group.name)
                                    .join(Group, Group.id == GroupMember.group_id)
                                    .where(Group.source == "directory"))
                for user_id, name in rows:
                    if user_id in out:
                        out[user_id].groups.add(name.lower())
        return out

    def _apply(self, accounts: dict[int, _Account], wanted: dict[int | str, _Wanted], full: bool, seen: set[int],
               groups_by_name: dict[str, DirectoryGroup], summary: SyncSummary,
               dry_run: bool) -> tuple[set[int], int]:
        """Create, update and disable accounts, and their memberships, in one transaction. Returns the ids of
        the accounts disabled and the number of new enabled accounts in an enrolment group."""
        now = datetime.now(UTC)
        users_t = _table(User)
        names_taken: dict[str, int] = {}
        with self._engine.connect() as conn:
            names_taken = {n.lower(): i for i, n in conn.execute(select(users_t.c.id, users_t.c.name))}
        audit: list[tuple[str, str, str, dict]] = []
        creates: list[tuple[str, _Wanted]] = []
        updates: list[dict] = []
        account_rows: list[dict] = []  # directory_accounts upserts for existing accounts
        membership: dict[int | str, tuple[set[str], frozenset[str]]] = {}  # key -> (had, wants)
        for key, want in wanted.items():
            if isinstance(key, str):  # a new account
                holder = names_taken.get(want.name.lower())
                if holder is not None:
                    summary.errors.append(f"{want.dn}: the account name {want.name!r} is taken by another "
                                          "account (local, or another directory entry); skipped")
                    continue
                names_taken[want.name.lower()] = -1
                creates.append((key, want))
                summary.created += 1
                summary.note(f"create {want.name} ({want.role}{', disabled' if want.directory_disabled else ''})")
                if self._relevant:
                    membership[key] = (set(), want.groups)
                continue
            account = accounts[key]
            values: dict[str, object] = {}
            if want.name != account.name:
                holder = names_taken.get(want.name.lower())
                if holder is not None and holder != account.id:
                    summary.errors.append(f"{want.dn}: cannot rename {account.name!r} to {want.name!r}, "
                                          "which another account has; the old name stays")
                else:
                    values["name"] = want.name
            for attr in ("email", "display_name", "role"):
                if getattr(want, attr) != getattr(account, attr):
                    values[attr] = getattr(want, attr)
            disabled_by_sync = account.disabled_by_sync
            if want.directory_disabled and not account.disabled:
                values["disabled"], disabled_by_sync = True, True
                summary.disabled += 1
                summary.note(f"disable {account.name} (disabled in the directory)")
            elif not want.directory_disabled and account.disabled and account.disabled_by_sync:
                values["disabled"], disabled_by_sync = False, False
                summary.enabled += 1
                summary.note(f"enable {account.name} (enabled in the directory again)")
            changed_fields = {k: v for k, v in values.items() if k != "disabled"}
            if changed_fields:
                summary.updated += 1
                summary.note(f"update {account.name}: " + ", ".join(f"{k}={v}" for k, v in changed_fields.items()))
            if want.groups != account.groups and self._relevant:
                membership[key] = (account.groups, want.groups)
                if not changed_fields:
                    summary.updated += 1
                    summary.note(f"update {account.name}: groups {', '.join(sorted(want.groups)) or '(none)'}")
            if values:
                updates.append({"id": account.id, **values})
                action = ("user.disable" if values.get("disabled") is True else
                          "user.enable" if values.get("disabled") is False else "user.update")
                audit.append((ACTOR, action, str(values.get("name", account.name)),
                              {**changed_fields, "source": "directory"}))
            if not values and key not in membership:
                summary.unchanged += 1
            if (values or account.dn != want.dn or disabled_by_sync != account.disabled_by_sync
                    or (want.change_mark is not None and want.change_mark != account.change_mark)):
                account_rows.append({"user_id": account.id, "dn": want.dn, "change_mark": want.change_mark,
                                     "disabled_by_sync": disabled_by_sync, "seen_at": now})
        if full:  # gone from the directory (or out of the user filter): disabled, never deleted
            for account in accounts.values():
                if account.id not in seen and not account.disabled:
                    updates.append({"id": account.id, "disabled": True})
                    account_rows.append({"user_id": account.id, "dn": account.dn or "", "change_mark": None,
                                         "disabled_by_sync": True, "seen_at": now})
                    audit.append((ACTOR, "user.disable", account.name,
                                  {"source": "directory", "reason": "not in the directory any more"}))
                    summary.disabled += 1
                    summary.note(f"disable {account.name} (not in the directory any more)")
        disabling = {u["id"] for u in updates if u.get("disabled") is True}
        enabling = {u["id"] for u in updates if u.get("disabled") is False}
        new_enrol = sum(1 for _, w in creates if not w.directory_disabled and w.groups & set(self._enrol))
        if dry_run or not (creates or updates or account_rows or membership):
            return disabling, new_enrol
        try:
            return self._write(creates, updates, account_rows, membership, audit, groups_by_name, now,
                               (disabling, new_enrol), enabling, summary)
        except IntegrityError:
            raise SiegelError(Code.CONFLICT, "the accounts changed while the sync ran (another sync at the same "
                                             "time?); nothing of this run was written, run it again") from None

    def _write(self, creates: list[tuple[str, _Wanted]], updates: list[dict], account_rows: list[dict],
               membership: dict[int | str, tuple[set[str], frozenset[str]]], audit: list[tuple[str, str, str, dict]],
               groups_by_name: dict[str, DirectoryGroup], now: datetime,
               pending: tuple[set[int], int], enabling: set[int], summary: SyncSummary) -> tuple[set[int], int]:
        users_t, accounts_t = _table(User), _table(DirectoryAccount)
        with self._engine.begin() as conn:
            new_ids: dict[str, int] = {}
            if creates:
                rows = [{"name": w.name, "email": w.email, "role": w.role, "password_hash": None,
                         "disabled": w.directory_disabled, "created_at": now, "source": "directory",
                         "external_id": ext, "display_name": w.display_name, "failed_logins": 0}
                        for ext, w in creates]
                result = conn.execute(insert(users_t).returning(users_t.c.id, users_t.c.external_id,
                                                                sort_by_parameter_order=True), rows)
                new_ids = {r.external_id: r.id for r in result}
                conn.execute(insert(accounts_t), [
                    {"user_id": new_ids[ext], "dn": w.dn, "change_mark": w.change_mark,
                     "disabled_by_sync": w.directory_disabled, "seen_at": now} for ext, w in creates])
                audit.extend((ACTOR, "user.add", w.name, {"source": "directory", "external_id": ext, "role": w.role,
                                                          "email": w.email, "disabled": w.directory_disabled})
                             for ext, w in creates)
            for values in updates:
                conn.execute(update(users_t).where(users_t.c.id == values["id"])
                             .values({k: v for k, v in values.items() if k != "id"}))
            if account_rows:
                ids = [r["user_id"] for r in account_rows]
                present = set()
                for chunk in range(0, len(ids), 500):
                    present |= set(conn.execute(select(accounts_t.c.user_id)
                                                .where(accounts_t.c.user_id.in_(ids[chunk:chunk + 500]))).scalars())
                for row in account_rows:
                    if row["user_id"] in present:
                        conn.execute(update(accounts_t).where(accounts_t.c.user_id == row["user_id"])
                                     .values({k: v for k, v in row.items() if k != "user_id"}))
                    else:
                        conn.execute(insert(accounts_t).values(row))
            if membership:
                group_ids = self._group_ids(conn, {g for _, wants in membership.values() for g in wants} |
                                            {g for had, _ in membership.values() for g in had}, groups_by_name, now)
                adds, removes = [], []
                for key, (had, wants) in membership.items():
                    user_id = new_ids.get(key) if isinstance(key, str) else key
                    if user_id is None:
                        continue
                    adds += [{"group_id": group_ids[g], "user_id": user_id} for g in wants - had if g in group_ids]
                    removes += [(group_ids[g], user_id) for g in had - wants if g in group_ids]
                if adds:
                    conn.execute(insert(_table(GroupMember)), adds)
                gm = _table(GroupMember)
                for group_id, user_id in removes:
                    conn.execute(delete(gm).where(and_(gm.c.group_id == group_id, gm.c.user_id == user_id)))
            if self._on_disable is not None and pending[0]:
                flagged = self._on_disable(conn, pending[0], now)
                summary.workflow_steps = len(flagged)
                audit.extend(flagged)
            if self._on_enable is not None and enabling:
                cleared = self._on_enable(conn, enabling, now)
                summary.workflow_steps_cleared = len(cleared)
                audit.extend(cleared)
            if audit:
                self._audit.append_many_in(conn, audit)
        return pending

    def _group_ids(self, conn, names: set[str], groups_by_name: dict[str, DirectoryGroup],
                   now: datetime) -> dict[str, int]:
        """Ids of the directory groups ``names`` (lower-cased), created as needed."""
        groups_t = _table(Group)
        out: dict[str, int] = {}
        existing = {r.name.lower(): r for r in conn.execute(select(groups_t.c.id, groups_t.c.name, groups_t.c.source))}
        for name in names:
            row = existing.get(name)
            if row is not None:
                if row.source != "directory":
                    raise SiegelError(Code.CONFLICT, f"the local group {row.name!r} has the name of the directory "
                                                     "group it should mirror; rename the local group")
                out[name] = row.id
                continue
            group = groups_by_name.get(name)
            out[name] = conn.execute(insert(groups_t).values(
                name=group.name if group else name, source="directory",
                external_id=group.external_id if group else None, created_at=now).returning(groups_t.c.id)).scalar_one()
        return out

    def _certificates(self, summary: SyncSummary, dry_run: bool, pending: tuple[set[int], int]) -> None:
        """Enrol who should have a certificate; revoke the certificates of disabled directory accounts.

        ``pending``: in a dry run, the accounts the run would disable and the number of new accounts it
        would enrol (the database does not show them yet)."""
        now = datetime.now(UTC)
        users_t, certs_t, gm, groups_t = _table(User), _table(Certificate), _table(GroupMember), _table(Group)
        valid = and_(certs_t.c.revoked_at.is_(None), certs_t.c.not_after > now)
        would_disable, would_enrol = pending
        with self._engine.connect() as conn:
            disabled: ColumnElement[bool] = users_t.c.disabled.is_(True)
            if dry_run and would_disable:
                disabled = disabled | users_t.c.id.in_(sorted(would_disable))
            to_revoke = list(conn.execute(
                select(certs_t.c.serial, users_t.c.name).join(users_t, users_t.c.id == certs_t.c.user_id)
                .where(users_t.c.source == "directory", disabled, valid).order_by(certs_t.c.serial)))
            to_enrol: list[str] = []
            enrol_ids = [r.id for r in conn.execute(select(groups_t.c.id, groups_t.c.name)
                                                    .where(groups_t.c.source == "directory"))
                         if r.name.lower() in self._enrol]
            if enrol_ids:
                has_cert = select(certs_t.c.serial).where(certs_t.c.user_id == users_t.c.id, valid,
                                                          certs_t.c.profile == _USER_SIGNING).exists()
                to_enrol = list(conn.execute(
                    select(users_t.c.name).distinct().join(gm, gm.c.user_id == users_t.c.id)
                    .where(users_t.c.source == "directory", users_t.c.disabled.is_(False),
                           gm.c.group_id.in_(enrol_ids), ~has_cert)
                    .order_by(users_t.c.name)).scalars())
        if dry_run:
            summary.certificates_revoked = len(to_revoke)
            summary.certificates_issued = len(to_enrol) + would_enrol
            return
        ca = self._ca
        if ca is None:
            if to_revoke or to_enrol:
                summary.errors.append("certificates: no CA service wired; nothing issued or revoked")
            return
        for serial, name in to_revoke:
            try:
                ca.revoke(serial, "cessationOfOperation", ACTOR)
                summary.certificates_revoked += 1
                summary.note(f"revoke certificate {serial} of {name} (cessationOfOperation)")
            except SiegelError as exc:
                summary.errors.append(f"revoking certificate {serial} of {name}: {exc.message}")
        for name in to_enrol:
            try:
                cert = ca.issue_user(name, ACTOR)
                summary.certificates_issued += 1
                summary.note(f"issue certificate {cert.serial} to {name} (key {cert.key_label})")
            except SiegelError as exc:
                summary.errors.append(f"enrolling {name}: {exc.message}")
                if exc.code in (Code.HSM_UNAVAILABLE, Code.HSM_LOGIN):
                    summary.errors.append("enrolment stopped: the HSM is unavailable; the next run continues")
                    break

    def _record(self, summary: SyncSummary, full: bool, change_attribute: str, high: str | None) -> None:
        now = datetime.now(UTC)
        with self._sessions.begin() as session:
            row = session.get(SyncRow, _STATE_ID)
            if row is None:
                row = SyncRow(id=_STATE_ID)
                session.add(row)
            row.change_attribute = change_attribute
            if high is not None:
                row.high_water = high
            row.last_run_at = now
            if full:
                row.last_full_at = now
            row.last_ok_at = now
            row.last_summary = json.dumps({k: v for k, v in asdict(summary).items() if k != "changes"})
            row.last_error = "; ".join(summary.errors)[:4000] or None
            self._audit.append_in(session, ACTOR, "ldap.sync", summary.mode, created=summary.created,
                                  updated=summary.updated, disabled=summary.disabled, enabled=summary.enabled,
                                  certificates_issued=summary.certificates_issued,
                                  certificates_revoked=summary.certificates_revoked, errors=len(summary.errors),
                                  high_water=high)
