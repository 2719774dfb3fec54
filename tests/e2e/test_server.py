"""The whole server process: health, metrics, authentication, limits, shutdown, workers, init."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import time
from pathlib import Path

import pytest
import requests

from tests.fixtures.server import SiegelInstance

pytestmark = pytest.mark.e2e


def test_health_reports_database_and_hsm(siegel_server: SiegelInstance) -> None:
    r = requests.get(siegel_server.url + "/health", timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["hsm"] == {"ok": True, "token": "siegel"}
    assert body["version"]


def test_health_is_503_when_the_hsm_login_fails(siegel_instance: SiegelInstance) -> None:
    wrong = siegel_instance.data_dir / "secrets" / "wrong.pin"
    wrong.write_text("000000\n")
    siegel_instance.env["SIEGEL_HSM_PIN_FILE"] = str(wrong)
    siegel_instance.start(health=503)
    body = requests.get(siegel_instance.url + "/health", timeout=10).json()
    assert body["status"] == "unavailable"
    assert body["database"]["ok"] is True
    assert body["hsm"]["ok"] is False and "PIN" in body["hsm"]["error"]
    assert siegel_instance.stop() == 0


def test_basic_auth_on_api(siegel_server: SiegelInstance) -> None:
    url = siegel_server.url + "/api/v1/whoami"
    r = requests.get(url, timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].lower().startswith("basic realm=")
    assert requests.get(url, auth=(siegel_server.user, "wrong password"), timeout=10).status_code == 401
    assert requests.get(url, auth=("nobody", "whatever1"), timeout=10).status_code == 401
    r = requests.get(url, auth=siegel_server.auth, timeout=10)
    assert r.status_code == 200
    assert r.json() == {"id": 1, "name": siegel_server.user, "role": "integration"}


def test_unknown_api_path_is_problem_json(siegel_server: SiegelInstance) -> None:
    r = requests.get(siegel_server.url + "/api/v1/nothing-here", auth=siegel_server.auth, timeout=10)
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["status"] == 404 and r.json()["type"].startswith("urn:siegel:problem:")


def test_request_id_is_returned_and_logged(siegel_server: SiegelInstance) -> None:
    r = requests.get(siegel_server.url + "/health", headers={"X-Request-Id": "trace-4711"}, timeout=10)
    assert r.headers["X-Request-Id"] == "trace-4711"
    generated = requests.get(siegel_server.url + "/health", timeout=10).headers["X-Request-Id"]
    assert len(generated) == 32
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in siegel_server.log().splitlines() if line.startswith("{")]
        hits = [e for e in lines if e.get("request_id") == "trace-4711"]
        if hits:
            assert hits[0]["path"] == "/health" and hits[0]["status"] == 200 and "ms" in hits[0]
            return
        time.sleep(0.1)
    pytest.fail("no JSON log line carries the request id")


def test_metrics_count_requests_by_route_and_status(siegel_server: SiegelInstance) -> None:
    for _ in range(3):
        requests.get(siegel_server.url + "/api/v1/whoami", timeout=10)
    text = requests.get(siegel_server.url + "/metrics", timeout=10).text
    line = [ln for ln in text.splitlines()
            if ln.startswith("siegel_http_requests_total{") and 'route="/api"' in ln and 'status="401"' in ln
            and 'method="GET"' in ln]
    assert line and float(line[0].rsplit(" ", 1)[1]) >= 3
    assert "siegel_http_request_duration_seconds_bucket" in text


def _raw(port: int, data: bytes, wait: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks)


def test_oversized_requests_are_refused_while_streaming(siegel_instance: SiegelInstance) -> None:
    siegel_instance.env["SIEGEL_SERVER_MAX_REQUEST_BYTES"] = "4096"
    siegel_instance.start()
    port = siegel_instance.port
    # Announced as 100 MB, but only the headers are sent: the answer must come without the body.
    started = time.monotonic()
    answer = _raw(port, b"POST /dss HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 100000000\r\n\r\n")
    assert time.monotonic() - started < 3
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"Fault" in answer and b"4096" in answer
    # Chunked, no length announced: refused once the limit is crossed.
    chunk = b"x" * 3000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
    answer = _raw(port, b"POST /api/v1/whoami HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"application/problem+json" in answer
    assert requests.get(siegel_instance.url + "/health", timeout=10).status_code == 200
    assert siegel_instance.stop() == 0


def test_sigterm_lets_in_flight_requests_finish(siegel_instance: SiegelInstance) -> None:
    siegel_instance.start()
    import base64

    token = base64.b64encode(f"{siegel_instance.user}:{siegel_instance.password}".encode())
    body = b'{"half": "of a body that is still on its way"}'
    s = socket.create_connection(("127.0.0.1", siegel_instance.port), timeout=10)
    s.sendall(b"POST /api/v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + token
              + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10])
    time.sleep(0.3)
    assert siegel_instance.process is not None
    siegel_instance.process.send_signal(15)
    time.sleep(0.5)
    with pytest.raises(requests.ConnectionError):
        requests.get(siegel_instance.url + "/health", timeout=2)
    s.sendall(body[10:])
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = s.recv(65536)
        if not chunk:
            break
        answer += chunk
    s.close()
    assert answer.startswith(b"HTTP/1.1 405") or answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert siegel_instance.process.wait(20) == 0
    actions = siegel_instance.cli("audit", "verify").stdout
    assert "intact" in actions


def test_workers_share_the_port(siegel_instance: SiegelInstance) -> None:
    siegel_instance.start("--workers", "2")
    pids = set()
    deadline = time.monotonic() + 30  # the second worker may still be importing when the first answers
    while len(pids) < 2 and time.monotonic() < deadline:
        with requests.Session() as fresh:  # a new connection each time
            pids.add(fresh.get(siegel_instance.url + "/health", timeout=10).json()["pid"])
    assert len(pids) == 2
    assert siegel_instance.stop() == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "run" not in p.relative_to(root).parts
            and not p.name.startswith("siegel.db")}


def test_init_is_idempotent_and_keeps_secrets_private(siegel_instance: SiegelInstance) -> None:
    data = siegel_instance.data_dir
    for name in ("hsm-user.pin", "hsm-so.pin"):
        mode = stat.S_IMODE((data / "secrets" / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"
    assert any((data / "hsm").rglob("*.object")) or any((data / "hsm").rglob("*.db"))
    before = _tree_digest(data)
    audit_before = siegel_instance.cli("audit", "verify").stdout
    again = siegel_instance.cli("init")
    assert again.stdout.strip() == ""
    assert _tree_digest(data) == before
    assert siegel_instance.cli("audit", "verify").stdout == audit_before


def test_two_instances_side_by_side(siegel_server: SiegelInstance, siegel_instance: SiegelInstance) -> None:
    siegel_instance.start()
    assert siegel_instance.data_dir != siegel_server.data_dir
    for inst in (siegel_server, siegel_instance):
        assert requests.get(inst.url + "/health", timeout=10).json()["status"] == "ok"
    assert siegel_instance.stop() == 0


def test_cli_help_on_every_subcommand(siegel_server: SiegelInstance) -> None:
    for args in (["--help"], ["serve", "--help"], ["init", "--help"], ["config", "show", "--help"],
                 ["audit", "verify", "--help"], ["hsm", "keys", "--help"], ["user", "add", "--help"]):
        out = siegel_server.cli(*args)
        assert "usage: siegel" in out.stdout


def test_hsm_keys_lists_token_contents(siegel_server: SiegelInstance) -> None:
    out = siegel_server.cli("hsm", "keys")
    assert out.returncode == 0
    assert "no keys on the token" in out.stdout or "extractable=false" in out.stdout
