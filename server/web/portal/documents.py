"""The home page, Verify (a readable report from VerificationService, also as a branded PDF), Sign my own document
(SigningService with the account's own key; for a PDF the page and box the signer placed on pdf.js's
rendering; the signed file and its report kept for the signer to download) and Start a workflow (an uploaded
PDF on a template, WorkflowService.start: the service decides who may start which template)."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from server.branding.report import report_pdf
from server.errors import Code, SiegelError
from server.identity.policy import Action, require
from server.signing.levels import Level, Packaging
from server.signing.order import Document, Format, PdfOptions, SignOrder, choose_format, is_xml_type
from server.validation.report import to_json
from server.web.portal.forms import Upload
from server.web.portal.site import Ctx, Response

if TYPE_CHECKING:
    from server.web.portal import PortalApp

FORMATS = ("auto", "pades", "xades", "cades")
LEVELS = tuple(level.value for level in Level)
EXTENSIONS = {"application/pdf": ".pdf", "application/xml": ".xml", "text/xml": ".xml",
              "application/pkcs7-mime": ".p7m", "application/pkcs7-signature": ".p7s"}


def home(app: PortalApp, ctx: Ctx) -> Response:
    return ctx.render("home.html")


def _upload(ctx: Ctx) -> Upload:
    upload = ctx.form.files.get("file")
    if upload is None:
        raise SiegelError(Code.BAD_REQUEST, ctx.t("upload.missing"))
    return upload


def verify_form(app: PortalApp, ctx: Ctx) -> Response:
    return ctx.render("verify.html", report=None)


def verify(app: PortalApp, ctx: Ctx) -> Response:
    """The report on the page, and its PDF in the page's brand kept for download (``/portal/verify/report/…``)."""
    upload = _upload(ctx)
    report = to_json(app.verification.verify(upload.content, name=upload.filename))
    stem = upload.filename.rsplit(".", 1)[0] if "." in upload.filename else upload.filename
    pdf = report_pdf(app.brands, ctx.brand, report)
    ident = app.sessions.keep_result(ctx.principal.user_id, f"{stem or 'document'}-report.pdf", "application/pdf", pdf,
                                     report)
    return ctx.render("verify.html", report=report, report_pdf=f"/portal/verify/report/{ident}")


def sign_form(app: PortalApp, ctx: Ctx) -> Response:
    return ctx.render("sign.html", formats=FORMATS, levels=LEVELS)


def _number(ctx: Ctx, name: str) -> float | None:
    text = ctx.form.get(name).strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise SiegelError(Code.BAD_REQUEST, f"{name}={text!r}: expected a number")
    return value


def form_placement(ctx: Ctx) -> tuple[int, tuple[float, float, float, float]] | None:
    """The page (1-based) and box (x, y, width, height in PDF points from the lower left) the signer chose in
    the fields page, x, y, w, h (placebox.js); None when they placed nothing."""
    values = [_number(ctx, name) for name in ("page", "x", "y", "w", "h")]
    if values[0] is None and values[1] is None and values[2] is None:
        return None
    numbers = [v for v in values if v is not None]
    if len(numbers) < len(values):
        raise SiegelError(Code.BAD_REQUEST, ctx.t("sign.placement_incomplete"))
    page, x, y, w, h = numbers
    if page < 1 or not page.is_integer() or w <= 0 or h <= 0:
        raise SiegelError(Code.BAD_REQUEST, ctx.t("sign.placement_invalid"))
    return int(page), (x, y, w, h)


def _placement(ctx: Ctx) -> PdfOptions:
    """The signer's page and box; the default place when they placed nothing."""
    placed = form_placement(ctx)
    return PdfOptions() if placed is None else PdfOptions(page=placed[0], box=placed[1])


