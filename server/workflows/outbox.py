"""The outbound mail queue of workflows: a mail is a row written in the transaction of the change it tells of,
and the job ``workflow-mail`` hands queued rows to SMTP (``adapters/mail``).

States (``server.workflows.leased``): ``queued`` → ``sending`` (leased by one conditional UPDATE, so one node
sends it) → ``sent``. A failed hand-over puts the row back to ``queued`` with a doubling wait (at most
``workflows.mail_retry_max_seconds``); the first failure of a run ends the run, as the relay is down for the
rows after it too. Nothing is dropped.

Delivery is **at least once**: a crash after the relay accepted a message (250) and before ``sent`` committed
leaves the row ``sending``; once its lease ran out it is sent again, with the same Message-ID, which the
receiving side can recognise as the same message. At-most-once would lose mail in the same window, and a lost
invitation stalls a workflow, so the duplicate is the lesser harm. An outage of the relay alone never causes
a duplicate: a refused connection or command means the message was not accepted.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Callable

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from server.db.models import OutboundMail
from server.errors import SiegelError
from server.identity.mail import MailSender
from server.workflows.leased import LeasedRows

log = logging.getLogger("siegel.workflows.mail")
Composer = Callable[[int | None, str, str, str, str], EmailMessage]
"""(workflow id, to, subject, text, Message-ID) → the message to send (server.branding.mail.BrandedMail.compose)."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


class MailOutbox:
    def __init__(self, engine: Engine, mailer: MailSender, sender: str, retry_max_seconds: float,
                 clock: Callable[[], datetime] = _now, compose: Composer | None = None) -> None:
        self._mailer = mailer
        self._compose = compose or self._plain  # the default: plain text from the configured sender
        self._sender = sender
        self._domain = sender.rpartition("@")[2] or None
        self._clock = clock
        self._rows = LeasedRows(engine, OutboundMail, "sending", "sent", "sent_at", retry_max_seconds, clock)

    def enqueue_in(self, session: Session, to: str, subject: str, body: str, workflow_id: int | None = None) -> str:
        """Queue a message in the caller's transaction (it goes out only if that commits); its Message-ID."""
        now = self._clock()
        message_id = make_msgid(idstring="siegel-wf", domain=self._domain)
        session.add(OutboundMail(message_id=message_id, recipient=to, subject=subject[:500], body=body,
                                 state="queued", attempts=0, next_attempt=now, workflow_id=workflow_id,
                                 created_at=now))
        return message_id

    def deliver(self, limit: int = 200) -> int:
        """The job: send due messages (oldest first) until the queue is empty or the relay fails; the number sent."""
        sent = 0
        for mail_id in self._rows.due(limit):
            claimed = self._rows.claim(mail_id, OutboundMail.recipient, OutboundMail.subject, OutboundMail.body,
                                       OutboundMail.message_id, OutboundMail.workflow_id)
            if claimed is None:
                continue  # another node has it
            try:
                self._mailer.deliver(self._compose(claimed.workflow_id, claimed.recipient, claimed.subject,
                                                   claimed.body, claimed.message_id))
            except SiegelError as exc:
                wait = self._rows.failed(mail_id, claimed.attempts, exc.message)
                log.warning("mail %s not sent (attempt %d, next in %.0f s): %s", claimed.message_id,
                            claimed.attempts, wait, exc.message)
                break
            self._rows.finished(mail_id)
            sent += 1
        return sent

    def _plain(self, workflow_id: int | None, to: str, subject: str, body: str, message_id: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self._sender, to, subject
        msg["Date"], msg["Message-ID"] = formatdate(localtime=False, usegmt=True), message_id
        msg.set_content(body)
        return msg

    def send_document(self, workflow_id: int, to: str, subject: str, body: str, key: str, name: str,
                      pdf: bytes) -> None:
        """A message like the queued ones with the PDF ``name`` attached, handed to the relay now (not queued: the
        caller, the job ``workflow-delivery``, retries it); SiegelError when it is not accepted. Its Message-ID is
        made of ``key``, so every attempt of one delivery carries the same."""
        msg = self._compose(workflow_id, to, subject, body, f"<{key}@{self._domain or 'siegel.invalid'}>")
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=name)
        self._mailer.deliver(msg)
