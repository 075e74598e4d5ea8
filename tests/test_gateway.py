"""The database gateway (shared.database): the one way the processes reach PostgreSQL.

- every operation answers the same whatever the order of the columns its SQL returns (every SQL file is
  run with its answer's columns reversed);
- driver errors reach callers as the domain's DatabaseUnavailable, counted in database_errors_total and
  database_up; domain answers (a job not found) are not failures;
- no process module imports SQLAlchemy or psycopg2, or reaches below the gateway's package.
"""

from __future__ import annotations

import ast
import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine

import shared.database
from shared.database import SCHEMA_REVISION, Database, JobOutcome, LeasedJob, queries
from shared.database.queries import QUERIES, Rows
from shared.errors import (
    DatabaseUnavailable,
    FailedPrecondition,
    JobNotFound,
    ScheduleAlreadyExists,
    ScheduleNotFound,
    TypeLimitsNotFound,
)
from shared.executors import ExecutorRecord
from shared.jobs import AttemptOutcome, JobFilter, JobStatus, NewJob
from shared.limits import TypeLimits
from shared.schedules import CronExpression, JobTemplate
from tests.support.database import ROOT
from tests.support.gateway import on_test_loop
from tests.support.processes import free_port

DRIVERS = ("sqlalchemy", "psycopg2")


def _validated(job_type: str = "echo", **fields: Any) -> Any:
    return NewJob(job_type, fields.pop("payload", {}), timeout_seconds=30, **fields).validate(1 << 20)


class _Recorded(dict[str, Any]):
    """QUERIES, remembering which statements ran."""

    def __init__(self, statements: dict[str, Any]) -> None:
        super().__init__(statements)
        self.ran: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        self.ran.add(name)
        return super().__getitem__(name)


