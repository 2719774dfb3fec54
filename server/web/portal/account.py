"""Login (password, then a second factor when the role needs one or the account has an authenticator),
logout, TOTP enrolment with a QR code, recovery codes, password reset (server.identity.users)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlparse

from server.errors import Code, SiegelError
from server.identity.policy import Action, allowed
from server.identity.twofactor import describe
from server.web.portal.sessions import FULL, SECOND_FACTOR
from server.web.portal.site import Ctx, Response

if TYPE_CHECKING:
    from server.web.portal import PortalApp


def _next(target: str) -> str:
    """Where to go after the login: a portal path only (no open redirect)."""
    return target if target.startswith("/portal/") and "//" not in target and "\\" not in target else "/portal/"


def login_form(app: PortalApp, ctx: Ctx, message: str | None = None, status: int = 200) -> Response:
    return ctx.render("login.html", status=status, message=message, next=_next(ctx.args.get("next", "")))


def login(app: PortalApp, ctx: Ctx) -> Response:
    name, password = ctx.form.get("name").strip(), ctx.form.get("password")
    principal = app.users.authenticate(name, password, ctx.address) if name and password else None
    if principal is None or principal.client is not None:
        return login_form(app, ctx, ctx.t("login.failed"), 401)
    if not allowed(principal, Action.PORTAL_LOGIN):
        return login_form(app, ctx, ctx.t("login.no_portal"), 403)
    twofactor = app.twofactor
    needs_factor = twofactor.required(principal) or twofactor.status(principal.user_id).totp
    stage = SECOND_FACTOR if needs_factor else FULL
    # Always a new session with a new token: one the browser came with never becomes a login (fixation).
    session = app.sessions.create(principal, stage, False, replaces=ctx.session.token if ctx.session else None)
    ctx.set_session_cookie(session.token)
    target = _next(ctx.form.get("next"))
    return ctx.redirect(f"/portal/2fa?next={target}" if needs_factor else target)


def second_factor_form(app: PortalApp, ctx: Ctx, message: str | None = None, status: int = 200) -> Response:
    return ctx.render("second_factor.html", status=status, message=message, next=_next(ctx.args.get("next", "")))


def second_factor(app: PortalApp, ctx: Ctx) -> Response:
    assert ctx.session is not None
    valid = app.twofactor.check_login_code(ctx.principal, ctx.form.get("code").strip(), ctx.address)
    if valid is None:
        return second_factor_form(app, ctx, ctx.t("login.failed"), 401)
    if valid is False:
        return second_factor_form(app, ctx, ctx.t("twofactor.wrong"), 401)
    session = app.sessions.create(ctx.principal, FULL, True, replaces=ctx.session.token)
    ctx.set_session_cookie(session.token)
    return ctx.redirect(_next(ctx.form.get("next")))


def second_factor_send(app: PortalApp, ctx: Ctx) -> Response:
    sent = app.twofactor.send_code(ctx.principal, "email", host=ctx.host)
    return second_factor_form(app, ctx, ctx.t("twofactor.sent", to=sent.destination))


def logout(app: PortalApp, ctx: Ctx) -> Response:
    app.sessions.end(ctx.session.token if ctx.session else None)
    ctx.set_session_cookie(None)
    return ctx.redirect("/portal/login")


# --- one's own second factors ------------------------------------------------------------------------------

def security(app: PortalApp, ctx: Ctx, message: str | None = None, status: int = 200, **extra: object) -> Response:
    return ctx.render("security.html", status=status, message=message,
                      state=app.twofactor.status(ctx.principal.user_id), **extra)


def security_send(app: PortalApp, ctx: Ctx) -> Response:
    sent = app.twofactor.send_code(ctx.principal, "email", host=ctx.host)
    return security(app, ctx, ctx.t("twofactor.sent", to=sent.destination))


def security_verify(app: PortalApp, ctx: Ctx) -> Response:
    """A code from the e-mail (or the authenticator) proves the second factor for this session."""
    assert ctx.session is not None
    valid = app.twofactor.check_login_code(ctx.principal, ctx.form.get("code").strip(), ctx.address)
    if valid is None or valid is False:
        return security(app, ctx, ctx.t("twofactor.wrong"), 401)
    ctx.session = app.sessions.mark_second_factor(ctx.session)
    return security(app, ctx, ctx.t("twofactor.verified"))


def _factor_given(ctx: Ctx) -> None:
    """Enrolling or replacing factors needs a second factor in this session: a password alone may not."""
    if ctx.session is None or not ctx.session.second_factor:
        raise SiegelError(Code.UNAUTHENTICATED, ctx.t("twofactor.needed"))


def totp_enrol(app: PortalApp, ctx: Ctx) -> Response:
    _factor_given(ctx)
    enrolment = describe(app.twofactor.enrol_totp(ctx.principal))
    secret = parse_qs(urlparse(enrolment["uri"]).query)["secret"][0]
    return security(app, ctx, None, enrolment=enrolment, secret=secret)


def totp_confirm(app: PortalApp, ctx: Ctx) -> Response:
    _factor_given(ctx)
    codes = app.twofactor.confirm_totp(ctx.principal, ctx.form.get("code"))
    return security(app, ctx, ctx.t("twofactor.active"), recovery=codes)


def recovery_codes(app: PortalApp, ctx: Ctx) -> Response:
    _factor_given(ctx)
    return security(app, ctx, None, recovery=app.twofactor.new_recovery_codes(ctx.principal))


# --- password reset -----------------------------------------------------------------------------------------

def forgot_form(app: PortalApp, ctx: Ctx, message: str | None = None) -> Response:
    return ctx.render("forgot.html", message=message)


def forgot(app: PortalApp, ctx: Ctx) -> Response:
    """Always the same answer: it does not tell whether the account exists."""
    who = ctx.form.get("user").strip()
    if who:
        app.users.start_reset(who, ctx.host)
    return forgot_form(app, ctx, ctx.t("forgot.sent"))


def reset_form(app: PortalApp, ctx: Ctx, message: str | None = None, status: int = 200) -> Response:
    return ctx.render("reset.html", status=status, message=message, token=ctx.args.get("token", ""))


def reset(app: PortalApp, ctx: Ctx) -> Response:
    password, again = ctx.form.get("password"), ctx.form.get("password2")
    ctx.args["token"] = ctx.form.get("token")
    if password != again:
        return reset_form(app, ctx, ctx.t("reset.mismatch"), 400)
    try:
        app.users.complete_reset(ctx.form.get("token"), password)
    except SiegelError as exc:
        return reset_form(app, ctx, exc.message, exc.kind.http_status)
    return login_form(app, ctx, ctx.t("reset.done"))
