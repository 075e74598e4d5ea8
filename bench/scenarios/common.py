"""Steps several scenarios share: filling the queue through the API, and draining it with executors."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bench.harness import ACTIVE, Cluster, cpu_seconds, job_counts
from bench.loadgen import LoadResult, LoadSpec, run_workers
from bench.report import ScenarioResult
from bench.stats import latency_summary

__all__ = ["DrainRun", "add_fixed_rate", "drain", "load_with_api_cpu", "prefill", "split", "summary"]

POLL_SECONDS = 0.02
SAMPLE_SECONDS = 0.5


def split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` nearly equal shares (no empty ones)."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def prefill(cluster: Cluster, jobs: int, callers: int, batch_size: int = 1000, keys: int = 0) -> LoadResult:
    """Submit ``jobs`` echo jobs with SubmitJobs (``batch_size`` per call) from ``callers`` processes,
    spread round-robin over ``keys`` fairness keys (0: none)."""
    specs = [
        LoadSpec(target=cluster.target, kind="batch", total_jobs=share, batch_size=batch_size, fairness_keys=keys)
        for share in split(jobs, callers)
    ]
    result = run_workers(specs, timeout=600)
    if result.errors or result.jobs != jobs:
        raise RuntimeError(f"prefill: {result.jobs} of {jobs} jobs accepted; errors: {result.error_samples}")
    return result


def load_with_api_cpu(cluster: Cluster, specs: list[LoadSpec], timeout: float) -> tuple[LoadResult, float]:
    """Run the load generators; also how many cores the api process used meanwhile (1.0 = one core).

    An api near 1.0 is bound by its own interpreter; a client near 1.0 (LoadResult.cpu_seconds over
    the elapsed time) would mean the client, not the service, is the limit.
    """
    mark: dict[str, float] = {}

    def on_start(_: float) -> None:
        mark["cpu"] = cpu_seconds(cluster.api.pid)
        mark["time"] = time.monotonic()

    result = run_workers(specs, timeout, on_start)
    wall = time.monotonic() - mark["time"]
    return result, (cpu_seconds(cluster.api.pid) - mark["cpu"]) / wall if wall > 0 else float("nan")


@dataclass
class DrainRun:
    """One drain: N READY jobs, E executors started, until none is left."""

    jobs: int
    executors: int
    concurrency: int | None  # None: the executors' default
    keys: int = 0  # fairness keys the jobs were spread over
    prefill_jobs_per_second: float = 0.0
    launch_to_ready_seconds: float = 0.0
    ready_to_done_seconds: float = 0.0
    launch_to_done_seconds: float = 0.0
    db_seconds: float = 0.0  # first started_at to last finished_at, by the database's clock
    completed: int = 0
    failed: int = 0
    cpu_seconds: dict[str, Any] = field(default_factory=dict)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since ready, jobs completed)
    executor_settings: dict[str, Any] = field(default_factory=dict)

    @property
    def jobs_per_second(self) -> float:
        """N / (executors ready -> all COMPLETED): the headline number."""
        return self.jobs / self.ready_to_done_seconds if self.ready_to_done_seconds > 0 else 0.0

    @property
    def jobs_per_second_from_launch(self) -> float:
        return self.jobs / self.launch_to_done_seconds if self.launch_to_done_seconds > 0 else 0.0

    @property
    def jobs_per_second_db(self) -> float:
        return self.jobs / self.db_seconds if self.db_seconds > 0 else 0.0

    @property
    def all_completed(self) -> bool:
        return self.completed == self.jobs


def drain(
    cluster: Cluster,
    jobs: int,
    executors: int,
    concurrency: int | None,
    prefill_callers: int,
    timeout: float,
    executor_env: dict[str, str] | None = None,
    keys: int = 0,
) -> DrainRun:
    """Submit ``jobs`` jobs while no executor runs, then start the executors and time the drain.
    ``concurrency`` None leaves the executors' default; ``keys`` spreads the jobs over fairness keys.

    The queue need not be empty: only the jobs submitted here are counted (by id), and the run ends
    when no job is PENDING, READY or PROCESSING.
    """
    ctx = cluster.ctx
    before = cluster.counts()
    if any(before[status] for status in ACTIVE):
        raise RuntimeError(f"drain: the queue is not idle before the run: {before}")
    first_id = int(cluster.execute("SELECT coalesce(max(job_id), 0) FROM jobs")[0][0]) + 1
    ctx.say(f"drain: submitting {jobs} jobs")
    filled = prefill(cluster, jobs, prefill_callers, keys=keys)
    # Fresh statistics for the planner, as autovacuum would give a long-lived table.
    cluster.execute("ANALYZE jobs")
    run = DrainRun(jobs, executors, concurrency, keys, prefill_jobs_per_second=filled.jobs_per_second)
    service_cpu = cluster.service_cpu_seconds()
    with cluster.executors(executors, concurrency, executor_env) as fleet:
        run.executor_settings = fleet.settings()
        ctx.say(f"drain: starting {executors} executors x concurrency {concurrency or 'default'}, {keys} keys")
        launched = fleet.launch()
        fleet.wait_ready()
        ready_cpu = fleet.cpu_seconds()
        deadline = time.monotonic() + timeout
        next_sample = fleet.ready_at
        while True:
            counts = cluster.counts()
            now = time.monotonic()
            if now >= next_sample:
                run.samples.append((round(now - fleet.ready_at, 3), counts["COMPLETED"] - before["COMPLETED"]))
                next_sample = now + SAMPLE_SECONDS
            if not any(counts[status] for status in ACTIVE):
                break
            if now > deadline:
                raise TimeoutError(f"drain: jobs left after {timeout:g} s: {counts}")
            time.sleep(POLL_SECONDS)
        done = time.monotonic()
        run.cpu_seconds = {
            "executors": [round(b - a, 2) for a, b in zip(ready_cpu, fleet.cpu_seconds(), strict=True)],
            **{name: round(cpu - service_cpu[name], 2) for name, cpu in cluster.service_cpu_seconds().items()},
        }
    run.launch_to_ready_seconds = fleet.ready_at - launched
    run.ready_to_done_seconds = done - fleet.ready_at
    run.launch_to_done_seconds = done - launched
    rows = cluster.execute(
        "SELECT count(*) FILTER (WHERE status = 'COMPLETED'), count(*) FILTER (WHERE status = 'FAILED'), "
        "extract(epoch FROM max(finished_at) - min(started_at)) FROM jobs WHERE job_id >= %s",
        (first_id,),
    )
    run.completed, run.failed, db_seconds = int(rows[0][0]), int(rows[0][1]), rows[0][2]
    run.db_seconds = float(db_seconds or 0.0)
    ctx.say(
        f"drain: {run.completed}/{jobs} completed in {run.ready_to_done_seconds:.2f} s "
        f"({run.jobs_per_second:,.0f} jobs/s); counts {job_counts(cluster.conn)}"
    )
    return run


def summary(result: LoadResult, scheduled: bool = False) -> dict[str, Any]:
    """A load result without its raw latency lists, for the JSON."""
    return {
        "calls": result.calls,
        "jobs": result.jobs,
        "errors": result.errors,
        "dropped": result.dropped,
        "elapsed_seconds": round(result.elapsed, 3),
        "client_cpu_seconds": round(result.cpu_seconds, 2),
        "client_cores": round(result.client_cores, 2),
        "calls_per_second": result.calls_per_second,
        "jobs_per_second": result.jobs_per_second,
        "latency": latency_summary(result.latencies),
        **({"latency_from_schedule": latency_summary(result.scheduled_latencies)} if scheduled else {}),
        "error_samples": result.error_samples,
    }


def add_fixed_rate(
    result: ScenarioResult, label: str, unit: str, load: LoadResult, api_cores: float, offered: float
) -> dict[str, Any]:
    """The rows of an open-loop run at ``offered`` calls/s (p99 counted from each call's scheduled send,
    target < 20 ms); its details for the JSON."""
    lat = latency_summary(load.scheduled_latencies)
    result.add(f"{label}: achieved", load.calls_per_second, unit, note=f"api {api_cores:.2f} cores")
    result.add(f"{label}: p50", lat["p50_ms"], "ms", note="from scheduled send")
    result.add(f"{label}: p99", lat["p99_ms"], "ms", "< 20", note="from scheduled send")
    if load.errors or load.dropped:
        result.add(f"{label}: errors+dropped", load.errors + load.dropped, "calls")
    return {"offered_per_second": offered, "api_cores": round(api_cores, 2), **summary(load, scheduled=True)}
