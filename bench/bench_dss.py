"""Issue 4's goals: hash-only DSS signing, XAdES verification and streamed hashing of a large upload,
each next to a baseline measured in the same run.

1. ``POST /dss`` SignRequests of CAdES B-B over ``dss:DocumentHash`` (1 and 100 per request), 8 concurrent
   keep-alive clients, EC P-256 and RSA-3072 servers with one worker per CPU; signatures/s against the raw
   PKCS#11 rate of the same key (the erp account's signing key, 8 threads calling ``sign_digest``).
   Every answer is checked: HTTP 200, ResultMajor Success and one Base64Signature per hash.
2. Enveloped XAdES B-B files made by the server, verified in-process by Siegel's XAdES verifier (trusting
   the instance's root, no fetching) against ``xmlsec1 --verify`` run once per file over the same files.
3. A large file POSTed to ``/api/v1/sign?format=cades&level=B-B`` from disk (hashed as it streams, never
   held): MB/s against ``openssl dgst -sha256`` of the same file, and the server processes' peak RSS during
   the upload, also for a 10x smaller upload (the RSS must not grow with the size).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import requests
from cryptography import x509
from requests.adapters import HTTPAdapter
from cryptography.hazmat.primitives.serialization import Encoding

from bench.load import CMS_TYPE, DSS_SUCCESS, SOAP_SIGN_HEADERS, soap_sign_request, threaded_rate
from bench.report import tree_state, write_result
from server import config
from server.app import build_services
from server.signing.keysource import DigestAlgorithm, SignatureScheme
from server.validation.model import Trust
from server.validation.xades import verify_xml_signatures
from server.web.soap import DSS_NS
from tests.fixtures.server import SiegelInstance, make_instance

CLIENTS = 8
SECONDS = 3.0
ROUNDS = 3  # measured and baseline rates alternate; each is the best round (the machine's noise is ±20 %)
BATCH = 100
XADES_FILES = 20
STREAM_BYTES = 4 << 30  # overridable by SIEGEL_BENCH_STREAM_BYTES
RSS_POLL_SECONDS = 0.05
UPLOAD_BLOCK_BYTES = 1 << 20  # the upload's send size (urllib3's 16 KiB cost the client 0.6 ms CPU per MiB, this 0.3)

SIGNED_PROPERTIES_ID = ["--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties"]
KEYS = {"ec": ("ec-p256", SignatureScheme.ECDSA), "rsa": ("rsa-3072", SignatureScheme.RSA_PKCS1V15)}


# --- 1. hash-only DSS signing -------------------------------------------------------------------------------

def sign_request(hashes: int) -> bytes:
    """A SOAP 1.1 SignRequest: CAdES B-B over ``hashes`` distinct SHA-256 DocumentHash elements."""
    return soap_sign_request(f"bench-{hashes}", [b"doc %d" % i for i in range(hashes)])


def _auth_header(inst: SiegelInstance) -> str:
    return "Basic " + base64.b64encode(f"{inst.user}:{inst.password}".encode()).decode()


def _check_sample(inst: SiegelInstance, request: bytes, hashes: int) -> None:
    """One request by ``requests`` first: Success and one CAdES per hash, else the benchmark is void."""
    r = requests.post(inst.url + "/dss", data=request, headers=SOAP_SIGN_HEADERS, auth=inst.auth, timeout=120)
    assert r.status_code == 200, r.text[:500]
    assert DSS_SUCCESS in r.content, r.text[:1000]
    from lxml import etree

    signatures = etree.fromstring(r.content).findall(f".//{{{DSS_NS}}}Base64Signature")
    assert len(signatures) == hashes, (len(signatures), r.text[:500])
    assert all(s.get("Type") == CMS_TYPE for s in signatures)


async def _dss_client(port: int, raw: bytes, hashes: int, deadline: float, tally: Counter[str]) -> int:
    """bench/load.py's closed-loop client, keeping each body to check its ResultMajor and signature count."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while time.monotonic() < deadline:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            lowered = head.lower()
            if b"transfer-encoding: chunked" in lowered:
                parts = []
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    parts.append(await reader.readexactly(size + 2))
                    if size == 0:
                        break
                body = b"".join(p[:-2] for p in parts)
            else:
                length = next((int(line.split(b":", 1)[1]) for line in lowered.split(b"\r\n")
                               if line.startswith(b"content-length:")), 0)
                body = await reader.readexactly(length) if length else b""
            ok = status == 200 and DSS_SUCCESS in body and body.count(b"Base64Signature Type=") == hashes
            tally["ok" if ok else f"bad-{status}"] += 1
            done += 1
    finally:
        writer.close()
    return done


