"""The fields and files of a portal form: ``application/x-www-form-urlencoded`` or ``multipart/form-data``
(the site does not parse bodies itself: server.web.http.SiegelSite)."""

from __future__ import annotations

from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from urllib.parse import parse_qs

from server.errors import Code, SiegelError


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    content: bytes


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)


def parse_form(content_type: str, body: bytes) -> Form:
    """The form in a request body; BAD_REQUEST for a body that is neither kind of form."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if not body:
        return Form()
    if kind == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=200)
        except (UnicodeDecodeError, ValueError):
            raise SiegelError(Code.BAD_REQUEST, "the form is not UTF-8 or has too many fields") from None
        return Form({k: v[-1] for k, v in pairs.items()})
    if kind == "multipart/form-data":
        message = BytesParser(policy=policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
        if not message.is_multipart():
            raise SiegelError(Code.BAD_REQUEST, "a multipart form without parts")
        form = Form()
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            payload = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            if filename is not None:
                if payload:
                    form.files[name] = Upload(filename.replace("\\", "/").rsplit("/", 1)[-1][:200],
                                              part.get_content_type(), payload)
            else:
                form.fields[name] = payload.decode("utf-8", "replace")
        return form
    raise SiegelError(Code.BAD_REQUEST, f"a form was expected, not {kind or 'an untyped body'}")
