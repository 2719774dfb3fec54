"""Faults, each test stopping by itself: on two nodes a node killed with SIGKILL mid-load, PostgreSQL restarted
mid-load, the HSM token gone and back; on one node a full document store. Every request completes or fails cleanly (no answer at all, a status with a problem document /
SOAP fault, or a DSS response whose non-Success Result says why), nothing acknowledged is lost or half-written,
serial numbers stay unique and the audit chain intact.

The load here is SOAP Sign and REST sign only (20 clients, a few seconds: the suite's CPU budget);
``test_multinode.py`` and ``python -m bench load`` add Verify.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
from asn1crypto import cms
from pyhanko.sign.validation.generic_cms import validate_sig_integrity
from sqlalchemy import text

from bench.load import DSS_DEPTH, Outcome, dss_result, run_mixed, signing_calls
from server.db.engine import make_engine
from server.validation.cades import signer_certificate
from server.web.soap import DSS_NS
from server.xmlsafe import parse_xml
from tests.fixtures.cluster import Cluster, load_calls, running_cluster, timestamp_serial
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.server import SiegelInstance, make_instance

pytestmark = pytest.mark.e2e

CLIENTS = 20
SECONDS = 8.0
FAULT_AT = 2.5  # seconds into the load
OUTAGE = 2.0  # seconds PostgreSQL stays down
RECOVERY = 1.0  # seconds after PostgreSQL is back within which a request may still fail
SOAP_DOCUMENT = b"load"  # what bench.load.soap_sign_request hashes by default
STORE_BYTES = 1024 * 1024  # the size of the document store's own file system
TOKEN_AWAY = re.compile(r"token (labelled )?'[^']+'.*(does not answer|PKCS#11 module)")  # the token gone, named


@pytest.fixture(scope="module")
def cluster(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(postgres_server, tmp_path_factory.mktemp("faults")) as nodes:
        yield nodes


def _under_load(cluster: Cluster, fault: Callable[[], None], keep_bodies: bool = False) -> list[Outcome]:
    """Run the signing load on both nodes in a thread of its own and ``fault()`` ``FAULT_AT`` s in, in this
    thread: a process the fault starts (PostgreSQL again) gets its death signal when the thread that started it
    ends (PR_SET_PDEATHSIG)."""
    calls = [c for c in load_calls(cluster) if c.name != "verify"]
    done: list[list[Outcome]] = []
    load = threading.Thread(target=lambda: done.append(run_mixed(
        [node.port for node in cluster.nodes], calls, clients=CLIENTS, seconds=SECONDS, keep_bodies=keep_bodies)[0]))
    load.start()
    try:
        time.sleep(FAULT_AT)
        fault()
    finally:
        load.join(SECONDS + 60)
    assert done, "the load did not finish"
    return done[0]


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

    outcomes = _under_load(cluster, kill)
    assert killed and victim.process.returncode == -signal.SIGKILL
    assert all(o.clean for o in outcomes), _failures(outcomes)
    survivor = cluster.nodes[0].port
    served_on = [o for o in outcomes if o.ok and o.started > killed[0] + 0.5]
    assert served_on and {o.port for o in served_on} == {survivor}  # every client moved over to the survivor
    assert all(o.status == 0 for o in outcomes if not o.ok), _failures(outcomes)  # cut connections, no errors
    victim.start()  # a restarted node takes up its share again with fresh serial numbers
    _serials_unique(cluster, before, 100)
    _audit_intact(cluster)



def _signed(outcome: Outcome, rest_document: bytes) -> tuple[bytes, bytes]:
    """The CMS signature an acknowledged signing answer carries and the content it signs."""
    if outcome.call == "soap-sign":
        value = parse_xml(outcome.body, max_depth=DSS_DEPTH).findtext(f".//{{{DSS_NS}}}Base64Signature")
        assert value, outcome.body[:500]
        return base64.b64decode(value), SOAP_DOCUMENT
    return outcome.body, rest_document


def _verifies(signature: bytes, content: bytes) -> bool:
    """Whether the CMS ``signature``'s signer verifies over ``content`` with its certificate (no chain check)."""
    signed_data = cms.ContentInfo.load(signature)["content"]
    info = signed_data["signer_infos"][0]
    cert = signer_certificate(info, [c.chosen for c in signed_data["certificates"] if c.name == "certificate"])
    assert cert is not None, "the signer's certificate is not in the signature"
    digest = hashlib.new(info["digest_algorithm"]["algorithm"].native, content).digest()
    intact, valid = validate_sig_integrity(info, cert, signed_data["encap_content_info"]["content_type"].native,
                                           digest)
    return bool(intact and valid)


