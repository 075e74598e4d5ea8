"""The api's queries on jobs: submit, get, list, count, cancel, retry (one job, or a batch of a filter's), and
attempts. Every call is one short transaction.

The submit helpers at module level (``insert_jobs``...) run inside a caller's transaction; the scheduler
submits a schedule's occurrence with them (shared/database/schedules.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import orjson
import psycopg2.errorcodes
import psycopg2.errors
from sqlalchemy import Connection, Engine, exc

from shared.database.gateway import Gateway, operation
from shared.database.queries import run
from shared.dependencies import DependencyState, settle
from shared.errors import DatabaseUnavailable, FailedPrecondition, IdempotencyConflict, InvalidArgument, JobNotFound
from shared.jobs import (
    AttemptOutcome,
    Job,
    JobAttempt,
    JobCounts,
    JobCursor,
    JobFilter,
    JobStatus,
    NewJob,
    RecentFailure,
    SubmitResult,
    ValidatedJob,
)

__all__ = ["JobQueries", "insert_jobs"]

RECENT_FAILURES_LIMIT = 10
# Inserts of a job whose unique_key holder finished between the insert and the read of the holder.
UNIQUE_KEY_ATTEMPTS = 3
# Transactions aborted by a deadlock or a serialization failure (a submit with dependencies locks them
# while executors complete them; a bulk batch locks up to a batch of jobs executors may be writing), tried
# again before the error reaches the client.
ROLLED_BACK_ATTEMPTS = 3


class _Inserted(NamedTuple):
    """What submit_jobs returns per created job: only what the database decided."""

    job_id: int
    status: str
    idempotency_key: str | None
    unique_key: str | None
    created_at: datetime
    run_at: datetime


class _Locked(NamedTuple):
    job_id: int
    status: str
    error_message: str | None


class _Count(NamedTuple):
    type: str
    status: str
    jobs: int
    attempts: int


class _Failure(NamedTuple):
    job_id: int
    type: str
    error_message: str | None
    attempts: int
    finished_at: datetime | None


class JobQueries(Gateway):
    """What the api does to jobs."""

    @operation()
    def submit_jobs(self, jobs: Sequence[ValidatedJob]) -> list[SubmitResult]:
        """Insert validated jobs in one transaction, all or nothing.

        A job whose idempotency key already names a job with the same type and payload gives
        that job back (created=False); with another type or payload, IdempotencyConflict, and
        nothing of the batch is stored. A job whose unique_key an unfinished job holds gives that
        job back (created=False). Keys repeated inside the batch behave as if submitted one after
        the other. A batch with dependencies takes the transactional path of submit_job_with_dependencies;
        a missing dependency is InvalidArgument naming ``jobs[i].depends_on[j]``.
        """
        if any(job.has_dependencies for job, _ in jobs):
            return _submit_with_dependencies(self.engine, jobs, field_prefix="jobs[{}].")
        with self.engine.begin() as conn:
            outcomes = insert_jobs(conn, jobs)
            for outcome in outcomes:
                if isinstance(outcome, IdempotencyConflict):
                    raise outcome  # rolls the whole batch back
        return [outcome for outcome in outcomes if isinstance(outcome, SubmitResult)]

    @operation()
    def submit_job_with_dependencies(self, job: ValidatedJob) -> SubmitResult:
        """A unary submit with depends_on: its own transaction (no group commit); a missing dependency
        is InvalidArgument naming ``depends_on[j]``."""
        return _submit_with_dependencies(self.engine, [job], field_prefix="")[0]

    @operation()
    def submit_jobs_independently(self, jobs: Sequence[ValidatedJob]) -> list[SubmitResult | IdempotencyConflict]:
        """Group commit: unrelated submits share one autocommit insert (one round trip), and a key
        conflict is only that job's outcome."""
        if self.writer is not None:
            with self.writer.connect() as conn:
                return insert_jobs(conn, jobs)
        with self.engine.connect() as conn:
            return insert_jobs(conn.execution_options(isolation_level="AUTOCOMMIT"), jobs)

    @operation()
    def get_job(self, job_id: int) -> Job:
        with self.engine.connect() as conn:
            jobs = run(conn, "get_job", {"job_id": job_id}).jobs()
        if not jobs:
            raise JobNotFound(job_id)
        return jobs[0]

    @operation()
    def get_jobs(self, job_ids: Sequence[int]) -> dict[int, Job]:
        """The jobs among ``job_ids`` that exist, by id."""
        with self.engine.connect() as conn:
            return {job.job_id: job for job in run(conn, "get_jobs", {"job_ids": list(job_ids)}).jobs()}

    @operation()
    def list_jobs(self, filter: JobFilter, after: JobCursor | None, limit: int) -> list[Job]:
        """Up to ``limit`` jobs the filter selects, newest first, after the cursor when given (see
        JobFilter for the order)."""
        with self.engine.connect() as conn:
            page = _matching_page(conn, filter, after, limit)
            jobs = run(conn, "get_jobs", {"job_ids": [cursor.job_id for cursor in page]}).jobs()
        # A job pruned between the two reads is simply not on the page.
        position = {cursor.job_id: n for n, cursor in enumerate(page)}
        return sorted(jobs, key=lambda job: position[job.job_id])

    @operation()
    def select_matching_jobs(self, filter: JobFilter, after: JobCursor | None, limit: int) -> list[JobCursor]:
        """The ids (and creation times) of the next ``limit`` jobs the filter selects, in list order."""
        with self.engine.connect() as conn:
            return _matching_page(conn, filter, after, limit)

    @operation(rows=int)
    def cancel_jobs(self, job_ids: Sequence[int]) -> int:
        """One batch of CancelJobs: cancel the jobs among ``job_ids`` that still can be, as CancelJob does,
        in one short transaction; how many changed."""
        return _in_transaction(self.engine, lambda conn: run(conn, "cancel_jobs", {"job_ids": list(job_ids)}).rowcount)

    @operation(rows=int)
    def retry_jobs(self, job_ids: Sequence[int]) -> int:
        """One batch of RetryJobs: re-queue the jobs among ``job_ids`` that are FAILED or CANCELLED, as
        RetryJob does, in one short transaction; how many changed. A job whose unique_key another
        unfinished job holds is left as it is (RetryJob refuses it)."""
        return _in_transaction(self.engine, lambda conn: _retry_jobs(conn, list(job_ids)))

    @operation()
    def list_job_attempts(self, job_id: int) -> list[JobAttempt]:
        """Every attempt of the job, oldest first, the running one last; JobNotFound for an unknown job."""
        with self.engine.connect() as conn:
            rows = run(conn, "list_job_attempts", {"job_id": job_id}).records(_Attempt)
        if not rows:
            raise JobNotFound(job_id)
        # A row without an attempt: the job exists and has none.
        return [JobAttempt(**{**row._asdict(), "outcome": AttemptOutcome(row.outcome)}) for row in rows if row.attempt]

    @operation()
    def count_jobs(self) -> JobCounts:
        """Counts by status and type without scanning the jobs table."""
        with self.engine.connect() as conn:
            counts = run(conn, "count_jobs").records(_Count)
            failures = run(conn, "list_recent_failures", {"limit": RECENT_FAILURES_LIMIT}).records(_Failure)
        by_status = dict.fromkeys(JobStatus, 0)
        by_type: dict[str, int] = {}
        failed_jobs = failed_attempts = 0
        for count in counts:
            status = JobStatus(count.status)
            by_status[status] += count.jobs
            by_type[count.type] = by_type.get(count.type, 0) + count.jobs
            if status is JobStatus.FAILED:
                failed_jobs += count.jobs
                failed_attempts += count.attempts
        return JobCounts(
            by_status=by_status,
            by_type={t: n for t, n in sorted(by_type.items()) if n},
            avg_attempts_for_failed_jobs=failed_attempts / failed_jobs if failed_jobs else 0.0,
            recent_failures=[
                RecentFailure(f.job_id, f.type, f.error_message or "", f.attempts, f.finished_at) for f in failures
            ],
        )

    @operation()
    def cancel_job(self, job_id: int) -> Job:
        """Cancel a waiting job at once, or ask the executor running it to stop. A job whose cancel
        was requested already is returned as it is."""
        with self.engine.begin() as conn:
            changed = run(conn, "cancel_jobs", {"job_ids": [job_id]}).rowcount
            current = run(conn, "get_job", {"job_id": job_id}).jobs()
        if not current:
            raise JobNotFound(job_id)
        job = current[0]
        if changed or (job.status is JobStatus.PROCESSING and job.cancel_requested):
            return job
        raise FailedPrecondition(f"job {job_id} is {job.status.value} and can no longer be cancelled")

    @operation()
    def retry_job(self, job_id: int) -> Job:
        """Re-queue a FAILED or CANCELLED job as a fresh READY job.

        Only this job: jobs cancelled because it failed stay CANCELLED, and a job that was cancelled
        while WAITING does not wait for its dependencies again.
        """
        with self.engine.begin() as conn:
            try:
                retried = run(conn, "retry_jobs", {"job_ids": [job_id]})
            except exc.IntegrityError as error:
                if not _is_unique_violation(error):
                    raise
                # jobs_unique_key_active_uq: another unfinished job took this job's unique_key.
                raise FailedPrecondition(
                    f"job {job_id} cannot be retried: another unfinished job holds its unique_key"
                ) from None
            if retried:
                run(conn, "notify_jobs_ready")
            current = run(conn, "get_job", {"job_id": job_id}).jobs()
        if not current:
            raise JobNotFound(job_id)
        if retried:
            return current[0]
        raise FailedPrecondition(
            f"job {job_id} is {current[0].status.value}; only FAILED or CANCELLED jobs can be retried"
        )


