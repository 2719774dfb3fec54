"""The admin dashboard: health, the archive's state, signatures per day by format and workflow durations per
template (SVG charts), accounts and groups (directory-sourced ones marked, a group's members and what it
gives; the last synchronisation and its errors, "sync now"), certificates (issue, revoke, expiring soon),
the audit log with filters and its integrity check, the remote signing accounts. Each page's Action is in
site.ROUTES; the services audit what changes."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from server.errors import Code, SiegelError
from server.identity.policy import Action
from server.identity.users import Role
from server.pki.ca import REASONS
from server.signing.order import Format
from server.web.portal.charts import BarChart, grouped_bars, last_days, stacked_bars
from server.web.portal.site import Ctx, Response
from server.web.status import run_checks

if TYPE_CHECKING:
    from server.web.portal import PortalApp

ROLES = tuple(role.value for role in Role)
EXPIRING_DAYS = 30


def _directory_state(app: PortalApp) -> dict[str, Any] | None:
    sync = app.directory()
    if sync is None:
        return None
    row = sync.state()
    summary = json.loads(row.last_summary) if row.last_summary else None
    return {"last_run_at": row.last_run_at, "last_ok_at": row.last_ok_at, "last_full_at": row.last_full_at,
            "last_error": row.last_error, "errors": (summary or {}).get("errors", [])}


CHART_DAYS = 14
SIGN_ACTIONS = tuple(f"sign.{f.value}" for f in sorted(Format, key=lambda f: f.value))  # the audit's per document


def _last(app: PortalApp, action: str) -> str | None:
    """When the newest audit entry whose action starts with ``action`` was written."""
    entries = app.audit.search(action=action, limit=1)
    return entries[0].at if entries else None


def _archive_state(app: PortalApp) -> dict[str, Any]:
    """The archive's counts and next renewals, with its last collection and renewal from the audit log."""
    return {**app.archive().stats(), "lastCollection": _last(app, "archive.collect"),
            "lastRenewal": _last(app, "archive.renew-")}


DURATION_DAYS = 30
DURATION_UNITS: tuple[tuple[int | None, int, str], ...] = (
    (120, 1, "s"), (2 * 3600, 60, "min"), (48 * 3600, 3600, "h"), (None, 86400, "d"))
"""(below how many seconds of the longest bar, seconds per unit, unit): the duration chart's unit."""


def _durations(app: PortalApp, ctx: Ctx) -> tuple[BarChart, int]:
    """The median and 90th percentile of the time from start to completion of the workflows completed in the
    last DURATION_DAYS days, per template; and how many workflows that was."""
    per = app.workflow_overview.durations(datetime.now(UTC) - timedelta(days=DURATION_DAYS))
    peak = max((d.percentile(90) for d in per), default=0)
    _, divisor, unit = next(u for u in DURATION_UNITS if u[0] is None or peak < u[0])
    median, p90 = ctx.t("admin.chart.median"), ctx.t("admin.chart.p90")
    categories = [f"{d.template} ({len(d.seconds)})" for d in per]
    values: dict[tuple[str, str], float] = {}
    for category, d in zip(categories, per):
        values[(category, median)] = round(d.percentile(50) / divisor, 1)
        values[(category, p90)] = round(d.percentile(90) / divisor, 1)
    chart = grouped_bars(categories, [median, p90], values, ctx.t("admin.unit." + unit))
    return chart, sum(len(d.seconds) for d in per)


def dashboard(app: PortalApp, ctx: Ctx) -> Response:
    expiring = app.ca.list(timedelta(days=EXPIRING_DAYS), actor=ctx.principal.name) if ctx.may(Action.CA_ADMIN) else None
    days = last_days(datetime.now(UTC).date(), CHART_DAYS)
    signatures = stacked_bars(days, [a.removeprefix("sign.") for a in SIGN_ACTIONS], {
        (day, action.removeprefix("sign.")): n for (day, action), n in app.audit_counts(SIGN_ACTIONS, days[0]).items()})
    durations, completed = _durations(app, ctx)
    return ctx.render("admin/dashboard.html", health=run_checks(app.health), directory=_directory_state(app),
                      expiring=expiring, days=EXPIRING_DAYS, archive=_archive_state(app), signatures=signatures,
                      durations=durations, completed=completed, duration_days=DURATION_DAYS)


def remote_accounts(app: PortalApp, ctx: Ctx) -> Response:
    return ctx.render("admin/remote.html", accounts=app.remote_overview())


def _groups(app: PortalApp) -> list[dict[str, Any]]:
    """Every group with its source and member counts; for a directory group the role it gives and whether
    its members get a certificate (the directory settings say so)."""
    sync = app.directory()
    out = []
    for group in app.users.groups():
        role, enrols = sync.purpose(group.name) if sync is not None and group.source == "directory" else (None, False)
        out.append({**asdict(group), "role": role, "enrols": enrols})
    return out


