"""The scheduler as operators run it: ``python -m services.scheduler`` against real PostgreSQL.

Covers on-time promotion (and the jobs_scheduled wake-up), lease rescue, retention, job_counts compaction,
leader election and take-over, a database whose connections break or that restarts, SIGTERM, settings
and schema checks at start.
"""

from __future__ import annotations

import signal
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from shared.database.engine import create_database_engine
from shared.jobs import JobStatus
from tests.support.database import fresh_database, migrate, server_url
from tests.support.gateway import gateway
from tests.support.job_rows import execute, jobs, make_finished, make_processing, submit
from tests.support.pg_instance import PgInstance
from tests.support.processes import wait_until
from tests.support.scheduler import Scheduler


@pytest.fixture
def start_scheduler(tmp_path: Path) -> Iterator[Callable[..., Scheduler]]:
    """Start schedulers (``start_scheduler(database_url, *args, **env)``); all are stopped afterwards."""
    started: list[Scheduler] = []

    def start(database_url: str, *args: str, **env: str) -> Scheduler:
        scheduler = Scheduler(database_url, tmp_path, list(args), **env)
        started.append(scheduler)
        return scheduler.start()  # type: ignore[return-value]

    yield start
    for scheduler in started:
        scheduler.stop()


def status_of(engine: Engine, job_id: int) -> str:
    return str(jobs(engine)[job_id].status)


def promotion_lag_seconds(engine: Engine, job_id: int) -> float:
    """How late the job became READY: the promoting transaction's time minus its run_at."""
    row = jobs(engine)[job_id]
    return (row.updated_at - row.run_at).total_seconds()


def test_scheduled_jobs_become_ready_within_milliseconds_of_their_time(
    db: str, engine: Engine, start_scheduler: Callable[..., Scheduler]
) -> None:
    # With a 30 s idle cap, only sleeping until the due time (and the jobs_scheduled wake-up that tells
    # the idle promoter about the new jobs) can make these jobs READY on time.
    scheduler = start_scheduler(db, "--max-idle-seconds", "30").wait_until_leader()
    scheduler.wait_for_log("listening on jobs_scheduled")
    ids = [submit(engine, scheduled_in=timedelta(seconds=0.5 + 0.2 * i))[0] for i in range(5)]
    assert {status_of(engine, job_id) for job_id in ids} == {"PENDING"}

    wait_until(lambda: {status_of(engine, job_id) for job_id in ids} == {"READY"}, 5, what="jobs to be READY")

    lags = [promotion_lag_seconds(engine, job_id) for job_id in ids]
    print(f"promotion lag of 5 scheduled jobs: {', '.join(f'{lag * 1000:.1f} ms' for lag in lags)}")
    assert all(0 <= lag < 1.0 for lag in lags), lags
    assert statistics.median(lags) < 0.1, f"the requirement is 100 ms: {lags}"
    assert scheduler.metric("jobs_promoted_total") == 5
    assert scheduler.metric("jobs_promotion_lateness_seconds_count") == 5


def test_a_jobs_scheduled_notification_wakes_the_idle_promoter(
    db: str, engine: Engine, start_scheduler: Callable[..., Scheduler]
) -> None:
    scheduler = start_scheduler(db, "--max-idle-seconds", "30").wait_until_leader()
    scheduler.wait_for_log("listening on jobs_scheduled")
    time.sleep(0.3)  # let the first pass find nothing and go to sleep for 30 s
    # A due PENDING job written without telling the scheduler (as a lost NOTIFY would leave it)...
    with engine.begin() as conn:
        job_id = conn.execute(
            text("INSERT INTO jobs (type, status, timeout_seconds) VALUES ('echo', 'PENDING', 60) RETURNING job_id")
        ).scalar_one()
    time.sleep(0.5)
    assert status_of(engine, job_id) == "PENDING", "nothing but a notification should wake the promoter"

    notified = time.monotonic()
    execute(engine, "SELECT pg_notify('jobs_scheduled', '')")
    wait_until(lambda: status_of(engine, job_id) == "READY", 2, interval=0.005, what="the job to be READY")
    woken_in = time.monotonic() - notified
    print(f"READY {woken_in * 1000:.1f} ms after the jobs_scheduled notification")
    assert woken_in < 0.5


