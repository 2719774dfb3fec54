"""``siegel serve``: one process, or a supervisor with N workers sharing its listening socket
(:mod:`server.balance` spreads the connections)."""

from __future__ import annotations

import errno
import logging
import os
import pickle
import shutil
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from server.config import Settings
from server.errors import Code, ConfigError, SiegelError

if TYPE_CHECKING:
    from server.balance import ConnectionTable
    from server.tls import TlsFiles

log = logging.getLogger("siegel.serve")
T = TypeVar("T")
M_ARENA_MAX, M_MMAP_THRESHOLD = -8, -3  # mallopt parameters (glibc malloc.h)
MMAP_THRESHOLD = 4 << 20  # fixed (glibc otherwise raises it after each freed big block): blocks above are mapped
WORKER_MALLOC_ARENAS = 2  # measured: -5 MB of a worker's RSS after signing load, no change in throughput
LISTEN_BACKLOG = 1024
MALLOC_TRIM_SECONDS = 5.0  # measured: a worker 155-168 MB after batch signing load, 147-150 MB with the trim


def listen_socket(host: str, port: int) -> socket.socket:
    """The server's non-blocking socket, bound once (the workers inherit it) and listening from the first
    ready worker's :func:`run_worker` on (a client connecting before is refused, not left waiting); a port
    another process listens on is refused."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SiegelError(Code.CONFIG,
                              f"another server is listening on {host}:{port} (setting server.port)") from None
        raise SiegelError(Code.CONFIG,
                          f"cannot listen on {host}:{port}: {exc.strerror} (setting server.port)") from None
    sock.setblocking(False)
    return sock


def in_child(work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` run in a forked child process, its result (picklable) or SiegelError passed back: what
    it imports and allocates (Alembic, the PKCS#11 library, the whole service graph for setting up) stays out of
    this process, and so out of the workers it forks later. Call it while this process has no other threads."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        status = 0
        try:
            outcome: tuple[str, Any] = ("result", work(*args))
        except SiegelError as exc:
            outcome = ("error", (exc.code, exc.message, exc.minor))
        except BaseException:
            traceback.print_exc()
            outcome, status = ("crash", None), 1
        with os.fdopen(write, "wb") as pipe:
            pickle.dump(outcome, pipe)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    kind, value = pickle.loads(data) if data else ("crash", None)
    if kind == "error":
        raise SiegelError(*value)
    if kind == "crash":
        raise SiegelError(Code.INTERNAL, f"{getattr(work, '__name__', 'start-up work')} failed in a child process "
                                         f"(wait status {status}; its traceback is above)")
    return value  # type: ignore[no-any-return]


def _libc() -> Any:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def limit_malloc_arenas(arenas: int) -> None:
    """glibc gives each thread that allocates concurrently an arena of its own (up to 8 per CPU), and
    memory freed in one rarely goes back to the system: cap them for a worker's thread pool."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, arenas)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def trim_malloc() -> None:
    """Give the pages glibc's heaps hold free back to the system (a batch of signatures leaves many)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def run_worker(settings: Settings, sock: socket.socket, tls: TlsFiles | None = None,
               share: tuple[ConnectionTable, int] | None = None) -> None:
    """Run the Twisted server (HTTPS with ``tls``) on the asyncio reactor, listening on ``sock``, until
    SIGTERM/SIGINT, then drain. ``share``: the workers' connection table and this worker's slot in it."""
    limit_malloc_arenas(WORKER_MALLOC_ARENAS)
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    from twisted.internet import reactor, task, threads

    from server.app import build_root, build_services, scheduled_jobs
    from server.jobs import Scheduler
    from server.web.http import SiegelSite

    services = build_services(settings)
    scheduler = Scheduler(services.engine)
    for spec in scheduled_jobs(services):
        scheduler.register(spec)
    jobs = task.LoopingCall(lambda: threads.deferToThread(scheduler.run_due).addErrback(
        lambda failure: log.error("scheduler failed", extra={"fields": {"error": failure.getErrorMessage()}})))
    site = SiegelSite(build_root(services), settings)
    factory: Any = site
    if tls is not None:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from server.tls import server_context

        factory = TLSMemoryBIOFactory(server_context(tls), False, site)
    sock.listen(LISTEN_BACKLOG)  # one socket in every worker: the first ready one opens it, later calls change nothing
    if share is None:
        port = reactor.adoptStreamPort(sock.fileno(), sock.family, factory)  # type: ignore[attr-defined]
    else:
        from server.balance import BalancedPort

        port = BalancedPort.adopt(reactor, sock, factory, *share)
    sock.close()  # the port listens on a duplicate; the supervisor keeps its own for the next worker
    reactor.suggestThreadPoolSize(settings.server.thread_pool_size)  # type: ignore[attr-defined]
    trim = task.LoopingCall(lambda: threads.deferToThread(trim_malloc))

    def drain() -> object:
        log.info("draining", extra={"fields": {"pid": os.getpid()}})
        for loop in (jobs, trim):
            if loop.running:
                loop.stop()
        d = port.stopListening()
        d.addCallback(lambda _: site.drain(settings.server.shutdown_grace_seconds))
        return d

    reactor.addSystemEventTrigger("before", "shutdown", drain)  # type: ignore[attr-defined]
    services.audit.append("system", "server.start", f"pid {os.getpid()}",
                          host=settings.server.host, port=settings.server.port)
    log.info("listening", extra={"fields": {"host": settings.server.host, "port": settings.server.port,
                                            "pid": os.getpid(), "tls": tls is not None,
                                            "data_dir": str(settings.data_dir)}})
    jobs.start(settings.jobs.poll_seconds, now=True)
    trim.start(MALLOC_TRIM_SECONDS, now=False)
    reactor.run()  # type: ignore[attr-defined]
    services.audit.append("system", "server.stop", f"pid {os.getpid()}")
    services.close()
    log.info("stopped", extra={"fields": {"pid": os.getpid()}})


def metrics_dir(settings: Settings) -> None:
    """A fresh directory for the workers' shared Prometheus values; before anything imports
    prometheus_client (it chooses where values live when a metric is created)."""
    path = settings.path("run/metrics")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def serve(settings: Settings, host: str | None, port: int | None, workers: int | None, tls: bool = False,
          tls_cert: Path | None = None, tls_key: Path | None = None) -> None:
    """``tls``: HTTPS with the internal CA's certificate; ``tls_cert`` and ``tls_key``: with the operator's."""
    if (tls_cert is None) != (tls_key is None) or tls and tls_cert is not None:
        raise ConfigError("serve: give --tls-cert and --tls-key together, or --tls (the internal CA's certificate)")
    server = settings.server
    settings = replace(settings, server=replace(
        server, host=host or server.host, port=port or server.port, workers=workers or server.workers))
    files = in_child(_tls_files, settings, tls_cert, tls_key) if tls or tls_cert is not None else None
    sock = listen_socket(settings.server.host, settings.server.port)
    if settings.server.workers == 1:
        run_worker(settings, sock, files)
        return
    _supervise(settings, sock, files)


def _tls_files(settings: Settings, cert: Path | None, key: Path | None) -> TlsFiles:
    """The TLS key and certificate: the operator's (``cert``, ``key``), else issued by the internal CA, before any
    worker starts."""
    from server.app import build_services
    from server.tls import ensure_tls_files, own_tls_files, write_client_cas

    own = own_tls_files(cert, key) if cert is not None and key is not None else None
    services = build_services(settings)
    try:
        files = own or ensure_tls_files(settings, services.ca)
        return replace(files, client_cas=write_client_cas(settings, services.ca))
    finally:
        services.close()


def _supervise(settings: Settings, sock: socket.socket, tls: TlsFiles | None) -> None:
    """Fork the workers, restart one that dies, pass SIGTERM/SIGINT on and wait for all. The listening
    socket stays open here: connections queued while a worker restarts wait for it or the others."""
    from server.balance import ConnectionTable

    children: dict[int, int] = {}
    table = ConnectionTable(settings.server.workers)
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                run_worker(settings, sock, tls, (table, slot))
            finally:
                os._exit(0)
        children[pid] = slot

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(settings.server.workers):
        spawn(slot)
    log.info("supervising", extra={"fields": {"workers": settings.server.workers, "pid": os.getpid()}})
    from prometheus_client import multiprocess

    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        slot = children.pop(pid, None)
        multiprocess.mark_process_dead(pid)
        if slot is not None:
            table.absent(slot)
        if slot is not None and not stopping:
            log.error("worker died; restarting", extra={"fields": {"pid": pid, "status": status}})
            time.sleep(1)
            spawn(slot)
    sys.exit(0)
