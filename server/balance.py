"""Spreading connections over the workers, which share one listening socket.

Keep-alive clients (an ERP's connection pool, a load test) open a few connections and keep them: whichever
worker accepts one serves all of its requests. The kernel's SO_REUSEPORT hash, or the race for a shared
socket, puts 6 or 7 of 8 such connections on one worker often enough to halve the throughput of a round. So
each worker counts its open connections in a shared table, and a worker that holds more than another leaves
a waiting connection to the less loaded one for a moment (:data:`HOLD_SECONDS`), taking it itself only if
nobody did meanwhile (a worker that is busy or gone does not make connections wait longer).
"""

from __future__ import annotations

import mmap
import socket
from typing import Any

from twisted.internet import tcp

HOLD_SECONDS = 0.05  # only a connection no less loaded worker took waits this long (a loaded machine wakes late)
_SLOT = 8  # one signed 64-bit count per worker
_ABSENT = 1 << 62  # the count of a slot whose worker has not started or has died: never the least loaded


class ConnectionTable:
    """Open connections per worker slot, in anonymous shared memory made before the workers fork."""

    def __init__(self, workers: int) -> None:
        self._memory = mmap.mmap(-1, _SLOT * workers)
        self._counts = memoryview(self._memory).cast("q")
        for slot in range(workers):
            self.absent(slot)

    def reset(self, slot: int) -> None:
        """A (re)started worker in ``slot`` has no connection yet."""
        self._counts[slot] = 0

    def absent(self, slot: int) -> None:
        """No worker runs in ``slot`` (the supervisor saw it die): the others need not leave connections to it."""
        self._counts[slot] = _ABSENT

    def add(self, slot: int, delta: int) -> None:
        """Only the worker of ``slot`` writes it (from its reactor thread), so no lock is needed."""
        self._counts[slot] += delta

    def least_loaded(self, slot: int) -> bool:
        """Whether no other worker holds fewer connections than the one in ``slot``."""
        return self._counts[slot] <= min(self._counts)


class _Counted(tcp.Server):
    """An accepted connection, counted for its worker while it is open."""

    def __init__(self, sock: socket.socket, protocol: Any, client: Any, server: "BalancedPort", sessionno: int,
                 reactor: Any) -> None:
        super().__init__(sock, protocol, client, server, sessionno, reactor)
        server.table.add(server.slot, 1)

    def connectionLost(self, reason: Any) -> None:
        self.server.table.add(self.server.slot, -1)
        super().connectionLost(reason)


class BalancedPort(tcp.Port):
    """Twisted's TCP port on an inherited listening socket, accepting one connection at a time, and only
    when its worker is the least loaded one or after it held back for :data:`HOLD_SECONDS`."""

    transport = _Counted
    table: ConnectionTable
    slot: int
    _resumed = float("-inf")  # when the last hold ended: a connection still waiting then is taken

    @classmethod
    def adopt(cls, reactor: Any, sock: socket.socket, factory: Any, table: ConnectionTable,
              slot: int) -> "BalancedPort":
        port: BalancedPort = cls._fromListeningDescriptor(reactor, sock.fileno(), sock.family, factory)
        port.table, port.slot = table, slot
        table.reset(slot)
        port.startListening()
        return port

    def doRead(self) -> None:
        if not self.table.least_loaded(self.slot) and self.reactor.seconds() - self._resumed > HOLD_SECONDS:
            self.stopReading()
            self.reactor.callLater(HOLD_SECONDS, self._resume)
            return
        self.numberAccepts = 1  # Twisted raises it after a full loop: one per wake-up lets the others race
        super().doRead()

    def _resume(self) -> None:
        self._resumed = self.reactor.seconds()
        if self.connected:  # not stopped listening (drain) meanwhile
            self.startReading()
