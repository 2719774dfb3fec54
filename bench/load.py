"""A small closed-loop HTTP/1.1 load generator: N keep-alive clients, each one request at a time."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def _client(host: str, port: int, raw: bytes, deadline: float, statuses: dict[int, int]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while time.monotonic() < deadline:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            statuses[status] = statuses.get(status, 0) + 1
            done += 1
    finally:
        writer.close()
    return done


def run_load(host: str, port: int, method: str, path: str, *, headers: dict[str, str] | None = None,
             body: bytes = b"", clients: int = 8, seconds: float = 5.0) -> LoadResult:
    """Drive ``clients`` concurrent keep-alive connections for ``seconds`` and count the answers."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    statuses: dict[int, int] = {}

    async def main() -> int:
        deadline = time.monotonic() + seconds
        counts = await asyncio.gather(*(_client(host, port, raw, deadline, statuses) for _ in range(clients)))
        return sum(counts)

    started = time.monotonic()
    total = asyncio.run(main())
    return LoadResult(total, time.monotonic() - started, statuses)


def threaded_rate(call: Callable[[], object], *, threads: int, seconds: float) -> float:
    """Calls per second of ``threads`` threads calling ``call()`` in a loop for ``seconds`` (the raw
    HSM baselines the served rates are compared with)."""
    deadline = time.monotonic() + seconds

    def loop() -> int:
        done = 0
        while time.monotonic() < deadline:
            call()
            done += 1
        return done

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: loop(), range(threads)))
    return total / (time.monotonic() - started)
