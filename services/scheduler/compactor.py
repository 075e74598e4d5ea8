"""compact_job_counts: the job_counts delta rows the triggers append are folded into one row per
(type, status), so counting jobs stays cheap however many jobs pass through. The jobs_by_status gauges
are refreshed from the folded rows.
"""

from __future__ import annotations

import logging

from services.scheduler import metrics
from services.scheduler.loops import StopSignal
from shared.database.maintenance import JobMaintenance

__all__ = ["COMPACT_BATCH_SIZE", "Compactor"]

log = logging.getLogger(__name__)

COMPACT_BATCH_SIZE = 10_000


class Compactor:
    """The compact_job_counts duty."""

    name = "compact_job_counts"

    def __init__(self, maintenance: JobMaintenance, interval_seconds: float) -> None:
        self.maintenance = maintenance
        self.interval_seconds = interval_seconds

    def run_once(self) -> float:
        """Fold one batch of delta rows; go again at once when the batch was full."""
        compacted = self.maintenance.compact_job_counts(COMPACT_BATCH_SIZE)
        metrics.JOB_COUNTS_COMPACTED.inc(compacted.folded)
        if compacted.folded == COMPACT_BATCH_SIZE:
            return 0.0
        for status, count in self.maintenance.count_jobs_by_status().items():
            metrics.JOBS_BY_STATUS.labels(status.value).set(count)
        log.debug("folded %d job_counts rows into %d", compacted.folded, compacted.written)
        return self.interval_seconds

    def wait(self, stop: StopSignal, seconds: float) -> None:
        stop.wait(seconds)

    def close(self) -> None:
        pass
