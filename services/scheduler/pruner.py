"""prune_finished_jobs: retention. Old COMPLETED, CANCELLED and FAILED jobs are deleted in small batches.

Finished rows bloat the table and slow the queue. Each batch is one short statement; between full
batches the pruner pauses briefly so the queue's own statements and autovacuum keep up.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from services.scheduler import metrics
from shared.database import Database
from shared.jobs import JobStatus
from shared.runtime import Duty

__all__ = ["PRUNE_BATCH_PAUSE_SECONDS", "Pruner"]

log = logging.getLogger(__name__)

PRUNE_BATCH_PAUSE_SECONDS = 0.05


class Pruner(Duty):
    """The prune_finished_jobs duty."""

    name = "prune_finished_jobs"

    def __init__(
        self,
        db: Database,
        completed_retention: timedelta,
        failed_retention: timedelta,
        batch_size: int,
        interval_seconds: float,
    ) -> None:
        self.db = db
        self.retention = {
            JobStatus.COMPLETED: completed_retention,
            JobStatus.CANCELLED: completed_retention,
            JobStatus.FAILED: failed_retention,
        }
        self.batch_size = batch_size
        self.interval_seconds = interval_seconds

    async def run_once(self) -> float:
        """Delete one batch per finished status; pause briefly and go on while any batch was full."""
        backlog = False
        for status, older_than in self.retention.items():
            deleted = await self.db.prune_finished_jobs(status, older_than, self.batch_size)
            if deleted:
                metrics.JOBS_PRUNED.labels(status.value).inc(deleted)
                log.info(
                    "pruned %d %s jobs finished over %s ago",
                    deleted,
                    status.value,
                    older_than,
                    extra={"count": deleted},
                )
            backlog = backlog or deleted == self.batch_size
        return PRUNE_BATCH_PAUSE_SECONDS if backlog else self.interval_seconds