def _dss_rate(inst: SiegelInstance, request: bytes, hashes: int) -> float:
    """Signatures per second (requests/s × hashes) of ``CLIENTS`` keep-alive clients, every answer checked."""
    lines = ["POST /dss HTTP/1.1", f"Host: 127.0.0.1:{inst.port}", f"Content-Length: {len(request)}",
             f"Authorization: {_auth_header(inst)}", *(f"{k}: {v}" for k, v in SOAP_SIGN_HEADERS.items())]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + request
    tally: Counter[str] = Counter()

    async def main() -> int:
        deadline = time.monotonic() + SECONDS
        return sum(await asyncio.gather(*(_dss_client(inst.port, raw, hashes, deadline, tally)
                                          for _ in range(CLIENTS))))

    started = time.monotonic()
    total = asyncio.run(main())
    elapsed = time.monotonic() - started
    assert set(tally) == {"ok"}, dict(tally)
    return total * hashes / elapsed


def _measure_dss(inst: SiegelInstance, algorithm: str, scheme: SignatureScheme) -> dict[str, float]:
    """Best of ``ROUNDS`` alternating rounds: raw HSM rate, 1 hash per request, ``BATCH`` per request."""
    services = build_services(config.load(data_dir=inst.data_dir, environ={"SIEGEL_PKI_KEY_ALGORITHM": algorithm}))
    best: dict[str, float] = {}
    try:
        hsm = services.hsm.get()
        label = services.ca.signing_key_of(services.users.find(inst.user).user_id)
        digest = hashlib.sha256(b"bench").digest()
        single, batch = sign_request(1), sign_request(BATCH)
        _check_sample(inst, single, 1)
        _check_sample(inst, batch, BATCH)
        measures: dict[str, Callable[[], float]] = {
            "raw": lambda: threaded_rate(lambda: hsm.sign_digest(label, digest, DigestAlgorithm.SHA256, scheme),
                                         threads=CLIENTS, seconds=SECONDS),
            "single": lambda: _dss_rate(inst, single, 1),
            "batch": lambda: _dss_rate(inst, batch, BATCH),
        }
        for _ in range(ROUNDS):
            for name, measure in measures.items():
                best[name] = max(best.get(name, 0.0), measure())
    finally:
        services.close()
    return best


# --- 2. XAdES verification ----------------------------------------------------------------------------------

def _der(inst: SiegelInstance, name: str) -> bytes:
    r = requests.get(f"{inst.url}/ca/{name}.crt", timeout=10)
    assert r.status_code == 200, r.status_code
    return r.content


def _make_xades(inst: SiegelInstance, where: Path) -> tuple[list[Path], bytes]:
    """``XADES_FILES`` enveloped XAdES B-B files signed by the server, root.pem/issuing.pem beside them;
    the root's DER."""
    where.mkdir()
    root = _der(inst, "ROOT")
    for name, der in (("root", root), ("issuing", _der(inst, "ISSUING"))):
        (where / f"{name}.pem").write_bytes(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM))
    files = []
    for i in range(XADES_FILES):
        lines = "".join(f'<line n="{n}"><article>A-{i:03d}-{n:02d}</article><quantity>{n + 1}</quantity>'
                        f"<price>{(i + 1) * (n + 3)}.50</price></line>" for n in range(10))
        document = (f'<?xml version="1.0" encoding="UTF-8"?>\n<invoice xmlns="urn:example:invoice" id="R-{i:04d}">'
                    f"<customer>Kunde {i}</customer>{lines}</invoice>").encode()
        r = requests.post(inst.url + "/api/v1/sign", params={"format": "xades", "packaging": "enveloped",
                                                             "level": "B-B"},
                          data=document, headers={"Content-Type": "application/xml"}, auth=inst.auth, timeout=60)
        assert r.status_code == 200, r.text[:500]
        path = where / f"signed-{i:02d}.xml"
        path.write_bytes(r.content)
        files.append(path)
    return files, root


def _xmlsec1(path: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["xmlsec1", "--verify", "--trusted-pem", "root.pem", "--untrusted-pem", "issuing.pem",
                           *SIGNED_PROPERTIES_ID, path.name], cwd=path.parent, capture_output=True, timeout=60,
                          check=False)


def _loop_rate(files: list[Path], verify: Callable[[Path], None]) -> float:
    """Files verified per second, going round ``files`` for ``SECONDS``."""
    started = time.monotonic()
    deadline = started + SECONDS
    done = 0
    while time.monotonic() < deadline:
        verify(files[done % len(files)])
        done += 1
    return done / (time.monotonic() - started)


