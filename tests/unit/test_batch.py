"""GroupCommit: concurrent writers share batches, each gets its own result or the batch's error."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from server.db.batch import GroupCommit


def test_each_caller_gets_the_result_of_its_own_item() -> None:
    batches: list[list[int]] = []

    def commit(items: list[int]) -> list[int]:
        batches.append(items)
        time.sleep(0.01)  # a commit takes a while: others queue meanwhile
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(commit)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(group.submit, range(200)))
    assert results == [i * 10 for i in range(200)]
    assert sorted(i for b in batches for i in b) == list(range(200))  # every item written exactly once
    assert len(batches) < 100 and max(len(b) for b in batches) > 1  # they were shared


def test_a_batch_never_exceeds_the_limit() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def commit(items: list[int]) -> list[int]:
        gate.wait(5)
        sizes.append(len(items))
        return items

    group: GroupCommit[int, int] = GroupCommit(commit, max_batch=3)
    with ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(group.submit, i) for i in range(10)]
        time.sleep(0.2)
        gate.set()
        assert sorted(f.result() for f in futures) == list(range(10))
    assert max(sizes) <= 3 and sum(sizes) == 10


def test_a_failed_batch_fails_its_callers_and_the_next_batch_goes_on() -> None:
    calls = 0

    def commit(items: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if "bad" in items:
            raise RuntimeError("disk full")
        return [s.upper() for s in items]

    group: GroupCommit[str, str] = GroupCommit(commit)
    with pytest.raises(RuntimeError, match="disk full"):
        group.submit("bad")
    assert group.submit("good") == "GOOD"
    assert calls == 2


def test_a_commit_returning_the_wrong_number_of_results_fails_every_caller_of_the_batch() -> None:
    gate = threading.Event()

    def commit(items: list[int]) -> list[int]:
        gate.wait(5)
        return items[:1]

    group: GroupCommit[int, int] = GroupCommit(commit)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(group.submit, i) for i in range(4)]
        time.sleep(0.2)
        gate.set()
        errors = [f.exception(timeout=5) for f in futures]
    assert any(isinstance(e, ValueError) and "gave 1 results" in str(e) for e in errors)
    assert all(e is None or isinstance(e, ValueError) for e in errors)
