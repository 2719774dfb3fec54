"""The portal's Twisted resource: the route table, sessions, CSRF, security headers, templates.

:data:`ROUTES` is the portal's one table of what each page needs (like server.web.auth.ROUTES for the
APIs): :data:`ANONYMOUS` (no session: login, password reset), :data:`PENDING` (a login waiting for its
second factor), or an :class:`~server.identity.policy.Action` that :func:`server.identity.policy.require`
decides for the session's account, on top of Action.PORTAL_LOGIN. A path the table does not list is 404,
a method it does not list 405. Every POST carries a CSRF token (the session's, or for anonymous forms the
``siegel_csrf`` cookie's value: double submit) in the field ``csrf`` or the header ``X-CSRF-Token``; a
missing or wrong one is 403 and nothing runs. Handlers run in the reactor's thread pool with a
:class:`Ctx` read from the request on the reactor thread.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import quote

from jinja2 import Environment, select_autoescape
from twisted.internet import threads
from twisted.web import resource, server, static

from server.branding.templates import loader as template_loader
from server.errors import Code, SiegelError
from server.identity.policy import Action, allowed, require
from server.web.auth import client_address
from server.web.http import problem
from server.web.portal import i18n
from server.web.portal.forms import Form, parse_form
from server.web.portal.sessions import FULL, SECOND_FACTOR, Session

log = logging.getLogger("siegel.portal")

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = b"siegel_session"
CSRF_COOKIE = b"siegel_csrf"
LANG_COOKIE = b"siegel_lang"
ANONYMOUS = "anonymous"
PENDING = "pending"
Permission = Action | str

SECURITY_HEADERS = {
    b"content-security-policy": b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                b"font-src 'self'; connect-src 'self'; worker-src 'self'; form-action 'self'; "
                                b"frame-ancestors 'none'; base-uri 'none'",
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"cross-origin-opener-policy": b"same-origin",
    b"permissions-policy": b"camera=(), microphone=(), geolocation=()",
}


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Ctx:
    """What a handler knows of its request (read on the reactor thread) and what it sets on the answer."""

    method: str
    path: str  # below /portal, e.g. "/login"
    args: dict[str, str]
    form: Form
    address: str | None
    secure: bool
    lang: str
    session: Session | None
    csrf: str  # the token forms of this page carry
    params: dict[str, str] = field(default_factory=dict)  # {name} segments of the route
    wants_json: bool = False
    cookies: list[tuple[bytes, bytes, dict[str, Any]]] = field(default_factory=list)
    env: Environment | None = None
    brand: Any = None  # server.branding.service.BrandInfo: the request host's, the external page the workflow's
    host: str = ""  # the request's Host header: mails sent for the request are in its brand

    def t(self, key: str, **values: object) -> str:
        return i18n.translator(self.lang)(key, **values)

    @property
    def principal(self) -> Any:
        assert self.session is not None
        return self.session.principal

    def may(self, action: Action) -> bool:
        return self.session is not None and self.session.stage == FULL and allowed(self.session.principal, action)

    def render(self, template: str, status: int = 200, **values: Any) -> Response:
        assert self.env is not None
        page = self.env.get_template(template).render(
            t=self.t, lang=self.lang, csrf=self.csrf, session=self.session, path=self.path, may=self.may,
            Action=Action, brand=self.brand, **values)
        return Response(status, page.encode("utf-8"))

    def redirect(self, location: str) -> Response:
        return Response(303, b"", headers={"location": location})

    def json(self, body: Any, status: int = 200) -> Response:
        return Response(status, json.dumps(body).encode(), "application/json")

    def set_session_cookie(self, token: str | None) -> None:
        """The session cookie: HttpOnly, SameSite=Strict, Secure under TLS; None deletes it."""
        self.cookies.append((SESSION_COOKIE, (token or "").encode("ascii"), {
            "path": b"/portal", "httpOnly": True, "sameSite": "strict", "secure": self.secure,
            **({} if token else {"max_age": b"0"})}))


Handler = Callable[[Any, Ctx], Response]


@dataclass(frozen=True)
class Route:
    handler: Handler
    permission: Permission


def _table() -> dict[str, dict[str, Route]]:
    from server.web.portal import account, admin, admin_workflows, documents, inbox, workflow_templates
    from server.web.portal import admin_clients, branding, external, workflows_mine

    return {
        "/": {"GET": Route(documents.home, Action.PORTAL_LOGIN)},
        "/login": {"GET": Route(account.login_form, ANONYMOUS), "POST": Route(account.login, ANONYMOUS)},
        "/2fa": {"GET": Route(account.second_factor_form, PENDING), "POST": Route(account.second_factor, PENDING)},
        "/2fa/send": {"POST": Route(account.second_factor_send, PENDING)},
        "/logout": {"POST": Route(account.logout, Action.PORTAL_LOGIN)},
        "/forgot": {"GET": Route(account.forgot_form, ANONYMOUS), "POST": Route(account.forgot, ANONYMOUS)},
        "/reset": {"GET": Route(account.reset_form, ANONYMOUS), "POST": Route(account.reset, ANONYMOUS)},
        "/security": {"GET": Route(account.security, Action.SECOND_FACTOR)},
        "/security/send": {"POST": Route(account.security_send, Action.SECOND_FACTOR)},
        "/security/verify": {"POST": Route(account.security_verify, Action.SECOND_FACTOR)},
        "/security/totp": {"POST": Route(account.totp_enrol, Action.SECOND_FACTOR)},
        "/security/totp/confirm": {"POST": Route(account.totp_confirm, Action.SECOND_FACTOR)},
        "/security/recovery-codes": {"POST": Route(account.recovery_codes, Action.SECOND_FACTOR)},
        "/inbox": {"GET": Route(inbox.inbox, Action.STEP_ACT)},
        "/inbox/{workflow}/document": {"GET": Route(inbox.document, Action.DOCUMENT_READ)},  # the service: whose
        "/inbox/{workflow}/{step}": {"GET": Route(inbox.step_view, Action.STEP_ACT),  # due for the account only
                                     "POST": Route(inbox.act, Action.STEP_ACT)},  # the service: assignee only
        "/inbox/{workflow}/{step}/code": {"POST": Route(inbox.send_code, Action.STEP_ACT)},
        "/verify": {"GET": Route(documents.verify_form, Action.VERIFY), "POST": Route(documents.verify, Action.VERIFY)},
        "/sign": {"GET": Route(documents.sign_form, Action.SIGN), "POST": Route(documents.sign, Action.SIGN)},
        "/start": {"GET": Route(documents.start_form, Action.WORKFLOW_START),
                   "POST": Route(documents.start, Action.WORKFLOW_START)},
        "/workflows": {"GET": Route(workflows_mine.workflows, Action.WORKFLOW_START)},  # the account's own only
        # the service refuses another account's workflow (404)
        "/workflows/{id}/document": {"GET": Route(workflows_mine.document, Action.WORKFLOW_READ)},
        "/workflows/{id}/certificate": {"GET": Route(workflows_mine.certificate, Action.WORKFLOW_READ)},
        # owned: the handlers check the result's owner (policy.require with owner_id)
        "/sign/result/{id}": {"GET": Route(documents.result, Action.DOCUMENT_READ)},
        "/sign/result/{id}/document": {"GET": Route(documents.result_document, Action.DOCUMENT_READ)},
        "/sign/result/{id}/report": {"GET": Route(documents.result_report, Action.DOCUMENT_READ)},
        "/sign/result/{id}/report.pdf": {"GET": Route(documents.result_report_pdf, Action.DOCUMENT_READ)},
        "/verify/report/{id}": {"GET": Route(documents.result_document, Action.VERIFY)},  # the report PDF kept
        "/admin": {"GET": Route(admin.dashboard, Action.SYSTEM_STATUS)},
        "/admin/users": {"GET": Route(admin.users, Action.USER_ADMIN), "POST": Route(admin.user_add, Action.USER_ADMIN)},
        "/admin/users/disable": {"POST": Route(admin.user_disable, Action.USER_ADMIN)},
        "/admin/users/enable": {"POST": Route(admin.user_enable, Action.USER_ADMIN)},
        "/admin/users/role": {"POST": Route(admin.user_role, Action.USER_ADMIN)},
        "/admin/directory/sync": {"POST": Route(admin.directory_sync, Action.DIRECTORY_SYNC)},
        "/admin/certificates": {"GET": Route(admin.certificates, Action.CA_ADMIN)},
        "/admin/certificates/issue": {"POST": Route(admin.certificate_issue, Action.CA_ADMIN)},
        "/admin/certificates/revoke": {"POST": Route(admin.certificate_revoke, Action.CA_ADMIN)},
        "/admin/templates": {"GET": Route(workflow_templates.templates, Action.TEMPLATE_MANAGE),
                             "POST": Route(workflow_templates.save_template, Action.TEMPLATE_MANAGE)},
        "/admin/templates/new": {"GET": Route(workflow_templates.new_template, Action.TEMPLATE_MANAGE)},
        "/admin/templates/{id}": {"GET": Route(workflow_templates.edit_template, Action.TEMPLATE_MANAGE),
                                  "POST": Route(workflow_templates.save_template, Action.TEMPLATE_MANAGE)},
        "/admin/brands": {"GET": Route(branding.brands, Action.BRAND_ADMIN),
                          "POST": Route(branding.brand_save, Action.BRAND_ADMIN)},
        "/admin/brands/logo": {"POST": Route(branding.brand_logo_upload, Action.BRAND_ADMIN)},
        "/admin/clients": {"GET": Route(admin_clients.clients, Action.APICLIENT_ADMIN)},
        "/admin/clients/brand": {"POST": Route(admin_clients.client_brand, Action.APICLIENT_ADMIN)},
        "/brand.css": {"GET": Route(branding.brand_css, ANONYMOUS)},
        "/brand/logo": {"GET": Route(branding.brand_logo, ANONYMOUS)},
        # the external signer's page: the link token is the credential (the workflow service checks it)
        "/link": {"GET": Route(external.page, ANONYMOUS), "POST": Route(external.act, ANONYMOUS)},
        "/link/document": {"GET": Route(external.document, ANONYMOUS)},
        "/admin/remote": {"GET": Route(admin.remote_accounts, Action.REMOTE_ACCOUNTS)},
        # every account's workflows: the roles that have SYSTEM_STATUS may read any workflow (policy.ANY_OWNER)
        "/admin/workflows": {"GET": Route(admin_workflows.workflows, Action.SYSTEM_STATUS)},
        "/admin/workflows/{id}": {"GET": Route(admin_workflows.workflow, Action.SYSTEM_STATUS)},  # the service checks
        "/admin/audit": {"GET": Route(admin.audit, Action.AUDIT_READ)},
        "/admin/audit/verify": {"GET": Route(admin.audit_verify, Action.AUDIT_VERIFY)},
    }


ROUTES: Mapping[str, Mapping[str, Route]] = _table()
"""Every portal page: path below /portal → method → its handler and permission."""

_PATTERNS = [(re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$"), methods)
             for path, methods in ROUTES.items() if "{" in path]


def route_of(path: str) -> tuple[Mapping[str, Route] | None, dict[str, str]]:
    methods = ROUTES.get(path)
    if methods is not None:
        return methods, {}
    for pattern, candidates in _PATTERNS:
        match = pattern.match(path)
        if match:
            return candidates, match.groupdict()
    return None, {}


def _cookie(request: Any, name: bytes) -> str | None:
    value = request.getCookie(name)
    return value.decode("ascii", "replace") if value else None


def _same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


class StaticFiles(static.File):
    """The portal's static folder: no directory listings, module scripts typed, the portal's headers."""

    contentTypes = {**static.File.contentTypes, ".mjs": "text/javascript", ".js": "text/javascript",
                    ".css": "text/css", ".pfb": "application/octet-stream"}

    def directoryListing(self) -> resource.IResource:
        return resource.NoResource()

    def render(self, request: Any) -> Any:
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        request.setHeader(b"cache-control", b"no-cache")
        return super().render(request)


class Pages(resource.Resource):
    """Every portal page below /portal/ (static/ aside)."""

    isLeaf = True

    def __init__(self, app: Any, trusted_proxies: frozenset[str]) -> None:
        super().__init__()
        self._app = app
        self._trusted = trusted_proxies
        self._env = Environment(loader=template_loader(app.templates, "portal", HERE / "templates"),
                                autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)

    def render(self, request: Any) -> Any:
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        request.setHeader(b"cache-control", b"no-store")
        path = "/" + "/".join(p.decode("utf-8", "replace") for p in request.postpath)
        path = path.rstrip("/") or "/"
        method = request.method.decode("latin-1").upper()
        methods, params = route_of(path)
        if methods is None:
            return self._plain(request, 404, "not-found", "Not found", f"no portal page at /portal{path}")
        route = methods.get("GET" if method == "HEAD" else method)
        if route is None:
            request.setHeader(b"allow", ", ".join(methods).encode())
            return self._plain(request, 405, "method-not-allowed", "Method not allowed",
                               f"{method} is not offered here; use {', '.join(methods)}")
        request.content.seek(0)
        body = request.content.read() if method == "POST" else b""
        args = {k.decode("utf-8", "replace"): v[-1].decode("utf-8", "replace") for k, v in request.args.items()}
        ctype = (request.getHeader(b"content-type") or b"").decode("latin-1")
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        lang = i18n.choose(args.get("lang"), _cookie(request, LANG_COOKIE),
                           (request.getHeader(b"accept-language") or b"").decode("latin-1"))
        if args.get("lang") == lang:
            request.addCookie(LANG_COOKIE, lang.encode(), path=b"/portal", httpOnly=True, sameSite="strict",
                              secure=request.isSecure(), max_age=str(365 * 86400).encode())
        token = _cookie(request, SESSION_COOKIE)
        header_csrf = (request.getHeader(b"x-csrf-token") or b"").decode("latin-1")
        anonymous_csrf = _cookie(request, CSRF_COOKIE)
        if anonymous_csrf is None or len(anonymous_csrf) < 32:
            anonymous_csrf = secrets.token_urlsafe(32)
            request.addCookie(CSRF_COOKIE, anonymous_csrf.encode(), path=b"/portal", httpOnly=True,
                              sameSite="strict", secure=request.isSecure())
        secure, address = request.isSecure(), client_address(request, self._trusted)
        host = (request.getHeader(b"host") or b"").decode("latin-1")

        def write(response: Response, ctx_cookies: list[tuple[bytes, bytes, dict[str, Any]]]) -> None:
            if request.finished or request._disconnected:  # type: ignore[attr-defined]
                return
            request.setResponseCode(response.status)
            request.setHeader(b"content-type", response.content_type.encode())
            for name, value in response.headers.items():
                request.setHeader(name.encode(), value.encode("latin-1"))
            for name, value, options in ctx_cookies:
                request.addCookie(name, value, **options)
            request.write(response.body)
            request.finish()

        def run() -> tuple[Response, list[tuple[bytes, bytes, dict[str, Any]]]]:
            ctx = Ctx(method, path, args, Form(), address, secure, lang, None, anonymous_csrf, params,
                      wants_json="application/json" in accept, env=self._env, host=host)
            try:
                ctx.brand = self._app.brands.for_host(host)
                ctx.session = self._app.sessions.find(token)
                if ctx.session is not None:
                    ctx.csrf = ctx.session.csrf_token
                response = self._run(ctx, route, token, ctype, body, header_csrf)
            except SiegelError as exc:  # the session store is unavailable
                response = self._error(ctx, exc)
            except Exception:  # noqa: BLE001 - logged; the browser gets an error page, never a traceback
                log.exception("portal: %s /portal%s failed", method, path)
                response = self._error(ctx, SiegelError(Code.INTERNAL, ctx.t("error.internal")))
            if ctx.session is not None:
                request.principal = ctx.session.principal  # for the request's log line
            return response, ctx.cookies

        def failed(failure: Any) -> None:
            log.error("portal: %s /portal%s failed: %s", method, path, failure.getTraceback())
            write(Response(500, b"internal error", "text/plain; charset=utf-8"), [])

        threads.deferToThread(run).addCallback(lambda done: write(*done)).addErrback(failed)
        return server.NOT_DONE_YET

    def _run(self, ctx: Ctx, route: Route, token: str | None, ctype: str, body: bytes, header_csrf: str) -> Response:
        try:
            refusal = self._check(ctx, route.permission, token)
            if refusal is not None:
                return refusal
            if ctx.method == "POST":
                ctx.form = parse_form(ctype, body)
                if not _same(ctx.form.get("csrf") or header_csrf, ctx.csrf):
                    log.warning("portal: CSRF token missing or wrong: POST /portal%s from %s", ctx.path, ctx.address)
                    return self._error(ctx, SiegelError(Code.FORBIDDEN, ctx.t("error.csrf")))
            return route.handler(self._app, ctx)
        except SiegelError as exc:
            return self._error(ctx, exc)

    def _check(self, ctx: Ctx, permission: Permission, token: str | None) -> Response | None:
        """None when the request may go on; else the answer (a redirect to the login, 401, 403)."""
        session = ctx.session
        if permission == ANONYMOUS:
            return None
        if permission == PENDING:
            if session is None or session.stage != SECOND_FACTOR:
                return ctx.redirect("/portal/login")
            return None
        if session is None or session.stage != FULL:
            if token and session is None:
                ctx.set_session_cookie(None)  # expired or unknown: forget it
            if ctx.method == "GET" and not ctx.wants_json:
                return ctx.redirect("/portal/login?next=" + quote("/portal" + ctx.path, safe="/"))
            return self._error(ctx, SiegelError(Code.UNAUTHENTICATED, ctx.t("error.session")))
        try:
            require(session.principal, Action.PORTAL_LOGIN)
            require(session.principal, Action(permission))
        except SiegelError as exc:
            log.info("portal: refused %s /portal%s for %s: %s", ctx.method, ctx.path, session.principal.name,
                     exc.message)
            return self._error(ctx, SiegelError(Code.FORBIDDEN, ctx.t("error.forbidden")))
        return None

    @staticmethod
    def _error(ctx: Ctx, error: SiegelError) -> Response:
        status = error.kind.http_status
        if ctx.wants_json:
            return Response(status, problem(status, error.kind.title, error.message, error.code.value),
                            "application/problem+json")
        return ctx.render("error.html", status=status, error=error)

    @staticmethod
    def _plain(request: Any, status: int, code: str, title: str, detail: str) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/problem+json")
        return problem(status, title, detail, code)


class Portal(resource.Resource):
    """``/portal/``: the pages and ``/portal/static/``; ``/portal`` itself redirects to ``/portal/``."""

    def __init__(self, app: Any, trusted_proxies: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self._pages = Pages(app, trusted_proxies)
        self.putChild(b"static", StaticFiles(str(HERE / "static")))

    def getChild(self, path: bytes, request: Any) -> resource.IResource:
        request.postpath.insert(0, path)
        return self._pages

    def render(self, request: Any) -> bytes:
        request.setResponseCode(301)
        request.setHeader(b"location", b"/portal/")
        return b""
