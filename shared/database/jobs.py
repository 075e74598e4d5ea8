"""What the API does to jobs: submit, get, list, count, cancel, retry. Every call is one short transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg2.errorcodes
import psycopg2.errors
from sqlalchemy import Connection, CursorResult, Engine, exc

from shared.database.engine import translate_errors
from shared.database.queries import query
from shared.errors import DatabaseUnavailable, FailedPrecondition, IdempotencyConflict, InvalidArgument, JobNotFound
from shared.jobs import Job, JobStatus, NewJob, SubmitResult

__all__ = ["JobCounts", "JobStore", "RecentFailure"]

RECENT_FAILURES_LIMIT = 10
# Inserts of a job whose unique_key holder finished between the insert and the read of the holder.
UNIQUE_KEY_ATTEMPTS = 3
# Transactions of a submit with dependencies aborted by a deadlock (it locks the dependencies while
# executors complete them) or a serialization failure, tried again before the error reaches the client.
DEPENDENCY_SUBMIT_ATTEMPTS = 3


@dataclass(frozen=True)
class RecentFailure:
    job_id: int
    type: str
    error: str
    attempts: int
    failed_at: datetime | None


@dataclass(frozen=True)
class JobCounts:
    """Jobs per status and per type, and what GetStats derives from them."""

    by_status: dict[JobStatus, int]
    by_type: dict[str, int]
    avg_attempts_for_failed_jobs: float
    recent_failures: list[RecentFailure]


def _submit_params(jobs: Sequence[tuple[NewJob, str]], **extra: Sequence[Any]) -> dict[str, str]:
    """The one parameter of submit_jobs and its variants: the jobs as a JSON array of objects with
    NewJob's fields by name (orjson encodes dataclasses natively), plus ``extra`` fields per job."""
    if not extra:
        return {"jobs": orjson.dumps([job for job, _ in jobs]).decode()}
    names = list(extra)
    rows = [{**job.__dict__, **{name: extra[name][n] for name in names}} for n, (job, _) in enumerate(jobs)]
    return {"jobs": orjson.dumps(rows).decode()}


def _created_positions(jobs: Sequence[tuple[NewJob, str]], inserted: Sequence[Any]) -> dict[int, Job]:
    """Which request positions submit_jobs inserted, as Jobs, from its rows (job_id, status,
    idempotency_key, unique_key, created_at, run_at).

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


@dataclass(frozen=True)
class _DependencyState:
    status: JobStatus
    error_message: str | None


@dataclass(frozen=True)
class _Settlement:
    params: dict[str, Any]
    edges: list[tuple[int, int]]  # (depends_on, job_id)


def _settle(
    jobs: Sequence[tuple[NewJob, str]],
    resolved: list[Job],
    created_ids: set[int],
    states: dict[int, _DependencyState],
) -> _Settlement:
    """The state of each job a dependency submit created, in request order (dependencies come first).

    A job waits for its distinct dependencies that have not COMPLETED. One that FAILED or was
    cancelled cancels the job at once, with the reason naming it; a job of this batch cancelled that
    way passes its own reason on, so a broken chain names the job that broke it.
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
            states[job_id] = _DependencyState(runnable or resolved[position].status, None)
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
                broken = next(((d, state) for d, state in found if state.status in _BREAKING), None)
                if broken is not None:
                    status = JobStatus.CANCELLED
                    reason = broken[1].error_message if broken[0] in created_ids else None
                    reason = reason or f"dependency {broken[0]} {broken[1].status.value}"
                else:
                    pending = [
                        d for d in dependencies if d not in states or states[d].status is not JobStatus.COMPLETED
                    ]
                    status = JobStatus.WAITING if pending else JobStatus.READY
                states[job_id] = _DependencyState(status, reason)
            edges.extend((d, job_id) for d in pending)
            waited_on.update(d for d in pending if d in created_ids)
            rows.append((job_id, status, len(pending), dependencies, reason))
    params: dict[str, list[Any]] = {
        "job_ids": [row[0] for row in rows],
        "statuses": [row[1].value if row[1] is not None else None for row in rows],
        "pending_dependencies": [row[2] for row in rows],
        "depends_on": ["{" + ",".join(map(str, row[3])) + "}" for row in rows],
        "has_dependents": [row[0] in waited_on for row in rows],
        "error_messages": [row[4] for row in rows],
    }
    return _Settlement(params, edges)


_BREAKING = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


def _rolled_back_for_contention(error: DatabaseUnavailable) -> bool:
    """A deadlock or serialization failure: the transaction may simply be run again."""
    return isinstance(getattr(error.__cause__, "orig", None), psycopg2.errors.TransactionRollbackError)


