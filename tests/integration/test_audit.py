"""The audit chain on SQLite and PostgreSQL: intact, altered, inserted, deleted, concurrent."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from server.audit import AuditLog

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append("tester", "test.event", f"object {i}", number=i, note="Grüße")


def test_fresh_log_verifies(engine: Engine) -> None:
    log = AuditLog(engine)
    assert log.verify() == (0, None)
    _fill(log, 5)
    count, fault = log.verify()
    assert (count, fault) == (5, None)


def test_update_is_named(engine: Engine) -> None:
    log = AuditLog(engine)
    _fill(log, 5)
    with engine.begin() as c:
        c.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"))
    _, fault = log.verify()
    assert fault is not None and fault.seq == 3 and "altered" in fault.problem


def test_delete_in_the_middle_is_named(engine: Engine) -> None:
    log = AuditLog(engine)
    _fill(log, 5)
    with engine.begin() as c:
        c.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    _, fault = log.verify()
    assert fault is not None and fault.seq == 2 and "deleted" in fault.problem


def test_deleted_tail_is_found(engine: Engine) -> None:
    log = AuditLog(engine)
    _fill(log, 4)
    with engine.begin() as c:
        c.execute(text("DELETE FROM audit_log WHERE seq = 4"))
    _, fault = log.verify()
    assert fault is not None and fault.seq == 4 and "deleted" in fault.problem


def test_inserted_entry_is_named(engine: Engine) -> None:
    log = AuditLog(engine)
    _fill(log, 3)
    with engine.begin() as c:
        c.execute(text("UPDATE audit_log SET seq = seq + 1 WHERE seq = 3"))
        c.execute(text("INSERT INTO audit_log (seq, at, actor, action, target, details, prev_hash, hash) "
                       "SELECT 3, at, 'mallory', action, target, details, prev_hash, hash FROM audit_log WHERE seq = 2"))
    _, fault = log.verify()
    assert fault is not None and fault.seq == 3


def test_concurrent_writers_keep_one_chain(engine: Engine) -> None:
    log = AuditLog(engine)
    threads = [threading.Thread(target=_fill, args=(log, 25)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.verify() == (100, None)


def test_writers_in_other_processes_and_rolled_back_appends_keep_one_chain(engine: Engine) -> None:
    """Each AuditLog chains onto the head its own last append left (two statements) unless another log
    (another process) or a rolled-back transaction moved it: then it chains onto the real head."""
    first, second = AuditLog(engine), AuditLog(engine)
    threads = [threading.Thread(target=_fill, args=(log, 25)) for log in (first, second, first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with pytest.raises(RuntimeError), engine.begin() as conn:
        first.append_many_in(conn, [("tester", "test.rolled_back", "x", {})])
        raise RuntimeError("the change this entry records failed")
    assert [first.append("tester", "test.after", "y"), second.append("tester", "test.after", "z")] == [101, 102]
    assert first.append("tester", "test.after", "w") == 103
    assert first.verify() == (103, None)
    assert [e.action for e in first.entries()][-3:] == ["test.after"] * 3


def test_cli_audit_verify(engine: Engine, database_url: str, tmp_path: Path) -> None:
    _fill(AuditLog(engine), 3)
    env = {**os.environ, "SIEGEL_DATA_DIR": str(tmp_path), "SIEGEL_DATABASE_URL": database_url}
    run = lambda: subprocess.run([sys.executable, "-m", "server", "audit", "verify"], env=env, cwd=REPO,
                                 capture_output=True, text=True)
    ok = run()
    assert ok.returncode == 0 and "intact: 3 entries" in ok.stdout
    with engine.begin() as c:
        c.execute(text("UPDATE audit_log SET details = '{}' WHERE seq = 2"))
    bad = run()
    assert bad.returncode == 1 and "audit entry 2" in bad.stdout
