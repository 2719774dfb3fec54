"""SQLAlchemy 2 models. Every table change comes with an Alembic migration."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    """A person or system account (the Identity issue extends it)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    role: Mapped[str] = mapped_column(String(32), nullable=False)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="local", server_default="local")
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)  # directory id
    display_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    failed_logins: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditEntry(Base):
    """One link of the hash-chained, append-only audit log."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    action: Mapped[str] = mapped_column(String(100), nullable=False)
    target: Mapped[str] = mapped_column(String(500), nullable=False)
    details: Mapped[str] = mapped_column(Text, nullable=False)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AuditHead(Base):
    """The single row naming the last audit entry; it makes a truncated tail detectable."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class CertificateAuthority(Base):
    """A CA of the internal PKI; its key lives in the HSM under ``key_label``."""

    __tablename__ = "certificate_authorities"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    parent: Mapped[str | None] = mapped_column(String(64), ForeignKey("certificate_authorities.name"), nullable=True)
    key_label: Mapped[str] = mapped_column(String(200), nullable=False)
    certificate_serial: Mapped[str] = mapped_column(String(64), nullable=False)
    der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    crl_number: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Certificate(Base):
    """Every certificate the internal CAs issued (CA certificates included)."""

    __tablename__ = "certificates"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)  # lower-case hex
    issuer: Mapped[str] = mapped_column(String(64), nullable=False)  # CA name; a root names itself
    profile: Mapped[str] = mapped_column(String(32), nullable=False)
    subject: Mapped[str] = mapped_column(String(1000), nullable=False)
    user_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("users.id"), nullable=True)
    key_label: Mapped[str] = mapped_column(String(200), nullable=False)
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Crl(Base):
    """An issued CRL; the newest per CA is served at /crl/<ca>.crl."""

    __tablename__ = "crls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ca: Mapped[str] = mapped_column(String(64), ForeignKey("certificate_authorities.name"), nullable=False)
    number: Mapped[int] = mapped_column(BigInteger, nullable=False)
    this_update: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    next_update: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class IssuedTimestamp(Base):
    """One RFC 3161 token, by its serial number (from the counter ``tsa_serial``: unique across processes
    and nodes)."""

    __tablename__ = "issued_timestamps"

    serial: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                        autoincrement=False)
    gen_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    hash_algorithm: Mapped[str] = mapped_column(String(16), nullable=False)
    imprint: Mapped[str] = mapped_column(String(128), nullable=False)
    policy: Mapped[str] = mapped_column(String(100), nullable=False)


