"""The brand of each portal page (``/portal/brand.css``: the brand's colours as CSS variables, served from our
origin so the CSP stays ``style-src 'self'``; ``/portal/brand/logo``: its checked logo) and the admin page of
brands (``/portal/admin/brands``: fields, default, logo upload). The brand of a page is the one of the
request's host (server.branding.service.BrandService.for_host), the external signer's page the workflow's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.branding.logo import SVG
from server.branding.service import SETTABLE
from server.errors import Code, SiegelError
from server.web.portal.site import Ctx, Response

if TYPE_CHECKING:
    from server.web.portal import PortalApp

SVG_HEADERS = {"content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox"}


def brand_css(app: PortalApp, ctx: Ctx) -> Response:
    brand = app.brands.get(ctx.args.get("b", "")) if ctx.args.get("b") else ctx.brand
    assert ctx.env is not None
    css = ctx.env.get_template("brand.css").render(brand=brand)
    return Response(200, css.encode("utf-8"), "text/css; charset=utf-8", {"cache-control": "no-cache"})


def brand_logo(app: PortalApp, ctx: Ctx) -> Response:
    logo = app.brands.logo(ctx.args.get("b", ""))
    if logo is None:
        raise SiegelError(Code.NOT_FOUND, ctx.t("brand.no_logo"))
    content, mime = logo
    return Response(200, content, mime, {"cache-control": "no-cache", **(SVG_HEADERS if mime == SVG else {})})


def brands(app: PortalApp, ctx: Ctx, message: str | None = None, status: int = 200) -> Response:
    return ctx.render("admin/brands.html", status=status, message=message, brands=app.brands.list(),
                      fields=list(SETTABLE), limits=app.brands.limits)


def _act(app: PortalApp, ctx: Ctx, work: object) -> Response:
    try:
        info = work()  # type: ignore[operator]
    except SiegelError as exc:
        if exc.code not in (Code.BAD_REQUEST, Code.NOT_FOUND):
            raise
        return brands(app, ctx, exc.message, exc.kind.http_status)
    return brands(app, ctx, ctx.t("brand.saved", name=info.name))


def brand_save(app: PortalApp, ctx: Ctx) -> Response:
    """Create or change a brand from the form's fields (an empty field is left as it is, ``-`` clears it)."""
    f = ctx.form
    values = {key: (None if f.get(key).strip() == "-" else f.get(key)) for key in SETTABLE if f.get(key).strip()}
    return _act(app, ctx, lambda: app.brands.set(ctx.principal.name, f.get("name").strip(), values,
                                                 make_default=f.get("default") == "on"))


def brand_logo_upload(app: PortalApp, ctx: Ctx) -> Response:
    upload = ctx.form.files.get("logo")
    if upload is None:
        return brands(app, ctx, ctx.t("brand.logo_missing"), 400)
    return _act(app, ctx, lambda: app.brands.set_logo(ctx.principal.name, ctx.form.get("name").strip(),
                                                      upload.content))