def _retryable(outcome: Outcome) -> bool:
    """A failure a client retries: REST 503 with Retry-After, SOAP a DSS ResponderError (response or fault)."""
    if outcome.call == "soap-sign":
        return outcome.clean and outcome.result_major == "ResponderError"
    return outcome.status == 503 and outcome.retry_after and outcome.clean


def _rest_sign(node: SiegelInstance, document: bytes) -> requests.Response:
    return requests.post(node.url + "/api/v1/sign?format=cades&level=B-B&packaging=enveloping", data=document,
                         auth=node.auth, timeout=60)


def _signs(cluster: Cluster) -> None:
    """Every node signs a fresh document."""
    for node in cluster.nodes:
        r = _rest_sign(node, b"after the fault")
        assert r.status_code == 200 and _verifies(r.content, b"after the fault"), r.text[:500]


def _unavailable(r: requests.Response, words: re.Pattern[str]) -> None:
    """``r`` is a retryable problem document (503 with Retry-After) whose detail says ``words``."""
    assert r.status_code == 503 and r.headers.get("Retry-After"), (r.status_code, r.text[:500])
    assert r.headers["Content-Type"].startswith("application/problem+json"), r.headers
    assert r.json()["status"] == 503 and words.search(r.json()["detail"]), r.json()


def _soap_refused(node: SiegelInstance, words: re.Pattern[str]) -> None:
    """A SOAP Sign on ``node`` gets a DSS ResponderError (response or fault) whose message says ``words``."""
    sign = next(c for c in signing_calls(node.user, node.password, b"") if c.name == "soap-sign")
    r = requests.post(node.url + sign.path, data=sign.body, headers=sign.headers, timeout=60)
    result = dss_result(r.content)
    assert result is not None and result[0] == "ResponderError" and words.search(result[1]), r.text[:800]
    assert b"Base64Signature" not in r.content


def _pids(cluster: Cluster) -> list[int]:
    return [node.process.pid for node in cluster.nodes if node.process is not None and node.process.poll() is None]


def test_postgresql_restarted_mid_load_gives_retryable_errors_for_the_outage_only(
        cluster: Cluster, postgres_server: PostgresServer) -> None:
    for node in cluster.nodes:
        if node.process is None or node.process.poll() is not None:
            node.start()
    pids = _pids(cluster)
    outage: list[float] = []

    def restart() -> None:
        outage.append(time.monotonic())
        postgres_server.shut_down()
        time.sleep(OUTAGE)
        postgres_server.restart()
        outage.append(time.monotonic())

    outcomes = _under_load(cluster, restart, keep_bodies=True)
    assert len(outcomes) > 0 and len(outage) == 2, outage
    down, up = outage
    failed = [o for o in outcomes if not o.ok]
    assert failed, "no request saw the outage"
    assert all(_retryable(o) for o in failed), _failures(outcomes)
    late = [o for o in failed if not (o.started <= up + RECOVERY and o.started + o.seconds >= down)]
    assert not late, [(o.call, o.status, round(o.started - down, 2)) for o in late]
    # recovery without a restart: the same processes serve again on both nodes
    assert _pids(cluster) == pids and len(pids) == len(cluster.nodes)
    recovered = {o.port for o in outcomes if o.ok and o.started > up + RECOVERY}
    assert recovered == {node.port for node in cluster.nodes}
    rest_document = next(c.body for c in load_calls(cluster) if c.name == "rest-sign")
    acknowledged = [o for o in outcomes if o.ok]
    assert all(_verifies(*_signed(o, rest_document)) for o in acknowledged)
    _signs(cluster)
    _audit_intact(cluster)