class Counter(Base):
    """A number handed out in blocks: a process takes ``value + 1 .. value + n`` by adding ``n``."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, nullable=False)


class SigningState(Base):
    """A prepared two-step signature: the signed attributes wait for a value made outside Siegel."""

    __tablename__ = "signing_states"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # random, handed to the caller
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    level: Mapped[str] = mapped_column(String(8), nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False)  # JSON: signed attributes, digest, chain


class Job(Base):
    """A scheduled job; a node runs it only while it holds the lease, so no two nodes run it at once."""

    __tablename__ = "jobs"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    next_run: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_ok: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class KeyGrant(Base):
    """An account may sign with a key that is not its own (a company seal, a department's key)."""

    __tablename__ = "key_grants"

    key_label: Mapped[str] = mapped_column(String(200), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"), primary_key=True)
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    granted_by: Mapped[str] = mapped_column(String(200), nullable=False)


class Group(Base):
    """A group of accounts, local or synchronised from the directory (``external_id``)."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="local", server_default="local")
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(Integer, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class ApiClient(Base):
    """A key and secret (argon2id hash) with which a system authenticates as an integration account."""

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_key: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    secret_hash: Mapped[str] = mapped_column(String(200), nullable=False)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    brand_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("brands.id", ondelete="SET NULL"), nullable=True)


class LoginFailure(Base):
    """Failed logins per source address (the lockout per address; counted here so all workers see it)."""

    __tablename__ = "login_failures"

    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_failure_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PasswordReset(Base):
    """A single-use password reset token, stored as its SHA-256 hash."""

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DirectorySync(Base):
    """The one row of the LDAP / AD synchronisation: its high-water mark and how the last runs went."""

    __tablename__ = "directory_sync"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    change_attribute: Mapped[str | None] = mapped_column(String(32), nullable=True)  # what high_water counts in
    high_water: Mapped[str | None] = mapped_column(String(100), nullable=True)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_full_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_ok_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_summary: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON of the last SyncSummary
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class DirectoryAccount(Base):
    """Where a synchronised account (``users.source == 'directory'``) is in the directory now."""

    __tablename__ = "directory_accounts"

    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    dn: Mapped[str] = mapped_column(String(1000), nullable=False, index=True)
    change_mark: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # The sync disabled the account (disabled or gone in the directory), so the sync may enable it again;
    # an account an administrator disabled stays disabled whatever the directory says.
    disabled_by_sync: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default="0")
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)  # last written by a sync


class WssNonce(Base):
    """A WS-Security UsernameToken nonce seen once (SHA-256 of user and nonce), kept until its Created time
    has left the accepted window; then the row is swept."""

    __tablename__ = "wss_nonces"

    nonce_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)


class WssDigestSecret(Base):
    """An API client's secret for WS-Security PasswordDigest, encrypted (AES-GCM, key in secrets/)."""

    __tablename__ = "wss_digest_secrets"

    client_id: Mapped[int] = mapped_column(Integer, ForeignKey("api_clients.id", ondelete="CASCADE"),
                                           primary_key=True)
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # nonce (12 bytes) + ciphertext
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ClientCertificate(Base):
    """A TLS client certificate mapped to the account it authenticates as."""

    __tablename__ = "client_certificates"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the DER, hex
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                                         index=True)
    issuer: Mapped[str] = mapped_column(String(1000), nullable=False)
    serial: Mapped[str] = mapped_column(String(64), nullable=False)  # hex
    subject: Mapped[str] = mapped_column(String(1000), nullable=False)
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class TwoFactor(Base):
    """An account's second factors (migration 0008): TOTP secret (AES-GCM under the installation key),
    the last TOTP time step accepted (no reuse), SMS number, wrong second factors in a row."""

    __tablename__ = "twofactor"

    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # nonce (12 bytes) + ciphertext
    totp_created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    totp_confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)  # E.164
    otp_failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class RecoveryCode(Base):
    """A single-use 2FA recovery code (80 random bits), stored as its SHA-256 hash."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                                         index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class OtpCode(Base):
    """A one-time code sent by e-mail or SMS (HMAC-SHA256 under the installation key), for a purpose and
    optionally bound to data (SHA-256 of it); dead when used, expired or after too many wrong tries."""

    __tablename__ = "otp_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                                         index=True)
    channel: Mapped[str] = mapped_column(String(8), nullable=False)  # email | sms
    purpose: Mapped[str] = mapped_column(String(64), nullable=False)
    binding_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CscToken(Base):
    """A bearer token of the CSC API (/csc/v2), stored as the SHA-256 of the token (migration 0010)."""

    __tablename__ = "csc_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                                         index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # access | code (OAuth2 authorization code)
    client_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    redirect_uri: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    code_challenge: Mapped[str | None] = mapped_column(String(200), nullable=True)  # PKCE S256
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # OAuth2 scope "credential" (migration 0016): the code and its token authorise exactly these hashes
    scope: Mapped[str | None] = mapped_column(String(16), nullable=True)  # None: service
    credential_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    num_signatures: Mapped[int | None] = mapped_column(Integer, nullable=True)
    hash_algorithm: Mapped[str | None] = mapped_column(String(64), nullable=True)  # OID
    hashes: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of hex


class CscSad(Base):
    """Signature Activation Data of credentials/authorize (SHA-256 of the SAD): for one account and credential,
    the exact hashes (JSON list of hex), at most ``num_signatures`` signatures, until ``expires_at``."""

    __tablename__ = "csc_sads"

    sad_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                                         index=True)
    credential_id: Mapped[str] = mapped_column(String(200), nullable=False)
    hash_algorithm: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hashes: Mapped[str] = mapped_column(Text, nullable=False)
    num_signatures: Mapped[int] = mapped_column(Integer, nullable=False)
    used: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)


class RemoteOperation(Base):
    """A remote signing operation waiting for the user's PIN and OTP (adapters.remote_signing, migration 0016):
    the prepared two-step states of its documents and the digests the remote credential signs; never the PIN
    or OTP."""

    __tablename__ = "remote_operations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                                         index=True)
    account: Mapped[str] = mapped_column(String(200), nullable=False)
    credential_id: Mapped[str] = mapped_column(String(200), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # awaiting-otp | signing
    level: Mapped[str] = mapped_column(String(8), nullable=False)
    hash_algorithm: Mapped[str] = mapped_column(String(16), nullable=False)
    scheme: Mapped[str] = mapped_column(String(32), nullable=False)
    hashes: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list of hex, in document order
    states: Mapped[str] = mapped_column(Text, nullable=False)  # AES-GCM sealed JSON: two-step states, audit entries
    otp_sent: Mapped[bool] = mapped_column(Boolean, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    taker: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the signing worker's claim (0017)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # then taken over


class WorkflowTemplate(Base):
    """A named workflow template; its definitions are the versions (migration 0011)."""

    __tablename__ = "workflow_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    current_version: Mapped[int] = mapped_column(Integer, nullable=False)
    created_by: Mapped[int | None] = mapped_column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    brand_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("brands.id", ondelete="SET NULL"), nullable=True)


class WorkflowTemplateVersion(Base):
    """One immutable definition (JSON) of a template; a running workflow keeps the version it started with."""

    __tablename__ = "workflow_template_versions"

    template_id: Mapped[int] = mapped_column(Integer, ForeignKey("workflow_templates.id", ondelete="CASCADE"),
                                             primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    definition: Mapped[str] = mapped_column(Text, nullable=False)
    created_by: Mapped[int | None] = mapped_column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Workflow(Base):
    """A document on its way through a template's steps; ``revision`` names the current file of the document."""

    __tablename__ = "workflows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    template_id: Mapped[int] = mapped_column(Integer, ForeignKey("workflow_templates.id"), nullable=False, index=True)
    template_version: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # running | completed | rejected | cancelled | expired
    started_by: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"), nullable=False, index=True)
    document_name: Mapped[str] = mapped_column(String(255), nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    document_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    variables: Mapped[str] = mapped_column(Text, nullable=False)  # JSON object
    reason: Mapped[str | None] = mapped_column(String(2000), nullable=True)  # of a rejection or cancellation
    brand_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("brands.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    archive_aoid: Mapped[str | None] = mapped_column(String(64), nullable=True)  # where delivery archived it


class WorkflowStep(Base):
    """A step of a workflow; ``version`` changes with every claim and transition (conditional UPDATEs)."""

    __tablename__ = "workflow_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[int] = mapped_column(Integer, ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False,
                                             index=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)  # 1-based, the template's order
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # waiting | active | done | rejected | cancelled
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    next_reminder: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    reminders_sent: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WorkflowAssignment(Base):
    """Who acts on a step: an account (one user, or each member of a group) or an external e-mail address."""

    __tablename__ = "workflow_assignments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    step_id: Mapped[int] = mapped_column(Integer, ForeignKey("workflow_steps.id", ondelete="CASCADE"), nullable=False,
                                         index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("users.id"), nullable=True, index=True)
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    external: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # pending | done | rejected | superseded | cancelled
    action: Mapped[str | None] = mapped_column(String(16), nullable=True)  # what was done: sign | approve | reject
    acted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    auth_level: Mapped[str | None] = mapped_column(String(16), nullable=True)  # link | password | password+2fa
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    verification: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: indication of the new signature
    flag: Mapped[str | None] = mapped_column(String(500), nullable=True)  # why a pending one needs attention
    flagged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # a remote qualified signature the signer started (remote_operations.id) that waits for its OTP
    remote_operation: Mapped[str | None] = mapped_column(String(64), nullable=True)


