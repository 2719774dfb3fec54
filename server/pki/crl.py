"""X.509 v2 CRLs (RFC 5280 section 5): thisUpdate/nextUpdate, CRL number, AKI, reason codes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

from server.pki.profiles import signature_hash


@dataclass(frozen=True)
class Revoked:
    """One CRL entry."""

    serial: int
    revoked_at: datetime
    reason: x509.ReasonFlags


def build_crl(ca_certificate: x509.Certificate, ca_key: CertificateIssuerPrivateKeyTypes, number: int,
              entries: list[Revoked], this_update: datetime, next_update: datetime) -> bytes:
    """The DER CRL of the CA, signed with its key; a reason ``unspecified`` is left out (RFC 5280 5.3.1)."""
    ski = ca_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_certificate.subject)
               .last_update(this_update).next_update(next_update)
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False))
    for entry in entries:
        revoked = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at)
        if entry.reason is not x509.ReasonFlags.unspecified:
            revoked = revoked.add_extension(x509.CRLReason(entry.reason), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    crl = builder.sign(ca_key, signature_hash(ca_key.public_key()))  # type: ignore[arg-type]
    return crl.public_bytes(Encoding.DER)
