"""One fuzz input through one target: a clean refusal (SiegelError) passes, any other exception is a crash,
and an input still running after the target's bound is a hang (a watchdog on SIGALRM)."""

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


@contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` when the block runs longer than ``seconds`` (wall clock); a timer that was
    set before (pytest-timeout's) runs on afterwards with what was left of it."""
    def alarm(signum: int, frame: FrameType | None) -> None:
        raise _Alarm

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, alarm)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Alarm:
        raise Hang(f"one input ran longer than {seconds:g} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
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
