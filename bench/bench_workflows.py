"""Issue 9's benchmark: 1,000 two-step workflows created and completed through the REST API: workflows/s and
the p95 latency of a signing step, against the PAdES signing time of the same document in the same run.

A server with one worker per CPU, an SMTP sink for the invitations, two signer accounts (EC P-256 keys on
SoftHSM2) and a template of two sign steps (anna, then bert; PAdES B-B on page 1 in the same box, the default
appearance). ``CLIENTS`` threads with keep-alive sessions each take workflows from a shared counter: start
(``erp``, the PDF in base64) → anna signs step 1 → bert signs step 2; every answer checked (201/200, the last
one ``completed``). A signing step's latency is that of its POST (claim, signature, verification of the
document's signatures, the new revision written, the audit entry, the next invitation queued). Baseline, in
the same run and with the same clients: ``POST /api/v1/sign?format=pades`` of the same PDF in the same box
with anna's key (signature only), ``BASELINE_SIGNS`` in all. ``BENCH_WORKFLOWS`` overrides the count.
"""

from __future__ import annotations

import base64
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import requests

from bench.report import tree_state, write_result
from tests.fixtures.pdf import make_pdf
from tests.fixtures.server import SiegelInstance, make_instance
from tests.fixtures.smtp import SmtpServer

CLIENTS = 4
WORKFLOWS = int(os.environ.get("BENCH_WORKFLOWS", "1000"))
BASELINE_SIGNS = 400
PASSWORD = "bench-password-123"
BOX = {"page": 1, "box": [50, 50, 200, 60]}


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def _clients(work: Callable[[requests.Session], None], count: int) -> float:
    """``count`` calls of ``work`` over ``CLIENTS`` threads with a session each; the seconds it took."""
    left = iter(range(count))
    lock = threading.Lock()

    def client() -> None:
        with requests.Session() as http:
            while True:
                with lock:
                    if next(left, None) is None:
                        return
                work(http)

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        for future in [pool.submit(client) for _ in range(CLIENTS)]:
            future.result()
    return time.perf_counter() - started


def run(work: Path) -> Path:
    workers = os.cpu_count() or 1
    tree = tree_state()
    load_before = os.getloadavg()
    smtp = SmtpServer()
    smtp.start()
    inst: SiegelInstance = make_instance(work / "workflows", {
        "SIEGEL_SERVER_WORKERS": str(workers), "SIEGEL_MAIL_HOST": smtp.host, "SIEGEL_MAIL_PORT": str(smtp.port),
        "SIEGEL_MAIL_SENDER": "siegel@example.com", "SIEGEL_LOG_LEVEL": "WARNING"})
    for name in ("anna", "bert"):
        inst.cli("user", "add", name, "--email", f"{name}@example.com", "--role", "signer", "--password-stdin",
                 stdin=PASSWORD + "\n")
        inst.cli("ca", "issue", name)
    inst.cli("user", "add", "chef", "--email", "chef@example.com", "--role", "template_manager", "--password-stdin",
             stdin=PASSWORD + "\n")
    inst.start()
    pdf = make_pdf()
    api = inst.url + "/api/v1"
    steps: list[float] = []
    baseline: list[float] = []
    lock = threading.Lock()
    try:
        r = requests.post(api + "/workflows/templates", auth=("chef", PASSWORD), timeout=60, json={
            "name": "bench", "definition": {"steps": [
                {"name": n, "assignee": {"user": n}, "action": "sign", "signature": {"level": "B-B", **BOX}}
                for n in ("anna", "bert")]}})
        assert r.status_code == 201, r.text
        template = r.json()["id"]
        body = {"template": template, "document": base64.b64encode(pdf).decode(), "documentName": "bench.pdf"}

        def workflow(http: requests.Session) -> None:
            started = http.post(api + "/workflows", json=body, auth=inst.auth, timeout=120)
            assert started.status_code == 201, started.text
            wid = started.json()["id"]
            for position, who in ((1, "anna"), (2, "bert")):
                t = time.perf_counter()
                done = http.post(f"{api}/workflows/{wid}/steps/{position}", json={"action": "sign"},
                                 auth=(who, PASSWORD), timeout=120)
                elapsed = time.perf_counter() - t
                assert done.status_code == 200, done.text
                with lock:
                    steps.append(elapsed)
            assert done.json()["state"] == "completed", done.text

        x, y, w, h = BOX["box"]
        sign_url = f"{api}/sign?format=pades&level=B-B&page=1&x={x}&y={y}&w={w}&h={h}"

        def plain(http: requests.Session) -> None:
            t = time.perf_counter()
            signed = http.post(sign_url, data=pdf, headers={"Content-Type": "application/pdf"},
                               auth=("anna", PASSWORD), timeout=120)
            elapsed = time.perf_counter() - t
            assert signed.status_code == 200 and signed.content.startswith(b"%PDF-"), signed.text[:300]
            with lock:
                baseline.append(elapsed)

        _clients(plain, CLIENTS * 5)  # warm-up: imports, appearance, sessions, the credential cache
        _clients(workflow, CLIENTS * 2)
        steps.clear()
        baseline.clear()
        baseline_seconds = _clients(plain, BASELINE_SIGNS)
        seconds = _clients(workflow, WORKFLOWS)
    finally:
        inst.stop()
        smtp.stop()
    rate = WORKFLOWS / seconds
    sign_rate = BASELINE_SIGNS / baseline_seconds
    return write_result(
        "workflows",
        measured={"workflows_per_s": round(rate, 2), "signing_step_p95_ms": round(_p95(steps) * 1000, 1),
                  "signing_step_median_ms": round(statistics.median(steps) * 1000, 1),
                  "signing_steps_per_s": round(2 * rate, 2)},
        baseline={"pades_sign_p95_ms": round(_p95(baseline) * 1000, 1),
                  "pades_sign_median_ms": round(statistics.median(baseline) * 1000, 1),
                  "pades_signs_per_s": round(sign_rate, 2)},
        ratios={"signing_step_p95_vs_pades_sign_p95": round(_p95(steps) / _p95(baseline), 3),
                "signing_steps_per_s_vs_pades_signs_per_s": round(2 * rate / sign_rate, 3)},
        goals={},
        notes=(f"{tree}. {WORKFLOWS} workflows of two sign steps through the REST API by {CLIENTS} client threads "
               f"(keep-alive sessions) against `siegel serve --workers {workers}` on SQLite, EC P-256 keys on "
               "SoftHSM2, PAdES B-B on page 1 in the box [50, 50, 200, 60] with the default appearance; a step's "
               "POST covers claim, signature, verification of all signatures of the document (revocation fetched "
               "from the server's own OCSP/CRL), the revision written with fsync, the audit entry and the next "
               "invitation queued (mails to an SMTP sink). Baseline in the same run with the same clients: "
               f"{BASELINE_SIGNS} POST /api/v1/sign?format=pades of the same PDF in the same box with the same key. "
               "The issue names no number: the ratios say what the workflow adds to a plain signature."),
        load_average={"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()],
                      "note": "1/5/15-minute load averages: other work on the machine during the run"},
    )
