"""5. latency: submit-to-start at a steady offered rate.

Executors run and idle; one client sends SubmitJob at ``--latency-rate`` per second on a fixed
schedule for ``--latency-seconds`` (after the warm-up). Once every job has finished, the database
says how long each waited: ``started_at - created_at`` (both the database's clock: created_at is the
submitting transaction's start, started_at the leasing one's), for the jobs created after the warm-up.
"""

from __future__ import annotations

import time
from typing import Any

from bench.config import BenchConfig
from bench.harness import ACTIVE, BenchContext, Cluster, CpuWindow, wait_for
from bench.loadgen import LoadSpec, run_workers
from bench.report import ScenarioResult
from bench.scenarios.common import summary
from bench.stats import latency_summary

NAME = "latency"
DESCRIPTION = "submit-to-start (started_at - created_at) at a steady offered SubmitJob rate, executors running"

QUANTILES_SQL = """
SELECT count(*),
       percentile_cont(0.50) WITHIN GROUP (ORDER BY wait),
       percentile_cont(0.90) WITHIN GROUP (ORDER BY wait),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY wait),
       max(wait),
       percentile_cont(0.50) WITHIN GROUP (ORDER BY total),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY total),
       count(*) FILTER (WHERE status <> 'COMPLETED')
FROM (
    SELECT status,
           1000 * extract(epoch FROM started_at - created_at) AS wait,
           1000 * extract(epoch FROM finished_at - created_at) AS total
    FROM jobs
    WHERE created_at >= to_timestamp(%s)
) AS waits
"""


def run(ctx: BenchContext, config: BenchConfig) -> ScenarioResult:
    result = ScenarioResult(NAME, DESCRIPTION)
    executors, concurrency = config.executors[0], config.concurrency[0]
    started: list[float] = []
    with Cluster.start(ctx, NAME) as cluster:
        with cluster.executors(executors, concurrency) as fleet:
            fleet.start()
            settings = fleet.settings()
            time.sleep(0.5)  # let the executors connect and LISTEN
            ctx.say(f"latency: {config.latency_rate:g} SubmitJob/s for {config.latency_seconds:g} s")
            spec = LoadSpec(
                target=cluster.target,
                kind="unary",
                rate=config.latency_rate,
                duration=config.latency_seconds,
                warmup=config.warmup_seconds,
            )
            window = CpuWindow(cluster, fleet)

            def on_start(at: float) -> None:
                started.append(at)
                window.start()

            load = run_workers(
                [spec],
                timeout=config.latency_seconds + config.warmup_seconds + 60,
                on_start=on_start,
            )
            cores = window.stop()
            wait_for(lambda: not any(cluster.counts()[s] for s in ACTIVE), 120, "every job to finish")
        row = cluster.execute(QUANTILES_SQL, (started[0] + config.warmup_seconds,))[0]

    count, p50, p90, p99, worst, total50, total99, unfinished = (
        float(v) if v is not None else float("nan") for v in row
    )
    rate = f"{config.latency_rate:,.0f}/s offered"
    result.add("submit-to-start p50", p50, "ms", "<= 5", note=rate)
    result.add("submit-to-start p99", p99, "ms", "<= 25", note=f"{int(count)} jobs")
    result.add("submit-to-start max", worst, "ms")
    result.add("submit-to-finish p50", total50, "ms")
    result.add(
        "SubmitJob p99", latency_summary(load.scheduled_latencies)["p99_ms"], "ms", note="client, from scheduled send"
    )
    if unfinished or load.errors or load.dropped:
        result.add("not completed / errors", unfinished + load.errors + load.dropped, "jobs")
    details: dict[str, Any] = {
        "executor_settings": settings,
        "offered_per_second": config.latency_rate,
        "jobs_measured": int(count),
        "submit_to_start_ms": {"p50": p50, "p90": p90, "p99": p99, "max": worst},
        "submit_to_finish_ms": {"p50": total50, "p99": total99},
        "submit": summary(load, scheduled=True),
        "cpu_cores": cores,  # while the load ran: api, scheduler, executor1..E
    }
    result.details = details
    return result
