"""The hardened XML parser refuses XXE, entity bombs, external DTDs and deep nesting, fast and without I/O.

Each hostile document must be refused within 1 s: that is the security property (a parser that
expands or fetches first and refuses later has already lost), not a speed goal.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from lxml import etree

from server.errors import Code, SiegelError
from server.xmlsafe import parse_xml

pytestmark = pytest.mark.unit

MARKER = "SIEGEL-SECRET-MARKER-7f3a"
XINCLUDE = "http://www.w3.org/2001/XInclude"


def refused(data: bytes, max_depth: int = 64) -> SiegelError:
    """Parse ``data``, expecting a refusal within 1 s; returns the error."""
    started = time.monotonic()
    with pytest.raises(SiegelError) as caught:
        parse_xml(data, max_depth=max_depth)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"refusal took {elapsed:.3f} s"
    assert MARKER not in str(caught.value) and MARKER not in repr(caught.value)
    return caught.value


class Listener:
    """A local TCP listener that counts the connections it is offered."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/xml-dtd\r\n\r\n"
                         + f'<!ENTITY leak "{MARKER}">'.encode())
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.close()


class WatchedFile:
    """A named pipe holding MARKER: any attempt to open it for reading is noticed, never missed.

    A reader opening a FIFO blocks until a writer comes; the watcher polls as a non-blocking writer
    (which fails with ENXIO while nobody reads), so a parser that tried to read would be recorded
    and then fed the marker rather than left hanging.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.opened = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                assert exc.errno == errno.ENXIO
                time.sleep(0.002)
                continue
            self.opened = True
            os.write(fd, MARKER.encode())
            os.close(fd)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def secret(tmp_path: Path) -> Iterator[WatchedFile]:
    watched = WatchedFile(tmp_path / "secret.txt")
    try:
        yield watched
    finally:
        watched.close()


def test_xxe_file_entity_is_refused_without_reading_the_file(secret: WatchedFile) -> None:
    doc = (f'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "{secret.path.as_uri()}">]>\n'
           "<r>&x;</r>").encode()
    error = refused(doc)
    assert error.code is Code.HOSTILE_XML
    assert "DOCTYPE" in error.message and "entit" in error.message
    time.sleep(0.1)
    assert not secret.opened


def test_parameter_entity_with_file_is_refused_without_reading_it(secret: WatchedFile) -> None:
    doc = f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{secret.path.as_uri()}"> %p;]><r>&leak;</r>'.encode()
    assert refused(doc).code is Code.HOSTILE_XML
    time.sleep(0.1)
    assert not secret.opened


def test_billion_laughs_is_refused() -> None:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
    doc = f'<?xml version="1.0"?><!DOCTYPE lolz [{"".join(entities)}]><lolz>&lol9;</lolz>'.encode()
    error = refused(doc)
    assert error.code is Code.HOSTILE_XML and "DOCTYPE" in error.message


def test_quadratic_blowup_is_refused() -> None:
    doc = (f'<!DOCTYPE r [<!ENTITY big "{"x" * 200_000}">]><r>' + "&big;" * 200_000 + "</r>").encode()
    error = refused(doc)
    assert error.code is Code.HOSTILE_XML and "DOCTYPE" in error.message


def test_huge_internal_subset_is_refused_before_it_is_read() -> None:
    subset = "".join(f'<!ENTITY e{i} "{"y" * 100}">' for i in range(400_000))
    doc = f"<!DOCTYPE r [{subset}]><r/>".encode()
    assert len(doc) > 40_000_000
    assert refused(doc).code is Code.HOSTILE_XML


def test_external_dtd_is_refused_without_a_connection(listener: Listener) -> None:
    doc = f'<!DOCTYPE r SYSTEM "http://127.0.0.1:{listener.port}/evil.dtd"><r>&leak;</r>'.encode()
    error = refused(doc)
    assert error.code is Code.HOSTILE_XML
    assert "DOCTYPE" in error.message and f"127.0.0.1:{listener.port}" in error.message
    time.sleep(0.2)
    assert listener.connections == 0


def test_external_parameter_entity_is_refused_without_a_connection(listener: Listener) -> None:
    doc = (f'<!DOCTYPE r [<!ENTITY % remote SYSTEM "http://127.0.0.1:{listener.port}/p.dtd"> %remote;]>'
           "<r>&leak;</r>").encode()
    assert refused(doc).code is Code.HOSTILE_XML
    time.sleep(0.2)
    assert listener.connections == 0


def test_listener_counts_connections(listener: Listener) -> None:
    """The no-connection assertions above can fail: a real fetch is counted."""
    socket.create_connection(("127.0.0.1", listener.port)).close()
    deadline = time.monotonic() + 2
    while listener.connections == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert listener.connections == 1


def test_watched_file_notices_a_read(secret: WatchedFile) -> None:
    """The never-opened assertions can fail: a real read is noticed (and gets the marker)."""
    assert MARKER in secret.path.read_text()
    assert secret.opened


@pytest.mark.parametrize("doctype", [
    b"<!DOCTYPE r>",
    b'<!DOCTYPE r SYSTEM "r.dtd">',
    b'<!DOCTYPE r PUBLIC "-//Siegel//DTD R//EN" "http://127.0.0.1:9/r.dtd">',
    b'<!DOCTYPE r [<!ELEMENT r EMPTY>]>',
    b'<!DOCTYPE r [<!ATTLIST r id ID #IMPLIED>]>',
])
def test_every_doctype_is_refused(doctype: bytes) -> None:
    error = refused(b'<?xml version="1.0"?>\n<!-- prolog -->' + doctype + b"<r/>")
    assert error.code is Code.HOSTILE_XML and "DOCTYPE" in error.message


def test_doctype_in_utf16_is_refused() -> None:
    doc = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY a "b">]><r>&a;</r>'.encode("utf-16")
    assert refused(doc).code is Code.HOSTILE_XML


def test_xinclude_is_left_unprocessed(secret: WatchedFile) -> None:
    doc = (f'<r xmlns:xi="{XINCLUDE}"><xi:include href="{secret.path.as_uri()}" parse="text"/>'
           f'<xi:include href="/etc/hostname" parse="text"/></r>').encode()
    root = parse_xml(doc, max_depth=8)
    includes = root.findall(f"{{{XINCLUDE}}}include")
    assert [el.get("href") for el in includes] == [secret.path.as_uri(), "/etc/hostname"]
    assert MARKER not in etree.tostring(root).decode()
    time.sleep(0.1)
    assert not secret.opened


def test_depth_limit_is_exact() -> None:
    def nested(depth: int) -> bytes:
        return b"<a>" * depth + b"</a>" * depth

    assert parse_xml(nested(20), max_depth=20).tag == "a"
    error = refused(nested(21), max_depth=20)
    assert error.code is Code.HOSTILE_XML and "depth" in error.message


def test_very_deep_document_is_refused() -> None:
    error = refused(b"<a>" * 1_000_000 + b"</a>" * 1_000_000, max_depth=256)
    assert error.code is Code.HOSTILE_XML and "depth" in error.message


def test_depth_is_checked_while_parsing_not_after() -> None:
    """A document too deep at its start is refused long before the parser could have read it all."""
    tail = b"<x>payload</x>" * 2_000_000
    deep = b"<r>" + b"<a>" * 30 + b"</a>" * 30 + tail + b"</r>"
    shallow = b"<r>" + b"<a>" * 10 + b"</a>" * 10 + tail + b"</r>"
    started = time.monotonic()
    parse_xml(shallow, max_depth=20)
    full = time.monotonic() - started
    started = time.monotonic()
    error = refused(deep, max_depth=20)
    early = time.monotonic() - started
    assert error.code is Code.HOSTILE_XML
    assert early < full / 10, f"refusal took {early:.3f} s, a whole parse {full:.3f} s"


@pytest.mark.parametrize(("doc", "line"), [
    (b"<r>\n<a></b></r>", 2),
    (b"<r>\n\n&undeclared;</r>", 3),
    (b"<r><a></r>", 1),
    (b"", 0),
])
def test_malformed_xml_names_line_and_column(doc: bytes, line: int) -> None:
    error = refused(doc)
    assert error.code is Code.MALFORMED_XML
    assert f"line {line}, column " in error.message


def test_comments_and_processing_instructions_are_kept() -> None:
    root = parse_xml(b'<?xml version="1.0"?><r><!-- note --><?siegel keep?><a>&amp;&#x41;</a></r>', max_depth=4)
    assert isinstance(root[0], etree._Comment) and root[0].text == " note "
    assert isinstance(root[1], etree._ProcessingInstruction) and root[1].target == "siegel"
    assert root[2].text == "&A"
