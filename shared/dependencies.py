"""Dependencies between jobs, as domain rules: what state each job of a dependency submit starts in.

Pure: the database layer locks the dependencies, reads their states and inserts the jobs, then asks
``settle`` what each new job becomes and which edges to store (shared/database/jobs.py writes it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.jobs import Job, JobStatus, ValidatedJob

__all__ = ["BREAKING_STATUSES", "DependencyState", "Settled", "Settlement", "settle"]

# A dependency that ended in one of these cancels the jobs that wait for it.
BREAKING_STATUSES = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


@dataclass(frozen=True)
class DependencyState:
    """What a dependency is now: its status, and why it failed or was cancelled."""

    status: JobStatus
    error_message: str | None


@dataclass(frozen=True)
class Settled:
    """The state one new job starts in. ``status`` None: keep the status it was inserted with."""

    job_id: int
    status: JobStatus | None
    pending_dependencies: int
    depends_on: list[int]
    has_dependents: bool
    error_message: str | None


@dataclass(frozen=True)
class Settlement:
    """Every new job's state, and the unresolved edges (depends_on, job_id) to store."""

    jobs: list[Settled]
    edges: list[tuple[int, int]]


def settle(
    jobs: Sequence[ValidatedJob],
    resolved: Sequence[Job],
    created_ids: set[int],
    states: dict[int, DependencyState],
) -> Settlement:
    """The state of each job a dependency submit created, in request order (dependencies come first).

    ``resolved`` is the job each request position ended as (created, or an existing one its key named),
    ``states`` the locked dependencies' states. A job waits for its distinct dependencies that have not
    COMPLETED. One that FAILED or was cancelled cancels the job at once, with the reason naming it; a
    job of this batch cancelled that way passes its own reason on, so a broken chain names the job that
    broke it.
    """
    states = dict(states)
    edges: list[tuple[int, int]] = []
    waited_on: set[int] = set()
    rows: list[tuple[int, JobStatus | None, int, list[int], str | None]] = []
    todo: dict[int, list[int]] = {}
    seen: set[int] = set()
    for position, (job, _) in enumerate(jobs):
        job_id = resolved[position].job_id
        if job_id not in created_ids or job_id in seen:
            continue  # an existing job, or a later job of the batch that merged into an earlier one
        seen.add(job_id)
        # A job of the batch that merged into this very job (same unique_key) is not a dependency.
        todo[job_id] = [
            d
            for d in dict.fromkeys([*job.depends_on, *(resolved[k].job_id for k in job.depends_on_index)])
            if d != job_id
        ]
        if not todo[job_id]:
            del todo[job_id]
            # Inserted WAITING when it asked for dependencies; runnable now (settle makes it PENDING
            # when its time has not come).
            runnable = JobStatus.READY if job.has_dependencies else None
            states[job_id] = DependencyState(runnable or resolved[position].status, None)
            rows.append((job_id, runnable, 0, [], None))
    while todo:
        # Request order settles every dependency first; only jobs merged by a unique_key retry can
        # point forward, and those wait for their dependency to be settled (or, never seen, count
        # as unfinished).
        ready = [job_id for job_id, deps in todo.items() if all(d in states for d in deps)] or [next(iter(todo))]
        for job_id in ready:
            dependencies = todo.pop(job_id)
            status: JobStatus | None = None
            reason = None
            pending: list[int] = []
            if dependencies:
                found = [(d, states[d]) for d in dependencies if d in states]
                broken = next(((d, state) for d, state in found if state.status in BREAKING_STATUSES), None)
                if broken is not None:
                    status = JobStatus.CANCELLED
                    reason = broken[1].error_message if broken[0] in created_ids else None
                    reason = reason or f"dependency {broken[0]} {broken[1].status.value}"
                else:
                    pending = [
                        d for d in dependencies if d not in states or states[d].status is not JobStatus.COMPLETED
                    ]
                    status = JobStatus.WAITING if pending else JobStatus.READY
                states[job_id] = DependencyState(status, reason)
            edges.extend((d, job_id) for d in pending)
            waited_on.update(d for d in pending if d in created_ids)
            rows.append((job_id, status, len(pending), dependencies, reason))
    settled = [
        Settled(job_id, status, pending, depends_on, job_id in waited_on, reason)
        for job_id, status, pending, depends_on, reason in rows
    ]
    return Settlement(settled, edges)
