"""The lease loop: takes READY jobs in batches of at most the free slots, and starts them.

It leases when there may be work: after a jobs_ready notification, on the fallback poll, and again at
once while batches come back full (the queue is likely not empty). A freed slot triggers a lease only
in that last case, so an idle queue costs one cheap statement per poll interval, not one per job.

Types with limits (docs/limits.md) are leased one type at a time with lease_limited_jobs; the others
with lease_jobs, which never leases a limited type. Which of this executor's types are limited is
cached and read again every LIMITS_REFRESH_SECONDS: a stale cache only delays a type's jobs until then.
A limited type held back by its limits is not tried again until something may have changed: a
jobs_ready notification (a job was submitted, or a job of a limited type ended somewhere), the
fallback poll, or, for a rate limit, the moment the oldest start leaves the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Sequence

from services.executor import metrics
from services.executor.runner import Runner
from shared.database import Database, LeasedJob, fairness_turn, next_start_key
from shared.errors import DatabaseUnavailable
from shared.runtime import Backoff, Pulse, sleep_or_stop
from shared.telemetry import JOB_TYPE_LABEL

__all__ = ["LIMITS_REFRESH_SECONDS", "Leaser", "LimitedTypes"]

logger = logging.getLogger(__name__)

# How often an executor reads again which of its types have limits.
LIMITS_REFRESH_SECONDS = 1.0
# A limited type held back by max_running or max_running_per_key waits for a wake-up, not a time.
_UNTIL_WOKEN = math.inf


class LimitedTypes:
    """The executor's types that have limits, as last read (shared by the leaser and the completer)."""

    def __init__(self) -> None:
        self.types: frozenset[str] = frozenset()

    def __contains__(self, job_type: object) -> bool:
        return job_type in self.types

    def __bool__(self) -> bool:
        return bool(self.types)