class WorkflowLink(Base):
    """A single-use, expiring invitation link of an assignment, stored as the SHA-256 of its token."""

    __tablename__ = "workflow_links"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    assignment_id: Mapped[int] = mapped_column(Integer, ForeignKey("workflow_assignments.id", ondelete="CASCADE"),
                                               nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class OutboundMail(Base):
    """The outbound mail queue: queued → sending (leased) → sent; the Message-ID stays the same on every attempt."""

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    recipient: Mapped[str] = mapped_column(String(320), nullable=False)
    subject: Mapped[str] = mapped_column(String(500), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, index=True)  # queued | sending | sent
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    workflow_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("workflows.id", ondelete="SET NULL"),
                                                    nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PortalSession(Base):
    """A web portal session (migration 0013): the SHA-256 of the cookie's token, never the token itself."""

    __tablename__ = "portal_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                                         index=True)
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    stage: Mapped[str] = mapped_column(String(16), nullable=False)  # second-factor | full
    second_factor: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)


class PortalResult(Base):
    """A document signed in the portal with its validation report, for its owner to download (migration 0013)."""

    __tablename__ = "portal_results"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                                         index=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    mime_type: Mapped[str] = mapped_column(String(100), nullable=False)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    report: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)


class WorkflowDelivery(Base):
    """Where a completed workflow's document goes (a folder, an HTTP callback): queued → delivering → delivered,
    retried with a growing wait like the mail outbox."""

    __tablename__ = "workflow_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[int] = mapped_column(Integer, ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False,
                                             index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # folder | callback
    target: Mapped[str] = mapped_column(String(2000), nullable=False)  # the folder name or the callback URL
    state: Mapped[str] = mapped_column(String(16), nullable=False, index=True)  # queued | delivering | delivered
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


ARCHIVE_ALGORITHMS = ("sha256", "sha384", "sha512")
"""The hash algorithms archive items carry digests and hash trees in (one column pair each)."""


