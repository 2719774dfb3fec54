"""The signer's inbox (server.workflows.service.WorkflowService): steps due for the account, their document,
and signing, approving or rejecting one. A step's own page shows the document with pdf.js and the place its
signature goes (the field, or the template's page and box) highlighted; where the template fixes neither, the
signer drags the signature box onto a page (static/placebox.js) and its page and box go with the form (else
the signature is placed automatically). A step that needs ``password+2fa`` asks for a code in the same form
(an e-mailed one on request) unless this session has given a second factor already. A step that signs with a
remote qualified key asks for the credential (a choice of those its remote account lists, else a text field)
and PIN, which starts the signature; while it waits, the page asks for the one-time code the service sent and
the PIN again, which finish it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from server.errors import Code, SiegelError
from server.web.portal.documents import form_placement
from server.web.portal.site import Ctx, Response

if TYPE_CHECKING:
    from server.web.portal import PortalApp
    from server.workflows.service import RemoteKey


def _number(text: str, what: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise SiegelError(Code.NOT_FOUND, f"no {what} {text!r}")
    return int(text)


def with_credentials(app: PortalApp, items: list[dict[str, Any]], signer: str) -> list[dict[str, Any]]:
    """Each item (an inbox entry or a link's view) whose remote signature is still to start gets ``credentials``:
    those its remote account lists for ``signer`` (each account asked once), or None (the page asks for a name)."""
    listed: dict[str, list[str] | None] = {}
    for item in items:
        remote = item.get("remote")
        if remote is not None and remote["waiting"] is None:
            account = remote["account"]
            if account not in listed:
                listed[account] = app.workflows().remote_credentials(account, signer)
            remote["credentials"] = listed[account]
    return items


def remote_key(ctx: Ctx) -> RemoteKey | None:
    """The credential, PIN and one-time code of a remote signature from the form, if it has any."""
    from server.workflows.service import RemoteKey

    given = {name: ctx.form.get(name).strip() or None for name in ("credential", "pin", "otp")}
    return RemoteKey(**given) if any(given.values()) else None


def remote_refusal(ctx: Ctx, exc: SiegelError) -> str:
    """Why a remote signature did not go through: a wrong PIN or code in the page's words (the signature still
    waits for another try), anything else as the service said it."""
    from adapters.remote_signing.client import RemoteServiceError

    if isinstance(exc, RemoteServiceError) and exc.code is Code.BAD_REQUEST:
        said = f"{exc.error} {exc.description}".lower()
        if "pin" in said:
            return ctx.t("remote.wrong_pin")
        if "otp" in said:
            return ctx.t("remote.wrong_otp")
    return exc.message


def remote_started(ctx: Ctx, waiting: dict[str, Any]) -> str:
    """What the signer does next once a remote signature waits for its one-time code."""
    return ctx.t("remote.otp_sent" if waiting["otpSent"] else "remote.otp_app", credential=waiting["credential"])


def inbox(app: PortalApp, ctx: Ctx, message: str | None = None, status: int = 200) -> Response:
    steps = with_credentials(app, app.workflows().inbox(ctx.principal), ctx.principal.name)
    return ctx.render("inbox.html", status=status, message=message, steps=steps)


def _due(app: PortalApp, ctx: Ctx) -> dict[str, Any]:
    """The step of the route that is due for this account (else 404, as for a step of someone else)."""
    workflow, step = _number(ctx.params["workflow"], "workflow"), _number(ctx.params["step"], "step")
    for item in app.workflows().inbox(ctx.principal):
        if item["workflow"] == workflow and item["step"] == step:
            return item
    raise SiegelError(Code.NOT_FOUND, ctx.t("inbox.not_due", workflow=workflow, step=step))


def step_view(app: PortalApp, ctx: Ctx, message: str | None = None, status: int = 200) -> Response:
    (due,) = with_credentials(app, [_due(app, ctx)], ctx.principal.name)
    return ctx.render("inbox_step.html", status=status, message=message, s=due)


def send_code(app: PortalApp, ctx: Ctx) -> Response:
    """An e-mailed code for a step that needs a second factor."""
    _due(app, ctx)
    sent = app.twofactor.send_code(ctx.principal, "email", host=ctx.host)
    return step_view(app, ctx, ctx.t("twofactor.sent", to=sent.destination))


def document(app: PortalApp, ctx: Ctx) -> Response:
    name, content = app.workflows().document(ctx.principal, _number(ctx.params["workflow"], "workflow"))
    return Response(200, content, "application/pdf", {"content-disposition": f"inline; filename*=UTF-8''{quote(name)}"})


def act(app: PortalApp, ctx: Ctx) -> Response:
    from server.workflows.service import Actor, Placement
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
    remote = remote_key(ctx) if action == "sign" else None
    try:
        placed = form_placement(ctx) if action == "sign" else None
    except SiegelError as exc:  # the fields as typed: the step page again, to correct them
        return step_view(app, ctx, exc.message, exc.kind.http_status)
    try:
        result = app.workflows().act(Actor(level, ctx.address, principal=ctx.principal), workflow, step, action,
                                     ctx.form.get("reason").strip() or None, remote,
                                     None if placed is None else Placement(*placed))
    except SiegelError as exc:
        if remote is not None and exc.code in (Code.BAD_REQUEST, Code.REMOTE_SIGNING_FAILED):
            return step_view(app, ctx, remote_refusal(ctx, exc), exc.kind.http_status)  # the step is still due
        if exc.code not in (Code.CONFLICT, Code.BAD_REQUEST, Code.UNAUTHENTICATED):
            raise
        return inbox(app, ctx, exc.message, exc.kind.http_status)
    if "remoteSignature" in result:
        return step_view(app, ctx, remote_started(ctx, result["remoteSignature"]))
    return inbox(app, ctx, ctx.t("inbox.done", action=ctx.t("inbox.action." + action), workflow=workflow, step=step))
