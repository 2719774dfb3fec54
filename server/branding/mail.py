"""Branded e-mail: a message's text (as the workflows write it) in the brand's templates ``mail/message.txt``
(the plain-text part) and ``mail/message.html`` (the HTML part, the logo attached inline as ``cid:``), sent
from the brand's sender name and address: the workflow mails in the workflow's brand (:meth:`BrandedMail.compose`),
password-reset and one-time-code mails in the brand of the request (:meth:`BrandedMail.for_request`)."""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from jinja2 import Environment
from markupsafe import Markup, escape

from server.branding.service import BrandInfo, BrandService
from server.identity.mail import MailBrand

_LINK = re.compile(r"https?://[^\s<>\"']+")
LOGO_CID = "brand-logo"


def linked(text: str) -> Markup:
    """Plain text as HTML paragraphs, each URL an anchor (everything escaped)."""
    def paragraph(block: str) -> str:
        out, last = [], 0
        for match in _LINK.finditer(block):
            out.append(str(escape(block[last:match.start()])))
            url = escape(match.group(0))
            out.append(f'<a href="{url}">{url}</a>')
            last = match.end()
        out.append(str(escape(block[last:])))
        return "<p>" + "".join(out).replace("\n", "<br>\n") + "</p>"

    return Markup("\n".join(paragraph(b) for b in re.split(r"\n\s*\n", text.strip()) if b.strip()))


class BrandedMail:
    """Composes the messages of one installation's brands (:meth:`compose` is MailOutbox's composer)."""

    def __init__(self, brands: BrandService, env: Environment) -> None:
        self._brands = brands
        self._env = env

    def compose(self, workflow_id: int | None, to: str, subject: str, body: str, message_id: str) -> EmailMessage:
        brand = self._brands.for_workflow(workflow_id) if workflow_id is not None else self._brands.default()
        return self.message(brand, to, subject, body, message_id)

    def for_request(self, client: str | None, host: str | None) -> MailBrand:
        """The brand of a mail to an account holder (password reset, one-time code): of the API client the
        request authenticated with, else of the host it came to, else the default."""
        brand = self._brands.for_request(client, host)
        return MailBrand(brand.company_name, brand.public_base_url,
                         lambda to, subject, text: self.message(brand, to, subject, text))

    def message(self, brand: BrandInfo, to: str, subject: str, body: str, message_id: str | None = None) -> EmailMessage:
        logo = self._brands.logo_png(brand)
        values = {"brand": brand, "body": body, "subject": subject, "logo_cid": LOGO_CID if logo else None}
        msg = EmailMessage()
        local, _, domain = brand.mail_from_address.rpartition("@")
        msg["From"] = Address(brand.mail_from_name, local, domain)
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = message_id or make_msgid(domain=domain or None)
        msg.set_content(self._env.get_template("message.txt").render(**values))
        msg.add_alternative(self._env.get_template("message.html").render(html_body=linked(body), **values),
                            subtype="html")
        if logo:
            msg.get_payload()[1].add_related(logo, "image", "png", cid=f"<{LOGO_CID}>", filename="logo.png")
        return msg
