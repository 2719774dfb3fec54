"""Faults under load on two nodes, each test stopping by itself: a node killed with SIGKILL mid-load. Every
request completes or fails cleanly (no answer at all, or a status with a problem document / SOAP fault), nothing acknowledged is lost or
half-written, serial numbers stay unique and the audit chain intact.

The load here is SOAP Sign and REST sign only (20 clients, a few seconds: the suite's CPU budget);
``test_multinode.py`` and ``python -m bench load`` add Verify.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from typing import Iterator

import pytest

from bench.load import Outcome, run_mixed
from tests.fixtures.cluster import Cluster, load_calls, running_cluster, timestamp_serial
from tests.fixtures.postgres import PostgresServer

pytestmark = pytest.mark.e2e

CLIENTS = 20
SECONDS = 8.0
FAULT_AT = 2.5  # seconds into the load


@pytest.fixture(scope="module")
def cluster(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(postgres_server, tmp_path_factory.mktemp("faults")) as nodes:
        yield nodes


def _under_load(cluster: Cluster, fault: threading.Thread) -> list[Outcome]:
    """Run the signing load on both nodes while ``fault`` runs (started ``FAULT_AT`` s in)."""
    calls = [c for c in load_calls(cluster) if c.name != "verify"]
    timer = threading.Timer(FAULT_AT, fault.start)
    timer.start()
    try:
        outcomes, _ = run_mixed([node.port for node in cluster.nodes], calls, clients=CLIENTS, seconds=SECONDS)
    finally:
        timer.cancel()
        if fault.ident is not None:  # started
            fault.join(60)
    return outcomes


def _failures(outcomes: list[Outcome]) -> Counter[tuple[str, int, bool]]:
    return Counter((o.call, o.status, o.clean) for o in outcomes if not o.ok)


def _audit_intact(cluster: Cluster) -> None:
    out = cluster.nodes[0].cli("audit", "verify").stdout
    assert re.search(r"intact: \d+ entries", out), out


def _serials_unique(cluster: Cluster, before: list[int], start: int) -> None:
    after = [timestamp_serial(node, start + i) for i, node in enumerate(cluster.nodes * 5)]
    assert len(set(before + after)) == len(before) + len(after)


def test_a_node_killed_mid_load_leaves_the_other_serving(cluster: Cluster) -> None:
    victim = cluster.nodes[1]
    assert victim.process is not None
    before = [timestamp_serial(node, i) for i, node in enumerate(cluster.nodes * 5)]
    killed: list[float] = []

    def kill() -> None:
        killed.append(time.monotonic())
        assert victim.process is not None
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()

    outcomes = _under_load(cluster, threading.Thread(target=kill))
    assert killed and victim.process.returncode == -signal.SIGKILL
    assert all(o.clean for o in outcomes), _failures(outcomes)
    survivor = cluster.nodes[0].port
    served_on = [o for o in outcomes if o.ok and o.started > killed[0] + 0.5]
    assert served_on and {o.port for o in served_on} == {survivor}  # every client moved over to the survivor
    assert all(o.status == 0 for o in outcomes if not o.ok), _failures(outcomes)  # cut connections, no errors
    victim.start()  # a restarted node takes up its share again with fresh serial numbers
    _serials_unique(cluster, before, 100)
    _audit_intact(cluster)

