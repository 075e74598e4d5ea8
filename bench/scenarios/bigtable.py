"""6. bigtable: the hot paths with a million finished jobs in the table, against an empty table.

Each phase measures, on the same api and database:

- lease: ``--big-lease-jobs`` READY jobs are inserted, then leased ``--big-lease-batch`` at a time and
  completed with the executor's own gateway operations (shared.database.Database), timed per call
  (``--runs`` times; the median of each percentile);
- drain: ``--big-drain-jobs`` jobs submitted through SubmitJobs, drained by one executor (``--runs``
  times, median);
- SubmitJob latency: a closed loop at ``--big-submit-concurrency`` for ``--big-seconds``;
- GetStats latency: one caller for ``--big-seconds``.

Between the phases ``--big-rows`` COMPLETED jobs are inserted with one INSERT ... SELECT
generate_series (finished an hour ago, well inside the retention, so the scheduler keeps them) and
the table is VACUUM ANALYZEd. Each phase starts with a CHECKPOINT, so that neither pays for writing back
what came before it. The jobs SubmitJob created are marked COMPLETED at the end of a phase. The slowdown
ratios are big / empty (1.00 = no slowdown).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg2

from bench.config import BenchConfig
from bench.harness import BenchContext, Cluster
from bench.loadgen import LoadSpec, run_workers
from bench.report import ScenarioResult
from bench.scenarios.common import drain, summary
from bench.stats import latency_summary, median

NAME = "bigtable"
DESCRIPTION = "lease, drain, SubmitJob and GetStats with a million finished jobs in the table vs an empty table"

INSERT_READY_SQL = """
INSERT INTO jobs (type, status, timeout_seconds)
SELECT 'echo', 'READY', 300 FROM generate_series(1, %s)
"""

INSERT_FINISHED_SQL = """
INSERT INTO jobs (type, status, priority, run_at, attempts, max_attempts, timeout_seconds,
                  created_at, updated_at, started_at, finished_at, payload, result)
SELECT 'echo', 'COMPLETED', 5, t, 1, 3, 300, t, t + interval '2 ms', t + interval '1 ms', t + interval '2 ms',
       '{}'::jsonb, '{}'::jsonb
FROM (SELECT now() - interval '1 hour' + g * interval '1 microsecond' AS t
      FROM generate_series(1, %s) AS g) AS s
