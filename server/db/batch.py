"""Group commit: threads that each need a small write share one transaction.

A thread that submits while no batch is being written writes every item waiting at that moment
(its own first) in one call of ``commit``; threads that submit meanwhile wait and go in the next
batch. Each caller gets its own item's result, or the batch's exception, only after the batch
committed: nothing is acknowledged before it is durable.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Slot(Generic[Item, Result]):
    item: Item
    done: bool = False
    result: Result | None = None
    error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    def __init__(self, commit: Callable[[list[Item]], list[Result]], max_batch: int = 64) -> None:
        self._commit = commit
        self._max_batch = max_batch
        self._waiting: list[_Slot[Item, Result]] = []
        self._writing = False
        self._cond = threading.Condition()

    def submit(self, item: Item) -> Result:
        """``item`` written (with whatever else is waiting); its result."""
        slot: _Slot[Item, Result] = _Slot(item)
        with self._cond:
            self._waiting.append(slot)
            while not slot.done:
                if self._writing:
                    self._cond.wait()
                    continue
                self._writing = True
                batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch:]
                self._cond.release()
                try:
                    self._write(batch)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _write(self, batch: list[_Slot[Item, Result]]) -> None:
        try:
            results = self._commit([slot.item for slot in batch])
            if len(results) != len(batch):
                raise ValueError(f"a commit of {len(batch)} items gave {len(results)} results")
        except BaseException as exc:  # every waiter of the batch learns why, none is left hanging
            for slot in batch:
                slot.error, slot.done = exc, True
            return
        for slot, result in zip(batch, results, strict=True):
            slot.result, slot.done = result, True
