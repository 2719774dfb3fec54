"""The archive at scale, in one process on an initialised instance (SQLite, SoftHSM2, the internal TSA asked in
process): OBJECTS objects given as SHA-256 hashes through the bulk path, collected into trees and timestamped,
every evidence record derived (the model of each; a sample also DER-encoded and verified), time and peak memory
(ru_maxrss) of that; then timestamp renewal of RENEW_TREES trees against as many raw TSA requests in the same run.
"""

from __future__ import annotations

import hashlib
import os
import resource
import time
from pathlib import Path

from bench.report import tree_state, write_result
from server import config
from server.app import build_services
from server.archive import ers
from server.archive.jobs import stamp_in_process
from tests.fixtures.server import make_instance

OBJECTS = int(os.environ.get("BENCH_ARCHIVE_OBJECTS", "1000000"))
RENEW_TREES = int(os.environ.get("BENCH_ARCHIVE_RENEW_TREES", "10000"))
SAMPLE = 200


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(work: Path) -> Path:
    inst = make_instance(work / "archive")
    env = {**inst.env, "SIEGEL_ARCHIVE_HASH_ALGORITHMS": "sha256", "SIEGEL_TSA_CLIENTS": "internal"}
    services = build_services(config.load(data_dir=inst.data_dir, environ=env))
    try:
        archive, user = services.archive, services.users.find(inst.user)
        hashes = [{"sha256": hashlib.sha256(i.to_bytes(8, "big")).digest()} for i in range(OBJECTS)]
        start = time.perf_counter()
        aoids = archive.submit_hashes(user, hashes)
        submitted = time.perf_counter()
        trees = archive.trees.collect()
        collected = time.perf_counter()
        derived = 0
        sample = []
        for tree_id, _algorithm in archive.trees.current():
            for n, (_item, record) in enumerate(archive.trees.tree_records(tree_id)):
                derived += 1
                if n % max(1, OBJECTS // SAMPLE) == 0:
                    sample.append((n, ers.encode(record)))
        done = time.perf_counter()
        peak = _peak_mib()
        assert derived == OBJECTS, (derived, OBJECTS)
        verify_start = time.perf_counter()
        for n, record in sample:
            assert archive.verify(record, digests=hashes[n]).passed
        verify_ms = (time.perf_counter() - verify_start) * 1000 / len(sample)
        del hashes, aoids

        # RENEW_TREES trees of one leaf each, then their timestamp renewal vs as many raw TSA requests
        small = services.archive
        small.trees._max_leaves = 1  # one tree per item
        small.submit_hashes(user, [{"sha256": hashlib.sha256(b"r%d" % i).digest()} for i in range(RENEW_TREES)])
        small.trees.collect()
        stamp = stamp_in_process(services.tsa.respond)
        raw_start = time.perf_counter()
        for i in range(RENEW_TREES):
            stamp(hashlib.sha256(b"raw%d" % i).digest(), "sha256")
        raw = time.perf_counter() - raw_start
        renew_start = time.perf_counter()
        renewed = small.renew(timestamps=True, force=True)["timestamps"]
        renew = time.perf_counter() - renew_start
    finally:
        services.close()
    load = os.getloadavg()
    return write_result(
        "archive",
        measured={"objects": OBJECTS, "trees": trees, "submit_seconds": round(submitted - start, 2),
                  "collect_seconds": round(collected - submitted, 2), "derive_all_seconds": round(done - collected, 2),
                  "total_seconds": round(done - start, 2), "peak_rss_mib": round(peak, 1),
                  "verify_ms_each": round(verify_ms, 2), "renewed_trees": renewed,
                  "renew_seconds": round(renew, 2)},
        baseline={"raw_tsa_requests": RENEW_TREES, "raw_tsa_seconds": round(raw, 2)},
        ratios={"renewal_vs_raw_tsa": round(renew / raw, 2)},
        goals={"total_seconds": "<= 20 for 1,000,000 objects", "peak_rss_mib": "<= 1024",
               "verify_ms_each": "<= 5", "renewal_vs_raw_tsa": "close to 1 (one TSA request per tree)"},
        notes=f"{tree_state()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; SQLite; every record of "
              f"the big tree derived as a model, {len(sample)} DER-encoded and verified; the renewal trees have "
              f"one leaf each (includes their DER record reads and the audit entries per tree)")
