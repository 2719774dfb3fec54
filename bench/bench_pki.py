"""TSA tokens/s and OCSP responses/s over HTTP against the raw HSM signing rate of the same keys.

One server (default RSA-3072 keys on SoftHSM2, the configured number of workers) answers 8
concurrent keep-alive clients; the baseline is 8 threads calling ``C_Sign`` on the TSA's and the
OCSP signer's key directly, measured in the same run. ``openssl ts -reply`` run once per request
(a process per token, software key) is reported as a reference point.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Callable

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import load_der_x509_certificate, ocsp

from adapters.timestamp.client import build_request, parse_response
from bench.load import run_load, threaded_rate
from bench.report import write_result
from server import config
from server.app import build_services
from server.signing.keysource import DigestAlgorithm, SignatureScheme
from tests.fixtures.server import make_instance
from tests.fixtures.tsa import prepare_reference_tsa

CLIENTS = 8
SECONDS = 3.0
ROUNDS = 3  # raw and served rates alternate; each is the best round (the machine's noise is ±20 %)


def _openssl_reply_rate(work: Path, count: int = 40) -> float:
    d = work / "openssl-ts"
    d.mkdir()
    prepare_reference_tsa(d)
    (d / "q.tsq").write_bytes(build_request(hashlib.sha256(b"bench").digest(), "sha256", 1))
    started = time.monotonic()
    for _ in range(count):
        subprocess.run(["openssl", "ts", "-reply", "-config", "tsa.cnf", "-queryfile", "q.tsq", "-signer", "tsa.pem",
                        "-inkey", "tsa.key", "-chain", "ca.pem", "-out", "r.tsr"], cwd=d, check=True,
                       capture_output=True)
    return count / (time.monotonic() - started)


def run(work: Path) -> Path:
    workers = os.cpu_count() or 1
    inst = make_instance(work / "pki", {"SIEGEL_PKI_KEY_ALGORITHM": "rsa-3072",
                                        "SIEGEL_SERVER_WORKERS": str(workers)})
    services = build_services(config.load(data_dir=inst.data_dir, environ={"SIEGEL_PKI_KEY_ALGORITHM": "rsa-3072"}))
    digest = hashlib.sha256(b"bench").digest()
    tsa_query = build_request(digest, "sha256", 7)
    best: dict[str, float] = {}
    try:
        hsm = services.hsm.get()
        tsa_label, tsa_chain = services.ca.service_credentials("tsa")
        ocsp_label, _ = services.ca.service_credentials("ocsp")
        tsa_cert, issuing = (load_der_x509_certificate(d) for d in tsa_chain[:2])
        ocsp_query = ocsp.OCSPRequestBuilder().add_certificate(tsa_cert, issuing, hashes.SHA256()).build() \
            .public_bytes(Encoding.DER)
        inst.start()
        status, token = parse_response(requests.post(inst.url + "/tsa", data=tsa_query, timeout=10,
                                                     headers={"Content-Type": "application/timestamp-query"}).content)
        assert status.granted and token is not None, status.describe()
        measures: dict[str, Callable[[], float]] = {
            "raw_tsa": lambda: threaded_rate(lambda: hsm.sign_digest(
                tsa_label, digest, DigestAlgorithm.SHA256, SignatureScheme.RSA_PKCS1V15), threads=CLIENTS, seconds=SECONDS),
            "tsa": lambda: _served(inst.port, "/tsa", tsa_query, "application/timestamp-query"),
            "raw_ocsp": lambda: threaded_rate(lambda: hsm.sign_digest(
                ocsp_label, digest, DigestAlgorithm.SHA256, SignatureScheme.RSA_PKCS1V15), threads=CLIENTS, seconds=SECONDS),
            "ocsp": lambda: _served(inst.port, "/ocsp", ocsp_query, "application/ocsp-request"),
        }
        for _ in range(ROUNDS):
            for name, measure in measures.items():
                best[name] = max(best.get(name, 0.0), measure())
    finally:
        inst.stop()
        services.close()
    openssl_rate = _openssl_reply_rate(work)
    return write_result(
        "pki",
        measured={"tsa_tokens_per_s": round(best["tsa"], 1), "ocsp_responses_per_s": round(best["ocsp"], 1),
                  "openssl_ts_reply_processes_per_s": round(openssl_rate, 1)},
        baseline={"hsm_sign_per_s_tsa_key": round(best["raw_tsa"], 1),
                  "hsm_sign_per_s_ocsp_key": round(best["raw_ocsp"], 1)},
        ratios={"tsa_vs_raw_hsm": round(best["tsa"] / best["raw_tsa"], 3),
                "ocsp_vs_raw_hsm": round(best["ocsp"] / best["raw_ocsp"], 3),
                "openssl_ts_reply_vs_raw_hsm": round(openssl_rate / best["raw_tsa"], 3)},
        goals={"tsa_vs_raw_hsm": ">= 0.6", "ocsp_vs_raw_hsm": ">= 0.6"},
        notes=f"{CLIENTS} keep-alive clients (a load generator on the same cores), best of {ROUNDS} rounds of "
              f"{SECONDS:.0f} s alternating with the raw rate, {workers} server workers, RSA-3072 keys on SoftHSM2; "
              f"raw rate: {CLIENTS} threads signing SHA-256 digests with PKCS#1 v1.5 on the same keys while the "
              "server idles; openssl ts -reply: one process per token, software RSA-2048 key, sequential",
    )


def _served(port: int, path: str, body: bytes, content_type: str) -> float:
    result = run_load("127.0.0.1", port, "POST", path, body=body, clients=CLIENTS, seconds=SECONDS,
                      headers={"Content-Type": content_type})
    assert set(result.statuses) == {200}, result.statuses
    return result.rate
