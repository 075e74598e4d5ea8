"""Crash detection against real processes, with the production defaults for every interval involved
(lease 30 s, heartbeat tick 1 s, liveness 2 s, rescue every 1 s).

- An executor killed with SIGKILL has its job run again by another executor, rescued because it died
  (its liveness lock vanished and it fell silent), not because its lease expired.
- No false rescue: a live executor whose liveness session is terminated over and over, and one that
  rides out a PostgreSQL restart, run their jobs to the end, each exactly once, and nothing is rescued.

Every execution is proven by the ``tests.record`` handler with ``first``: it writes ``job_id attempt`` to
a file named after the executor's pid when the attempt starts (docs/reliability.md).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from services.executor.settings import ExecutorSettings
from services.scheduler.settings import SchedulerSettings
from shared.jobs import JobStatus
from tests.support.database import migrate
from tests.support.executors import Executor, get_jobs, submit, wait_for_jobs
from tests.support.pg_instance import PgInstance
from tests.support.processes import ServiceProcess, wait_until
from tests.support.scheduler import Scheduler

pytestmark = pytest.mark.slow

# The executor's defaults where tests/support speeds things up.
DEFAULT_EXECUTOR_ENV = {
    "EXECUTOR_POLL_INTERVAL_SECONDS": str(ExecutorSettings.poll_interval_seconds),
    "EXECUTOR_CANCEL_CHECK_INTERVAL_SECONDS": str(ExecutorSettings.cancel_check_interval_seconds),
}

# A key's halves as pg_locks shows a bigint advisory lock (the liveness lock: lock_executor_liveness).
LIVENESS_LOCK_HOLDERS = """
    SELECT l.pid
    FROM executors AS e
    JOIN pg_locks AS l
      ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
     AND l.classid = CAST((hashtextextended(e.executor_id, 0) >> 32) & 4294967295 AS oid)
     AND l.objid = CAST(hashtextextended(e.executor_id, 0) & 4294967295 AS oid)
    WHERE e.pid = :pid
"""


@pytest.fixture
def records(tmp_path: Path) -> Path:
    directory = tmp_path / "records"
    directory.mkdir()
    return directory


def starts(records: Path) -> dict[int, list[tuple[int, int]]]:
    """Every attempt that started, by the pid of the executor that ran it: [(job_id, attempt)]."""
    found: dict[int, list[tuple[int, int]]] = {}
    for path in records.glob("*.log"):
        lines = [line.split() for line in path.read_text().splitlines()]
        found[int(path.stem)] = [(int(job), int(attempt)) for job, attempt in lines]
    return found


def start_executor(database_url: str, records: Path) -> Executor:
    env = {**DEFAULT_EXECUTOR_ENV, "RECORD_DIR": str(records), "EXECUTOR_TYPES": "tests.record"}
    executor = Executor(database_url, env=env)
    executor.start()
    return executor.wait_started()


def start_scheduler(database_url: str, log_dir: Path) -> Scheduler:
    """A scheduler that rescues at the default interval, once it leads."""
    interval = str(SchedulerSettings.rescue_interval_seconds)
    scheduler = Scheduler(database_url, log_dir, SCHEDULER_RESCUE_INTERVAL_SECONDS=interval)
    scheduler.start()
    return scheduler.wait_until_leader()


def liveness_lock_holders(engine: Engine, executor: Executor) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text(LIVENESS_LOCK_HOLDERS), {"pid": executor.pid}).scalars())


def holds_liveness_lock(engine: Engine, executor: Executor) -> bool:
    return bool(liveness_lock_holders(engine, executor))


def rescued(scheduler: Scheduler, reason: str) -> float:
    return sum(
        scheduler.metric("jobs_rescued_total", status=status.value, reason=reason) or 0.0
        for status in (JobStatus.READY, JobStatus.FAILED, JobStatus.CANCELLED)
    )


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        process.stop()


def one_job_running(
    database_url: str, engine: Engine, log_dir: Path, records: Path, processes: list[ServiceProcess], seconds: float
) -> tuple[Scheduler, Executor, Executor, int]:
    """A scheduler, an executor that has started one job of ``seconds``, and a second executor, idle, that
    takes the job should it be rescued; and the job's id."""
    scheduler = start_scheduler(database_url, log_dir)
    processes.append(scheduler)
    running = start_executor(database_url, records)
    processes.append(running)
    (job_id,) = submit(engine, "tests.record", {"first": True, "seconds": seconds}, timeout_seconds=int(4 * seconds))
    wait_until(lambda: starts(records).get(running.pid) == [(job_id, 1)], 20, what="the job to start")
    idle = start_executor(database_url, records)
    processes.append(idle)
    return scheduler, running, idle, job_id


