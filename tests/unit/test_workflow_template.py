"""The workflow template definition: what is accepted, what is refused with which path in the message."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from server.errors import SiegelError
from server.signing.levels import Level
from server.workflows.template import Auth, KeySourceKind, StepAction, parse_definition, resolve

GOOD: dict[str, Any] = {
    "description": "Rahmenvertrag",
    "starters": {"roles": ["signer"], "users": ["erp"], "groups": ["vertrieb"]},
    "steps": [
        {"name": "Vertrieb", "assignee": {"user": "anna"}, "action": "sign",
         "signature": {"level": "B-B", "field": "Sig1", "appearance": "standard"}},
        {"name": "Freigabe", "assignee": {"group": "leitung", "mode": "any"}, "action": "approve",
         "auth": "password+2fa", "fourEyesWith": "Vertrieb", "deadlineHours": 48, "remindAfterHours": [12, 24]},
        {"name": "Partner", "assignee": {"external": "{{partner_email}}", "name": "{{partner_name}}"},
         "action": "sign", "signature": {"page": -1, "box": [50, 50, 200, 60], "keySource": "internal"}},
        {"name": "Ablage", "assignee": {"group": "archiv", "mode": "every"}, "action": "copy"},
    ],
}


def test_a_good_definition_is_parsed_and_round_trips() -> None:
    d = parse_definition(GOOD)
    assert [s.action for s in d.steps] == [StepAction.SIGN, StepAction.APPROVE, StepAction.SIGN, StepAction.COPY]
    assert d.steps[0].auth is Auth.PASSWORD and d.steps[2].auth is Auth.LINK  # the defaults
    assert d.steps[0].signature and d.steps[0].signature.level is Level.B_B
    assert d.steps[2].signature and d.steps[2].signature.box == (50.0, 50.0, 200.0, 60.0)
    assert d.steps[2].signature.key_source is KeySourceKind.INTERNAL
    assert d.steps[3].assignee.every and not d.steps[1].assignee.every
    assert d.variables() == {"partner_email", "partner_name"}
    assert parse_definition(d.to_json()) == d


def _broken(path: list[Any], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(GOOD)
    target = raw
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return raw


@pytest.mark.parametrize("path, value, message", [
    (["steps"], [], "steps: expected a list of 1 to 50 steps"),
    (["steps", 0, "assignee"], {"user": "a", "group": "b"}, "steps[1].assignee: name exactly one of"),
    (["steps", 0, "action"], "stamp", "steps[1].action: 'stamp': expected one of sign, approve, copy"),
    (["steps", 0, "signature", "level"], "B-X", "steps[1].signature.level: 'B-X'"),
    (["steps", 0, "signature", "format"], "xades", "steps[1].signature.format: 'xades': workflow documents are PDFs"),
    (["steps", 0, "signature", "page"], 1, "steps[1].signature: give a field or a page and box, not both"),
    (["steps", 2, "signature", "box"], [1, 2, 0, 4], "steps[3].signature.box: expected [x, y, width, height]"),
    (["steps", 2, "signature", "keySource"], "remote", "steps[3].signature.remoteService: a remote key source names"),
    (["steps", 2, "signature", "keySource"], "usb", "steps[3].signature.keySource: 'usb'"),
    (["steps", 2, "auth"], "password", "steps[3].auth: an external signer has no account here: only link"),
    (["steps", 2, "assignee", "external"], "not-an-address", "steps[3].assignee.external: 'not-an-address'"),
    (["steps", 1, "fourEyesWith"], "Partner", "steps[2].fourEyesWith: 'Partner' is not the name of an earlier step"),
    (["steps", 1, "remindAfterHours"], [24, 12], "steps[2].remindAfterHours: expected increasing hours"),
    (["steps", 1, "remindAfterHours"], [12, 48], "every reminder must come before the deadline (48 h)"),
    (["steps", 1, "deadlineHours"], 0, "steps[2].deadlineHours: expected whole hours from 1 to 8760"),
    (["steps", 1, "signature"], {"level": "B-B"}, "steps[2].signature: only sign steps have signature settings"),
    (["steps", 1, "name"], "Vertrieb", "steps[2].name: 'Vertrieb' is the name of an earlier step"),
    (["steps", 3, "deadlineHours"], 5, "steps[4].deadlineHours: a copy step has nothing to do"),
    (["steps", 0, "colour"], "red", "steps[1].colour: unknown setting"),
    (["starters", "roles"], ["boss"], "starters.roles: 'boss'"),
    (["steps", 0, "action"], KeyError, "steps[1].action: expected sign, approve or copy"),
])
def test_a_broken_definition_is_refused_naming_the_place(path: list[Any], value: Any, message: str) -> None:
    with pytest.raises(SiegelError) as caught:
        parse_definition(_broken(path, value))
    assert caught.value.kind.http_status == 400
    assert message in caught.value.message, caught.value.message


def test_every_problem_is_named_in_one_answer() -> None:
    raw = _broken(["steps", 0, "action"], "stamp")
    raw["steps"][1]["deadlineHours"] = -1
    with pytest.raises(SiegelError) as caught:
        parse_definition(raw)
    assert "steps[1].action" in caught.value.message and "steps[2].deadlineHours" in caught.value.message


def test_only_copy_steps_are_refused() -> None:
    with pytest.raises(SiegelError, match="at least one step signs or approves"):
        parse_definition({"steps": [{"name": "a", "assignee": {"user": "x"}, "action": "copy"}]})


def test_variables_are_resolved_or_missing_ones_named() -> None:
    assert resolve("{{partner_email}}", {"partner_email": " p@example.org "}) == "p@example.org"
    assert resolve("fixed@example.org", {}) == "fixed@example.org"
    with pytest.raises(SiegelError, match="variables.partner_email"):
        resolve("{{partner_email}}", {})
