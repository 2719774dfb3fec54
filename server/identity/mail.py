"""What the identity domain needs to send e-mail; ``adapters/mail`` implements it (SMTP)."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol


class MailSender(Protocol):
    def send(self, to: str, subject: str, body: str, message_id: str | None = None) -> None:
        """Deliver a plain-text message to ``to`` (with this Message-ID, else a new one); raise SiegelError when
        it cannot be handed over."""
        ...

    def deliver(self, message: EmailMessage) -> None:
        """Deliver a composed message (its From, To and Message-ID as set); SiegelError when it cannot be handed
        over."""
        ...
