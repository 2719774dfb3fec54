"""Scheduled jobs as database rows with leases, so that several nodes never run the same job at once.

A node claims a due job with one conditional UPDATE (due, and no live lease); only the node whose
UPDATE changed the row runs it. The lease outlives a crashed node only until ``lease_until``.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import Engine, and_, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from server.db.models import Job

log = logging.getLogger("siegel.jobs")
RETRY_AFTER_FAILURE = timedelta(minutes=1)


@dataclass(frozen=True)
class JobSpec:
    name: str
    interval: timedelta
    run: Callable[[], None]
    lease: timedelta = timedelta(minutes=10)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Scheduler:
    def __init__(self, engine: Engine, owner: str | None = None) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self._jobs: dict[str, JobSpec] = {}

    def register(self, spec: JobSpec) -> None:
        """Know a job; its row is created (due at once) when no node created it before."""
        self._jobs[spec.name] = spec
        try:
            with self._sessions.begin() as session:
                if session.get(Job, spec.name) is None:
                    session.add(Job(name=spec.name, next_run=_now()))
        except IntegrityError:
            pass  # another node created it at the same moment

    def _claim(self, spec: JobSpec, now: datetime) -> bool:
        with self._sessions.begin() as session:
            result = session.execute(
                update(Job)
                .where(and_(Job.name == spec.name, Job.next_run <= now,
                            or_(Job.lease_until.is_(None), Job.lease_until < now)))
                .values(lease_owner=self.owner, lease_until=now + spec.lease)
            )
            return result.rowcount == 1

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
        ran = []
        for spec in self._jobs.values():
            if not self._claim(spec, _now()):
                continue
            error = None
            try:
                spec.run()
            except Exception as exc:  # a failing job must not stop the others; it is retried soon
                log.exception("job failed", extra={"fields": {"job": spec.name}})
                error = f"{exc.__class__.__name__}: {exc}"
            self._finish(spec, error)
            ran.append(spec.name)
        return ran
