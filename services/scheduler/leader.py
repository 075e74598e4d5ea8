"""Leader election: of all running schedulers, the one holding the advisory lock runs the duties.

Standbys try for the lock every ``retry_seconds``. The leader checks as often that its lock connection
still works; when it broke (the database restarted, the network dropped), PostgreSQL has already let the
lock go, so the leader stops its duties and contends again like a standby. Each duty is safe to run
twice at once (row locks with SKIP LOCKED, conditions re-checked on the locked row), so the moment two
schedulers overlap while one notices its loss does no harm.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from services.scheduler import metrics
from services.scheduler.loops import Backoff, Duty, StopSignal, run_duty
from shared.database.maintenance import LeaderLock
from shared.errors import DatabaseUnavailable

__all__ = ["DUTY_STOP_TIMEOUT_SECONDS", "LeaderElector"]

log = logging.getLogger(__name__)

# Each duty pass is one bounded statement; this is a safety net for a statement stuck on the network.
DUTY_STOP_TIMEOUT_SECONDS = 10.0


class LeaderElector:
    """Contends for the leader lock and runs ``duties`` (each on its own thread) while holding it."""

    def __init__(self, lock: LeaderLock, duties: Sequence[Duty], retry_seconds: float) -> None:
        self.lock = lock
        self.duties = list(duties)
        self.retry_seconds = retry_seconds

    def run(self, stop: threading.Event) -> None:
        """Contend and lead until ``stop`` is set; returns with the lock released and the duties stopped."""
        backoff = Backoff()
        standby_logged = False
        while not stop.is_set():
            try:
                acquired = self.lock.try_acquire()
            except DatabaseUnavailable as error:
                delay = backoff.next_delay()
                metrics.DATABASE_ERRORS.labels("leader_lock").inc()
                log.warning("cannot contend for leadership: %s; retrying in %.1f s", error, delay)
                stop.wait(delay)
                continue
            backoff.reset()
            if acquired:
                self._lead(stop)
                standby_logged = False
                continue
            if not standby_logged:
                log.info("standing by: another scheduler is active; trying every %.1f s", self.retry_seconds)
                standby_logged = True
            stop.wait(self.retry_seconds)
        self.lock.release()

    def _lead(self, stop: threading.Event) -> None:
        log.info("became the active scheduler; running %s", ", ".join(duty.name for duty in self.duties))
        metrics.IS_LEADER.set(1)
        metrics.LEADERSHIP_ACQUIRED.inc()
        term = StopSignal()
        threads = [
            # Daemon threads: a statement stuck on a dead network must not keep the process from exiting.
            threading.Thread(target=run_duty, args=(duty, term), name=duty.name, daemon=True)
            for duty in self.duties
        ]
        for thread in threads:
            thread.start()
        try:
            while not stop.wait(self.retry_seconds):
                if not self.lock.still_held():
                    metrics.DATABASE_ERRORS.labels("leader_lock").inc()
                    log.warning("lost the leader lock (its database connection broke); stepping down")
                    break
        finally:
            # Duties stop before the lock goes, so a successor never overlaps a clean hand-over.
            term.set()
            for thread in threads:
                thread.join(DUTY_STOP_TIMEOUT_SECONDS)
            stuck = [thread.name for thread in threads if thread.is_alive()]
            if stuck:
                log.error("duties still running after %.0f s: %s", DUTY_STOP_TIMEOUT_SECONDS, ", ".join(stuck))
            else:
                term.close()
            self.lock.release()
            metrics.IS_LEADER.set(0)
            metrics.JOBS_BY_STATUS.clear()
            log.info("no longer the active scheduler")