def _order(ctx: Ctx, upload: Upload) -> SignOrder:
    chosen, level = ctx.form.get("format", "auto"), ctx.form.get("level", "B-T")
    if chosen not in FORMATS or level not in LEVELS:
        raise SiegelError(Code.BAD_REQUEST, f"format {chosen!r}, level {level!r}: expected one of "
                                            f"{', '.join(FORMATS)} and {', '.join(LEVELS)}")
    xml = is_xml_type(upload.content_type) or upload.filename.lower().endswith(".xml")
    document = Document(upload.filename, content=upload.content, mime_type=upload.content_type, is_xml=xml)
    if chosen == "auto":
        fmt, packaging = choose_format(document)
        if fmt is Format.CADES:
            packaging = Packaging.ENVELOPING  # one file to download that holds the document
    else:
        fmt = Format(chosen)
        packaging = {Format.PADES: Packaging.ENVELOPED, Format.CADES: Packaging.ENVELOPING}.get(
            fmt, Packaging.ENVELOPED if xml else Packaging.ENVELOPING)
    if fmt is Format.PADES and not upload.content.startswith(b"%PDF-"):
        raise SiegelError(Code.BAD_REQUEST, ctx.t("sign.not_pdf"))
    return SignOrder(fmt, Level(level), packaging, (document,),
                     pdf=_placement(ctx) if fmt is Format.PADES else PdfOptions())


def _signed_name(name: str, mime: str) -> str:
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return f"{stem}-signed{EXTENSIONS.get(mime, '.bin')}"


def sign(app: PortalApp, ctx: Ctx) -> Response:
    upload = _upload(ctx)
    order = _order(ctx, upload)
    (signed,) = app.signing.sign(ctx.principal.user_id, ctx.principal.name, order)
    name = _signed_name(upload.filename, signed.mime_type)
    report = to_json(app.verification.verify(signed.data, name=name))
    ident = app.sessions.keep_result(ctx.principal.user_id, name, signed.mime_type, signed.data, report)
    location = f"/portal/sign/result/{ident}"
    return ctx.json({"result": location}) if ctx.wants_json else ctx.redirect(location)


def _own_result(app: PortalApp, ctx: Ctx) -> Any:
    kept = app.sessions.result(ctx.params["id"])
    require(ctx.principal, Action.DOCUMENT_READ, owner_id=kept.user_id)  # someone else's: 403
    return kept


def result(app: PortalApp, ctx: Ctx) -> Response:
    kept = _own_result(app, ctx)
    return ctx.render("result.html", kept=kept, report=kept.report)


def attachment(name: str) -> dict[str, str]:
    """The header that makes the browser save the response as ``name``."""
    return {"content-disposition": f"attachment; filename*=UTF-8''{quote(name)}"}


def result_document(app: PortalApp, ctx: Ctx) -> Response:
    kept = _own_result(app, ctx)
    return Response(200, kept.content, kept.mime_type, attachment(kept.name))


def result_report(app: PortalApp, ctx: Ctx) -> Response:
    kept = _own_result(app, ctx)
    return Response(200, json.dumps(kept.report, indent=2).encode(), "application/json",
                    attachment(kept.name.rsplit(".", 1)[0] + "-report.json"))


def result_report_pdf(app: PortalApp, ctx: Ctx) -> Response:
    """The kept report as the readable PDF (the one REST answers to ``Accept: application/pdf``), in the page's
    brand."""
    kept = _own_result(app, ctx)
    return Response(200, report_pdf(app.brands, ctx.brand, kept.report), "application/pdf",
                    attachment(kept.name.rsplit(".", 1)[0] + "-report.pdf"))


def start_form(app: PortalApp, ctx: Ctx, message: str | None = None, status: int = 200,
               started: int | None = None) -> Response:
    """The form; after a start, ``started`` is the new workflow's id (the page links to My workflows)."""
    return ctx.render("start.html", status=status, message=message, started=started,
                      templates=app.workflows().templates.list())


def _variables(ctx: Ctx) -> dict[str, str]:
    """The form's ``name = value`` lines (one a line; blank lines ignored)."""
    variables = {}
    for line in ctx.form.get("variables").splitlines():
        if line.strip():
            name, equals, value = line.partition("=")
            if not equals or not name.strip():
                raise SiegelError(Code.BAD_REQUEST, ctx.t("start.variables_bad", line=line.strip()))
            variables[name.strip()] = value.strip()
    return variables


def start(app: PortalApp, ctx: Ctx) -> Response:
    template = ctx.form.get("template")
    try:
        upload = _upload(ctx)
        started = app.workflows().start(ctx.principal, int(template) if template.isdigit() else template,
                                        upload.content, upload.filename, _variables(ctx))
    except SiegelError as exc:
        if exc.code not in (Code.BAD_REQUEST, Code.NOT_FOUND, Code.CONFLICT, Code.FORBIDDEN):
            raise
        return start_form(app, ctx, exc.message, exc.kind.http_status)
    return start_form(app, ctx, ctx.t("start.done", id=started["id"], template=started["template"]["name"]),
                      started=started["id"])
