"""WatchJob's engine: one poll of every watched job per interval, fanned out to the watchers.

However many clients watch, the database sees one small indexed query per interval, and none
when nobody watches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from shared.errors import DatabaseUnavailable
from shared.jobs import Job

__all__ = ["JobWatcher"]

log = logging.getLogger(__name__)

FetchJobs = Callable[[Sequence[int]], Awaitable[dict[int, Job]]]


class JobWatcher:
    def __init__(self, fetch_jobs: FetchJobs, interval_seconds: float) -> None:
        self._fetch_jobs = fetch_jobs
        self._interval = interval_seconds
        self._watchers: dict[int, set[asyncio.Queue[Job | None]]] = {}
        self._poller: asyncio.Task[None] | None = None

    async def watch(self, first: Job) -> AsyncIterator[Job]:
        """Yield ``first``, then the job after every change, ending once it is finished or gone."""
        yield first
        if first.status.finished:
            return
        queue: asyncio.Queue[Job | None] = asyncio.Queue()
        self._watchers.setdefault(first.job_id, set()).add(queue)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="watch-poller")
        last = first
        try:
            while True:
                job = await queue.get()
                if job is None:
                    return
                if (job.status, job.updated_at, job.attempts) == (
                    last.status,
                    last.updated_at,
                    last.attempts,
                ):
                    continue
                last = job
                yield job
                if job.status.finished:
                    return
        finally:
            queues = self._watchers.get(first.job_id)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._watchers[first.job_id]

    async def _poll(self) -> None:
        while self._watchers:
            await asyncio.sleep(self._interval)
            ids = list(self._watchers)
            if not ids:
                return
            try:
                jobs = await self._fetch_jobs(ids)
            except DatabaseUnavailable as exc:
                log.warning("watch poll failed, retrying: %s", exc)
                continue
            for job_id in ids:
                for queue in self._watchers.get(job_id, ()):
                    queue.put_nowait(jobs.get(job_id))

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
