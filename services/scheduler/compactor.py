"""compact_job_counts: the job_counts delta rows the triggers append are folded into one row per
(type, status), so counting jobs stays cheap however many jobs pass through. The jobs_by_status and
jobs_ready_by_type gauges are refreshed from the folded rows, job_type_paused from the paused types.
"""

from __future__ import annotations

import logging

from services.scheduler import metrics
from shared.database import Database
from shared.runtime import Duty

__all__ = ["COMPACT_BATCH_SIZE", "Compactor"]

log = logging.getLogger(__name__)

COMPACT_BATCH_SIZE = 10_000


class Compactor(Duty):
    """The compact_job_counts duty."""

    name = "compact_job_counts"

    def __init__(self, db: Database, interval_seconds: float) -> None:
        self.db = db
        self.interval_seconds = interval_seconds

    async def run_once(self) -> float:
        """Fold one batch of delta rows; go again at once when the batch was full."""
        compacted = await self.db.compact_job_counts(COMPACT_BATCH_SIZE)
        metrics.JOB_COUNTS_COMPACTED.inc(compacted.folded)
        if compacted.folded == COMPACT_BATCH_SIZE:
            return 0.0
        metrics.set_job_counts(await self.db.count_jobs_by_type(), await self.db.select_paused_types())
        log.debug("folded %d job_counts rows into %d", compacted.folded, compacted.written)
        return self.interval_seconds
