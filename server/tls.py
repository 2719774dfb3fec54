"""TLS for ``siegel serve --tls``: a server certificate from the internal issuing CA.

OpenSSL cannot sign with a key inside the PKCS#11 token without a provider module, so the TLS key
is a software EC P-256 key in ``secrets/tls-key.pem`` (mode 0600). It protects the transport only and
never signs a document, a token or a certificate; every signing key stays in the HSM. The certificate
(profile ``tls-server``, SAN from ``server.tls_names``) and the issuing CA's certificate are kept in
``tls/server-chain.pem``; they are issued again when the names changed or fewer than 30 days are left.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from server.config import Settings
from server.pki.ca import CertificateAuthorityService
from server.pki.profiles import dns_or_ip

log = logging.getLogger("siegel.tls")
RENEW_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    key: Path
    chain: Path  # the server certificate first, then the issuing CA's
    client_cas: Path | None = None  # CAs client certificates are verified against (None: none asked for)


def tls_names(settings: Settings) -> list[str]:
    """``server.tls_names``, or the host of ``server.public_base_url``, localhost and 127.0.0.1."""
    configured = [n.strip() for n in settings.server.tls_names.split(",") if n.strip()]
    if configured:
        return configured
    host = urllib.parse.urlsplit(settings.server.public_base_url).hostname or "localhost"
    return list(dict.fromkeys([host, "localhost", "127.0.0.1"]))


def ensure_tls_files(settings: Settings, ca: CertificateAuthorityService) -> TlsFiles:
    """The key and certificate chain for the configured names; created or renewed where needed."""
    files = TlsFiles(settings.path("secrets/tls-key.pem"), settings.path("tls/server-chain.pem"))
    names = tls_names(settings)
    if files.key.exists() and files.chain.exists() and _still_good(files, names):
        return files
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.certify_tls_server(names, key.public_key(), actor="serve")
    issuing = ca.ca_certificate_der("ISSUING")
    for path in (files.key, files.chain):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    files.key.chmod(0o600)
    files.chain.write_bytes(b"".join(x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM)
                                     for d in (issued.der, issuing)))
    log.info("TLS certificate issued", extra={"fields": {"serial": issued.serial, "names": names}})
    return files


def own_tls_files(cert: Path, key: Path) -> TlsFiles:
    """The operator's certificate (PEM, its chain after it) and key for ``serve --tls-cert/--tls-key``, checked:
    both readable, the key unencrypted and the certificate's, the certificate valid now."""
    from server.errors import ConfigError

    try:
        chain = x509.load_pem_x509_certificates(cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--tls-cert {cert}: not a readable PEM certificate ({exc})") from None
    try:
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"--tls-key {key}: not a readable, unencrypted PEM private key ({exc})") from None
    if chain[0].public_key() != private.public_key():
        raise ConfigError(f"--tls-key {key} is not the key of the certificate in --tls-cert {cert}")
    now = datetime.now(timezone.utc)
    if not chain[0].not_valid_before_utc <= now <= chain[0].not_valid_after_utc:
        raise ConfigError(f"--tls-cert {cert}: the certificate is valid from {chain[0].not_valid_before_utc:%Y-%m-%d} "
                          f"to {chain[0].not_valid_after_utc:%Y-%m-%d}, not now")
    return TlsFiles(key, cert)


def _still_good(files: TlsFiles, names: list[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificates(files.chain.read_bytes())[0]
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, OSError, x509.ExtensionNotFound):
        return False
    return (cert.public_key() == key.public_key() and list(alt) == dns_or_ip(names)
            and cert.not_valid_after_utc - datetime.now(timezone.utc) > RENEW_BEFORE)


def server_context(files: TlsFiles) -> object:
    """Twisted's TLS options for the listening port (TLS 1.2 and newer)."""
    from OpenSSL import crypto
    from twisted.internet import ssl

    chain = x509.load_pem_x509_certificates(files.chain.read_bytes())
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    client_cas = ([crypto.X509.from_cryptography(c) for c in x509.load_pem_x509_certificates(files.client_cas.read_bytes())]
                  if files.client_cas is not None else [])
    # With client CAs the server asks for a client certificate (optional: requireCertificate=False); one that
    # does not verify against them ends the handshake (server.identity.client_certs maps verified ones).
    return ssl.CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),  # type: ignore[arg-type]
        certificate=crypto.X509.from_cryptography(chain[0]),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in chain[1:]],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        verify=bool(client_cas), caCerts=client_cas or None, requireCertificate=False)


def write_client_cas(settings: Settings, ca: CertificateAuthorityService) -> Path | None:
    """``tls/client-cas.pem``: the internal CA's certificates and those of ``auth.client_ca_file``; None when
    ``auth.client_certificates`` is off."""
    if not settings.auth.client_certificates:
        return None
    pems = [cert.public_bytes(serialization.Encoding.PEM) for cert in ca.ca_certificates().values()]
    if settings.auth.client_ca_file.strip():
        extra = settings.path(settings.auth.client_ca_file.strip())
        try:
            pems.extend(c.public_bytes(serialization.Encoding.PEM) for c in x509.load_pem_x509_certificates(extra.read_bytes()))
        except (OSError, ValueError) as exc:
            from server.errors import ConfigError

            raise ConfigError(f"setting auth.client_ca_file: {extra}: not a readable PEM file of CA "
                              f"certificates ({exc})") from None
    path = settings.path("tls/client-cas.pem")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_bytes(b"".join(pems))
    return path
