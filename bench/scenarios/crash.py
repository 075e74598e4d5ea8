"""10. crash: how soon a job runs again after its executor is killed with SIGKILL, with default settings.

Each of ``--crash-rounds`` rounds starts an executor, gives it a 60 s ``sleep`` job, starts a second
executor, waits a random 1-2 s (so that the kill lands anywhere in the first one's heartbeat tick) and
kills the first with SIGKILL. The time is the database's: from a clock_timestamp() read right after the
kill to the second attempt's started_at. The scheduler and both executors run with the production
defaults for everything involved (lease 30 s, heartbeat tick 1 s, EXECUTOR_LIVENESS_SECONDS 2 s, rescue
every 1 s): without crash detection the job would wait out its lease, about 30 s. The machine's load
average is recorded before and after: on a busy machine every step of the path (the rescue pass, the
NOTIFY, the second executor's lease) can wait for a core.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

from bench.config import BenchConfig
from bench.harness import BenchContext, Cluster, wait_for
from bench.report import ScenarioResult
from bench.stats import median

NAME = "crash"
DESCRIPTION = "SIGKILL of an executor running a job: seconds until another executor runs it again (defaults)"

JOB_SECONDS = 60
# The executors drain at the end of a round: their job is cancelled, so they stop at once.
EXECUTOR_ENV = {"EXECUTOR_SHUTDOWN_GRACE_SECONDS": "1"}

SUBMIT_SQL = """
INSERT INTO jobs (type, status, payload, timeout_seconds)
VALUES ('sleep', 'READY', CAST(%s AS jsonb), %s)
RETURNING job_id
"""
ATTEMPT_SQL = "SELECT status::text, attempts, started_at, error_message FROM jobs WHERE job_id = %s"


def run(ctx: BenchContext, config: BenchConfig) -> ScenarioResult:
    result = ScenarioResult(NAME, DESCRIPTION)
    load_before = os.getloadavg()
    rounds: list[dict[str, Any]] = []
    with Cluster.start(ctx, NAME) as cluster:
        for number in range(config.crash_rounds):
            rounds.append(_one_round(cluster))
            ctx.say(f"crash: round {number + 1}: {rounds[-1]['seconds']:.2f} s ({rounds[-1]['reason']})")
    load_after = os.getloadavg()

    seconds = [r["seconds"] for r in rounds]
    load = f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    result.add("kill to re-run, median", median(seconds), "s", "<= 2", note=f"{len(seconds)} kills")
    result.add("kill to re-run, min", min(seconds), "s")
    result.add("kill to re-run, max", max(seconds), "s", "<= 5", note=load)
    died = sum(1 for r in rounds if r["reason"] == "executor died")
    if died != len(rounds):
        result.add("rescued by lease expiry, not death", len(rounds) - died, "kills")
    result.details = {"rounds": rounds, "load_average_before": load_before, "load_average_after": load_after}
    return result


def _one_round(cluster: Cluster) -> dict[str, Any]:
    with (
        cluster.executors(1, 1, EXECUTOR_ENV, types="sleep") as victim,
        cluster.executors(1, 1, EXECUTOR_ENV, types="sleep") as rescuer,
    ):
        victim.start()
        ((job_id,),) = cluster.execute(SUBMIT_SQL, (json.dumps({"seconds": JOB_SECONDS}), 2 * JOB_SECONDS))
        wait_for(lambda: _attempt(cluster, job_id)[:2] == ("PROCESSING", 1), 60, "the job to start")
        rescuer.start()
        time.sleep(1 + random.random())
        victim.processes[0].kill()
        ((killed_at,),) = cluster.execute("SELECT clock_timestamp()")
        wait_for(lambda: _attempt(cluster, job_id)[:2] == ("PROCESSING", 2), 120, "the job to run again", 0.01)
        _, _, started_at, error_message = _attempt(cluster, job_id)
        cluster.execute("UPDATE jobs SET cancel_requested = true WHERE job_id = %s", (job_id,))
    reason = "executor died" if " died: " in (error_message or "") else "lease expired"
    return {"job_id": job_id, "seconds": (started_at - killed_at).total_seconds(), "reason": reason}


def _attempt(cluster: Cluster, job_id: int) -> tuple[Any, ...]:
    ((status, attempts, started_at, error_message),) = cluster.execute(ATTEMPT_SQL, (job_id,))
    return status, attempts, started_at, error_message
