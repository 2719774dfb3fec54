"""HTTP callbacks: a JSON POST signed with HMAC-SHA256, so the receiver can tell it comes from Siegel unaltered.

Headers: ``X-Siegel-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>." + body)>`` (the time is signed
with the body, so a receiver can refuse old replays) and ``X-Siegel-Delivery: <id>`` (the same on every retry
of one delivery, so a receiver can ignore a repeat). A 2xx answer means delivered.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time
import urllib.error
import urllib.request

from server.errors import Code, SiegelError


def signature_header(key: bytes, body: bytes, at: int) -> str:
    mac = hmac.new(key, str(at).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def verify_signature(key: bytes, body: bytes, header: str) -> bool:
    """Whether ``header`` is a valid X-Siegel-Signature of ``body`` (what a receiver checks)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if not fields.get("t", "").isdigit() or "v1" not in fields:
        return False
    return hmac.compare_digest(signature_header(key, body, int(fields["t"])), f"t={fields['t']},v1={fields['v1']}")


def post_signed(url: str, body: bytes, key: bytes, delivery_id: str, timeout: float) -> None:
    """POST ``body`` (JSON) to ``url``; SiegelError unless the receiver answers 2xx."""
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-Siegel-Delivery": delivery_id,
        "X-Siegel-Signature": signature_header(key, body, int(time.time()))})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=ssl.create_default_context()) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        raise SiegelError(Code.INTERNAL, f"callback {url}: {exc.__class__.__name__}: {exc}") from None
    if not 200 <= status < 300:
        raise SiegelError(Code.INTERNAL, f"callback {url} answered {status}")