def users(app: PortalApp, ctx: Ctx, message: str | None = None, status: int = 200) -> Response:
    return ctx.render("admin/users.html", status=status, message=message, users=app.users.list(), roles=ROLES,
                      directory=_directory_state(app), groups=_groups(app))


def _act(app: PortalApp, ctx: Ctx, done: str, work: Any) -> Response:
    """Run ``work``; the users page with what happened (or what was wrong)."""
    try:
        work()
    except SiegelError as exc:
        if exc.code not in (Code.BAD_REQUEST, Code.CONFLICT, Code.NOT_FOUND):
            raise
        return users(app, ctx, exc.message, exc.kind.http_status)
    return users(app, ctx, done)


def user_add(app: PortalApp, ctx: Ctx) -> Response:
    f = ctx.form
    name = f.get("name").strip()
    return _act(app, ctx, ctx.t("admin.users.added", name=name), lambda: app.users.add(
        name, f.get("email").strip(), f.get("role"), f.get("password") or None, actor=ctx.principal.name,
        display_name=f.get("display_name").strip() or None))


def user_disable(app: PortalApp, ctx: Ctx) -> Response:
    name = ctx.form.get("name")
    if name == ctx.principal.name:
        return users(app, ctx, ctx.t("admin.users.not_self"), 400)
    return _act(app, ctx, ctx.t("admin.users.disabled", name=name),
                lambda: app.users.disable(name, actor=ctx.principal.name, reason="portal"))


def user_enable(app: PortalApp, ctx: Ctx) -> Response:
    name = ctx.form.get("name")
    return _act(app, ctx, ctx.t("admin.users.enabled", name=name),
                lambda: app.users.enable(name, actor=ctx.principal.name))


def user_role(app: PortalApp, ctx: Ctx) -> Response:
    name, role = ctx.form.get("name"), ctx.form.get("role")
    return _act(app, ctx, ctx.t("admin.users.role_set", name=name, role=role),
                lambda: app.users.set_role(name, role, actor=ctx.principal.name))


def directory_sync(app: PortalApp, ctx: Ctx) -> Response:
    sync = app.directory()
    if sync is None:
        return users(app, ctx, ctx.t("admin.directory.off"), 409)
    summary = sync.run(full=ctx.form.get("full") == "1")
    counts = {k: v for k, v in asdict(summary).items() if isinstance(v, int) and not isinstance(v, bool)}
    return users(app, ctx, ctx.t("admin.directory.done", counts=", ".join(f"{k} {v}" for k, v in counts.items()),
                                 errors=len(summary.errors)))


def certificates(app: PortalApp, ctx: Ctx, message: str | None = None, status: int = 200) -> Response:
    expiring = ctx.args.get("expiring") == "1"
    rows = app.ca.list(timedelta(days=EXPIRING_DAYS) if expiring else None, actor=ctx.principal.name)
    return ctx.render("admin/certificates.html", status=status, message=message, certificates=rows,
                      expiring=expiring, days=EXPIRING_DAYS, reasons=REASONS, users=app.users.list())


def certificate_issue(app: PortalApp, ctx: Ctx) -> Response:
    name = ctx.form.get("user")
    try:
        cert = app.ca.issue_user(name, actor=ctx.principal.name)
    except SiegelError as exc:
        if exc.code not in (Code.BAD_REQUEST, Code.NOT_FOUND):
            raise
        return certificates(app, ctx, exc.message, exc.kind.http_status)
    return certificates(app, ctx, ctx.t("admin.certs.issued", serial=cert.serial, name=name))


def certificate_revoke(app: PortalApp, ctx: Ctx) -> Response:
    serial = ctx.form.get("serial")
    try:
        app.ca.revoke(serial, ctx.form.get("reason", "unspecified"), actor=ctx.principal.name)
    except SiegelError as exc:
        if exc.code not in (Code.BAD_REQUEST, Code.NOT_FOUND, Code.CONFLICT):
            raise
        return certificates(app, ctx, exc.message, exc.kind.http_status)
    return certificates(app, ctx, ctx.t("admin.certs.revoked", serial=serial))


AUDIT_FILTERS = ("actor", "action", "target", "since", "until")


def audit(app: PortalApp, ctx: Ctx, check: Any = None) -> Response:
    filters = {k: ctx.args.get(k, "").strip() for k in AUDIT_FILTERS}
    before = ctx.args.get("before", "")
    entries = app.audit.search(**filters, before_seq=int(before) if before.isdigit() else None, limit=100)
    return ctx.render("admin/audit.html", entries=entries, filters=filters, check=check,
                      more=entries[-1].seq if len(entries) == 100 else None)


def audit_verify(app: PortalApp, ctx: Ctx) -> Response:
    count, fault = app.audit.verify()
    return audit(app, ctx, {"count": count, "fault": str(fault) if fault else None})
