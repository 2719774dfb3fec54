"""What the PKI needs from a key store (the HSM adapter implements it; ``server/app.py`` wires it)."""

from __future__ import annotations

from typing import Callable, Protocol

from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from server.pki.profiles import PublicKey
from server.signing.keysource import KeyKind, KeySource


class KeyStore(KeySource, Protocol):
    """Keys that are generated in, and never leave, the store."""

    def generate_key(self, label: str, kind: KeyKind) -> PublicKey:
        """A new key pair under ``label`` (CONFLICT when the label exists); its public key."""
        ...

    def has_key(self, label: str) -> bool:
        ...

    def public_key(self, label: str) -> PublicKey:
        ...

    def store_certificate(self, label: str, der: bytes) -> None:
        """Keep a certificate of the key ``label`` (its own or an issuer's) next to the key."""
        ...


# The store's key ``label`` as a ``cryptography`` private key whose signing happens in the store,
# for the X.509, CRL and OCSP builders (``adapters.hsm.keys.hsm_private_key``).
PrivateKeyFactory = Callable[[KeyStore, str], CertificateIssuerPrivateKeyTypes]
