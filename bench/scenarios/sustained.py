"""2. sustained: producers and executors at once for a fixed time.

Executors start first and idle; then ``--sustained-producers`` processes submit SubmitJobs batches of
``--sustained-batch`` jobs, together offering ``--sustained-rate`` jobs/s (0: as fast as they can),
for ``--sustained-seconds``. Completed jobs/s is the growth of the COMPLETED count over that window;
the backlog is READY + PENDING at its end (PROCESSING is reported apart). A backlog that grows over
the window means the executors do not keep up with the offered rate.
"""

from __future__ import annotations

import time
from typing import Any

from bench.config import BenchConfig
from bench.harness import BenchContext, Cluster, CpuWindow
from bench.loadgen import LoadSpec, WorkerGroup
from bench.report import ScenarioResult
from bench.scenarios.common import summary
from bench.stats import latency_summary

NAME = "sustained"
DESCRIPTION = "producers (SubmitJobs batches) and executors at once: completed jobs/s and the backlog at the end"
SAMPLE_SECONDS = 1.0


def run(ctx: BenchContext, config: BenchConfig) -> ScenarioResult:
    result = ScenarioResult(NAME, DESCRIPTION)
    executors, concurrency = config.executors[0], config.concurrency[0]
    producers = max(1, config.sustained_producers)
    rate = config.sustained_rate / producers if config.sustained_rate > 0 else None
    duration = config.sustained_seconds
    timeline: list[dict[str, Any]] = []
    with Cluster.start(ctx, NAME) as cluster:
        spec = LoadSpec(
            target=cluster.target,
            kind="batch",
            batch_size=config.sustained_batch,
            duration=duration,
            rate=rate,
            concurrency=1,  # closed loop (unlimited producers): one call at a time per producer
            max_in_flight=8,  # open loop: a slow call does not lower the offered rate
        )
        specs = [spec] * producers
        with cluster.executors(executors, concurrency) as fleet:
            fleet.start()
            settings = fleet.settings()
            with WorkerGroup(specs) as group:
                ctx.say(
                    f"sustained: {producers} producers, {config.sustained_rate or 'unlimited'} jobs/s, {duration:g} s"
                )
                group.go()
                window = CpuWindow(cluster, fleet)
                window.start()
                started = time.monotonic()
                first = cluster.counts()
                timeline.append({"t": 0.0, **first})
                end = started + duration
                while (now := time.monotonic()) < end:
                    time.sleep(min(SAMPLE_SECONDS, end - now))
                    timeline.append({"t": round(time.monotonic() - started, 2), **cluster.counts()})
                last = timeline[-1]
                cores = window.stop()
                elapsed = last["t"]
                load = group.results(timeout=duration + 60)

    completed = last["COMPLETED"] - first["COMPLETED"]
    backlog = last["READY"] + last["PENDING"]
    offered = f"{config.sustained_rate:,.0f} jobs/s offered" if config.sustained_rate > 0 else "unlimited producers"
    result.add(
        "completed jobs/s", completed / elapsed if elapsed else 0.0, "jobs/s", note=f"E={executors} C={concurrency}"
    )
    result.add("submitted jobs/s", load.jobs_per_second, "jobs/s", note=offered)
    result.add("backlog at end (READY+PENDING)", backlog, "jobs", note=f"PROCESSING {last['PROCESSING']}")
    result.add("backlog growth", (backlog - first["READY"] - first["PENDING"]) / elapsed if elapsed else 0.0, "jobs/s")
    result.add(
        "SubmitJobs p99",
        latency_summary(load.latencies)["p99_ms"],
        "ms",
        note=f"{config.sustained_batch} jobs per call",
    )
    result.details = {
        "executor_settings": settings,
        "producers": producers,
        "offered_jobs_per_second": config.sustained_rate,
        "batch_size": config.sustained_batch,
        "window_seconds": elapsed,
        "completed_in_window": completed,
        "backlog_at_end": backlog,
        "submit": summary(load),
        "cpu_cores": cores,  # over the window: api, scheduler, executor1..E
        "timeline": timeline,
    }
    return result
