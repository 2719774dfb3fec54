"""The external signer's page, ``/portal/link?token=…``: a person without an account opens the link of an
invitation mail, sees the document (pdf.js, from ``/portal/link/document``) in the workflow's brand and signs,
approves or rejects it. The link token is the credential (server.workflows.service.WorkflowService.link_view
and act_by_link: once, until it expires, only for steps whose auth is ``link``); the page itself leaves the
token unused, only the action spends it. A step with a remote qualified key asks for credential and PIN, then
for the one-time code (as the inbox does, server.web.portal.inbox); the link is spent once the signature is made."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from server.errors import SiegelError
from server.web.portal.inbox import remote_key, remote_refusal, remote_started, with_credentials
from server.web.portal.site import Ctx, Response
from server.workflows.service import external_account

if TYPE_CHECKING:
    from server.web.portal import PortalApp


def _token(ctx: Ctx) -> str:
    return ctx.form.get("token") or ctx.args.get("token", "")


def page(app: PortalApp, ctx: Ctx, message: str | None = None, status: int = 200) -> Response:
    token = _token(ctx)
    workflow, view = app.workflows().link_view(token)
    ctx.brand = app.brands.by_id(workflow.brand_id)
    with_credentials(app, [view], external_account(view["email"]))
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
    remote = remote_key(ctx) if action == "sign" else None
    try:
        result = app.workflows().act_by_link(token, action, ctx.form.get("reason") or None, ctx.address, remote)
    except SiegelError as exc:
        return page(app, ctx, remote_refusal(ctx, exc) if remote is not None else exc.message, exc.kind.http_status)
    if "remoteSignature" in result:
        return page(app, ctx, remote_started(ctx, result["remoteSignature"]))
    return ctx.render("external_done.html", view=view, action=action)
