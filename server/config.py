"""Typed settings.

The defaults live in one place, ``config/siegel.toml`` (every setting with a one-line comment).
An operator's file (``--config`` or ``SIEGEL_CONFIG``) overrides some of them, and
``SIEGEL_<SECTION>_<KEY>`` environment variables override both. Relative paths are taken
relative to the data directory (``--data-dir`` / ``SIEGEL_DATA_DIR``, default ``./var``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from server.errors import ConfigError

DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "config" / "siegel.toml"


def _secret() -> Any:
    return field(metadata={"secret": True})


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    workers: int
    public_base_url: str
    max_request_bytes: int
    max_streamed_bytes: int  # bodies that are hashed as they arrive (detached signing), never held
    max_xml_depth: int
    thread_pool_size: int
    shutdown_grace_seconds: float
    tls_names: str


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = _secret()
    pool_size: int = 0


@dataclass(frozen=True)
class HsmSettings:
    module: str
    token_label: str
    pin_file: str
    so_pin_file: str
    softhsm_conf: str
    token_dir: str
    pool_size: int


@dataclass(frozen=True)
class StoreSettings:
    path: str


@dataclass(frozen=True)
class LogSettings:
    level: str
    format: str


@dataclass(frozen=True)
class AuthSettings:
    credential_cache_seconds: float
    realm: str
    min_password_length: int  # shortest password accepted for local accounts
    lockout_threshold: int  # failed logins of an account before it is locked (growing delay)
    address_lockout_threshold: int  # failed logins from one source address before it is locked
    lockout_max_seconds: float  # the longest lock (the delay doubles per failure up to this)
    failure_window_seconds: float  # an address's failures are forgotten this long after its last one
    reset_minutes: int  # how long an e-mailed password reset link stays valid
    trusted_proxies: str  # comma-separated addresses of reverse proxies whose X-Forwarded-For names the client
    client_certificates: bool  # under --tls, ask for (optional) client certificates mapped to accounts
    client_ca_file: str  # PEM file of further CAs client certificates may come from (besides the internal CA)


@dataclass(frozen=True)
class WsSecuritySettings:
    created_window_seconds: float  # a PasswordDigest's wsu:Created may be at most this old
    future_skew_seconds: float  # ... and at most this far in the future (clock skew)


@dataclass(frozen=True)
class MailSettings:
    host: str  # SMTP relay
    port: int
    sender: str  # From: address
    starttls: bool  # STARTTLS before sending (certificate checked against the system store)
    timeout_seconds: float


@dataclass(frozen=True)
class TwofactorSettings:
    required_roles: str  # comma-separated roles whose requests need a second factor (X-Siegel-OTP)
    issuer: str  # the issuer an authenticator app shows next to the account name
    key_file: str  # 32-byte key (mode 0600, made on first use) encrypting TOTP secrets and keying sent-code hashes
    totp_window: int  # TOTP time steps (30 s) accepted either side of now
    code_minutes: int  # how long an e-mailed or texted code stays valid
    code_attempts: int  # wrong tries before a sent code is dead
    resend_seconds: int  # a second code on one channel within this time is refused


@dataclass(frozen=True)
class SmsSettings:
    url: str  # the SMS provider's HTTP(S) endpoint; empty: no SMS codes
    body: str  # JSON template of the POST body; string values may name $to, $text, $sender
    sender: str  # what $sender stands for (the sender name or number)
    auth: str  # none, basic (username + password in secret_file) or bearer (token in secret_file)
    username: str
    secret_file: str  # file with the password or token (mode 0600)
    ca_file: str  # PEM CA file of an https:// provider; empty: the system store
    timeout_seconds: float


@dataclass(frozen=True)
class PkiSettings:
    root_common_name: str
    issuing_common_name: str
    organization: str
    country: str
    key_algorithm: str
    root_lifetime_days: int
    issuing_lifetime_days: int
    user_lifetime_days: int
    service_lifetime_days: int
    crl_interval_minutes: int
    crl_validity_hours: int
    ocsp_validity_minutes: int


@dataclass(frozen=True)
class TsaSettings:
    policy_oid: str
    accuracy_seconds: int
    clients: str
    client_timeout_seconds: float
    client_retries: int


@dataclass(frozen=True)
class JobsSettings:
    poll_seconds: float


@dataclass(frozen=True)
class SigningSettings:
    default_level: str


@dataclass(frozen=True)
class ValidationSettings:
    trust_roots: str  # comma-separated certificate files (PEM or DER) trusted beside the internal root
    allow_fetching: bool  # fetch OCSP responses and CRLs named in certificates while verifying


@dataclass(frozen=True)
class AppearanceSettings:
    templates: str  # folder of the operator's appearance templates (one TOML file each), beside the shipped ones
    default: str  # template of a visible signature whose request names none


@dataclass(frozen=True)
class DirectorySettings:
    enabled: bool  # synchronise accounts from LDAP / Active Directory and let directory users log in by binding
    servers: str  # comma-separated ldaps://host[:port] or ldap://host[:port] URLs, tried in order
    start_tls: bool  # StartTLS on ldap:// URLs before binding
    ca_file: str  # PEM file of the CA(s) the directory's TLS certificate must chain to; empty: the system store
    bind_dn: str  # the service account Siegel reads the directory with
    bind_password_file: str  # file holding that account's password (mode 0600)
    user_base: str  # base DN of the user search (subtree)
    user_filter: str  # LDAP filter selecting the accounts Siegel knows
    group_base: str  # base DN of the group search (subtree)
    group_filter: str  # LDAP filter selecting groups
    username_attribute: str  # Siegel account name: sAMAccountName (AD) or uid
    upn_attribute: str  # userPrincipalName (AD); empty when the directory has none
    mail_attribute: str  # e-mail address; the UPN stands in when it is empty
    display_name_attribute: str  # display name, comma-separated attributes tried in order
    id_attribute: str  # stable id surviving renames: objectGUID (AD) or entryUUID
    group_name_attribute: str  # what role_groups and enrol_groups name a group by
    member_attribute: str  # a group's members (DNs of users and of nested groups)
    role_groups: str  # "group=role, group=role": directory groups (nested membership counts) giving a role; first match wins
    default_role: str  # role of a synchronised account in none of role_groups
    enrol_groups: str  # comma-separated groups whose members get an HSM key and a certificate automatically
    disabled_attribute: str  # attribute marking disabled accounts (userAccountControl on AD); empty: none
    disabled_value: str  # bit:N (disabled when that bit is set, bit:2 on AD) or a value compared ignoring case
    nested_groups: str  # auto, in-chain (AD's LDAP_MATCHING_RULE_IN_CHAIN) or expand (Siegel walks the groups)
    change_attribute: str  # high-water mark: auto, uSNChanged (AD), entryCSN (OpenLDAP) or modifyTimestamp
    page_size: int  # entries per page of the simple paged results control
    timeout_seconds: float  # connect and response timeout per directory operation
    sync_interval_minutes: int  # how often the scheduled job "ldap-sync" runs an incremental sync
    full_sync_hours: int  # the job runs a full sync (which finds deleted accounts) when the last is older than this


@dataclass(frozen=True)
class CscSettings:
    name: str  # the service name credentials/info and info report
    region: str  # ISO 3166-1 alpha-2 country the service reports (info.region)
    token_minutes: int  # lifetime of an access token from auth/login
    sad_minutes: int  # lifetime of the SAD from credentials/authorize
    multisign: int  # the most signatures one authorisation may cover (numSignatures)
    oauth2_redirect_uris: str  # comma-separated redirect URIs OAuth2 clients may have codes sent to
    auth_mode: str  # explicit (credentials/authorize with PIN and OTP) or oauth2code (oauth2/authorize in the browser)


@dataclass(frozen=True)
class RemoteSigningSettings:
    accounts_file: str  # TOML file of the outside CSC services ([[account]] tables); empty: none
    timeout_seconds: float  # connect and response timeout of each call
    retries: int  # extra attempts after a connection error or a 5xx
    operation_minutes: int  # how long an operation waits for the user's PIN and OTP
    max_operations: int  # operations waiting at once (all workers: remote_operations)


@dataclass(frozen=True)
class WorkflowSettings:
    link_hours: int  # how long an invitation link works (once) after its step became due
    mail_interval_seconds: float  # how often the mail queue and the deliveries are worked through (and retried)
    mail_retry_max_seconds: float  # the longest wait between two attempts of a mail or delivery (doubling up to this)
    claim_seconds: float  # how long a step being signed stays claimed by one attempt (a crashed attempt frees it then)
    delivery_root: str  # folder deliveries write into sub-folders of this folder
    callback_key_file: str  # the HMAC key (32 bytes, 0600) signing HTTP callbacks; made on first use
    callback_timeout_seconds: float  # connect and response timeout of an HTTP callback


@dataclass(frozen=True)
class PortalSettings:
    idle_minutes: float  # a portal session ends after this long without a request
    absolute_hours: float  # and this long after its login, whatever happens
    second_factor_minutes: float  # how long the second-factor step of a login waits after the password
    result_minutes: float  # how long a document signed in the portal stays downloadable


@dataclass(frozen=True)
class BrandingSettings:
    company_name: str  # the default brand's name (while no brand is marked default)
    primary_color: str  # its colours (#rrggbb); also the starting colours of a new brand
    accent_color: str
    text_color: str
    imprint_url: str  # its footer links; empty: none
    privacy_url: str
    support_contact: str
    templates: str  # folder of the operator's template overrides (portal/, mail/), beside the shipped config/templates
    max_logo_bytes: int  # the largest logo file accepted
    max_logo_width: int  # pixels (PNG) or user units (SVG)
    max_logo_height: int


SIGNATURE_HORIZON_NAMES = r"rsa-[1-9][0-9]*|ecdsa-p(256|384|521)|ed25519|ed448|sha1|sha224|sha256|sha384|sha512"
"""The names archive.signature_horizons knows: a timestamp signature's key (rsa-BITS: RSA keys of BITS bits or more,
up to the next size listed) or the digest it signs with."""


@dataclass(frozen=True)
class ArchiveSettings:
    hash_algorithms: str  # comma-separated: one hash tree per algorithm and collection (the first is the primary)
    collect_seconds: float  # pending items wait at most this long for their tree
    collect_objects: int  # ... or until this many are pending
    max_tree_leaves: int  # the largest tree one collection builds
    invalid_signatures: str  # refuse | archive-with-report
    renew_timestamps_before_days: int  # renew a tree's timestamp this long before its TSA certificate expires
    algorithm_horizons: str  # comma-separated ALG=YYYY-MM-DD: until when a hash algorithm is trusted
    signature_horizons: str  # comma-separated SIG=YYYY-MM-DD: until when a timestamp signature's key or digest is trusted
    renew_check_hours: float  # how often the renewal job looks for trees due
    store_grace_seconds: float  # a put protects its file from removal this long (its row commits within it)


@dataclass(frozen=True)
class Settings:
    """The effective configuration of one Siegel instance."""

    data_dir: Path
    server: ServerSettings
    database: DatabaseSettings
    hsm: HsmSettings
    store: StoreSettings
    log: LogSettings
    auth: AuthSettings
    wssecurity: WsSecuritySettings
    mail: MailSettings
    twofactor: TwofactorSettings
    sms: SmsSettings
    pki: PkiSettings
    tsa: TsaSettings
    jobs: JobsSettings
    signing: SigningSettings
    validation: ValidationSettings
    appearance: AppearanceSettings
    directory: DirectorySettings
    csc: CscSettings
    remote_signing: RemoteSigningSettings
    workflows: WorkflowSettings
    portal: PortalSettings
    archive: ArchiveSettings
    branding: BrandingSettings

    def path(self, value: str) -> Path:
        """A configured path, relative ones taken from the data directory."""
        p = Path(value)
        return p if p.is_absolute() else self.data_dir / p

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.path('siegel.db')}"

    def show(self) -> dict[str, dict[str, Any]]:
        """The effective settings as plain data, secrets masked."""
        out: dict[str, dict[str, Any]] = {"": {"data_dir": str(self.data_dir)}}
        for section in _section_types():
            obj = getattr(self, section)
            values: dict[str, Any] = {}
            for f in dataclasses.fields(obj):
                v = getattr(obj, f.name)
                if f.metadata.get("secret"):
                    v = mask_secret(v)
                values[f.name] = v
            out[section] = values
        return out


_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR"}


def mask_secret(value: str) -> str:
    """Hide a secret; URLs keep their shape with the password replaced."""
    if not value:
        return value
    if "://" in value:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", value)
    return "***"


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Settings)
    return {name: t for name, t in hints.items() if name != "data_dir"}


def _coerce(where: str, raw: Any, typ: type) -> Any:
    expected = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[typ]
    if isinstance(raw, str) and typ is not str:
        text = raw.strip()
        try:
            if typ is bool:
                if text.lower() in ("true", "1", "yes", "on"):
                    return True
                if text.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError(text)
            return typ(text)
        except ValueError:
            raise ConfigError(f"setting {where}: {raw!r} is not {expected}") from None
    if typ is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if typ is bool and not isinstance(raw, bool) or typ is not bool and isinstance(raw, bool) or not isinstance(raw, typ):
        raise ConfigError(f"setting {where}: {raw!r} is not {expected}")
    return raw


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None


def load(
    config_file: Path | None = None,
    data_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the effective settings: defaults, then the operator's file, then the environment."""
    env = os.environ if environ is None else environ
    merged = _read_toml(DEFAULTS_FILE)
    chosen = config_file or (Path(env["SIEGEL_CONFIG"]) if env.get("SIEGEL_CONFIG") else None)
    sources = [merged]
    if chosen is not None:
        sources.append(_read_toml(chosen))
    types = _section_types()
    values: dict[str, dict[str, Any]] = {name: {} for name in types}
    for source in sources:
        for section, body in source.items():
            if section not in types or not isinstance(body, dict):
                raise ConfigError(f"unknown configuration section [{section}] (known: {', '.join(types)})")
            names = {f.name: f for f in dataclasses.fields(types[section])}
            for key, raw in body.items():
                if key not in names:
                    raise ConfigError(f"unknown setting {section}.{key} (known: {', '.join(names)})")
                values[section][key] = raw
    prefix = "SIEGEL_"
    for section, typ in types.items():
        for f in dataclasses.fields(typ):
            name = f"{prefix}{section.upper()}_{f.name.upper()}"
            if name in env:
                values[section][f.name] = env[name]
    built: dict[str, Any] = {}
    for section, typ in types.items():
        hints = typing.get_type_hints(typ)
        kwargs = {}
        for f in dataclasses.fields(typ):
            if f.name not in values[section]:
                raise ConfigError(f"setting {section}.{f.name} is missing from {DEFAULTS_FILE}")
            kwargs[f.name] = _coerce(f"{section}.{f.name}", values[section][f.name], hints[f.name])
        built[section] = typ(**kwargs)
    root = data_dir or Path(env.get("SIEGEL_DATA_DIR") or "var")
    settings = Settings(data_dir=root.resolve(), **built)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    def need(ok: bool, where: str, form: str) -> None:
        if not ok:
            raise ConfigError(f"setting {where}: expected {form}")

    need(0 < s.server.port < 65536, "server.port", "a TCP port from 1 to 65535")
    need(1 <= s.server.workers <= 256, "server.workers", "a number of processes from 1 to 256")
    need(s.signing.default_level in ("B-B", "B-T", "B-LT", "B-LTA"), "signing.default_level",
         "one of B-B, B-T, B-LT, B-LTA")
    need(all(re.fullmatch(r"[A-Za-z0-9.:*-]+", n.strip()) for n in s.server.tls_names.split(",") if n.strip()),
         "server.tls_names", "comma-separated host names or IP addresses, e.g. siegel.example.com,10.0.0.5")
    need(re.match(r"^https?://[^/\s]+(/\S*)?$", s.server.public_base_url) is not None,
         "server.public_base_url", "an http:// or https:// URL such as http://127.0.0.1:8080")
    need(s.server.max_request_bytes >= 1024, "server.max_request_bytes", "a size in bytes of at least 1024")
    need(s.server.max_streamed_bytes >= s.server.max_request_bytes, "server.max_streamed_bytes",
         "a size in bytes of at least server.max_request_bytes")
    need(8 <= s.server.max_xml_depth <= 10000, "server.max_xml_depth", "a nesting depth from 8 to 10000")
    need(s.server.thread_pool_size >= 1, "server.thread_pool_size", "at least 1 thread")
    need(s.server.shutdown_grace_seconds >= 0, "server.shutdown_grace_seconds", "seconds, 0 or more")
    need(s.database.url == "" or re.match(r"^(sqlite|postgresql)(\+\w+)?://", s.database.url) is not None,
         "database.url", "empty (SQLite under the data directory), sqlite:///PATH or postgresql://USER@HOST/DB")
    need(s.database.pool_size >= 0, "database.pool_size", "0 (driver default) or a number of connections")
    need(s.hsm.module != "", "hsm.module", "the path of a PKCS#11 library")
    need(s.hsm.token_label != "", "hsm.token_label", "a token label")
    need(s.hsm.pool_size >= 1, "hsm.pool_size", "at least 1 session")
    need(s.log.level.upper() in _LEVELS, "log.level", "one of " + ", ".join(sorted(_LEVELS)))
    need(s.log.format in ("json", "text"), "log.format", "json or text")
    keys = ("rsa-3072", "rsa-4096", "ec-p256", "ec-p384")
    need(s.pki.key_algorithm in keys, "pki.key_algorithm", "one of " + ", ".join(keys))
    need(re.match(r"^[A-Z]{2}$", s.pki.country) is not None, "pki.country", "a two-letter ISO 3166 country code such as DE")
    for name in ("root_lifetime_days", "issuing_lifetime_days", "user_lifetime_days", "service_lifetime_days",
                 "crl_interval_minutes", "crl_validity_hours", "ocsp_validity_minutes"):
        need(getattr(s.pki, name) >= 1, f"pki.{name}", "a whole number of at least 1")
    need(s.pki.issuing_lifetime_days <= s.pki.root_lifetime_days, "pki.issuing_lifetime_days",
         "at most pki.root_lifetime_days")
    need(s.pki.crl_validity_hours * 60 > s.pki.crl_interval_minutes, "pki.crl_validity_hours",
         "longer than pki.crl_interval_minutes, so a new CRL exists before the old one expires")
    need(re.match(r"^[0-2](\.(0|[1-9][0-9]*))+$", s.tsa.policy_oid) is not None, "tsa.policy_oid",
         "a dotted object identifier such as 1.3.6.1.4.1.99999.1.1")
    need(s.tsa.accuracy_seconds >= 0, "tsa.accuracy_seconds", "seconds, 0 or more")
    need(all(c.strip() == "internal" or re.match(r"^https?://\S+$", c.strip()) for c in s.tsa.clients.split(",")),
         "tsa.clients", "a comma-separated list of TSA URLs, or internal for this server's /tsa")
    need(s.tsa.client_timeout_seconds > 0, "tsa.client_timeout_seconds", "seconds, more than 0")
    need(s.tsa.client_retries >= 0, "tsa.client_retries", "a number of retries, 0 or more")
    need(s.jobs.poll_seconds > 0, "jobs.poll_seconds", "seconds, more than 0")
    need(s.appearance.templates.strip() != "", "appearance.templates", "a folder of appearance templates")
    need(re.fullmatch(r"[A-Za-z0-9_-]+", s.appearance.default) is not None, "appearance.default",
         "the name of an appearance template (letters, digits, - and _), e.g. standard")
    need(s.auth.credential_cache_seconds >= 0, "auth.credential_cache_seconds", "seconds, 0 or more")
    need(8 <= s.auth.min_password_length <= 1024, "auth.min_password_length", "a length from 8 to 1024")
    need(s.auth.lockout_threshold >= 1, "auth.lockout_threshold", "a number of failed logins, at least 1")
    need(s.auth.address_lockout_threshold >= 1, "auth.address_lockout_threshold", "a number of failed logins, at least 1")
    need(s.auth.lockout_max_seconds >= 1, "auth.lockout_max_seconds", "seconds, at least 1")
    need(s.auth.failure_window_seconds >= 1, "auth.failure_window_seconds", "seconds, at least 1")
    need(1 <= s.auth.reset_minutes <= 10080, "auth.reset_minutes", "minutes from 1 to 10080 (a week)")
    need(10 <= s.wssecurity.created_window_seconds <= 86400, "wssecurity.created_window_seconds",
         "seconds from 10 to 86400")
    need(0 <= s.wssecurity.future_skew_seconds <= 3600, "wssecurity.future_skew_seconds", "seconds from 0 to 3600")
    need(0 < s.mail.port < 65536, "mail.port", "a TCP port from 1 to 65535")
    need(re.match(r"^[^@\s]+@[^@\s]+$", s.mail.sender) is not None, "mail.sender", "an address such as siegel@example.com")
    need(s.mail.timeout_seconds > 0, "mail.timeout_seconds", "seconds, more than 0")
    roles = {"admin", "auditor", "template_manager", "signer"}
    need(all(r.strip() in roles for r in s.twofactor.required_roles.split(",") if r.strip()),
         "twofactor.required_roles", "comma-separated roles of people: admin, auditor, template_manager, signer")
    need(0 <= s.twofactor.totp_window <= 10, "twofactor.totp_window", "time steps from 0 to 10")
    need(1 <= s.twofactor.code_minutes <= 60, "twofactor.code_minutes", "minutes from 1 to 60")
    need(1 <= s.twofactor.code_attempts <= 20, "twofactor.code_attempts", "tries from 1 to 20")
    need(s.twofactor.resend_seconds >= 0, "twofactor.resend_seconds", "seconds, 0 or more")
    need(s.sms.url == "" or re.match(r"^https?://\S+$", s.sms.url) is not None, "sms.url", "an http(s):// URL or empty")
    need(s.sms.auth in ("none", "basic", "bearer"), "sms.auth", "none, basic or bearer")
    need(s.sms.timeout_seconds > 0, "sms.timeout_seconds", "seconds, more than 0")
    d = s.directory
    if d.enabled:
        need(d.servers.strip() != "" and all(re.match(r"^ldaps?://[^/\s]+/?$", u.strip()) for u in d.servers.split(",")),
             "directory.servers", "comma-separated ldaps://host:636 or ldap://host:389 URLs")
        need(d.user_base.strip() != "", "directory.user_base", "the base DN of the user search")
        need(d.group_base.strip() != "", "directory.group_base", "the base DN of the group search")
        need(d.id_attribute.strip() != "", "directory.id_attribute", "objectGUID (AD) or entryUUID")
        need(d.username_attribute.strip() != "", "directory.username_attribute", "sAMAccountName (AD) or uid")
    need(d.nested_groups in ("auto", "in-chain", "expand"), "directory.nested_groups", "auto, in-chain or expand")
    need(d.change_attribute in ("auto", "uSNChanged", "entryCSN", "modifyTimestamp"), "directory.change_attribute",
         "auto, uSNChanged, entryCSN or modifyTimestamp")
    need(re.fullmatch(r"(bit:\d+|[^:].*)?", d.disabled_value) is not None, "directory.disabled_value",
         "bit:N or a value")
    need(1 <= d.page_size <= 10000, "directory.page_size", "entries per page from 1 to 10000")
    need(d.timeout_seconds > 0, "directory.timeout_seconds", "seconds, more than 0")
    need(d.sync_interval_minutes >= 1, "directory.sync_interval_minutes", "a whole number of at least 1")
    need(d.full_sync_hours >= 1, "directory.full_sync_hours", "a whole number of at least 1")
    need(1 <= s.csc.token_minutes <= 1440, "csc.token_minutes", "minutes from 1 to 1440")
    need(1 <= s.csc.sad_minutes <= 60, "csc.sad_minutes", "minutes from 1 to 60")
    need(1 <= s.csc.multisign <= 1000, "csc.multisign", "a number of signatures from 1 to 1000")
    need(s.csc.auth_mode in ("explicit", "oauth2code"), "csc.auth_mode", "explicit or oauth2code")
    need(1 <= s.workflows.link_hours <= 8760, "workflows.link_hours", "hours from 1 to 8760 (a year)")
    need(s.workflows.mail_interval_seconds > 0, "workflows.mail_interval_seconds", "seconds, more than 0")
    need(s.workflows.mail_retry_max_seconds >= 1, "workflows.mail_retry_max_seconds", "seconds, at least 1")
    need(s.workflows.claim_seconds >= 10, "workflows.claim_seconds", "seconds, at least 10")
    need(s.workflows.delivery_root.strip() != "", "workflows.delivery_root", "a folder")
    need(s.workflows.callback_timeout_seconds > 0, "workflows.callback_timeout_seconds", "seconds, more than 0")
    need(0 < s.portal.idle_minutes <= s.portal.absolute_hours * 60, "portal.idle_minutes",
         "minutes, more than 0 and at most portal.absolute_hours")
    need(0 < s.portal.second_factor_minutes <= 60, "portal.second_factor_minutes", "minutes from 0 to 60")
    need(s.portal.result_minutes > 0, "portal.result_minutes", "minutes, more than 0")
    need(re.match(r"^[A-Z]{2}$", s.csc.region) is not None, "csc.region", "a two-letter ISO 3166 country code such as DE")
    _validate_archive(s.archive)
    b = s.branding
    for name in ("primary_color", "accent_color", "text_color"):
        need(re.fullmatch(r"#[0-9A-Fa-f]{6}", getattr(b, name)) is not None, f"branding.{name}", "a colour #rrggbb")
    for name in ("imprint_url", "privacy_url"):
        need(getattr(b, name) == "" or re.match(r"^https?://\S+$", getattr(b, name)) is not None, f"branding.{name}",
             "an http(s):// URL or empty")
    need(b.company_name.strip() != "", "branding.company_name", "a company name")
    need(1024 <= b.max_logo_bytes <= 16 << 20, "branding.max_logo_bytes", "a size in bytes from 1024 to 16 MiB")
    need(16 <= b.max_logo_width <= 8000 and 16 <= b.max_logo_height <= 8000, "branding.max_logo_width",
         "pixels from 16 to 8000 (width and height)")
    r = s.remote_signing
    need(r.timeout_seconds > 0, "remote_signing.timeout_seconds", "seconds, more than 0")
    need(0 <= r.retries <= 10, "remote_signing.retries", "a number of retries from 0 to 10")
    need(1 <= r.operation_minutes <= 60, "remote_signing.operation_minutes", "minutes from 1 to 60")
    need(1 <= r.max_operations <= 10000, "remote_signing.max_operations", "a number of operations from 1 to 10000")


