"""1. drain: N no-op jobs queued first, then E executors started; jobs/s until every job is COMPLETED.

Every combination of ``--executors``, ``--concurrency`` and ``--drain-keys`` is measured ``--runs`` times
on one database (emptied before each run; each run goes through every combination in turn), and with
``--drain-default`` each ``--executors`` value once more with the executors' default concurrency (no
flag: what an executor started without settings does); the table shows the median of each combination,
and two ratios: the default against the best tuned drain, and the drain with fairness keys against the
same drain without.
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
# An executor without flags should drain at least this share of the best tuned drain (issue 20).
TARGET_DEFAULT_SHARE = 0.6
# Jobs spread over fairness keys should drain at least this share of the same jobs without keys.
TARGET_KEYS_SHARE = 0.8

Combination = tuple[int, "int | None", int]  # executors, concurrency (None: the default), keys


def run(ctx: BenchContext, config: BenchConfig) -> ScenarioResult:
    result = ScenarioResult(NAME, DESCRIPTION)
    wanted: list[Combination] = list(itertools.product(config.executors, config.concurrency, config.drain_keys))
    if config.drain_default:
        wanted += [(executors, None, 0) for executors in config.executors]
    measured: dict[Combination, list[DrainRun]] = {combination: [] for combination in wanted}
    with Cluster.start(ctx, NAME) as cluster:
        # Each run measures every combination once: the ratios below compare drains of the same minutes.
        for _ in range(config.runs):
            for (executors, concurrency, keys), runs in measured.items():
                truncate_jobs(cluster.conn)
                runs.append(
                    drain(
                        cluster,
                        config.drain_jobs,
                        executors,
                        concurrency,
                        config.prefill_callers,
                        config.drain_timeout,
                        keys=keys,
                    )
                )

    rates = {combination: median([r.jobs_per_second for r in runs]) for combination, runs in measured.items()}
    for combination, runs in measured.items():
        label = _label(combination, runs)
        incomplete = [r for r in runs if not r.all_completed]
        result.add(
            f"{label}: jobs/s",
            rates[combination],
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
    for executors in config.executors:
        tuned = {c: rate for c, rate in rates.items() if c[0] == executors and c[1] is not None and not c[2]}
        default = rates.get((executors, None, 0))
        if tuned and default is not None:
            best = max(tuned, key=tuned.__getitem__)
            result.add(
                f"E={executors}: default / best tuned",
                default / tuned[best] if tuned[best] else 0.0,
                "x",
                f">= {TARGET_DEFAULT_SHARE}",
                note=f"{default:,.0f} / {tuned[best]:,.0f} jobs/s (C={best[1]})",
            )
        for (e, concurrency, keys), rate in rates.items():
            plain = rates.get((e, concurrency, 0))
            if e == executors and keys and plain:
                result.add(
                    f"E={e} C={concurrency or 'default'}: {keys} keys / no keys",
                    rate / plain,
                    "x",
                    f">= {TARGET_KEYS_SHARE}",
                    note=f"{rate:,.0f} / {plain:,.0f} jobs/s",
                )
    result.details = {
        "jobs": config.drain_jobs,
        "all_completed": all(r.all_completed for runs in measured.values() for r in runs),
        "combinations": [
            {
                "executors": executors,
                "concurrency": concurrency,
                "keys": keys,
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
            for (executors, concurrency, keys), runs in measured.items()
        ],
    }
    return result


def _label(combination: Combination, runs: list[DrainRun]) -> str:
    executors, concurrency, keys = combination
    if concurrency is None:
        effective = runs[0].executor_settings.get("concurrency") if runs else None
        shown = f"default ({effective})" if effective is not None else "default"
    else:
        shown = str(concurrency)
    return f"E={executors} C={shown}" + (f" keys={keys}" if keys else "")
