"""9. bulk: CancelJobs and RetryJobs of N jobs of one type while executors drain another type.

``--bulk-jobs`` READY jobs of a type no executor takes are inserted with one ``INSERT ... SELECT
generate_series``. Before each call ``--bulk-drain-jobs`` echo jobs are queued through SubmitJobs and the
executors started on them, so that they have work while it runs: CancelJobs cancels the N jobs (filter:
type and READY), then RetryJobs re-queues them (type and CANCELLED). Each call is timed by the
client, from the request to the answer (which comes once every job is done); the echo jobs completed
during the call, and those still queued when it ended, show that the executors kept working throughout
(the bulk actions lock at most a page of 1,000 jobs at a time).
"""

from __future__ import annotations

import time

from bench.config import BenchConfig
from bench.harness import BenchContext, Cluster
from bench.report import ScenarioResult
from bench.scenarios.common import prefill
from jobclient import JobClient, JobFilter

NAME = "bulk"
DESCRIPTION = "CancelJobs then RetryJobs of N jobs of one type by filter, while executors drain echo jobs"
TARGET_SECONDS = 60.0
PARKED_TYPE = "bench.parked"  # no executor has a handler for it: its jobs stay where they are put

INSERT_PARKED_SQL = """
INSERT INTO jobs (type, status, timeout_seconds)
SELECT %s, 'READY', 300 FROM generate_series(1, %s)
"""


def _echo_jobs(cluster: Cluster, condition: str) -> int:
    return int(cluster.execute(f"SELECT count(*) FROM jobs WHERE type = 'echo' AND {condition}")[0][0])


def run(ctx: BenchContext, config: BenchConfig) -> ScenarioResult:
    result = ScenarioResult(NAME, DESCRIPTION)
    timings: dict[str, dict[str, float]] = {}
    with Cluster.start(ctx, NAME) as cluster:
        ctx.say(f"bulk: inserting {config.bulk_jobs:,} {PARKED_TYPE} jobs")
        cluster.execute(INSERT_PARKED_SQL, (PARKED_TYPE, config.bulk_jobs))
        cluster.execute("VACUUM ANALYZE jobs")
        with JobClient(cluster.target) as client:
            for name, call, status in (
                ("CancelJobs", client.cancel_jobs, "READY"),
                ("RetryJobs", client.retry_jobs, "CANCELLED"),
            ):
                # A backlog queued while no executor runs, so that the executors are busy from the start.
                prefill(cluster, config.bulk_drain_jobs, config.prefill_callers)
                with cluster.executors(config.executors[0], config.concurrency[0]) as fleet:
                    fleet.start()
                    completed = _echo_jobs(cluster, "status = 'COMPLETED'")
                    began = time.monotonic()
                    count = call(JobFilter(type=PARKED_TYPE, status=status))
                    seconds = time.monotonic() - began
                    drained = _echo_jobs(cluster, "status = 'COMPLETED'") - completed
                    queued = _echo_jobs(cluster, "status <> 'COMPLETED'")
                ctx.say(
                    f"bulk: {name} changed {count:,} jobs in {seconds:.2f} s; {drained:,} echo jobs completed "
                    f"meanwhile, {queued:,} still queued"
                )
                timings[name] = {
                    "count": count,
                    "seconds": round(seconds, 3),
                    "echo_completed_meanwhile": drained,
                    "echo_queued_at_the_end": queued,
                }
    for name, timing in timings.items():
        result.add(
            f"{name} of {config.bulk_jobs:,} jobs",
            timing["seconds"],
            "s",
            f"<= {TARGET_SECONDS:g}",
            note=f"{int(timing['count']):,} changed; {int(timing['echo_completed_meanwhile']):,} echo jobs "
            f"completed meanwhile, {int(timing['echo_queued_at_the_end']):,} still queued",
        )
    result.details = {"jobs": config.bulk_jobs, "drain_jobs": config.bulk_drain_jobs, "calls": timings}
    return result
