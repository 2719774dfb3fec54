"""The one wiring place: builds the services from the settings and the site from the services."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from twisted.web import resource

from adapters.hsm.keys import hsm_private_key
from adapters.hsm.pkcs11 import Pkcs11Hsm
from adapters.hsm.softhsm import softhsm_environment
from adapters.mail import SmtpMailSender
from server.audit import AuditLog
from server.config import Settings
from server.db import engine as db
from server.errors import Code, ConfigError, SiegelError
from server.identity.directory import DirectorySync
from server.identity.twofactor import TwoFactorService
from server.identity.users import LoginPolicy, UserService
from server.jobs import JobSpec
from server.pki.ca import ROOT, CertificateAuthorityService
from server.pki.ocsp import OcspResponder
from server.pki.tsa import TimestampAuthority
from server.signing.keys import SigningKeys
from server.signing.levels import Level
from server.signing.service import SigningService
from server.validation.service import VerificationService, own_revocation
from server.workflows.service import WorkflowService

if TYPE_CHECKING:
    from server.archive.jobs import Stamp
    from server.branding.mail import BrandedMail
    from server.branding.service import BrandService
    from server.archive.service import ArchiveService
    from adapters.remote_signing.operations import RemoteSigning
    from server.web.portal.sessions import PortalSessions


@dataclass
class Hsm:
    """Opens the PKCS#11 token on first use, so the server starts (and reports 503) while the HSM is away, and
    again after it stopped answering, so the server recovers without a restart once it is back."""

    settings: Settings
    _hsm: Pkcs11Hsm | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> Pkcs11Hsm:
        with self._lock:
            if self._hsm is not None and self._hsm.lost:
                self._hsm.close()
                self._hsm = None
            if self._hsm is None:
                self._hsm = open_hsm(self.settings)
            return self._hsm

    def check(self) -> dict[str, Any]:
        try:
            self.get().check()
        except SiegelError:
            self.close()
            raise
        return {"token": self.settings.hsm.token_label}

    def close(self) -> None:
        with self._lock:
            if self._hsm is not None:
                self._hsm.close()
                self._hsm = None


def read_secret(settings: Settings, configured: str, what: str) -> str:
    path = settings.path(configured)
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise SiegelError(Code.HSM_LOGIN, f"{what} file {path} cannot be read: {exc.strerror}") from None


def open_hsm(settings: Settings) -> Pkcs11Hsm:
    if settings.hsm.softhsm_conf:
        softhsm_environment(settings.path(settings.hsm.softhsm_conf))
    pin = read_secret(settings, settings.hsm.pin_file, "HSM user PIN")
    return Pkcs11Hsm(settings.hsm.module, settings.hsm.token_label, pin, pool_size=settings.hsm.pool_size)


@dataclass
class Services:
    settings: Settings
    engine: Engine
    audit: AuditLog
    users: UserService
    hsm: Hsm
    ca: CertificateAuthorityService
    tsa: TimestampAuthority
    ocsp: OcspResponder
    grants: SigningKeys
    verification: VerificationService
    signing: SigningService

    def __post_init__(self) -> None:
        if self.settings.directory.enabled and getattr(self.users, "directory", None) is None:
            from adapters.directory.ldap import LoginBinder

            self.users.directory = LoginBinder(self.settings)  # directory accounts log in by binding
        # password-reset and one-time-code mails in the brand of the request (made when the first one is sent)
        self.users.mail_brands = lambda client, host: self.branded_mail.for_request(client, host)
        from server.workflows.flags import clear_enabled_in

        self.users.on_enable = clear_enabled_in  # an administrator's enable clears workflow flags as the sync's

    @functools.cached_property
    def directory(self) -> DirectorySync | None:
        """The LDAP / AD synchronisation, or None when ``directory.enabled`` is false."""
        if not self.settings.directory.enabled:
            return None
        from adapters.directory.ldap import open_directory
        from server.identity.users import Role
        from server.workflows.flags import clear_enabled_in, flag_disabled_in

        return DirectorySync(self.engine, self.audit, self.settings.directory, lambda: open_directory(self.settings),
                             self.ca, [role.value for role in Role], on_disable=flag_disabled_in,
                             on_enable=clear_enabled_in)

    @functools.cached_property
    def twofactor(self) -> TwoFactorService:
        """Second factors (settings [twofactor], [sms]); the installation key is made on first use."""
        from adapters.sms import HttpSmsGateway
        from server.identity.twofactor import TwoFactorPolicy, load_or_create_key

        s = self.settings
        sms = None
        if s.sms.url:
            secret = read_secret(s, s.sms.secret_file, "SMS gateway secret") if s.sms.auth != "none" else ""
            sms = HttpSmsGateway(s.sms.url, s.sms.body, s.sms.sender, s.sms.auth, s.sms.username, secret,
                                 s.sms.timeout_seconds, s.sms.ca_file or None)
        return TwoFactorService(self.engine, self.audit, self.users, load_or_create_key(s.path(s.twofactor.key_file)),
                                TwoFactorPolicy.from_settings(s.twofactor), mailer=self.users.mailer, sms=sms,
                                cache_seconds=s.auth.credential_cache_seconds)

    @functools.cached_property
    def remote_signing(self) -> RemoteSigning:
        """The remote CSC signing accounts (remote_signing.accounts_file) and the waiting operations (database,
        their states sealed with a key derived from the installation key twofactor.key_file)."""
        from adapters.remote_signing.accounts import load_accounts
        from adapters.remote_signing.client import CscClient
        from adapters.remote_signing.operations import RemoteSigning, lease_seconds
        from server.identity.twofactor import load_or_create_key

        r = self.settings.remote_signing
        clients = {name: CscClient(account, r.timeout_seconds, r.retries)
                   for name, account in load_accounts(self.settings).items()}
        return RemoteSigning(clients, self.signing, self.engine, self.audit, r.operation_minutes, r.max_operations,
                             load_or_create_key(self.settings.path(self.settings.twofactor.key_file)),
                             lease_seconds(r.timeout_seconds, r.retries),
                             callback_url=self.settings.server.public_base_url.rstrip("/") + "/api/v1/sign/remote/callback")

    @functools.cached_property
    def workflows(self) -> WorkflowService:
        """Signature workflows (settings [workflows]): templates, steps, links, the mail outbox."""
        from adapters.delivery.callback import post_signed
        from server.workflows.delivery import DeliveryQueue
        from server.workflows.documents import WorkflowDocuments
        from server.workflows.outbox import MailOutbox
        from server.workflows.templates import TemplateRepository

        s = self.settings
        w = s.workflows
        documents = WorkflowDocuments(s.path(s.store.path))
        outbox = MailOutbox(self.engine, build_mailer(s), s.mail.sender, w.mail_retry_max_seconds,
                            compose=self.branded_mail.compose)
        deliveries = DeliveryQueue(self.engine, documents, s.path(w.delivery_root), self._callback_key, post_signed,
                                   w.callback_timeout_seconds, w.mail_retry_max_seconds, outbox, lambda: self.archive,
                                   s.server.public_base_url)
        return WorkflowService(self.engine, self.audit, w, TemplateRepository(self.engine, self.audit),
                               self.signing, self.verification, self.ca, documents, outbox, deliveries,
                               s.server.public_base_url, Level(s.signing.default_level), s.mail.sender,
                               brands=self.brands, remote=lambda: self.remote_signing)

    @functools.cached_property
    def brands(self) -> BrandService:
        """Brands (settings [branding]; server/branding): portal pages, mails, stamps, certificates."""
        from server.branding.service import BrandService

        s = self.settings
        return BrandService(self.engine, self.audit, s.branding, s.server.public_base_url, s.mail.sender)

    @functools.cached_property
    def branded_mail(self) -> BrandedMail:
        """Mails to people in their brand's templates (config/templates/mail, branding.templates/mail)."""
        from server.branding.mail import BrandedMail
        from server.branding.templates import environment

        return BrandedMail(self.brands, environment(self.settings.path(self.settings.branding.templates), "mail"))

    def _callback_key(self) -> bytes:
        """The HMAC key of workflow callbacks (workflows.callback_key_file), made on first use."""
        from server.identity.twofactor import load_or_create_key

        path = self.settings.path(self.settings.workflows.callback_key_file)
        try:
            return load_or_create_key(path)
        except SiegelError:
            raise ConfigError(f"workflows.callback_key_file {path}: expected a key of 32 bytes") from None

    @functools.cached_property
    def portal_sessions(self) -> PortalSessions:
        """The web portal's sessions and kept results (settings [portal])."""
        from server.web.portal.sessions import PortalSessions

        p = self.settings.portal
        return PortalSessions(self.engine, timedelta(minutes=p.idle_minutes), timedelta(hours=p.absolute_hours),
                              timedelta(minutes=p.second_factor_minutes), timedelta(minutes=p.result_minutes))

    @functools.cached_property
    def archive(self) -> ArchiveService:
        """The long-term archive (settings [archive], the store at store.path, timestamps from tsa.clients:
        ``internal`` alone is this process's own TSA, asked without HTTP)."""
        from adapters.timestamp.client import client_from_settings
        from server.archive.jobs import ArchiveTrees, stamp_in_process, stamp_with_client
        from server.archive.service import ArchiveService
        from server.archive.store import DocumentStore

        s = self.settings

        def stamp() -> Stamp:
            if s.tsa.clients.strip() == "internal":
                return stamp_in_process(self.tsa.respond)
            cas = self.ca.ca_certificates()
            return stamp_with_client(client_from_settings(s, [cas[ROOT]], list(cas.values())))

        store = DocumentStore(s.path(s.store.path), s.archive.store_grace_seconds)
        algorithms = [a.strip() for a in s.archive.hash_algorithms.split(",") if a.strip()]
        trees = ArchiveTrees(self.engine, self.audit, store, functools.cache(stamp), algorithms,
                             s.archive.max_tree_leaves)
        return ArchiveService(self.engine, self.audit, store, trees, self.verification, s.archive)

    def remote_overview(self) -> list[dict[str, Any]]:
        """Per remote signing account: its credentials, their certificates, the signatures made through Siegel."""
        from adapters.remote_signing.overview import accounts_overview

        return accounts_overview(self.remote_signing.clients, self.engine)

    def close(self) -> None:
        self.hsm.close()
        self.engine.dispose()


