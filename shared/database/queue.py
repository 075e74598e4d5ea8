"""What executors do to jobs: lease, heartbeat, complete, release.

Every call is one short transaction over a bounded batch. Every write to a leased job is fenced by
its lease token: a write whose token no longer matches changes nothing, so an executor that lost a
lease (the scheduler rescued the job, or a newer attempt holds it) can never overwrite a newer attempt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from shared.database.gateway import Gateway, operation
from shared.database.queries import run
from shared.jobs import AttemptOutcome, JobStatus

__all__ = [
    "FAIRNESS_GROUPS_PER_LEASE",
    "JobOutcome",
    "LeaseState",
    "LeasedJob",
    "LimitedLease",
    "QueueQueries",
    "fairness_turn",
    "next_start_key",
]

# lease_limited_jobs looks at most at this many READY jobs of the type (in lease order) to find jobs
# whose concurrency_key has room: a backlog of one key longer than this delays the other keys.
LIMITED_SCAN_JOBS = 1000
# Within a type and priority, a lease takes jobs from at most this many fairness groups that have big
# backlogs (fairness_turn): every group a lease touches costs index probes and rows spread over the
# table. Measured drains of 100 keys against none (docs/benchmarks.md): one job per key (100 groups per
# lease of 100) about 0.7, 16 groups about 0.9, 8 groups 0.97 (within the noise).
FAIRNESS_GROUPS_PER_LEASE = 8


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
    fairness_key: str = ""  # '' for none; where the executor's round-robin over the type's keys got to


class JobOutcome(NamedTuple):
    """How one attempt ended, as complete_jobs writes it.

    ``status`` is COMPLETED (with ``result`` as JSON text), PENDING (a retry after ``retry_delay``
    seconds), FAILED or CANCELLED; ``error_message`` says why for the last three. The attempt is recorded
    as ``attempt_outcome`` (by default COMPLETED, CANCELLED, or FAILED for PENDING and FAILED), with the
    failure's ``error_type`` and ``traceback`` when an exception was raised.
    """

    job_id: int
    lease_token: str
    status: JobStatus
    result: str | None = None
    error_message: str | None = None
    retry_delay: float | None = None
    attempt_outcome: AttemptOutcome | None = None
    error_type: str | None = None
    traceback: str | None = None

    @property
    def attempt(self) -> AttemptOutcome:
        """How the attempt ended."""
        return self.attempt_outcome or _ATTEMPT_BY_STATUS[self.status]


@dataclass(frozen=True, slots=True)
class LimitedLease:
    """What lease_limited_jobs leased for one limited type, and what held the rest back.

    ``held_by`` is None when nothing was held back by a limit (no more READY jobs, or the free slots
    were the bound); otherwise "paused" (PauseJobType), "max_running", "rate_limit" or
    "max_running_per_key".
    ``retry_after`` (seconds) is when the rate window frees a start, for ``held_by == "rate_limit"``.
    """

    jobs: list[LeasedJob]
    held_by: str | None = None
    retry_after: float | None = None


class LeaseState(NamedTuple):
    """What heartbeat_leases and check_leases report about one lease."""

    job_id: int
    held: bool
    cancel_requested: bool


class _LimitSummary(NamedTuple):
    """The columns lease_limited_jobs adds to every row: what held the type back."""

    slots: int
    paused: bool
    running_left: int | None
    rate_left: int | None
    rate_wait_seconds: float | None
    ready_seen: int


class _Written(NamedTuple):
    job_id: int
    status: str


class QueueQueries(Gateway):
    """What executors do to jobs."""

    @operation(rows=len)
    def lease_jobs(
        self,
        owner: str,
        types: Sequence[str],
        limit: int,
        lease_seconds: float,
        start_keys: Mapping[str, str] | None = None,
    ) -> list[LeasedJob]:
        """Lease up to ``limit`` READY jobs of ``types``: priority first; within a type and priority the
        fairness keys take turns of ``fairness_turn(limit)`` jobs, from ``start_keys[type]`` (where the
        caller's previous lease of the type stopped, ``next_start_key``; '' or absent: from the first
        key); within a key, due time and id."""
        if limit <= 0 or not types:
            return []
        start_keys = start_keys or {}
        params = {
            "owner": owner,
            "types": list(types),
            "start_keys": [start_keys.get(job_type, "") for job_type in types],
            "limit": limit,
            "turn": fairness_turn(limit),
            "lease_seconds": lease_seconds,
        }
        with self.engine.begin() as conn:
            jobs = run(conn, "lease_jobs", params).records(LeasedJob)
        # RETURNING order is unspecified; the caller starts jobs in this order (priority, run_at, id).
        jobs.sort(key=_start_order)
        return jobs

    @operation(rows=lambda lease: len(lease.jobs))
    def lease_limited_jobs(
        self, owner: str, job_type: str, limit: int, lease_seconds: float, start_key: str = ""
    ) -> LimitedLease:
        """Lease up to ``limit`` READY jobs of one type that has limits, within those limits, in lease
        order (``start_key`` as for lease_jobs).

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
            "start_key": start_key,
            "turn": fairness_turn(limit),
        }
        with self.engine.begin() as conn:
            if not run(conn, "lock_type_limits", {"type": job_type}):
                return LimitedLease([])
            rows = run(conn, "lease_limited_jobs", params)
        # Every row carries the summary; a row without a job (nothing leased) carries only that.
        jobs = [job for job in rows.records(LeasedJob) if job.job_id is not None]
        jobs.sort(key=_start_order)
        summary = rows.records(_LimitSummary)[0]
        if summary.ready_seen <= len(jobs):
            return LimitedLease(jobs)
        if summary.paused:
            return LimitedLease(jobs, "paused")
        if summary.rate_left is not None and len(jobs) >= summary.rate_left:
            return LimitedLease(jobs, "rate_limit", max(0.0, summary.rate_wait_seconds or 0.0))
        if summary.running_left is not None and len(jobs) >= summary.running_left:
            return LimitedLease(jobs, "max_running")
        if len(jobs) < summary.slots:
            # Room left, READY jobs left, yet not leased: their keys are at max_running_per_key.
            return LimitedLease(jobs, "max_running_per_key")
        return LimitedLease(jobs)  # the free slots were the bound

    @operation()
    def select_limited_types(self, types: Sequence[str]) -> set[str]:
        """Which of ``types`` have limits (and so are leased with lease_limited_jobs)."""
        if not types:
            return set()
        with self.engine.connect() as conn:
            return set(run(conn, "select_limited_types", {"types": list(types)}).column("type"))

    @operation()
    def heartbeat_leases(self, leases: Sequence[tuple[int, str]], lease_seconds: float) -> list[LeaseState]:
        """Extend the leases (job_id, token) still held; report each one's state."""
        if not leases:
            return []
        params = {**_lease_params(leases), "lease_seconds": lease_seconds}
        with self.engine.begin() as conn:
            return run(conn, "heartbeat_leases", params).records(LeaseState)

    @operation()
    def check_leases(self, leases: Sequence[tuple[int, str]]) -> list[LeaseState]:
        """Report, without writing, whether each lease is still held and whether a cancel was requested."""
        if not leases:
            return []
        with self.engine.connect() as conn:
            return run(conn, "check_leases", _lease_params(leases)).records(LeaseState)

    @operation()
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
        with self.engine.begin() as conn:
            run(conn, "report_progress", params)

    @operation(rows=len)
    def complete_jobs(
        self, outcomes: Sequence[JobOutcome], executor_id: str, wake_executors: bool = False
    ) -> dict[int, JobStatus]:
        """Write outcomes in one statement, each attempt recorded as run by ``executor_id``; return the
        status written per job id.

        Outcomes whose lease is no longer held are left out of the answer (stale), and their attempts
        are not recorded. When any job went back to PENDING, the scheduler is notified once, in the
        same transaction. ``wake_executors`` notifies jobs_ready too (the batch ended jobs of a type with
        limits, which frees room for more).
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
            "attempt_outcomes": [o.attempt.value for o in outcomes],
            "error_types": [o.error_type for o in outcomes],
            "tracebacks": [o.traceback for o in outcomes],
            "executor_id": executor_id,
        }
        with self.engine.begin() as conn:
            written = {
                row.job_id: _STATUSES[row.status] for row in run(conn, "complete_jobs", params).records(_Written)
            }
            if JobStatus.PENDING in written.values():
                run(conn, "notify_jobs_scheduled")
            if wake_executors and written:
                run(conn, "notify_jobs_ready")
        return written

    @operation(rows=len)
    def release_leases(self, leases: Sequence[tuple[int, str]]) -> dict[int, JobStatus]:
        """Hand leased jobs back (READY, attempt not counted; CANCELLED if a cancel was requested).

        Returns the status written per job id; executors are woken once when any job became READY.
        """
        if not leases:
            return {}
        with self.engine.begin() as conn:
            rows = run(conn, "release_leases", _lease_params(leases)).records(_Written)
            released = {row.job_id: _STATUSES[row.status] for row in rows}
            if JobStatus.READY in released.values():
                run(conn, "notify_jobs_ready")
        return released


_STATUSES = {status.value: status for status in JobStatus}
_ATTEMPT_BY_STATUS = {
    JobStatus.COMPLETED: AttemptOutcome.COMPLETED,
    JobStatus.PENDING: AttemptOutcome.FAILED,  # failed, to run again
    JobStatus.FAILED: AttemptOutcome.FAILED,
    JobStatus.CANCELLED: AttemptOutcome.CANCELLED,
}


def fairness_turn(limit: int) -> int:
    """How many jobs of one fairness group a lease of ``limit`` takes before the next group's turn:
    enough that a lease touches at most FAIRNESS_GROUPS_PER_LEASE groups with big backlogs, and 1 (strict
    round-robin) for leases of up to that many jobs."""
    return max(1, -(-limit // FAIRNESS_GROUPS_PER_LEASE))


def next_start_key(start_key: str, jobs: Iterable[LeasedJob], turn: int) -> str:
    """Where the next lease of one type starts its round of the fairness keys, after a lease that started
    at ``start_key`` with turns of ``turn`` jobs and leased ``jobs`` (of that type); ``start_key`` itself
    when nothing was leased.

    Mirrors ready_jobs_in_lease_order (migration 0011): the groups take turns in key order from
    ``start_key`` up, then from the smallest key; the last job leased is in the last group (in that
    order) of the last round. The next lease starts right after that group, or with it when the lease's
    size cut its turn to less than half (it then has a whole turn first, rather than losing most of one).
    Python compares str as the column's "C" collation does.
    """
    counts = Counter(job.fairness_key for job in jobs)
    if not counts:
        return start_key
    rounds = {key: -(-count // turn) for key, count in counts.items()}
    last_round = max(rounds.values())
    last = max((key for key, r in rounds.items() if r == last_round), key=lambda key: (key < start_key, key))
    served = counts[last] - (last_round - 1) * turn
    if 2 * served < turn:
        return last
    # Keys are printable (no control characters), so no key lies between a key and itself + "\x01".
    return last + "\x01"


def _start_order(job: LeasedJob) -> tuple[int, float, int]:
    return (job.priority, -job.queue_wait_seconds, job.job_id)


def _lease_params(leases: Sequence[tuple[int, str]]) -> dict[str, list[Any]]:
    return {"job_ids": [job_id for job_id, _ in leases], "lease_tokens": [token for _, token in leases]}
