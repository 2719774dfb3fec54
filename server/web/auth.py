"""HTTP Basic authentication with twisted.cred, and the permission of every protected route.

:data:`ROUTES` is the one table of what each protected path and method needs: an
:class:`~server.identity.policy.Action` that :func:`server.identity.policy.allowed` decides for the
authenticated principal, :data:`PUBLIC` (no authentication), or :data:`DSS_OPERATION` (the action
follows from the SOAP body: Sign, Verify, Verify with ReturnUpdatedSignature). Deny by default: a
path under a protected mount that the table does not list is answered 404 (after authentication)
without reaching the resource behind; a method it does not list for the path, 405; an action the
role may not perform, 403 (problem JSON, or a SOAP fault with RequesterError / AuthenticationError on
/dss).

The checker verifies passwords off the reactor thread (argon2id is slow by design; the user
service caches verified credentials briefly). The client's address travels with the credentials to
the lockout per source address. The authenticated principal is put on the request as
``request.principal`` for the resource behind the guard.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any, Mapping

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer, threads
from twisted.web import resource
from twisted.web._auth.wrapper import UnauthorizedResource
from twisted.web.guard import BasicCredentialFactory, HTTPAuthSessionWrapper
from twisted.web.resource import IResource
from twisted.web.util import DeferredResource
from zope.interface import implementer

from server.errors import Code, SiegelError
from server.identity.policy import Action, allowed, require
from server.identity.users import Principal, UserService
from server.web.http import SOAP_PREFIXES, error_body, error_status, json_response, problem, render_deferred
from server.web.soap_prefix import SoapPrefix, scan_soap, soap_prefix

if TYPE_CHECKING:
    from server.identity.client_certs import ClientCertificateService
    from server.identity.wssecurity import WsSecurity

log = logging.getLogger("siegel.auth")

PUBLIC = "public"
DSS_OPERATION = "dss-operation"
Permission = Action | str

ROUTES: Mapping[str, Mapping[str, Permission]] = {
    "/api/v1": {"GET": Action.API_INFO},
    "/api/v1/openapi.json": {"GET": Action.API_INFO},
    "/api/v1/whoami": {"GET": Action.WHOAMI},
    "/api/v1/sign": {"POST": Action.SIGN},
    "/api/v1/sign-hash": {"POST": Action.SIGN_HASH},
    "/api/v1/sign/prepare": {"POST": Action.TWO_STEP},
    "/api/v1/sign/complete": {"POST": Action.TWO_STEP},  # the state's owner only (SigningService)
    "/api/v1/sign/remote/authorize": {"POST": Action.REMOTE_SIGN},  # the operation's owner only (RemoteSigning)
    "/api/v1/sign/remote/cancel": {"POST": Action.REMOTE_SIGN},
    "/api/v1/sign/remote/callback": {"GET": PUBLIC},  # the service's redirect; the state binds operation and user
    "/api/v1/remote-signing/accounts": {"GET": Action.REMOTE_ACCOUNTS},
    "/api/v1/verify": {"POST": Action.VERIFY},
    "/api/v1/password-reset": {"POST": PUBLIC},
    "/api/v1/2fa": {"DELETE": Action.SECOND_FACTOR},  # needs a valid second factor in the request as well
    "/api/v1/2fa/totp": {"POST": Action.SECOND_FACTOR},
    "/api/v1/2fa/totp/confirm": {"POST": Action.SECOND_FACTOR},
    "/api/v1/2fa/recovery-codes": {"POST": Action.SECOND_FACTOR},
    "/api/v1/2fa/otp": {"POST": Action.SECOND_FACTOR},  # PASSWORD_ONLY: how one gets a first code
    "/api/v1/password-reset/complete": {"POST": PUBLIC},
    "/dss": {"GET": PUBLIC, "POST": DSS_OPERATION},  # GET: the WSDL and its schemas
    "/archive/s4": {"GET": PUBLIC, "POST": DSS_OPERATION},  # TR-ESOR S.4 (server.web.s4); GET: WSDL and schemas
    "/soap/admin": {"GET": PUBLIC, "POST": DSS_OPERATION},  # server.web.soap_admin; GET: the spyne WSDL
    # The CSC API has its own authentication (auth/login with Basic, then bearer tokens; server.web.csc checks
    # Action.REMOTE_SIGN): not behind this guard, so PUBLIC here means "no HTTP Basic demanded by the guard".
    **{f"/csc/{version}/{method}": {"POST": PUBLIC} for version in ("v1", "v2") for method in (
        "info", "auth/login", "auth/revoke", "credentials/list", "credentials/info", "credentials/sendOTP",
        "credentials/authorize", "credentials/authorizeCheck", "signatures/signHash", "signatures/timestamp")},
    "/csc/v2/oauth2/authorize": {"GET": PUBLIC, "POST": PUBLIC},  # the user logs in there itself (its form)
    "/csc/v2/oauth2/token": {"POST": PUBLIC},
    # Signature workflows (server.web.workflows); ownership (starter, assignee) is the service's to decide.
    "/api/v1/workflows": {"POST": Action.WORKFLOW_START},
    "/api/v1/workflows/templates": {"GET": Action.TEMPLATE_READ, "POST": Action.TEMPLATE_MANAGE},
    "/api/v1/workflows/templates/{id}": {"GET": Action.TEMPLATE_READ, "PUT": Action.TEMPLATE_MANAGE,
                                         "DELETE": Action.TEMPLATE_MANAGE},
    "/api/v1/workflows/inbox": {"GET": Action.STEP_ACT},
    "/api/v1/workflows/link": {"GET": PUBLIC, "POST": PUBLIC},  # the single-use link token is the credential
    "/api/v1/workflows/link/document": {"GET": PUBLIC},
    "/api/v1/workflows/{id}": {"GET": Action.WORKFLOW_READ},
    "/api/v1/workflows/{id}/cancel": {"POST": Action.DOCUMENT_CANCEL},
    "/api/v1/workflows/{id}/document": {"GET": Action.DOCUMENT_READ},
    "/api/v1/workflows/{id}/history": {"GET": Action.WORKFLOW_READ},
    "/api/v1/workflows/{id}/certificate": {"GET": Action.WORKFLOW_READ},
    "/api/v1/workflows/{id}/steps/{step}": {"POST": Action.STEP_ACT},
    # The long-term archive (server.web.archive); ownership (the submitter) is the archive service's to decide.
    "/api/v1/archive/objects": {"GET": Action.ARCHIVE_READ, "POST": Action.ARCHIVE_SUBMIT},
    "/api/v1/archive/objects/{aoid}": {"GET": Action.ARCHIVE_READ, "DELETE": Action.ARCHIVE_DELETE},
    "/api/v1/archive/objects/{aoid}/evidence": {"GET": Action.ARCHIVE_READ},
    "/api/v1/archive/objects/{aoid}/items/{item}": {"GET": Action.ARCHIVE_READ},
    "/api/v1/archive/verify": {"POST": Action.VERIFY},  # an object's evidence: ARCHIVE_READ on it as well
    "/api/v1/archive/stats": {"GET": Action.ARCHIVE_READ},
    "/api/v1/archive/renew": {"POST": Action.ARCHIVE_RENEW},
    # API clients (server.web.apiclients): their list and brand; created and revoked with `siegel apiclient`
    "/api/v1/api-clients": {"GET": Action.APICLIENT_ADMIN},
    "/api/v1/api-clients/{key}": {"GET": Action.APICLIENT_ADMIN, "PUT": Action.APICLIENT_ADMIN},
}
"""Every protected route's permission: path (without query, no trailing slash) → method → permission. A
``{name}`` segment stands for any one path segment (an id); a path listed literally goes first."""

_PATTERNS = [(re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path))), methods)
             for path, methods in ROUTES.items() if "{" in path]

DSS_ACTIONS: Mapping[str, tuple[Action, ...]] = {
    "SignRequest": (Action.SIGN,),
    "VerifyRequest": (Action.VERIFY,),
    "VerifyRequest+ReturnUpdatedSignature": (Action.VERIFY, Action.EXTEND),
    # TR-ESOR S.4 at /archive/s4 (its Verify is the dss:VerifyRequest above: evidence records, no archive access)
    "ArchiveSubmissionRequest": (Action.ARCHIVE_SUBMIT,),
    "ArchiveUpdateRequest": (Action.ARCHIVE_SUBMIT,),
    "ArchiveRetrievalRequest": (Action.ARCHIVE_READ,),
    "ArchiveEvidenceRequest": (Action.ARCHIVE_READ,),
    "ArchiveDataRequest": (Action.ARCHIVE_READ,),
    "ArchiveDeletionRequest": (Action.ARCHIVE_DELETE,),
    "RetrieveInfoRequest": (Action.API_INFO,),
    # the project's admin service at /soap/admin (server.web.soap_admin); ownership is the workflow service's
    "StartWorkflow": (Action.WORKFLOW_START,),
    "GetWorkflowStatus": (Action.WORKFLOW_READ,),
    "CancelWorkflow": (Action.DOCUMENT_CANCEL,),
    "DownloadDocument": (Action.DOCUMENT_READ,),
    "ListTemplates": (Action.TEMPLATE_READ,),
    "GetTemplate": (Action.TEMPLATE_READ,),
    "CreateTemplate": (Action.TEMPLATE_MANAGE,),
    "UpdateTemplate": (Action.TEMPLATE_MANAGE,),
    "RetireTemplate": (Action.TEMPLATE_MANAGE,),
}
"""What a DSS, TR-ESOR or /soap/admin operation needs, by the body element (and ReturnUpdatedSignature among its OptionalInputs)."""


def permission_of(path: bytes, method: bytes) -> tuple[Permission | None, tuple[str, ...]]:
    """The permission of ``method`` on ``path`` and the methods the path offers; (None, ()) for no route."""
    text = path.split(b"?", 1)[0].decode("latin-1")
    methods = ROUTES.get(text)
    if methods is None:
        methods = next((m for pattern, m in _PATTERNS if pattern.fullmatch(text)), None)
    if methods is None:
        return None, ()
    verb = method.decode("latin-1").upper()
    return methods.get("GET" if verb == "HEAD" else verb), tuple(methods)


# --- DSS: which operation a SOAP body asks for ---------------------------------------------------------

def _operation(prefix: SoapPrefix) -> str | None:
    """The DSS_ACTIONS key of a scanned SOAP request, or None."""
    if prefix.operation == "VerifyRequest" and prefix.update:
        return "VerifyRequest+ReturnUpdatedSignature"
    return prefix.operation


def dss_operation(content: Any) -> str | None:
    """The DSS_ACTIONS key of the SOAP request in ``content`` (a file, read and rewound), or None."""
    return _operation(scan_soap(content))


def required_actions(request: Any, permission: Permission) -> tuple[Action, ...] | None:
    """The actions a request needs; None when any DSS operation would do (the body names none: the
    DSS service answers it with a fault and runs nothing)."""
    if permission == DSS_OPERATION:
        operation = _operation(soap_prefix(request))  # the scan the WS-Security check may have done already
        return DSS_ACTIONS.get(operation) if operation is not None else None  # an unknown one: answered as such
    return (Action(permission),)


# --- the checker --------------------------------------------------------------------------------------

class AddressedCredentials(UsernamePassword):
    """Basic credentials with the client address they came from (for the lockout per address)."""

    def __init__(self, username: bytes, password: bytes, address: str | None) -> None:
        super().__init__(username, password)
        self.address = address


def client_address(request: Any, trusted_proxies: frozenset[str] = frozenset()) -> str | None:
    """The address a request comes from: the peer's, or, when the peer is a trusted reverse proxy, the
    right-most X-Forwarded-For entry that is not a trusted proxy itself (entries left of it are the
    client's word and could be forged)."""
    peer = getattr(request.getClientAddress(), "host", None)
    if peer is None or peer not in trusted_proxies:
        return peer
    hops = [h.strip() for v in request.requestHeaders.getRawHeaders(b"x-forwarded-for", [])
            for h in v.decode("latin-1").split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted_proxies:
            return hop[:64]
    return peer


class AddressedBasicCredentialFactory(BasicCredentialFactory):
    def __init__(self, realm: str, trusted_proxies: frozenset[str] = frozenset()) -> None:
        super().__init__(realm)
        self._trusted = trusted_proxies

    def decode(self, response: bytes, request: Any) -> AddressedCredentials:
        credentials = super().decode(response, request)
        addressed = AddressedCredentials(credentials.username, credentials.password,
                                         client_address(request, self._trusted))
        addressed.otp = request.getHeader(b"x-siegel-otp")  # the second factor, when the account needs one
        return addressed


@implementer(ICredentialsChecker)
class PasswordChecker:
    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, users: UserService) -> None:
        self._users = users

    def requestAvatarId(self, credentials: Any) -> defer.Deferred[Principal]:
        try:
            name = credentials.username.decode("utf-8")
            password = credentials.password.decode("utf-8")
        except UnicodeDecodeError:
            return defer.fail(UnauthorizedLogin("credentials are not UTF-8"))
        address = getattr(credentials, "address", None)
        otp = getattr(credentials, "otp", None)
        hit = self._users.cached(name, password)  # a credential verified moments ago: no thread hop
        d = defer.succeed(hit) if hit is not None else threads.deferToThread(self._users.authenticate, name,
                                                                               password, address)

        def checked(principal: Principal | None) -> Any:
            if principal is None:
                raise UnauthorizedLogin("unknown user, wrong password, or locked")
            twofactor = getattr(self._users, "twofactor", None)  # set by the wiring (server.app)
            if twofactor is None or not twofactor.required(principal):
                return principal
            # The password is right; only now the second factor (a wrong one counts towards the lockout).
            return threads.deferToThread(twofactor.login, principal, name, password,
                                         otp.decode("utf-8", "replace") if otp else None, address
                                         ).addCallback(second)

        def second(outcome: Any) -> Any:
            if outcome is None:
                raise UnauthorizedLogin("locked")
            return outcome  # a LoginOutcome: the realm serves or refuses (second_factor_resource)

        return d.addCallback(checked)


# --- the guard ------------------------------------------------------------------------------------------

class _Refusal(resource.Resource):
    isLeaf = True

    def __init__(self, error: SiegelError | None, status: int | None = None, allow: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._error = error
        self._status = status
        self._allow = allow

    def render(self, request: Any) -> bytes:
        if self._error is None:  # 405
            request.setResponseCode(405)
            request.setHeader(b"allow", ", ".join(self._allow).encode())
            request.setHeader(b"content-type", b"application/problem+json")
            return problem(405, "Method not allowed", f"{request.method.decode('latin-1')} is not offered here; "
                                                      f"use {', '.join(self._allow)}", "method-not-allowed")
        ctype, body = error_body(request.path, self._error)
        request.setResponseCode(self._status or error_status(request.path, self._error))
        request.setHeader(b"content-type", ctype)
        return body


def authorize(request: Any, principal: Principal) -> resource.IResource | None:
    """None when ``principal`` may make ``request`` as ROUTES and the policy say, else the refusal."""
    permission, methods = permission_of(request.path, request.method)
    if not methods:
        return _Refusal(SiegelError(Code.NOT_FOUND, f"no resource at {request.path.decode('latin-1')}"))
    if permission is None:
        return _Refusal(None, allow=methods)
    if permission == PUBLIC:
        return None
    actions = required_actions(request, permission)
    try:
        if actions is None:
            if not any(allowed(principal, a) for acts in DSS_ACTIONS.values() for a in acts):
                require(principal, Action.VERIFY)
            return None
        for action in actions:
            require(principal, action)
    except SiegelError as exc:
        log.info("refused: %s %s for %s: %s", request.method.decode("latin-1"),
                 request.path.decode("latin-1"), principal.name, exc.message)
        return _Refusal(exc)
    return None


class _AsPrincipal(resource.Resource):
    """Renders the protected resource with the principal attached, once the route table allows it."""

    def __init__(self, wrapped: IResource, principal: Principal) -> None:
        super().__init__()
        self._wrapped = wrapped
        self._principal = principal
        self.isLeaf = getattr(wrapped, "isLeaf", False)

    def getChildWithDefault(self, path: bytes, request: Any) -> IResource:
        request.principal = self._principal
        refusal = authorize(request, self._principal)
        return refusal if refusal is not None else self._wrapped.getChildWithDefault(path, request)

    def render(self, request: Any) -> Any:
        request.principal = self._principal
        refusal = authorize(request, self._principal)
        return (refusal or self._wrapped).render(request)


@implementer(IRealm)
class _Realm:
    def __init__(self, wrapped: IResource) -> None:
        self._wrapped = wrapped

    def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces: Any) -> tuple[Any, IResource, Any]:
        if IResource not in interfaces:
            raise NotImplementedError("only web resources are offered")
        if not isinstance(avatar_id, Principal):  # a LoginOutcome of an account that needs a second factor
            return IResource, second_factor_resource(self._wrapped, avatar_id), lambda: None
        return IResource, _AsPrincipal(self._wrapped, avatar_id), lambda: None


class _WssRefusal(resource.Resource):
    """A refused WS-Security UsernameToken: 401 with a SOAP fault (wsse fault code, DSS Result in the detail)."""

    isLeaf = True

    def __init__(self, fault: Any) -> None:
        super().__init__()
        self._fault = fault

    def render(self, request: Any) -> bytes:
        from server.identity.wssecurity import fault_envelope

        log.info("WS-Security refused: %s %s: %s", request.method.decode("latin-1"), request.path.decode("latin-1"),
                 self._fault.message)
        request.setResponseCode(401)
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        return fault_envelope(self._fault)


def peer_certificate(request: Any) -> bytes | None:
    """The DER of the client certificate the TLS connection verified, or None."""
    if not request.isSecure():
        return None
    get = getattr(getattr(request.channel, "transport", None), "getPeerCertificate", None)
    cert = get() if get is not None else None
    if cert is None:
        return None
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.to_cryptography().public_bytes(Encoding.DER)  # type: ignore[no-any-return]


class _Gate(resource.Resource):
    """A protected mount: PUBLIC routes go to their resource directly, all others through the guard.

    Before HTTP Basic: on SOAP paths (SOAP_PREFIXES) a wsse:Security UsernameToken in the request
    authenticates (with Basic credentials as well, the request is refused: send one of them); without an
    Authorization header and a token, a verified TLS client certificate mapped to an account does (an
    unmapped, revoked or expired one is refused, 401)."""

    def __init__(self, wrapped: IResource, guarded: IResource, public: Mapping[bytes, IResource],
                 wss: WsSecurity | None = None, client_certs: ClientCertificateService | None = None,
                 trusted_proxies: frozenset[str] = frozenset(), users: UserService | None = None) -> None:
        super().__init__()
        self._wrapped = wrapped
        self._guarded = guarded
        self._public = dict(public)
        self._users = users
        self._wss = wss
        self._certs = client_certs
        self._trusted = trusted_proxies
        self.isLeaf = getattr(wrapped, "isLeaf", False)

    def _is_public(self, request: Any) -> bool:
        return permission_of(request.path, request.method)[0] == PUBLIC

    def _authenticated(self, principal: Principal | None) -> IResource:
        if principal is None:
            return _Refusal(SiegelError(Code.UNAUTHENTICATED, "the client certificate is not mapped to an enabled "
                                                              "account, has expired or is revoked"))
        twofactor = getattr(self._users, "twofactor", None)
        if twofactor is not None and twofactor.required(principal):
            return _Refusal(SiegelError(Code.UNAUTHENTICATED, f"the account {principal.name} needs a second factor, "
                                        "which a client certificate does not carry: use HTTP Basic with X-Siegel-OTP"))
        return _AsPrincipal(self._wrapped, principal)

    def _wss_failed(self, failure: Any) -> IResource:
        from server.identity.wssecurity import WssFault

        if failure.check(WssFault):
            return _WssRefusal(failure.value)
        log.error("WS-Security check failed: %s", failure.getTraceback())
        return _Refusal(SiegelError(Code.INTERNAL, "internal error"))

    def _other_credentials(self, request: Any) -> IResource | None:
        """A resource authenticating by WS-Security or client certificate; None: HTTP Basic decides."""
        basic = request.getHeader(b"authorization") is not None
        if self._wss is not None and request.method == b"POST" and request.path.startswith(SOAP_PREFIXES):
            from server.identity.wssecurity import FAILED_AUTHENTICATION, WssFault, token_of

            try:
                token = token_of(soap_prefix(request))
            except WssFault as fault:
                return _WssRefusal(fault)
            if token is not None:
                if basic:
                    return _WssRefusal(WssFault(FAILED_AUTHENTICATION, "the request carries HTTP Basic credentials "
                                                                       "and a WS-Security UsernameToken: send one"))
                d = threads.deferToThread(self._wss.authenticate, token, request.isSecure(),
                                          client_address(request, self._trusted))
                return DeferredResource(d.addCallbacks(lambda p: _AsPrincipal(self._wrapped, p), self._wss_failed))
        if basic:
            principal = self._cached_basic(request)
            return _AsPrincipal(self._wrapped, principal) if principal is not None else None
        if self._certs is not None:
            der = peer_certificate(request)
            if der is not None:
                d = threads.deferToThread(self._certs.authenticate, der)
                return DeferredResource(d.addCallback(self._authenticated))
        return None

    def _cached_basic(self, request: Any) -> Principal | None:
        """The account of a Basic credential verified moments ago (and needing no second factor), served
        without the guard: twisted.cred builds a wrapper class per login, a tenth of a small request's CPU.
        Anything else goes through the guard."""
        scheme, _, encoded = (request.getHeader(b"authorization") or b"").partition(b" ")
        if self._users is None or scheme.lower() != b"basic":
            return None
        try:
            credentials = BasicCredentialFactory(b"").decode(encoded.strip(), request)
            name, password = credentials.username.decode("utf-8"), credentials.password.decode("utf-8")
        except (LoginFailed, UnicodeDecodeError):
            return None
        principal = self._users.cached(name, password)
        twofactor = getattr(self._users, "twofactor", None)
        if principal is None or (twofactor is not None and twofactor.required(principal)):
            return None
        return principal

    def getChildWithDefault(self, path: bytes, request: Any) -> IResource:
        if self._is_public(request):
            if path in self._public:
                return self._public[path]
            return self._wrapped.getChildWithDefault(path, request)
        other = self._other_credentials(request)
        if other is not None:
            request.postpath.insert(0, request.prepath.pop())  # traversal goes on below, once authenticated
            return other
        return self._guarded.getChildWithDefault(path, request)

    def render(self, request: Any) -> Any:
        if self._is_public(request):
            return self._wrapped.render(request)
        return (self._other_credentials(request) or self._guarded).render(request)


class _Challenge(UnauthorizedResource):
    """Twisted's 401 with its WWW-Authenticate challenge, the body in the endpoint's kind: a SOAP fault on
    SOAP paths, else problem JSON (Twisted's own body is the plain word "Unauthorized")."""

    def render(self, request: Any) -> bytes:
        super().render(request)
        error = SiegelError(Code.UNAUTHENTICATED, "authentication required: send valid credentials "
                                                  "(HTTP Basic, a WS-Security UsernameToken or a client certificate)")
        ctype, body = error_body(request.path, error)
        request.setHeader(b"content-type", ctype)
        return b"" if request.method == b"HEAD" else body


class _GuardInKind(HTTPAuthSessionWrapper):
    """HTTPAuthSessionWrapper whose refusals are :class:`_Challenge`."""

    def _in_kind(self, answer: IResource) -> IResource:
        return _Challenge(self._credentialFactories) if isinstance(answer, UnauthorizedResource) else answer

    def _authorizedResource(self, request: Any) -> IResource:
        return self._in_kind(super()._authorizedResource(request))

    def _loginFailed(self, result: Any) -> IResource:
        return self._in_kind(super()._loginFailed(result))


def protect(wrapped: IResource, users: UserService, realm: str,
            public: Mapping[bytes, IResource] | None = None, trusted_proxies: frozenset[str] = frozenset(),
            wss: WsSecurity | None = None, client_certs: ClientCertificateService | None = None) -> IResource:
    """``wrapped`` behind HTTP Basic, each route allowed as :data:`ROUTES` and the policy say. ``public``
    children (PUBLIC routes not in ``wrapped``) are served without authentication. The lockout per
    address counts the peer address, or X-Forwarded-For's behind a ``trusted_proxies`` address. With ``wss``,
    SOAP paths accept a WS-Security UsernameToken; with ``client_certs``, a mapped TLS client certificate."""
    portal = Portal(_Realm(wrapped), [PasswordChecker(users)])
    guarded = _GuardInKind(portal, [AddressedBasicCredentialFactory(realm, trusted_proxies)])
    return _Gate(wrapped, guarded, public or {}, wss, client_certs, trusted_proxies, users)


# --- password reset (public) ---------------------------------------------------------------------------

def _json_object(request: Any) -> dict[str, Any]:
    try:
        body = json.loads(request.content.read())
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise SiegelError(Code.BAD_REQUEST, "the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise SiegelError(Code.BAD_REQUEST, "the request body must be a JSON object")
    return body


class _NoChild(resource.Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return _Refusal(SiegelError(Code.NOT_FOUND, f"no resource at {request.path.decode('latin-1')}")).render(request)


class PasswordResetRequest(resource.Resource):
    """``POST /api/v1/password-reset`` with JSON ``{"user": "<name or e-mail address>"}``: always 202; the
    mail goes out in the background, so neither the answer nor its timing tells whether the account exists."""

    def __init__(self, users: UserService) -> None:
        super().__init__()
        self._users = users
        self.putChild(b"complete", PasswordResetComplete(users))

    def getChild(self, path: bytes, request: Any) -> IResource:
        return _NoChild()

    def render_POST(self, request: Any) -> Any:
        def start() -> Any:
            body = _json_object(request)
            who = body.get("user", body.get("email", body.get("name")))
            if not isinstance(who, str) or not who.strip():
                raise SiegelError(Code.BAD_REQUEST, "user: the account name or e-mail address")
            host = (request.getHeader(b"host") or b"").decode("latin-1")  # the reset mail is in its brand
            threads.deferToThread(self._users.start_reset, who, host).addErrback(
                lambda f: log.error("password reset mail failed: %s", f.getErrorMessage()))
            return json_response(request, 202, {"status": "accepted", "detail": "if the account exists and has a "
                                                "password here, a reset link is on its way by e-mail"})

        return render_deferred(request, start)


class PasswordResetComplete(resource.Resource):
    """``POST /api/v1/password-reset/complete`` with JSON ``{"token": "...", "password": "..."}``: the new
    password; 400 when the token is invalid, used or expired, or the password too short."""

    isLeaf = True

    def __init__(self, users: UserService) -> None:
        super().__init__()
        self._users = users

    def render_POST(self, request: Any) -> Any:
        def start() -> Any:
            body = _json_object(request)
            token, password = body.get("token"), body.get("password")
            if not isinstance(token, str) or not isinstance(password, str):
                raise SiegelError(Code.BAD_REQUEST, "token and password: expected strings")
            return threads.deferToThread(self._users.complete_reset, token, password).addCallback(
                lambda principal: json_response(request, 200, {"status": "password changed",
                                                               "name": principal.name}))

        return render_deferred(request, start)


# --- second factor ---------------------------------------------------------------------------------------

PASSWORD_ONLY: Mapping[str, frozenset[str]] = {"/api/v1/2fa/otp": frozenset({"POST"})}
"""Routes an account that needs a second factor may use with its password alone: asking for a code by
e-mail or SMS (to the address and number on record) is how it gets its first second factor."""


class _VerifiedPrincipal(_AsPrincipal):
    """The principal, with ``request.second_factor`` set: this request carried a valid second factor."""

    def getChildWithDefault(self, path: bytes, request: Any) -> IResource:
        request.second_factor = True
        return super().getChildWithDefault(path, request)

    def render(self, request: Any) -> Any:
        request.second_factor = True
        return super().render(request)


class _SecondFactorNeeded(resource.Resource):
    """401 for an account of a role that needs a second factor when the request has none or a wrong one;
    the password-only routes (PASSWORD_ONLY) go on when it has none."""

    def __init__(self, wrapped: IResource, outcome: Any) -> None:
        super().__init__()
        self._wrapped = wrapped
        self._outcome = outcome
        self.isLeaf = getattr(wrapped, "isLeaf", False)

    def _target(self, request: Any) -> IResource:
        text = request.path.split(b"?", 1)[0].decode("latin-1")
        if self._outcome.missing and request.method.decode("latin-1").upper() in PASSWORD_ONLY.get(text, ()):
            return _AsPrincipal(self._wrapped, self._outcome.principal)
        log.info("second factor %s: %s %s for %s", "missing" if self._outcome.missing else "refused",
                 request.method.decode("latin-1"), request.path.decode("latin-1"), self._outcome.principal.name)
        return _Refusal(SiegelError(Code.UNAUTHENTICATED, self._outcome.detail), 401)

    def getChildWithDefault(self, path: bytes, request: Any) -> IResource:
        target = self._target(request)
        return target.getChildWithDefault(path, request) if isinstance(target, _AsPrincipal) else target

    def render(self, request: Any) -> Any:
        return self._target(request).render(request)


def second_factor_resource(wrapped: IResource, outcome: Any) -> IResource:
    """What the realm serves for a :class:`server.identity.twofactor.LoginOutcome`."""
    if outcome.verified:
        return _VerifiedPrincipal(wrapped, outcome.principal)
    return _SecondFactorNeeded(wrapped, outcome)
