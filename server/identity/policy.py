"""The one place that decides every permission of Siegel: deny by default.

Every operation Siegel offers is an :class:`Action`. :data:`PERMISSIONS` says, for each role, which
actions it may perform; an action a role is not listed with, and an action in no list at all, is
denied. Transports (REST, DSS, the portal, the CLI on behalf of a user) ask :func:`allowed` or
:func:`require` before they call the domain.

Ownership: actions in :data:`OWNED` act on something that belongs to an account (a document, a
workflow step, a prepared two-step signature, one's own password). With ``owner_id`` given they are
allowed only on the principal's own things, unless the role is listed in :data:`ANY_OWNER` for that
action (an admin cancelling a leaver's workflow, an auditor reading any document). Signing actions
are never in :data:`ANY_OWNER`: nobody signs in someone else's name. Which key a signature uses is
not a role's choice either: :class:`server.signing.keys.SigningKeys` gives the principal its own key
or a key explicitly granted to it (``siegel key grant``) and treats every other label as unknown, so
an admin's signature is always made with the admin's own (or granted) key.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Mapping

from server.errors import Code, SiegelError
from server.identity.users import Principal, Role


class Action(StrEnum):
    # signing and verification (REST /api/v1, DSS, CLI on behalf of a user)
    SIGN = "sign"                          # sign documents with one's own or a granted key
    SIGN_HASH = "sign_hash"                # sign a digest sent by the caller (the document stays away)
    TWO_STEP = "two_step"                  # prepare / complete a signature made with a key outside Siegel
    EXTEND = "extend"                      # raise a signature's level (DSS ReturnUpdatedSignature)
    VERIFY = "verify"                      # verify signatures, get the validation report
    REMOTE_SIGN = "remote_sign"            # sign over the CSC API (Siegel's /csc/v2 with one's own or a granted key,
    #                                        or a remote service's key); each authorisation needs PIN + OTP
    # own account
    WHOAMI = "whoami"                      # who am I (any authenticated account)
    API_INFO = "api_info"                  # the API's description (GET /api/v1, openapi.json)
    PASSWORD_CHANGE = "password_change"    # change one's own password (owned)
    SECOND_FACTOR = "second_factor"        # enrol / remove one's own 2FA (owned; later issue)
    PORTAL_LOGIN = "portal_login"          # sign in to the web portal
    # documents and workflows (workflow / portal issues)
    DOCUMENT_READ = "document_read"        # see a document and its signatures (owned)
    DOCUMENT_CANCEL = "document_cancel"    # withdraw a document / cancel its workflow (owned)
    WORKFLOW_START = "workflow_start"      # start a workflow from a template
    WORKFLOW_READ = "workflow_read"        # see a workflow instance and its steps (owned)
    STEP_ACT = "step_act"                  # sign, approve or reject a step assigned to oneself (owned)
    TEMPLATE_READ = "template_read"        # see workflow and appearance templates
    TEMPLATE_MANAGE = "template_manage"    # create, change, retire templates
    # archive (TR-ESOR S.4)
    ARCHIVE_SUBMIT = "archive_submit"      # put documents into the long-term archive
    ARCHIVE_READ = "archive_read"          # retrieve archived documents and evidence records
    ARCHIVE_DELETE = "archive_delete"      # delete an archive object (with a reason; logged)
    ARCHIVE_RENEW = "archive_renew"        # renew timestamps and hash trees now (REST; the archive-renew job too)
    # administration
    USER_ADMIN = "user_admin"              # add, disable, change the role of accounts
    APICLIENT_ADMIN = "apiclient_admin"    # create, list and revoke API clients
    KEY_GRANT = "key_grant"                # let an account sign with a key that is not its own
    CA_ADMIN = "ca_admin"                  # issue and revoke certificates, issue CRLs
    DIRECTORY_SYNC = "directory_sync"      # run the LDAP / AD synchronisation
    AUDIT_READ = "audit_read"              # read the audit log
    AUDIT_VERIFY = "audit_verify"          # check the audit log's hash chain
    SYSTEM_STATUS = "system_status"        # the admin dashboard's view of jobs, HSM and database
    REMOTE_ACCOUNTS = "remote_accounts"    # the remote signing accounts: credentials, certificates, signature counts
    BRAND_ADMIN = "brand_admin"            # create and change brands (names, logo, colours, links, mail sender)


_SIGNING = frozenset({Action.SIGN, Action.SIGN_HASH, Action.TWO_STEP, Action.EXTEND, Action.REMOTE_SIGN})
_ANY = frozenset({Action.WHOAMI, Action.API_INFO, Action.VERIFY})
_PERSON = frozenset({Action.PASSWORD_CHANGE, Action.SECOND_FACTOR, Action.PORTAL_LOGIN, Action.DOCUMENT_READ})

PERMISSIONS: Mapping[Role, frozenset[Action]] = {
    Role.ADMIN: _ANY | _PERSON | _SIGNING | {
        Action.DOCUMENT_CANCEL, Action.WORKFLOW_START, Action.WORKFLOW_READ, Action.STEP_ACT,
        Action.TEMPLATE_READ, Action.TEMPLATE_MANAGE, Action.ARCHIVE_SUBMIT, Action.ARCHIVE_READ,
        Action.ARCHIVE_DELETE, Action.ARCHIVE_RENEW, Action.USER_ADMIN, Action.APICLIENT_ADMIN, Action.KEY_GRANT,
        Action.CA_ADMIN, Action.DIRECTORY_SYNC, Action.AUDIT_READ, Action.AUDIT_VERIFY, Action.SYSTEM_STATUS,
        Action.REMOTE_ACCOUNTS, Action.BRAND_ADMIN},
    Role.AUDITOR: _ANY | _PERSON | {
        Action.WORKFLOW_READ, Action.TEMPLATE_READ, Action.ARCHIVE_READ, Action.AUDIT_READ, Action.AUDIT_VERIFY,
        Action.SYSTEM_STATUS},
    Role.TEMPLATE_MANAGER: _ANY | _PERSON | _SIGNING | {
        Action.DOCUMENT_CANCEL, Action.WORKFLOW_START, Action.WORKFLOW_READ, Action.STEP_ACT,
        Action.TEMPLATE_READ, Action.TEMPLATE_MANAGE},
    Role.SIGNER: _ANY | _PERSON | _SIGNING | {
        Action.DOCUMENT_CANCEL, Action.WORKFLOW_START, Action.WORKFLOW_READ, Action.STEP_ACT, Action.TEMPLATE_READ,
        Action.ARCHIVE_SUBMIT, Action.ARCHIVE_READ},
    # A system account (ERP, DMS): no portal, no 2FA, no workflow steps of its own to act on.
    Role.INTEGRATION: _ANY | _SIGNING | {
        Action.DOCUMENT_READ, Action.DOCUMENT_CANCEL, Action.WORKFLOW_START, Action.WORKFLOW_READ,
        Action.TEMPLATE_READ, Action.ARCHIVE_SUBMIT, Action.ARCHIVE_READ, Action.ARCHIVE_DELETE},
}

OWNED: frozenset[Action] = frozenset({
    Action.TWO_STEP, Action.PASSWORD_CHANGE, Action.SECOND_FACTOR, Action.DOCUMENT_READ, Action.DOCUMENT_CANCEL,
    Action.WORKFLOW_READ, Action.STEP_ACT, Action.ARCHIVE_READ, Action.ARCHIVE_DELETE})
"""Actions on something an account owns: with ``owner_id``, only the owner's (see ANY_OWNER)."""