class Leaser:
    """Runs ``lease_jobs`` whenever there may be work and slots are free, until stopped."""

    def __init__(
        self,
        db: Database,
        runner: Runner,
        owner: str,
        types: Sequence[str],
        lease_seconds: float,
        poll_interval_seconds: float,
        backlog: Callable[[], int],
        max_backlog: int,
        limited: LimitedTypes | None = None,
    ) -> None:
        self._db = db
        self._runner = runner
        self._owner = owner
        self._types = list(types)
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval_seconds
        self._backlog = backlog
        self._max_backlog = max_backlog
        self._pulse = Pulse("lease_jobs")
        self._wake = asyncio.Event()
        self._may_have_work = True
        self._stopping = False
        self._stopped = asyncio.Event()
        self._limited = limited if limited is not None else LimitedTypes()
        self._limits_read_at = -math.inf
        # Per limited type this executor serves: the loop time from which to try it again.
        self._limited_next: dict[str, float] = {}
        self._round = 0
        # Per type: the fairness key where this executor's next lease of it starts its round of the keys,
        # after where the previous one stopped, so every key with READY jobs takes its turn (docs/fairness.md).
        self._start_keys: dict[str, str] = {}

    def notify(self) -> None:
        """A job became READY somewhere, or a limited job ended (jobs_ready): lease as soon as a slot is free."""
        self._may_have_work = True
        self._retry_held_types()
        self._wake.set()

    def _retry_held_types(self) -> None:
        for job_type, due in self._limited_next.items():
            if due == _UNTIL_WOKEN:
                self._limited_next[job_type] = 0.0

    def slot_freed(self) -> None:
        """An attempt ended or outcomes were written; only matters while work is known to be waiting."""
        if self._may_have_work and not self._wake.is_set():
            self._wake.set()

    def stop(self) -> None:
        """Lease no more (shutdown)."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(first=0.05, cap=5.0)
        next_poll = loop.time()
        while not self._stopping:
            now = loop.time()
            if now >= next_poll:
                self._may_have_work = True
                self._retry_held_types()
                next_poll = now + self._poll_interval
            if any(0.0 < due <= now for due in self._limited_next.values()):
                self._may_have_work = True  # a rate window freed a start
            free = self._runner.free_slots()
            if free > 0 and self._may_have_work and self._backlog() < self._max_backlog:
                # Cleared before the statement: a notification that arrives during it sets it again.
                self._may_have_work = False
                try:
                    with self._pulse:
                        if now - self._limits_read_at >= LIMITS_REFRESH_SECONDS:
                            await self._read_limits(now)
                        more = await self._lease_round(free, now)
                except Exception as error:
                    self._may_have_work = True
                    if not isinstance(error, DatabaseUnavailable):
                        logger.exception("leasing failed; retrying")
                    # Not _pause: notifications and freed slots must not cut an outage's backoff short.
                    await sleep_or_stop(self._stopped, backoff.next())
                    continue
                backoff.reset()
                if more:
                    self._may_have_work = True
                continue
            self._wake.clear()
            await self._pause(min(next_poll, self._next_rate_retry(now)) - loop.time())

    async def _read_limits(self, now: float) -> None:
        limited = await self._db.select_limited_types(self._types)
        self._limits_read_at = now
        self._limited.types = frozenset(limited)
        # New limited types are due at once; types no longer limited are forgotten.
        self._limited_next = {job_type: self._limited_next.get(job_type, 0.0) for job_type in sorted(limited)}

    async def _lease_round(self, free: int, now: float) -> bool:
        """Lease for every group of types that is due, up to ``free`` jobs in all; start them.

        Returns whether some call came back full (more may be waiting).
        Groups (each limited type, then all unlimited types) take turns going first, so that neither a
        limited type with a loose limit nor a flood of unlimited jobs takes every slot round after round.
        """
        unlimited = [job_type for job_type in self._types if job_type not in self._limited]
        groups: list[str | None] = [job_type for job_type, due in self._limited_next.items() if due <= now]
        if unlimited:
            groups.append(None)
        if not groups:
            return False
        self._round += 1
        start = self._round % len(groups)
        leased = 0
        more = False
        for group in groups[start:] + groups[:start]:
            room = free - leased
            if room <= 0:
                more = True
                break
            if group is None:
                jobs = await self._db.lease_jobs(self._owner, unlimited, room, self._lease_seconds, self._start_keys)
            else:
                jobs = await self._lease_limited(group, room, now)
            # Right after the statement: each attempt's span links to the one that leased it.
            self._start(jobs)
            self._advance_start_keys(jobs, room)
            leased += len(jobs)
            more = more or len(jobs) >= room
        return more

    async def _lease_limited(self, job_type: str, room: int, now: float) -> list[LeasedJob]:
        lease = await self._db.lease_limited_jobs(
            self._owner, job_type, room, self._lease_seconds, self._start_keys.get(job_type, "")
        )
        if len(lease.jobs) >= room:
            self._limited_next[job_type] = 0.0
        elif lease.held_by == "rate_limit" and lease.retry_after is not None:
            self._limited_next[job_type] = now + max(lease.retry_after, 0.001)
        else:
            self._limited_next[job_type] = _UNTIL_WOKEN
        if lease.held_by is not None:
            metrics.LEASE_LIMIT_HOLDS.labels(JOB_TYPE_LABEL(job_type), lease.held_by).inc()
        return lease.jobs

    def _advance_start_keys(self, jobs: list[LeasedJob], room: int) -> None:
        by_type: dict[str, list[LeasedJob]] = {}
        for job in jobs:
            by_type.setdefault(job.type, []).append(job)
        turn = fairness_turn(room)
        for job_type, leased in by_type.items():
            self._start_keys[job_type] = next_start_key(self._start_keys.get(job_type, ""), leased, turn)

    def _next_rate_retry(self, now: float) -> float:
        """When a rate window frees a start (only future times: a passed one waits for a free slot)."""
        return min((due for due in self._limited_next.values() if due > now), default=math.inf)

    def _start(self, jobs: list[LeasedJob]) -> None:
        if jobs:
            metrics.LEASES_TAKEN.inc(len(jobs))
            metrics.LEASE_BATCHES.inc()
        for job in jobs:
            self._runner.start(job)

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0 or self._stopping:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