def build_mailer(settings: Settings) -> SmtpMailSender:
    m = settings.mail
    return SmtpMailSender(m.host, m.port, m.sender, m.starttls, m.timeout_seconds)


def build_services(settings: Settings) -> Services:
    engine = db.make_engine(settings.database_url, settings.database.pool_size)
    audit = AuditLog(engine)
    hsm = Hsm(settings)
    ca = CertificateAuthorityService(engine, audit, settings, hsm.get, hsm_private_key)
    grants = SigningKeys(engine, audit, ca)
    ocsp = OcspResponder(ca, hsm.get, hsm_private_key, settings.pki)
    own = own_revocation(ca, ocsp)
    verification = VerificationService(settings, lambda: ca.ca_certificate_der(ROOT), own)
    return Services(settings=settings, engine=engine, audit=audit,
                    users=UserService(engine, audit, settings.auth.credential_cache_seconds,
                                      LoginPolicy.from_settings(settings.auth), mailer=build_mailer(settings),
                                      public_base_url=settings.server.public_base_url),
                    hsm=hsm, ca=ca,
                    tsa=TimestampAuthority(engine, audit, ca, hsm.get, settings.tsa),
                    ocsp=ocsp,
                    grants=grants, verification=verification,
                    signing=SigningService(settings, engine, ca, hsm.get, audit, grants,
                                           lambda: verification.trust().roots, own))


