"""Prometheus metrics of the whole process.

With several worker processes, ``PROMETHEUS_MULTIPROC_DIR`` is set by ``siegel serve`` before this
module is imported, and ``/metrics`` aggregates all workers' values.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client import REGISTRY

HTTP_REQUESTS = Counter("siegel_http_requests_total", "HTTP requests by route, method and status",
                        ["route", "method", "status"])
SIGNATURES = Counter("siegel_signatures_total", "Signatures made, by format (rfc3161 tokens, ocsp responses, ...)",
                     ["format"])
HTTP_LATENCY = Histogram("siegel_http_request_duration_seconds", "HTTP request latency by route", ["route"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


def render() -> bytes:
    """The text exposition of every metric (all workers' values with several processes)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
