"""Read-only views over the workflow tables for the admin portal: the workflows with their flagged pending
assignments (:mod:`server.workflows.flags`), and how long the completed ones took per template."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select

from server.db.models import User, Workflow, WorkflowAssignment, WorkflowStep, WorkflowTemplate

STATES = ("running", "completed", "rejected", "cancelled", "expired")


@dataclass(frozen=True)
class WorkflowRow:
    """One line of the admin's workflow list."""

    id: int
    template: str
    document_name: str
    state: str
    started_by: str
    created: datetime
    finished: datetime | None
    flagged: int  # pending assignments with a flag


@dataclass(frozen=True)
class Durations:
    """How long the workflows of one template took from start to completion, in seconds."""

    template: str
    seconds: list[float]  # ascending

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile (0–100), linearly interpolated between the closest ranks."""
        rank = (len(self.seconds) - 1) * p / 100
        low = int(rank)
        high = min(low + 1, len(self.seconds) - 1)
        return self.seconds[low] + (self.seconds[high] - self.seconds[low]) * (rank - low)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class WorkflowOverview:
    """Queries only; what changes workflows is :class:`server.workflows.service.WorkflowService`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def workflows(self, state: str | None = None, flagged_only: bool = False, limit: int = 200,
                  started_by: int | None = None) -> list[WorkflowRow]:
        """The newest ``limit`` workflows, of ``state`` if given, only those with a flag if ``flagged_only``,
        only those the account ``started_by`` started if given."""
        w, a, s = Workflow.__table__, WorkflowAssignment.__table__, WorkflowStep.__table__
        flags = (select(s.c.workflow_id, func.count().label("n")).join(a, a.c.step_id == s.c.id)
                 .where(a.c.state == "pending", a.c.flag.is_not(None)).group_by(s.c.workflow_id).subquery())
        query = (select(w.c.id, WorkflowTemplate.name, w.c.document_name, w.c.state, User.name.label("starter"),
                        w.c.created_at, w.c.finished_at, func.coalesce(flags.c.n, 0))
                 .join(WorkflowTemplate, WorkflowTemplate.id == w.c.template_id)
                 .join(User, User.id == w.c.started_by).outerjoin(flags, flags.c.workflow_id == w.c.id)
                 .order_by(w.c.id.desc()).limit(limit))
        if state is not None:
            query = query.where(w.c.state == state)
        if flagged_only:
            query = query.where(flags.c.n > 0)
        if started_by is not None:
            query = query.where(w.c.started_by == started_by)
        with self._engine.connect() as conn:
            return [WorkflowRow(r[0], r[1], r[2], r[3], r[4], _utc(r[5]), _utc(r[6]) if r[6] else None, r[7])
                    for r in conn.execute(query).all()]

    def durations(self, since: datetime) -> list[Durations]:
        """Per template (by name), the durations of the workflows completed from ``since`` on."""
        query = (select(WorkflowTemplate.name, Workflow.created_at, Workflow.finished_at)
                 .join(WorkflowTemplate, WorkflowTemplate.id == Workflow.template_id)
                 .where(Workflow.state == "completed", Workflow.finished_at >= since))
        per: dict[str, list[float]] = {}
        with self._engine.connect() as conn:
            for name, created, finished in conn.execute(query).all():
                per.setdefault(name, []).append((_utc(finished) - _utc(created)).total_seconds())
        return [Durations(name, sorted(values)) for name, values in sorted(per.items())]
