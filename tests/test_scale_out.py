"""Scale-out as KEDA would drive it, on one machine: executors added while a backlog drains raise the
throughput, and executors removed with SIGTERM mid-run lose no job (their unfinished leases are handed back,
the attempt not counted). Throughput is reported, never asserted: this machine's speed is not the point."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from shared.jobs import JobStatus
from tests.support.executors import submit, wait_for_jobs
from tests.support.processes import ServiceProcess, wait_until

pytestmark = pytest.mark.slow

HANDED_BACK = re.compile(r"handed (\d+) unfinished jobs back")
JOBS = 1500
WINDOW_SECONDS = 2.0
ENV = {
    "EXECUTOR_HANDLERS": "tests.handlers_for_tests",
    "EXECUTOR_CONCURRENCY": "4",
    # Shorter than any job: whatever a stopped executor is running when SIGTERM comes is handed back.
    "EXECUTOR_SHUTDOWN_GRACE_SECONDS": "0.01",
    "EXECUTOR_POLL_INTERVAL_SECONDS": "0.2",
    "METRICS_PORT": "0",
}


def completed(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM jobs WHERE status = 'COMPLETED'")).scalar_one())


def throughput(engine: Engine) -> float:
    before = completed(engine)
    time.sleep(WINDOW_SECONDS)
    return (completed(engine) - before) / WINDOW_SECONDS


def test_adding_executors_drains_faster_and_sigterm_loses_nothing(db: str, engine: Engine, tmp_path: Path) -> None:
    env = {"DATABASE_URL": db, "RECORD_DIR": str(tmp_path), **ENV}
    # Mostly 20 ms jobs; every tenth takes 0.5 s. The long ones fill about three quarters of every
    # executor's slot time, so a stopped executor is all but certainly running one, and it cannot finish
    # within the 10 ms grace. (With only short jobs, which an executor leases and runs four at a time,
    # a SIGTERM could land just as all four finish: nothing to hand back, and the test proved nothing.)
    ids: list[int] = []
    for _ in range(JOBS // 10):
        ids += submit(engine, "tests.record", {"seconds": 0.02}, count=9)
        ids += submit(engine, "tests.record", {"seconds": 0.5})
    executors: list[ServiceProcess] = []
    try:
        executors.append(ServiceProcess("services.executor", env, log_dir=tmp_path).start())
        time.sleep(1.0)  # start-up
        one = throughput(engine)
        executors += [ServiceProcess("services.executor", env, log_dir=tmp_path).start() for _ in range(2)]
        time.sleep(1.0)
        three = throughput(engine)
        # Both new executors are running jobs (each has finished one) before they are stopped.
        for executor in executors[1:]:
            assert executor.process is not None
            wait_until((tmp_path / f"{executor.process.pid}.log").exists, timeout=30)
        assert completed(engine) < JOBS, "the backlog drained before the scale-down: submit more jobs"
        for executor in executors[1:]:
            executor.signal(signal.SIGTERM)
        for executor in executors[1:]:
            assert executor.process is not None and executor.process.wait(20) == 0, executor.output()[-2000:]
        handed_back = sum(int(match) for executor in executors[1:] for match in HANDED_BACK.findall(executor.output()))
        jobs = wait_for_jobs(engine, ids, timeout=30)
    finally:
        for executor in executors:
            executor.stop()
    print(f"throughput: 1 executor {one:.0f} jobs/s, 3 executors {three:.0f} jobs/s")
    assert Counter(job.status for job in jobs.values()) == {JobStatus.COMPLETED: JOBS}
    # Handed-back attempts do not count: every job completed on its first counted attempt.
    assert {job.attempts for job in jobs.values()} == {1}
    executions = Counter(
        int(line.split()[0]) for path in tmp_path.glob("*.log") if path.stem.isdigit()
        for line in path.read_text().splitlines()
    )  # fmt: skip
    assert set(executions) == set(ids)
    # The scale-down really interrupted work: the stopped executors handed their running jobs back (none
    # can finish within the 10 ms grace), and those jobs then completed elsewhere on their first attempt.
    assert handed_back > 0, "no executor handed a job back: the scale-down interrupted nothing"
