"""3. unary: SubmitJob over gRPC, closed loop at concurrency 32, then open loop at a fixed rate.

The client is a grpc.aio process of its own (``--unary-clients`` processes share the concurrency).
No executor runs: this measures the api and the database's insert path alone (the jobs stay READY).
The closed-loop run is repeated ``--runs`` times (median). The fixed-rate run offers
``--unary-rate`` RPCs/s on a schedule and counts latency from each call's scheduled send time, so a
stall is not hidden by the client slowing down (coordinated omission).
"""

from __future__ import annotations

from bench.config import BenchConfig
from bench.harness import BenchContext, Cluster
from bench.loadgen import LoadSpec
from bench.report import ScenarioResult
from bench.scenarios.common import add_fixed_rate, load_with_api_cpu, split, summary
from bench.stats import median

NAME = "unary"
DESCRIPTION = "SubmitJob over gRPC: RPCs/s and latency at concurrency 32; p50/p99 at a fixed offered rate"


def run(ctx: BenchContext, config: BenchConfig) -> ScenarioResult:
    result = ScenarioResult(NAME, DESCRIPTION)
    clients = max(1, min(config.unary_clients, config.unary_concurrency))
    closed = []
    api_cores: list[float] = []
    fixed_cores = float("nan")
    fixed = None
    with Cluster.start(ctx, NAME) as cluster:
        for number in range(config.runs):
            ctx.say(f"unary: closed loop, concurrency {config.unary_concurrency}, run {number + 1}")
            specs = [
                LoadSpec(
                    target=cluster.target,
                    kind="unary",
                    concurrency=share,
                    channels=config.channels,
                    duration=config.unary_seconds,
                    warmup=config.warmup_seconds,
                )
                for share in split(config.unary_concurrency, clients)
            ]
            load, cores = load_with_api_cpu(cluster, specs, timeout=config.unary_seconds + config.warmup_seconds + 60)
            closed.append(load)
            api_cores.append(cores)
        if config.unary_rate > 0:
            ctx.say(f"unary: open loop at {config.unary_rate:g} RPCs/s")
            specs = [
                LoadSpec(
                    target=cluster.target,
                    kind="unary",
                    rate=config.unary_rate / clients,
                    channels=config.channels,
                    duration=config.unary_seconds,
                    warmup=config.warmup_seconds,
                )
                for _ in range(clients)
            ]
            fixed, fixed_cores = load_with_api_cpu(
                cluster, specs, timeout=config.unary_seconds + config.warmup_seconds + 60
            )

    runs = [summary(r) for r in closed]
    conc = config.unary_concurrency
    client_cores = median([r.client_cores for r in closed])
    result.add(
        f"c={conc}: RPCs/s",
        median([r.calls_per_second for r in closed]),
        "RPC/s",
        ">= 3000",
        note=f"median of {len(closed)}; api {median(api_cores):.2f} cores, client {client_cores:.2f}",
    )
    result.add(f"c={conc}: p50", median([s["latency"]["p50_ms"] for s in runs]), "ms")
    result.add(f"c={conc}: p99", median([s["latency"]["p99_ms"] for s in runs]), "ms")
    errors = sum(r.errors for r in closed)
    if errors:
        result.add(f"c={conc}: errors", errors, "calls")
    for summary_, cores in zip(runs, api_cores, strict=True):
        summary_["api_cores"] = round(cores, 2)
    details = {"clients": clients, "concurrency": conc, "closed_loop_runs": runs}
    if fixed is not None:
        details["fixed_rate"] = add_fixed_rate(
            result, f"{config.unary_rate:,.0f}/s", "RPC/s", fixed, fixed_cores, config.unary_rate
        )
    result.details = details
    return result
