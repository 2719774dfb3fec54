"""The external signer's page, ``/portal/link?token=…``: a person without an account opens the link of an
invitation mail, sees the document (pdf.js, from ``/portal/link/document``) in the workflow's brand and signs,
approves or rejects it. The link token is the credential (server.workflows.service.WorkflowService.link_view
and act_by_link: once, until it expires, only for steps whose auth is ``link``); the page itself leaves the
token unused, only the action spends it."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from server.errors import SiegelError
from server.web.portal.site import Ctx, Response

if TYPE_CHECKING:
    from server.web.portal import PortalApp


def _token(ctx: Ctx) -> str:
    return ctx.form.get("token") or ctx.args.get("token", "")


def page(app: PortalApp, ctx: Ctx, message: str | None = None, status: int = 200) -> Response:
    token = _token(ctx)
    workflow, view = app.workflows().link_view(token)
    ctx.brand = app.brands.by_id(workflow.brand_id)
    return ctx.render("external.html", status=status, message=message, view=view, token=token,
                      document=f"/portal/link/document?token={quote(token)}")


def document(app: PortalApp, ctx: Ctx) -> Response:
    name, content = app.workflows().link_document(_token(ctx))
    return Response(200, content, "application/pdf", {"content-disposition": f"inline; filename*=UTF-8''{quote(name)}"})


def act(app: PortalApp, ctx: Ctx) -> Response:
    """Sign, approve or reject with the link; the page thanks in the workflow's brand (the link is spent)."""
    token, action = _token(ctx), ctx.form.get("action")
    workflow, view = app.workflows().link_view(token)
    ctx.brand = app.brands.by_id(workflow.brand_id)
    try:
        app.workflows().act_by_link(token, action, ctx.form.get("reason") or None, ctx.address)
    except SiegelError as exc:
        return page(app, ctx, exc.message, exc.kind.http_status)
    return ctx.render("external_done.html", view=view, action=action)
