"""Group commit: threads that each need a small write share one transaction.

A thread that submits while no batch is being written writes every item waiting at that moment
(its own first) in one call of ``commit``; threads that submit meanwhile wait and go in the next
batch, which the first of them writes. Only the callers concerned are woken. Each caller gets its own item's result, or the batch's exception, only after the batch
committed: nothing is acknowledged before it is durable.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Slot(Generic[Item, Result]):
    item: Item
    done: bool = False
    result: Result | None = None
    error: BaseException | None = None
    wake: threading.Event = field(default_factory=threading.Event)  # done, or this caller writes next


class GroupCommit(Generic[Item, Result]):
    def __init__(self, commit: Callable[[list[Item]], list[Result]], max_batch: int = 64) -> None:
        self._commit = commit
        self._max_batch = max_batch
        self._waiting: list[_Slot[Item, Result]] = []
        self._writing = False  # a caller is writing a batch; the others wait to be woken
        self._lock = threading.Lock()

    def submit(self, item: Item) -> Result:
        """``item`` written (with whatever else is waiting); its result."""
        slot: _Slot[Item, Result] = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            lead, self._writing = not self._writing, True
        if not lead:
            slot.wake.wait()
        if not slot.done:  # this caller writes: its slot is the first waiting one
            with self._lock:
                batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch:]
            self._write(batch)
            with self._lock:
                if self._waiting:
                    self._waiting[0].wake.set()  # the next batch's first caller writes it
                else:
                    self._writing = False
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
                slot.wake.set()
            return
        for slot, result in zip(batch, results, strict=True):
            slot.result, slot.done = result, True
            slot.wake.set()
