"""Scheduled jobs with leases on SQLite and PostgreSQL: run once when due, never twice at once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from server.db.models import Job
from server.jobs import JobSpec, Scheduler

pytestmark = pytest.mark.integration


def test_due_job_runs_once_then_waits(engine: Engine) -> None:
    runs: list[int] = []
    s = Scheduler(engine, "node-a")
    s.register(JobSpec("count", timedelta(hours=1), lambda: runs.append(1)))
    assert s.run_due() == ["count"]
    assert s.run_due() == []
    assert len(runs) == 1


def test_two_nodes_never_run_the_same_job_concurrently(engine: Engine) -> None:
    inside = threading.Event()
    release = threading.Event()
    runs: list[str] = []

    def slow() -> None:
        runs.append(threading.current_thread().name)
        inside.set()
        release.wait(10)

    a, b = Scheduler(engine, "node-a"), Scheduler(engine, "node-b")
    for s in (a, b):
        s.register(JobSpec("crl", timedelta(seconds=0), slow))
    t = threading.Thread(target=a.run_due, name="a")
    t.start()
    assert inside.wait(10)
    assert b.run_due() == [], "node b must not run a job node a holds the lease for"
    release.set()
    t.join()
    assert runs == ["a"]
    assert b.run_due() == ["crl"]  # interval 0: due again once the lease is released


def test_failure_is_recorded_and_retried_sooner(engine: Engine) -> None:
    def boom() -> None:
        raise RuntimeError("HSM away")

    s = Scheduler(engine, "node-a")
    s.register(JobSpec("fails", timedelta(days=1), boom))
    assert s.run_due() == ["fails"]
    with engine.connect() as c:
        job = c.execute(select(Job).where(Job.name == "fails")).one()
    assert "HSM away" in job.last_error and job.lease_owner is None and job.last_ok is None