class ArchiveObject(Base):
    """An archive object (AOID random, URL-safe); its versions hold its items."""

    __tablename__ = "archive_objects"

    aoid: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True,
                                                 index=True)
    current_version: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    deletion_reason: Mapped[str | None] = mapped_column(String(2000), nullable=True)


class ArchiveVersion(Base):
    __tablename__ = "archive_versions"

    aoid: Mapped[str] = mapped_column(String(32), ForeignKey("archive_objects.aoid"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    metadata_json: Mapped[str] = mapped_column(Text, nullable=False)  # JSON object of strings


class ArchiveItem(Base):
    """One document (or only its hashes) of an archive object version; ``tree_<alg>`` null: not yet in a tree."""

    __tablename__ = "archive_items"
    __table_args__ = tuple(
        Index(f"ix_archive_items_pending_{a}", "id", sqlite_where=text(f"tree_{a} IS NULL AND digest_{a} IS NOT NULL"),
              postgresql_where=text(f"tree_{a} IS NULL AND digest_{a} IS NOT NULL")) for a in ARCHIVE_ALGORITHMS
    ) + (Index("ix_archive_items_stored", "digest_sha256", sqlite_where=text("stored"),
               postgresql_where=text("stored")),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    aoid: Mapped[str] = mapped_column(String(32), ForeignKey("archive_objects.aoid"), nullable=False, index=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    name: Mapped[str] = mapped_column(String(500), nullable=False)
    mime_type: Mapped[str] = mapped_column(String(200), nullable=False)
    stored: Mapped[bool] = mapped_column(Boolean, nullable=False)  # content in the store under digest_sha256
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    indication: Mapped[str | None] = mapped_column(String(32), nullable=True)  # of a verified signed document
    report: Mapped[str | None] = mapped_column(Text, nullable=True)  # its validation report (JSON)
    digest_sha256: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    digest_sha384: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    digest_sha512: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    tree_sha256: Mapped[int | None] = mapped_column(Integer, ForeignKey("archive_trees.id"), nullable=True)
    tree_sha384: Mapped[int | None] = mapped_column(Integer, ForeignKey("archive_trees.id"), nullable=True)
    tree_sha512: Mapped[int | None] = mapped_column(Integer, ForeignKey("archive_trees.id"), nullable=True)


class ArchiveTree(Base):
    """An RFC 4998 hash tree: chain 0 over items' digests (lineage = its algorithm), chain n > 0 a hash-tree
    renewal of the lineage's chain n-1. ``items``: the item ids of its leaves, ascending (int64 little endian)."""

    __tablename__ = "archive_trees"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    algorithm: Mapped[str] = mapped_column(String(16), nullable=False)
    lineage: Mapped[str] = mapped_column(String(16), nullable=False)
    chain: Mapped[int] = mapped_column(Integer, nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    tree: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    items: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    superseded: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)  # every leaf renewed
    renews_tree: Mapped[int | None] = mapped_column(Integer, ForeignKey("archive_trees.id"), nullable=True)
    renews_position: Mapped[int | None] = mapped_column(Integer, nullable=True)  # its last ATS the renewal covered
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ArchiveTimestampRow(Base):
    """A tree's archive timestamps: position 0 over its root, then each timestamp renewal (RFC 4998 5.2)."""

    __tablename__ = "archive_timestamps"

    tree_id: Mapped[int] = mapped_column(Integer, ForeignKey("archive_trees.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    token: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    tsa_not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ArchiveLeaf(Base):
    """An item's leaf in a renewal tree (chain > 0; chain 0 is ``archive_items.tree_<alg>``)."""

    __tablename__ = "archive_leaves"

    item_id: Mapped[int] = mapped_column(Integer, ForeignKey("archive_items.id"), primary_key=True)
    tree_id: Mapped[int] = mapped_column(Integer, ForeignKey("archive_trees.id"), primary_key=True, index=True)


class Brand(Base):
    """A company's look (migration 0014): names, logo, colours, footer links, base URL, mail sender, support."""

    __tablename__ = "brands"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    company_name: Mapped[str] = mapped_column(String(200), nullable=False)
    primary_color: Mapped[str] = mapped_column(String(7), nullable=False)
    accent_color: Mapped[str] = mapped_column(String(7), nullable=False)
    text_color: Mapped[str] = mapped_column(String(7), nullable=False)
    public_base_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    imprint_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    privacy_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    mail_from_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    mail_from_address: Mapped[str | None] = mapped_column(String(320), nullable=True)
    support_contact: Mapped[str | None] = mapped_column(String(320), nullable=True)
    logo: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    logo_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    logo_png: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