def _measure_xades(files: list[Path], root: bytes) -> tuple[dict[str, float], dict[str, int]]:
    trust = Trust((root,), allow_fetching=False)
    contents = {path: path.read_bytes() for path in files}
    indications: Counter[str] = Counter()
    for path in files:
        done = _xmlsec1(path)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        reports = verify_xml_signatures(contents[path], trust, name=path.name)
        assert len(reports) == 1 and reports[0].format.startswith("XAdES"), reports
        sub = reports[0].sub_indication
        indications[f"{reports[0].indication.value}/{sub.value if sub else '-'}/{reports[0].level}"] += 1

    def siegel(path: Path) -> None:
        verify_xml_signatures(contents[path], trust, name=path.name)

    def xmlsec1(path: Path) -> None:
        assert _xmlsec1(path).returncode == 0

    best: dict[str, float] = {}
    for _ in range(ROUNDS):
        for name, verify in (("siegel", siegel), ("xmlsec1", xmlsec1)):
            best[name] = max(best.get(name, 0.0), _loop_rate(files, verify))
    return best, dict(indications)


# --- 3. streamed hashing of a large upload ------------------------------------------------------------------

def _stream_size(work: Path) -> tuple[int, str]:
    wanted = int(os.environ.get("SIEGEL_BENCH_STREAM_BYTES", STREAM_BYTES))
    free = shutil.disk_usage(work).free
    if free >= 2 * wanted:
        return wanted, ""
    size = 1 << ((free // 2).bit_length() - 1)
    return size, (f"only {free / 2**30:.1f} GiB free on {work}: the upload is {size / 2**30:.2f} GiB "
                  f"instead of the asked {wanted / 2**30:.2f} GiB; ")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except FileNotFoundError:
            pass
    return found


def _process_tree(pid: int) -> list[int]:
    pids: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        pending += _children(current)
    return pids


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


class RssPoller:
    """VmRSS of a process and its descendants every ``RSS_POLL_SECONDS``: the peak of the largest one and
    of their sum."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stop = threading.Event()
        self.peak_single_kib = 0
        self.peak_total_kib = 0
        self.growth_kib = 0  # the most any one process grew above its RSS when first seen
        self._first: dict[int, int] = {}
        self.samples = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = _process_tree(self._pid)
            sizes = [_rss_kib(p) for p in pids]
            for pid, size in zip(pids, sizes):
                self.growth_kib = max(self.growth_kib, size - self._first.setdefault(pid, size))
            self.peak_single_kib = max(self.peak_single_kib, max(sizes))
            self.peak_total_kib = max(self.peak_total_kib, sum(sizes))
            self.samples += 1
            self._stop.wait(RSS_POLL_SECONDS)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _sparse_file(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    return path


class _BigBlocks(HTTPAdapter):
    """urllib3 sends a file body in blocks of UPLOAD_BLOCK_BYTES (the client shares the server's cores)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, blocksize=UPLOAD_BLOCK_BYTES, **kwargs)


def _upload(inst: SiegelInstance, path: Path) -> tuple[float, RssPoller, bytes]:
    """Seconds to POST ``path`` (Content-Length, read from disk as it is sent) and get the CAdES back."""
    assert inst.process is not None
    with requests.Session() as session, path.open("rb") as body, RssPoller(inst.process.pid) as rss:
        session.mount("http://", _BigBlocks())
        started = time.monotonic()
        r = session.post(inst.url + "/api/v1/sign", params={"format": "cades", "level": "B-B"}, data=body,
                         headers={"Content-Type": "application/octet-stream"}, auth=inst.auth, timeout=3600)
        elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text[:500]
    assert r.headers["Content-Type"] == "application/pkcs7-signature", r.headers
    return elapsed, rss, r.content


def _sendfile_upload(inst: SiegelInstance, path: Path) -> float:
    """Seconds for the same POST sent by os.sendfile (the client costs next to no CPU): what the server alone
    manages, as the requests client above competes with it for the same cores."""
    size = path.stat().st_size
    head = (f"POST /api/v1/sign?format=cades&level=B-B HTTP/1.1\r\nHost: 127.0.0.1:{inst.port}\r\n"
            f"Authorization: {_auth_header(inst)}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {size}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", inst.port)) as sock, path.open("rb") as body:
        started = time.monotonic()
        sock.sendall(head)
        sent = 0
        while sent < size:
            sent += os.sendfile(sock.fileno(), body.fileno(), sent, min(size - sent, 1 << 30))
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = response.read()
        elapsed = time.monotonic() - started
    assert response.status == 200 and response.getheader("Content-Type") == "application/pkcs7-signature", \
        (response.status, answer[:300])
    return elapsed


def _openssl_dgst(path: Path) -> tuple[float, bytes]:
    started = time.monotonic()
    done = subprocess.run(["openssl", "dgst", "-sha256", "-r", str(path)], capture_output=True, check=True)
    return time.monotonic() - started, bytes.fromhex(done.stdout.split()[0].decode())


def _hashlib_rate(seconds: float = 1.0) -> float:
    """MB/s of hashlib SHA-256 over 64 KiB buffers in memory: what a Python process can hash at most."""
    chunk, h, done = bytes(65536), hashlib.sha256(), 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        for _ in range(256):
            h.update(chunk)
        done += 256 * len(chunk)
    return done / (time.monotonic() - started) / 1e6


def _measure_stream(inst: SiegelInstance, work: Path) -> tuple[dict[str, float], str]:
    size, note = _stream_size(work)
    big, small = _sparse_file(work / "upload.bin", size), _sparse_file(work / "upload-small.bin", size // 10)
    assert inst.process is not None
    idle = max(_rss_kib(p) for p in _process_tree(inst.process.pid))
    best: dict[str, float] = {}
    try:
        _, digest = _openssl_dgst(big)
        _, _, signature = _upload(inst, big)
        verified = requests.post(inst.url + "/api/v1/verify", params={"digest": base64.b64encode(digest).decode()},
                                 data=signature, auth=inst.auth, timeout=60).json()["signatures"]
        assert len(verified) == 1 and verified[0]["indication"] == "TOTAL-PASSED", verified
        for _ in range(ROUNDS):
            seconds, rss, _ = _upload(inst, big)
            best["stream"] = max(best.get("stream", 0.0), size / seconds / 1e6)
            best["peak_rss_kib"] = max(best.get("peak_rss_kib", 0), rss.peak_single_kib)
            best["peak_rss_total_kib"] = max(best.get("peak_rss_total_kib", 0), rss.peak_total_kib)
            best["growth_kib"] = max(best.get("growth_kib", 0), rss.growth_kib)
            best["sendfile"] = max(best.get("sendfile", 0.0), size / _sendfile_upload(inst, big) / 1e6)
            seconds, _ = _openssl_dgst(big)
            best["openssl"] = max(best.get("openssl", 0.0), size / seconds / 1e6)
            _, rss, _ = _upload(inst, small)
            best["small_peak_rss_kib"] = max(best.get("small_peak_rss_kib", 0), rss.peak_single_kib)
            best["small_growth_kib"] = max(best.get("small_growth_kib", 0), rss.growth_kib)
    finally:
        big.unlink()
        small.unlink()
    best["size"], best["idle_rss_kib"], best["hashlib"] = size, idle, _hashlib_rate()
    return best, note


# --- all ----------------------------------------------------------------------------------------------------

def run(work: Path) -> Path:
    workers = os.cpu_count() or 1
    dss: dict[str, dict[str, float]] = {}
    tree = tree_state()
    load_before = os.getloadavg()
    for kind, (algorithm, scheme) in KEYS.items():
        inst = make_instance(work / f"dss-{kind}", {"SIEGEL_PKI_KEY_ALGORITHM": algorithm,
                                                    "SIEGEL_SERVER_WORKERS": str(workers)})
        inst.start()
        try:
            dss[kind] = _measure_dss(inst, algorithm, scheme)
            if kind == "ec":
                files, root = _make_xades(inst, work / "xades")
                stream, stream_note = _measure_stream(inst, work)
        finally:
            inst.stop()
    xades, indications = _measure_xades(files, root)

    measured: dict[str, float] = {}
    baseline: dict[str, float] = {}
    ratios: dict[str, float] = {}
    for kind, best in dss.items():
        measured[f"dss_single_hash_requests_per_s_{kind}"] = round(best["single"], 1)
        measured[f"dss_batch{BATCH}_signatures_per_s_{kind}"] = round(best["batch"], 1)
        baseline[f"hsm_sign_per_s_{kind}"] = round(best["raw"], 1)
        ratios[f"single_vs_raw_{kind}"] = round(best["single"] / best["raw"], 3)
        ratios[f"batch_vs_raw_{kind}"] = round(best["batch"] / best["raw"], 3)
    ratios["single_hash_requests_per_s_ec"] = measured["dss_single_hash_requests_per_s_ec"]
    measured["xades_verify_per_s_siegel_in_process"] = round(xades["siegel"], 1)
    baseline["xades_verify_per_s_xmlsec1_processes"] = round(xades["xmlsec1"], 1)
    ratios["xades_verify_siegel_vs_xmlsec1"] = round(xades["siegel"] / xades["xmlsec1"], 3)
    size = int(stream["size"])
    measured["stream_upload_mb_per_s"] = round(stream["stream"], 1)
    measured["stream_upload_bytes"] = size
    measured["stream_peak_rss_mb"] = round(stream["peak_rss_kib"] / 1024, 1)
    measured["stream_peak_rss_mb_small_upload"] = round(stream["small_peak_rss_kib"] / 1024, 1)
    measured["stream_peak_rss_mb_all_server_processes"] = round(stream["peak_rss_total_kib"] / 1024, 1)
    measured["stream_rss_growth_mb"] = round(stream["growth_kib"] / 1024, 1)
    measured["stream_rss_growth_mb_small_upload"] = round(stream["small_growth_kib"] / 1024, 1)
    measured["server_worker_idle_rss_mb"] = round(stream["idle_rss_kib"] / 1024, 1)
    measured["stream_upload_mb_per_s_sendfile_client"] = round(stream["sendfile"], 1)
    baseline["openssl_dgst_sha256_mb_per_s"] = round(stream["openssl"], 1)
    ratios["stream_vs_openssl"] = round(stream["stream"] / stream["openssl"], 3)
    ratios["stream_sendfile_client_vs_openssl"] = round(stream["sendfile"] / stream["openssl"], 3)
    ratios["peak_rss_mb"] = measured["stream_peak_rss_mb"]
    return write_result(
        "dss",
        measured=measured, baseline=baseline, ratios=ratios,
        goals={"batch_vs_raw_ec": ">= 0.7", "batch_vs_raw_rsa": ">= 0.7",
               "single_hash_requests_per_s_ec": ">= 800 (2 cores)", "stream_vs_openssl": ">= 0.9",
               "peak_rss_mb": "<= 150, independent of the upload size"},
        notes=(f"{tree}. Best of {ROUNDS} rounds of {SECONDS:.0f} s, measured and baseline alternating, "
               f"{workers} server workers on {os.cpu_count()} CPUs, SoftHSM2 keys. DSS: SOAP 1.1 SignRequest "
               f"for CAdES B-B over SHA-256 DocumentHash elements (1 or {BATCH} per request), {CLIENTS} "
               "keep-alive clients (one asyncio load generator on the same cores), every answer checked for "
               "HTTP 200, ResultMajor Success and one Base64Signature per hash; signatures/s = requests/s x "
               f"hashes; raw: {CLIENTS} threads calling sign_digest with the erp account's own signing key "
               "(ECDSA / RSA PKCS#1 v1.5 over a SHA-256 digest) while the server idles. XAdES: "
               f"{XADES_FILES} enveloped XAdES B-B invoices (~1.5 KB each before signing) signed by the EC "
               "server over REST; Siegel: verify_xml_signatures in the benchmark process, one thread, trusting "
               "the instance's root with allow_fetching=False (indications reached: "
               f"{', '.join(f'{k} x{v}' for k, v in indications.items())}); xmlsec1: one `xmlsec1 --verify "
               "--trusted-pem root.pem --untrusted-pem issuing.pem` process per file, sequential, exit 0 each. "
               f"Stream: {stream_note}a sparse file of {size} bytes ({size / 2**30:.2f} GiB) POSTed from disk "
               f"with requests (Content-Length, sent in {UPLOAD_BLOCK_BYTES >> 20} MiB blocks) to /api/v1/sign?format=cades&level=B-B on the EC server, the "
               "CAdES checked TOTAL-PASSED against openssl's digest once; MB = 10^6 bytes, time until the "
               "signature is back; openssl dgst -sha256 reads the same file from the page cache. RSS: VmRSS "
               f"of the server's process tree polled every {RSS_POLL_SECONDS * 1000:.0f} ms during each upload; "
               "peak_rss_mb is the largest single process (the worker that hashes), the sum over supervisor "
               f"and workers is listed apart, growth is the most one process grew above its RSS at the upload's start; "
               f"the small upload is {size // 10} bytes. The sendfile client sends the same request by "
               "os.sendfile (no client CPU to speak of) to show the server's own rate."),
        xades_indications=indications,
        load_average={"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()],
                      "note": "1/5/15-minute load averages: other work on the machine during the run"},
        references={"python_hashlib_sha256_in_memory_mb_per_s": round(stream["hashlib"], 1),
                    "note": "not a goal: hashlib.sha256 over 64 KiB buffers in the benchmark process, no I/O"},
    )