class _Attempt(NamedTuple):
    attempt: int | None
    executor_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str | None
    error_type: str | None
    error_message: str | None
    traceback: str | None


def _matching_page(conn: Connection, filter: JobFilter, after: JobCursor | None, limit: int) -> list[JobCursor]:
    params = {
        "status": filter.status.value if filter.status is not None else None,
        "type": filter.type,
        "idempotency_key": filter.idempotency_key,
        "unique_key": filter.unique_key,
        "concurrency_key": filter.concurrency_key,
        "fairness_key": filter.fairness_key,
        "schedule": filter.schedule,
        "created_after": filter.created_after,
        "created_before": filter.created_before,
        "by_created_at": filter.by_created_at,
        "after_job_id": after.job_id if after is not None else None,
        "after_created_at": after.created_at if after is not None else None,
        "limit": limit,
    }
    return run(conn, "select_matching_jobs", params).records(JobCursor)


def _retry_jobs(conn: Connection, job_ids: list[int]) -> int:
    try:
        with conn.begin_nested():
            changed = run(conn, "retry_jobs", {"job_ids": job_ids}).rowcount
    except exc.IntegrityError as error:
        if not _is_unique_violation(error):
            raise
        # A job of the batch whose unique_key another unfinished job (or another job of the batch) holds.
        # Rare: each job again in a savepoint of its own, skipping those that conflict.
        changed = 0
        for job_id in job_ids:
            try:
                with conn.begin_nested():
                    changed += run(conn, "retry_jobs", {"job_ids": [job_id]}).rowcount
            except exc.IntegrityError as again:
                if not _is_unique_violation(again):
                    raise
    if changed:
        run(conn, "notify_jobs_ready")
    return changed