def scheduled_jobs(services: Services) -> list[JobSpec]:
    """The jobs every node offers to run; the scheduler's leases let one node at a time run each."""
    return [JobSpec("crl", timedelta(minutes=services.settings.pki.crl_interval_minutes),
                    services.ca.issue_all_crls),
            JobSpec("signing-states", timedelta(hours=1), services.signing.remove_expired),
            JobSpec("remote-operations", timedelta(hours=1), services.remote_signing.remove_expired),
            JobSpec("twofactor-codes", timedelta(hours=1), services.twofactor.sweep),
            JobSpec("archive-collect", timedelta(seconds=min(services.settings.archive.collect_seconds,
                                                             services.settings.jobs.poll_seconds)),
                    lambda: services.archive.trees.collect_due(services.settings.archive.collect_seconds,
                                                               services.settings.archive.collect_objects)),
            JobSpec("archive-renew", timedelta(hours=services.settings.archive.renew_check_hours),
                    services.archive.renew, lease=timedelta(hours=2)),
            JobSpec("archive-store-sweep", timedelta(days=1), services.archive.sweep_store, lease=timedelta(hours=2)),
            JobSpec("portal-sessions", timedelta(minutes=15), services.portal_sessions.sweep),
            JobSpec("workflow-mail", timedelta(seconds=services.settings.workflows.mail_interval_seconds),
                    services.workflows.outbox.deliver),
            JobSpec("workflow-deadlines", timedelta(minutes=5), services.workflows.run_deadlines),
            JobSpec("workflow-delivery", timedelta(seconds=services.settings.workflows.mail_interval_seconds),
                    services.workflows.deliveries.deliver),
            *([JobSpec("ldap-sync", timedelta(minutes=services.settings.directory.sync_interval_minutes),
                       services.directory.run_scheduled, lease=timedelta(hours=1))] if services.directory else [])]