def test_expired_leases_are_rescued_to_ready_failed_or_cancelled(
    db: str, engine: Engine, start_scheduler: Callable[..., Scheduler]
) -> None:
    retry, used_up, cancelled, alive = submit(engine, 4, scheduled_in=timedelta(hours=1))
    make_processing(engine, retry, attempts=1, owner="executor-7")
    make_processing(engine, used_up, attempts=3, owner="executor-7")
    make_processing(engine, cancelled, attempts=2, cancel_requested=True)
    make_processing(engine, alive, attempts=1, expired=False)

    scheduler = start_scheduler(db).wait_until_leader()
    wait_until(
        lambda: [status_of(engine, i) for i in (retry, used_up, cancelled)] == ["READY", "FAILED", "CANCELLED"],
        5,
        what="the expired leases to be rescued",
    )

    rows = jobs(engine)
    assert rows[retry].attempts == 1 and rows[retry].lease_token is None
    assert rows[used_up].error_message == "lease expired: executor executor-7 stopped heartbeating (attempt 3 of 3)"
    assert rows[used_up].finished_at is not None
    assert rows[cancelled].error_message == "cancelled by request"
    assert rows[alive].status == "PROCESSING", "a live lease is left alone"
    for status in ("READY", "FAILED", "CANCELLED"):
        assert scheduler.metric("jobs_rescued_total", status=status) == 1
    assert "stopped heartbeating (attempt 1 of 3); job is now READY" in scheduler.output()


def test_retention_deletes_old_finished_jobs_in_batches_and_keeps_the_rest(
    db: str, engine: Engine, start_scheduler: Callable[..., Scheduler]
) -> None:
    ids = submit(engine, 14, scheduled_in=timedelta(hours=1))
    for job_id in ids[:5]:
        make_finished(engine, job_id, JobStatus.COMPLETED, days_ago=8)
    for job_id in ids[5:7]:
        make_finished(engine, job_id, JobStatus.CANCELLED, days_ago=7.5)
    for job_id in ids[7:9]:
        make_finished(engine, job_id, JobStatus.FAILED, days_ago=31)
    make_finished(engine, ids[9], JobStatus.COMPLETED, days_ago=6.9)
    make_finished(engine, ids[10], JobStatus.CANCELLED, days_ago=1)
    make_finished(engine, ids[11], JobStatus.FAILED, days_ago=29)
    execute(engine, "UPDATE jobs SET created_at = now() - interval '60 days' WHERE job_id = :i", i=ids[12])
    kept = ids[9:]

    # Batches of 2 need several passes for the 5 old COMPLETED jobs.
    scheduler = start_scheduler(db, "--prune-batch-size", "2").wait_until_leader()
    wait_until(lambda: sorted(jobs(engine)) == kept, 5, what="old finished jobs to be deleted")

    assert scheduler.metric("jobs_pruned_total", status="COMPLETED") == 5
    assert scheduler.metric("jobs_pruned_total", status="CANCELLED") == 2
    assert scheduler.metric("jobs_pruned_total", status="FAILED") == 2


def test_retention_is_configurable(db: str, engine: Engine, start_scheduler: Callable[..., Scheduler]) -> None:
    old, recent, failed = submit(engine, 3, scheduled_in=timedelta(hours=1))
    make_finished(engine, old, JobStatus.COMPLETED, days_ago=1.5)
    make_finished(engine, recent, JobStatus.COMPLETED, days_ago=0.5)
    make_finished(engine, failed, JobStatus.FAILED, days_ago=2.5)
    start_scheduler(db, RETENTION_COMPLETED_DAYS="1", RETENTION_FAILED_DAYS="2").wait_until_leader()
    wait_until(lambda: sorted(jobs(engine)) == [recent], 5, what="jobs past the configured retention to go")


