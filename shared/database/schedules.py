"""Periodic schedules in the database: what the api does to them (create, get, list, update, delete,
pause, resume, trigger) and what the scheduler does with them (submit each due occurrence once). Every
call is one short transaction.

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
from typing import Any, NamedTuple

from sqlalchemy import Connection

from shared.database.engine import unavailable
from shared.database.gateway import Gateway, operation
from shared.database.jobs import insert_jobs
from shared.database.queries import run
from shared.errors import IdempotencyConflict, ScheduleAlreadyExists, ScheduleNotFound
from shared.jobs import SubmitResult
from shared.schedules import CronExpression, JobTemplate, Schedule, occurrence_idempotency_key

__all__ = ["NEVER", "ScheduleQueries", "SubmittedOccurrence"]

# next_run_at of a schedule that has no occurrence left (the cron library looks 50 years ahead).
NEVER = datetime(9999, 12, 31, tzinfo=timezone.utc)
# A schedule whose occurrence cannot be submitted is tried again this much later (and logged each time).
SCHEDULE_ERROR_RETRY = timedelta(minutes=1)


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


class _ScheduleRow(NamedTuple):
    schedule_id: int
    name: str
    cron: str
    time_zone: str
    job_template: Any
    next_run_at: datetime
    last_run_at: datetime | None
    last_job_id: int | None
    created_at: datetime
    paused_at: datetime | None

    def domain(self) -> Schedule:
        template = self.job_template if isinstance(self.job_template, dict) else json.loads(self.job_template)
        return Schedule(
            schedule_id=self.schedule_id,
            name=self.name,
            cron=self.cron,
            time_zone=self.time_zone,
            template=JobTemplate.from_stored(template),
            next_run_at=self.next_run_at,
            created_at=self.created_at,
            last_run_at=self.last_run_at,
            last_job_id=self.last_job_id,
            paused_at=self.paused_at,
        )


class ScheduleQueries(Gateway):
    """Access to the job_schedules table."""

    @operation()
    def create_schedule(
        self, name: str, expression: CronExpression, template: JobTemplate, next_run_at: datetime
    ) -> Schedule:
        """Store a validated schedule; ScheduleAlreadyExists when the name is taken."""
        params = _schedule_params(name, expression, template, next_run_at)
        with self.engine.begin() as conn:
            row = run(conn, "create_schedule", params).first(_ScheduleRow)
        if row is None:
            raise ScheduleAlreadyExists(name)
        return row.domain()

    @operation()
    def get_schedule(self, name: str) -> Schedule:
        with self.engine.connect() as conn:
            row = run(conn, "get_schedule", {"name": name}).first(_ScheduleRow)
        if row is None:
            raise ScheduleNotFound(name)
        return row.domain()

    @operation()
    def list_schedules(self, after: str, limit: int) -> list[Schedule]:
        """Up to ``limit`` schedules by name, after ``after``."""
        with self.engine.connect() as conn:
            rows = run(conn, "list_schedules", {"after": after, "limit": limit}).records(_ScheduleRow)
        return [row.domain() for row in rows]

    @operation()
    def pause_schedule(self, name: str) -> Schedule:
        """The schedule submits nothing until resumed; ScheduleNotFound when there is none."""
        return self._changed(name, "pause_schedule", {"name": name})

    @operation()
    def resume_schedule(self, name: str) -> Schedule:
        """The schedule is due again from its next_run_at (missed runs: the latest fires once)."""
        return self._changed(name, "resume_schedule", {"name": name})

    @operation()
    def update_schedule(
        self, name: str, expression: CronExpression, template: JobTemplate, next_run_at: datetime | None
    ) -> Schedule:
        """Replace the cron, time zone and template (validated by the caller); ``next_run_at`` moves the
        next occurrence (None: it stays)."""
        return self._changed(name, "update_schedule", _schedule_params(name, expression, template, next_run_at))

    def _changed(self, name: str, statement: str, params: dict[str, Any]) -> Schedule:
        with self.engine.begin() as conn:
            row = run(conn, statement, params).first(_ScheduleRow)
        if row is None:
            raise ScheduleNotFound(name)
        return row.domain()

    @operation()
    def trigger_schedule(self, name: str) -> SubmitResult:
        """Submit one job of the schedule now, paused or not, and record it as its last run. The cron's
        own occurrences are not affected. ScheduleNotFound when there is none. The job was not created
        when the template's unique_key is held by an unfinished job: that job is the answer."""
        with self.engine.begin() as conn:
            row = run(conn, "get_schedule", {"name": name}).first(_ScheduleRow)
            if row is None:
                raise ScheduleNotFound(name)
            (outcome,) = insert_jobs(conn, [row.domain().template.new_job(name, None, None)])
            assert not isinstance(outcome, IdempotencyConflict)  # the job has no idempotency key
            job = outcome.job
            params = {"schedule_id": row.schedule_id, "last_run_at": job.created_at, "last_job_id": job.job_id}
            run(conn, "record_schedule_run", params)
        return outcome

    @operation()
    def delete_schedule(self, name: str) -> None:
        """Delete a schedule; ScheduleNotFound when there is none. Its jobs stay."""
        with self.engine.begin() as conn:
            if not run(conn, "delete_schedule", {"name": name}):
                raise ScheduleNotFound(name)

    @operation(rows=lambda occurrence: int(occurrence is not None))
    def submit_due_occurrence(self) -> SubmittedOccurrence | None:
        """Submit the job of the earliest due schedule's occurrence and advance the schedule, in one
        transaction; None when no schedule is due (or every due one is being handled by someone else).

        Missed runs: when several occurrences are due (no scheduler ran for a while), only the most
        recent one is submitted; the older ones are skipped, and the schedule continues with the first
        occurrence after now.
        """
        with self.engine.begin() as conn:
            rows = run(conn, "lock_due_schedule")
            if not rows:
                return None
            row = rows.one(_ScheduleRow)
            now: datetime = rows.value("database_now")
            try:
                # A savepoint: a schedule that cannot be submitted (a stored cron or template that no
                # longer reads, a job the api would now refuse) is set aside below, not retried first
                # on every pass ahead of every other schedule.
                with conn.begin_nested():
                    return _submit_occurrence(conn, row.domain(), now)
            except Exception as error:
                if unavailable(error) is not None:
                    raise  # the connection, not the schedule
                retry_at = now + SCHEDULE_ERROR_RETRY
                run(
                    conn,
                    "advance_schedule",
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

    @operation()
    def seconds_until_next_schedule(self) -> float | None:
        """Seconds until the earliest schedule is due (0 or less: due now); None when there is none."""
        with self.engine.connect() as conn:
            seconds = run(conn, "select_next_schedule_delay").value("seconds")
        return None if seconds is None else float(seconds)


def _schedule_params(
    name: str, expression: CronExpression, template: JobTemplate, next_run_at: datetime | None
) -> dict[str, Any]:
    return {
        "name": name,
        "cron": expression.expression,
        "time_zone": expression.time_zone,
        "job_template": template.to_json(),
        "next_run_at": next_run_at,
    }


def _submit_occurrence(conn: Connection, schedule: Schedule, now: datetime) -> SubmittedOccurrence:
    expression = CronExpression(schedule.cron, schedule.time_zone)
    latest = expression.latest_at_or_before(now)
    occurrence = max(schedule.next_run_at, latest) if latest is not None else schedule.next_run_at
    skipped_from = schedule.next_run_at if occurrence > schedule.next_run_at else None
    key = occurrence_idempotency_key(schedule.schedule_id, occurrence)
    job = schedule.template.new_job(schedule.name, key, occurrence)
    (outcome,) = insert_jobs(conn, [job])
    # A conflict means a job with this occurrence's key exists already (it is the occurrence's).
    job_id = outcome.job_id if isinstance(outcome, IdempotencyConflict) else outcome.job.job_id
    created = not isinstance(outcome, IdempotencyConflict) and outcome.created
    next_run_at = expression.next_after(max(now, occurrence)) or NEVER
    run(
        conn,
        "advance_schedule",
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
