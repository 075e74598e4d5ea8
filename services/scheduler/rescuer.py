"""rescue_expired_leases: jobs whose executor died go back to READY, or end FAILED or CANCELLED.

An executor heartbeats the leases of the jobs it runs; a lease that expired means the executor crashed,
hung or lost the database. The attempt it made counts.
"""

from __future__ import annotations

import logging

from services.scheduler import metrics
from services.scheduler.loops import StopSignal
from shared.database.maintenance import JobMaintenance

__all__ = ["RESCUE_BATCH_SIZE", "Rescuer"]

log = logging.getLogger(__name__)

# Expired leases come in small numbers (one executor's slots at a time); this bounds the rare storm.
RESCUE_BATCH_SIZE = 500


class Rescuer:
    """The rescue_expired_leases duty."""

    name = "rescue_expired_leases"

    def __init__(self, maintenance: JobMaintenance, interval_seconds: float) -> None:
        self.maintenance = maintenance
        self.interval_seconds = interval_seconds

    def run_once(self) -> float:
        """Rescue one batch of expired leases; go again at once when the batch was full."""
        rescued = self.maintenance.rescue_expired_leases(RESCUE_BATCH_SIZE)
        for job in rescued:
            metrics.JOBS_RESCUED.labels(job.status.value).inc()
            log.warning(
                "%s; job is now %s",
                job.error_message,
                job.status.value,
                extra={"job_id": job.job_id, "type": job.type, "attempt": job.attempts},
            )
        return 0.0 if len(rescued) == RESCUE_BATCH_SIZE else self.interval_seconds

    def wait(self, stop: StopSignal, seconds: float) -> None:
        stop.wait(seconds)

    def close(self) -> None:
        pass
