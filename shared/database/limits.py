"""The api's queries on job types: limits (set, list, delete), pauses (pause, resume) and the summary
of every type (list_job_types). One short transaction each.

Enforcement is not here: executors lease limited types with lease_limited_jobs, and neither lease
statement takes a paused type (shared/database/queue.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection

from shared.database.gateway import Gateway, operation
from shared.database.queries import run
from shared.errors import TypeLimitsNotFound
from shared.job_types import JobType
from shared.jobs import JobStatus
from shared.limits import TypeLimits

__all__ = ["LimitQueries"]


class _Limits(NamedTuple):
    type: str
    max_running: int | None
    max_running_per_key: int | None
    rate_limit: int | None
    rate_period_seconds: int | None
    updated_at: datetime

    def domain(self) -> TypeLimits:
        return TypeLimits(
            type=self.type,
            max_running=self.max_running,
            max_running_per_key=self.max_running_per_key,
            rate_limit=self.rate_limit,
            # The stored period means nothing without a rate limit.
            rate_period_seconds=self.rate_period_seconds if self.rate_limit is not None else None,
            updated_at=self.updated_at,
        )


class _JobTypeRow(NamedTuple):
    type: str
    counts: Any  # {status name: jobs}, or None without jobs
    limited: bool
    max_running: int | None
    max_running_per_key: int | None
    rate_limit: int | None
    rate_period_seconds: int | None
    limits_updated_at: datetime | None
    paused_at: datetime | None

    def domain(self) -> JobType:
        limits = None
        if self.limited:
            assert self.limits_updated_at is not None
            limits = _Limits(
                self.type,
                self.max_running,
                self.max_running_per_key,
                self.rate_limit,
                self.rate_period_seconds,
                self.limits_updated_at,
            ).domain()
        counts = {JobStatus(status): int(jobs) for status, jobs in (self.counts or {}).items()}
        return JobType(self.type, counts, limits, self.paused_at)


class LimitQueries(Gateway):
    """What the api does to job types: the job_type_limits and job_type_pauses tables."""

    @operation()
    def list_job_types(self, after: str, limit: int) -> list[JobType]:
        """Up to ``limit`` types that have jobs, limits or a pause, ordered by type, after ``after``."""
        with self.engine.connect() as conn:
            return _job_types(conn, after, limit, None)

    @operation()
    def pause_job_type(self, job_type: str) -> JobType:
        """Pause ``job_type`` (known or not): no executor starts a new attempt of it until resumed."""
        with self.engine.begin() as conn:
            run(conn, "pause_job_type", {"type": job_type})
            return _job_type(conn, job_type)

    @operation()
    def resume_job_type(self, job_type: str) -> JobType:
        """Lift the pause of ``job_type`` (if any) and wake the executors for its READY jobs."""
        with self.engine.begin() as conn:
            if run(conn, "resume_job_type", {"type": job_type}).rowcount:
                run(conn, "notify_jobs_ready")
            return _job_type(conn, job_type)

    @operation()
    def select_paused_types(self) -> set[str]:
        """Every paused type."""
        with self.engine.connect() as conn:
            return set(run(conn, "select_paused_types").column("type"))

    @operation()
    def set_type_limits(self, limits: TypeLimits) -> TypeLimits:
        """Create or replace every limit of ``limits.type`` (validated by the caller); the stored row."""
        params = {
            "type": limits.type,
            "max_running": limits.max_running,
            "max_running_per_key": limits.max_running_per_key,
            "rate_limit": limits.rate_limit,
            "rate_period_seconds": limits.period_seconds,
        }
        with self.engine.begin() as conn:
            return run(conn, "upsert_type_limits", params).one(_Limits).domain()

    @operation()
    def list_type_limits(self) -> list[TypeLimits]:
        """Every limited type, ordered by type."""
        with self.engine.connect() as conn:
            return [row.domain() for row in run(conn, "list_type_limits").records(_Limits)]

    @operation()
    def delete_type_limits(self, job_type: str) -> None:
        """Remove the limits of ``job_type``; TypeLimitsNotFound when it has none."""
        with self.engine.begin() as conn:
            if not run(conn, "delete_type_limits", {"type": job_type}):
                raise TypeLimitsNotFound(job_type)


def _job_types(conn: Connection, after: str, limit: int, only: str | None) -> list[JobType]:
    params = {"after": after, "limit": limit, "type": only}
    return [row.domain() for row in run(conn, "list_job_types", params).records(_JobTypeRow)]


def _job_type(conn: Connection, job_type: str) -> JobType:
    """One type as list_job_types shows it; a type with nothing (no jobs, limits or pause) is empty."""
    found = _job_types(conn, "", 1, job_type)
    return found[0] if found else JobType(job_type)
