"""Leader election: of all running schedulers, the one holding the advisory lock runs the duties.

Standbys try for the lock every ``retry_seconds``. The leader checks as often that its lock connection
still works; when it broke (the database restarted, the network dropped), PostgreSQL has already let the
lock go, so the leader stops its duties and contends again like a standby. Each duty is safe to run
twice at once (row locks with SKIP LOCKED, conditions re-checked on the locked row), so the moment two
schedulers overlap while one notices its loss does no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from services.scheduler import metrics
from shared.database import Database
from shared.errors import DatabaseUnavailable
from shared.runtime import Backoff, Duty, Listener, run_duty, sleep_or_stop, supervise

__all__ = ["DUTY_STOP_TIMEOUT_SECONDS", "LeaderElector"]

log = logging.getLogger(__name__)

# Each duty pass is one bounded statement; this is a safety net for a statement stuck on the network.
DUTY_STOP_TIMEOUT_SECONDS = 10.0


class LeaderElector:
    """Contends for the leader lock and, while holding it, runs ``duties`` and ``listeners`` (one asyncio
    task each)."""

    def __init__(
        self, db: Database, duties: Sequence[Duty], listeners: Sequence[Listener], retry_seconds: float
    ) -> None:
        self.db = db
        self.lock = db.leader_lock()
        self.duties = list(duties)
        self.listeners = list(listeners)
        self.retry_seconds = retry_seconds

    async def run(self, stop: asyncio.Event) -> None:
        """Contend and lead until ``stop`` is set; returns with the lock released and the duties stopped."""
        backoff = Backoff()
        standby_logged = False
        try:
            while not stop.is_set():
                try:
                    acquired = await self.db.try_lock_scheduler_leader(self.lock)
                except DatabaseUnavailable as error:
                    delay = backoff.next()
                    log.warning("cannot contend for leadership: %s; retrying in %.1f s", error.message, delay)
                    await sleep_or_stop(stop, delay)
                    continue
                backoff.reset()
                if acquired:
                    await self._lead(stop)
                    standby_logged = False
                    continue
                if not standby_logged:
                    log.info("standing by: another scheduler is active; trying every %.1f s", self.retry_seconds)
                    standby_logged = True
                await sleep_or_stop(stop, self.retry_seconds)
        finally:
            await self._release()

    async def _lead(self, stop: asyncio.Event) -> None:
        log.info("became the active scheduler; running %s", ", ".join(duty.name for duty in self.duties))
        metrics.IS_LEADER.set(1)
        metrics.LEADERSHIP_ACQUIRED.inc()
        term = asyncio.Event()
        tasks = [asyncio.create_task(run_duty(duty, term), name=duty.name) for duty in self.duties]
        tasks += [
            asyncio.create_task(
                supervise(f"listen_{listener.channel}", lambda listener=listener: listener.run(term)),  # type: ignore[misc]
                name=f"listen_{listener.channel}",
            )
            for listener in self.listeners
        ]
        try:
            while not await sleep_or_stop(stop, self.retry_seconds):
                try:
                    held = await self.db.check_scheduler_leader(self.lock)
                except DatabaseUnavailable:
                    held = False
                if not held:
                    log.warning("lost the leader lock (its database connection broke); stepping down")
                    break
        finally:
            # Duties stop before the lock goes, so a successor never overlaps a clean hand-over.
            term.set()
            _, stuck = await asyncio.wait(tasks, timeout=DUTY_STOP_TIMEOUT_SECONDS)
            if stuck:
                names = ", ".join(sorted(task.get_name() for task in stuck))
                log.error("duties still running after %.0f s: %s", DUTY_STOP_TIMEOUT_SECONDS, names)
                for task in stuck:
                    task.cancel()
            await self._release()
            metrics.IS_LEADER.set(0)
            metrics.clear_job_counts()
            log.info("no longer the active scheduler")

    async def _release(self) -> None:
        # A broken session released the lock already.
        with contextlib.suppress(DatabaseUnavailable):
            await self.db.unlock_scheduler_leader(self.lock)
