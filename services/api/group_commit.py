"""Group commit for unary SubmitJob: submits that arrive together share one transaction.

A submit waits only while another group is being written: the first one of a quiet moment goes
out at once, and those that arrive during that write go out together in the next. Under load this
turns N inserts and N commits into a few, without adding latency when the service is idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommitter"]

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class GroupCommitter(Generic[Item, Outcome]):
    def __init__(
        self,
        write: Callable[[Sequence[Item]], Awaitable[Sequence[Outcome]]],
        max_group: int,
        max_concurrent_writes: int,
    ) -> None:
        self._write = write
        self._max_group = max_group
        self._slots = max_concurrent_writes
        self._waiting: list[tuple[Item, asyncio.Future[Outcome]]] = []

    async def submit(self, item: Item) -> Outcome:
        """Queue ``item`` for the next group write and wait for its own outcome."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._slots > 0:
            self._slots -= 1
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
            self._slots += 1
