"""The internal CA hierarchy: a root CA, an issuing CA, and what the issuing CA certifies.

The root CA certifies the issuing CA; the issuing CA certifies users' signing keys, the TSA, the
delegated OCSP signer and TLS servers. Every key is generated in the key store (the HSM) and never
leaves it; the database keeps the certificates, the revocation state and the CRLs, the token keeps
each key's certificate chain next to the key.

Consistency: key store work (key generation, signatures) happens before the database transaction
that records its result, so a failed HSM call leaves no row; a key whose certificate was never
recorded stays on the token unused (labels are never reused: the next free one is taken). A
change and the audit entry describing it commit together (``AuditLog.append_in``). Transactions
that issue a CRL lock the CA's row first (its CRL number), then the audit head, so CRL numbers
increase without gaps or repeats across processes and nodes.
"""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Engine, bindparam, exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from server.audit import AuditLog
from server.config import Settings
from server.db.models import Certificate, CertificateAuthority, Crl, User
from server.errors import Code, SiegelError
from server.pki import profiles
from server.pki.crl import Revoked, build_crl
from server.pki.keystore import KeyStore, PrivateKeyFactory
from server.pki.profiles import Issuer, Profile, PublicKey
from server.signing.keysource import KeyKind

ROOT = "ROOT"
ISSUING = "ISSUING"
CA_KEY_LABELS = {ROOT: "ca-root", ISSUING: "ca-issuing"}
SERVICE_PROFILES = {"tsa": profiles.TSA, "ocsp": profiles.OCSP_SIGNER}
SERVICE_NAMES = {"tsa": "Time-Stamping Authority", "ocsp": "OCSP Responder"}
REASONS: dict[str, x509.ReasonFlags] = {flag.value: flag for flag in x509.ReasonFlags}
HOLD = x509.ReasonFlags.certificate_hold.value
RELEASE = x509.ReasonFlags.remove_from_crl.value
_MAX_LABEL_TRIES = 1000
EXTERNAL_KEY = "(outside the HSM)"  # the key label recorded for a certificate of a key we do not hold
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MAX_COMMON_NAME = 64  # ub-common-name, RFC 5280 appendix A.1
# How long a process keeps using the TSA's and OCSP signer's credentials before it reads them again:
# a revocation or renewal elsewhere (another process or node) takes effect here within this time.
SERVICE_CACHE_SECONDS = 2.0
_STATUS = select(Certificate.issuer, Certificate.profile, Certificate.revoked_at, Certificate.revocation_reason) \
    .where(Certificate.serial == bindparam("serial"))


@dataclass(frozen=True)
class CertStatus:
    """The revocation state of one certificate, as OCSP reports it."""

    state: str  # "good", "revoked" or "unknown"
    revoked_at: datetime | None = None
    reason: x509.ReasonFlags | None = None


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; all of ours are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def serial_hex(value: int) -> str:
    """The form serials are stored in: lower-case hex without leading zeros."""
    return format(value, "x")


def parse_serial(text: str) -> str:
    """A serial as typed by people ("0A:1B", "0x0a1b", "a1b") in stored form."""
    cleaned = text.strip().lower().replace(":", "").replace(" ", "")
    cleaned = cleaned[2:] if cleaned.startswith("0x") else cleaned
    try:
        return serial_hex(int(cleaned, 16))
    except ValueError:
        raise SiegelError(Code.BAD_REQUEST, f"serial {text!r} is not a hexadecimal number") from None


def check_host_names(names: list[str]) -> None:
    """Host names (LDH labels, a leading ``*.`` allowed) or IP addresses; the first one fits a CN."""
    if not names:
        raise SiegelError(Code.BAD_REQUEST, "a TLS server certificate needs host names or IP addresses")
    for name in names:
        try:
            ipaddress.ip_address(name)
            continue
        except ValueError:
            pass
        labels = name.split(".")
        labels = labels[1:] if labels[0] == "*" else labels
        if len(name) > 253 or not labels or not all(_HOST_LABEL.fullmatch(label) for label in labels):
            raise SiegelError(Code.BAD_REQUEST, f"{name!r} is neither an IP address nor a host name (letters, digits "
                                                "and inner hyphens, dots between; international names as xn-- labels)")
    if len(names[0]) > _MAX_COMMON_NAME:
        raise SiegelError(Code.BAD_REQUEST, f"the first name becomes the subject CN, which holds at most "
                                            f"{_MAX_COMMON_NAME} characters; name a shorter one first")


