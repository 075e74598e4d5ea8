"""4. batch: SubmitJobs with 1000 jobs per call from a few concurrent callers; jobs/s.

``--batch-callers`` processes each keep ``--batch-in-flight`` calls outstanding for
``--batch-seconds``. No executor runs. The table is emptied before each of the ``--runs`` runs, so
every run inserts into a table of the same size; the table shows the median.
"""

from __future__ import annotations

from bench.config import BenchConfig
from bench.harness import BenchContext, Cluster, truncate_jobs
from bench.loadgen import LoadResult, LoadSpec
from bench.report import ScenarioResult
from bench.scenarios.common import load_with_api_cpu, summary
from bench.stats import median

NAME = "batch"
DESCRIPTION = "SubmitJobs, 1000 jobs per call, a few concurrent callers: jobs/s"


def run(ctx: BenchContext, config: BenchConfig) -> ScenarioResult:
    result = ScenarioResult(NAME, DESCRIPTION)
    runs: list[LoadResult] = []
    api_cores: list[float] = []
    with Cluster.start(ctx, NAME) as cluster:
        for number in range(config.runs):
            truncate_jobs(cluster.conn)
            ctx.say(f"batch: {config.batch_callers} callers x {config.batch_in_flight} in flight, run {number + 1}")
            specs = [
                LoadSpec(
                    target=cluster.target,
                    kind="batch",
                    batch_size=config.batch_size,
                    concurrency=config.batch_in_flight,
                    channels=config.channels,
                    duration=config.batch_seconds,
                    warmup=config.warmup_seconds,
                )
                for _ in range(config.batch_callers)
            ]
            load, cores = load_with_api_cpu(cluster, specs, timeout=config.batch_seconds + config.warmup_seconds + 120)
            runs.append(load)
            api_cores.append(cores)
    summaries = [{**summary(r), "api_cores": round(c, 2)} for r, c in zip(runs, api_cores, strict=True)]
    callers = f"{config.batch_callers}x{config.batch_in_flight} callers"
    result.add(
        "jobs/s",
        median([r.jobs_per_second for r in runs]),
        "jobs/s",
        ">= 40000",
        note=f"median of {len(runs)}; {config.batch_size}/call; {callers}; api {median(api_cores):.2f} cores",
    )
    result.add("call p50", median([s["latency"]["p50_ms"] for s in summaries]), "ms")
    result.add("call p99", median([s["latency"]["p99_ms"] for s in summaries]), "ms")
    errors = sum(r.errors for r in runs)
    if errors:
        result.add("errors", errors, "calls")
    result.details = {
        "batch_size": config.batch_size,
        "callers": config.batch_callers,
        "in_flight_per_caller": config.batch_in_flight,
        "runs": summaries,
    }
    return result
