"""Rows a job works through one at a time on any number of nodes (the mail outbox, the deliveries): ``queued`` →
a working state, leased by one conditional UPDATE so one node has a row at a time → a done state. A failed
attempt puts the row back with a doubling wait (5 s, 10 s, ... at most ``retry_max_seconds``); a row whose lease
ran out (its node died) is due again. Nothing is dropped: the work is done at least once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import Engine, and_, or_, select, update

LEASE = timedelta(minutes=5)  # longer than one attempt (an SMTP hand-over, a callback) can take
FIRST_RETRY_SECONDS = 5.0


class LeasedRows:
    def __init__(self, engine: Engine, model: Any, working: str, done: str, done_at: str,
                 retry_max_seconds: float, clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._model = model  # an ORM class with id, state, attempts, next_attempt, lease_until, last_error
        self._working = working
        self._done = done
        self._done_at = done_at  # the column that records when a row was done
        self._retry_max = retry_max_seconds
        self._clock = clock

    def _due(self, now: datetime) -> Any:
        m = self._model
        return or_(and_(m.state == "queued", m.next_attempt <= now), and_(m.state == self._working, m.lease_until < now))

    def due(self, limit: int) -> list[int]:
        """The ids of the rows due now, oldest first."""
        with self._engine.connect() as conn:
            return list(conn.execute(select(self._model.id).where(self._due(self._clock()))
                                     .order_by(self._model.id).limit(limit)).scalars().all())

    def claim(self, row_id: int, *columns: Any) -> Any:
        """Lease a due row: its ``columns`` and ``attempts`` (this attempt counted), or None when another node has
        it or it is not due any more."""
        m, now = self._model, self._clock()
        with self._engine.begin() as conn:
            return conn.execute(update(m).where(m.id == row_id, self._due(now))
                                .values(state=self._working, lease_until=now + LEASE, attempts=m.attempts + 1)
                                .returning(*columns, m.attempts)).first()

    def failed(self, row_id: int, attempts: int, error: str) -> float:
        """Back to ``queued`` after a failed attempt; the seconds until the next one."""
        m = self._model
        wait = min(self._retry_max, FIRST_RETRY_SECONDS * 2 ** (attempts - 1))
        with self._engine.begin() as conn:
            conn.execute(update(m).where(m.id == row_id, m.state == self._working)
                         .values(state="queued", lease_until=None, last_error=error[:2000],
                                 next_attempt=self._clock() + timedelta(seconds=wait)))
        return wait

    def finished(self, row_id: int) -> None:
        m = self._model
        with self._engine.begin() as conn:
            conn.execute(update(m).where(m.id == row_id, m.state == self._working)
                         .values(state=self._done, lease_until=None, last_error=None, **{self._done_at: self._clock()}))