@contextmanager
def _token_away(cluster: Cluster) -> Iterator[None]:
    """The shared SoftHSM2 token's directory moved out of the token store (a network HSM gone), then back."""
    tokens = cluster.nodes[0].data_dir / "hsm" / "tokens"
    (token,) = tokens.iterdir()
    away = tokens.parent / f"{token.name}.away"
    token.rename(away)
    try:
        yield
    finally:
        away.rename(token)


def test_an_unavailable_hsm_token_gives_clear_errors_and_recovers_without_restart(cluster: Cluster) -> None:
    pids = _pids(cluster)
    assert len(pids) == len(cluster.nodes)
    _signs(cluster)
    with _token_away(cluster):
        for node in cluster.nodes:
            _unavailable(_rest_sign(node, b"while the token is away"), TOKEN_AWAY)
            _soap_refused(node, TOKEN_AWAY)
    _signs(cluster)  # at once, no health check in between: the nodes reconnected by themselves
    with _token_away(cluster):
        for node in cluster.nodes:
            health = requests.get(node.url + "/health", timeout=60)
            assert health.status_code == 503 and health.json()["hsm"]["ok"] is False, health.text
            assert health.json()["database"]["ok"] is True, health.text
    for node in cluster.nodes:
        health = requests.get(node.url + "/health", timeout=60)
        assert health.status_code == 200, health.text
    _signs(cluster)
    assert _pids(cluster) == pids
    _audit_intact(cluster)


@contextmanager
def _small_file_system(where: Path) -> Iterator[None]:
    """A tmpfs of ``STORE_BYTES`` mounted at ``where`` (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as the document store needs root (`make test` runs as root in CI)")
    where.mkdir(mode=0o700, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={STORE_BYTES},mode=0700", "tmpfs", str(where)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def _fill(where: Path) -> Path:
    """Fill the file system of ``where`` with one file, to the last byte; that file."""
    filler = where / "filler"
    with open(filler, "wb", buffering=0) as out:
        try:
            while out.write(b"\0" * 4096):
                pass
        except OSError:  # ENOSPC: full
            pass
    assert os.statvfs(where).f_bavail == 0
    return filler


def _archive(node: SiegelInstance, content: bytes) -> requests.Response:
    item = {"name": "invoice.txt", "mimeType": "text/plain", "content": base64.b64encode(content).decode()}
    return requests.post(node.url + "/api/v1/archive/objects", json={"items": [item], "metadata": {"case": "full"}},
                         auth=node.auth, timeout=60)


def _stored_rows(node: SiegelInstance) -> list[Any]:
    engine = make_engine(f"sqlite:///{node.data_dir / 'siegel.db'}")
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT digest_sha256, size FROM archive_items WHERE stored")))
    finally:
        engine.dispose()


def _every_row_has_its_file(node: SiegelInstance) -> None:
    """Every stored item's file is in the store, whole; no temporary file is left."""
    objects = node.data_dir / "store" / "sha256"
    for digest, size in _stored_rows(node):
        path = objects / digest.hex()[:2] / digest.hex()
        assert path.is_file() and path.stat().st_size == size, path
        assert hashlib.sha256(path.read_bytes()).digest() == digest, path
    assert not list(objects.glob(".tmp-*"))


def test_a_full_document_store_refuses_cleanly_and_works_once_space_is_freed(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    node = make_instance(tmp_path_factory.mktemp("full-store"))
    store = node.data_dir / "store"
    with _small_file_system(store):
        node.start()
        try:
            assert _archive(node, b"before the disk filled").status_code == 201
            filler = _fill(store)
            r = _archive(node, os.urandom(64 * 1024))
            assert r.status_code == 507, (r.status_code, r.text)
            assert r.headers["Content-Type"].startswith("application/problem+json")
            problem = r.json()
            assert problem["status"] == 507 and "cannot store a file" in problem["detail"], problem
            assert len(_stored_rows(node)) == 1  # the refused object left no row
            _every_row_has_its_file(node)
            filler.unlink()
            content = os.urandom(64 * 1024)
            r = _archive(node, content)
            assert r.status_code == 201, r.text
            got = requests.get(f"{node.url}/api/v1/archive/objects/{r.json()['aoid']}/items/1", auth=node.auth,
                               timeout=60)
            assert got.status_code == 200 and got.content == content
            assert len(_stored_rows(node)) == 2
            _every_row_has_its_file(node)
        finally:
            node.stop()
