"""rescue_lost_jobs: jobs whose executor died go back to READY, or end FAILED or CANCELLED.

An executor heartbeats the leases of the jobs it runs; a lease that expired means the executor crashed,
hung or lost the database. An executor that dies shows much sooner: the liveness lock it holds on a
session of its own vanishes with its process, and then it falls silent (docs/reliability.md, crash
detection). Either way the attempt it made counts.
"""

from __future__ import annotations

import logging

from services.scheduler import metrics
from shared.database import Database
from shared.runtime import Duty

__all__ = ["RESCUE_BATCH_SIZE", "Rescuer"]

log = logging.getLogger(__name__)

# Lost jobs come in small numbers (one executor's slots at a time); this bounds the rare storm.
RESCUE_BATCH_SIZE = 500


class Rescuer(Duty):
    """The rescue_lost_jobs duty."""

    name = "rescue_lost_jobs"

    def __init__(self, db: Database, interval_seconds: float) -> None:
        self.db = db
        self.interval_seconds = interval_seconds

    async def run_once(self) -> float:
        """Rescue one batch of lost jobs; go again at once when the batch was full."""
        rescued = await self.db.rescue_lost_jobs(RESCUE_BATCH_SIZE)
        for job in rescued:
            metrics.JOBS_RESCUED.labels(job.status.value, job.reason).inc()
            log.warning(
                "%s; job is now %s",
                job.error_message,
                job.status.value,
                extra={"job_id": job.job_id, "type": job.type, "attempt": job.attempts},
            )
        return 0.0 if len(rescued) == RESCUE_BATCH_SIZE else self.interval_seconds
