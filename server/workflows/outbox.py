"""The outbound mail queue of workflows: a mail is a row written in the transaction of the change it tells of,
and the job ``workflow-mail`` hands queued rows to SMTP (``adapters/mail``).

States: ``queued`` → ``sending`` (claimed with a lease by one conditional UPDATE, so one node sends it) →
``sent``. A failed hand-over puts the row back to ``queued`` with a doubling wait (at most
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
from datetime import datetime, timedelta, timezone
from email.utils import make_msgid
from typing import Callable

from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.orm import Session

from server.db.models import OutboundMail
from server.errors import SiegelError
from server.identity.mail import MailSender

log = logging.getLogger("siegel.workflows.mail")
LEASE = timedelta(minutes=5)  # longer than one SMTP hand-over (mail.timeout_seconds) can take
FIRST_RETRY_SECONDS = 5.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


class MailOutbox:
    def __init__(self, engine: Engine, mailer: MailSender, sender: str, retry_max_seconds: float,
                 clock: Callable[[], datetime] = _now) -> None:
        self._engine = engine
        self._mailer = mailer
        self._domain = sender.rpartition("@")[2] or None
        self._retry_max = retry_max_seconds
        self._clock = clock

    def enqueue_in(self, session: Session, to: str, subject: str, body: str, workflow_id: int | None = None) -> str:
        """Queue a message in the caller's transaction (it goes out only if that commits); its Message-ID."""
        now = self._clock()
        message_id = make_msgid(idstring="siegel-wf", domain=self._domain)
        session.add(OutboundMail(message_id=message_id, recipient=to, subject=subject[:500], body=body,
                                 state="queued", attempts=0, next_attempt=now, workflow_id=workflow_id,
                                 created_at=now))
        return message_id

    def _due(self, now: datetime) -> object:
        return or_(and_(OutboundMail.state == "queued", OutboundMail.next_attempt <= now),
                   and_(OutboundMail.state == "sending", OutboundMail.lease_until < now))

    def deliver(self, limit: int = 200) -> int:
        """The job: send due messages (oldest first) until the queue is empty or the relay fails; the number sent."""
        sent = 0
        with self._engine.connect() as conn:
            ids = conn.execute(select(OutboundMail.id).where(self._due(self._clock()))
                               .order_by(OutboundMail.id).limit(limit)).scalars().all()
        for mail_id in ids:
            now = self._clock()
            with self._engine.begin() as conn:
                claimed = conn.execute(update(OutboundMail).where(OutboundMail.id == mail_id, self._due(now))
                                       .values(state="sending", lease_until=now + LEASE,
                                               attempts=OutboundMail.attempts + 1)
                                       .returning(OutboundMail.recipient, OutboundMail.subject, OutboundMail.body,
                                                  OutboundMail.message_id, OutboundMail.attempts)).first()
            if claimed is None:
                continue  # another node has it
            try:
                self._mailer.send(claimed.recipient, claimed.subject, claimed.body, message_id=claimed.message_id)
            except SiegelError as exc:
                wait = min(self._retry_max, FIRST_RETRY_SECONDS * 2 ** (claimed.attempts - 1))
                with self._engine.begin() as conn:
                    conn.execute(update(OutboundMail).where(OutboundMail.id == mail_id,
                                                            OutboundMail.state == "sending")
                                 .values(state="queued", lease_until=None, last_error=exc.message[:2000],
                                         next_attempt=self._clock() + timedelta(seconds=wait)))
                log.warning("mail %s not sent (attempt %d, next in %.0f s): %s", claimed.message_id,
                            claimed.attempts, wait, exc.message)
                break
            with self._engine.begin() as conn:
                conn.execute(update(OutboundMail).where(OutboundMail.id == mail_id, OutboundMail.state == "sending")
                             .values(state="sent", sent_at=self._clock(), lease_until=None, last_error=None))
            sent += 1
        return sent

    def pending(self) -> int:
        """Messages not sent yet."""
        with self._engine.connect() as conn:
            return len(conn.execute(select(OutboundMail.id).where(OutboundMail.state != "sent")).all())
