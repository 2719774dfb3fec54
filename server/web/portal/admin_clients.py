"""The admin's API clients page (``/portal/admin/clients``): every client with its account and state, and a
brand select per client (BrandService.assign: an unknown brand or client is said, and nothing changes).
Creating and revoking clients stays with ``siegel apiclient``: its secret is shown once, on the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.errors import Code, SiegelError
from server.identity.apiclients import ApiClientService
from server.web.portal.site import Ctx, Response

if TYPE_CHECKING:
    from server.web.portal import PortalApp


def clients(app: PortalApp, ctx: Ctx, message: str | None = None, status: int = 200) -> Response:
    return ctx.render("admin/clients.html", status=status, message=message,
                      clients=ApiClientService(app.users, app.audit).list(),
                      brand_choices=[b for b in app.brands.list() if b.id is not None], default=app.brands.default())


def client_brand(app: PortalApp, ctx: Ctx) -> Response:
    """Give the client ``key`` the brand ``brand`` (empty: the default brand)."""
    key, name = ctx.form.get("key").strip(), ctx.form.get("brand").strip() or None
    try:
        app.brands.assign(ctx.principal.name, "client", key, name)
    except SiegelError as exc:
        if exc.code not in (Code.BAD_REQUEST, Code.NOT_FOUND):
            raise
        return clients(app, ctx, exc.message, exc.kind.http_status)
    return clients(app, ctx, ctx.t("admin.clients.saved", client=key, brand=name or app.brands.default().name))
