"""GroupCommit: concurrent writers share batches, each gets its own result or the batch's error."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from server.db.batch import GroupCommit


def test_submit_returns_at_once_and_the_future_completes_after_the_commit() -> None:
    gate = threading.Event()
    committed: list[list[str]] = []

    def commit(items: list[str]) -> list[str]:
        gate.wait(5)
        committed.append(items)
        return items

    group: GroupCommit[str, str] = GroupCommit(commit)
    future = group.submit("a")
    assert not future.done()
    gate.set()
    assert future.result(timeout=5) == "a" and committed == [["a"]]


def test_each_caller_gets_the_result_of_its_own_item() -> None:
    batches: list[list[int]] = []

    def commit(items: list[int]) -> list[int]:
        batches.append(items)
        time.sleep(0.01)  # a commit takes a while: others queue meanwhile
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(commit)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: group.submit(i).result(timeout=10), range(200)))
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
    futures = [group.submit(i) for i in range(10)]
    time.sleep(0.2)
    gate.set()
    assert sorted(f.result(timeout=10) for f in futures) == list(range(10))
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
        group.submit("bad").result(timeout=10)
    assert group.submit("good").result(timeout=10) == "GOOD"
    assert calls == 2


def test_a_commit_returning_the_wrong_number_of_results_fails_every_caller_of_the_batch() -> None:
    entered, gate = threading.Event(), threading.Event()

    def commit(items: list[int]) -> list[int]:
        entered.set()
        gate.wait(5)
        return items[:1]

    group: GroupCommit[int, int] = GroupCommit(commit)
    first = group.submit(0)
    assert entered.wait(5)  # the first batch is being written alone; the next three queue behind it
    futures = [group.submit(i) for i in range(1, 4)]
    gate.set()
    assert first.result(timeout=5) == 0
    errors = [f.exception(timeout=5) for f in futures]
    assert all(isinstance(e, ValueError) and "a commit of 3 items gave 1 results" in str(e) for e in errors)
