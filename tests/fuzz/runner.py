"""One fuzz input through one target: a clean refusal (SiegelError) passes, any other exception is a crash,
and an input still running after the target's bound is a hang (a watchdog on SIGPROF and SIGALRM)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from server.errors import SiegelError
from tests.fuzz.context import FuzzContext
from tests.fuzz.targets import Target


class Hang(Exception):
    """An input ran longer than its target's bound."""


class _Alarm(BaseException):
    """Raised by the watchdog inside the target; a BaseException, so no ``except Exception`` of the code
    under test swallows it."""


WALL_FACTOR = 10
"""The wall-clock bound is this many times the CPU bound: it catches an input that blocks (a lock, a socket)
without burning CPU, while a machine shared with other work does not make a slow input look like a hang."""


@contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` when the block uses more than ``seconds`` of CPU time (the process's, SIGPROF) or
    runs ``WALL_FACTOR`` times as long on the wall clock (SIGALRM); a wall-clock timer that was set before
    (pytest-timeout's) runs on afterwards with what was left of it."""
    fired: list[str] = []

    def alarm(signum: int, frame: FrameType | None) -> None:
        fired.append("CPU" if signum == signal.SIGPROF else "wall-clock")
        raise _Alarm

    started = time.monotonic()
    handlers = {sig: signal.signal(sig, alarm) for sig in (signal.SIGPROF, signal.SIGALRM)}
    signal.setitimer(signal.ITIMER_PROF, seconds)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds * WALL_FACTOR)
    try:
        yield
    except _Alarm:
        limit = seconds if fired[0] == "CPU" else seconds * WALL_FACTOR
        raise Hang(f"one input ran longer than {limit:g} s of {fired[0]} time") from None
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 0.001))


def execute(target: Target, context: FuzzContext, data: bytes, bound: float | None = None) -> SiegelError | None:
    """Run ``data`` through ``target`` under the watchdog (``bound``: the target's when None); the refusal
    (the documented answer to a bad input), or None when the input was taken."""
    with watchdog(bound if bound is not None else target.bound):
        try:
            target.run(context, data)
        except SiegelError as exc:
            return exc
    return None
