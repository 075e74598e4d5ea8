"""The lease loop: takes READY jobs in batches of at most the free slots, and starts them.

It leases when there may be work: after a jobs_ready notification, on the fallback poll, and again at
once while batches come back full (the queue is likely not empty). A freed slot triggers a lease only
in that last case, so an idle queue costs one cheap statement per poll interval, not one per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from services.executor import metrics
from services.executor.loops import DatabaseCalls, RetryBackoff, sleep_or_stop
from services.executor.runner import Runner
from services.executor.telemetry import ExecutorTracing
from shared.database.queue import JobQueue
from shared.errors import DatabaseUnavailable

__all__ = ["Leaser"]

logger = logging.getLogger(__name__)


class Leaser:
    """Runs ``lease_jobs`` whenever there may be work and slots are free, until stopped."""

    def __init__(
        self,
        queue: JobQueue,
        database: DatabaseCalls,
        runner: Runner,
        owner: str,
        types: Sequence[str],
        lease_seconds: float,
        poll_interval_seconds: float,
        backlog: Callable[[], int],
        max_backlog: int,
        tracing: ExecutorTracing | None = None,
    ) -> None:
        self._queue = queue
        self._database = database
        self._runner = runner
        self._owner = owner
        self._types = list(types)
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval_seconds
        self._backlog = backlog
        self._max_backlog = max_backlog
        self._tracing = tracing
        self._wake = asyncio.Event()
        self._may_have_work = True
        self._stopping = False
        self._stopped = asyncio.Event()

    def notify(self) -> None:
        """A job became READY somewhere (jobs_ready): lease as soon as a slot is free."""
        self._may_have_work = True
        self._wake.set()

    def slot_freed(self) -> None:
        """An attempt ended or outcomes were written; only matters while work is known to be waiting."""
        if self._may_have_work and not self._wake.is_set():
            self._wake.set()

    def stop(self) -> None:
        """Lease no more (shutdown)."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = RetryBackoff()
        next_poll = loop.time()
        while not self._stopping:
            now = loop.time()
            if now >= next_poll:
                self._may_have_work = True
                next_poll = now + self._poll_interval
            free = self._runner.free_slots()
            if free > 0 and self._may_have_work and self._backlog() < self._max_backlog:
                # Cleared before the statement: a notification that arrives during it sets it again.
                self._may_have_work = False
                started_ns = time.time_ns() if self._tracing is not None else 0
                try:
                    jobs = await self._database.call(
                        "lease_jobs", self._queue.lease_jobs, self._owner, self._types, free, self._lease_seconds
                    )
                except Exception as error:
                    if self._tracing is not None:
                        self._tracing.record_lease(started_ns, free, 0, error)
                    self._may_have_work = True
                    if not isinstance(error, DatabaseUnavailable):
                        logger.exception("lease_jobs failed; retrying")
                    # Not _pause: notifications and freed slots must not cut an outage's backoff short.
                    await sleep_or_stop(self._stopped, backoff.next())
                    continue
                backoff.reset()
                if self._tracing is not None:
                    self._tracing.record_lease(started_ns, free, len(jobs))
                if jobs:
                    metrics.LEASES_TAKEN.inc(len(jobs))
                    metrics.LEASE_BATCHES.inc()
                for job in jobs:
                    self._runner.start(job)
                if len(jobs) >= free:
                    self._may_have_work = True
                continue
            self._wake.clear()
            await self._pause(next_poll - loop.time())

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0 or self._stopping:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
