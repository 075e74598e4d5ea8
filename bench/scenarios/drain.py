"""1. drain: N no-op jobs queued first, then E executors started; jobs/s until every job is COMPLETED.

Every combination of ``--executors`` and ``--concurrency`` is measured ``--runs`` times on one
database (emptied before each run); the table shows the median of each combination.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict

from bench.config import BenchConfig
from bench.harness import BenchContext, Cluster, truncate_jobs
from bench.report import ScenarioResult
from bench.scenarios.common import DrainRun, drain
from bench.stats import median

NAME = "drain"
DESCRIPTION = "N echo jobs submitted in batches of 1000, then E executors started: jobs/s until all are COMPLETED"
TARGET_JOBS_PER_SECOND = 20_000


def run(ctx: BenchContext, config: BenchConfig) -> ScenarioResult:
    result = ScenarioResult(NAME, DESCRIPTION)
    combinations = []
    with Cluster.start(ctx, NAME) as cluster:
        for executors, concurrency in itertools.product(config.executors, config.concurrency):
            runs: list[DrainRun] = []
            for _ in range(config.runs):
                truncate_jobs(cluster.conn)
                runs.append(
                    drain(
                        cluster, config.drain_jobs, executors, concurrency, config.prefill_callers, config.drain_timeout
                    )
                )
            combinations.append((executors, concurrency, runs))

    for executors, concurrency, runs in combinations:
        label = f"E={executors} C={concurrency}"
        incomplete = [r for r in runs if not r.all_completed]
        result.add(
            f"{label}: jobs/s",
            median([r.jobs_per_second for r in runs]),
            "jobs/s",
            f">= {TARGET_JOBS_PER_SECOND}",
            note=f"median of {len(runs)}; N={config.drain_jobs}"
            + (f"; {len(incomplete)} runs INCOMPLETE" if incomplete else ""),
        )
        result.add(
            f"{label}: jobs/s by DB clock",
            median([r.jobs_per_second_db for r in runs]),
            "jobs/s",
            note="first started_at to last finished_at",
        )
        result.add(
            f"{label}: executor start-up", median([r.launch_to_ready_seconds for r in runs]), "s", note="not in jobs/s"
        )
    result.details = {
        "jobs": config.drain_jobs,
        "all_completed": all(r.all_completed for _, _, runs in combinations for r in runs),
        "combinations": [
            {
                "executors": executors,
                "concurrency": concurrency,
                "median_jobs_per_second": median([r.jobs_per_second for r in runs]),
                "median_jobs_per_second_db": median([r.jobs_per_second_db for r in runs]),
                "median_jobs_per_second_from_launch": median([r.jobs_per_second_from_launch for r in runs]),
                "executor_settings": runs[0].executor_settings if runs else {},
                "runs": [
                    {
                        **{k: v for k, v in asdict(r).items() if k != "executor_settings"},
                        "jobs_per_second": r.jobs_per_second,
                        "jobs_per_second_db": r.jobs_per_second_db,
                        "jobs_per_second_from_launch": r.jobs_per_second_from_launch,
                    }
                    for r in runs
                ],
            }
            for executors, concurrency, runs in combinations
        ],
    }
    return result