def build_root(services: Services) -> resource.Resource:
    """The URL tree of ARCHITECTURE.md's stable contract."""
    from server.web.dss import build_dss_resource
    from server.web.auth import PasswordResetRequest
    from server.web.pki_http import Ocsp, Published, Tsa
    from server.web.rest import ApiV1
    from server.web.status import Health, Metrics

    s = services.settings
    root = resource.Resource()
    checks = {"database": lambda: (db.check(services.engine), {})[1], "hsm": services.hsm.check}
    root.putChild(b"health", Health(checks))
    root.putChild(b"metrics", Metrics())
    root.putChild(b"dss", _protect(services, build_dss_resource(s, services.signing, services.verification,
                                                                     services.brands)))
    from server.web.s4 import build_s4_resource

    archive = resource.Resource()
    archive.putChild(b"s4", _protect(services, build_s4_resource(s, services.archive)))  # TR-ESOR S.4
    root.putChild(b"archive", archive)
    soap = resource.Resource()
    soap.putChild(b"admin", _protect(services, _BuiltOnFirstRequest(  # workflows for ERP/DMS; spyne: ~4.5 MB
        lambda: _admin_resource(s, services.workflows))))
    root.putChild(b"soap", soap)
    from server.web.twofactor import TwoFactorRoot

    services.users.twofactor = services.twofactor  # type: ignore[attr-defined]  # the guard asks it (web.auth)
    v1 = ApiV1(services.signing, services.verification, s.server.public_base_url,
               lambda: services.remote_signing, services.remote_overview, brands=services.brands)
    v1.putChild(b"2fa", TwoFactorRoot(services.twofactor))
    from server.web.workflows import WorkflowsRoot

    v1.putChild(b"workflows", WorkflowsRoot(services.workflows, services.twofactor, _trusted_proxies(s)))
    from server.web.archive import ArchiveRoot

    v1.putChild(b"archive", ArchiveRoot(services.archive))
    from server.identity.apiclients import ApiClientService
    from server.web.apiclients import ApiClientsRoot

    v1.putChild(b"api-clients", ApiClientsRoot(ApiClientService(services.users, services.audit), services.brands))
    api = resource.Resource()
    api.putChild(b"v1", _protect(services, v1, public={b"password-reset": PasswordResetRequest(services.users)}))
    root.putChild(b"api", api)
    root.putChild(b"tsa", Tsa(services.tsa.respond))
    root.putChild(b"ocsp", Ocsp(services.ocsp.respond))
    root.putChild(b"crl", Published(services.ca.current_crl, b".crl", b"application/pkix-crl"))
    root.putChild(b"ca", Published(services.ca.ca_certificate_der, b".crt", b"application/pkix-cert"))
    from server.remote.csc_service import CscPolicy, CscService, internal_timestamp
    from server.web.csc import CscApi

    csc = CscService(services.engine, services.audit, services.users, services.twofactor, services.hsm.get,
                     CscPolicy.from_settings(s.csc), timestamp=internal_timestamp(services.tsa.respond))
    from server.web.portal import PortalApp
    from server.audit.stats import daily_counts
    from server.web.portal.site import Portal
    from server.workflows.overview import WorkflowOverview

    root.putChild(b"portal", Portal(PortalApp(services.users, services.twofactor, services.portal_sessions,
                                              services.signing, services.verification, services.ca, services.audit,
                                              lambda: services.directory, checks, lambda: services.workflows,
                                              services.brands, s.path(s.branding.templates),
                                              services.remote_overview, lambda: services.archive,
                                              functools.partial(daily_counts, services.engine),
                                              WorkflowOverview(services.engine)),
                                    _trusted_proxies(s)))
    root.putChild(b"csc", CscApi(csc, trusted_proxies=_trusted_proxies(s), public_base_url=s.server.public_base_url))
    return root


