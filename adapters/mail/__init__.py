"""Outgoing e-mail."""

from adapters.mail.smtp import SmtpMailSender

__all__ = ["SmtpMailSender"]
