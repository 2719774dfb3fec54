"""``/health`` (JSON, 503 when a dependency is down) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import os
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST
from twisted.internet import threads
from twisted.web import resource

from server import __version__, metrics
from server.errors import SiegelError
from server.web.http import json_response, render_deferred


def run_checks(checks: dict[str, Callable[[], dict[str, Any]]]) -> dict[str, Any]:
    """Every named check's result (``ok`` and its details, or the error) and ``status`` ok | unavailable;
    blocking (the checks talk to the database and the HSM)."""
    report: dict[str, Any] = {"version": __version__, "pid": os.getpid()}
    healthy = True
    for name, check in checks.items():
        try:
            report[name] = {"ok": True, **check()}
        except SiegelError as exc:
            healthy = False
            report[name] = {"ok": False, "error": exc.message}
    report["status"] = "ok" if healthy else "unavailable"
    return report


class Health(resource.Resource):
    """Runs every named check off the reactor thread and reports each one."""

    isLeaf = True

    def __init__(self, checks: dict[str, Callable[[], dict[str, Any]]]) -> None:
        super().__init__()
        self._checks = checks

    def _run(self) -> tuple[int, dict[str, Any]]:
        report = run_checks(self._checks)
        return (200 if report["status"] == "ok" else 503), report

    def render_GET(self, request: Any) -> int:
        def work() -> Any:
            return threads.deferToThread(self._run).addCallback(lambda r: json_response(request, r[0], r[1]))

        return render_deferred(request, work)


class Metrics(resource.Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return metrics.render()
