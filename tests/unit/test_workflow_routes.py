"""The route table's ``{id}`` segments for /api/v1/workflows: one segment each, literal paths first."""

from __future__ import annotations

from server.identity.policy import Action
from server.web.auth import PUBLIC, permission_of
from server.web.openapi import PATHS


def test_id_segments_match_one_segment_and_literal_paths_win() -> None:
    assert permission_of(b"/api/v1/workflows/12", b"GET") == (Action.WORKFLOW_READ, ("GET",))
    assert permission_of(b"/api/v1/workflows/12/steps/3", b"POST")[0] == Action.STEP_ACT
    assert permission_of(b"/api/v1/workflows/12/steps/3?x=1", b"POST")[0] == Action.STEP_ACT
    assert permission_of(b"/api/v1/workflows/inbox", b"GET")[0] == Action.STEP_ACT  # not a workflow id
    assert permission_of(b"/api/v1/workflows/templates", b"POST")[0] == Action.TEMPLATE_MANAGE
    assert permission_of(b"/api/v1/workflows/templates/4", b"DELETE")[0] == Action.TEMPLATE_MANAGE
    assert permission_of(b"/api/v1/workflows/link", b"POST")[0] == PUBLIC
    assert permission_of(b"/api/v1/workflows/12/steps", b"POST") == (None, ())
    assert permission_of(b"/api/v1/workflows/1/2/steps/3", b"POST") == (None, ())
    assert permission_of(b"/api/v1/workflows/12/cancel", b"GET") == (None, ("POST",))


def test_every_workflow_route_is_described() -> None:
    from server.web.auth import ROUTES

    for path, methods in ROUTES.items():
        if path.startswith(("/api/v1/workflows", "/api/v1/api-clients")):
            described = PATHS[path.removeprefix("/api/v1")]
            assert {m.lower() for m in methods} == set(described), path
