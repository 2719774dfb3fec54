"""A workflow template's definition: ordered steps, each with who acts, what they do, how they sign and
authenticate, deadline and reminders; who may start it.

:func:`parse_definition` checks a JSON object (the REST, SOAP and CLI form) against the rules below and
gives a frozen :class:`Definition`; every problem is named by its path (``steps[2].signature.level``) in one
``SiegelError(BAD_REQUEST)``. :meth:`Definition.to_json` writes the canonical form stored per version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from server.errors import Code, SiegelError
from server.identity.users import Role
from server.signing.levels import Level

MAX_STEPS = 50
VARIABLE = re.compile(r"^\{\{([A-Za-z_][A-Za-z0-9_]{0,63})\}\}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class StepAction(StrEnum):
    SIGN = "sign"
    APPROVE = "approve"  # the approver must act before the next step; a rejection ends the workflow
    COPY = "copy"  # receives the document by mail when the step is reached; nothing to do


class Auth(StrEnum):
    """How the person acting on a step authenticates, weakest first."""

    LINK = "link"  # the single-use invitation link alone
    PASSWORD = "password"  # the account's password (HTTP Basic)
    PASSWORD_2FA = "password+2fa"  # the password and a second factor (X-Siegel-OTP)


AUTH_RANK = {Auth.LINK: 0, Auth.PASSWORD: 1, Auth.PASSWORD_2FA: 2}


class KeySourceKind(StrEnum):
    INTERNAL = "internal"  # the signer's advanced certificate and HSM key of the internal CA
    REMOTE = "remote"  # a remote qualified signature service (CSC API), named by ``remote_service``


@dataclass(frozen=True)
class Assignee:
    """One account (``user``), a group (``group``; ``every``: each member signs, else any one), or an external
    signer by e-mail address (``external``, a literal address or a ``{{variable}}`` given at start)."""

    user: str | None = None
    group: str | None = None
    every: bool = False
    external: str | None = None
    external_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.user is not None:
            return {"user": self.user}
        if self.group is not None:
            return {"group": self.group, "mode": "every" if self.every else "any"}
        out: dict[str, Any] = {"external": self.external}
        if self.external_name:
            out["name"] = self.external_name
        return out


@dataclass(frozen=True)
class SignatureSettings:
    """How a sign step's signature is made: PAdES at ``level`` into ``field``, or on ``page`` at ``box``."""

    level: Level = Level.B_T
    field: str | None = None
    page: int | None = None
    box: tuple[float, float, float, float] | None = None
    appearance: str | None = None
    key_source: KeySourceKind = KeySourceKind.INTERNAL
    remote_service: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": "pades", "level": self.level.value, "keySource": self.key_source.value}
        if self.field is not None:
            out["field"] = self.field
        if self.page is not None:
            out["page"], out["box"] = self.page, list(self.box or ())
        if self.appearance is not None:
            out["appearance"] = self.appearance
        if self.remote_service is not None:
            out["remoteService"] = self.remote_service
        return out


@dataclass(frozen=True)
class Step:
    name: str
    assignee: Assignee
    action: StepAction
    auth: Auth = Auth.PASSWORD
    signature: SignatureSettings | None = None
    deadline_hours: int | None = None
    remind_after_hours: tuple[float, ...] = ()
    four_eyes_with: str | None = None  # an earlier step whose actor may not act on this one

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "assignee": self.assignee.to_json(), "action": self.action.value,
                               "auth": self.auth.value}
        if self.signature is not None:
            out["signature"] = self.signature.to_json()
        if self.deadline_hours is not None:
            out["deadlineHours"] = self.deadline_hours
        if self.remind_after_hours:
            out["remindAfterHours"] = list(self.remind_after_hours)
        if self.four_eyes_with is not None:
            out["fourEyesWith"] = self.four_eyes_with
        return out


@dataclass(frozen=True)
class Starters:
    """Who may start the template (besides needing WORKFLOW_START): any of the roles, accounts or groups;
    all three empty: everyone with WORKFLOW_START."""

    roles: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def anyone(self) -> bool:
        return not (self.roles or self.users or self.groups)

    def to_json(self) -> dict[str, Any]:
        return {"roles": list(self.roles), "users": list(self.users), "groups": list(self.groups)}