def _admin_resource(settings: Settings, workflows: WorkflowService) -> resource.IResource:
    """``/soap/admin`` itself: importing spyne and generating its application and WSDL."""
    from server.web.soap_admin import build_admin_resource

    return build_admin_resource(settings, workflows)


class _BuiltOnFirstRequest(resource.Resource):
    """A leaf resource made by ``build`` when it is first requested, then every request rendered by it: an idle
    worker then loads none of its libraries. The reactor's thread renders; the lock keeps it built once anyway."""

    isLeaf = True

    def __init__(self, build: Callable[[], resource.IResource]) -> None:
        super().__init__()
        self._build = build
        self._built: resource.IResource | None = None
        self._lock = threading.Lock()

    def render(self, request: Any) -> bytes | int:
        with self._lock:
            if self._built is None:
                self._built = self._build()
        return self._built.render(request)


def _trusted_proxies(settings: Settings) -> frozenset[str]:
    """auth.trusted_proxies as a set of addresses."""
    return frozenset(a.strip() for a in settings.auth.trusted_proxies.split(",") if a.strip())


def _protect(services: Services, wrapped: resource.IResource,
             public: dict[bytes, resource.IResource] | None = None) -> resource.IResource:
    """``wrapped`` behind HTTP Basic; each route's permission is in server.web.auth.ROUTES."""
    from server.web.auth import protect

    from server.identity.client_certs import ClientCertificateService
    from server.identity.wssecurity import KEY_FILE, WsSecurity, WssPolicy

    auth = services.settings.auth
    wss = WsSecurity(services.users, services.settings.path(KEY_FILE), WssPolicy.from_settings(services.settings.wssecurity))
    certs = ClientCertificateService(services.engine, services.audit, services.ca) if auth.client_certificates else None
    return protect(wrapped, services.users, auth.realm, public,
                   trusted_proxies=_trusted_proxies(services.settings),
                   wss=wss, client_certs=certs)