"""


def run(ctx: BenchContext, config: BenchConfig) -> ScenarioResult:
    result = ScenarioResult(NAME, DESCRIPTION)
    phases: dict[str, dict[str, Any]] = {}
    with Cluster.start(ctx, NAME) as cluster:
        phases["empty"] = _measure(ctx, cluster, config, "empty")
        ctx.say(f"bigtable: inserting {config.big_rows:,} finished jobs")
        began = time.monotonic()
        cluster.execute(INSERT_FINISHED_SQL, (config.big_rows,))
        inserted = time.monotonic()
        cluster.execute("VACUUM ANALYZE jobs")
        vacuumed = time.monotonic()
        size = cluster.execute("SELECT pg_total_relation_size('jobs'), pg_relation_size('jobs')")[0]
        phases["big"] = _measure(ctx, cluster, config, "big")

    empty, big = phases["empty"], phases["big"]

    def ratio(path: tuple[str, ...], invert: bool = False) -> float:
        a: Any = empty
        b: Any = big
        for key in path:
            a, b = a[key], b[key]
        if not a or not b:
            return float("nan")
        return float(a) / float(b) if invert else float(b) / float(a)

    rows = f"{config.big_rows:,} rows"
    result.add(
        "lease p50 slowdown",
        ratio(("lease", "p50_ms")),
        "x",
        "< 1.2",
        note=f"{empty['lease']['p50_ms']:.2f} -> {big['lease']['p50_ms']:.2f} ms, {rows}",
    )
    result.add(
        "complete p50 slowdown",
        ratio(("complete", "p50_ms")),
        "x",
        note=f"{empty['complete']['p50_ms']:.2f} -> {big['complete']['p50_ms']:.2f} ms",
    )
    result.add(
        "drain slowdown",
        ratio(("drain_jobs_per_second",), invert=True),
        "x",
        note=f"{empty['drain_jobs_per_second']:,.0f} -> {big['drain_jobs_per_second']:,.0f} jobs/s, 1 executor",
    )
    result.add(
        "SubmitJob p50 slowdown",
        ratio(("submit", "latency", "p50_ms")),
        "x",
        "< 1.2",
        note=f"{empty['submit']['latency']['p50_ms']:.2f} -> {big['submit']['latency']['p50_ms']:.2f} ms",
    )
    result.add(
        "SubmitJob p99 slowdown",
        ratio(("submit", "latency", "p99_ms")),
        "x",
        note=f"{empty['submit']['latency']['p99_ms']:.2f} -> {big['submit']['latency']['p99_ms']:.2f} ms",
    )
    result.add(
        "GetStats p50 slowdown",
        ratio(("stats", "latency", "p50_ms")),
        "x",
        note=f"{empty['stats']['latency']['p50_ms']:.2f} -> {big['stats']['latency']['p50_ms']:.2f} ms",
    )
    result.add("insert of the finished rows", inserted - began, "s", note=f"VACUUM ANALYZE {vacuumed - inserted:.1f} s")
    result.details = {
        "finished_rows": config.big_rows,
        "insert_seconds": inserted - began,
        "vacuum_analyze_seconds": vacuumed - inserted,
        "jobs_total_bytes": int(size[0]),
        "jobs_heap_bytes": int(size[1]),
        "phases": phases,
    }
    return result


def _measure(ctx: BenchContext, cluster: Cluster, config: BenchConfig, label: str) -> dict[str, Any]:
    checkpointed = _checkpoint(cluster)
    ctx.say(f"bigtable ({label}): lease and complete {config.big_lease_jobs} jobs by SQL, {config.runs} times")
    leases = [_lease_and_complete(cluster, config) for _ in range(config.runs)]

    ctx.say(f"bigtable ({label}): drain {config.big_drain_jobs} jobs with one executor, {config.runs} times")
    drains = [
        drain(cluster, config.big_drain_jobs, 1, config.concurrency[0], 1, config.drain_timeout)
        for _ in range(config.runs)
    ]

    ctx.say(f"bigtable ({label}): SubmitJob and GetStats latency")
    warmup = min(config.warmup_seconds, 0.5)
    submit = run_workers(
        [
            LoadSpec(
                target=cluster.target,
                kind="unary",
                concurrency=config.big_submit_concurrency,
                duration=config.big_seconds,
                warmup=warmup,
            )
        ],
        timeout=config.big_seconds + 60,
    )
    stats = run_workers(
        [LoadSpec(target=cluster.target, kind="stats", duration=config.big_seconds, warmup=warmup)],
        timeout=config.big_seconds + 60,
    )
    # The jobs SubmitJob made would be leased by the next phase's measurement: finish them here.
    cluster.execute(
        "UPDATE jobs SET status = 'COMPLETED', started_at = now(), finished_at = now(), attempts = 1 "
        "WHERE status = 'READY'"
    )
    rows = int(cluster.execute("SELECT count(*) FROM jobs")[0][0])
    return {
        "rows": rows,
        "checkpoint_before": checkpointed,
        "lease": {**_median_summary([run["lease"] for run in leases]), "batch": config.big_lease_batch},
        "complete": _median_summary([run["complete"] for run in leases]),
        "lease_runs": leases,
        "drain_jobs_per_second": median([d.jobs_per_second for d in drains]),
        "drain_runs_jobs_per_second": [d.jobs_per_second for d in drains],
        "drain_all_completed": all(d.all_completed for d in drains),
        "submit": summary(submit),
        "stats": summary(stats),
    }


def _checkpoint(cluster: Cluster) -> bool:
    """CHECKPOINT, so that writing back what came before (a million inserted rows) is not measured.

    It needs a superuser or pg_checkpoint; without, the phase runs anyway (False in the JSON).
    """
    try:
        cluster.execute("CHECKPOINT")
    except psycopg2.Error:
        return False
    return True


def _lease_and_complete(cluster: Cluster, config: BenchConfig) -> dict[str, Any]:
    """Insert READY jobs, then lease and complete them in batches with the executor's statements, timed."""
    if cluster.execute("SELECT count(*) FROM jobs WHERE status IN ('READY', 'PROCESSING')")[0][0]:
        raise RuntimeError("bigtable: jobs are READY or PROCESSING before the lease measurement")
    cluster.execute(INSERT_READY_SQL, (config.big_lease_jobs,))
    cluster.execute("ANALYZE jobs")
    leases: list[float] = []
    completes: list[float] = []
    leased = asyncio.run(_lease_and_complete_all(cluster.database_url, config.big_lease_batch, leases, completes))
    cluster.execute(
        "UPDATE jobs SET status = 'COMPLETED', finished_at = now(), lease_owner = NULL, "
        "lease_token = NULL, lease_expires_at = NULL WHERE status = 'PROCESSING'"
    )
    return {"jobs": leased, "lease": latency_summary(leases), "complete": latency_summary(completes)}


async def _lease_and_complete_all(database_url: str, batch: int, leases: list[float], completes: list[float]) -> int:
    """Lease ``batch`` READY echo jobs at a time and complete them, through the executor's gateway
    operations, until none is left; each call's time goes to ``leases`` / ``completes``."""
    from shared.database import Database, JobOutcome
    from shared.jobs import JobStatus

    db = Database(database_url, "jobs-bench", pool_size=1)
    leased = 0
    try:
        # Connects (not timed); the job it takes is finished below.
        await db.lease_jobs("bench", ["echo"], 1, 30)
        while True:
            began = time.perf_counter()
            jobs = await db.lease_jobs("bench", ["echo"], batch, 30)
            between = time.perf_counter()
            if not jobs:
                return leased
            outcomes = [JobOutcome(job.job_id, job.lease_token, JobStatus.COMPLETED, "{}") for job in jobs]
            await db.complete_jobs(outcomes, "bench")
            ended = time.perf_counter()
            leases.append(between - began)
            completes.append(ended - between)
            leased += len(jobs)
    finally:
        db.close()


def _median_summary(summaries: list[dict[str, float]]) -> dict[str, float]:
    """Per key, the median over the runs' latency summaries."""
    return {key: median([s[key] for s in summaries]) for key in summaries[0]} if summaries else {}