def test_sigkill_of_an_executor_has_its_job_run_again_at_once_not_when_the_lease_expires(
    db: str, engine: Engine, tmp_path: Path, records: Path, processes: list[ServiceProcess]
) -> None:
    scheduler, first, second, job_id = one_job_running(db, engine, tmp_path, records, processes, seconds=30)

    first.kill()
    killed_at = time.monotonic()
    wait_until(lambda: starts(records).get(second.pid) == [(job_id, 2)], 60, 0.02, "the job to run again")
    elapsed = time.monotonic() - killed_at

    # Taken back because its executor died, long before the lease (30 s) would have expired.
    job = get_jobs(engine, [job_id])[job_id]
    assert job.status is JobStatus.PROCESSING and job.attempts == 2
    assert job.error_message is not None and job.error_message.startswith("executor "), job.error_message
    assert "died: its database session ended" in job.error_message
    assert (rescued(scheduler, "executor_died"), rescued(scheduler, "lease_expired")) == (1, 0)
    print(f"\nSIGKILL to the job running again on another executor: {elapsed:.2f} s")


def test_a_live_executor_whose_liveness_session_is_terminated_keeps_its_job(
    db: str, engine: Engine, tmp_path: Path, records: Path, processes: list[ServiceProcess]
) -> None:
    """Its lock is gone for most of 6 s, but it keeps being seen through its pool: nothing is rescued,
    and it takes its lock again each time."""
    scheduler, running, _, job_id = one_job_running(db, engine, tmp_path, records, processes, seconds=10)

    terminated = 0
    until = time.monotonic() + 6
    while time.monotonic() < until:
        with engine.connect() as conn:
            for pid in liveness_lock_holders(engine, running):
                terminated += bool(conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar())
        time.sleep(0.2)
    assert terminated >= 3, f"the liveness session was terminated {terminated} times: it must come back each time"

    (job,) = wait_for_jobs(engine, [job_id], {JobStatus.COMPLETED}, timeout=30).values()
    assert job.attempts == 1
    assert starts(records) == {running.pid: [(job_id, 1)]}, "the job ran once, on its own executor"
    assert (rescued(scheduler, "executor_died"), rescued(scheduler, "lease_expired")) == (0, 0)
    wait_until(partial(holds_liveness_lock, engine, running), 10, what="the executor to hold its lock again")


def test_executors_ride_out_a_database_restart_without_their_jobs_running_twice(
    tmp_path: Path, records: Path, processes: list[ServiceProcess]
) -> None:
    """Every session drops at once, so every liveness lock is gone and every executor falls silent. The
    executors here are also slow to come back (stopped with SIGSTOP through the restart and for 3 s after
    the scheduler leads again, 1.5 times their liveness): the scheduler, whose own connection is new
    after the restart, never takes that silence for death, and each job runs once."""
    with PgInstance(tmp_path / "pg") as pg:
        migrate(pg.url)
        engine = create_engine(pg.url.replace("postgresql://", "postgresql+psycopg2://"), pool_pre_ping=True)
        try:
            scheduler = start_scheduler(pg.url, tmp_path)
            processes.append(scheduler)
            first, second = start_executor(pg.url, records), start_executor(pg.url, records)
            processes += [first, second]
            ids = submit(engine, "tests.record", {"first": True, "seconds": 12}, count=6, timeout_seconds=60)
            wait_until(lambda: sum(len(s) for s in starts(records).values()) == len(ids), 20, what="every job to start")

            for executor in (first, second):
                executor.signal(signal.SIGSTOP)
            try:
                pg.restart(down_seconds=2)
                wait_until(
                    lambda: scheduler.metric("scheduler_leadership_acquired_total") == 2, 30, what="leading again"
                )
                time.sleep(3)  # rescue passes run meanwhile, on the executors' silence
            finally:
                for executor in (first, second):
                    executor.signal(signal.SIGCONT)

            finished = wait_for_jobs(engine, ids, {JobStatus.COMPLETED}, timeout=60)
            assert {job.attempts for job in finished.values()} == {1}
            runs = sorted(run for runs in starts(records).values() for run in runs)
            assert runs == [(job_id, 1) for job_id in ids], "each job ran once"
            assert (rescued(scheduler, "executor_died"), rescued(scheduler, "lease_expired")) == (0, 0)
            for executor in (first, second):
                wait_until(partial(holds_liveness_lock, engine, executor), 20, what="its liveness lock again")
        finally:
            for process in processes:
                process.stop()
            engine.dispose()
