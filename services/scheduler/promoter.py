"""promote_due_jobs: PENDING jobs become READY when their time comes, within milliseconds of it.

Between passes the promoter sleeps exactly until the earliest PENDING job is due (capped by
max_idle_seconds). While it leads, the scheduler LISTENs on ``jobs_scheduled`` (shared.runtime.Listener),
which the API and the executors NOTIFY when they add a PENDING job: ``notified`` then wakes the promoter
to recompute, as does (re)starting to listen, so a job added while nobody listened is not missed.
"""

from __future__ import annotations

import asyncio
import logging

from services.scheduler import metrics
from shared.database import Database
from shared.runtime import Duty

__all__ = ["Promoter"]

log = logging.getLogger(__name__)

LOCKED_DUE_JOB_RETRY_SECONDS = 0.01


class Promoter(Duty):
    """The promote_due_jobs duty."""

    name = "promote_due_jobs"
    wake: asyncio.Event

    def __init__(self, db: Database, batch_size: int, max_idle_seconds: float) -> None:
        self.db = db
        self.batch_size = batch_size
        self.max_idle_seconds = max_idle_seconds
        self.wake = asyncio.Event()

    def notified(self) -> None:
        """A jobs_scheduled notification, or listening (re)started: look again now."""
        self.wake.set()

    async def run_once(self) -> float:
        """Promote one batch of due jobs; return the seconds until the next is due (capped)."""
        # Cleared before the reads: a notification that arrives during them makes the next pass start at once.
        self.wake.clear()
        promoted = await self.db.promote_due_jobs(self.batch_size)
        if promoted:
            metrics.JOBS_PROMOTED.inc(len(promoted))
            for job in promoted:
                metrics.PROMOTION_LATENESS.observe(job.lateness_seconds)
            # DEBUG: during a retry storm this runs many times a second; the metrics carry the numbers.
            log.debug(
                "promoted %d due jobs to READY (latest %.3f s after its time)",
                len(promoted),
                max(job.lateness_seconds for job in promoted),
                extra={"count": len(promoted)},
            )
            if len(promoted) == self.batch_size:
                return 0.0
        next_due = await self.db.seconds_until_next_due()
        if next_due is None:
            return self.max_idle_seconds
        if next_due <= 0 and not promoted:
            # Due but not promoted: it came due a moment ago, or its row is locked (a cancel in flight).
            # Look again shortly rather than spin while the lock is held.
            return LOCKED_DUE_JOB_RETRY_SECONDS
        return min(max(next_due, 0.0), self.max_idle_seconds)
