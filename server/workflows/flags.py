"""Flags on pending workflow assignments: the directory sync disabled (or lost) the assignee's account.

:func:`flag_disabled_in` is the directory sync's ``on_disable`` hook (``server.identity.directory``): in the
sync's own transaction, every pending assignment of an account it disables gets :data:`DISABLED_FLAG` and
the time, once; the workflow status (REST, SOAP ``Assignee/Flag``) shows it, and an audit entry per assignment
(``workflow.flag``, target ``workflow:<id>/<step>``) says so. The workflow itself goes on: a group step's
other members can still act, and the starter decides (cancel, or a new start) about a step only the disabled
account could do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from server.db.models import User, WorkflowAssignment, WorkflowStep
from server.identity.directory import ACTOR
from server.workflows.history import audit_target

DISABLED_FLAG = "the assignee's account was disabled by the directory sync"


def flag_disabled_in(conn: Connection, user_ids: set[int], now: datetime) -> list[tuple[str, str, str, dict[str, Any]]]:
    """Flag the pending, unflagged assignments of ``user_ids``; the audit entries (actor, action, target,
    details) to add in the same transaction."""
    assignments, steps, users = WorkflowAssignment.__table__, WorkflowStep.__table__, User.__table__
    rows = conn.execute(
        select(assignments.c.id, steps.c.workflow_id, steps.c.position, users.c.name)
        .join(steps, steps.c.id == assignments.c.step_id).join(users, users.c.id == assignments.c.user_id)
        .where(assignments.c.user_id.in_(sorted(user_ids)), assignments.c.state == "pending",
               assignments.c.flag.is_(None))
        .order_by(steps.c.workflow_id, steps.c.position, assignments.c.id)).all()
    if rows:
        conn.execute(update(assignments).where(assignments.c.id.in_([r.id for r in rows]))
                     .values(flag=DISABLED_FLAG, flagged_at=now))
    return [(ACTOR, "workflow.flag", audit_target(r.workflow_id, r.position), {"user": r.name, "flag": DISABLED_FLAG})
            for r in rows]
