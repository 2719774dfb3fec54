"""``server.balance``: workers sharing one listening socket take connections by their open-connection count.

Real sockets on loopback, Twisted's clock and a set of readers in place of the event loop: each ``doRead`` is
what a worker's reactor does when the shared socket becomes readable. (Not twisted.internet.testing's memory
reactor: importing that module declares zope interfaces on collections.abc, after which xmlschema cannot load
a schema in the same process, AttributeError ``__provides__``.)
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from server.balance import HOLD_SECONDS, BalancedPort, ConnectionTable
from server.errors import Code, SiegelError
from server.serve import listen_socket


class _Reactor(Clock):
    """What a port and its connections ask of the reactor: readers, writers, timed calls."""

    def __init__(self) -> None:
        super().__init__()
        self.readers: set[object] = set()

    def addReader(self, reader: object) -> None:
        self.readers.add(reader)

    def removeReader(self, reader: object) -> None:
        self.readers.discard(reader)

    def addWriter(self, writer: object) -> None:
        return None

    def removeWriter(self, writer: object) -> None:
        return None

    def getReaders(self) -> list[object]:
        return list(self.readers)


class _Worker:
    def __init__(self, sock: socket.socket, table: ConnectionTable, slot: int) -> None:
        self.reactor = _Reactor()
        self.protocols: list[Protocol] = []
        factory = Factory.forProtocol(Protocol)
        factory.buildProtocol = self._build  # type: ignore[method-assign]
        self.port = BalancedPort.adopt(self.reactor, sock, factory, table, slot)

    def _build(self, _addr: object) -> Protocol:
        protocol = Protocol()
        self.protocols.append(protocol)
        return protocol

    def wake(self) -> None:
        """The shared socket is readable: what this worker's reactor does (nothing while it holds back)."""
        if self.port in self.reactor.getReaders():
            self.port.doRead()


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = listen_socket("127.0.0.1", 0)
    sock.listen(8)  # what the first ready worker does
    yield sock
    sock.close()


@pytest.fixture
def connect(listening: socket.socket) -> Iterator[Callable[[], None]]:
    """A client connecting to the shared socket (the handshake is the kernel's: it waits to be accepted)."""
    clients: list[socket.socket] = []
    yield lambda: clients.append(socket.create_connection(listening.getsockname()[:2], timeout=5))
    for client in clients:
        client.close()


def test_a_worker_with_more_connections_leaves_the_next_one_to_the_other(
        listening: socket.socket, connect: Callable[[], None]) -> None:
    table = ConnectionTable(2)
    a = _Worker(listening, table, 0)
    connect()
    a.wake()  # the other slot has no worker yet: it is never waited for
    assert len(a.protocols) == 1
    b = _Worker(listening, table, 1)
    connect()
    a.wake()  # a holds one, b none: a holds back
    assert len(a.protocols) == 1 and a.port not in a.reactor.getReaders()
    b.wake()
    assert len(b.protocols) == 1
    a.reactor.advance(HOLD_SECONDS)  # a's hold ends (a connection still waiting then would be a's)
    a.reactor.advance(2 * HOLD_SECONDS)
    connect()
    a.wake()  # one each: whoever wakes first takes it
    assert len(a.protocols) == 2
    connect()
    a.wake()
    b.wake()
    connect()
    b.wake()  # two each again: b takes this one too
    assert (len(a.protocols), len(b.protocols)) == (2, 3)


def test_a_held_back_worker_takes_the_connection_nobody_took(
        listening: socket.socket, connect: Callable[[], None]) -> None:
    table = ConnectionTable(2)
    a, b = _Worker(listening, table, 0), _Worker(listening, table, 1)
    connect()
    a.wake()
    connect()
    a.wake()  # held back for b, which is busy and never wakes
    assert len(a.protocols) == 1
    a.reactor.advance(HOLD_SECONDS)
    a.wake()
    assert (len(a.protocols), len(b.protocols)) == (2, 0)


def test_closed_connections_and_dead_workers_leave_the_count(
        listening: socket.socket, connect: Callable[[], None]) -> None:
    table = ConnectionTable(2)
    a, b = _Worker(listening, table, 0), _Worker(listening, table, 1)
    connect()
    a.wake()
    assert not table.least_loaded(0) and table.least_loaded(1)
    a.protocols[0].transport.connectionLost(Failure(ConnectionError("closed")))
    assert table.least_loaded(0) and table.least_loaded(1)
    connect()
    b.wake()
    table.absent(1)  # the supervisor saw b's worker die
    assert table.least_loaded(0)


def test_a_taken_port_is_refused_clearly(listening: socket.socket) -> None:
    host, port = listening.getsockname()[:2]
    with pytest.raises(SiegelError) as refused:
        listen_socket(host, port)
    assert refused.value.code is Code.CONFIG
    assert f"another server is listening on {host}:{port}" in refused.value.message
