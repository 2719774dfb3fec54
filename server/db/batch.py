"""Group commit: small writes from many threads share one transaction.

``submit`` queues an item and returns a future at once, so the caller can go on (sign, say) while
the write happens. One writer thread takes every item queued at that moment, up to ``max_batch``,
and writes them in one call of ``commit``; items queued meanwhile go in the next batch. Each
future gets its own item's result, or the batch's exception, only after the batch committed:
nothing is acknowledged before it is durable.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Callable, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    def __init__(self, commit: Callable[[list[Item]], list[Result]], max_batch: int = 64,
                 name: str = "group-commit") -> None:
        self._commit = commit
        self._max_batch = max_batch
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Item, Future[Result]]] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._start = threading.Lock()

    def submit(self, item: Item) -> Future[Result]:
        """Queue ``item``; the future completes when its batch committed."""
        future: Future[Result] = Future()
        with self._start:  # started on first use, in the process that uses it (workers fork first)
            if self._writer is None:
                self._writer = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._writer.start()
        self._queue.put((item, future))
        return future

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)

    def _write(self, batch: list[tuple[Item, Future[Result]]]) -> None:
        try:
            results = self._commit([item for item, _ in batch])
            if len(results) != len(batch):
                raise ValueError(f"a commit of {len(batch)} items gave {len(results)} results")
        except BaseException as exc:  # every caller of the batch learns why, none is left waiting
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
