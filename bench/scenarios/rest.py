"""7. rest: POST /jobs and GET /jobs/{id} over REST side by side with SubmitJob over gRPC and GET /health.

One api, in the same run: each of the four calls in a closed loop at ``--unary-concurrency`` (32), one
after the other, and the round repeated ``--runs`` times (median), so that a change in the machine's
load reaches all four alike. Then ``POST /jobs`` at ``--unary-rate`` requests/s offered on a fixed
schedule, latency counted from each request's scheduled send (as the unary scenario does for gRPC).
The clients are processes of their own (bench/loadgen.py; the HTTP client is a few lines over asyncio
streams). No executor runs: submitted jobs stay READY.
"""

from __future__ import annotations

from bench.config import BenchConfig
from bench.harness import BenchContext, Cluster
from bench.loadgen import Kind, LoadResult, LoadSpec
from bench.report import ScenarioResult
from bench.scenarios.common import add_fixed_rate, load_with_api_cpu, split, summary
from bench.stats import median

NAME = "rest"
DESCRIPTION = "REST POST /jobs and GET /jobs/{id} beside gRPC SubmitJob and /health at concurrency 32; p99 at 1,000/s"

# (kind, label, unit), in the order each round runs them.
CALLS: list[tuple[Kind, str, str]] = [
    ("unary", "SubmitJob (gRPC)", "RPC/s"),
    ("rest_submit", "POST /jobs", "req/s"),
    ("rest_get", "GET /jobs/{id}", "req/s"),
    ("health", "GET /health", "req/s"),
]


def run(ctx: BenchContext, config: BenchConfig) -> ScenarioResult:
    result = ScenarioResult(NAME, DESCRIPTION)
    conc = config.unary_concurrency
    clients = max(1, min(config.unary_clients, conc))
    timeout = config.unary_seconds + config.warmup_seconds + 60
    rounds: dict[Kind, list[tuple[LoadResult, float]]] = {kind: [] for kind, _, _ in CALLS}
    fixed: tuple[LoadResult, float] | None = None
    with Cluster.start(ctx, NAME) as cluster:
        http = f"127.0.0.1:{cluster.http_port}"
        for number in range(config.runs):
            for kind, label, _ in CALLS:
                ctx.say(f"rest: {label}, concurrency {conc}, run {number + 1}")
                specs = [
                    LoadSpec(
                        target=cluster.target if kind == "unary" else http,
                        kind=kind,
                        concurrency=share,
                        channels=config.channels,
                        duration=config.unary_seconds,
                        warmup=config.warmup_seconds,
                    )
                    for share in split(conc, clients)
                ]
                rounds[kind].append(load_with_api_cpu(cluster, specs, timeout))
        if config.unary_rate > 0:
            ctx.say(f"rest: POST /jobs at {config.unary_rate:g}/s")
            specs = [
                LoadSpec(
                    target=http,
                    kind="rest_submit",
                    concurrency=max(1, conc // clients),
                    rate=config.unary_rate / clients,
                    duration=config.unary_seconds,
                    warmup=config.warmup_seconds,
                )
                for _ in range(clients)
            ]
            fixed = load_with_api_cpu(cluster, specs, timeout)

    rates: dict[Kind, float] = {}
    details: dict[str, object] = {"clients": clients, "concurrency": conc}
    for kind, label, unit in CALLS:
        loads = [load for load, _ in rounds[kind]]
        runs = [summary(load) for load in loads]
        for run_summary, (_, cores) in zip(runs, rounds[kind], strict=True):
            run_summary["api_cores"] = round(cores, 2)
        rates[kind] = median([load.calls_per_second for load in loads])
        api_cores = median([cores for _, cores in rounds[kind]])
        client_cores = median([load.client_cores for load in loads])
        result.add(
            f"{label} c={conc}",
            rates[kind],
            unit,
            note=f"median of {len(loads)}; api {api_cores:.2f} cores, client {client_cores:.2f}",
        )
        # What each call costs the api's interpreter: steadier than the rate when others load the machine.
        per_call = median([1e6 * cores / load.calls_per_second for load, cores in rounds[kind] if load.calls])
        result.add(f"{label}: api CPU per call", per_call, "µs")
        if kind != "health":
            result.add(f"{label} c={conc}: p99", median([s["latency"]["p99_ms"] for s in runs]), "ms")
        errors = sum(load.errors for load in loads)
        if errors:
            result.add(f"{label} c={conc}: errors", errors, "calls")
        details[kind] = runs
    if rates["unary"] > 0:
        result.add("POST /jobs / SubmitJob", 100 * rates["rest_submit"] / rates["unary"], "%", ">= 80")
    if fixed is not None:
        load, cores = fixed
        label = f"POST /jobs at {config.unary_rate:,.0f}/s"
        details["fixed_rate"] = add_fixed_rate(result, label, "req/s", load, cores, config.unary_rate)
    result.details = details
    return result
