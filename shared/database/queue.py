"""What executors do to jobs: lease, heartbeat, complete, release, and LISTEN for ready jobs.

Every call is one short transaction over a bounded batch. Every write to a leased job is fenced by
its lease token: a write whose token no longer matches changes nothing, so an executor that lost a
lease (the scheduler rescued the job, or a newer attempt holds it) can never overwrite a newer attempt.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg2
from sqlalchemy import Engine

from shared.database.engine import translate_errors
from shared.database.queries import query
from shared.errors import DatabaseUnavailable
from shared.jobs import JobStatus

__all__ = ["JobOutcome", "JobQueue", "LeaseState", "LeasedJob", "LimitedLease", "ReadyListener"]

# lease_limited_jobs looks at most at this many READY jobs of the type (in lease order) to find jobs
# whose concurrency_key has room: a backlog of one key longer than this delays the other keys.
LIMITED_SCAN_JOBS = 1000


class LeasedJob(NamedTuple):
    """A job this executor now holds: what the handler needs, and the token that fences its outcome.

    A named tuple, not a dataclass: executors build thousands per second.
    """

    job_id: int
    type: str
    priority: int
    payload: Any  # a dict for every job the API accepted; checked again before the handler sees it
    attempt: int
    max_attempts: int
    timeout_seconds: int
    lease_token: str
    queue_wait_seconds: float  # from run_at (due) to started_at (leased)
    traceparent: str | None


class JobOutcome(NamedTuple):
    """How one attempt ended, as complete_jobs writes it.

    ``status`` is COMPLETED (with ``result`` as JSON text), PENDING (a retry after ``retry_delay``
    seconds), FAILED or CANCELLED; ``error_message`` says why for the last three.
    """

    job_id: int
    lease_token: str
    status: JobStatus
    result: str | None = None
    error_message: str | None = None
    retry_delay: float | None = None


@dataclass(frozen=True, slots=True)
class LimitedLease:
    """What lease_limited_jobs leased for one limited type, and what held the rest back.

    ``held_by`` is None when nothing was held back by a limit (no more READY jobs, or the free slots
    were the bound); otherwise "max_running", "rate_limit" or "max_running_per_key".
    ``retry_after`` (seconds) is when the rate window frees a start, for ``held_by == "rate_limit"``.
    """

    jobs: list[LeasedJob]
    held_by: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class LeaseState:
    """What heartbeat_leases and check_leases report about one lease."""

    job_id: int
    held: bool
    cancel_requested: bool


class ReadyListener:
    """A connection LISTENing on jobs_ready, for an event loop to watch (``fileno``) and ``drain``.

    Any error means the connection is gone: close it and open a new one with ``listen_jobs_ready``.
    """

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def fileno(self) -> int:
        return int(self._connection.fileno())

    def drain(self) -> int:
        """Read what arrived; return how many notifications. Raises DatabaseUnavailable when lost."""
        try:
            self._connection.poll()
        except psycopg2.Error as error:
            raise DatabaseUnavailable(
                f"listen connection lost: {str(error).strip() or type(error).__name__}"
            ) from error
        count = len(self._connection.notifies)
        self._connection.notifies.clear()
        return count

    def wait(self, timeout: float) -> int:
        """Block up to ``timeout`` seconds for notifications (for callers without an event loop)."""
        readable, _, _ = select.select([self.fileno()], [], [], timeout)
        return self.drain() if readable else 0

    def close(self) -> None:
        # A broken connection has nothing left to release.
        with contextlib.suppress(psycopg2.Error):
            self._connection.close()


class JobQueue:
    """The executor's access to the jobs table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def lease_jobs(self, owner: str, types: Sequence[str], limit: int, lease_seconds: float) -> list[LeasedJob]:
        """Lease up to ``limit`` READY jobs of ``types``, in priority, due-time and id order."""
        if limit <= 0 or not types:
            return []
        params = {"owner": owner, "types": list(types), "limit": limit, "lease_seconds": lease_seconds}
        with translate_errors(), self.engine.begin() as conn:
            # Positional rows straight into tuples: the columns are those of LeasedJob, in its order.
            jobs = [LeasedJob._make(row) for row in conn.execute(query("lease_jobs"), params).all()]
        # RETURNING order is unspecified; the caller starts jobs in this order (priority, run_at, id).
        jobs.sort(key=_start_order)
        return jobs

    def lease_limited_jobs(self, owner: str, job_type: str, limit: int, lease_seconds: float) -> LimitedLease:
        """Lease up to ``limit`` READY jobs of one type that has limits, within those limits.

        Leasing of the type is serialized across executors by its limits row (lock_type_limits, then
        lease_limited_jobs in the same transaction), so the counts are exact. A type whose limits are
        gone meanwhile leases nothing here (lease_jobs takes it from then on).
        """
        if limit <= 0:
            return LimitedLease([])
        params = {
            "owner": owner,
            "type": job_type,
            "limit": limit,
            "lease_seconds": lease_seconds,
            "scan_limit": LIMITED_SCAN_JOBS,
        }
        with translate_errors(), self.engine.begin() as conn:
            if conn.execute(query("lock_type_limits"), {"type": job_type}).first() is None:
                return LimitedLease([])
            rows = conn.execute(query("lease_limited_jobs"), params).all()
        # The first ten columns are lease_jobs' RETURNING; the rest, equal on every row, summarise.
        jobs = [LeasedJob._make(row[:_LEASED_COLUMNS]) for row in rows if row[0] is not None]
        jobs.sort(key=_start_order)
        summary = rows[0]
        slots, running_left, rate_left, rate_wait, ready_seen = summary[_LEASED_COLUMNS:]
        if ready_seen <= len(jobs):
            return LimitedLease(jobs)
        if rate_left is not None and len(jobs) >= rate_left:
            return LimitedLease(jobs, "rate_limit", max(0.0, rate_wait))
        if running_left is not None and len(jobs) >= running_left:
            return LimitedLease(jobs, "max_running")
        if len(jobs) < slots:
            # Room left, READY jobs left, yet not leased: their keys are at max_running_per_key.
            return LimitedLease(jobs, "max_running_per_key")
        return LimitedLease(jobs)  # the free slots were the bound

    def select_limited_types(self, types: Sequence[str]) -> set[str]:
        """Which of ``types`` have limits (and so are leased with lease_limited_jobs)."""
        if not types:
            return set()
        with translate_errors(), self.engine.connect() as conn:
            return {row.type for row in conn.execute(query("select_limited_types"), {"types": list(types)})}

    def heartbeat_leases(self, leases: Sequence[tuple[int, str]], lease_seconds: float) -> list[LeaseState]:
        """Extend the leases (job_id, token) still held; report each one's state."""
        if not leases:
            return []
        params = {**_lease_params(leases), "lease_seconds": lease_seconds}
        with translate_errors(), self.engine.begin() as conn:
            rows = conn.execute(query("heartbeat_leases"), params).all()
        return [LeaseState(row.job_id, row.held, row.cancel_requested) for row in rows]

    def check_leases(self, leases: Sequence[tuple[int, str]]) -> list[LeaseState]:
        """Report, without writing, whether each lease is still held and whether a cancel was requested."""
        if not leases:
            return []
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(query("check_leases"), _lease_params(leases)).all()
        return [LeaseState(row.job_id, row.held, row.cancel_requested) for row in rows]

    def report_progress(self, reports: Sequence[tuple[int, str, int, str]]) -> None:
        """Store (job_id, lease token, percent, message) for running jobs whose lease is still held."""
        if not reports:
            return
        params = {
            "job_ids": [job_id for job_id, _, _, _ in reports],
            "lease_tokens": [token for _, token, _, _ in reports],
            "percents": [percent for _, _, percent, _ in reports],
            "messages": [message for _, _, _, message in reports],
        }
        with translate_errors(), self.engine.begin() as conn:
            conn.execute(query("report_progress"), params)

    def complete_jobs(self, outcomes: Sequence[JobOutcome], wake_executors: bool = False) -> dict[int, JobStatus]:
        """Write outcomes in one statement; return the status written per job id.

        Outcomes whose lease is no longer held are left out of the answer (stale). When any job went
        back to PENDING, the scheduler is notified once, in the same transaction. ``wake_executors``
        notifies jobs_ready too (the batch ended jobs of a type with limits, which frees room for more).
        """
        if not outcomes:
            return {}
        params = {
            "job_ids": [o.job_id for o in outcomes],
            "lease_tokens": [o.lease_token for o in outcomes],
            "statuses": [o.status.value for o in outcomes],
            "results": [o.result for o in outcomes],
            "error_messages": [o.error_message for o in outcomes],
            "retry_delays": [o.retry_delay for o in outcomes],
        }
        with translate_errors(), self.engine.begin() as conn:
            rows = conn.execute(query("complete_jobs"), params).all()
            written = {job_id: _STATUSES[status] for job_id, status in rows}
            if JobStatus.PENDING in written.values():
                conn.execute(query("notify_jobs_scheduled"))
            if wake_executors and written:
                conn.execute(query("notify_jobs_ready"))
        return written

    def release_leases(self, leases: Sequence[tuple[int, str]]) -> dict[int, JobStatus]:
        """Hand leased jobs back (READY, attempt not counted; CANCELLED if a cancel was requested).

        Returns the status written per job id; executors are woken once when any job became READY.
        """
        if not leases:
            return {}
        with translate_errors(), self.engine.begin() as conn:
            released = {
                row.job_id: JobStatus(row.status)
                for row in conn.execute(query("release_leases"), _lease_params(leases))
            }
            if JobStatus.READY in released.values():
                conn.execute(query("notify_jobs_ready"))
        return released

    def listen_jobs_ready(self) -> ReadyListener:
        """A dedicated connection (outside the pool) LISTENing on jobs_ready."""
        with translate_errors():
            proxied = self.engine.raw_connection()
        # Detached: the connection stays open for as long as the listener needs it, and does not hold
        # a pool slot that leasing and completing need.
        proxied.detach()
        connection = proxied.dbapi_connection
        try:
            # The pool's pre-ping may have opened a transaction; LISTEN needs autocommit, because
            # notifications are only delivered between transactions.
            connection.rollback()  # type: ignore[union-attr]
            connection.autocommit = True  # type: ignore[union-attr]
            with connection.cursor() as cursor:  # type: ignore[union-attr]
                cursor.execute(query("listen_jobs_ready").text)
        except psycopg2.Error as error:
            connection.close()  # type: ignore[union-attr]
            raise DatabaseUnavailable(f"cannot LISTEN: {_describe(error)}") from error
        return ReadyListener(connection)


_STATUSES = {status.value: status for status in JobStatus}
_LEASED_COLUMNS = len(LeasedJob._fields)


def _start_order(job: LeasedJob) -> tuple[int, float, int]:
    return (job.priority, -job.queue_wait_seconds, job.job_id)


def _lease_params(leases: Sequence[tuple[int, str]]) -> dict[str, list[Any]]:
    return {"job_ids": [job_id for job_id, _ in leases], "lease_tokens": [token for _, token in leases]}


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
