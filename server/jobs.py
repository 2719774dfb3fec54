"""Scheduled jobs as database rows with leases, so that several nodes never run the same job at once.

A node claims a due job with one conditional UPDATE (due, and no live lease); only the node whose
UPDATE changed the row runs it. The lease is short (``3 × heartbeat``) and kept alive by a heartbeat
while the job runs, for at most the job's ``lease``: a node that died mid-run frees its jobs within
three heartbeats, a hung run after its ``lease``. A starting node (the first ``run_due``) releases at
once the leases of this host's processes that are gone (owner ``host:pid``, the pid no longer alive)
and those under its own name, so a restarted node runs its jobs again without waiting for them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from server.db.models import Job

log = logging.getLogger("siegel.jobs")
RETRY_AFTER_FAILURE = timedelta(minutes=1)
HEARTBEAT = timedelta(seconds=20)


@dataclass(frozen=True)
class JobSpec:
    name: str
    interval: timedelta
    run: Callable[[], None]
    lease: timedelta = timedelta(minutes=10)
    """The longest one run holds the job (its heartbeat stops then)."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class Scheduler:
    def __init__(self, engine: Engine, owner: str | None = None, heartbeat: timedelta = HEARTBEAT) -> None:
        """``owner``: this node's lease name (default ``host:pid``, which lets a restart on the host free the
        leases of its dead predecessor)."""
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self._host = self.owner.rpartition(":")[0]  # an owner named otherwise frees no one's leases
        self._heartbeat = heartbeat
        self._jobs: dict[str, JobSpec] = {}
        self._started = False

    @property
    def _silence(self) -> timedelta:
        """How long a lease outlives its last heartbeat."""
        return 3 * self._heartbeat

    def register(self, spec: JobSpec) -> None:
        """Know a job; its row is created (due at once) when no node created it before."""
        self._jobs[spec.name] = spec
        try:
            with self._sessions.begin() as session:
                if session.get(Job, spec.name) is None:
                    session.add(Job(name=spec.name, next_run=_now()))
        except IntegrityError:
            pass  # another node created it at the same moment

    def _release_dead(self) -> None:
        """Before this node's first claim: free the leases held under its own name (a predecessor's, as when a
        container restarts with the same pid) and by the processes of its host (``host:`` of its name) that are no
        longer alive."""
        if not self._host:
            return
        freed = []
        prefix = f"{self._host}:"
        with self._sessions.begin() as session:
            held = session.execute(select(Job.name, Job.lease_owner).where(
                Job.lease_owner.startswith(prefix, autoescape=True))).all()
            for name, owner in held:
                pid = owner[len(prefix):]
                if owner != self.owner and (not pid.isdigit() or _alive(int(pid))):
                    continue
                session.execute(update(Job).where(Job.name == name, Job.lease_owner == owner)
                                .values(lease_owner=None, lease_until=None))
                freed.append(name)
        if freed:
            log.warning("released the job leases of a dead process on this host",
                        extra={"fields": {"jobs": freed}})

    def _claim(self, spec: JobSpec, now: datetime) -> bool:
        with self._sessions.begin() as session:
            result = session.execute(
                update(Job)
                .where(and_(Job.name == spec.name, Job.next_run <= now,
                            or_(Job.lease_until.is_(None), Job.lease_until < now)))
                .values(lease_owner=self.owner, lease_until=now + min(spec.lease, self._silence))
            )
            return result.rowcount == 1

    def _keep_alive(self, spec: JobSpec, done: threading.Event) -> None:
        """Extend the lease every heartbeat until ``done`` or the job's ``lease`` has passed since the claim."""
        end = _now() + spec.lease
        while not done.wait(self._heartbeat.total_seconds()):
            now = _now()
            if now >= end:
                return
            try:
                with self._sessions.begin() as session:
                    session.execute(update(Job).where(and_(Job.name == spec.name, Job.lease_owner == self.owner))
                                    .values(lease_until=min(now + self._silence, end)))
            except SQLAlchemyError as exc:  # the database away for a moment: the next beat tries again
                log.warning("job lease heartbeat failed", extra={"fields": {"job": spec.name, "error": str(exc)}})

    def _finish(self, spec: JobSpec, error: str | None) -> None:
        now = _now()
        values: dict[str, object] = {"lease_owner": None, "lease_until": None}
        if error is None:
            values.update(last_ok=now, last_error=None, next_run=now + spec.interval)
        else:
            values.update(last_error=error[:2000], next_run=now + min(spec.interval, RETRY_AFTER_FAILURE))
        with self._sessions.begin() as session:
            session.execute(update(Job).where(and_(Job.name == spec.name, Job.lease_owner == self.owner)).values(**values))

    def run_due(self) -> list[str]:
        """Run every registered job that is due and not leased elsewhere; return the names run."""
        if not self._started:
            self._release_dead()
            self._started = True
        ran = []
        for spec in self._jobs.values():
            if not self._claim(spec, _now()):
                continue
            error = None
            done = threading.Event()
            heartbeat = threading.Thread(target=self._keep_alive, args=(spec, done), name=f"lease {spec.name}",
                                         daemon=True)
            heartbeat.start()
            try:
                spec.run()
            except Exception as exc:  # a failing job must not stop the others; it is retried soon
                log.exception("job failed", extra={"fields": {"job": spec.name}})
                error = f"{exc.__class__.__name__}: {exc}"
            finally:
                done.set()
                heartbeat.join()
            self._finish(spec, error)
            ran.append(spec.name)
        return ran
