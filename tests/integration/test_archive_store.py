"""The content-addressed document store on a real file system: atomic, streamed, idempotent puts; removal only of
unreferenced files that no put touched within the grace; the sweeper's orphans and interrupted removals."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import pytest

from server.archive.store import CHUNK, DocumentStore
from server.errors import Code, SiegelError

pytestmark = pytest.mark.integration


class _Chunks(io.RawIOBase):
    """A stream that yields ``total`` bytes and remembers the largest read asked for (no whole-file read)."""

    def __init__(self, total: int) -> None:
        self.left, self.largest = total, 0
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.largest = max(self.largest, size)
        n = min(self.left, CHUNK if size < 0 else size)
        data = bytes([self.left % 251]) * n
        self.left -= n
        self.digest.update(data)
        return data


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_put_names_files_by_sha256_streams_and_is_idempotent(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path / "store")
    digest = store.put(b"hello archive")
    assert digest == hashlib.sha256(b"hello archive").hexdigest()
    assert store.path(digest) == tmp_path / "store" / "sha256" / digest[:2] / digest
    assert store.read(digest) == b"hello archive" and store.exists(digest)
    assert store.put(b"hello archive") == digest and list(store.digests()) == [digest]
    stream = _Chunks(5 * CHUNK + 17)
    big = store.put(stream)
    assert big == stream.digest.hexdigest() and stream.largest <= CHUNK
    assert sum(len(c) for c in store.chunks(big)) == 5 * CHUNK + 17
    assert not list((tmp_path / "store" / "sha256").glob(".tmp-*"))  # no temporary file left


def test_a_failed_put_leaves_nothing_and_an_altered_file_is_never_returned(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path / "store")

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            raise OSError(5, "Input/output error")

    with pytest.raises(SiegelError):
        store.put(Broken())
    assert not list((tmp_path / "store").rglob("*tmp*")) and not list(store.digests())
    digest = store.put(b"original")
    store.path(digest).write_bytes(b"tampered")
    with pytest.raises(SiegelError) as raised:
        store.read(digest)
    assert raised.value.code is Code.INTERNAL and "altered" in raised.value.message
    with pytest.raises(SiegelError) as raised:
        store.path("../../etc/passwd")
    assert raised.value.code is Code.BAD_REQUEST


def test_discard_removes_only_unreferenced_files_no_put_touched_within_the_grace(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path / "store", grace=60)
    kept, fresh, old = store.put(b"referenced"), store.put(b"just put"), store.put(b"orphan")
    _age(store.path(kept), 3600)
    _age(store.path(old), 3600)
    referenced = lambda digests: digests & {kept}  # noqa: E731
    assert store.discard([kept, fresh, old], referenced) == 1
    assert store.exists(kept) and store.exists(fresh) and not store.exists(old)
    _age(store.path(fresh), 3600)
    store.put(b"just put")  # a put of the same content touches the file: protected again
    assert store.discard([fresh], referenced) == 0 and store.exists(fresh)


def test_sweep_removes_orphans_and_stale_temporary_files_and_restores_an_interrupted_removal(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path / "store", grace=60)
    kept, orphan = store.put(b"kept"), store.put(b"orphan")
    for digest in (kept, orphan):
        _age(store.path(digest), 3600)
    stale = tmp_path / "store" / "sha256" / ".tmp-0123456789abcdef"
    stale.write_bytes(b"half written")
    _age(stale, 3600)
    doomed = store.path(kept).with_name(f".del-{kept}-0000")
    os.rename(store.path(kept), doomed)  # a discard killed between its rename and its re-check
    referenced = lambda digests: digests & {kept}  # noqa: E731
    assert store.sweep(referenced) == 2
    assert store.read(kept) == b"kept" and not store.exists(orphan) and not stale.exists() and not doomed.exists()
