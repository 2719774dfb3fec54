"""Outgoing e-mail over SMTP (settings [mail]): one connection per message, STARTTLS on request."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from server.errors import Code, SiegelError


class SmtpMailSender:
    """Implements :class:`server.identity.mail.MailSender` on an SMTP relay."""

    def __init__(self, host: str, port: int, sender: str, starttls: bool, timeout: float = 10.0,
                 ca_file: str | None = None) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.starttls = starttls
        self.timeout = timeout
        self._ca_file = ca_file or None

    def message(self, to: str, subject: str, body: str, message_id: str | None = None) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = message_id or make_msgid(domain=self.sender.rpartition("@")[2] or None)
        msg.set_content(body)
        return msg

    def send(self, to: str, subject: str, body: str, message_id: str | None = None) -> None:
        self.deliver(self.message(to, subject, body, message_id))

    def deliver(self, msg: EmailMessage) -> None:
        to = msg["To"]
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=self._ca_file))
                    smtp.ehlo()
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise SiegelError(Code.INTERNAL, f"mail to {to} could not be handed to {self.host}:{self.port}: "
                                             f"{exc.__class__.__name__}: {exc}") from exc
