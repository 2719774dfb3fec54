"""My workflows: the workflows the account started, their state and how many steps are done, and for finished ones
the signed document and the signed certificate of completion, through the same WorkflowService calls as
``/api/v1/workflows/{id}/document`` and ``/certificate`` (the service refuses another account's workflow: 404)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from server.errors import Code, SiegelError
from server.web.portal.documents import attachment
from server.web.portal.site import Ctx, Response

if TYPE_CHECKING:
    from server.web.portal import PortalApp

LIMIT = 100


def _id(ctx: Ctx) -> int:
    text = ctx.params["id"]
    if not text.isdigit():
        raise SiegelError(Code.NOT_FOUND, f"no workflow {text!r}")
    return int(text)


def _pdf(name: str, content: bytes) -> Response:
    return Response(200, content, "application/pdf", attachment(name))


def workflows(app: PortalApp, ctx: Ctx) -> Response:
    service = app.workflows()
    mine: list[dict[str, Any]] = []
    for row in app.workflow_overview.workflows(limit=LIMIT, started_by=ctx.principal.user_id):
        status = service.status(ctx.principal, row.id)
        status["done"] = sum(1 for step in status["steps"] if step["state"] == "done")
        mine.append(status)
    return ctx.render("workflows.html", workflows=mine)


def document(app: PortalApp, ctx: Ctx) -> Response:
    return _pdf(*app.workflows().document(ctx.principal, _id(ctx)))


def certificate(app: PortalApp, ctx: Ctx) -> Response:
    workflow = _id(ctx)
    return _pdf(f"completion-{workflow}.pdf", app.workflows().certificate(ctx.principal, workflow))
