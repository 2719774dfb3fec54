"""The admin's workflow template editor: the templates (server.workflows.templates.TemplateRepository), and a
form per template with its ordered steps (who acts, what they do, how they authenticate, the signature level
and field, four eyes, deadline) and who may start it. Saving makes a template or a new version of it; the
repository checks the definition (server.workflows.template.parse_definition) and names each problem.

Each step row carries the settings the form does not show (a page and box, reminders, appearance, key source)
as JSON in a hidden field, and the template its delivery, so an edit keeps them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from server.errors import Code, SiegelError
from server.signing.levels import Level
from server.web.portal.site import Ctx, Response
from server.workflows.template import Auth, StepAction

if TYPE_CHECKING:
    from server.web.portal import PortalApp

BLANK_ROWS = 2  # empty step rows offered below a template's steps
KINDS = ("user", "group-any", "group-every", "external")
SHOWN_SIGNATURE = ("level", "field")  # signature settings with a control; the rest travel in the row's extra
SHOWN_STEP = ("name", "assignee", "action", "auth", "signature", "deadlineHours", "fourEyesWith")
_EDITOR = {"kinds": KINDS, "actions": tuple(a.value for a in StepAction), "auths": tuple(a.value for a in Auth),
           "levels": tuple(level.value for level in Level)}


def _row(position: int, step: dict[str, Any] | None = None) -> dict[str, Any]:
    """A step of a definition (canonical JSON) as the editor's row; None: an empty row."""
    step = step or {}
    assignee, signature = step.get("assignee", {}), dict(step.get("signature") or {})
    if "group" in assignee:
        kind, who = f"group-{assignee.get('mode', 'any')}", assignee["group"]
    elif "external" in assignee:
        kind, who = "external", assignee["external"]
    else:
        kind, who = "user", assignee.get("user", "")
    extra = {k: v for k, v in step.items() if k not in SHOWN_STEP}
    hidden_signature = {k: v for k, v in signature.items() if k not in SHOWN_SIGNATURE and k != "format"}
    if hidden_signature and signature.get("keySource", "internal") == "internal":
        hidden_signature.pop("keySource")
    if hidden_signature:
        extra["signature"] = hidden_signature
    return {"position": position, "name": step.get("name", ""), "kind": kind, "who": who,
            "external_name": assignee.get("name", ""), "action": step.get("action", "sign"),
            "auth": step.get("auth", "password"), "level": signature.get("level", "B-T"),
            "field": signature.get("field", ""), "four_eyes": step.get("fourEyesWith", ""),
            "deadline": step.get("deadlineHours", ""), "extra": json.dumps(extra) if extra else ""}


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _step(row: dict[str, Any]) -> dict[str, Any]:
    """An editor row as a step of a definition (parse_definition judges it)."""
    try:
        extra = json.loads(row["extra"]) if row["extra"] else {}
    except ValueError:
        raise SiegelError(Code.BAD_REQUEST, f"step {row['name']!r}: its hidden settings are not JSON") from None
    if not isinstance(extra, dict):
        raise SiegelError(Code.BAD_REQUEST, f"step {row['name']!r}: its hidden settings are not an object")
    kind, who = row["kind"], row["who"].strip()
    if kind == "external":
        assignee: dict[str, Any] = {"external": who, **({"name": row["external_name"]} if row["external_name"] else {})}
    elif kind.startswith("group-"):
        assignee = {"group": who, "mode": kind.removeprefix("group-")}
    else:
        assignee = {"user": who}
    step: dict[str, Any] = {**extra, "name": row["name"], "assignee": assignee, "action": row["action"],
                            "auth": row["auth"]}
    if row["action"] == StepAction.SIGN.value:
        signature = {**extra.get("signature", {}), "level": row["level"]}
        if row["field"]:
            signature["field"] = row["field"]
        step["signature"] = signature
    else:
        step.pop("signature", None)
    if row["four_eyes"]:
        step["fourEyesWith"] = row["four_eyes"]
    deadline = str(row["deadline"]).strip()
    if deadline:
        if not deadline.isdigit():
            raise SiegelError(Code.BAD_REQUEST, f"step {row['name']!r}: the deadline is whole hours, not {deadline!r}")
        step["deadlineHours"] = int(deadline)
    return step


