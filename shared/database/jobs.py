"""What the API does to jobs: submit, get, list, count, cancel, retry. Every call is one short transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine

from shared.database.engine import translate_errors
from shared.database.queries import query
from shared.errors import FailedPrecondition, IdempotencyConflict, JobNotFound
from shared.jobs import Job, JobStatus, NewJob, SubmitResult

__all__ = ["JobCounts", "JobStore", "RecentFailure"]

RECENT_FAILURES_LIMIT = 10


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


def _jobs(result: CursorResult[Any]) -> list[Job]:
    """Every row of ``result`` as a Job (plain tuples: far cheaper than SQLAlchemy's row mappings)."""
    return Job.from_rows(list(result.keys()), result.all())


def _submit_params(jobs: Sequence[tuple[NewJob, str]]) -> dict[str, Any]:
    """submit_jobs's parameters: one array per column, in request order."""
    return {
        "types": [job.type for job, _ in jobs],
        "priorities": [job.priority for job, _ in jobs],
        "payloads": [encoded for _, encoded in jobs],
        "idempotency_keys": [job.idempotency_key for job, _ in jobs],
        "scheduled_ats": [job.scheduled_at for job, _ in jobs],
        "max_attempts": [job.max_attempts for job, _ in jobs],
        "timeouts": [job.timeout_seconds for job, _ in jobs],
        "traceparents": [job.traceparent for job, _ in jobs],
        "callback_urls": [job.callback_url for job, _ in jobs],
        "concurrency_keys": [job.concurrency_key for job, _ in jobs],
        "unique_keys": [job.unique_key for job, _ in jobs],
        "schedule_names": [job.schedule_name for job, _ in jobs],
    }


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
        nothing of the batch is stored. Keys repeated inside the batch behave as if submitted one
        after the other.
        """
        outcomes = self._insert(jobs, all_or_nothing=True)
        return [outcome for outcome in outcomes if isinstance(outcome, SubmitResult)]

    def submit_jobs_independently(self, jobs: Sequence[tuple[NewJob, str]]) -> list[SubmitResult | IdempotencyConflict]:
        """Group commit: unrelated submits share one transaction, and a conflict fails only its own job."""
        return self._insert(jobs, all_or_nothing=False)

    def _insert(
        self, jobs: Sequence[tuple[NewJob, str]], all_or_nothing: bool
    ) -> list[SubmitResult | IdempotencyConflict]:
        params = _submit_params(jobs)
        if all_or_nothing:
            with translate_errors(), self.engine.begin() as conn:
                outcomes = self._insert_and_match(conn, jobs, params)
                for outcome in outcomes:
                    if isinstance(outcome, IdempotencyConflict):
                        raise outcome  # rolls the whole batch back
            return outcomes
        # Independent submits: the insert commits by itself (one round trip), and a conflict is just
        # that job's outcome.
        if self.autocommit_engine is not None:
            with translate_errors(), self.autocommit_engine.connect() as conn:
                return self._insert_and_match(conn, jobs, params)
        with translate_errors(), self.engine.connect() as conn:
            return self._insert_and_match(conn.execution_options(isolation_level="AUTOCOMMIT"), jobs, params)

    def submit_jobs_in(
        self, conn: Connection, jobs: Sequence[tuple[NewJob, str]]
    ) -> list[SubmitResult | IdempotencyConflict]:
        """Insert validated jobs on ``conn``, inside the caller's transaction (the scheduler submits a
        schedule's occurrence and advances the schedule in one); a key conflict is that job's outcome."""
        return self._insert_and_match(conn, jobs, _submit_params(jobs))

    def _insert_and_match(
        self, conn: Connection, jobs: Sequence[tuple[NewJob, str]], params: dict[str, Any]
    ) -> list[SubmitResult | IdempotencyConflict]:
        inserted = _jobs(conn.execute(query("submit_jobs"), params))
        return self._match_submissions(conn, jobs, inserted)

    def _match_submissions(
        self, conn: Connection, jobs: Sequence[tuple[NewJob, str]], inserted: list[Job]
    ) -> list[SubmitResult | IdempotencyConflict]:
        # Rows come back in insert order, which is request order minus the skipped keys.
        inserted.sort(key=lambda job: job.job_id)
        fresh = iter(inserted)
        created_keys = {job.idempotency_key for job in inserted if job.idempotency_key is not None}
        missing_keys = [
            job.idempotency_key
            for job, _ in jobs
            if job.idempotency_key is not None and job.idempotency_key not in created_keys
        ]
        owners: dict[str, Job] = {}
        if missing_keys:
            rows = conn.execute(query("select_jobs_by_idempotency_keys"), {"keys": missing_keys})
            owners = {job.idempotency_key: job for job in _jobs(rows) if job.idempotency_key is not None}
        outcomes: list[SubmitResult | IdempotencyConflict] = []
        for new_job, encoded in jobs:
            key = new_job.idempotency_key
            owner = owners.get(key) if key is not None else None
            if owner is not None:
                if owner.type != new_job.type or owner.payload != json.loads(encoded):
                    outcomes.append(IdempotencyConflict(key or "", owner.job_id))
                else:
                    outcomes.append(SubmitResult(owner, created=False))
                continue
            if key is not None and key not in created_keys:
                # The job that owned the key was deleted between our insert and our read.
                outcomes.append(IdempotencyConflict(key, 0))
                continue
            job = next(fresh)
            outcomes.append(SubmitResult(job, created=True))
            if key is not None:
                # Later jobs of this batch with the same key are replays of this one.
                owners[key] = job
                created_keys.discard(key)
        return outcomes

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
        """Re-queue a FAILED or CANCELLED job as a fresh READY job."""
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(query("retry_job"), {"job_id": job_id}).first()
            if row is not None:
                conn.execute(query("notify_jobs_ready"))
                return Job.from_row(row._mapping)
            current = conn.execute(query("get_job"), {"job_id": job_id}).first()
        if current is None:
            raise JobNotFound(job_id)
        raise FailedPrecondition(f"job {job_id} is {current.status}; only FAILED or CANCELLED jobs can be retried")
