"""kill -9 of a real server (tests/fixtures/server.py) in the middle of archive work, then a restart.

Mid-submission and mid-collection: every submission the server acknowledged (201) is there after the restart
with a complete evidence record that verifies against the test's own copy of the document; nothing half-written
is referenced (each object has its version and items, each stored item's file is intact, each item in a tree is
one of the tree's leaves and the tree has its timestamp). Mid-renewal: the timestamps renewed so far are whole
(positions without gaps), the dead node's job lease still holds the renewal, and the node restarted on the host
frees it at once: the renewal resumes and every tree is renewed, every record verifying with its chain.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from array import array
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine, func, select

from server import config
from server.archive import ers
from server.db.engine import make_engine
from server.db.models import ArchiveItem, ArchiveObject, ArchiveTimestampRow, ArchiveTree, ArchiveVersion, Job
from tests.fixtures.server import SiegelInstance

pytestmark = pytest.mark.e2e

API = "/api/v1/archive"
TREES = 200


def _engine(inst: SiegelInstance) -> Engine:
    return make_engine(config.load(data_dir=inst.data_dir, environ=inst.env).database_url)


@pytest.fixture
def engine(siegel_instance: SiegelInstance) -> Iterator[Engine]:
    engine = _engine(siegel_instance)
    try:
        yield engine
    finally:
        engine.dispose()


def _kill(inst: SiegelInstance) -> None:
    assert inst.process is not None and inst.process.poll() is None, "the server ended before the kill"
    inst.process.kill()  # SIGKILL: no shutdown code runs
    inst.process.wait()


def _wait(condition, what: str, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _assert_consistent(inst: SiegelInstance, engine: Engine) -> None:
    """Nothing half-written is referenced, whatever the moment of the kill was."""
    store = config.load(data_dir=inst.data_dir, environ=inst.env)
    store_root = store.path(store.store.path) / "sha256"
    objects, versions, items = ArchiveObject.__table__, ArchiveVersion.__table__, ArchiveItem.__table__
    trees, stamps = ArchiveTree.__table__, ArchiveTimestampRow.__table__
    with engine.connect() as conn:
        aoids = set(conn.execute(select(objects.c.aoid)).scalars())
        assert aoids == set(conn.execute(select(versions.c.aoid)).scalars()) == \
            set(conn.execute(select(items.c.aoid)).scalars())
        for row in conn.execute(select(items).where(items.c.stored.is_(True))):
            path = store_root / row.digest_sha256.hex()[:2] / row.digest_sha256.hex()
            assert hashlib.sha256(path.read_bytes()).digest() == row.digest_sha256
        positions: dict[int, list[int]] = {}
        for tree_id, position in conn.execute(select(stamps.c.tree_id, stamps.c.position)
                                              .order_by(stamps.c.tree_id, stamps.c.position)):
            positions.setdefault(tree_id, []).append(position)
        for tree in conn.execute(select(trees)):
            assert positions[tree.id] == list(range(len(positions[tree.id]))), (tree.id, positions[tree.id])
            leaves = array("q")
            leaves.frombytes(tree.items)
            assert len(leaves) == tree.size
            column = items.c[f"tree_{tree.algorithm}"]
            assert list(leaves) == conn.execute(select(items.c.id).where(column == tree.id)
                                                .order_by(items.c.id)).scalars().all()
        assert set(positions) == set(conn.execute(select(trees.c.id)).scalars())


def _verify_object(inst: SiegelInstance, aoid: str) -> None:
    report = requests.post(inst.url + f"{API}/verify", json={"aoid": aoid}, auth=inst.auth, timeout=60)
    assert report.status_code == 200, report.text
    assert report.json()["indication"] == "TOTAL-PASSED", report.json()


def test_kill_9_during_submissions_and_collections_loses_no_acknowledged_object(
        siegel_instance: SiegelInstance, engine: Engine) -> None:
    inst = siegel_instance
    inst.env.update({"SIEGEL_ARCHIVE_COLLECT_SECONDS": "0.2", "SIEGEL_ARCHIVE_COLLECT_OBJECTS": "2",
                     "SIEGEL_JOBS_POLL_SECONDS": "0.1"})
    inst.start()
    acknowledged: dict[str, bytes] = {}  # aoid -> the document, or the SHA-256 of a hash-only one
    hash_only: set[str] = set()
    refused: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def submit(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            document = f"worker {worker}, document {n}\n".encode() * (1 + n % 50)
            only_hash = n % 3 == 0
            item = ({"name": "h.bin", "digests": {"sha256": hashlib.sha256(document).hexdigest()}} if only_hash else
                    {"name": f"d{worker}-{n}.txt", "mimeType": "text/plain",
                     "content": base64.b64encode(document).decode()})
            try:
                answer = requests.post(inst.url + f"{API}/objects", json={"items": [item]}, auth=inst.auth, timeout=30)
            except requests.ConnectionError:
                return  # the server is gone: this submission was not acknowledged
            with lock:
                if answer.status_code != 201:
                    refused.append(answer.text)
                    return
                acknowledged[answer.json()["aoid"]] = document
                if only_hash:
                    hash_only.add(answer.json()["aoid"])

    workers = [threading.Thread(target=submit, args=(w,)) for w in range(3)]
    for worker in workers:
        worker.start()
    trees = ArchiveTree.__table__

    def collected_some() -> bool:
        assert not refused, refused
        with engine.connect() as conn:
            return len(acknowledged) >= 40 and conn.execute(select(func.count()).select_from(trees)).scalar_one() >= 3

    try:
        _wait(collected_some, "40 acknowledged submissions and three trees")
        _kill(inst)
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)
    assert not refused, refused
    _assert_consistent(inst, engine)

    inst.start()
    with engine.connect() as conn:
        every = set(conn.execute(select(ArchiveObject.__table__.c.aoid)).scalars())
    assert set(acknowledged) <= every

    # the first evidence request builds the trees of whatever was left pending (seal), whoever runs archive-collect
    for aoid, document in acknowledged.items():
        record = requests.get(inst.url + f"{API}/objects/{aoid}/evidence", params={"format": "ers"},
                              auth=inst.auth, timeout=30)
        assert record.status_code == 200, record.text
        given = ({"digests": {"sha256": hashlib.sha256(document).hexdigest()}}
                 if aoid in hash_only else {"data": base64.b64encode(document).decode()})
        report = requests.post(inst.url + f"{API}/verify", auth=inst.auth, timeout=30,
                               json={"record": base64.b64encode(record.content).decode(), **given})
        assert report.json()["indication"] == "TOTAL-PASSED", (aoid, report.json())
        if aoid not in hash_only:
            content = requests.get(inst.url + f"{API}/objects/{aoid}/items/1", auth=inst.auth, timeout=30)
            assert content.content == document
    for aoid in every - set(acknowledged):  # committed but not acknowledged before the kill: complete as well
        _verify_object(inst, aoid)
    assert requests.get(inst.url + f"{API}/stats", auth=inst.auth, timeout=30).json()["pending"] == 0
    _assert_consistent(inst, engine)


def _renewed_trees(engine: Engine) -> int:
    stamps = ArchiveTimestampRow.__table__
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(stamps).where(stamps.c.position == 1)).scalar_one()


def test_kill_9_during_timestamp_renewal_resumes_at_the_restart(siegel_instance: SiegelInstance,
                                                                  engine: Engine, tmp_path: Path) -> None:
    inst = siegel_instance
    inst.env.update({"SIEGEL_ARCHIVE_HASH_ALGORITHMS": "sha256", "SIEGEL_ARCHIVE_MAX_TREE_LEAVES": "1",
                     "SIEGEL_JOBS_POLL_SECONDS": "0.1"})
    hashes = [hashlib.sha256(b"renewal %d" % n).hexdigest() for n in range(TREES)]
    aoids = inst.cli("archive", "add", "--as", inst.user, *(f"--hash=sha256:{h}" for h in hashes)).stdout.split()
    assert len(aoids) == TREES
    inst.cli("archive", "evidence", aoids[0], "--as", inst.user, "-o", str(tmp_path / "first.ers"))  # collects all
    assert _renewed_trees(engine) == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ArchiveTree.__table__)).scalar_one() == TREES

    inst.env["SIEGEL_ARCHIVE_RENEW_TIMESTAMPS_BEFORE_DAYS"] = "100000"  # every tree is due
    inst.start()  # the job archive-renew is due at once on a new node
    _wait(lambda: _renewed_trees(engine) >= 5, "the renewal to start")
    _kill(inst)
    done = _renewed_trees(engine)
    assert 0 < done < TREES, f"the kill came too late ({done} of {TREES} trees renewed)"
    _assert_consistent(inst, engine)
    jobs = Job.__table__
    with engine.connect() as conn:
        lease = conn.execute(select(jobs).where(jobs.c.name == "archive-renew")).one()
    assert lease.lease_owner is not None and lease.lease_until.replace(tzinfo=timezone.utc) > \
        datetime.now(timezone.utc), "the dead node's lease should still hold the renewal"

    inst.start()  # the same host, the dead process's lease: freed by the new node at once, not after its 2 hours
    _wait(lambda: _renewed_trees(engine) > done, "the renewal to resume", timeout=20)  # < its 60 s of silence
    _wait(lambda: _renewed_trees(engine) == TREES, "the renewal to finish")

    def released() -> bool:
        with engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.name == "archive-renew")).one()
        return row.lease_owner is None and row.last_error is None

    _wait(released, "the renewal job to finish")
    _assert_consistent(inst, engine)
    for aoid in aoids[:: TREES // 20]:
        record = requests.get(inst.url + f"{API}/objects/{aoid}/evidence", auth=inst.auth, timeout=30)
        assert len(ers.decode(record.content).chains[0]) >= 2
        _verify_object(inst, aoid)
