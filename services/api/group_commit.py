"""Group commit for unary SubmitJob: submits that arrive together share one transaction.

One group is written at a time. A submit waits only while another group is being written: the first
one of a quiet moment goes out at once, and those that arrive during that write go out together in
the next. Under load this turns N inserts and N commits into a few, without adding latency when the
service is idle.

One writer, not several: a write costs the api about as much interpreter time (the driver, the
statement, the hand-off to the database thread) for one job as for thirty, and the api's interpreter
is what limits unary submits. Two writers halved the groups (1-2 jobs at 32 concurrent callers) and
cost a third of the throughput; see docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommitter"]

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class GroupCommitter(Generic[Item, Outcome]):
    def __init__(self, write: Callable[[Sequence[Item]], Awaitable[Sequence[Outcome]]], max_group: int) -> None:
        self._write = write
        self._max_group = max_group
        self._writing = False
        self._waiting: list[tuple[Item, asyncio.Future[Outcome]]] = []

    async def submit(self, item: Item) -> Outcome:
        """Queue ``item`` for the next group write and wait for its own outcome."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._writing:
            self._writing = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting[: self._max_group], self._waiting[self._max_group :]
                try:
                    outcomes = await self._write([item for item, _ in group])
                except BaseException as error:  # every waiter of the group learns of the failure
                    for _, future in group:
                        if not future.done():
                            future.set_exception(error)
                    if not isinstance(error, Exception):
                        raise
                    continue
                for (_, future), outcome in zip(group, outcomes, strict=True):
                    if not future.done():
                        future.set_result(outcome)
        finally:
            self._writing = False
