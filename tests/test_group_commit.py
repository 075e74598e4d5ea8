"""Group commit: one write at a time, and the submits that arrive meanwhile share the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.api.group_commit import GroupCommitter


class Writes:
    """A write that records its groups and finishes only when the test lets it."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.groups: list[list[str]] = []
        self.release = asyncio.Event()
        self.running = 0
        self.most_running = 0
        self.fail_on = fail_on

    async def __call__(self, items: Sequence[str]) -> list[str]:
        self.groups.append(list(items))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.release.wait()
            if self.fail_on in items:
                raise RuntimeError(f"write of {self.fail_on} failed")
            return [f"stored {item}" for item in items]
        finally:
            self.running -= 1


async def started(writes: Writes, count: int) -> None:
    """Wait (a few turns of the event loop at most) until ``count`` writes have begun."""
    for _ in range(10):
        if len(writes.groups) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"only {len(writes.groups)} writes began, expected {count}")


def test_submits_arriving_during_a_write_share_the_next_one() -> None:
    async def scenario() -> None:
        writes = Writes()
        committer = GroupCommitter(writes, max_group=1000)
        first = asyncio.create_task(committer.submit("a"))
        await started(writes, 1)  # the first submit of a quiet moment goes out alone, at once
        assert writes.groups == [["a"]]
        others = [asyncio.create_task(committer.submit(f"b{i}")) for i in range(49)]
        await asyncio.sleep(0)
        writes.release.set()
        assert await first == "stored a"
        assert await asyncio.gather(*others) == [f"stored b{i}" for i in range(49)]
        assert writes.groups == [["a"], [f"b{i}" for i in range(49)]]
        assert writes.most_running == 1

    asyncio.run(scenario())


def test_groups_are_capped_at_max_group() -> None:
    async def scenario() -> None:
        writes = Writes()
        writes.release.set()
        committer = GroupCommitter(writes, max_group=10)
        results = await asyncio.gather(*(committer.submit(str(i)) for i in range(25)))
        assert results == [f"stored {i}" for i in range(25)]
        assert [len(group) for group in writes.groups] == [10, 10, 5]

    asyncio.run(scenario())


def test_a_failed_write_fails_its_own_group_only() -> None:
    async def scenario() -> None:
        writes = Writes(fail_on="bad")
        committer = GroupCommitter(writes, max_group=1000)
        first = asyncio.create_task(committer.submit("bad"))
        await started(writes, 1)
        later = asyncio.create_task(committer.submit("good"))
        await asyncio.sleep(0)
        writes.release.set()
        with pytest.raises(RuntimeError, match="write of bad failed"):
            await first
        assert await later == "stored good"
        # The committer keeps working after a failure.
        assert await committer.submit("again") == "stored again"

    asyncio.run(scenario())