ANY_OWNER: Mapping[Action, frozenset[Role]] = {
    Action.DOCUMENT_READ: frozenset({Role.ADMIN, Role.AUDITOR}),
    Action.DOCUMENT_CANCEL: frozenset({Role.ADMIN}),
    Action.WORKFLOW_READ: frozenset({Role.ADMIN, Role.AUDITOR}),
    Action.ARCHIVE_READ: frozenset({Role.ADMIN, Role.AUDITOR}),  # an archive object belongs to its submitter
    Action.ARCHIVE_DELETE: frozenset({Role.ADMIN}),
}
"""Roles that may perform an owned action on anyone's things. No signing action is here, nor STEP_ACT."""

assert not (set(ANY_OWNER) & _SIGNING) and Action.STEP_ACT not in ANY_OWNER  # nobody signs in another's name


def allowed(principal: Principal, action: Action | str, owner_id: int | None = None) -> bool:
    """Whether ``principal`` may perform ``action`` (on a thing of ``owner_id``, when given). Deny by default:
    an unknown role or action, or an action no table lists for the role, is refused."""
    try:
        role = Role(principal.role)
        act = Action(action)
    except ValueError:
        return False
    if act not in PERMISSIONS.get(role, frozenset()):
        return False
    if owner_id is not None and owner_id != principal.user_id:
        if act in _SIGNING:
            return False
        if act in OWNED and role not in ANY_OWNER.get(act, frozenset()):
            return False
    return True


def require(principal: Principal, action: Action | str, owner_id: int | None = None) -> None:
    """Raise SiegelError(FORBIDDEN) unless :func:`allowed`; the message names the role and the action."""
    if not allowed(principal, action, owner_id):
        role = getattr(principal.role, "value", principal.role)
        whose = " on another account's item" if owner_id is not None and owner_id != principal.user_id else ""
        raise SiegelError(Code.FORBIDDEN, f"the role {role} may not perform {str(action)!r}{whose} "
                                          f"(account {principal.name})")


# --- second factor -----------------------------------------------------------------------------------

NO_SECOND_FACTOR: frozenset[Role] = frozenset({Role.INTEGRATION})
"""Roles never asked for a second factor: system accounts (API clients) have no person to ask."""


def needs_second_factor(principal: Principal, required_roles: frozenset[str]) -> bool:
    """Whether requests of ``principal`` need a second factor: its role is one of ``required_roles``
    (setting twofactor.required_roles, default admin), unless it is a system role. Signing with a
    qualified remote key (REMOTE_SIGN) always needs one, bound to the hashes; the Remote signing issue
    asks :meth:`server.identity.twofactor.TwoFactorService.verify_otp` for that itself."""
    try:
        role = Role(principal.role)
    except ValueError:
        return True  # unknown roles are denied anyway; never let them skip the second factor
    return role.value in required_roles and role not in NO_SECOND_FACTOR
