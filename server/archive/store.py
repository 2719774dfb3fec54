"""The content-addressed document store: files named by their SHA-256 under ``<store>/sha256/ab/<hex>``.

Writes are atomic and durable (a temporary file in the store, fsync, rename, fsync of the directory) and
streamed (a big input is never held whole). The database is the only index of what is referenced; the
store never knows why a file is there. The two orders that keep "the database never points at a missing
file" true:

- adding: :meth:`DocumentStore.put` first, then commit the row that references the digest, within
  ``grace`` seconds (put touches an existing file, so a concurrent removal keeps it);
- removing: commit the row's removal first, then :meth:`DocumentStore.discard` (or the sweeper) unlinks the
  file if no row references it and nobody put it within ``grace`` seconds: the file is first renamed away,
  so a put arriving meanwhile writes a fresh copy instead of touching one that is about to go.

A file nobody references (a put whose row never committed) is harmless and removed by :meth:`sweep`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from server.errors import Code, SiegelError

CHUNK = 1 << 20
_HEX = re.compile(r"[0-9a-f]{64}")
Referenced = Callable[[set[str]], set[str]]
"""Given digests, the subset the database still references."""


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DocumentStore:
    def __init__(self, root: Path, grace: float = 3600.0) -> None:
        """``root``: the store directory (``store.path``); ``grace``: how long a put protects its file
        from removal (a put is followed by its row's commit well within it)."""
        self._objects = root / "sha256"
        self.grace = grace

    def path(self, digest: str) -> Path:
        if not _HEX.fullmatch(digest):
            raise SiegelError(Code.BAD_REQUEST, f"{digest!r} is not a SHA-256 in hex")
        return self._objects / digest[:2] / digest

    def put(self, data: bytes | BinaryIO) -> str:
        """Store ``data`` (bytes or a binary stream, read in chunks) durably; its SHA-256 in hex."""
        self._objects.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = self._objects / f".tmp-{secrets.token_hex(8)}"
        digest = hashlib.sha256()
        try:
            with open(temp, "wb") as out:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    digest.update(data)
                    out.write(data)
                else:
                    while chunk := data.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            hexdigest = digest.hexdigest()
            target = self.path(hexdigest)
            try:
                os.utime(target)  # there already: keep that file, fresh for the grace period
                temp.unlink()
                return hexdigest
            except FileNotFoundError:
                pass
            made = not target.parent.exists()
            target.parent.mkdir(exist_ok=True, mode=0o700)
            os.replace(temp, target)
            _fsync_directory(target.parent)
            if made:
                _fsync_directory(self._objects)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)  # the caller's request may succeed once space is freed
            raise SiegelError(Code.STORAGE_FULL if full else Code.INTERNAL,
                              f"the document store {self._objects} cannot store a file: {exc.strerror}") from None
        return hexdigest

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def open(self, digest: str) -> BinaryIO:
        """The stored file for reading; SiegelError(INTERNAL) when it is missing (the database said it is there)."""
        try:
            return open(self.path(digest), "rb")
        except OSError as exc:
            raise SiegelError(Code.INTERNAL, f"the stored document {digest} cannot be read: {exc.strerror}") from None

    def read(self, digest: str) -> bytes:
        """The stored content, checked against its name (an altered file is an error, never returned)."""
        with self.open(digest) as fh:
            content = fh.read()
        if hashlib.sha256(content).hexdigest() != digest:
            raise SiegelError(Code.INTERNAL, f"the stored document {digest} does not match its SHA-256 (altered)")
        return content

    def chunks(self, digest: str) -> Iterator[bytes]:
        """The stored content in chunks (for hashing big files without holding them)."""
        with self.open(digest) as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def discard(self, digests: Iterable[str], referenced: Referenced) -> int:
        """Unlink those of ``digests`` that no row references and no put touched within the grace; the count."""
        wanted = set(digests)
        removed = 0
        for digest in wanted - referenced(wanted):
            target = self.path(digest)
            doomed = target.with_name(f".del-{digest}-{secrets.token_hex(4)}")
            try:
                os.rename(target, doomed)
            except FileNotFoundError:
                continue
            if time.time() - doomed.stat().st_mtime < self.grace and not target.exists():
                os.replace(doomed, target)  # put within the grace: its row may be on the way
                continue
            doomed.unlink()
            removed += 1
        return removed

    def digests(self) -> Iterator[str]:
        """Every stored digest."""
        if not self._objects.is_dir():
            return
        for sub in os.scandir(self._objects):
            if sub.is_dir() and len(sub.name) == 2:
                for entry in os.scandir(sub.path):
                    if _HEX.fullmatch(entry.name):
                        yield entry.name

    def sweep(self, referenced: Referenced, batch: int = 1000) -> int:
        """Remove unreferenced files (older than the grace) and stale temporary files; the count removed."""
        removed = 0
        pending: list[str] = []
        for digest in self.digests():
            pending.append(digest)
            if len(pending) >= batch:
                removed += self.discard(pending, referenced)
                pending = []
        removed += self.discard(pending, referenced)
        if self._objects.is_dir():
            now = time.time()
            for leftover in self._objects.glob(".tmp-*"):
                if now - leftover.stat().st_mtime >= self.grace:
                    leftover.unlink(missing_ok=True)
                    removed += 1
            for doomed in self._objects.glob("??/.del-*"):  # a discard interrupted between rename and unlink
                digest = doomed.name[5:69]
                target = self.path(digest)
                if referenced({digest}) or now - doomed.stat().st_mtime < self.grace:
                    if not target.exists():
                        os.replace(doomed, target)
                        continue
                doomed.unlink(missing_ok=True)
                removed += 1
        return removed