@pytest.fixture(params=["as written", "columns reversed"])
def ran(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Every statement's answer as the SQL file gives it, or with its columns in reverse order; yields the
    names of the statements that ran."""
    if request.param == "columns reversed":

        def reversed_columns(result: Any) -> Rows:
            if not result.returns_rows:
                return Rows((), (), result.rowcount)
            columns = tuple(result.keys())[::-1]
            return Rows(columns, [tuple(row)[::-1] for row in result.all()], result.rowcount)

        monkeypatch.setattr(Rows, "of", staticmethod(reversed_columns))
    recorded = _Recorded(QUERIES)
    monkeypatch.setattr(queries, "QUERIES", recorded)
    yield recorded.ran


def test_every_operation_reads_its_rows_by_column_name(engine: Engine, ran: set[str]) -> None:
    on_test_loop(_every_operation(Database("", "tests", pool_size=2, engine=engine)))
    assert set(QUERIES) - ran == set(), "each SQL file must run here, so its column order is proven not to matter"


async def _every_operation(db: Database) -> None:
    assert await db.check_schema() == SCHEMA_REVISION
    assert await db.schema_revision() == SCHEMA_REVISION

    # Submits: plain, an idempotent replay, a unique key held, group commit, dependencies.
    keyed = _validated(payload={"n": 1}, idempotency_key="key-1")
    (first,) = await db.submit_jobs([keyed])
    (replay,) = await db.submit_jobs([keyed])
    assert first.created and not replay.created and replay.job.job_id == first.job.job_id
    assert first.job.status is JobStatus.READY and first.job.payload == {"n": 1}
    (held,) = await db.submit_jobs([_validated(unique_key="unique-1")])
    (merged,) = await db.submit_jobs([_validated(unique_key="unique-1")])
    assert not merged.created and merged.job.job_id == held.job.job_id
    (grouped,) = await db.submit_jobs_independently([_validated("grouped")])
    assert not isinstance(grouped, Exception) and grouped.created
    waiting = await db.submit_job_with_dependencies(_validated(depends_on=[first.job.job_id]))
    assert waiting.job.status is JobStatus.WAITING and list(waiting.job.depends_on) == [first.job.job_id]

    # Reads.
    assert (await db.get_job(first.job.job_id)).idempotency_key == "key-1"
    assert set(await db.get_jobs([first.job.job_id, held.job.job_id, 10**9])) == {first.job.job_id, held.job.job_id}
    listed = await db.list_jobs(JobFilter(status=JobStatus.READY, type="echo"), None, 10)
    assert [job.job_id for job in listed] == [held.job.job_id, first.job.job_id]
    (page,) = await db.select_matching_jobs(JobFilter(unique_key="unique-1"), None, 10)
    assert page.job_id == held.job.job_id
    assert await db.list_job_attempts(first.job.job_id) == []
    with pytest.raises(JobNotFound):
        await db.get_job(10**9)

    # Leasing, heartbeats, progress, outcomes.
    leased = await db.lease_jobs("owner-1", ["echo"], 10, 30)
    assert {job.job_id for job in leased} == {first.job.job_id, held.job.job_id}
    job = next(job for job in leased if job.job_id == first.job.job_id)
    assert isinstance(job, LeasedJob) and (job.type, job.attempt, job.max_attempts, job.payload) == (
        "echo",
        1,
        3,
        {"n": 1},
    )
    assert job.timeout_seconds == 30 and len(job.lease_token) == 36 and job.queue_wait_seconds >= 0
    other = next(job for job in leased if job.job_id == held.job.job_id)
    leases = [(job.job_id, job.lease_token), (other.job_id, other.lease_token)]
    assert [(s.held, s.cancel_requested) for s in await db.heartbeat_leases(leases, 30)] == [(True, False)] * 2
    assert [s.held for s in await db.check_leases([(job.job_id, "00000000-0000-0000-0000-000000000000")])] == [False]
    await db.report_progress([(job.job_id, job.lease_token, 50, "half")])
    assert (await db.get_job(job.job_id)).progress_percent == 50
    assert [a.outcome for a in await db.list_job_attempts(job.job_id)] == [AttemptOutcome.RUNNING]
    written = await db.complete_jobs(
        [
            JobOutcome(job.job_id, job.lease_token, JobStatus.COMPLETED, '{"ok": true}'),
            JobOutcome(
                other.job_id,
                other.lease_token,
                JobStatus.PENDING,
                error_message="ValueError: again",
                retry_delay=0.01,
                error_type="ValueError",
                traceback="Traceback ...",
            ),
        ],
        "owner-1",
    )
    assert written == {job.job_id: JobStatus.COMPLETED, other.job_id: JobStatus.PENDING}
    (ended,) = await db.list_job_attempts(other.job_id)
    assert (ended.attempt, ended.executor_id, ended.outcome, ended.error_type, ended.traceback) == (
        1,
        "owner-1",
        AttemptOutcome.FAILED,
        "ValueError",
        "Traceback ...",
    )
    assert (await db.get_job(waiting.job.job_id)).status is JobStatus.READY  # its dependency completed
    (grouped_lease,) = await db.lease_jobs("owner-1", ["grouped"], 10, 30)
    assert await db.release_leases([(grouped_lease.job_id, grouped_lease.lease_token)]) == {
        grouped_lease.job_id: JobStatus.READY
    }

    # The scheduler's duties.
    await asyncio.sleep(0.05)
    promoted = await db.promote_due_jobs(100)
    assert [p.job_id for p in promoted] == [other.job_id] and promoted[0].lateness_seconds >= 0
    assert await db.seconds_until_next_due() is None
    (expiring,) = await db.lease_jobs("owner-2", ["grouped"], 1, 0.01)
    await asyncio.sleep(0.05)
    rescued = await db.rescue_lost_jobs(100)
    assert [(r.job_id, r.status, r.attempts) for r in rescued] == [(expiring.job_id, JobStatus.READY, 1)]
    assert "owner-2" in rescued[0].error_message
    assert [(a.outcome, a.executor_id) for a in await db.list_job_attempts(expiring.job_id)] == [
        (AttemptOutcome.LOST, "owner-2")
    ]
    assert await db.prune_finished_jobs(JobStatus.COMPLETED, timedelta(0), 100) == 1
    assert (await db.compact_job_counts(1000)).folded > 0
    by_status = await db.count_jobs_by_status()
    assert by_status[JobStatus.READY] == 3 and by_status[JobStatus.COMPLETED] == 0

    # The api's other writes.
    assert (await db.cancel_job(other.job_id)).status is JobStatus.CANCELLED
    with pytest.raises(FailedPrecondition):
        await db.cancel_job(other.job_id)
    assert (await db.retry_job(other.job_id)).status is JobStatus.READY
    assert await db.cancel_jobs([expiring.job_id]) == 1  # READY again since its rescue
    assert await db.cancel_jobs([expiring.job_id]) == 0
    assert await db.retry_jobs([expiring.job_id, other.job_id]) == 1  # other is READY: not retried
    (failing,) = await db.lease_jobs("owner-1", ["echo"], 1, 30)
    await db.complete_jobs(
        [JobOutcome(failing.job_id, failing.lease_token, JobStatus.FAILED, error_message="no")], "owner-1"
    )
    counts = await db.count_jobs()
    assert counts.by_status[JobStatus.FAILED] == 1 and counts.avg_attempts_for_failed_jobs >= 1
    assert [(f.job_id, f.error) for f in counts.recent_failures] == [(failing.job_id, "no")]

    # Type limits.
    stored = await db.set_type_limits(TypeLimits("limited", max_running=1))
    assert (stored.max_running, stored.rate_limit, stored.rate_period_seconds) == (1, None, None)
    assert [limits.type for limits in await db.list_type_limits()] == ["limited"]
    assert await db.select_limited_types(["limited", "echo"]) == {"limited"}
    await db.submit_jobs([_validated("limited"), _validated("limited")])
    lease = await db.lease_limited_jobs("owner-1", "limited", 5, 30)
    assert len(lease.jobs) == 1 and lease.jobs[0].type == "limited" and lease.held_by == "max_running"
    # Pauses, and the summary of every type.
    paused = await db.pause_job_type("limited")
    assert paused.paused and paused.limits is not None and paused.limits.max_running == 1
    assert paused.counts == {JobStatus.PROCESSING: 1, JobStatus.READY: 1}
    assert await db.select_paused_types() == {"limited"}
    assert (await db.lease_limited_jobs("owner-1", "limited", 5, 30)).held_by == "paused"
    await db.pause_job_type("echo")
    assert await db.lease_jobs("owner-1", ["echo"], 10, 30) == []
    assert not (await db.resume_job_type("echo")).paused
    assert [t.type for t in await db.list_job_types("echo", 2)] == ["grouped", "limited"]
    await db.delete_type_limits("limited")
    with pytest.raises(TypeLimitsNotFound):
        await db.delete_type_limits("limited")
    assert (await db.resume_job_type("limited")).limits is None

    # Schedules.
    due = datetime.now(timezone.utc) - timedelta(minutes=1)
    template = JobTemplate(type="echo", payload={"from": "schedule"}, timeout_seconds=30)
    schedule = await db.create_schedule("every-minute", CronExpression("* * * * *"), template, due)
    assert (schedule.name, schedule.cron, schedule.template) == ("every-minute", "* * * * *", template)
    with pytest.raises(ScheduleAlreadyExists):
        await db.create_schedule("every-minute", CronExpression("* * * * *"), template, due)
    assert (await db.get_schedule("every-minute")).next_run_at == due
    assert [s.name for s in await db.list_schedules("", 10)] == ["every-minute"]
    assert await db.list_schedules("every-minute", 10) == []
    assert (await db.pause_schedule("every-minute")).paused
    assert await db.submit_due_occurrence() is None and await db.seconds_until_next_schedule() is None
    assert not (await db.resume_schedule("every-minute")).paused
    occurrence = await db.submit_due_occurrence()
    assert occurrence is not None and occurrence.created and occurrence.error is None
    assert (await db.get_job(occurrence.job_id)).schedule_name == "every-minute"
    assert 0 < (await db.seconds_until_next_schedule() or 0) <= 60
    triggered = await db.trigger_schedule("every-minute")
    assert triggered.created and triggered.job.schedule_name == "every-minute" and triggered.job.scheduled_at is None
    assert (await db.get_schedule("every-minute")).last_job_id == triggered.job.job_id
    updated = await db.update_schedule("every-minute", CronExpression("@daily", "Europe/Paris"), template, None)
    assert (updated.cron, updated.time_zone, updated.next_run_at) == ("@daily", "Europe/Paris", occurrence.next_run_at)
    with pytest.raises(ScheduleNotFound):
        await db.pause_schedule("no-such-schedule")
    await db.delete_schedule("every-minute")
    with pytest.raises(ScheduleNotFound):
        await db.get_schedule("every-minute")

    # The executor registry.
    started = datetime.now(timezone.utc)
    record = ExecutorRecord("host-1-abc", "host", 1, "0.1.0", ("echo",), 4, 0, started)
    await db.register_executor(record, 30, 2.5)
    await db.register_executor(ExecutorRecord("gone", "host", 2, "0.1.0", ("echo",), 1, 0, started), 0)
    await db.register_executor(replace(record, running=2), 30)  # removes the expired "gone" on its way
    (registered,) = await db.list_executors()
    assert registered == replace(record, running=2, last_seen_at=registered.last_seen_at) and registered.last_seen_at
    await db.unregister_executor("host-1-abc")
    assert await db.list_executors() == []

    # Sessions: the leader lock, LISTEN.
    lock = db.leader_lock()
    assert await db.try_lock_scheduler_leader(lock) and await db.check_scheduler_leader(lock)
    await db.unlock_scheduler_leader(lock)
    assert not await db.check_scheduler_leader(lock)
    for listen in (db.listen_jobs_ready, db.listen_jobs_scheduled, lambda: db.listen_jobs_ready("host-1-abc")):
        listening = await listen()
        assert listening.drain() == 0
        listening.close()


def test_driver_errors_become_database_unavailable_and_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    """A refused connection: the caller sees DatabaseUnavailable (the driver's error as its cause), the
    outage is logged once and counted, and the gateway's unbroken time starts again (crash detection looks
    back no further); a later success would log the recovery."""
    db = Database(f"postgresql://postgres@127.0.0.1:{free_port()}/jobs", "tests", pool_size=1)
    before = REGISTRY.get_sample_value("database_errors_total", {"operation": "get_job"}) or 0
    time.sleep(0.3)
    assert db.unbroken_seconds() >= 0.3, "unbroken since it was made"
    try:
        for _ in range(2):
            with pytest.raises(DatabaseUnavailable) as raised:
                on_test_loop(db.get_job(1))
            assert type(raised.value.__cause__).__module__.startswith("sqlalchemy")
        assert db.unbroken_seconds() < 0.3
    finally:
        db.close()
    assert REGISTRY.get_sample_value("database_errors_total", {"operation": "get_job"}) == before + 2
    assert REGISTRY.get_sample_value("database_up") == 0
    assert [r.message for r in caplog.records if "database unavailable (get_job)" in r.message][:1], caplog.text


def test_domain_answers_are_not_database_failures(engine: Engine) -> None:
    db = Database("", "tests", pool_size=1, engine=engine)
    before = REGISTRY.get_sample_value("database_errors_total", {"operation": "cancel_job"}) or 0
    with pytest.raises(JobNotFound):
        on_test_loop(db.cancel_job(10**9))
    assert (REGISTRY.get_sample_value("database_errors_total", {"operation": "cancel_job"}) or 0) == before
    assert REGISTRY.get_sample_value("database_up") == 1


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_gateway_touches_the_driver() -> None:
    """Processes and the rest of shared/ reach PostgreSQL only through ``shared.database``'s Database:
    no import of SQLAlchemy or psycopg2, and nothing from below the gateway's package but its name."""
    gateway = ROOT / "shared" / "database"
    modules = [
        path
        for folder in ("services", "shared")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if gateway not in path.parents and "proto" not in path.parts
    ]
    assert len(modules) > 40
    offenders = {}
    for path in modules:
        found = {
            name
            for name in _imports(path)
            if name.split(".")[0] in DRIVERS
            or (name.startswith("shared.database.") and name.removeprefix("shared.database.") not in _PUBLIC)
        }
        if found:
            offenders[str(path.relative_to(ROOT))] = sorted(found)
    assert offenders == {}, "use the gateway (shared.database.Database) instead"


# What `from shared.database import X` may name (its public surface).
_PUBLIC = set(shared.database.__all__)
