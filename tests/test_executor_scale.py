"""Several executor processes on one queue: every job runs exactly once when nothing crashes."""

from __future__ import annotations

from collections import Counter

from shared.jobs import JobStatus
from tests.support.executors import submit, wait_for_jobs
from tests.support.processes import wait_until

JOBS = 2000
EXECUTORS = 4


def test_four_executors_complete_2000_jobs_exactly_once(engine, start_executor, tmp_path):
    processes = [start_executor("--concurrency", "16", env={"RECORD_DIR": str(tmp_path)}) for _ in range(EXECUTORS)]
    ids = submit(engine, "tests.record", {}, count=JOBS)
    jobs = wait_for_jobs(engine, ids, timeout=60)

    assert Counter(job.status for job in jobs.values()) == {JobStatus.COMPLETED: JOBS}
    assert {job.attempts for job in jobs.values()} == {1}
    assert all(job.result == {"job_id": job.job_id} for job in jobs.values())

    # Every execution appended "job_id attempt" to its process's file: each job ran once, in one place.
    executions = Counter(int(line.split()[0]) for path in tmp_path.iterdir() for line in path.read_text().splitlines())
    assert sorted(executions) == sorted(ids)
    assert set(executions.values()) == {1}

    # The executors' own counts agree, and the work was shared.
    def completed_per_executor() -> list[float]:
        return [process.metric("jobs_completed_total", job_type="tests.record") for process in processes]

    wait_until(lambda: sum(completed_per_executor()) == JOBS, 10, what="metrics to add up")
    assert sum(process.metric("leases_taken_total") for process in processes) == JOBS
    assert sum(process.metric("stale_outcomes_total") for process in processes) == 0
    assert sum(1 for count in completed_per_executor() if count > 0) >= 2
