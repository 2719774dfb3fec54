"""Counts over the audit log for the admin dashboard's charts."""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import Engine, func, select

from server.db.models import AuditEntry


def daily_counts(engine: Engine, actions: Sequence[str], since: str) -> dict[tuple[str, str], int]:
    """How many entries of each of ``actions`` per UTC day (``YYYY-MM-DD``) from ``since`` (ISO) on."""
    day = func.substr(AuditEntry.at, 1, 10)
    query = (select(day, AuditEntry.action, func.count())
             .where(AuditEntry.action.in_(actions), AuditEntry.at >= since).group_by(day, AuditEntry.action))
    with engine.connect() as conn:
        return {(d, a): n for d, a, n in conn.execute(query).all()}
