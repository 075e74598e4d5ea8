"""submit_scheduled_occurrences: each periodic schedule's occurrences become jobs, exactly once each.

Each due schedule is handled in a transaction of its own (``ScheduleStore.submit_due_occurrence``): lock
its row with ``SKIP LOCKED``, submit the occurrence's job (``scheduled_at`` = the occurrence, idempotency
key ``schedule:<id>:<unix seconds>``), advance ``next_run_at``, commit. Between passes the duty sleeps
until the earliest ``next_run_at``, capped by ``poll_seconds`` so that a schedule created meanwhile is
seen within that time.

Missed runs (no scheduler ran when occurrences came due): the schedule fires once, for the most recent
missed occurrence, and continues from the next future one; older missed occurrences are not back-filled.
"""

from __future__ import annotations

import logging

from services.scheduler import metrics
from shared.database import Database
from shared.runtime import Duty
from shared.telemetry import SCHEDULE_LABEL

__all__ = ["SCHEDULE_BATCH_SIZE", "ScheduleSubmitter"]

log = logging.getLogger(__name__)

# Occurrences submitted per pass (one short transaction each) before the loop looks at the clock again.
SCHEDULE_BATCH_SIZE = 100
# A due schedule that was not ours to take (another transaction holds its row): look again shortly.
LOCKED_DUE_SCHEDULE_RETRY_SECONDS = 0.01


class ScheduleSubmitter(Duty):
    """The submit_scheduled_occurrences duty."""

    name = "submit_scheduled_occurrences"

    def __init__(self, db: Database, poll_seconds: float, batch_size: int = SCHEDULE_BATCH_SIZE) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size

    async def run_once(self) -> float:
        """Submit up to a batch of due occurrences; return the seconds until the next one is due (capped)."""
        submitted = 0
        while submitted < self.batch_size:
            occurrence = await self.db.submit_due_occurrence()
            if occurrence is None:
                break
            submitted += 1
            if occurrence.error is not None:
                log.error(
                    "schedule %s: could not submit its occurrence of %s (%s); set aside until %s",
                    occurrence.schedule_name,
                    occurrence.occurrence.isoformat(),
                    occurrence.error,
                    occurrence.next_run_at.isoformat(),
                    extra={"schedule": occurrence.schedule_name},
                )
                continue
            metrics.SCHEDULE_OCCURRENCES.labels(SCHEDULE_LABEL(occurrence.schedule_name)).inc()
            metrics.SCHEDULE_LATENESS.observe(occurrence.lateness_seconds)
            extra = {"job_id": occurrence.job_id, "schedule": occurrence.schedule_name}
            if occurrence.skipped_from is not None:
                log.warning(
                    "schedule %s missed its occurrences from %s: submitted only the latest, %s (job %d); next at %s",
                    occurrence.schedule_name,
                    occurrence.skipped_from.isoformat(),
                    occurrence.occurrence.isoformat(),
                    occurrence.job_id,
                    occurrence.next_run_at.isoformat(),
                    extra=extra,
                )
            else:
                log.info(
                    "schedule %s: submitted job %d for %s (%.3f s late%s); next at %s",
                    occurrence.schedule_name,
                    occurrence.job_id,
                    occurrence.occurrence.isoformat(),
                    occurrence.lateness_seconds,
                    "" if occurrence.created else ", the job existed already",
                    occurrence.next_run_at.isoformat(),
                    extra=extra,
                )
        if submitted == self.batch_size:
            return 0.0
        next_due = await self.db.seconds_until_next_schedule()
        if next_due is None:
            return self.poll_seconds
        if next_due <= 0:
            # Due but not taken: it came due a moment ago, or another transaction holds its row.
            return LOCKED_DUE_SCHEDULE_RETRY_SECONDS
        return min(next_due, self.poll_seconds)
