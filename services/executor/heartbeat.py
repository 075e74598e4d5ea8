"""The heartbeat loop: keeps this executor's leases alive, notices cancel requests and lost leases, and
writes the progress handlers reported since its last tick (one report_progress statement for all).

Every ``heartbeat_interval`` one heartbeat_leases statement extends every lease this executor holds
(running jobs, and jobs whose outcome waits to be written) and reports on each. Between heartbeats, a
read-only check_leases statement every ``check_interval`` reports on the running jobs, so a cancel is
noticed within about a second without rewriting every leased row that often. Each heartbeat also
refreshes the executor's record in the registry (``register``: register_executor), so that it is
listed for one more lease period; so does every tick while the executor holds any lease, because the
record's last_seen_at is what tells the scheduler this executor is alive when its liveness lock is gone
(the session that held it dropped): silence past its liveness_seconds would make its jobs lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from services.executor import metrics
from services.executor.completer import Completer
from services.executor.runner import Runner
from shared.database import Database, LeaseState
from shared.errors import DatabaseUnavailable
from shared.runtime import Pulse, sleep_or_stop

__all__ = ["Heartbeat"]

logger = logging.getLogger(__name__)


class Heartbeat:
    """Runs heartbeat_leases and check_leases until stopped."""

    def __init__(
        self,
        db: Database,
        write_lock: asyncio.Lock,
        runner: Runner,
        completer: Completer,
        lease_seconds: float,
        heartbeat_interval_seconds: float,
        check_interval_seconds: float,
        register: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._db = db
        self._write_lock = write_lock
        self._runner = runner
        self._completer = completer
        self._lease_seconds = lease_seconds
        self._heartbeat_interval = heartbeat_interval_seconds
        self._check_interval = min(check_interval_seconds, heartbeat_interval_seconds)
        self._stopped = asyncio.Event()
        self._pulse = Pulse("heartbeat_leases")
        self._register = register

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last_extended = loop.time()
        while not await sleep_or_stop(self._stopped, self._check_interval):
            with self._pulse:
                if await self._tick(last_extended):
                    last_extended = loop.time()

    async def _tick(self, last_extended: float) -> bool:
        """Write progress, then extend every lease (when due) or check the running ones; True once extended."""
        await self._write_progress()
        running = self._runner.running_leases()
        pending = self._completer.pending_leases()
        extend = (
            asyncio.get_running_loop().time() - last_extended >= self._heartbeat_interval - self._check_interval / 2
        )
        if running or pending:
            await self.register_executor()  # alive: before anything that might be slow
        try:
            if extend:
                leases = running + pending
                async with self._write_lock:
                    states = await self._db.heartbeat_leases(leases, self._lease_seconds)
                metrics.HEARTBEATS.inc()
            elif running:
                states = await self._db.check_leases(running)
            else:
                return False
        except DatabaseUnavailable:
            return False  # logged by the gateway; the next tick tries again (an overdue heartbeat first)
        except Exception:
            logger.exception("heartbeat failed; retrying")
            return False
        self._apply(states, dict(running))
        if extend and not (running or pending):
            await self.register_executor()  # idle: listed for one more lease period
        return extend

    async def register_executor(self) -> None:
        """Write this executor's record (at start, and with every heartbeat); a failure is logged only."""
        if self._register is None:
            return
        try:
            await self._register()
        except DatabaseUnavailable:
            pass  # logged by the gateway; the record lasts a lease period, the next heartbeat refreshes it
        except Exception:
            logger.exception("refreshing this executor's record failed")

    async def _write_progress(self) -> None:
        reports = self._runner.pending_progress()
        if not reports:
            return
        try:
            async with self._write_lock:
                await self._db.report_progress(reports)
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