def test_job_counts_are_compacted_and_exported(
    db: str, engine: Engine, start_scheduler: Callable[..., Scheduler]
) -> None:
    for _ in range(20):
        submit(engine, 3, type="report")
    submit(engine, 4, type="email", scheduled_in=timedelta(hours=1))
    execute(engine, "UPDATE jobs SET status = 'COMPLETED', finished_at = now() WHERE job_id <= 10")

    def compacted() -> bool:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM job_counts")).scalar_one() == 3

    scheduler = start_scheduler(db).wait_until_leader()
    wait_until(compacted, 5, what="job_counts to fold into one row per (type, status)")

    with engine.connect() as conn:
        folded = set(conn.execute(text("SELECT type, status, jobs, attempts FROM job_counts")).all())
    assert folded == {("report", "READY", 50, 0), ("report", "COMPLETED", 10, 0), ("email", "PENDING", 4, 0)}
    wait_until(lambda: scheduler.metric("jobs_by_status", status="READY") == 50, 5, what="the gauge")
    assert scheduler.metric("jobs_by_status", status="PENDING") == 4
    assert scheduler.metric("jobs_by_status", status="COMPLETED") == 10
    assert (scheduler.metric("job_counts_compacted_total") or 0) >= 22
    # READY per type, for types that have any: the email jobs are PENDING.
    assert scheduler.metric("jobs_ready_by_type", job_type="report") == 50
    assert scheduler.metric("jobs_ready_by_type", job_type="email") is None
    # A type's series goes once it has no READY job left.
    execute(engine, "UPDATE jobs SET status = 'COMPLETED', finished_at = now() WHERE status = 'READY'")
    wait_until(lambda: scheduler.metric("jobs_by_status", status="COMPLETED") == 60, 10, what="the gauge")
    assert scheduler.metric("jobs_ready_by_type", job_type="report") is None


def test_one_leader_at_a_time_and_a_standby_takes_over_when_it_is_killed(
    db: str, engine: Engine, start_scheduler: Callable[..., Scheduler]
) -> None:
    first = start_scheduler(db).wait_until_leader()
    second = start_scheduler(db)
    second.wait_for_log("standing by")
    time.sleep(1.5)  # a few of the standby's attempts
    assert first.is_leader() and not second.is_leader()
    assert second.metric("scheduler_leadership_acquired_total") == 0

    first.kill()
    killed = time.monotonic()
    second.wait_until_leader(timeout=10)
    takeover = time.monotonic() - killed
    print(f"standby took over {takeover:.2f} s after the leader was killed")
    assert takeover < 5

    [job_id] = submit(engine, scheduled_in=timedelta(seconds=0.3))
    wait_until(lambda: status_of(engine, job_id) == "READY", 3, what="the new leader to promote a job")


def test_sigterm_stops_the_leader_cleanly_and_frees_leadership(
    db: str, engine: Engine, start_scheduler: Callable[..., Scheduler]
) -> None:
    scheduler = start_scheduler(db).wait_until_leader()
    database = gateway(engine)
    lock = database.leader_lock()
    try:
        assert not database.try_lock_scheduler_leader(lock)
        scheduler.signal(signal.SIGTERM)
        assert scheduler.process is not None
        assert scheduler.process.wait(10) == 0
        assert database.try_lock_scheduler_leader(lock), "the advisory lock is released on exit"
    finally:
        database.unlock_scheduler_leader(lock)
    output = scheduler.output()
    assert "received SIGTERM; stopping" in output
    assert "no longer the active scheduler" in output


def leader_lock_errors(scheduler: Scheduler) -> float:
    """Failed calls of the leader lock's operations (a broken lock session fails one of them)."""
    operations = ("try_lock_scheduler_leader", "check_scheduler_leader")
    return sum(scheduler.metric("database_errors_total", operation=operation) or 0 for operation in operations)


def terminate_scheduler_connections(engine: Engine) -> int:
    with engine.begin() as conn:
        return len(
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = 'scheduler'"
                )
            ).all()
        )


