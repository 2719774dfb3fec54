"""What the identity domain needs to send e-mail; ``adapters/mail`` implements it (SMTP)."""

from __future__ import annotations

from typing import Protocol


class MailSender(Protocol):
    def send(self, to: str, subject: str, body: str) -> None:
        """Deliver a plain-text message to ``to``; raise SiegelError when it cannot be handed over."""
        ...
