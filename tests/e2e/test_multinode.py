"""Two Siegel nodes (separate ``siegel serve`` processes) on one PostgreSQL, one store and one HSM token:
each serves signing and verification of the other's signatures, a due job runs once across both, numbers
handed out concurrently on both are unique, and the audit chain both write to stays intact."""

from __future__ import annotations

import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
import requests
from asn1crypto import cms
from sqlalchemy import func, select, update

from bench.load import run_mixed, soap_sign_request, summarize
from server.db.models import AuditEntry, CertificateAuthority, IssuedTimestamp, Job
from tests.fixtures.cluster import Cluster, load_calls, running_cluster, timestamp_serial
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.server import SiegelInstance

pytestmark = pytest.mark.e2e

DOCUMENT = b"a contract both nodes can sign and verify\n" * 50
SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"urn:siegel:dss:1.0:Sign"'}
SUCCESS = "urn:oasis:names:tc:dss:1.0:resultmajor:Success"
JOB_ROUNDS = 5


@pytest.fixture(scope="module")
def cluster(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Both nodes look for due jobs five times a second: a claim race between them is likely, not rare.
    with running_cluster(postgres_server, tmp_path_factory.mktemp("multinode"),
                         {"SIEGEL_JOBS_POLL_SECONDS": "0.2"}) as nodes:
        yield nodes


def _sign(node: SiegelInstance) -> bytes:
    r = requests.post(node.url + "/api/v1/sign?format=cades&level=B-T", data=DOCUMENT, auth=node.auth, timeout=60)
    assert r.status_code == 200, r.text
    return r.content


def _verdict(node: SiegelInstance, signature: bytes) -> str:
    files = {"signature": ("signature.p7s", signature), "document": ("contract.txt", DOCUMENT)}
    r = requests.post(node.url + "/api/v1/verify", files=files, auth=node.auth, timeout=60)
    assert r.status_code == 200, r.text
    (sig,) = r.json()["signatures"]
    return str(sig["indication"])


def test_each_node_signs_and_verifies_what_the_other_signed(cluster: Cluster) -> None:
    one, two = cluster.nodes
    assert _verdict(two, _sign(one)) == "TOTAL-PASSED"
    assert _verdict(one, _sign(two)) == "TOTAL-PASSED"
    for node in cluster.nodes:
        r = requests.post(node.url + "/dss", data=soap_sign_request(f"node-{node.port}"), headers=SOAP_HEADERS,
                          auth=node.auth, timeout=60)
        assert r.status_code == 200 and SUCCESS in r.text, r.text[:500]


def _crls_by_scheduler(cluster: Cluster) -> int:
    with cluster.engine().connect() as conn:
        return int(conn.execute(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "ca.crl", AuditEntry.actor == "scheduler")).scalar_one())


def test_a_due_job_runs_once_across_both_nodes(cluster: Cluster) -> None:
    engine = cluster.engine()
    with engine.connect() as conn:
        authorities = int(conn.execute(select(func.count()).select_from(CertificateAuthority)).scalar_one())
    for _ in range(JOB_ROUNDS):
        before = _crls_by_scheduler(cluster)
        due = datetime.now(timezone.utc) - timedelta(seconds=1)
        with engine.begin() as conn:
            conn.execute(update(Job).where(Job.name == "crl").values(next_run=due))
        deadline = time.monotonic() + 30
        while True:
            with engine.connect() as conn:
                job = conn.execute(select(Job.last_ok, Job.lease_owner).where(Job.name == "crl")).one()
            if job.last_ok is not None and job.last_ok > due and job.lease_owner is None:
                break
            assert time.monotonic() < deadline, "the due CRL job did not run within 30 s"
            time.sleep(0.1)
        time.sleep(1.0)  # five more polls of each node: a second run would have started by now
        assert _crls_by_scheduler(cluster) - before == authorities  # one CRL per CA: one run, not two


def test_serial_numbers_are_unique_under_concurrent_issuance_on_both_nodes(cluster: Cluster) -> None:
    with ThreadPoolExecutor(8) as pool:
        serials = list(pool.map(lambda i: timestamp_serial(cluster.nodes[i % 2], i), range(60)))
        signatures = list(pool.map(lambda i: _sign(cluster.nodes[i % 2]), range(12)))
    assert len(set(serials)) == len(serials)
    with cluster.engine().connect() as conn:
        stored = set(conn.execute(select(IssuedTimestamp.serial)).scalars())
    assert set(serials) <= stored
    stamped = {int(s["content"]["signer_infos"][0]["unsigned_attrs"][0]["values"][0]["content"]
                   ["encap_content_info"]["content"].parsed["serial_number"].native)
               for s in map(cms.ContentInfo.load, signatures)}
    assert len(stamped) == len(signatures) and not stamped & set(serials) and stamped <= stored


def test_the_audit_chain_both_nodes_write_is_intact(cluster: Cluster) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: _sign(cluster.nodes[i % 2]), range(16)))
    with cluster.engine().connect() as conn:
        starts = conn.execute(select(AuditEntry.details).where(AuditEntry.action == "server.start")).scalars().all()
    assert len(starts) == 2
    out = cluster.nodes[1].cli("audit", "verify").stdout
    assert re.search(r"intact: \d+ entries", out), out


def test_mixed_load_over_both_nodes_fails_no_request(cluster: Cluster) -> None:
    """`make soak` / `python -m bench load` at a size the suite affords: 50 clients for 5 s, SOAP Sign, REST
    sign and Verify (whose revocation check asks the node's own CA in-process: no request waits for a busy node)."""
    calls = load_calls(cluster)
    outcomes, took = run_mixed([node.port for node in cluster.nodes], calls, clients=50, seconds=5)
    summary = summarize(outcomes, took)
    assert summary["failed"] == 0, (summary, Counter((o.call, o.status) for o in outcomes if not o.ok))
    assert {o.call for o in outcomes} == {"soap-sign", "rest-sign", "verify"}
    assert {o.port for o in outcomes} == {node.port for node in cluster.nodes}
