"""HTTP overhead of authentication: Basic-authenticated API calls against the public /health rate.

ERP clients send HTTP Basic on every request; argon2id costs tens of milliseconds, so without the
credential cache the authenticated rate would collapse to a few dozen per second per core.
"""

from __future__ import annotations

import base64
from pathlib import Path

from bench.load import run_load
from bench.report import write_result
from tests.fixtures.server import make_instance


def run(work: Path) -> Path:
    inst = make_instance(work / "http")
    inst.start()
    try:
        token = base64.b64encode(f"{inst.user}:{inst.password}".encode()).decode()
        health = run_load("127.0.0.1", inst.port, "GET", "/health", clients=8, seconds=5)
        authed = run_load("127.0.0.1", inst.port, "GET", "/api/v1/whoami",
                          headers={"Authorization": f"Basic {token}"}, clients=8, seconds=5)
    finally:
        inst.stop()
    assert set(authed.statuses) == {200}, authed.statuses
    return write_result(
        "http",
        measured={"basic_auth_requests_per_s": round(authed.rate, 1)},
        baseline={"health_requests_per_s": round(health.rate, 1)},
        ratios={"basic_auth_vs_health": round(authed.rate / health.rate, 3)},
        goals={"basic_auth_vs_health": ">= 0.5 (cached credential: no argon2id per request)"},
        notes="8 keep-alive clients, 5 s each, one server process; /health itself queries database and HSM",
    )
