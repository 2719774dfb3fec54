"""Flags on pending workflow assignments: the directory sync disabled (or lost) the assignee's account.

:func:`flag_disabled_in` is the directory sync's ``on_disable`` hook (``server.identity.directory``): in the
sync's own transaction, every pending assignment of an account it disables gets :data:`DISABLED_FLAG` and
the time, once; the workflow status (REST, SOAP ``Assignee/Flag``) shows it, and an audit entry per assignment
(``workflow.flag``, target ``workflow:<id>/<step>``) says so. The workflow itself goes on: a group step's
other members can still act, and the starter decides (cancel, or a new start) about a step only the disabled
account could do.

:func:`clear_enabled_in` is the ``on_enable`` hook: the run that enables such an account again (enabled in the
directory again) clears the flag of its assignments that are still pending, with an audit entry
``workflow.unflag`` each. An administrator's enable (:meth:`server.identity.users.UserService.enable`: CLI
``siegel user enable``, the admin portal's users page) calls the same function as its ``on_enable`` hook, in its
transaction, the entries under the administrator's name. A flag of an assignment that is no longer pending stays
as history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from server.db.models import User, WorkflowAssignment, WorkflowStep
from server.identity.directory import ACTOR
from server.workflows.history import audit_target

DISABLED_FLAG = "the assignee's account was disabled by the directory sync"


AuditEntries = list[tuple[str, str, str, dict[str, Any]]]
"""(actor, action, target, details) of the audit entries to add in the sync's transaction."""


def _pending(conn: Connection, user_ids: set[int], flagged: bool) -> list[Row]:
    """The pending assignments of ``user_ids`` with (``flagged``) or without the disabled flag."""
    assignments, steps, users = WorkflowAssignment.__table__, WorkflowStep.__table__, User.__table__
    flag = assignments.c.flag == DISABLED_FLAG if flagged else assignments.c.flag.is_(None)
    return list(conn.execute(
        select(assignments.c.id, steps.c.workflow_id, steps.c.position, users.c.name)
        .join(steps, steps.c.id == assignments.c.step_id).join(users, users.c.id == assignments.c.user_id)
        .where(assignments.c.user_id.in_(sorted(user_ids)), assignments.c.state == "pending", flag)
        .order_by(steps.c.workflow_id, steps.c.position, assignments.c.id)).all())


def _set(conn: Connection, rows: list[Row], action: str, flag: str | None, at: datetime | None) -> AuditEntries:
    if rows:
        assignments = WorkflowAssignment.__table__
        conn.execute(update(assignments).where(assignments.c.id.in_([r.id for r in rows]))
                     .values(flag=flag, flagged_at=at))
    return [(ACTOR, action, audit_target(r.workflow_id, r.position), {"user": r.name, "flag": DISABLED_FLAG})
            for r in rows]


def flag_disabled_in(conn: Connection, user_ids: set[int], now: datetime) -> AuditEntries:
    """Flag the pending, unflagged assignments of ``user_ids``."""
    return _set(conn, _pending(conn, user_ids, flagged=False), "workflow.flag", DISABLED_FLAG, now)


def clear_enabled_in(conn: Connection, user_ids: set[int], now: datetime) -> AuditEntries:
    """Clear the disabled flag of the pending assignments of ``user_ids`` (enabled again; ``now`` unused)."""
    return _set(conn, _pending(conn, user_ids, flagged=True), "workflow.unflag", None, None)
