"""The admin's workflow pages: the newest workflows (filtered by state, or to those with flagged steps) and one
workflow's steps with their assignees, where a step whose assignee the directory sync disabled shows the flag
(:mod:`server.workflows.flags`) and since when. Read only: acting on a workflow is the starter's (REST, SOAP)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.errors import Code, SiegelError
from server.web.portal.site import Ctx, Response
from server.workflows.flags import DISABLED_FLAG
from server.workflows.overview import STATES

if TYPE_CHECKING:
    from server.web.portal import PortalApp

FLAG_TEXTS = {DISABLED_FLAG: "admin.workflows.flag.disabled"}
"""The stored flag reasons (English, as the API gives them) → the portal's text for them."""


def workflows(app: PortalApp, ctx: Ctx) -> Response:
    state = ctx.args.get("state", "")
    flagged_only = ctx.args.get("flagged") == "1"
    rows = app.workflow_overview.workflows(state if state in STATES else None, flagged_only)
    return ctx.render("admin/workflows.html", rows=rows, states=STATES, state=state, flagged_only=flagged_only)


def workflow(app: PortalApp, ctx: Ctx) -> Response:
    text = ctx.params["id"]
    if not text.isdigit():
        raise SiegelError(Code.NOT_FOUND, f"no workflow {text!r}")
    status = app.workflows().status(ctx.principal, int(text))
    return ctx.render("admin/workflow.html", w=status, flag_texts=FLAG_TEXTS)
