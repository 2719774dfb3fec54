"""A workflow's document files under ``<store>/workflows/<id>/<revision>.pdf``: revision 0 is the upload, each
signature writes the next. Writes are atomic (temporary file, fsync, rename, directory fsync), so a reader
sees a whole revision or none; a revision is referenced from the database only after its file is durable."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from server.errors import Code, SiegelError


def atomic_write(target: Path, content: bytes) -> None:
    """``content`` at ``target`` whole or not at all: a temporary file beside it, fsync, rename, directory fsync."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    try:
        with open(temp, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise SiegelError(Code.INTERNAL, f"{target.name} cannot be written to {target.parent}: {exc.strerror}") from None


class WorkflowDocuments:
    def __init__(self, store: Path) -> None:
        self._root = store / "workflows"

    def path(self, workflow_id: int, revision: int) -> Path:
        return self._root / str(workflow_id) / f"{revision}.pdf"

    def write(self, workflow_id: int, revision: int, content: bytes) -> str:
        """Store a revision durably; its SHA-256 (hex)."""
        atomic_write(self.path(workflow_id, revision), content)
        return hashlib.sha256(content).hexdigest()

    def read(self, workflow_id: int, revision: int, sha256: str) -> bytes:
        """A stored revision, checked against the digest the database recorded for it."""
        try:
            content = self.path(workflow_id, revision).read_bytes()
        except OSError as exc:
            raise SiegelError(Code.INTERNAL, f"workflow {workflow_id}: revision {revision} of its document cannot "
                                             f"be read: {exc.strerror}") from None
        if hashlib.sha256(content).hexdigest() != sha256:
            raise SiegelError(Code.INTERNAL, f"workflow {workflow_id}: revision {revision} of its document does not "
                                             "match its recorded SHA-256 (altered in the store)")
        return content
