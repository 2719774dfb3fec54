"""Delivery of completed workflows' documents, per template: a folder (atomic write, no partial files), HTTP
callbacks (JSON with the PDF, HMAC-signed, ``adapters/delivery/callback.py``), a mail with the signed PDF attached
(the same Message-ID on every attempt), a mail with the document's link (through the mail outbox) and the
archive (``ArchiveService.submit`` as the starter; the archive object id is kept on the workflow).

A delivery row is written in the transaction that completes the workflow, so none is lost; the job
``workflow-delivery`` works them like the mail outbox (``server.workflows.leased``): leased by one conditional
UPDATE, retried with a doubling wait (at most ``workflows.mail_retry_max_seconds``) while the target fails, at
least once. A
folder write is idempotent (the same file replaced atomically); a callback carries the same X-Siegel-Delivery id
on each attempt; an archive delivery is idempotent: the archive object carries the delivery's key in its metadata
(``siegelDelivery``), and an attempt after an earlier one (which may have died between the archive's commit and
ours) takes the starter's object with that key instead of making a second. The link mail is queued in the outbox
in the completing transaction itself (its row is delivered at once: the outbox sends it).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from server.db.models import ArchiveObject, ArchiveVersion, User, Workflow, WorkflowDelivery
from server.errors import Code, SiegelError
from server.identity.policy import Action, allowed
from server.identity.users import Principal, Role
from server.workflows.documents import WorkflowDocuments, atomic_write
from server.workflows.leased import LeasedRows
from server.workflows.outbox import MailOutbox
from server.workflows.template import Definition, DeliveryKind, resolve

if TYPE_CHECKING:
    from server.archive.service import ArchiveService

log = logging.getLogger("siegel.workflows.delivery")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class Poster(Protocol):
    def __call__(self, url: str, body: bytes, key: bytes, delivery_id: str, timeout: float) -> None: ...


def file_name(workflow: Workflow) -> str:
    """``<id>-<document name>`` with only safe characters, ending in .pdf."""
    stem = _UNSAFE.sub("_", workflow.document_name).strip("._") or "document"
    return f"{workflow.id}-{stem if stem.lower().endswith('.pdf') else stem + '.pdf'}"


class DeliveryQueue:
    def __init__(self, engine: Engine, documents: WorkflowDocuments, root: Path, key: Callable[[], bytes],
                 post: Poster, timeout: float, retry_max_seconds: float, outbox: MailOutbox,
                 archive: Callable[[], ArchiveService], public_base_url: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._documents = documents
        self._root = root
        self._key = key
        self._post = post
        self._timeout = timeout
        self._outbox = outbox
        self._archive = archive  # called when first needed: the archive's trees and store are built then
        self._base = public_base_url.rstrip("/")
        self._clock = clock
        self._rows = LeasedRows(engine, WorkflowDelivery, "delivering", "delivered", "delivered_at",
                                retry_max_seconds, clock)

    @staticmethod
    def check_starter(principal: Principal, definition: Definition, template_name: str) -> None:
        """Refuse a start whose deliveries the starter could not make (archiving is done in its name)."""
        if (any(d.kind is DeliveryKind.ARCHIVE for d in definition.delivery)
                and not allowed(principal, Action.ARCHIVE_SUBMIT)):
            raise SiegelError(Code.FORBIDDEN, f"the workflow template {template_name!r} delivers into the archive, "
                                              f"which the role {principal.role.value} of {principal.name} may not")

    def enqueue_in(self, session: Session, workflow: Workflow, definition: Definition) -> None:
        """The template's deliveries of a workflow that completes in the caller's transaction."""
        now = self._clock()
        variables = json.loads(workflow.variables)
        for delivery in definition.delivery:
            target = resolve(delivery.target, variables) or ""
            row = WorkflowDelivery(workflow_id=workflow.id, kind=delivery.kind.value, target=target,
                                   state="queued", attempts=0, next_attempt=now)
            if delivery.kind is DeliveryKind.EMAIL_LINK:
                self._outbox.enqueue_in(session, target, f"Siegel: {workflow.document_name} is signed",
                                        f"Hello,\n\nthe workflow {workflow.id} for {workflow.document_name} is "
                                        f"completed. The signed document (SHA-256 {workflow.document_sha256}) is at\n"
                                        f"{self._base}/api/v1/workflows/{workflow.id}/document\n"
                                        "for an account that may read the workflow.\n", workflow.id)
                row.state, row.delivered_at = "delivered", now
            session.add(row)

    def deliver(self, limit: int = 100) -> int:
        """The job: every due delivery once; the number delivered."""
        done = 0
        for delivery_id in self._rows.due(limit):
            row = self._rows.claim(delivery_id, WorkflowDelivery.workflow_id, WorkflowDelivery.kind,
                                   WorkflowDelivery.target)
            if row is None:
                continue
            with self._engine.connect() as conn:
                workflow = conn.execute(select(Workflow).where(Workflow.id == row.workflow_id)).one()
            try:
                self._perform(delivery_id, row.attempts, DeliveryKind(row.kind), row.target, workflow)
            except SiegelError as exc:
                wait = self._rows.failed(delivery_id, row.attempts, exc.message)
                log.warning("delivery %d (%s %s) failed, attempt %d, next in %.0f s: %s", delivery_id, row.kind,
                            row.target, row.attempts, wait, exc.message)
                continue
            self._rows.finished(delivery_id)
            done += 1
        return done

    def _perform(self, delivery_id: int, attempt: int, kind: DeliveryKind, target: str, workflow: Workflow) -> None:
        content = self._documents.read(workflow.id, workflow.revision, workflow.document_sha256)
        if kind is DeliveryKind.FOLDER:
            folder = (self._root / target).resolve()
            if not folder.is_relative_to(self._root.resolve()):
                raise SiegelError(Code.CONFIG, f"delivery folder {target!r} is outside workflows.delivery_root")
            atomic_write(folder / file_name(workflow), content)
            return
        if kind is DeliveryKind.ARCHIVE:
            self._archived(delivery_id, attempt, workflow, content)
            return
        if kind is DeliveryKind.EMAIL:
            self._outbox.send_document(workflow.id, target, f"Siegel: {workflow.document_name} (signed)",
                                       f"Hello,\n\nthe workflow {workflow.id} for {workflow.document_name} is "
                                       f"completed; the signed document is attached (SHA-256 "
                                       f"{workflow.document_sha256}).\n",
                                       f"siegel-wf-{workflow.id}-delivery-{delivery_id}", file_name(workflow), content)
            return
        body = json.dumps({"event": "workflow.completed", "workflow": workflow.id, "state": workflow.state,
                           "documentName": workflow.document_name, "documentSha256": workflow.document_sha256,
                           "revision": workflow.revision, "document": base64.b64encode(content).decode()}).encode()
        self._post(target, body, self._key(), f"workflow-{workflow.id}-delivery-{delivery_id}", self._timeout)

    def _archived(self, delivery_id: int, attempt: int, workflow: Workflow, content: bytes) -> None:
        """The signed document as a new archive object of the starter; its id on the workflow (once).

        The object's metadata holds the delivery's key; from the second attempt on, an object of the starter with
        that key (an earlier attempt archived it and died before recording it) is taken instead of a new one."""
        from server.archive.service import ArchiveItem

        if workflow.archive_aoid is not None:
            return  # archived by an earlier attempt whose end was not recorded
        with self._engine.connect() as conn:
            starter = conn.execute(select(User.id, User.name, User.role).where(User.id == workflow.started_by)).one()
        metadata = {"workflow": str(workflow.id), "documentSha256": workflow.document_sha256,
                    "siegelDelivery": f"workflow-{workflow.id}-delivery-{delivery_id}"}
        aoid = self._archived_before(starter.id, metadata) if attempt > 1 else None
        if aoid is None:
            principal = Principal(starter.id, starter.name, Role(starter.role))
            aoid = self._archive().submit(principal, [ArchiveItem(workflow.document_name, "application/pdf", content)],
                                          metadata).aoid
        with self._engine.begin() as conn:
            conn.execute(update(Workflow).where(Workflow.id == workflow.id, Workflow.archive_aoid.is_(None))
                         .values(archive_aoid=aoid))

    def _archived_before(self, owner_id: int, metadata: dict[str, str]) -> str | None:
        """The live archive object of ``owner_id`` whose first version has exactly ``metadata`` (the archive stores
        it as JSON with sorted keys), or None."""
        with self._engine.connect() as conn:
            return conn.execute(
                select(ArchiveObject.aoid).join(ArchiveVersion, ArchiveVersion.aoid == ArchiveObject.aoid)
                .where(ArchiveObject.owner_id == owner_id, ArchiveObject.deleted_at.is_(None),
                       ArchiveVersion.version == 1,
                       ArchiveVersion.metadata_json == json.dumps(metadata, sort_keys=True))
                .order_by(ArchiveObject.created_at).limit(1)).scalar_one_or_none()

    def states(self, workflow_id: int) -> list[dict[str, object]]:
        """The deliveries of a workflow (for its status)."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(WorkflowDelivery).where(WorkflowDelivery.workflow_id == workflow_id)
                                .order_by(WorkflowDelivery.id)).all()
        return [{"kind": r.kind, "target": r.target, "state": r.state, "attempts": r.attempts,
                 "lastError": r.last_error, "delivered": r.delivered_at.isoformat() if r.delivered_at else None}
                for r in rows]
