"""The configured trust anchors: certificate files in PEM (one or several) or DER."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from server.config import Settings
from server.errors import ConfigError


def load_certificate_files(settings: Settings, spec: str) -> list[bytes]:
    """DER of every certificate in the comma-separated files of ``spec`` (relative to the data dir)."""
    found: list[bytes] = []
    for name in (n.strip() for n in spec.split(",")):
        if not name:
            continue
        path = settings.path(name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"setting validation.trust_roots: {path} cannot be read: {exc.strerror}") from None
        try:
            certs = x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [
                x509.load_der_x509_certificate(data)]
        except ValueError:
            raise ConfigError(f"setting validation.trust_roots: {path} holds no PEM or DER certificate") from None
        found.extend(c.public_bytes(Encoding.DER) for c in certs)
    return found
