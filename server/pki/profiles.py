"""Certificate profiles of the internal PKI, each a small declarative definition, and the one builder.

A :class:`Profile` says what a kind of certificate carries (key usages, extended key usages and
their criticality, CA constraints, OCSP no-check, which revocation pointers) and which setting
gives its lifetime; :func:`build_certificate` turns a profile, a subject and a public key into a
certificate signed by the issuer's key (an HSM key object, see ``adapters/hsm/keys.py``).

Every certificate gets a random 159-bit serial, a subject key identifier and an authority key
identifier (a root names its own key). End-entity certificates and the issuing CA point to their
issuer's certificate (AIA caIssuers ``<base>/ca/<CA>.crt``) and CRL (``<base>/crl/<CA>.crl``);
end-entity certificates also name the OCSP responder (``<base>/ocsp``), which answers for the
issuing CA's certificates.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from server.config import PkiSettings

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

ID_KP_DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
CLOCK_SKEW = timedelta(minutes=5)  # notBefore lies this far back, for relying parties with slow clocks

_KEY_USAGES = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
               "key_agreement", "key_cert_sign", "crl_sign")


@dataclass(frozen=True)
class Profile:
    """What one kind of certificate carries."""

    name: str  # stored in ``certificates.profile``
    key_usage: frozenset[str]  # names of ``x509.KeyUsage`` flags that are set (always critical)
    lifetime_setting: str  # the ``PkiSettings`` field with the lifetime in days
    extended_key_usage: tuple[x509.ObjectIdentifier, ...] = ()
    eku_critical: bool = False
    ca: bool = False
    path_length: int | None = None  # for CAs: how many CAs may follow below (None: no limit)
    ocsp_no_check: bool = False  # id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1)
    issuer_links: bool = True  # AIA caIssuers and CRL distribution point of the issuer
    ocsp_link: bool = True  # AIA OCSP (the responder answers for the issuing CA's certificates)

    def __post_init__(self) -> None:
        unknown = self.key_usage - set(_KEY_USAGES)
        if unknown:
            raise ValueError(f"profile {self.name}: unknown key usages {sorted(unknown)}")

    def lifetime(self, settings: PkiSettings) -> timedelta:
        return timedelta(days=int(getattr(settings, self.lifetime_setting)))


ROOT_CA = Profile("root-ca", frozenset({"key_cert_sign", "crl_sign"}), "root_lifetime_days",
                  ca=True, issuer_links=False, ocsp_link=False)
ISSUING_CA = Profile("issuing-ca", frozenset({"key_cert_sign", "crl_sign"}), "issuing_lifetime_days",
                     ca=True, path_length=0, ocsp_link=False)
USER_SIGNING = Profile("user-signing", frozenset({"digital_signature", "content_commitment"}), "user_lifetime_days",
                       extended_key_usage=(ID_KP_DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION))
TSA = Profile("tsa", frozenset({"digital_signature"}), "service_lifetime_days",
              extended_key_usage=(ExtendedKeyUsageOID.TIME_STAMPING,), eku_critical=True)
OCSP_SIGNER = Profile("ocsp-signer", frozenset({"digital_signature"}), "service_lifetime_days",
                      extended_key_usage=(ExtendedKeyUsageOID.OCSP_SIGNING,), ocsp_no_check=True)
TLS_SERVER = Profile("tls-server", frozenset({"digital_signature"}), "service_lifetime_days",
                     extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH,))

PROFILES = {p.name: p for p in (ROOT_CA, ISSUING_CA, USER_SIGNING, TSA, OCSP_SIGNER, TLS_SERVER)}


def signature_hash(public_key: PublicKey) -> hashes.HashAlgorithm:
    """The hash a key of ours signs with: SHA-384 for P-384, SHA-256 otherwise."""
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def ca_name(common_name: str, settings: PkiSettings) -> x509.Name:
    """Subject of a CA or service certificate: CN, O and C from the settings."""
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, settings.country),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, settings.organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def user_name(common_name: str, email: str, organization: str) -> x509.Name:
    """Subject of a user's signing certificate: CN, E and O from the user record."""
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.EMAIL_ADDRESS, email)])


def dns_or_ip(names: list[str]) -> list[x509.GeneralName]:
    """subjectAltName entries for host names and IP addresses (TLS server certificates)."""
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


@dataclass(frozen=True)
class Issuer:
    """Who signs: the CA's name in URLs, its certificate (None for a self-signed root) and its key."""

    name: str
    certificate: x509.Certificate | None
    private_key: CertificateIssuerPrivateKeyTypes


def build_certificate(profile: Profile, subject: x509.Name, public_key: PublicKey, issuer: Issuer,
                      settings: PkiSettings, base_url: str, now: datetime,
                      alt_names: list[x509.GeneralName] | None = None) -> x509.Certificate:
    """A certificate of ``profile``, signed in the issuer's key; it never outlives its issuer."""
    not_after = now + profile.lifetime(settings)
    if issuer.certificate is not None:
        not_after = min(not_after, issuer.certificate.not_valid_after_utc)
        issuer_name = issuer.certificate.subject
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value)
    else:
        issuer_name = subject
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key)
    usages = {name: name in profile.key_usage for name in _KEY_USAGES}
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer_name).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - CLOCK_SKEW).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=profile.ca, path_length=profile.path_length if profile.ca else None),
                              critical=True)
               .add_extension(x509.KeyUsage(**usages, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
               .add_extension(aki, critical=False))
    if profile.extended_key_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(profile.extended_key_usage)),
                                        critical=profile.eku_critical)
    if profile.ocsp_no_check:
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    base = base_url.rstrip("/")
    access = []
    if profile.issuer_links:
        access.append(x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                             x509.UniformResourceIdentifier(f"{base}/ca/{issuer.name}.crt")))
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(f"{base}/crl/{issuer.name}.crl")], None, None, None)]), critical=False)
    if profile.ocsp_link:
        access.append(x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                             x509.UniformResourceIdentifier(f"{base}/ocsp")))
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    return builder.sign(issuer.private_key, signature_hash(issuer.private_key.public_key()))  # type: ignore[arg-type]
