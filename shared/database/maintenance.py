"""What the scheduler does to jobs: promote, rescue, prune, compact counts.

Every call is one short transaction over a bounded batch. Its leader lock and its LISTEN live in
shared/database/sessions.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Connection

from shared.database.gateway import Gateway, operation
from shared.database.queries import run
from shared.jobs import FINISHED_STATUSES, JobStatus

__all__ = ["CompactedCounts", "LostAttempt", "MaintenanceQueries", "PromotedJob", "RescuedJob", "record_lost_attempts"]

# Why an attempt is LOST, as ListJobAttempts shows it, by the reason rescue_lost_jobs gives.
LOST_REASONS = {
    "lease_expired": "the lease expired: the executor stopped heartbeating (it died, hung or lost the database)",
    "executor_died": "the executor died: its database session ended and it stopped heartbeating (killed, or crashed)",
}


@dataclass(frozen=True)
class PromotedJob:
    """A job made READY, and how long after its run_at that happened."""

    job_id: int
    lateness_seconds: float


@dataclass(frozen=True)
class RescuedJob:
    """A job taken back from an executor that died or stopped heartbeating, where it went, and how the
    loss was known: ``lease_expired``, or ``executor_died`` (its session ended and it fell silent)."""

    job_id: int
    type: str
    status: JobStatus
    attempts: int
    max_attempts: int
    error_message: str
    reason: str


@dataclass(frozen=True)
class CompactedCounts:
    """How many job_counts delta rows were folded, and into how many rows."""

    folded: int
    written: int


class _Promoted(NamedTuple):
    job_id: int
    lateness_seconds: float


class LostAttempt(NamedTuple):
    """An attempt whose lease was taken back from its executor: the job, the executor that held the lease
    (``lease_owner``) and when the attempt started."""

    job_id: int
    lease_owner: str | None
    started_at: datetime | None


class _Rescued(NamedTuple):
    job_id: int
    type: str
    status: str
    attempts: int
    max_attempts: int
    error_message: str
    reason: str


class _Compacted(NamedTuple):
    folded: int
    written: int


class _Count(NamedTuple):
    type: str
    status: str
    jobs: int


class MaintenanceQueries(Gateway):
    """The scheduler's duties against the jobs table, each one bounded statement in its own transaction."""

    @operation(rows=len)
    def promote_due_jobs(self, limit: int) -> list[PromotedJob]:
        """Make up to ``limit`` due PENDING jobs READY, and wake the executors when there were any."""
        with self.engine.begin() as conn:
            rows = run(conn, "promote_due_jobs", {"limit": limit}).records(_Promoted)
            if rows:
                run(conn, "notify_jobs_ready")
        return [PromotedJob(row.job_id, max(0.0, row.lateness_seconds)) for row in rows]

    @operation()
    def seconds_until_next_due(self) -> float | None:
        """Seconds until the earliest PENDING job is due (0 or less: due now); None when none is PENDING."""
        with self.engine.connect() as conn:
            seconds = run(conn, "select_next_due_delay").value("seconds")
        return None if seconds is None else float(seconds)

    @operation(rows=len)
    def rescue_lost_jobs(self, limit: int) -> list[RescuedJob]:
        """Take back up to ``limit`` PROCESSING jobs whose lease expired or whose executor died: READY,
        FAILED or CANCELLED (see rescue_lost_jobs.sql for how a death is told from a dropped session)."""
        params = {"limit": limit, "unbroken_seconds": self.unbroken_seconds()}
        with self.engine.begin() as conn:
            rescued = run(conn, "rescue_lost_jobs", params)
            rows = rescued.records(_Rescued)
            lost = rescued.records(LostAttempt)
            for reason, why in LOST_REASONS.items():
                record_lost_attempts(conn, [a for a, row in zip(lost, rows, strict=True) if row.reason == reason], why)
            if any(row.status == JobStatus.READY.value for row in rows):
                run(conn, "notify_jobs_ready")
        return [
            RescuedJob(
                job_id=row.job_id,
                type=row.type,
                status=JobStatus(row.status),
                attempts=row.attempts,
                max_attempts=row.max_attempts,
                error_message=row.error_message,
                reason=row.reason,
            )
            for row in rows
        ]

    @operation(rows=int)
    def prune_finished_jobs(self, status: JobStatus, older_than: timedelta, limit: int) -> int:
        """Delete up to ``limit`` jobs in the finished ``status`` that finished before ``older_than`` ago,
        with their attempts; how many jobs."""
        if status not in FINISHED_STATUSES:
            raise ValueError(f"only finished jobs are pruned, not {status.value}")
        params = {"status": status.value, "older_than_seconds": older_than.total_seconds(), "limit": limit}
        with self.engine.begin() as conn:
            return int(run(conn, "prune_finished_jobs", params).value("pruned"))

    @operation(rows=lambda counts: counts.folded)
    def compact_job_counts(self, limit: int) -> CompactedCounts:
        """Fold up to ``limit`` job_counts delta rows into one row per (type, status)."""
        with self.engine.begin() as conn:
            row = run(conn, "compact_job_counts", {"limit": limit}).one(_Compacted)
        return CompactedCounts(folded=row.folded, written=row.written)

    @operation()
    def count_jobs_by_type(self) -> dict[tuple[str, JobStatus], int]:
        """Jobs per (type, status) from the job_counts aggregate (cheap after compaction); no zero counts."""
        with self.engine.connect() as conn:
            return _counts_by_type(conn)

    @operation()
    def count_jobs_by_status(self) -> dict[JobStatus, int]:
        """Jobs per status from the job_counts aggregate (cheap after compaction), every status present."""
        counts = dict.fromkeys(JobStatus, 0)
        with self.engine.connect() as conn:
            for (_, status), jobs in _counts_by_type(conn).items():
                counts[status] += jobs
        return counts


def _counts_by_type(conn: Connection) -> dict[tuple[str, JobStatus], int]:
    return {(row.type, JobStatus(row.status)): row.jobs for row in run(conn, "count_jobs").records(_Count)}


def record_lost_attempts(conn: Connection, lost: Sequence[LostAttempt], reason: str) -> None:
    """Record each attempt LOST, ``reason`` saying why, inside the caller's transaction: the one way an
    attempt becomes LOST, for whatever takes leases back from executors that are gone."""
    if not lost:
        return
    params = {
        "job_ids": [attempt.job_id for attempt in lost],
        "executor_ids": [attempt.lease_owner for attempt in lost],
        "started_ats": [attempt.started_at for attempt in lost],
        "reason": reason,
    }
    run(conn, "record_lost_attempts", params)
