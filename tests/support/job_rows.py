"""Rows of the jobs table, written and read straight in the database: jobs submitted through the API's
store (optionally scheduled ahead), raw SQL, and the states the scheduler's maintenance acts on (expired
leases, jobs finished days ago)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine, text

from shared.jobs import JobStatus, NewJob
from tests.support.gateway import gateway


def submit(engine: Engine, count: int = 1, scheduled_in: timedelta | None = None, **fields: Any) -> list[int]:
    """Submit ``count`` jobs through the API's store; scheduled that far ahead when given."""
    when = datetime.now(timezone.utc) + scheduled_in if scheduled_in is not None else None
    jobs = [NewJob(type=fields.pop("type", "echo"), scheduled_at=when, timeout_seconds=300, **fields)] * count
    return [result.job.job_id for result in gateway(engine).submit_jobs([job.validate(1 << 20) for job in jobs])]


def execute(engine: Engine, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


def jobs(engine: Engine) -> dict[int, Any]:
    with engine.connect() as conn:
        return {row.job_id: row for row in conn.execute(text("SELECT * FROM jobs"))}


def make_processing(
    engine: Engine,
    job_id: int,
    attempts: int,
    expired: bool = True,
    cancel_requested: bool = False,
    owner: str = "executor-a",
) -> None:
    """Put a job in PROCESSING as an executor's lease would, with a lease that expired a second ago."""
    execute(
        engine,
        """
        UPDATE jobs SET status = 'PROCESSING', attempts = :attempts, lease_owner = :owner,
               lease_token = gen_random_uuid(), started_at = now() - interval '1 minute',
               lease_expires_at = now() + CASE WHEN :expired THEN interval '-1 second' ELSE interval '1 minute' END,
               cancel_requested = :cancel_requested
        WHERE job_id = :job_id
        """,
        job_id=job_id,
        attempts=attempts,
        owner=owner,
        expired=expired,
        cancel_requested=cancel_requested,
    )


def make_finished(engine: Engine, job_id: int, status: JobStatus, days_ago: float) -> None:
    execute(
        engine,
        """
        UPDATE jobs SET status = CAST(:status AS job_status),
               finished_at = now() - make_interval(secs => :days * 86400)
        WHERE job_id = :job_id
        """,
        status=status.value,
        days=days_ago,
        job_id=job_id,
    )
