"""HTTP Basic authentication with twisted.cred, for every protected endpoint.

The checker verifies passwords off the reactor thread (argon2id is slow by design; the user
service caches verified credentials briefly). The authenticated principal is put on the request
as ``request.principal`` for the resource behind the guard.
"""

from __future__ import annotations

from typing import Any, Iterable

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer, threads
from twisted.web import resource
from twisted.web.guard import BasicCredentialFactory, HTTPAuthSessionWrapper
from twisted.web.resource import IResource
from zope.interface import implementer

from server.identity.users import Principal, Role, UserService


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
        d = threads.deferToThread(self._users.authenticate, name, password)

        def checked(principal: Principal | None) -> Principal:
            if principal is None:
                raise UnauthorizedLogin("unknown user or wrong password")
            return principal

        return d.addCallback(checked)


class _AsPrincipal(resource.Resource):
    """Renders the protected resource with the principal attached to the request."""

    def __init__(self, wrapped: IResource, principal: Principal, roles: frozenset[Role]) -> None:
        super().__init__()
        self._wrapped = wrapped
        self._principal = principal
        self._roles = roles
        self.isLeaf = getattr(wrapped, "isLeaf", False)

    def getChildWithDefault(self, path: bytes, request: Any) -> IResource:
        request.principal = self._principal
        if self._principal.role not in self._roles:
            return resource.ErrorPage(403, "Forbidden", "your role may not use this endpoint")
        return self._wrapped.getChildWithDefault(path, request)

    def render(self, request: Any) -> Any:
        request.principal = self._principal
        if self._principal.role not in self._roles:
            return resource.ErrorPage(403, "Forbidden", "your role may not use this endpoint").render(request)
        return self._wrapped.render(request)


@implementer(IRealm)
class _Realm:
    def __init__(self, wrapped: IResource, roles: frozenset[Role]) -> None:
        self._wrapped = wrapped
        self._roles = roles

    def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces: Any) -> tuple[Any, IResource, Any]:
        if IResource not in interfaces:
            raise NotImplementedError("only web resources are offered")
        return IResource, _AsPrincipal(self._wrapped, avatar_id, self._roles), lambda: None


class _PublicReads(resource.Resource):
    """GET and HEAD go to the resource directly (WSDLs, schemas); everything else through the guard."""

    def __init__(self, wrapped: IResource, guarded: IResource) -> None:
        super().__init__()
        self._wrapped = wrapped
        self._guarded = guarded
        self.isLeaf = True

    def render(self, request: Any) -> Any:
        target = self._wrapped if request.method in (b"GET", b"HEAD") else self._guarded
        return target.render(request)


def protect(wrapped: IResource, users: UserService, realm: str, roles: Iterable[Role] = tuple(Role),
            public_reads: bool = False) -> IResource:
    """``wrapped`` behind HTTP Basic; only the given roles get through (403 for the others)."""
    portal = Portal(_Realm(wrapped, frozenset(roles)), [PasswordChecker(users)])
    guarded = HTTPAuthSessionWrapper(portal, [BasicCredentialFactory(realm)])
    return _PublicReads(wrapped, guarded) if public_reads else guarded