def _rows_of_form(ctx: Ctx) -> list[dict[str, Any]]:
    """The submitted step rows that have a name, in the order of their position numbers (ties: form order)."""
    f = ctx.form
    count = int(f.get("rows")) if f.get("rows").isdigit() else 0
    rows = []
    for i in range(1, min(count, 200) + 1):
        row = {key: f.get(f"step-{i}-{key}").strip() for key in
               ("position", "name", "kind", "who", "external_name", "action", "auth", "level", "field",
                "four_eyes", "deadline", "extra")}
        if not row["name"]:
            continue
        if not row["position"].isdigit():
            raise SiegelError(Code.BAD_REQUEST, ctx.t("admin.templates.bad_position", name=row["name"]))
        rows.append((int(row["position"]), i, row))
    return [row for _, _, row in sorted(rows, key=lambda r: r[:2])]


def templates(app: PortalApp, ctx: Ctx, message: str | None = None) -> Response:
    return ctx.render("admin/templates.html", message=message, templates=app.workflows().templates.list())


def _editor(app: PortalApp, ctx: Ctx, template: dict[str, Any] | None, definition: dict[str, Any],
            rows: list[dict[str, Any]], message: str | None = None, status: int = 200, name: str = "",
            brand: str | None = None) -> Response:
    """The form; ``brand``: the brand selected (else the template's)."""
    rows = [{**row, "position": n} for n, row in enumerate(rows, 1)]
    rows += [_row(len(rows) + n) for n in range(1, BLANK_ROWS + 1)]
    starters = definition.get("starters", {})
    return ctx.render("admin/template_edit.html", status=status, message=message, tpl=template, rows=rows,
                      name=template["name"] if template else name,
                      tpl_brand=brand if brand is not None else (template or {}).get("brand") or "",
                      brand_choices=[b for b in app.brands.list() if b.id is not None],
                      default_brand=app.brands.default(),
                      description=definition.get("description", ""),
                      starters={k: ", ".join(starters.get(k, [])) for k in ("roles", "users", "groups")},
                      delivery=json.dumps(definition.get("delivery", [])), **_EDITOR)


def new_template(app: PortalApp, ctx: Ctx) -> Response:
    return _editor(app, ctx, None, {}, [])


def _template_id(ctx: Ctx) -> int:
    text = ctx.params["id"]
    if not text.isdigit():
        raise SiegelError(Code.NOT_FOUND, f"no workflow template {text!r}")
    return int(text)


def edit_template(app: PortalApp, ctx: Ctx) -> Response:
    template = app.workflows().templates.describe(_template_id(ctx))
    definition = template["definition"]
    return _editor(app, ctx, template, definition, [_row(n, s) for n, s in enumerate(definition["steps"], 1)])


def save_template(app: PortalApp, ctx: Ctx) -> Response:
    """Create (no id in the path) or a new version, with the brand selected (empty: the default brand); on a
    problem (an unknown brand too) the form again with what was sent, and nothing saved."""
    repository = app.workflows().templates
    template = repository.describe(_template_id(ctx)) if "id" in ctx.params else None
    f = ctx.form
    brand = f.get("brand").strip()
    rows: list[dict[str, Any]] = []
    definition: dict[str, Any] = {"description": f.get("description").strip(),
                                  "starters": {k: _split(f.get(f"starters-{k}")) for k in ("roles", "users", "groups")}}
    try:
        rows = _rows_of_form(ctx)
        delivery = json.loads(f.get("delivery") or "[]")
        definition.update(steps=[_step(row) for row in rows], delivery=delivery)
        if template is None:
            saved = repository.create(ctx.principal, f.get("name"), definition, brand or None)
            done = ctx.t("admin.templates.created", name=saved["name"])
        else:
            saved = repository.update(ctx.principal, template["id"], definition, brand or None)
            done = ctx.t("admin.templates.saved", name=saved["name"], version=saved["version"])
    except ValueError:
        return _editor(app, ctx, template, definition, rows, ctx.t("admin.templates.bad_delivery"), 400,
                       f.get("name"), brand)
    except SiegelError as exc:
        if exc.code not in (Code.BAD_REQUEST, Code.CONFLICT, Code.NOT_FOUND):
            raise
        return _editor(app, ctx, template, definition, rows, exc.message, exc.kind.http_status, f.get("name"),
                       brand)
    return templates(app, ctx, done)