class DeliveryKind(StrEnum):
    FOLDER = "folder"  # a file in a sub-folder of workflows.delivery_root (atomic: temporary file, fsync, rename)
    CALLBACK = "callback"  # an HTTP(S) POST of JSON with the document, HMAC-signed, retried with a growing wait
    EMAIL = "email"  # a mail with the signed PDF attached (sent by the delivery job, retried like a callback)
    EMAIL_LINK = "emailLink"  # a mail (the outbox) with the link to the document, for an account that may read it
    ARCHIVE = "archive"  # the signed document into the archive (ArchiveService, owned by the starter)


@dataclass(frozen=True)
class Delivery:
    """Where the document goes when the workflow is completed."""

    kind: DeliveryKind
    target: str  # the sub-folder, the callback URL, the e-mail address (or its {{variable}}); "" for the archive

    def to_json(self) -> dict[str, Any]:
        return {self.kind.value: True if self.kind is DeliveryKind.ARCHIVE else self.target}


@dataclass(frozen=True)
class Definition:
    steps: tuple[Step, ...]
    starters: Starters = Starters()
    description: str = ""
    delivery: tuple[Delivery, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"description": self.description, "starters": self.starters.to_json(),
                "steps": [s.to_json() for s in self.steps], "delivery": [d.to_json() for d in self.delivery]}

    def variables(self) -> set[str]:
        """The names of the ``{{variables}}`` a start has to give."""
        names = set()
        for step in self.steps:
            for text in (step.assignee.external, step.assignee.external_name):
                match = VARIABLE.match(text or "")
                if match:
                    names.add(match.group(1))
        for delivery in self.delivery:
            match = VARIABLE.match(delivery.target)
            if match:
                names.add(match.group(1))
        return names