def _is_unique_violation(error: exc.IntegrityError) -> bool:
    return getattr(error.orig, "pgcode", None) == psycopg2.errorcodes.UNIQUE_VIOLATION


T = TypeVar("T")


def _in_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    """``work(conn)`` in a transaction, run again when PostgreSQL aborted it for a deadlock or a
    serialization failure (up to ROLLED_BACK_ATTEMPTS times): such a transaction may simply be repeated."""
    for attempt in range(1, ROLLED_BACK_ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                return work(conn)
        except exc.DBAPIError as error:
            rolled_back = isinstance(error.orig, psycopg2.errors.TransactionRollbackError)
            if attempt == ROLLED_BACK_ATTEMPTS or not rolled_back:
                raise
    raise AssertionError("unreachable")


def insert_jobs(conn: Connection, jobs: Sequence[ValidatedJob]) -> list[SubmitResult | IdempotencyConflict]:
    """Insert validated jobs on ``conn``, inside the caller's transaction (or autocommit); a key conflict
    is that job's outcome, for the caller to raise or return."""
    outcomes: list[SubmitResult | IdempotencyConflict | None] = [None] * len(jobs)
    todo = list(range(len(jobs)))
    for _ in range(UNIQUE_KEY_ATTEMPTS):
        batch = [jobs[i] for i in todo]
        # The plain statement's ON CONFLICT names the idempotency key's index alone, which is cheaper.
        statement = (
            "submit_jobs_with_unique_keys" if any(job.unique_key is not None for job, _ in batch) else "submit_jobs"
        )
        inserted = run(conn, statement, _submit_params(batch)).records(_Inserted)
        matched = _resolve_skipped(conn, batch, _created_positions(batch, inserted))
        for position, outcome in zip(todo, matched, strict=True):
            outcomes[position] = outcome
        todo = [i for i in todo if outcomes[i] is None]
        if not todo:
            return [outcome for outcome in outcomes if outcome is not None]
    raise _unique_key_contention(jobs[todo[0]].job)


def _submit_params(jobs: Sequence[ValidatedJob], **extra: Sequence[Any]) -> dict[str, str]:
    """The one parameter of submit_jobs and its variants: the jobs as a JSON array of objects with
    NewJob's fields by name (orjson encodes dataclasses natively), plus ``extra`` fields per job."""
    if not extra:
        return {"jobs": orjson.dumps([job for job, _ in jobs]).decode()}
    names = list(extra)
    rows = [{**job.__dict__, **{name: extra[name][n] for name in names}} for n, (job, _) in enumerate(jobs)]
    return {"jobs": orjson.dumps(rows).decode()}


def _created_positions(jobs: Sequence[ValidatedJob], inserted: Sequence[_Inserted]) -> dict[int, Job]:
    """Which request positions submit_jobs inserted, as Jobs.

    Rows come back in insert order (ascending ids), which is request order minus the skipped jobs,
    and only a job with a key can be skipped: a job takes the next row when that row carries its keys.
    (Should the next row be a later job with the same keys, the two are the same job by those keys,
    and both resolve to that row.)
    """
    rows = iter(sorted(inserted, key=lambda row: row.job_id))
    created: dict[int, Job] = {}
    row = next(rows, None)
    for position, (job, _) in enumerate(jobs):
        if row is not None and row.idempotency_key == job.idempotency_key and row.unique_key == job.unique_key:
            created[position] = Job.inserted(job, row.job_id, row.status, row.created_at, row.run_at)
            row = next(rows, None)
    return created


def _resolve_skipped(
    conn: Connection, jobs: Sequence[ValidatedJob], created: dict[int, Job]
) -> list[SubmitResult | IdempotencyConflict | None]:
    """Outcomes of a submit given the positions it created; the others were skipped for a key.

    None marks a job skipped for a unique_key whose holder finished before we could read it: the
    caller inserts that one again.
    """
    skipped = [job for position, (job, _) in enumerate(jobs) if position not in created]
    owners: dict[str, Job] = {}
    holders: dict[str, Job] = {}
    idempotency_keys = [job.idempotency_key for job in skipped if job.idempotency_key is not None]
    if idempotency_keys:
        rows = run(conn, "select_jobs_by_idempotency_keys", {"keys": idempotency_keys})
        owners = {job.idempotency_key: job for job in rows.jobs() if job.idempotency_key is not None}
    unique_keys = [job.unique_key for job in skipped if job.unique_key is not None]
    if unique_keys:
        rows = run(conn, "select_active_jobs_by_unique_keys", {"keys": unique_keys})
        holders = {job.unique_key: job for job in rows.jobs() if job.unique_key is not None}
    outcomes: list[SubmitResult | IdempotencyConflict | None] = []
    for position, (new_job, encoded) in enumerate(jobs):
        key, unique_key = new_job.idempotency_key, new_job.unique_key
        job = created.get(position)
        if job is not None:
            outcomes.append(SubmitResult(job, created=True))
            # Later jobs of this batch with the same keys are replays of, or merge with, this one.
            if key is not None:
                owners[key] = job
            if unique_key is not None:
                holders[unique_key] = job
            continue
        owner = owners.get(key) if key is not None else None
        if owner is not None:
            if owner.type != new_job.type or owner.payload != json.loads(encoded):
                outcomes.append(IdempotencyConflict(key or "", owner.job_id))
            else:
                outcomes.append(SubmitResult(owner, created=False))
            continue
        holder = holders.get(unique_key) if unique_key is not None else None
        if holder is not None:
            outcomes.append(SubmitResult(holder, created=False))
        elif unique_key is not None:
            outcomes.append(None)  # the holder finished meanwhile: the key is free, insert again
        else:
            # The job that owned the key was deleted between our insert and our read.
            outcomes.append(IdempotencyConflict(key or "", 0))
    return outcomes


def _unique_key_contention(job: NewJob) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"unique_key {job.unique_key!r}: the jobs holding it kept finishing while this submit ran; retry"
    )


