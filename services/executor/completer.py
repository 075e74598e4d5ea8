"""The outcome writer: batches the outcomes of many attempts into one complete_jobs statement per flush.

A flush happens once ``batch_size`` outcomes are waiting, or ``flush_seconds`` after the first one
arrived. While the database is down, outcomes stay in memory (their jobs are still leased to this
executor, and the heartbeat keeps those leases alive) and are written once it is back. An outcome
whose lease token no longer matches is stale: dropped, logged and counted in stale_outcomes_total.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Container, Sequence

from services.executor import metrics
from services.executor.outcomes import clean_message, describe_error
from services.executor.telemetry import job_log_fields
from shared.database import Database, JobOutcome, LeasedJob
from shared.errors import DatabaseUnavailable
from shared.jobs import JobStatus
from shared.runtime import Backoff, Pulse
from shared.telemetry import JOB_TYPE_LABEL

__all__ = ["Completer"]

logger = logging.getLogger(__name__)

_COUNTERS = {
    JobStatus.COMPLETED: metrics.JOBS_COMPLETED,
    JobStatus.FAILED: metrics.JOBS_FAILED,
    JobStatus.PENDING: metrics.JOBS_RETRIED,
    JobStatus.CANCELLED: metrics.JOBS_CANCELLED,
}


class Completer:
    """Collects outcomes (``add``) and writes them in batches (``run``) until closed."""

    def __init__(
        self,
        db: Database,
        executor_id: str,
        write_lock: asyncio.Lock,
        batch_size: int,
        flush_seconds: float,
        on_flushed: Callable[[], None] = lambda: None,
        limited_types: Container[str] = frozenset(),
    ) -> None:
        self._db = db
        self._executor_id = executor_id  # recorded with each attempt
        self._write_lock = write_lock
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._on_flushed = on_flushed
        self._pulse = Pulse("complete_jobs")
        # Outcomes of jobs of these types wake every executor (jobs_ready): they free room under a limit.
        self._limited_types = limited_types
        self._buffer: list[tuple[LeasedJob, JobOutcome]] = []
        self._in_flight: list[tuple[LeasedJob, JobOutcome]] = []
        self._arrived = asyncio.Event()
        self._closing = False
        metrics.OUTCOMES_PENDING.set_function(lambda: self.backlog)

    def add(self, job: LeasedJob, outcome: JobOutcome) -> None:
        """Queue an outcome for the next flush."""
        self._buffer.append((job, outcome))
        if not self._arrived.is_set():
            self._arrived.set()

    @property
    def backlog(self) -> int:
        """Outcomes not yet written."""
        return len(self._buffer) + len(self._in_flight)

    def pending_leases(self) -> list[tuple[int, str]]:
        """(job_id, lease_token) of the outcomes not yet written: their leases must stay alive."""
        return [(job.job_id, job.lease_token) for job, _ in (*self._in_flight, *self._buffer)]

    async def run(self) -> None:
        """Flush until ``close`` is called and everything is written."""
        backoff = Backoff(first=0.05, cap=5.0)
        while True:
            if not self._buffer:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if len(self._buffer) < self._batch_size and not self._closing and self._flush_seconds > 0:
                # Give the outcomes of other jobs a moment to share this write.
                await asyncio.sleep(self._flush_seconds)
            batch = self._buffer[: self._batch_size]
            del self._buffer[: self._batch_size]
            self._in_flight = batch
            with self._pulse:
                try:
                    wake = bool(self._limited_types) and any(job.type in self._limited_types for job, _ in batch)
                    written = await self._write([outcome for _, outcome in batch], wake)
                except DatabaseUnavailable:
                    written = None
                except Exception:
                    logger.exception(
                        "complete_jobs failed for a batch of %d; writing its outcomes one by one", len(batch)
                    )
                    written = await self._write_one_by_one(batch)
                finally:
                    self._in_flight = []
            if written is None:
                self._buffer[:0] = batch
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            self._account(batch, written)
            self._on_flushed()

    async def close(self, timeout: float, task: asyncio.Task[None]) -> int:
        """Flush what is left (retrying through an outage) for up to ``timeout`` seconds.

        Returns how many outcomes could not be written; their jobs stay leased until the lease expires
        and the scheduler rescues them, so nothing is lost, but they run again.
        """
        self._closing = True
        self._arrived.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError:
            task.cancel()
        left = self.backlog
        if left:
            ids = sorted(job.job_id for job, _ in (*self._in_flight, *self._buffer))
            logger.error(
                "%d outcomes could not be written before exit; the scheduler will rescue those jobs when their "
                "leases expire: %s",
                left,
                ids[:50],
                extra={"count": left},
            )
        return left

    async def _write(self, outcomes: Sequence[JobOutcome], wake_executors: bool = False) -> dict[int, JobStatus]:
        async with self._write_lock:
            return await self._db.complete_jobs(outcomes, self._executor_id, wake_executors)

    async def _write_one_by_one(self, batch: list[tuple[LeasedJob, JobOutcome]]) -> dict[int, JobStatus]:
        """Isolate an outcome the database refuses, so it cannot block the others forever."""
        written: dict[int, JobStatus] = {}
        for index, (job, outcome) in enumerate(batch):
            try:
                written.update(await self._write([outcome]))
                continue
            except DatabaseUnavailable:
                # Back into the queue with the rest; run() retries them after the outage.
                self._buffer[:0] = batch[index:]
                del batch[index:]
                return written
            except Exception as error:
                reason = describe_error(error)
            logger.error(
                "the database refused the outcome of a job (%s); failing it without a result",
                reason,
                extra=job_log_fields(job),
            )
            fallback = JobOutcome(
                outcome.job_id,
                outcome.lease_token,
                JobStatus.FAILED,
                error_message=clean_message(f"could not store the outcome: {reason}"),
            )
            try:
                written.update(await self._write([fallback]))
            except Exception:
                logger.exception(
                    "could not store the fallback outcome either; the job will be rescued when its lease expires",
                    extra=job_log_fields(job),
                )
                written[job.job_id] = JobStatus.PROCESSING  # neither written nor stale: leave it to the rescuer
        return written

    def _account(self, batch: Sequence[tuple[LeasedJob, JobOutcome]], written: dict[int, JobStatus]) -> None:
        counts: Counter[tuple[JobStatus, str]] = Counter()
        for job, _ in batch:
            status = written.get(job.job_id)
            if status is None:
                metrics.STALE_OUTCOMES.inc()
                logger.warning(
                    "stale outcome dropped: the lease is no longer held (rescued or re-leased)",
                    extra=job_log_fields(job),
                )
            elif status in _COUNTERS:
                counts[(status, job.type)] += 1
        for (status, job_type), count in counts.items():
            _COUNTERS[status].labels(JOB_TYPE_LABEL(job_type)).inc(count)
