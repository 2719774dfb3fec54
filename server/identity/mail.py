"""What the identity domain needs to send e-mail; ``adapters/mail`` implements it (SMTP)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class MailBrand:
    """Whose mail an account holder gets: the company its text names, the base URL of its links, and how the
    message is made (None: plain text from the configured sender)."""

    company: str
    base_url: str
    compose: Callable[[str, str, str], EmailMessage] | None = None  # (to, subject, text) → the message

    def send(self, mailer: MailSender, to: str, subject: str, text: str) -> None:
        if self.compose is None:
            mailer.send(to, subject, text)
        else:
            mailer.deliver(self.compose(to, subject, text))


MailBrands = Callable[[str | None, str | None], MailBrand]
"""(API client key, request host) → the brand of a mail to an account holder
(server.branding.mail.BrandedMail.for_request)."""