class _Problems:
    """Collects every problem of a definition with its path, so one answer names them all."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, text: str) -> None:
        self.items.append(f"{path}: {text}")

    def keys(self, path: str, obj: dict[str, Any], allowed: set[str]) -> None:
        for key in sorted(set(obj) - allowed):
            self.add(f"{path}.{key}", f"unknown setting (known: {', '.join(sorted(allowed))})")

    def text(self, path: str, value: Any, optional: bool = False, limit: int = 200) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            self.add(path, f"expected a non-empty text of at most {limit} characters")
            return None
        return value.strip()

    def choice(self, path: str, value: Any, enum: type[StrEnum], default: StrEnum) -> Any:
        if value is None:
            return default
        try:
            return enum(value)
        except ValueError:
            self.add(path, f"{value!r}: expected one of {', '.join(e.value for e in enum)}")
            return default


def _obj(problems: _Problems, path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        problems.add(path, "expected an object")
        return {}
    return value


def _assignee(p: _Problems, path: str, raw: Any) -> Assignee:
    obj = _obj(p, path, raw)
    kinds = [k for k in ("user", "group", "external") if k in obj]
    if len(kinds) != 1:
        p.add(path, "name exactly one of user, group (with mode any or every) or external (an e-mail address)")
        return Assignee(user="?")
    kind = kinds[0]
    if kind == "user":
        p.keys(path, obj, {"user"})
        return Assignee(user=p.text(f"{path}.user", obj["user"]) or "?")
    if kind == "group":
        p.keys(path, obj, {"group", "mode"})
        mode = obj.get("mode", "any")
        if mode not in ("any", "every"):
            p.add(f"{path}.mode", f"{mode!r}: expected any (one member acts) or every (each member acts)")
        return Assignee(group=p.text(f"{path}.group", obj["group"]) or "?", every=mode == "every")
    p.keys(path, obj, {"external", "name"})
    address = p.text(f"{path}.external", obj["external"], limit=320) or ""
    if address and not (VARIABLE.match(address) or _EMAIL.match(address)):
        p.add(f"{path}.external", f"{address!r}: expected an e-mail address or a {{{{variable}}}} given at start")
    return Assignee(external=address or "?", external_name=p.text(f"{path}.name", obj.get("name"), optional=True))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _signature(p: _Problems, path: str, raw: Any) -> SignatureSettings:
    obj = _obj(p, path, {} if raw is None else raw)
    p.keys(path, obj, {"format", "level", "field", "page", "box", "appearance", "keySource", "remoteService"})
    if obj.get("format", "pades") != "pades":
        p.add(f"{path}.format", f"{obj['format']!r}: workflow documents are PDFs and signed as pades")
    level = p.choice(f"{path}.level", obj.get("level"), Level, Level.B_T)
    field = p.text(f"{path}.field", obj.get("field"), optional=True)
    page, box = obj.get("page"), obj.get("box")
    if field is not None and (page is not None or box is not None):
        p.add(path, "give a field or a page and box, not both")
    if (page is None) != (box is None):
        p.add(path, "a position needs both page (1 = first, -1 = last) and box [x, y, width, height] in points")
    if page is not None and (not isinstance(page, int) or isinstance(page, bool) or page == 0):
        p.add(f"{path}.page", "expected a page number (1 = first, -1 = last)")
    if box is not None and not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)
                                and box[2] > 0 and box[3] > 0):
        p.add(f"{path}.box", "expected [x, y, width, height] in PDF points, width and height above 0")
    appearance = obj.get("appearance")
    if appearance is not None and not (isinstance(appearance, str) and _NAME.match(appearance)):
        p.add(f"{path}.appearance", "expected the name of an appearance template (letters, digits, - and _)")
    source = p.choice(f"{path}.keySource", obj.get("keySource"), KeySourceKind, KeySourceKind.INTERNAL)
    remote = p.text(f"{path}.remoteService", obj.get("remoteService"), optional=True)
    if source is KeySourceKind.REMOTE and remote is None:
        p.add(f"{path}.remoteService", "a remote key source names the remote qualified signature service")
    if source is KeySourceKind.INTERNAL and remote is not None:
        p.add(f"{path}.remoteService", "only with keySource remote")
    good_box = isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)
    return SignatureSettings(level=level, field=field, page=page if isinstance(page, int) else None,
                             box=tuple(float(v) for v in box) if good_box else None,  # type: ignore[arg-type]
                             appearance=appearance if isinstance(appearance, str) else None,
                             key_source=source, remote_service=remote)


def _step(p: _Problems, path: str, raw: Any, earlier: dict[str, Step]) -> Step:
    obj = _obj(p, path, raw)
    p.keys(path, obj, {"name", "assignee", "action", "auth", "signature", "deadlineHours", "remindAfterHours",
                       "fourEyesWith"})
    name = p.text(f"{path}.name", obj.get("name"), limit=100) or path
    if name in earlier:
        p.add(f"{path}.name", f"{name!r} is the name of an earlier step; every step needs its own")
    assignee = _assignee(p, f"{path}.assignee", obj.get("assignee"))
    if "action" not in obj:
        p.add(f"{path}.action", "expected sign, approve or copy")
    action = p.choice(f"{path}.action", obj.get("action"), StepAction, StepAction.SIGN)
    auth = p.choice(f"{path}.auth", obj.get("auth"), Auth, Auth.LINK if assignee.external else Auth.PASSWORD)
    if assignee.external is not None and auth is not Auth.LINK:
        p.add(f"{path}.auth", "an external signer has no account here: only link")
    signature = None
    if action is StepAction.SIGN:
        signature = _signature(p, f"{path}.signature", obj.get("signature"))
    elif "signature" in obj:
        p.add(f"{path}.signature", f"only sign steps have signature settings, this one is {action.value}")
    deadline = obj.get("deadlineHours")
    if deadline is not None and not (isinstance(deadline, int) and not isinstance(deadline, bool)
                                     and 1 <= deadline <= 8760):
        p.add(f"{path}.deadlineHours", "expected whole hours from 1 to 8760")
        deadline = None
    if action is StepAction.COPY and deadline is not None:
        p.add(f"{path}.deadlineHours", "a copy step has nothing to do and no deadline")
    reminders = obj.get("remindAfterHours", [])
    if not (isinstance(reminders, list) and all(_number(h) and h > 0 for h in reminders)
            and reminders == sorted(set(reminders))):
        p.add(f"{path}.remindAfterHours", "expected increasing hours after the step became due, each above 0")
        reminders = []
    elif reminders and action is StepAction.COPY:
        p.add(f"{path}.remindAfterHours", "a copy step has nothing to remind of")
    elif reminders and deadline is not None and reminders[-1] >= deadline:
        p.add(f"{path}.remindAfterHours", f"every reminder must come before the deadline ({deadline} h)")
    four_eyes = p.text(f"{path}.fourEyesWith", obj.get("fourEyesWith"), optional=True, limit=100)
    if four_eyes is not None:
        partner = earlier.get(four_eyes)
        if partner is None:
            p.add(f"{path}.fourEyesWith", f"{four_eyes!r} is not the name of an earlier step")
        elif partner.action is StepAction.COPY or action is StepAction.COPY:
            p.add(f"{path}.fourEyesWith", "a four-eyes pair is two steps someone acts on (sign or approve), "
                                          "not a copy")
    return Step(name, assignee, action, auth, signature, deadline, tuple(float(h) for h in reminders), four_eyes)


def _starters(p: _Problems, raw: Any) -> Starters:
    obj = _obj(p, "starters", {} if raw is None else raw)
    p.keys("starters", obj, {"roles", "users", "groups"})
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("roles", "users", "groups"):
        value = obj.get(key, [])
        if not (isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)):
            p.add(f"starters.{key}", "expected a list of names")
            value = []
        lists[key] = tuple(v.strip() for v in value)
    roles = {r.value for r in Role}
    for role in lists["roles"]:
        if role not in roles:
            p.add("starters.roles", f"{role!r}: expected roles among {', '.join(sorted(roles))}")
    return Starters(lists["roles"], lists["users"], lists["groups"])


_FOLDER = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$")
_URL = re.compile(r"^https?://[^\s/?#]+(/\S*)?$")
MAX_DELIVERIES = 10


def _deliveries(p: _Problems, raw: Any) -> tuple[Delivery, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_DELIVERIES:
        p.add("delivery", f"expected a list of at most {MAX_DELIVERIES} deliveries")
        return ()
    out = []
    for index, item in enumerate(raw, 1):
        path = f"delivery[{index}]"
        obj = _obj(p, path, item)
        if len(obj) != 1 or next(iter(obj)) not in {k.value for k in DeliveryKind}:
            p.add(path, "expected {\"folder\": \"sub/folder\"}, {\"callback\": \"https://...\"}, "
                        "{\"email\" or \"emailLink\": \"someone@example.com\"} or {\"archive\": true}")
            continue
        kind, target = DeliveryKind(next(iter(obj))), next(iter(obj.values()))
        if kind is DeliveryKind.FOLDER and not (isinstance(target, str) and len(target) <= 200
                                                 and _FOLDER.match(target) and ".." not in target.split("/")):
            p.add(f"{path}.folder", "expected a relative folder name under workflows.delivery_root (letters, "
                                    "digits, - _ . and /, no ..)")
            continue
        if kind is DeliveryKind.CALLBACK and not (isinstance(target, str) and len(target) <= 2000
                                                   and _URL.match(target)):
            p.add(f"{path}.callback", "expected an http:// or https:// URL")
            continue
        if kind in (DeliveryKind.EMAIL, DeliveryKind.EMAIL_LINK) and not (
                isinstance(target, str) and len(target) <= 320 and (_EMAIL.match(target) or VARIABLE.match(target))):
            p.add(f"{path}.{kind.value}", "expected an e-mail address or a {{variable}} given at start")
            continue
        if kind is DeliveryKind.ARCHIVE:
            if target is not True:
                p.add(f"{path}.archive", "expected true")
                continue
            target = ""
        out.append(Delivery(kind, target))
    return tuple(out)


def parse_definition(raw: Any) -> Definition:
    """The checked definition of a JSON object; SiegelError(BAD_REQUEST) naming every problem."""
    p = _Problems()
    obj = _obj(p, "definition", raw)
    p.keys("definition", obj, {"description", "starters", "steps", "delivery"})
    description = obj.get("description", "")
    if not isinstance(description, str) or len(description) > 2000:
        p.add("description", "expected a text of at most 2000 characters")
        description = ""
    starters = _starters(p, obj.get("starters"))
    delivery = _deliveries(p, obj.get("delivery"))
    steps_raw = obj.get("steps")
    steps: dict[str, Step] = {}
    if not isinstance(steps_raw, list) or not 1 <= len(steps_raw) <= MAX_STEPS:
        p.add("steps", f"expected a list of 1 to {MAX_STEPS} steps, in the order they happen")
    else:
        for index, raw_step in enumerate(steps_raw, 1):
            step = _step(p, f"steps[{index}]", raw_step, steps)
            steps.setdefault(step.name, step)
        if all(s.action is StepAction.COPY for s in steps.values()):
            p.add("steps", "at least one step signs or approves")
    if p.items:
        raise SiegelError(Code.BAD_REQUEST, "the workflow template is not valid: " + "; ".join(p.items))
    return Definition(tuple(steps.values()), starters, description, delivery)


def resolve(text: str | None, variables: dict[str, str]) -> str | None:
    """``text`` with its ``{{variable}}`` replaced by the start's value (SiegelError when it is not given)."""
    match = VARIABLE.match(text or "")
    if match is None:
        return text
    value = variables.get(match.group(1))
    if not isinstance(value, str) or not value.strip():
        raise SiegelError(Code.BAD_REQUEST, f"variables.{match.group(1)}: the template needs this value")
    return value.strip()