def _unique_key_contention(job: NewJob) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"unique_key {job.unique_key!r}: the jobs holding it kept finishing while this submit ran; retry"
    )


def _jobs(result: CursorResult[Any]) -> list[Job]:
    """Every row of ``result`` as a Job (plain tuples: far cheaper than SQLAlchemy's row mappings)."""
    return Job.from_rows(list(result.keys()), result.all())


class JobStore:
    """The API's access to the jobs table."""

    def __init__(self, engine: Engine, autocommit_engine: Engine | None = None) -> None:
        """``autocommit_engine`` (optional) serves single-statement writes without BEGIN and COMMIT."""
        self.engine = engine
        self.autocommit_engine = autocommit_engine

    def submit_jobs(self, jobs: Sequence[tuple[NewJob, str]]) -> list[SubmitResult]:
        """Insert validated jobs (each with its payload encoded as JSON) in one transaction, all or nothing.

        A job whose idempotency key already names a job with the same type and payload gives
        that job back (created=False); with another type or payload, IdempotencyConflict, and
        nothing of the batch is stored. A job whose unique_key an unfinished job holds gives that
        job back (created=False). Keys repeated inside the batch behave as if submitted one after
        the other. A batch with dependencies takes the transactional path of submit_with_dependencies;
        a missing dependency is InvalidArgument naming ``jobs[i].depends_on[j]``.
        """
        if any(job.has_dependencies for job, _ in jobs):
            return self._submit_with_dependencies(jobs, field_prefix="jobs[{}].")
        outcomes = self._insert(jobs, all_or_nothing=True)
        return [outcome for outcome in outcomes if isinstance(outcome, SubmitResult)]

    def submit_job_with_dependencies(self, job: tuple[NewJob, str]) -> SubmitResult:
        """A unary submit with depends_on: its own transaction (no group commit); a missing dependency
        is InvalidArgument naming ``depends_on[j]``."""
        return self._submit_with_dependencies([job], field_prefix="")[0]

    def submit_jobs_independently(self, jobs: Sequence[tuple[NewJob, str]]) -> list[SubmitResult | IdempotencyConflict]:
        """Group commit: unrelated submits share one transaction, and a conflict fails only its own job."""
        return self._insert(jobs, all_or_nothing=False)

    def _insert(
        self, jobs: Sequence[tuple[NewJob, str]], all_or_nothing: bool
    ) -> list[SubmitResult | IdempotencyConflict]:
        if all_or_nothing:
            with translate_errors(), self.engine.begin() as conn:
                outcomes = self._insert_and_match(conn, jobs)
                for outcome in outcomes:
                    if isinstance(outcome, IdempotencyConflict):
                        raise outcome  # rolls the whole batch back
            return outcomes
        # Independent submits: the insert commits by itself (one round trip), and a conflict is just
        # that job's outcome.
        if self.autocommit_engine is not None:
            with translate_errors(), self.autocommit_engine.connect() as conn:
                return self._insert_and_match(conn, jobs)
        with translate_errors(), self.engine.connect() as conn:
            return self._insert_and_match(conn.execution_options(isolation_level="AUTOCOMMIT"), jobs)

    def submit_jobs_in(
        self, conn: Connection, jobs: Sequence[tuple[NewJob, str]]
    ) -> list[SubmitResult | IdempotencyConflict]:
        """Insert validated jobs on ``conn``, inside the caller's transaction (the scheduler submits a
        schedule's occurrence and advances the schedule in one); a key conflict is that job's outcome."""
        return self._insert_and_match(conn, jobs)

    def _insert_and_match(
        self, conn: Connection, jobs: Sequence[tuple[NewJob, str]]
    ) -> list[SubmitResult | IdempotencyConflict]:
        outcomes: list[SubmitResult | IdempotencyConflict | None] = [None] * len(jobs)
        todo = list(range(len(jobs)))
        for _ in range(UNIQUE_KEY_ATTEMPTS):
            batch = [jobs[i] for i in todo]
            # The plain statement's ON CONFLICT names the idempotency key's index alone, which is cheaper.
            statement = (
                "submit_jobs_with_unique_keys" if any(job.unique_key is not None for job, _ in batch) else "submit_jobs"
            )
            inserted = conn.execute(query(statement), _submit_params(batch)).all()
            matched = self._resolve_skipped(conn, batch, _created_positions(batch, inserted))
            for position, outcome in zip(todo, matched, strict=True):
                outcomes[position] = outcome
            todo = [i for i in todo if outcomes[i] is None]
            if not todo:
                return [outcome for outcome in outcomes if outcome is not None]
        raise _unique_key_contention(jobs[todo[0]][0])

    def _resolve_skipped(
        self, conn: Connection, jobs: Sequence[tuple[NewJob, str]], created: dict[int, Job]
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
            rows = conn.execute(query("select_jobs_by_idempotency_keys"), {"keys": idempotency_keys})
            owners = {job.idempotency_key: job for job in _jobs(rows) if job.idempotency_key is not None}
        unique_keys = [job.unique_key for job in skipped if job.unique_key is not None]
        if unique_keys:
            rows = conn.execute(query("select_active_jobs_by_unique_keys"), {"keys": unique_keys})
            holders = {job.unique_key: job for job in _jobs(rows) if job.unique_key is not None}
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

    def _submit_with_dependencies(self, jobs: Sequence[tuple[NewJob, str]], field_prefix: str) -> list[SubmitResult]:
        for attempt in range(1, DEPENDENCY_SUBMIT_ATTEMPTS + 1):
            try:
                with translate_errors(), self.engine.begin() as conn:
                    outcomes = self._insert_with_dependencies(conn, jobs, field_prefix)
                    for outcome in outcomes:
                        if isinstance(outcome, IdempotencyConflict):
                            raise outcome
                    return [outcome for outcome in outcomes if isinstance(outcome, SubmitResult)]
            except DatabaseUnavailable as error:
                if attempt == DEPENDENCY_SUBMIT_ATTEMPTS or not _rolled_back_for_contention(error):
                    raise
        raise AssertionError("unreachable")

    def _insert_with_dependencies(
        self, conn: Connection, jobs: Sequence[tuple[NewJob, str]], field_prefix: str
    ) -> list[SubmitResult | IdempotencyConflict]:
        """One transaction: lock the dependencies, insert the jobs, settle their states, add the edges."""
        external = sorted({job_id for job, _ in jobs for job_id in job.depends_on})
        states = self._lock_dependencies(conn, external)
        for position, (job, _) in enumerate(jobs):
            for index, job_id in enumerate(job.depends_on):
                if job_id not in states:
                    field = field_prefix.format(position) + f"depends_on[{index}]"
                    raise InvalidArgument(field, f"job {job_id} does not exist")

        # Ids first, so that edges between jobs of this batch can be written before anything commits.
        count = len(jobs)
        ids = sorted(row.job_id for row in conn.execute(query("reserve_job_ids"), {"count": count}))
        outcomes: list[SubmitResult | IdempotencyConflict | None] = [None] * count
        todo = list(range(count))
        for _ in range(UNIQUE_KEY_ATTEMPTS):
            batch = [jobs[i] for i in todo]
            params = _submit_params(
                batch, job_id=[ids[i] for i in todo], waits=[job.has_dependencies for job, _ in batch]
            )
            inserted = {job.job_id: job for job in _jobs(conn.execute(query("submit_jobs_with_ids"), params))}
            created = {n: inserted[ids[i]] for n, i in enumerate(todo) if ids[i] in inserted}
            for position, outcome in zip(todo, self._resolve_skipped(conn, batch, created), strict=True):
                outcomes[position] = outcome
            todo = [i for i in todo if outcomes[i] is None]
            if not todo:
                break
        else:
            raise _unique_key_contention(jobs[todo[0]][0])
        results = [outcome for outcome in outcomes if outcome is not None]
        if any(isinstance(outcome, IdempotencyConflict) for outcome in results):
            return results

        # Jobs of the batch that resolved to existing jobs (a replayed idempotency key, a held
        # unique_key) are dependencies like any other: lock them and read their state too.
        resolved = [outcome.job for outcome in results if isinstance(outcome, SubmitResult)]
        created_ids = {
            outcome.job.job_id for outcome in results if isinstance(outcome, SubmitResult) and outcome.created
        }
        merged = sorted(
            {
                resolved[k].job_id
                for position, (job, _) in enumerate(jobs)
                if resolved[position].job_id in created_ids
                for k in job.depends_on_index
                if resolved[k].job_id not in created_ids and resolved[k].job_id not in states
            }
        )
        states.update(self._lock_dependencies(conn, merged))

        settled = _settle(jobs, resolved, created_ids, states)
        rows = conn.execute(query("settle_submitted_jobs"), settled.params)
        final = {job.job_id: job for job in _jobs(rows)}
        if settled.edges:
            conn.execute(
                query("insert_job_dependencies"),
                {"depends_on": [edge[0] for edge in settled.edges], "job_ids": [edge[1] for edge in settled.edges]},
            )
        if any(job.status is JobStatus.READY for job in final.values()):
            conn.execute(query("notify_jobs_ready"))
        if any(job.status is JobStatus.PENDING for job in final.values()):
            conn.execute(query("notify_jobs_scheduled"))
        return [
            SubmitResult(final.get(result.job.job_id, result.job), result.created)
            for result in results
            if isinstance(result, SubmitResult)
        ]

    def _lock_dependencies(self, conn: Connection, job_ids: list[int]) -> dict[int, _DependencyState]:
        if not job_ids:
            return {}
        rows = conn.execute(query("lock_job_dependencies"), {"job_ids": job_ids})
        return {row.job_id: _DependencyState(JobStatus(row.status), row.error_message) for row in rows}

    def get_job(self, job_id: int) -> Job:
        with translate_errors(), self.engine.connect() as conn:
            row = conn.execute(query("get_job"), {"job_id": job_id}).first()
        if row is None:
            raise JobNotFound(job_id)
        return Job.from_row(row._mapping)

    def get_jobs(self, job_ids: Sequence[int]) -> dict[int, Job]:
        """The jobs among ``job_ids`` that exist, by id."""
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(query("get_jobs"), {"job_ids": list(job_ids)})
            return {job.job_id: job for job in _jobs(rows)}

    def list_jobs(
        self,
        status: JobStatus | None,
        job_type: str | None,
        before_job_id: int | None,
        limit: int,
    ) -> list[Job]:
        """Up to ``limit`` jobs newest first, with ids below ``before_job_id`` when given."""
        params: dict[str, Any] = {
            "status": status.value if status else None,
            "type": job_type,
            "before_job_id": before_job_id,
            "limit": limit,
        }
        with translate_errors(), self.engine.connect() as conn:
            return _jobs(conn.execute(query("list_jobs"), params))

    def count_jobs(self) -> JobCounts:
        """Counts by status and type without scanning the jobs table."""
        by_status = dict.fromkeys(JobStatus, 0)
        by_type: dict[str, int] = {}
        failed_jobs = failed_attempts = 0
        with translate_errors(), self.engine.connect() as conn:
            for row in conn.execute(query("count_jobs")):
                status = JobStatus(row.status)
                by_status[status] += row.jobs
                by_type[row.type] = by_type.get(row.type, 0) + row.jobs
                if status is JobStatus.FAILED:
                    failed_jobs += row.jobs
                    failed_attempts += row.attempts
            failures = [
                RecentFailure(row.job_id, row.type, row.error_message or "", row.attempts, row.finished_at)
                for row in conn.execute(query("list_recent_failures"), {"limit": RECENT_FAILURES_LIMIT})
            ]
        return JobCounts(
            by_status=by_status,
            by_type={t: n for t, n in sorted(by_type.items()) if n},
            avg_attempts_for_failed_jobs=failed_attempts / failed_jobs if failed_jobs else 0.0,
            recent_failures=failures,
        )

    def cancel_job(self, job_id: int) -> Job:
        """Cancel a waiting job at once, or ask the executor running it to stop."""
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(query("cancel_job"), {"job_id": job_id}).first()
            if row is not None:
                return Job.from_row(row._mapping)
            current = conn.execute(query("get_job"), {"job_id": job_id}).first()
        if current is None:
            raise JobNotFound(job_id)
        raise FailedPrecondition(f"job {job_id} is {current.status} and can no longer be cancelled")

    def retry_job(self, job_id: int) -> Job:
        """Re-queue a FAILED or CANCELLED job as a fresh READY job.

        Only this job: jobs cancelled because it failed stay CANCELLED, and a job that was cancelled
        while WAITING does not wait for its dependencies again.
        """
        with translate_errors(), self.engine.begin() as conn:
            try:
                row = conn.execute(query("retry_job"), {"job_id": job_id}).first()
            except exc.IntegrityError as error:
                if getattr(error.orig, "pgcode", None) != psycopg2.errorcodes.UNIQUE_VIOLATION:
                    raise
                # jobs_unique_key_active_uq: another unfinished job took this job's unique_key.
                raise FailedPrecondition(
                    f"job {job_id} cannot be retried: another unfinished job holds its unique_key"
                ) from None
            if row is not None:
                conn.execute(query("notify_jobs_ready"))
                return Job.from_row(row._mapping)
            current = conn.execute(query("get_job"), {"job_id": job_id}).first()
        if current is None:
            raise JobNotFound(job_id)
        raise FailedPrecondition(f"job {job_id} is {current.status}; only FAILED or CANCELLED jobs can be retried")
