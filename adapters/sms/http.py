"""SMS through an HTTP gateway (settings [sms]): one JSON POST per message to the provider's URL.

Providers differ in their JSON, so the body is a template (``sms.body``): a JSON document whose
string values may name ``$to``, ``$text`` and ``$sender``. The template is parsed first and the
placeholders are substituted in its string values, so a message can never change the document's
structure. Credentials: none, HTTP Basic (``sms.username`` and the password in ``sms.secret_file``)
or a bearer token (in ``sms.secret_file``); a 2xx answer means the provider took the message.
"""

from __future__ import annotations

import base64
import json
import ssl
import string
import urllib.error
import urllib.request
from typing import Any

from server.errors import Code, SiegelError

DEFAULT_BODY = '{"to": "$to", "text": "$text", "from": "$sender"}'
AUTH_KINDS = ("none", "basic", "bearer")


def _fill(template: Any, values: dict[str, str]) -> Any:
    if isinstance(template, str):
        return string.Template(template).safe_substitute(values)
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    return template


def parse_body_template(body: str) -> Any:
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise SiegelError(Code.CONFIG, f"sms.body is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise SiegelError(Code.CONFIG, "sms.body: expected a JSON object")
    return parsed


class HttpSmsGateway:
    """Implements :class:`server.identity.twofactor.SmsSender` with an HTTP POST per message."""

    def __init__(self, url: str, body: str = DEFAULT_BODY, sender: str = "Siegel", auth: str = "none",
                 username: str = "", secret: str = "", timeout: float = 10.0, ca_file: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        if not url.startswith(("https://", "http://")):
            raise SiegelError(Code.CONFIG, f"sms.url {url!r}: expected an http(s):// URL")
        if auth not in AUTH_KINDS:
            raise SiegelError(Code.CONFIG, f"sms.auth {auth!r}: expected one of {', '.join(AUTH_KINDS)}")
        self.url = url
        self._template = parse_body_template(body)
        self.sender = sender
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
        if auth == "basic":
            self._headers["Authorization"] = "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()
        elif auth == "bearer":
            self._headers["Authorization"] = f"Bearer {secret}"
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=ca_file or None) if url.startswith("https://") else None

    def body(self, to: str, text: str) -> bytes:
        return json.dumps(_fill(self._template, {"to": to, "text": text, "sender": self.sender})).encode()

    def send(self, to: str, text: str) -> None:
        request = urllib.request.Request(self.url, data=self.body(to, text), headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as answer:
                status = answer.status
                answer.read(64 * 1024)
        except urllib.error.HTTPError as exc:
            raise SiegelError(Code.INTERNAL, f"the SMS gateway {self.url} refused the message: HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise SiegelError(Code.INTERNAL, f"the SMS gateway {self.url} cannot be reached: "
                                             f"{exc.__class__.__name__}: {exc}") from None
        if not 200 <= status < 300:
            raise SiegelError(Code.INTERNAL, f"the SMS gateway {self.url} answered HTTP {status}")
