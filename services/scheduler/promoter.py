"""promote_due_jobs: PENDING jobs become READY when their time comes, within milliseconds of it.

Between passes the promoter sleeps exactly until the earliest PENDING job is due (capped by
max_idle_seconds) and LISTENs on ``jobs_scheduled``, which the API and the executors NOTIFY when they add
a PENDING job: a job due sooner than the promoter's wake-up then wakes it to recompute.
"""

from __future__ import annotations

import logging
import select

from services.scheduler import metrics
from services.scheduler.loops import StopSignal
from shared.database.maintenance import ChannelListener, JobMaintenance
from shared.errors import DatabaseUnavailable

__all__ = ["Promoter"]

log = logging.getLogger(__name__)

LOCKED_DUE_JOB_RETRY_SECONDS = 0.01


class Promoter:
    """The promote_due_jobs duty."""

    name = "promote_due_jobs"

    def __init__(
        self,
        maintenance: JobMaintenance,
        listener: ChannelListener,
        batch_size: int,
        max_idle_seconds: float,
    ) -> None:
        self.maintenance = maintenance
        self.listener = listener
        self.batch_size = batch_size
        self.max_idle_seconds = max_idle_seconds

    def run_once(self) -> float:
        """Promote one batch of due jobs; return the seconds until the next is due (capped)."""
        # LISTEN before reading the next due time, so a job added after that read still wakes us.
        self._ensure_listening()
        promoted = self.maintenance.promote_due_jobs(self.batch_size)
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
        next_due = self.maintenance.seconds_until_next_due()
        if next_due is None:
            return self.max_idle_seconds
        if next_due <= 0 and not promoted:
            # Due but not promoted: it came due a moment ago, or its row is locked (a cancel in flight).
            # Look again shortly rather than spin while the lock is held.
            return LOCKED_DUE_JOB_RETRY_SECONDS
        return min(max(next_due, 0.0), self.max_idle_seconds)

    def wait(self, stop: StopSignal, seconds: float) -> None:
        """Sleep ``seconds``, waking early for a ``jobs_scheduled`` notification or ``stop``."""
        if not self.listener.listening:
            stop.wait(seconds)
            return
        try:
            listener_fd = self.listener.fileno()
            readable, _, _ = select.select([listener_fd, stop.fileno()], [], [], seconds)
        except (OSError, ValueError, DatabaseUnavailable):
            # The socket was closed under us; listen again on the next pass.
            self.listener.close()
            return
        if listener_fd in readable:
            try:
                count = self.listener.drain()
            except DatabaseUnavailable as error:
                metrics.DATABASE_ERRORS.labels("listen_jobs_scheduled").inc()
                log.warning("stopped hearing jobs_scheduled: %s; polling until listening again", error)
                return
            if count:
                log.debug("woken by %d jobs_scheduled notifications", count)

    def close(self) -> None:
        """Stop listening: only the active scheduler needs the notifications."""
        self.listener.close()

    def _ensure_listening(self) -> None:
        if self.listener.listening:
            return
        try:
            self.listener.listen()
        except DatabaseUnavailable as error:
            # Promote anyway: during an outage that fails too and the loop backs off; if only LISTEN
            # fails, the promoter still works, polling every max_idle_seconds until LISTEN succeeds.
            metrics.DATABASE_ERRORS.labels("listen_jobs_scheduled").inc()
            log.warning("cannot LISTEN jobs_scheduled: %s; polling every %.2f s", error, self.max_idle_seconds)
            return
        log.info("listening on jobs_scheduled")