def _validate_archive(a: ArchiveSettings) -> None:
    from datetime import date

    def need(ok: bool, where: str, form: str) -> None:
        if not ok:
            raise ConfigError(f"setting archive.{where}: expected {form}")

    algorithms = [x.strip() for x in a.hash_algorithms.split(",") if x.strip()]
    need(bool(algorithms) and all(x in ("sha256", "sha384", "sha512") for x in algorithms)
         and len(set(algorithms)) == len(algorithms), "hash_algorithms",
         "distinct names of sha256, sha384, sha512, comma-separated, e.g. sha256,sha512")
    need(a.collect_seconds > 0, "collect_seconds", "seconds, more than 0")
    need(a.collect_objects >= 1, "collect_objects", "a number of items, at least 1")
    need(1 <= a.max_tree_leaves <= 1 << 24, "max_tree_leaves", "a number of leaves from 1 to 16777216")
    need(a.invalid_signatures in ("refuse", "archive-with-report"), "invalid_signatures", "refuse or archive-with-report")
    need(a.renew_timestamps_before_days >= 1, "renew_timestamps_before_days", "days, at least 1")
    need(a.renew_check_hours > 0, "renew_check_hours", "hours, more than 0")
    need(a.store_grace_seconds >= 0, "store_grace_seconds", "seconds, 0 or more")
    for entry in (e.strip() for e in a.algorithm_horizons.split(",") if e.strip()):
        name, _, day = entry.partition("=")
        try:
            date.fromisoformat(day.strip())
            ok = name.strip() in ("sha256", "sha384", "sha512")
        except ValueError:
            ok = False
        need(ok, "algorithm_horizons", "comma-separated ALG=YYYY-MM-DD, e.g. sha256=2035-12-31,sha512=2045-12-31")
    for entry in (e.strip() for e in a.signature_horizons.split(",") if e.strip()):
        name, _, day = entry.partition("=")
        try:
            date.fromisoformat(day.strip())
            ok = re.fullmatch(SIGNATURE_HORIZON_NAMES, name.strip()) is not None
        except ValueError:
            ok = False
        need(ok, "signature_horizons", "comma-separated SIG=YYYY-MM-DD where SIG is rsa-BITS, ecdsa-p256, ecdsa-p384, "
             "ecdsa-p521, ed25519, ed448 or a digest sha1, sha224, sha256, sha384, sha512, e.g. "
             "rsa-3000=2030-12-31,ecdsa-p256=2030-12-31")
