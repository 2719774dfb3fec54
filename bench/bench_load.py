"""Load on two nodes: SOAP Sign, REST sign and Verify from 200 keep-alive clients for 60 s.

Two ``siegel serve`` processes on one PostgreSQL (a private cluster started here), one store and one token,
the clients spread round-robin over both. Throughput and p50/p95/p99 latency of the good answers, and the
failed requests (there must be none); the baseline is ``/health`` (database and HSM checked, nothing signed)
driven the same way on the same nodes. ``SIEGEL_LOAD_CLIENTS`` / ``SIEGEL_LOAD_SECONDS`` change the run
(``make soak`` runs it longer).
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.load import Call, run_mixed, summarize
from bench.report import tree_state, write_result
from tests.fixtures.cluster import load_calls, make_cluster
from tests.fixtures.ports import free_port, service_dir
from tests.fixtures.postgres import PostgresServer, pg_bindir

BASELINE_SECONDS = 5.0


def run(work: Path) -> Path:
    clients = int(os.environ.get("SIEGEL_LOAD_CLIENTS", "200"))
    seconds = float(os.environ.get("SIEGEL_LOAD_SECONDS", "60"))
    bindir = pg_bindir()
    if bindir is None:
        raise SystemExit("bench_load needs the PostgreSQL server binaries (Debian package 'postgresql')")
    postgres = PostgresServer(bindir=bindir, base=service_dir("siegel-bench-pg-"), port=free_port())
    postgres.start()
    try:
        cluster = make_cluster(work / "load", postgres.create_database("siegel_load"))
        cluster.start()
        try:
            calls = load_calls(cluster)
            ports = [node.port for node in cluster.nodes]
            health = Call("health", "GET", "/health", {}, b"", lambda body: b'"status"' in body)
            baseline, base_seconds = run_mixed(ports, [health], clients=clients, seconds=BASELINE_SECONDS)
            outcomes, took = run_mixed(ports, calls, clients=clients, seconds=seconds)
        finally:
            cluster.stop()
    finally:
        postgres.stop()
    total = summarize(outcomes, took)
    by_call = {call.name: summarize([o for o in outcomes if o.call == call.name], took) for call in calls}
    base = summarize(baseline, base_seconds)
    assert total["failed"] == 0, (total, by_call)
    return write_result(
        "load",
        measured={"requests_per_s": total["requests_per_s"], "p50_ms": total["p50_ms"], "p95_ms": total["p95_ms"],
                  "p99_ms": total["p99_ms"], "failed_requests": total["failed"], "requests": total["requests"]},
        baseline={"health_requests_per_s": base["requests_per_s"], "health_p99_ms": base["p99_ms"]},
        ratios={"mixed_vs_health": round(total["requests_per_s"] / base["requests_per_s"], 3)},
        goals={"failed_requests": "0", "mixed_vs_health": "reported (signing and verifying cost what /health does not)"},
        notes=f"{clients} keep-alive clients for {seconds:g} s over 2 nodes (round-robin), one PostgreSQL, "
              f"SoftHSM2 EC P-256 keys; each client cycles SOAP Sign (CAdES B-B over a hash), REST sign "
              f"(CAdES B-B enveloping) and REST Verify; {tree_state()}",
        calls=by_call, health=base,
    )