def test_the_leader_steps_down_when_its_lock_connection_breaks_and_leads_again(
    db: str, engine: Engine, start_scheduler: Callable[..., Scheduler]
) -> None:
    scheduler = start_scheduler(db, "--leader-retry-seconds", "0.2").wait_until_leader()
    scheduler.wait_for_log("listening on jobs_scheduled")

    assert terminate_scheduler_connections(engine) >= 2  # at least the lock's and the listener's

    scheduler.wait_for_log("lost the leader lock", timeout=5)
    wait_until(lambda: scheduler.metric("scheduler_leadership_acquired_total") == 2, 10, what="leadership to come back")
    [job_id] = submit(engine, scheduled_in=timedelta(seconds=0.3))
    wait_until(lambda: status_of(engine, job_id) == "READY", 3, what="promotion after the reconnect")
    assert leader_lock_errors(scheduler) >= 1
    assert scheduler.alive()


@pytest.mark.slow
def test_the_scheduler_rides_out_a_database_restart(start_scheduler: Callable[..., Scheduler], tmp_path: Path) -> None:
    """A PostgreSQL of the test's own goes down for two seconds while the scheduler runs."""
    with PgInstance(tmp_path / "pg") as pg:
        migrate(pg.url)
        engine = create_database_engine(pg.url, "tests")
        try:
            scheduler = start_scheduler(pg.url, "--leader-retry-seconds", "0.2").wait_until_leader()
            scheduler.wait_for_log("listening on jobs_scheduled")
            engine.dispose()

            pg.stop()
            time.sleep(2)
            assert scheduler.alive()
            pg.start()

            wait_until(
                lambda: scheduler.metric("scheduler_leadership_acquired_total") == 2, 15, what="leadership again"
            )
            [job_id] = submit(engine, scheduled_in=timedelta(seconds=0.3))
            wait_until(lambda: status_of(engine, job_id) == "READY", 5, what="promotion after the restart")
            assert leader_lock_errors(scheduler) >= 1
        finally:
            engine.dispose()


def test_a_database_behind_the_code_is_refused_with_the_fix(start_scheduler: Callable[..., Scheduler]) -> None:
    with fresh_database(server_url(), "unmigrated", migrated=False) as url:
        scheduler = start_scheduler(url)
        assert scheduler.process is not None
        assert scheduler.process.wait(20) == 2
    assert "jobservice migrate" in scheduler.output()


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        ([], {"METRICS_PORT": "eighty"}, "METRICS_PORT"),
        (["--max-idle-seconds", "-1"], {}, "SCHEDULER_MAX_IDLE_SECONDS"),
        ([], {"RETENTION_FAILED_DAYS": "soon"}, "RETENTION_FAILED_DAYS"),
        ([], {"DATABASE_URL": "mysql://nope"}, "DATABASE_URL"),
    ],
)
def test_a_bad_setting_is_refused_at_start_naming_the_variable(
    args: list[str], env: dict[str, str], named: str, start_scheduler: Callable[..., Scheduler]
) -> None:
    scheduler = start_scheduler("postgresql://postgres@127.0.0.1:1/none", *args, **env)
    assert scheduler.process is not None
    assert scheduler.process.wait(20) == 2
    assert named in scheduler.output()


def test_help_names_every_variable(start_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = start_scheduler("postgresql://postgres@127.0.0.1:1/none", "--help")
    assert scheduler.process is not None
    assert scheduler.process.wait(20) == 0
    output = scheduler.output()
    for variable in (
        "DATABASE_URL",
        "METRICS_PORT",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "SCHEDULER_PROMOTE_BATCH_SIZE",
        "SCHEDULER_MAX_IDLE_SECONDS",
        "SCHEDULER_RESCUE_INTERVAL_SECONDS",
        "SCHEDULER_PRUNE_INTERVAL_SECONDS",
        "SCHEDULER_PRUNE_BATCH_SIZE",
        "SCHEDULER_COMPACT_INTERVAL_SECONDS",
        "SCHEDULER_LEADER_RETRY_SECONDS",
        "SCHEDULER_SCHEDULES_POLL_SECONDS",
        "RETENTION_COMPLETED_DAYS",
        "RETENTION_FAILED_DAYS",
    ):
        assert variable in output
