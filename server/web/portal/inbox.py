"""The signer's inbox (server.workflows.service.WorkflowService): steps due for the account, their document,
and signing, approving or rejecting one. A step's own page shows the document with pdf.js and the place its
signature goes (the field, or the template's page and box) highlighted. A step that needs ``password+2fa``
asks for a code in the same form (an e-mailed one on request) unless this session has given a second factor
already."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from server.errors import Code, SiegelError
from server.web.portal.site import Ctx, Response

if TYPE_CHECKING:
    from server.web.portal import PortalApp


def _number(text: str, what: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise SiegelError(Code.NOT_FOUND, f"no {what} {text!r}")
    return int(text)


def inbox(app: PortalApp, ctx: Ctx, message: str | None = None, status: int = 200) -> Response:
    return ctx.render("inbox.html", status=status, message=message, steps=app.workflows().inbox(ctx.principal))


def _due(app: PortalApp, ctx: Ctx) -> dict[str, Any]:
    """The step of the route that is due for this account (else 404, as for a step of someone else)."""
    workflow, step = _number(ctx.params["workflow"], "workflow"), _number(ctx.params["step"], "step")
    for item in app.workflows().inbox(ctx.principal):
        if item["workflow"] == workflow and item["step"] == step:
            return item
    raise SiegelError(Code.NOT_FOUND, ctx.t("inbox.not_due", workflow=workflow, step=step))


def step_view(app: PortalApp, ctx: Ctx, message: str | None = None, status: int = 200) -> Response:
    return ctx.render("inbox_step.html", status=status, message=message, s=_due(app, ctx))


def send_code(app: PortalApp, ctx: Ctx) -> Response:
    """An e-mailed code for a step that needs a second factor."""
    _due(app, ctx)
    sent = app.twofactor.send_code(ctx.principal, "email", host=ctx.host)
    return step_view(app, ctx, ctx.t("twofactor.sent", to=sent.destination))


def document(app: PortalApp, ctx: Ctx) -> Response:
    name, content = app.workflows().document(ctx.principal, _number(ctx.params["workflow"], "workflow"))
    return Response(200, content, "application/pdf", {"content-disposition": f"inline; filename*=UTF-8''{quote(name)}"})


def act(app: PortalApp, ctx: Ctx) -> Response:
    from server.workflows.service import Actor
    from server.workflows.template import Auth

    assert ctx.session is not None
    workflow, step = _number(ctx.params["workflow"], "workflow"), _number(ctx.params["step"], "step")
    code = ctx.form.get("code").strip()
    if code and not ctx.session.second_factor:
        valid = app.twofactor.check_login_code(ctx.principal, code, ctx.address)
        if valid is None or valid is False:
            return step_view(app, ctx, ctx.t("twofactor.wrong"), 401)
        ctx.session = app.sessions.mark_second_factor(ctx.session)
    level = Auth.PASSWORD_2FA if ctx.session.second_factor else Auth.PASSWORD
    action = ctx.form.get("action")
    try:
        app.workflows().act(Actor(level, ctx.address, principal=ctx.principal), workflow, step, action,
                            ctx.form.get("reason").strip() or None)
    except SiegelError as exc:
        if exc.code not in (Code.CONFLICT, Code.BAD_REQUEST, Code.UNAUTHENTICATED):
            raise
        return inbox(app, ctx, exc.message, exc.kind.http_status)
    return inbox(app, ctx, ctx.t("inbox.done", action=ctx.t("inbox.action." + action), workflow=workflow, step=step))