def parse_reason(text: str) -> str:
    """An RFC 5280 CRLReason name, checked."""
    if text not in REASONS:
        raise SiegelError(Code.BAD_REQUEST, f"revocation reason {text!r}: expected one of {', '.join(REASONS)}")
    return text


class CertificateAuthorityService:
    """The CA operations of the CLI, the portal, LDAP auto-enrolment and the CSC API."""

    def __init__(self, engine: Engine, audit: AuditLog, settings: Settings, keys: Callable[[], KeyStore],
                 private_key: PrivateKeyFactory) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._audit = audit
        self._settings = settings
        self._pki = settings.pki
        self._base_url = settings.server.public_base_url
        self._keys = keys
        self._private_key = private_key
        self._service_cache: dict[str, tuple[float, tuple[str, list[bytes]]]] = {}

    # --- set-up ------------------------------------------------------------------------------

    def missing(self) -> list[str]:
        """What ``init`` would create: "ROOT", "ISSUING", "ocsp", "tsa" (database only, no HSM)."""
        with self._sessions() as session:
            present = {name for name in session.execute(select(CertificateAuthority.name)).scalars()}
            out = [name for name in (ROOT, ISSUING) if name not in present]
            out += [kind for kind, profile in SERVICE_PROFILES.items()
                    if self._current_service_certificate(session, profile) is None]
        return out

    def init(self, actor: str = "cli") -> list[str]:
        """Create the root CA, the issuing CA, the OCSP signer and the TSA where missing.

        Returns one line per thing created; nothing (and no HSM access) when all exist.
        """
        missing = self.missing()
        if not missing:
            return []
        keys = self._keys()
        kind = KeyKind(self._pki.key_algorithm)
        done = []
        for name, parent, common_name, profile in ((ROOT, None, self._pki.root_common_name, profiles.ROOT_CA),
                                                   (ISSUING, ROOT, self._pki.issuing_common_name, profiles.ISSUING_CA)):
            if name in missing:
                row = self._create_ca(keys, kind, name, parent, common_name, profile, actor)
                done.append(f"created {name} CA {common_name!r} (key {row.key_label!r} in the HSM, "
                            f"{kind}, serial {row.certificate_serial})")
        for service, profile in SERVICE_PROFILES.items():
            if service in missing:
                subject = profiles.ca_name(f"{self._pki.organization} {SERVICE_NAMES[service]}", self._pki)
                cert = self._issue(keys, kind, service, profile, subject, None, None, actor)
                done.append(f"issued the {service.upper()} certificate (key {cert.key_label!r} in the HSM, "
                            f"serial {cert.serial})")
        for name in (ROOT, ISSUING):
            if name in missing:
                crl = self.issue_crl(name, actor)
                done.append(f"issued CRL number {crl.number} of the {name} CA")
        return done

    def _create_ca(self, keys: KeyStore, kind: KeyKind, name: str, parent: str | None, common_name: str,
                   profile: Profile, actor: str) -> CertificateAuthority:
        with self._sessions() as session:
            label, public_key = self._new_key(session, keys, CA_KEY_LABELS[name], kind)
            issuer, chain = self._issuer(session, keys, parent) if parent else (None, [])
        subject = profiles.ca_name(common_name, self._pki)
        now = _now()
        if issuer is None:  # self-signed: the root signs with its own new key
            issuer = Issuer(name, None, self._private_key(keys, label))
        cert = profiles.build_certificate(profile, subject, public_key, issuer, self._pki, self._base_url, now)
        der = cert.public_bytes(Encoding.DER)
        for link in [der, *chain]:
            keys.store_certificate(label, link)
        row = CertificateAuthority(name=name, parent=parent, key_label=label,
                                   certificate_serial=serial_hex(cert.serial_number), der=der, crl_number=0,
                                   created_at=now)
        with self._sessions.begin() as session:
            session.add(row)
            session.add(self._certificate_row(cert, der, parent or name, profile, label, None))
            session.flush()
            self._audit.append_in(session, actor, "ca.create", name, key_label=label, key_kind=str(kind),
                                  serial=row.certificate_serial, subject=cert.subject.rfc4514_string(),
                                  parent=parent)
        return row

    # --- issuing -----------------------------------------------------------------------------

    def issue_user(self, user_name: str, actor: str = "cli") -> Certificate:
        """A user-signing certificate for the account ``user_name``, with a new key in the HSM.

        The key label is derived from the user id: ``user-<id>``, or ``user-<id>-<n>`` for later keys.
        """
        with self._sessions() as session:
            user = session.execute(select(User).where(User.name == user_name)).scalar_one_or_none()
        if user is None:
            raise SiegelError(Code.NOT_FOUND, f"no user named {user_name!r} (add it with `siegel user add`)")
        if user.disabled:
            raise SiegelError(Code.BAD_REQUEST, f"user {user_name!r} is disabled; no certificate is issued")
        subject = profiles.user_name(user.name, user.email, self._pki.organization)
        return self._issue(self._keys(), KeyKind(self._pki.key_algorithm), f"user-{user.id}", profiles.USER_SIGNING,
                           subject, [x509.RFC822Name(user.email)], user.id, actor)

    def issue_tls_server(self, names: list[str], actor: str = "cli") -> Certificate:
        """A TLS server certificate for host names and IP addresses (the first one is the CN)."""
        check_host_names(names)
        subject = profiles.ca_name(names[0], self._pki)
        return self._issue(self._keys(), KeyKind(self._pki.key_algorithm), "tls-server", profiles.TLS_SERVER,
                           subject, profiles.dns_or_ip(names), None, actor)

    def certify_tls_server(self, names: list[str], public_key: PublicKey, actor: str = "cli") -> Certificate:
        """A TLS server certificate for a key held outside the HSM (the TLS stack's own key, see server/tls.py)."""
        check_host_names(names)
        return self._issue(self._keys(), KeyKind(self._pki.key_algorithm), EXTERNAL_KEY, profiles.TLS_SERVER,
                           profiles.ca_name(names[0], self._pki), profiles.dns_or_ip(names), None, actor, public_key)

    def _issue(self, keys: KeyStore, kind: KeyKind, label_base: str, profile: Profile, subject: x509.Name,
               alt_names: list[x509.GeneralName] | None, user_id: int | None, actor: str,
               public_key: PublicKey | None = None) -> Certificate:
        """A certificate from the issuing CA for a new HSM key (or the given outside key); HSM first, then
        one transaction."""
        with self._sessions() as session:
            issuer, chain = self._issuer(session, keys, ISSUING)
            if public_key is None:
                label, public_key = self._new_key(session, keys, label_base, kind)
            else:
                label = label_base
        cert = profiles.build_certificate(profile, subject, public_key, issuer, self._pki, self._base_url, _now(),
                                          alt_names)
        der = cert.public_bytes(Encoding.DER)
        if label != EXTERNAL_KEY:
            for link in [der, *chain]:
                keys.store_certificate(label, link)
        row = self._certificate_row(cert, der, ISSUING, profile, label, user_id)
        with self._sessions.begin() as session:
            session.add(row)
            session.flush()
            self._audit.append_in(session, actor, "ca.issue", row.serial, profile=profile.name,
                                  subject=row.subject, key_label=label, user_id=user_id,
                                  not_after=row.not_after.isoformat())
        self._service_cache.clear()
        return row

    def _new_key(self, session: Session, keys: KeyStore, base: str, kind: KeyKind) -> tuple[str, PublicKey]:
        """Generate a key under the first free label of ``base``, ``base-2``, ``base-3``, ...

        A label is free when no certificate or CA names it and the token has no key of that name (one
        left from an attempt that failed before its certificate was recorded, or from another instance).
        """
        for n in range(1, _MAX_LABEL_TRIES + 1):
            label = base if n == 1 else f"{base}-{n}"
            used = session.execute(select(exists().where(or_(
                Certificate.key_label == label,
                select(CertificateAuthority.name).where(CertificateAuthority.key_label == label).exists())))).scalar()
            if used or keys.has_key(label):
                continue
            try:
                return label, keys.generate_key(label, kind)
            except SiegelError as exc:
                if exc.code is not Code.CONFLICT:  # CONFLICT: another process took the label just now
                    raise
        raise SiegelError(Code.CONFLICT, f"no free key label from {base!r} to {base}-{_MAX_LABEL_TRIES}")

    def _issuer(self, session: Session, keys: KeyStore, name: str) -> tuple[Issuer, list[bytes]]:
        """The CA ``name`` as an issuer, and its chain (its own certificate first, up to the root)."""
        row = self._ca(session, name)
        chain = [row.der]
        parent = row.parent
        while parent is not None:
            up = self._ca(session, parent)
            chain.append(up.der)
            parent = up.parent
        return Issuer(name, x509.load_der_x509_certificate(row.der), self._private_key(keys, row.key_label)), chain

    @staticmethod
    def _ca(session: Session, name: str) -> CertificateAuthority:
        row = session.get(CertificateAuthority, name.upper())
        if row is None:
            raise SiegelError(Code.NOT_FOUND, f"no CA named {name!r} (there are {ROOT} and {ISSUING} once "
                                              "`siegel ca init` has run)")
        return row

    @staticmethod
    def _certificate_row(cert: x509.Certificate, der: bytes, issuer: str, profile: Profile, label: str,
                         user_id: int | None) -> Certificate:
        return Certificate(serial=serial_hex(cert.serial_number), issuer=issuer, profile=profile.name,
                           subject=cert.subject.rfc4514_string(), user_id=user_id, key_label=label,
                           not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc, der=der)

    # --- revocation ----------------------------------------------------------------------------

    def revoke(self, serial: str, reason: str, actor: str = "cli") -> Crl:
        """Revoke a certificate (or, with ``removeFromCRL``, release it from hold) and issue its CA's CRL.

        Revocation, CRL and audit entries commit together: when the HSM cannot sign the CRL, nothing changes.
        """
        key, reason = parse_serial(serial), parse_reason(reason)
        with self._sessions() as session:
            found = session.get(Certificate, key)
            if found is None:
                raise SiegelError(Code.NOT_FOUND, f"no certificate with serial {key} was issued here")
            if found.profile == profiles.ROOT_CA.name:
                raise SiegelError(Code.BAD_REQUEST, "the root CA certificate cannot be revoked by a CRL; "
                                                    "withdraw it from the relying parties' trust stores")
            ca_name = found.issuer
        keys = self._keys()
        with self._sessions.begin() as session:
            number = self._next_crl_number(session, ca_name)  # locks the CA row first
            cert = session.get(Certificate, key, populate_existing=True)
            assert cert is not None
            previous = cert.revocation_reason
            if reason == RELEASE:
                if previous != HOLD:
                    raise SiegelError(Code.BAD_REQUEST, f"certificate {key} is not on hold; "
                                                        f"{RELEASE} only releases a {HOLD}")
                cert.revoked_at, cert.revocation_reason = None, None
            else:
                if previous == HOLD and reason == HOLD:
                    raise SiegelError(Code.CONFLICT, f"certificate {key} is on hold already")
                if cert.revoked_at is not None and previous != HOLD:
                    raise SiegelError(Code.CONFLICT, f"certificate {key} was revoked already on "
                                                     f"{_utc(cert.revoked_at).isoformat()} ({previous})")
                cert.revoked_at, cert.revocation_reason = _now(), reason
            self._audit.append_in(session, actor, "ca.revoke", key, reason=reason, previous=previous,
                                  subject=cert.subject, issuer=ca_name)
            crl = self._issue_crl_in(session, keys, ca_name, number, actor)
        self._service_cache.clear()
        return crl

    def issue_crl(self, ca_name: str, actor: str = "system") -> Crl:
        """A fresh CRL of ``ca_name`` with the next CRL number."""
        keys = self._keys()
        with self._sessions.begin() as session:
            number = self._next_crl_number(session, ca_name)
            return self._issue_crl_in(session, keys, ca_name.upper(), number, actor)

    def issue_all_crls(self) -> None:
        """The scheduled job "crl": a fresh CRL of every CA."""
        with self._sessions() as session:
            names = list(session.execute(select(CertificateAuthority.name).order_by(CertificateAuthority.name)).scalars())
        for name in names:
            self.issue_crl(name, "scheduler")

    def _next_crl_number(self, session: Session, ca_name: str) -> int:
        """Increment the CA's CRL number; the UPDATE locks the row until the transaction ends."""
        result = session.execute(update(CertificateAuthority).where(CertificateAuthority.name == ca_name.upper())
                                 .values(crl_number=CertificateAuthority.crl_number + 1))
        if result.rowcount != 1:
            self._ca(session, ca_name)  # raises the NOT_FOUND message
        return int(session.execute(select(CertificateAuthority.crl_number)
                                   .where(CertificateAuthority.name == ca_name.upper())).scalar_one())

    def _issue_crl_in(self, session: Session, keys: KeyStore, ca_name: str, number: int, actor: str) -> Crl:
        issuer, _ = self._issuer(session, keys, ca_name)
        assert issuer.certificate is not None
        revoked = session.execute(select(Certificate).where(Certificate.issuer == ca_name,
                                                            Certificate.revoked_at.is_not(None))
                                  .order_by(Certificate.revoked_at)).scalars().all()
        entries = [Revoked(int(c.serial, 16), _utc(c.revoked_at), REASONS[c.revocation_reason or "unspecified"])
                   for c in revoked if c.revoked_at is not None]
        this_update = _now()
        next_update = this_update + timedelta(hours=self._pki.crl_validity_hours)
        der = build_crl(issuer.certificate, issuer.private_key, number, entries, this_update, next_update)
        crl = Crl(ca=ca_name, number=number, this_update=this_update, next_update=next_update, der=der)
        session.add(crl)
        session.flush()
        self._audit.append_in(session, actor, "ca.crl", ca_name, number=number, entries=len(entries),
                              next_update=next_update.isoformat())
        return crl

    # --- reading -------------------------------------------------------------------------------

    def list(self, expiring_within: timedelta | None = None, actor: str = "cli") -> list[Certificate]:
        """Every issued certificate, or the valid, unrevoked ones that expire within the given time."""
        query = select(Certificate).order_by(Certificate.not_after, Certificate.serial)
        if expiring_within is not None:
            now = _now()
            query = query.where(Certificate.revoked_at.is_(None), Certificate.not_after > now,
                                Certificate.not_after <= now + expiring_within)
        with self._sessions.begin() as session:
            rows = list(session.execute(query).scalars())
            self._audit.append_in(session, actor, "ca.list", "",
                                  expiring_within=str(expiring_within) if expiring_within else None, count=len(rows))
        return rows

    def export(self, name: str, actor: str = "cli") -> str:
        """The PEM certificate of the CA ``name`` (ROOT or ISSUING), or of the certificate with that serial."""
        with self._sessions.begin() as session:
            if name.upper() in CA_KEY_LABELS:
                row = self._ca(session, name)
                target, der = row.name, row.der
            else:
                try:
                    serial = parse_serial(name)
                except SiegelError:
                    raise SiegelError(Code.BAD_REQUEST, f"{name!r}: expected {ROOT}, {ISSUING} or the hexadecimal "
                                                        "serial number of an issued certificate") from None
                cert = session.get(Certificate, serial)
                if cert is None:
                    raise SiegelError(Code.NOT_FOUND, f"no certificate with serial {serial} was issued here")
                target, der = cert.serial, cert.der
            self._audit.append_in(session, actor, "ca.export", target,
                                  serial=serial_hex(x509.load_der_x509_certificate(der).serial_number))
        return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()

    def ca_certificates(self) -> dict[str, x509.Certificate]:
        """The CA certificates by CA name."""
        with self._sessions() as session:
            rows = session.execute(select(CertificateAuthority)).scalars().all()
        return {r.name: x509.load_der_x509_certificate(r.der) for r in rows}

    def ca_certificate_der(self, name: str) -> bytes:
        return self.ca_key(name)[1]

    def signing_key_of(self, user_id: int) -> str:
        """The key label of the user's newest valid user-signing certificate."""
        with self._engine.connect() as conn:
            label = conn.execute(select(Certificate.key_label).where(
                Certificate.user_id == user_id, Certificate.profile == profiles.USER_SIGNING.name,
                Certificate.revoked_at.is_(None), Certificate.not_after > _now())
                .order_by(Certificate.not_after.desc()).limit(1)).scalar_one_or_none()
        if label is None:
            raise SiegelError(Code.KEY_NOT_FOUND, "this account has no valid signing certificate "
                                                  "(an administrator issues one with `siegel ca issue USER`)")
        return label

    def ca_key(self, name: str) -> tuple[str, bytes]:
        """Key label and certificate (DER) of the CA ``name``."""
        with self._sessions() as session:
            row = self._ca(session, name)
            return row.key_label, row.der

    def current_crl(self, ca_name: str) -> bytes:
        """The newest CRL of ``ca_name`` (one is issued when there is none yet)."""
        with self._sessions() as session:
            self._ca(session, ca_name)
            der = session.execute(select(Crl.der).where(Crl.ca == ca_name.upper())
                                  .order_by(Crl.number.desc()).limit(1)).scalar_one_or_none()
        return der if der is not None else self.issue_crl(ca_name).der

    def status(self, issuer_ca: str, serial: int) -> CertStatus:
        """good, revoked (time, reason) or unknown: whether ``issuer_ca`` issued ``serial`` and its state."""
        with self._engine.connect() as conn:  # Core, not the ORM: the OCSP responder asks for every request
            cert = conn.execute(_STATUS, {"serial": serial_hex(serial)}).one_or_none()
        if cert is None or cert.issuer != issuer_ca or cert.profile == profiles.ROOT_CA.name:
            return CertStatus("unknown")
        if cert.revoked_at is None:
            return CertStatus("good")
        return CertStatus("revoked", _utc(cert.revoked_at), REASONS[cert.revocation_reason or "unspecified"])

    def service_credentials(self, service: str) -> tuple[str, list[bytes]]:
        """Key label and certificate chain (DER, own first, root last) of the "tsa" or "ocsp" service.

        Read from the database at most every ``SERVICE_CACHE_SECONDS`` (and after this service changed a
        certificate): the TSA and the OCSP responder ask for every request.
        """
        if service not in SERVICE_PROFILES:
            raise SiegelError(Code.BAD_REQUEST, f"unknown service {service!r} (known: {', '.join(SERVICE_PROFILES)})")
        cached = self._service_cache.get(service)
        if cached is not None and time.monotonic() - cached[0] < SERVICE_CACHE_SECONDS:
            return cached[1][0], list(cached[1][1])
        with self._sessions() as session:
            cert = self._current_service_certificate(session, SERVICE_PROFILES[service])
            if cert is None:
                raise SiegelError(Code.KEY_NOT_FOUND, f"the {service.upper()} has no valid certificate; "
                                                      "run `siegel ca init`")
            chain = [cert.der]
            parent: str | None = cert.issuer
            while parent is not None:
                ca = self._ca(session, parent)
                chain.append(ca.der)
                parent = ca.parent
        self._service_cache[service] = (time.monotonic(), (cert.key_label, chain))
        return cert.key_label, chain

    @staticmethod
    def _current_service_certificate(session: Session, profile: Profile) -> Certificate | None:
        return session.execute(select(Certificate).where(
            Certificate.profile == profile.name, Certificate.issuer == ISSUING, Certificate.revoked_at.is_(None),
            Certificate.not_after > _now()).order_by(Certificate.not_after.desc()).limit(1)).scalar_one_or_none()