def _submit_with_dependencies(engine: Engine, jobs: Sequence[ValidatedJob], field_prefix: str) -> list[SubmitResult]:
    def submit(conn: Connection) -> list[SubmitResult]:
        outcomes = _insert_with_dependencies(conn, jobs, field_prefix)
        for outcome in outcomes:
            if isinstance(outcome, IdempotencyConflict):
                raise outcome
        return [outcome for outcome in outcomes if isinstance(outcome, SubmitResult)]

    # It locks the dependencies while executors complete them: a deadlock is possible, and harmless.
    return _in_transaction(engine, submit)


def _insert_with_dependencies(
    conn: Connection, jobs: Sequence[ValidatedJob], field_prefix: str
) -> list[SubmitResult | IdempotencyConflict]:
    """One transaction: lock the dependencies, insert the jobs, settle their states, add the edges."""
    external = sorted({job_id for job, _ in jobs for job_id in job.depends_on})
    states = _lock_dependencies(conn, external)
    for position, (job, _) in enumerate(jobs):
        for index, job_id in enumerate(job.depends_on):
            if job_id not in states:
                field = field_prefix.format(position) + f"depends_on[{index}]"
                raise InvalidArgument(field, f"job {job_id} does not exist")

    # Ids first, so that edges between jobs of this batch can be written before anything commits.
    count = len(jobs)
    ids = sorted(run(conn, "reserve_job_ids", {"count": count}).column("job_id"))
    outcomes: list[SubmitResult | IdempotencyConflict | None] = [None] * count
    todo = list(range(count))
    for _ in range(UNIQUE_KEY_ATTEMPTS):
        batch = [jobs[i] for i in todo]
        params = _submit_params(batch, job_id=[ids[i] for i in todo], waits=[job.has_dependencies for job, _ in batch])
        inserted = {job.job_id: job for job in run(conn, "submit_jobs_with_ids", params).jobs()}
        created = {n: inserted[ids[i]] for n, i in enumerate(todo) if ids[i] in inserted}
        for position, outcome in zip(todo, _resolve_skipped(conn, batch, created), strict=True):
            outcomes[position] = outcome
        todo = [i for i in todo if outcomes[i] is None]
        if not todo:
            break
    else:
        raise _unique_key_contention(jobs[todo[0]].job)
    results = [outcome for outcome in outcomes if outcome is not None]
    if any(isinstance(outcome, IdempotencyConflict) for outcome in results):
        return results

    # Jobs of the batch that resolved to existing jobs (a replayed idempotency key, a held
    # unique_key) are dependencies like any other: lock them and read their state too.
    resolved = [outcome.job for outcome in results if isinstance(outcome, SubmitResult)]
    created_ids = {outcome.job.job_id for outcome in results if isinstance(outcome, SubmitResult) and outcome.created}
    merged = sorted(
        {
            resolved[k].job_id
            for position, (job, _) in enumerate(jobs)
            if resolved[position].job_id in created_ids
            for k in job.depends_on_index
            if resolved[k].job_id not in created_ids and resolved[k].job_id not in states
        }
    )
    states.update(_lock_dependencies(conn, merged))

    settlement = settle(jobs, resolved, created_ids, states)
    settled = settlement.jobs
    columns: dict[str, list[Any]] = {
        "job_ids": [s.job_id for s in settled],
        "statuses": [s.status.value if s.status is not None else None for s in settled],
        "pending_dependencies": [s.pending_dependencies for s in settled],
        # Text per job ('{1,2}'): unnest would flatten an array of arrays.
        "depends_on": ["{" + ",".join(map(str, s.depends_on)) + "}" for s in settled],
        "has_dependents": [s.has_dependents for s in settled],
        "error_messages": [s.error_message for s in settled],
    }
    final = {job.job_id: job for job in run(conn, "settle_submitted_jobs", columns).jobs()}
    if settlement.edges:
        run(
            conn,
            "insert_job_dependencies",
            {"depends_on": [edge[0] for edge in settlement.edges], "job_ids": [edge[1] for edge in settlement.edges]},
        )
    if any(job.status is JobStatus.READY for job in final.values()):
        run(conn, "notify_jobs_ready")
    if any(job.status is JobStatus.PENDING for job in final.values()):
        run(conn, "notify_jobs_scheduled")
    return [
        SubmitResult(final.get(result.job.job_id, result.job), result.created)
        for result in results
        if isinstance(result, SubmitResult)
    ]


def _lock_dependencies(conn: Connection, job_ids: list[int]) -> dict[int, DependencyState]:
    if not job_ids:
        return {}
    rows = run(conn, "lock_job_dependencies", {"job_ids": job_ids}).records(_Locked)
    return {row.job_id: DependencyState(JobStatus(row.status), row.error_message) for row in rows}
