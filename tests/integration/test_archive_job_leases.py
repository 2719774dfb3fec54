"""A dead node's job leases (the archive's jobs hold theirs for up to two hours) are free soon, not after the
job's lease: a real process running ``archive-renew`` is killed with SIGKILL mid-run; while it lived its
heartbeat kept the job from every other node, after its death another node takes the job over within three
heartbeats, and a node restarting on the same host (or under the same name) frees it at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from server.db.engine import make_engine
from server.db.models import Job
from server.jobs import JobSpec, Scheduler

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LONG = timedelta(hours=2)  # archive-renew's lease
NODE = """
import sys, time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from server.db.engine import make_engine
from server.jobs import JobSpec, Scheduler

url, marker, beat = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
scheduler = Scheduler(make_engine(url), heartbeat=timedelta(seconds=beat))
scheduler.register(JobSpec("archive-renew", timedelta(hours=24),
                           lambda: (marker.write_text("running"), time.sleep(600)), lease=timedelta(hours=2)))
scheduler.run_due()
"""


def _node_dies_mid_run(database_url: str, tmp_path: Path, beat: float) -> subprocess.Popen[bytes]:
    """A node (its own process, owner host:pid) that claimed archive-renew and is inside the run."""
    marker = tmp_path / "running"
    node = subprocess.Popen([sys.executable, "-c", NODE, database_url, str(marker), str(beat)], cwd=REPO)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert node.poll() is None and time.monotonic() < deadline, "the node did not start the job"
        time.sleep(0.05)
    return node


def _kill(node: subprocess.Popen[bytes]) -> None:
    os.kill(node.pid, signal.SIGKILL)
    node.wait(10)


def _lease(engine: Engine) -> tuple[str | None, object]:
    with engine.connect() as conn:
        owner, until = conn.execute(select(Job.lease_owner, Job.lease_until).where(Job.name == "archive-renew")).one()
    return owner, until


def _spec(runs: list[str], who: str) -> JobSpec:
    return JobSpec("archive-renew", timedelta(hours=24), lambda: runs.append(who), lease=LONG)


def test_another_node_takes_over_a_dead_nodes_job_within_three_heartbeats(
        engine: Engine, database_url: str, tmp_path: Path) -> None:
    node = _node_dies_mid_run(database_url, tmp_path, 0.3)
    try:
        runs: list[str] = []
        other = Scheduler(engine, "other-host:1", heartbeat=timedelta(seconds=0.3))
        other.register(_spec(runs, "other"))
        watched = time.monotonic()
        while time.monotonic() - watched < 3:  # ten heartbeats: the living node keeps its job
            assert other.run_due() == [] and node.poll() is None
            time.sleep(0.2)
        assert _lease(engine)[0] == f"{os.uname().nodename}:{node.pid}"
    finally:
        _kill(node)
    died = time.monotonic()
    while not other.run_due():
        assert time.monotonic() - died < 30, "the dead node's lease was not taken over"
        time.sleep(0.1)
    assert runs == ["other"] and time.monotonic() - died < 30  # not the two hours of the job's lease
    assert _lease(engine) == (None, None)


def test_a_node_restarting_on_the_host_frees_its_dead_predecessors_leases_at_once(
        engine: Engine, database_url: str, tmp_path: Path) -> None:
    node = _node_dies_mid_run(database_url, tmp_path, 60)  # heartbeats a minute apart: no takeover by silence
    _kill(node)
    runs: list[str] = []
    elsewhere = Scheduler(engine, "other-host:1", heartbeat=timedelta(seconds=60))
    elsewhere.register(_spec(runs, "elsewhere"))
    assert elsewhere.run_due() == []  # another host cannot tell the process is dead: it waits for the silence
    restarted = Scheduler(engine, heartbeat=timedelta(seconds=60))
    restarted.register(_spec(runs, "restarted"))
    assert restarted.run_due() == ["archive-renew"] and runs == ["restarted"]


def test_a_live_process_on_the_host_keeps_its_lease(engine: Engine) -> None:
    alive = Scheduler(engine, f"{os.uname().nodename}:{os.getppid()}")  # a process that runs (pytest's parent)
    alive.register(_spec([], "alive"))
    assert alive._claim(alive._jobs["archive-renew"], datetime.now(timezone.utc))
    starting = Scheduler(engine)
    starting.register(_spec([], "starting"))
    assert starting.run_due() == []
    assert _lease(engine)[0] == alive.owner


def test_a_node_restarting_under_the_same_name_frees_its_leases_at_once(engine: Engine) -> None:
    """A container restarted with the same hostname and pid: the lease name is the new node's own."""
    runs: list[str] = []
    before = Scheduler(engine, "siegel-0:1", heartbeat=timedelta(seconds=60))
    before.register(_spec(runs, "before"))
    assert before._claim(before._jobs["archive-renew"], datetime.now(timezone.utc))  # then it died
    after = Scheduler(engine, "siegel-0:1", heartbeat=timedelta(seconds=60))
    after.register(_spec(runs, "after"))
    assert after.run_due() == ["archive-renew"] and runs == ["after"]

