"""A database restart under a busy executor: running jobs finish, their outcomes wait in memory and are
written once PostgreSQL is back, leasing and LISTEN resume by themselves, and the process never exits.

The database is a private server of this test (tests/support/pg_instance.py), never the shared one.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from shared.database.engine import create_database_engine
from shared.jobs import JobStatus
from tests.support.database import migrate
from tests.support.executors import get_jobs, submit, wait_for_jobs
from tests.support.pg_instance import PgInstance
from tests.support.processes import wait_until

JOBS = 150


@pytest.fixture
def private_pg(tmp_path: Path):
    with PgInstance(tmp_path / "pg") as pg:
        migrate(pg.url)
        yield pg


def executions(directory: Path) -> int:
    return sum(len(path.read_text().splitlines()) for path in directory.iterdir())


def test_a_database_restart_mid_run_loses_nothing(private_pg, start_executor, tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    engine = create_database_engine(private_pg.url, "tests")
    try:
        executor = start_executor(
            "--concurrency",
            "50",
            database_url=private_pg.url,
            env={"RECORD_DIR": str(records), "EXECUTOR_POLL_INTERVAL_SECONDS": "5"},
        )
        ids = submit(engine, "tests.record", {"seconds": 1}, count=JOBS)
        # The first 50 are done, the next 50 are running (leased: under load the lease can trail the 50th).
        wait_until(
            lambda: executions(records) >= 50 and executor.metric("jobs_running") > 0,
            20,
            what="the run to get going",
        )

        private_pg.stop()
        before = executions(records)
        # Jobs that were running when the database went away finish regardless.
        wait_until(lambda: executions(records) > before, 5, what="running jobs to finish during the outage")
        assert executor.metric("outcomes_pending") > 0
        assert executor.metric("database_up") == 0
        private_pg.start()

        jobs = wait_for_jobs(engine, ids, timeout=60)
        assert Counter(job.status for job in jobs.values()) == {JobStatus.COMPLETED: JOBS}
        assert executor.alive()
        output = executor.output()
        assert "database unavailable" in output
        assert "database available again" in output
        assert executor.metric("database_up") == 1

        # LISTEN reconnected: a new job starts long before the 5 s fallback poll.
        wait_until(lambda: "LISTEN connection lost" in executor.output(), 10)
        [job_id] = submit(engine, "echo", {"after": "restart"})
        job = wait_for_jobs(engine, [job_id], timeout=10)[job_id]
        assert job.status is JobStatus.COMPLETED
        assert (job.started_at - job.created_at).total_seconds() < 1.5
        assert get_jobs(engine, [job_id])[job_id].result == {"after": "restart"}
    finally:
        engine.dispose()
