"""The heartbeat loop: keeps this executor's leases alive, notices cancel requests and lost leases, and
writes the progress handlers reported since its last tick (one report_progress statement for all).

Every ``heartbeat_interval`` one heartbeat_leases statement extends every lease this executor holds
(running jobs, and jobs whose outcome waits to be written) and reports on each. Between heartbeats, a
read-only check_leases statement every ``check_interval`` reports on the running jobs, so a cancel is
noticed within about a second without rewriting every leased row that often.
"""

from __future__ import annotations

import asyncio
import logging

from services.executor import metrics
from services.executor.completer import Completer
from services.executor.loops import DatabaseCalls, sleep_or_stop
from services.executor.runner import Runner
from shared.database.queue import JobQueue, LeaseState
from shared.errors import DatabaseUnavailable

__all__ = ["Heartbeat"]

logger = logging.getLogger(__name__)


class Heartbeat:
    """Runs heartbeat_leases and check_leases until stopped."""

    def __init__(
        self,
        queue: JobQueue,
        database: DatabaseCalls,
        write_lock: asyncio.Lock,
        runner: Runner,
        completer: Completer,
        lease_seconds: float,
        heartbeat_interval_seconds: float,
        check_interval_seconds: float,
    ) -> None:
        self._queue = queue
        self._database = database
        self._write_lock = write_lock
        self._runner = runner
        self._completer = completer
        self._lease_seconds = lease_seconds
        self._heartbeat_interval = heartbeat_interval_seconds
        self._check_interval = min(check_interval_seconds, heartbeat_interval_seconds)
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last_extended = loop.time()
        while not await sleep_or_stop(self._stopped, self._check_interval):
            await self._write_progress()
            running = self._runner.running_leases()
            extend = loop.time() - last_extended >= self._heartbeat_interval - self._check_interval / 2
            try:
                if extend:
                    leases = running + self._completer.pending_leases()
                    async with self._write_lock:
                        states = await self._database.call(
                            "heartbeat_leases", self._queue.heartbeat_leases, leases, self._lease_seconds
                        )
                    metrics.HEARTBEATS.inc()
                    last_extended = loop.time()
                elif running:
                    states = await self._database.call("check_leases", self._queue.check_leases, running)
                else:
                    continue
            except DatabaseUnavailable:
                continue  # logged by DatabaseCalls; the next tick tries again (an overdue heartbeat first)
            except Exception:
                logger.exception("heartbeat failed; retrying")
                continue
            self._apply(states, dict(running))

    async def _write_progress(self) -> None:
        reports = self._runner.pending_progress()
        if not reports:
            return
        try:
            async with self._write_lock:
                await self._database.call("report_progress", self._queue.report_progress, reports)
        except DatabaseUnavailable:
            pass  # progress is advisory: the next report replaces it anyway
        except Exception:
            logger.exception("writing progress failed")

    def _apply(self, states: list[LeaseState], running: dict[int, str]) -> None:
        for state in states:
            token = running.get(state.job_id)
            if token is None:
                continue  # an outcome waiting to be written: complete_jobs finds out whether it is stale
            # Compare tokens: the job may have ended and a new attempt of it started meanwhile.
            if not self._runner.is_running(state.job_id, token):
                continue
            if not state.held:
                self._runner.lose(state.job_id)
            elif state.cancel_requested:
                self._runner.cancel(state.job_id)
