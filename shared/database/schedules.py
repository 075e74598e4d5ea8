"""Periodic schedules in the database: what the API does to them (create, get, list, delete) and what
the scheduler does with them (submit each due occurrence once). Every call is one short transaction.

Exactly once per occurrence, with any number of schedulers: the transaction that submits an occurrence
locks the schedule's row (``FOR UPDATE SKIP LOCKED``), inserts the job and moves ``next_run_at`` past
the occurrence before it commits, so no one else can see the occurrence as due once it is submitted,
and a crash before the commit leaves neither the job nor the advance. The job's idempotency key names
the schedule and the occurrence, so even two transactions that somehow both saw it due make one job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, Engine

from shared.database.engine import translate_errors
from shared.database.jobs import JobStore
from shared.database.queries import query
from shared.errors import DatabaseUnavailable, IdempotencyConflict, ScheduleAlreadyExists, ScheduleNotFound
from shared.schedules import CronExpression, JobTemplate, Schedule, occurrence_idempotency_key

__all__ = ["NEVER", "ScheduleStore", "SubmittedOccurrence"]

# next_run_at of a schedule that has no occurrence left (the cron library looks 50 years ahead).
NEVER = datetime(9999, 12, 31, tzinfo=timezone.utc)
# A schedule whose occurrence cannot be submitted is tried again this much later (and logged each time).
SCHEDULE_ERROR_RETRY = timedelta(minutes=1)
# ListSchedules has no paging: schedules are written by people, so there are few. This bounds a reply.
MAX_LISTED_SCHEDULES = 10_000


@dataclass(frozen=True)
class SubmittedOccurrence:
    """One occurrence a scheduler submitted: its job, how late, and what it skipped."""

    schedule_name: str
    occurrence: datetime
    job_id: int
    created: bool
    lateness_seconds: float
    # The first missed occurrence that was skipped (not back-filled), when there were any.
    skipped_from: datetime | None
    next_run_at: datetime
    # Set when the occurrence could not be submitted: the schedule was set aside until next_run_at.
    error: str | None = None


def _schedule(row: Any) -> Schedule:
    template = row.job_template if isinstance(row.job_template, dict) else json.loads(row.job_template)
    return Schedule(
        schedule_id=row.schedule_id,
        name=row.name,
        cron=row.cron,
        time_zone=row.time_zone,
        template=JobTemplate.from_stored(template),
        next_run_at=row.next_run_at,
        created_at=row.created_at,
        last_run_at=row.last_run_at,
        last_job_id=row.last_job_id,
    )


class ScheduleStore:
    """Access to the job_schedules table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.jobs = JobStore(engine)

    def create_schedule(
        self, name: str, expression: CronExpression, template: JobTemplate, next_run_at: datetime
    ) -> Schedule:
        """Store a validated schedule; ScheduleAlreadyExists when the name is taken."""
        params = {
            "name": name,
            "cron": expression.expression,
            "time_zone": expression.time_zone,
            "job_template": template.to_json(),
            "next_run_at": next_run_at,
        }
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(query("create_schedule"), params).first()
        if row is None:
            raise ScheduleAlreadyExists(name)
        return _schedule(row)

    def get_schedule(self, name: str) -> Schedule:
        with translate_errors(), self.engine.connect() as conn:
            row = conn.execute(query("get_schedule"), {"name": name}).first()
        if row is None:
            raise ScheduleNotFound(name)
        return _schedule(row)

    def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        with translate_errors(), self.engine.connect() as conn:
            return [_schedule(row) for row in conn.execute(query("list_schedules"), {"limit": MAX_LISTED_SCHEDULES})]

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule; ScheduleNotFound when there is none. Its jobs stay."""
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(query("delete_schedule"), {"name": name}).first()
        if row is None:
            raise ScheduleNotFound(name)

    def submit_due_occurrence(self) -> SubmittedOccurrence | None:
        """Submit the job of the earliest due schedule's occurrence and advance the schedule, in one
        transaction; None when no schedule is due (or every due one is being handled by someone else).

        Missed runs: when several occurrences are due (no scheduler ran for a while), only the most
        recent one is submitted; the older ones are skipped, and the schedule continues with the first
        occurrence after now.
        """
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(query("lock_due_schedule")).first()
            if row is None:
                return None
            now: datetime = row.database_now
            try:
                # A savepoint: a schedule that cannot be submitted (a stored cron or template that no
                # longer reads, a job the api would now refuse) is set aside below, not retried first
                # on every pass ahead of every other schedule.
                with conn.begin_nested():
                    return self._submit_occurrence(conn, _schedule(row), now)
            except DatabaseUnavailable:
                raise
            except Exception as error:
                retry_at = now + SCHEDULE_ERROR_RETRY
                conn.execute(
                    query("advance_schedule"),
                    {
                        "schedule_id": row.schedule_id,
                        "next_run_at": retry_at,
                        "last_run_at": row.last_run_at,
                        "last_job_id": row.last_job_id,
                    },
                )
                return SubmittedOccurrence(
                    schedule_name=row.name,
                    occurrence=row.next_run_at,
                    job_id=0,
                    created=False,
                    lateness_seconds=0.0,
                    skipped_from=None,
                    next_run_at=retry_at,
                    error=f"{type(error).__name__}: {error}",
                )

    def _submit_occurrence(self, conn: Connection, schedule: Schedule, now: datetime) -> SubmittedOccurrence:
        expression = CronExpression(schedule.cron, schedule.time_zone)
        latest = expression.latest_at_or_before(now)
        occurrence = max(schedule.next_run_at, latest) if latest is not None else schedule.next_run_at
        skipped_from = schedule.next_run_at if occurrence > schedule.next_run_at else None
        key = occurrence_idempotency_key(schedule.schedule_id, occurrence)
        job = schedule.template.new_job(schedule.name, key, occurrence)
        (outcome,) = self.jobs.submit_jobs_in(conn, [job])
        # A conflict means a job with this occurrence's key exists already (it is the occurrence's).
        job_id = outcome.job_id if isinstance(outcome, IdempotencyConflict) else outcome.job.job_id
        created = not isinstance(outcome, IdempotencyConflict) and outcome.created
        next_run_at = expression.next_after(max(now, occurrence)) or NEVER
        conn.execute(
            query("advance_schedule"),
            {
                "schedule_id": schedule.schedule_id,
                "next_run_at": next_run_at,
                "last_run_at": occurrence,
                "last_job_id": job_id or None,
            },
        )
        return SubmittedOccurrence(
            schedule_name=schedule.name,
            occurrence=occurrence,
            job_id=job_id,
            created=created,
            lateness_seconds=max(0.0, (now - occurrence).total_seconds()),
            skipped_from=skipped_from,
            next_run_at=next_run_at,
        )

    def seconds_until_next_due(self) -> float | None:
        """Seconds until the earliest schedule is due (0 or less: due now); None when there is none."""
        with translate_errors(), self.engine.connect() as conn:
            seconds = conn.execute(query("select_next_schedule_delay")).scalar_one()
        return None if seconds is None else float(seconds)
